//! Credit-Control (RFC 4006 sections 3 and 8, RFC 8506): CCR/CCA and the Grouped AVPs they
//! carry (Multiple-Services-Credit-Control, the service units, Subscription-Id,
//! Final-Unit-Indication). Application-Id 4, P flag set.

use smallvec::SmallVec;

use crate::avp::DiameterTime;
use crate::avp_struct;
use crate::dictionary::{
    CcRequestType, FinalUnitAction, MultipleServicesIndicator, SubscriptionIdType, TerminationCause,
};
use crate::grammar::FailedAvpData;
use crate::result_code::ResultCode;

avp_struct! {
    /// Granted-, Requested- or Used-Service-Unit (RFC 4006 sections 8.17, 8.18, 8.19), without
    /// CC-Money (monetary quota is not used by the suite; it is refused as an unsupported
    /// M-bit AVP).
    grouped ServiceUnit ['a] {
        /// CC-Time: seconds.
        cc_time: opt u32 = CC_TIME,
        /// CC-Total-Octets.
        cc_total_octets: opt u64 = CC_TOTAL_OCTETS,
        /// CC-Input-Octets.
        cc_input_octets: opt u64 = CC_INPUT_OCTETS,
        /// CC-Output-Octets.
        cc_output_octets: opt u64 = CC_OUTPUT_OCTETS,
        /// CC-Service-Specific-Units: events such as messages.
        cc_service_specific_units: opt u64 = CC_SERVICE_SPECIFIC_UNITS,
    }
}

avp_struct! {
    /// Subscription-Id (RFC 4006 section 8.46).
    grouped SubscriptionId<'a> ['a] {
        /// Subscription-Id-Type.
        subscription_id_type: one SubscriptionIdType = SUBSCRIPTION_ID_TYPE,
        /// Subscription-Id-Data: the MSISDN for END_USER_E164.
        subscription_id_data: one &'a str = SUBSCRIPTION_ID_DATA,
    }
}

avp_struct! {
    /// Final-Unit-Indication (RFC 4006 section 8.34), without the redirect and filter AVPs.
    grouped FinalUnitIndication ['a] {
        /// Final-Unit-Action.
        final_unit_action: one FinalUnitAction = FINAL_UNIT_ACTION,
    }
}

avp_struct! {
    /// Multiple-Services-Credit-Control (RFC 4006 section 8.16).
    ///
    /// ```text
    /// <MSCC> ::= < AVP Header: 456 >
    ///            [ Granted-Service-Unit ] [ Requested-Service-Unit ] *[ Used-Service-Unit ]
    ///            [ Tariff-Change-Usage ] *[ Service-Identifier ] [ Rating-Group ]
    ///            *[ G-S-U-Pool-Reference ] [ Validity-Time ] [ Result-Code ]
    ///            [ Final-Unit-Indication ] *[ AVP ]
    /// ```
    grouped MultipleServicesCreditControl ['a] {
        /// Granted-Service-Unit.
        granted_service_unit: opt ServiceUnit = GRANTED_SERVICE_UNIT,
        /// Requested-Service-Unit (empty: the server picks the amount).
        requested_service_unit: opt ServiceUnit = REQUESTED_SERVICE_UNIT,
        /// Used-Service-Unit (several only around a tariff change).
        used_service_units: many SmallVec<[ServiceUnit; 1]> = USED_SERVICE_UNIT,
        /// Service-Identifier.
        service_identifiers: many SmallVec<[u32; 1]> = SERVICE_IDENTIFIER,
        /// Rating-Group.
        rating_group: opt u32 = RATING_GROUP,
        /// Validity-Time: seconds the grant is valid.
        validity_time: opt u32 = VALIDITY_TIME,
        /// Result-Code for this service.
        result_code: opt ResultCode = RESULT_CODE,
        /// Final-Unit-Indication: these are the last units.
        final_unit_indication: opt FinalUnitIndication = FINAL_UNIT_INDICATION,
    }
}

