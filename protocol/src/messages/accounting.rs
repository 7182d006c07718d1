//! Base accounting (RFC 6733 section 9.7): ACR/ACA, Application-Id 3, P flag set.
//!
//! The suite's access leg (DESIGN.md section 3) also carries RFC 4006 AVPs through the
//! grammar's `*[ AVP ]`: Subscription-Id, Rating-Group, Used-Service-Unit and
//! Termination-Cause; they are typed fields here.

use smallvec::SmallVec;

use crate::avp::DiameterTime;
use crate::avp_struct;
use crate::dictionary::{AccountingRecordType, TerminationCause};
use crate::grammar::FailedAvpData;
use crate::messages::credit_control::{ServiceUnit, SubscriptionId};
use crate::result_code::ResultCode;

avp_struct! {
    /// Accounting-Request (RFC 6733 section 9.7.1).
    ///
    /// ```text
    /// <ACR> ::= < Diameter Header: 271, REQ, PXY >
    ///           < Session-Id > { Origin-Host } { Origin-Realm } { Destination-Realm }
    ///           { Accounting-Record-Type } { Accounting-Record-Number }
    ///           [ Acct-Application-Id ] [ Vendor-Specific-Application-Id ] [ User-Name ]
    ///           [ Destination-Host ] [ Accounting-Sub-Session-Id ] [ Acct-Session-Id ]
    ///           [ Acct-Multi-Session-Id ] [ Acct-Interim-Interval ]
    ///           [ Accounting-Realtime-Required ] [ Origin-State-Id ] [ Event-Timestamp ]
    ///           * [ Proxy-Info ] * [ Route-Record ] * [ AVP ]
    /// ```
    message Acr<'a> ['a] (command: ACCOUNTING, flags: REQUEST | PROXIABLE) {
        /// Session-Id.
        session_id: one &'a str = SESSION_ID,
        /// Origin-Host.
        origin_host: one &'a str = ORIGIN_HOST,
        /// Origin-Realm.
        origin_realm: one &'a str = ORIGIN_REALM,
        /// Destination-Realm.
        destination_realm: one &'a str = DESTINATION_REALM,
        /// Accounting-Record-Type.
        accounting_record_type: one AccountingRecordType = ACCOUNTING_RECORD_TYPE,
        /// Accounting-Record-Number.
        accounting_record_number: one u32 = ACCOUNTING_RECORD_NUMBER,
        /// Acct-Application-Id.
        acct_application_id: opt u32 = ACCT_APPLICATION_ID,
        /// User-Name.
        user_name: opt &'a str = USER_NAME,
        /// Destination-Host.
        destination_host: opt &'a str = DESTINATION_HOST,
        /// Acct-Interim-Interval.
        acct_interim_interval: opt u32 = ACCT_INTERIM_INTERVAL,
        /// Origin-State-Id.
        origin_state_id: opt u32 = ORIGIN_STATE_ID,
        /// Event-Timestamp.
        event_timestamp: opt DiameterTime = EVENT_TIMESTAMP,
        /// Subscription-Id (RFC 4006): the subscriber.
        subscription_ids: many SmallVec<[SubscriptionId<'a>; 1]> = SUBSCRIPTION_ID,
        /// Rating-Group (RFC 4006): the service.
        rating_group: opt u32 = RATING_GROUP,
        /// Used-Service-Unit (RFC 4006): usage since the previous record.
        used_service_unit: opt ServiceUnit = USED_SERVICE_UNIT,
        /// Termination-Cause: why the session stopped (STOP_RECORD).
        termination_cause: opt TerminationCause = TERMINATION_CAUSE,
    }
}

avp_struct! {
    /// Accounting-Answer (RFC 6733 section 9.7.2).
    ///
    /// ```text
    /// <ACA> ::= < Diameter Header: 271, PXY >
    ///           < Session-Id > { Result-Code } { Origin-Host } { Origin-Realm }
    ///           { Accounting-Record-Type } { Accounting-Record-Number }
    ///           [ Acct-Application-Id ] [ Vendor-Specific-Application-Id ] [ User-Name ]
    ///           [ Accounting-Sub-Session-Id ] [ Acct-Session-Id ] [ Acct-Multi-Session-Id ]
    ///           [ Error-Message ] [ Error-Reporting-Host ] [ Failed-AVP ]
    ///           [ Acct-Interim-Interval ] [ Accounting-Realtime-Required ]
    ///           [ Origin-State-Id ] [ Event-Timestamp ] * [ Proxy-Info ] * [ AVP ]
    /// ```
    message Aca<'a> ['a] (command: ACCOUNTING, flags: PROXIABLE) {
        /// Session-Id.
        session_id: one &'a str = SESSION_ID,
        /// Result-Code.
        result_code: one ResultCode = RESULT_CODE,
        /// Origin-Host.
        origin_host: one &'a str = ORIGIN_HOST,
        /// Origin-Realm.
        origin_realm: one &'a str = ORIGIN_REALM,
        /// Accounting-Record-Type.
        accounting_record_type: one AccountingRecordType = ACCOUNTING_RECORD_TYPE,
        /// Accounting-Record-Number.
        accounting_record_number: one u32 = ACCOUNTING_RECORD_NUMBER,
        /// Acct-Application-Id.
        acct_application_id: opt u32 = ACCT_APPLICATION_ID,
        /// User-Name.
        user_name: opt &'a str = USER_NAME,
        /// Error-Message.
        error_message: opt &'a str = ERROR_MESSAGE,
        /// Error-Reporting-Host.
        error_reporting_host: opt &'a str = ERROR_REPORTING_HOST,
        /// Failed-AVP.
        failed_avp: opt FailedAvpData<'a> = FAILED_AVP,
        /// Acct-Interim-Interval.
        acct_interim_interval: opt u32 = ACCT_INTERIM_INTERVAL,
        /// Origin-State-Id.
        origin_state_id: opt u32 = ORIGIN_STATE_ID,
        /// Event-Timestamp.
        event_timestamp: opt DiameterTime = EVENT_TIMESTAMP,
    }
}
