//! Base protocol peer messages (RFC 6733 section 5): CER/CEA, DWR/DWA, DPR/DPA.
//!
//! These travel with Application-Id 0 and without the P flag.

use smallvec::SmallVec;

use crate::avp::Address;
use crate::avp_struct;
use crate::dictionary::DisconnectCause;
use crate::grammar::FailedAvpData;
use crate::result_code::ResultCode;

avp_struct! {
    /// Vendor-Specific-Application-Id (RFC 6733 section 6.11).
    grouped VendorSpecificApplicationId ['a] {
        /// Vendor-Id.
        vendor_id: one u32 = VENDOR_ID,
        /// Auth-Application-Id (exactly one of the two application ids is present).
        auth_application_id: opt u32 = AUTH_APPLICATION_ID,
        /// Acct-Application-Id.
        acct_application_id: opt u32 = ACCT_APPLICATION_ID,
    }
}

avp_struct! {
    /// Capabilities-Exchange-Request (RFC 6733 section 5.3.1).
    ///
    /// ```text
    /// <CER> ::= < Diameter Header: 257, REQ >
    ///           { Origin-Host } { Origin-Realm } 1* { Host-IP-Address } { Vendor-Id }
    ///           { Product-Name } [ Origin-State-Id ] * [ Supported-Vendor-Id ]
    ///           * [ Auth-Application-Id ] * [ Inband-Security-Id ]
    ///           * [ Acct-Application-Id ] * [ Vendor-Specific-Application-Id ]
    ///           [ Firmware-Revision ] * [ AVP ]
    /// ```
    message Cer<'a> ['a] (command: CAPABILITIES_EXCHANGE, flags: REQUEST) {
        /// Origin-Host.
        origin_host: one &'a str = ORIGIN_HOST,
        /// Origin-Realm.
        origin_realm: one &'a str = ORIGIN_REALM,
        /// Host-IP-Address (one or more).
        host_ip_addresses: many SmallVec<[Address<'a>; 2]> = HOST_IP_ADDRESS,
        /// Vendor-Id.
        vendor_id: one u32 = VENDOR_ID,
        /// Product-Name.
        product_name: one &'a str = PRODUCT_NAME,
        /// Origin-State-Id.
        origin_state_id: opt u32 = ORIGIN_STATE_ID,
        /// Supported-Vendor-Id.
        supported_vendor_ids: many SmallVec<[u32; 2]> = SUPPORTED_VENDOR_ID,
        /// Auth-Application-Id.
        auth_application_ids: many SmallVec<[u32; 2]> = AUTH_APPLICATION_ID,
        /// Inband-Security-Id.
        inband_security_ids: many SmallVec<[u32; 1]> = INBAND_SECURITY_ID,
        /// Acct-Application-Id.
        acct_application_ids: many SmallVec<[u32; 2]> = ACCT_APPLICATION_ID,
        /// Vendor-Specific-Application-Id.
        vendor_specific_application_ids:
            many SmallVec<[VendorSpecificApplicationId; 1]> = VENDOR_SPECIFIC_APPLICATION_ID,
        /// Firmware-Revision.
        firmware_revision: opt u32 = FIRMWARE_REVISION,
    }
}

avp_struct! {
    /// Capabilities-Exchange-Answer (RFC 6733 section 5.3.2).
    ///
    /// ```text
    /// <CEA> ::= < Diameter Header: 257 >
    ///           { Result-Code } { Origin-Host } { Origin-Realm } 1* { Host-IP-Address }
    ///           { Vendor-Id } { Product-Name } [ Origin-State-Id ] [ Error-Message ]
    ///           [ Failed-AVP ] * [ Supported-Vendor-Id ] * [ Auth-Application-Id ]
    ///           * [ Inband-Security-Id ] * [ Acct-Application-Id ]
    ///           * [ Vendor-Specific-Application-Id ] [ Firmware-Revision ] * [ AVP ]
    /// ```
    message Cea<'a> ['a] (command: CAPABILITIES_EXCHANGE, flags: NONE) {
        /// Result-Code.
        result_code: one ResultCode = RESULT_CODE,
        /// Origin-Host.
        origin_host: one &'a str = ORIGIN_HOST,
        /// Origin-Realm.
        origin_realm: one &'a str = ORIGIN_REALM,
        /// Host-IP-Address (one or more).
        host_ip_addresses: many SmallVec<[Address<'a>; 2]> = HOST_IP_ADDRESS,
        /// Vendor-Id.
        vendor_id: one u32 = VENDOR_ID,
        /// Product-Name.
        product_name: one &'a str = PRODUCT_NAME,
        /// Origin-State-Id.
        origin_state_id: opt u32 = ORIGIN_STATE_ID,
        /// Error-Message.
        error_message: opt &'a str = ERROR_MESSAGE,
        /// Failed-AVP.
        failed_avp: opt FailedAvpData<'a> = FAILED_AVP,
        /// Supported-Vendor-Id.
        supported_vendor_ids: many SmallVec<[u32; 2]> = SUPPORTED_VENDOR_ID,
        /// Auth-Application-Id.
        auth_application_ids: many SmallVec<[u32; 2]> = AUTH_APPLICATION_ID,
        /// Inband-Security-Id.
        inband_security_ids: many SmallVec<[u32; 1]> = INBAND_SECURITY_ID,
        /// Acct-Application-Id.
        acct_application_ids: many SmallVec<[u32; 2]> = ACCT_APPLICATION_ID,
        /// Vendor-Specific-Application-Id.
        vendor_specific_application_ids:
            many SmallVec<[VendorSpecificApplicationId; 1]> = VENDOR_SPECIFIC_APPLICATION_ID,
        /// Firmware-Revision.
        firmware_revision: opt u32 = FIRMWARE_REVISION,
    }
}