avp_struct! {
    /// Credit-Control-Request (RFC 4006 section 3.1).
    ///
    /// ```text
    /// <CCR> ::= < Diameter Header: 272, REQ, PXY >
    ///           < Session-Id > { Origin-Host } { Origin-Realm } { Destination-Realm }
    ///           { Auth-Application-Id } { Service-Context-Id } { CC-Request-Type }
    ///           { CC-Request-Number } [ Destination-Host ] [ User-Name ]
    ///           [ CC-Sub-Session-Id ] [ Acct-Multi-Session-Id ] [ Origin-State-Id ]
    ///           [ Event-Timestamp ] *[ Subscription-Id ] [ Service-Identifier ]
    ///           [ Termination-Cause ] [ Requested-Service-Unit ] [ Requested-Action ]
    ///           *[ Used-Service-Unit ] [ Multiple-Services-Indicator ]
    ///           *[ Multiple-Services-Credit-Control ] *[ Service-Parameter-Info ]
    ///           [ CC-Correlation-Id ] [ User-Equipment-Info ] *[ Proxy-Info ]
    ///           *[ Route-Record ] *[ AVP ]
    /// ```
    message Ccr<'a> ['a] (command: CREDIT_CONTROL, flags: REQUEST | PROXIABLE) {
        /// Session-Id.
        session_id: one &'a str = SESSION_ID,
        /// Origin-Host.
        origin_host: one &'a str = ORIGIN_HOST,
        /// Origin-Realm.
        origin_realm: one &'a str = ORIGIN_REALM,
        /// Destination-Realm.
        destination_realm: one &'a str = DESTINATION_REALM,
        /// Auth-Application-Id (4).
        auth_application_id: one u32 = AUTH_APPLICATION_ID,
        /// Service-Context-Id.
        service_context_id: one &'a str = SERVICE_CONTEXT_ID,
        /// CC-Request-Type.
        cc_request_type: one CcRequestType = CC_REQUEST_TYPE,
        /// CC-Request-Number.
        cc_request_number: one u32 = CC_REQUEST_NUMBER,
        /// Destination-Host.
        destination_host: opt &'a str = DESTINATION_HOST,
        /// User-Name.
        user_name: opt &'a str = USER_NAME,
        /// Origin-State-Id.
        origin_state_id: opt u32 = ORIGIN_STATE_ID,
        /// Event-Timestamp.
        event_timestamp: opt DiameterTime = EVENT_TIMESTAMP,
        /// Subscription-Id.
        subscription_ids: many SmallVec<[SubscriptionId<'a>; 1]> = SUBSCRIPTION_ID,
        /// Service-Identifier (single-service sessions).
        service_identifier: opt u32 = SERVICE_IDENTIFIER,
        /// Termination-Cause (TERMINATION_REQUEST).
        termination_cause: opt TerminationCause = TERMINATION_CAUSE,
        /// Requested-Service-Unit (single-service sessions).
        requested_service_unit: opt ServiceUnit = REQUESTED_SERVICE_UNIT,
        /// Used-Service-Unit (single-service sessions).
        used_service_units: many SmallVec<[ServiceUnit; 1]> = USED_SERVICE_UNIT,
        /// Multiple-Services-Indicator.
        multiple_services_indicator: opt MultipleServicesIndicator = MULTIPLE_SERVICES_INDICATOR,
        /// Multiple-Services-Credit-Control.
        multiple_services_credit_control:
            many SmallVec<[MultipleServicesCreditControl; 1]> = MULTIPLE_SERVICES_CREDIT_CONTROL,
    }
}

avp_struct! {
    /// Credit-Control-Answer (RFC 4006 section 3.2).
    ///
    /// ```text
    /// <CCA> ::= < Diameter Header: 272, PXY >
    ///           < Session-Id > { Result-Code } { Origin-Host } { Origin-Realm }
    ///           { Auth-Application-Id } { CC-Request-Type } { CC-Request-Number }
    ///           [ User-Name ] [ CC-Session-Failover ] [ CC-Sub-Session-Id ]
    ///           [ Acct-Multi-Session-Id ] [ Origin-State-Id ] [ Event-Timestamp ]
    ///           [ Granted-Service-Unit ] *[ Multiple-Services-Credit-Control ]
    ///           [ Cost-Information] [ Final-Unit-Indication ] [ Check-Balance-Result ]
    ///           [ Credit-Control-Failure-Handling ] [ Direct-Debiting-Failure-Handling ]
    ///           [ Validity-Time] *[ Redirect-Host] [ Redirect-Host-Usage ]
    ///           [ Redirect-Max-Cache-Time ] *[ Proxy-Info ] *[ Route-Record ]
    ///           *[ Failed-AVP ] *[ AVP ]
    /// ```
    message Cca<'a> ['a] (command: CREDIT_CONTROL, flags: PROXIABLE) {
        /// Session-Id.
        session_id: one &'a str = SESSION_ID,
        /// Result-Code.
        result_code: one ResultCode = RESULT_CODE,
        /// Origin-Host.
        origin_host: one &'a str = ORIGIN_HOST,
        /// Origin-Realm.
        origin_realm: one &'a str = ORIGIN_REALM,
        /// Auth-Application-Id (4).
        auth_application_id: one u32 = AUTH_APPLICATION_ID,
        /// CC-Request-Type.
        cc_request_type: one CcRequestType = CC_REQUEST_TYPE,
        /// CC-Request-Number.
        cc_request_number: one u32 = CC_REQUEST_NUMBER,
        /// User-Name.
        user_name: opt &'a str = USER_NAME,
        /// Origin-State-Id.
        origin_state_id: opt u32 = ORIGIN_STATE_ID,
        /// Event-Timestamp.
        event_timestamp: opt DiameterTime = EVENT_TIMESTAMP,
        /// Granted-Service-Unit (single-service sessions).
        granted_service_unit: opt ServiceUnit = GRANTED_SERVICE_UNIT,
        /// Multiple-Services-Credit-Control.
        multiple_services_credit_control:
            many SmallVec<[MultipleServicesCreditControl; 1]> = MULTIPLE_SERVICES_CREDIT_CONTROL,
        /// Final-Unit-Indication (single-service sessions).
        final_unit_indication: opt FinalUnitIndication = FINAL_UNIT_INDICATION,
        /// Validity-Time (single-service sessions).
        validity_time: opt u32 = VALIDITY_TIME,
        /// Error-Message (admitted by `*[ AVP ]`).
        error_message: opt &'a str = ERROR_MESSAGE,
        /// Failed-AVP.
        failed_avps: many SmallVec<[FailedAvpData<'a>; 1]> = FAILED_AVP,
    }
}