avp_struct! {
    /// Device-Watchdog-Request (RFC 6733 section 5.5.1).
    ///
    /// ```text
    /// <DWR> ::= < Diameter Header: 280, REQ >
    ///           { Origin-Host } { Origin-Realm } [ Origin-State-Id ] * [ AVP ]
    /// ```
    message Dwr<'a> ['a] (command: DEVICE_WATCHDOG, flags: REQUEST) {
        /// Origin-Host.
        origin_host: one &'a str = ORIGIN_HOST,
        /// Origin-Realm.
        origin_realm: one &'a str = ORIGIN_REALM,
        /// Origin-State-Id.
        origin_state_id: opt u32 = ORIGIN_STATE_ID,
    }
}

avp_struct! {
    /// Device-Watchdog-Answer (RFC 6733 section 5.5.2).
    ///
    /// ```text
    /// <DWA> ::= < Diameter Header: 280 >
    ///           { Result-Code } { Origin-Host } { Origin-Realm } [ Error-Message ]
    ///           [ Failed-AVP ] [ Origin-State-Id ] * [ AVP ]
    /// ```
    message Dwa<'a> ['a] (command: DEVICE_WATCHDOG, flags: NONE) {
        /// Result-Code.
        result_code: one ResultCode = RESULT_CODE,
        /// Origin-Host.
        origin_host: one &'a str = ORIGIN_HOST,
        /// Origin-Realm.
        origin_realm: one &'a str = ORIGIN_REALM,
        /// Error-Message.
        error_message: opt &'a str = ERROR_MESSAGE,
        /// Failed-AVP.
        failed_avp: opt FailedAvpData<'a> = FAILED_AVP,
        /// Origin-State-Id.
        origin_state_id: opt u32 = ORIGIN_STATE_ID,
    }
}

avp_struct! {
    /// Disconnect-Peer-Request (RFC 6733 section 5.4.1).
    ///
    /// ```text
    /// <DPR> ::= < Diameter Header: 282, REQ >
    ///           { Origin-Host } { Origin-Realm } { Disconnect-Cause } * [ AVP ]
    /// ```
    message Dpr<'a> ['a] (command: DISCONNECT_PEER, flags: REQUEST) {
        /// Origin-Host.
        origin_host: one &'a str = ORIGIN_HOST,
        /// Origin-Realm.
        origin_realm: one &'a str = ORIGIN_REALM,
        /// Disconnect-Cause.
        disconnect_cause: one DisconnectCause = DISCONNECT_CAUSE,
    }
}

avp_struct! {
    /// Disconnect-Peer-Answer (RFC 6733 section 5.4.2).
    ///
    /// ```text
    /// <DPA> ::= < Diameter Header: 282 >
    ///           { Result-Code } { Origin-Host } { Origin-Realm } [ Error-Message ]
    ///           [ Failed-AVP ] * [ AVP ]
    /// ```
    message Dpa<'a> ['a] (command: DISCONNECT_PEER, flags: NONE) {
        /// Result-Code.
        result_code: one ResultCode = RESULT_CODE,
        /// Origin-Host.
        origin_host: one &'a str = ORIGIN_HOST,
        /// Origin-Realm.
        origin_realm: one &'a str = ORIGIN_REALM,
        /// Error-Message.
        error_message: opt &'a str = ERROR_MESSAGE,
        /// Failed-AVP.
        failed_avp: opt FailedAvpData<'a> = FAILED_AVP,
    }
}
