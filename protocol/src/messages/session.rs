//! Server-initiated session messages (RFC 6733 sections 8.3 and 8.5): ASR/ASA and RAR/RAA.
//!
//! Both carry the Application-Id of the session they act on: 4 for credit-control sessions
//! (RFC 4006 section 5.5), 3 for the suite's accounting sessions on the access leg.

use crate::avp_struct;
use crate::dictionary::{ReAuthRequestType, TerminationCause};
use crate::grammar::FailedAvpData;
use crate::result_code::ResultCode;

avp_struct! {
    /// Abort-Session-Request (RFC 6733 section 8.5.1).
    ///
    /// ```text
    /// <ASR> ::= < Diameter Header: 274, REQ, PXY >
    ///           < Session-Id > { Origin-Host } { Origin-Realm } { Destination-Realm }
    ///           { Destination-Host } { Auth-Application-Id } [ User-Name ]
    ///           [ Origin-State-Id ] * [ Proxy-Info ] * [ Route-Record ] * [ AVP ]
    /// ```
    ///
    /// Termination-Cause and Error-Message (via `* [ AVP ]`) say why the session is cut
    /// (DESIGN.md section 3).
    message Asr<'a> ['a] (command: ABORT_SESSION, flags: REQUEST | PROXIABLE) {
        /// Session-Id.
        session_id: one &'a str = SESSION_ID,
        /// Origin-Host.
        origin_host: one &'a str = ORIGIN_HOST,
        /// Origin-Realm.
        origin_realm: one &'a str = ORIGIN_REALM,
        /// Destination-Realm.
        destination_realm: one &'a str = DESTINATION_REALM,
        /// Destination-Host.
        destination_host: one &'a str = DESTINATION_HOST,
        /// Auth-Application-Id.
        auth_application_id: one u32 = AUTH_APPLICATION_ID,
        /// User-Name.
        user_name: opt &'a str = USER_NAME,
        /// Origin-State-Id.
        origin_state_id: opt u32 = ORIGIN_STATE_ID,
        /// Termination-Cause: why the session is cut.
        termination_cause: opt TerminationCause = TERMINATION_CAUSE,
        /// Error-Message: a readable reason.
        error_message: opt &'a str = ERROR_MESSAGE,
    }
}

avp_struct! {
    /// Abort-Session-Answer (RFC 6733 section 8.5.2).
    ///
    /// ```text
    /// <ASA> ::= < Diameter Header: 274, PXY >
    ///           < Session-Id > { Result-Code } { Origin-Host } { Origin-Realm }
    ///           [ User-Name ] [ Origin-State-Id ] [ Error-Message ]
    ///           [ Error-Reporting-Host ] [ Failed-AVP ] * [ Redirect-Host ]
    ///           [ Redirect-Host-Usage ] [ Redirect-Max-Cache-Time ] * [ Proxy-Info ]
    ///           * [ AVP ]
    /// ```
    message Asa<'a> ['a] (command: ABORT_SESSION, flags: PROXIABLE) {
        /// Session-Id.
        session_id: one &'a str = SESSION_ID,
        /// Result-Code.
        result_code: one ResultCode = RESULT_CODE,
        /// Origin-Host.
        origin_host: one &'a str = ORIGIN_HOST,
        /// Origin-Realm.
        origin_realm: one &'a str = ORIGIN_REALM,
        /// User-Name.
        user_name: opt &'a str = USER_NAME,
        /// Origin-State-Id.
        origin_state_id: opt u32 = ORIGIN_STATE_ID,
        /// Error-Message.
        error_message: opt &'a str = ERROR_MESSAGE,
        /// Error-Reporting-Host.
        error_reporting_host: opt &'a str = ERROR_REPORTING_HOST,
        /// Failed-AVP.
        failed_avp: opt FailedAvpData<'a> = FAILED_AVP,
    }
}

avp_struct! {
    /// Re-Auth-Request (RFC 6733 section 8.3.1; RFC 4006 section 5.5 for credit control).
    ///
    /// ```text
    /// <RAR> ::= < Diameter Header: 258, REQ, PXY >
    ///           < Session-Id > { Origin-Host } { Origin-Realm } { Destination-Realm }
    ///           { Destination-Host } { Auth-Application-Id } { Re-Auth-Request-Type }
    ///           [ User-Name ] [ Origin-State-Id ] * [ Proxy-Info ] * [ Route-Record ]
    ///           * [ AVP ]
    /// ```
    message Rar<'a> ['a] (command: RE_AUTH, flags: REQUEST | PROXIABLE) {
        /// Session-Id.
        session_id: one &'a str = SESSION_ID,
        /// Origin-Host.
        origin_host: one &'a str = ORIGIN_HOST,
        /// Origin-Realm.
        origin_realm: one &'a str = ORIGIN_REALM,
        /// Destination-Realm.
        destination_realm: one &'a str = DESTINATION_REALM,
        /// Destination-Host.
        destination_host: one &'a str = DESTINATION_HOST,
        /// Auth-Application-Id.
        auth_application_id: one u32 = AUTH_APPLICATION_ID,
        /// Re-Auth-Request-Type.
        re_auth_request_type: one ReAuthRequestType = RE_AUTH_REQUEST_TYPE,
        /// User-Name.
        user_name: opt &'a str = USER_NAME,
        /// Origin-State-Id.
        origin_state_id: opt u32 = ORIGIN_STATE_ID,
    }
}

avp_struct! {
    /// Re-Auth-Answer (RFC 6733 section 8.3.2).
    ///
    /// ```text
    /// <RAA> ::= < Diameter Header: 258, PXY >
    ///           < Session-Id > { Result-Code } { Origin-Host } { Origin-Realm }
    ///           [ User-Name ] [ Origin-State-Id ] [ Error-Message ]
    ///           [ Error-Reporting-Host ] [ Failed-AVP ] * [ Redirect-Host ]
    ///           [ Redirect-Host-Usage ] [ Redirect-Max-Cache-Time ] * [ Proxy-Info ]
    ///           * [ AVP ]
    /// ```
    message Raa<'a> ['a] (command: RE_AUTH, flags: PROXIABLE) {
        /// Session-Id.
        session_id: one &'a str = SESSION_ID,
        /// Result-Code.
        result_code: one ResultCode = RESULT_CODE,
        /// Origin-Host.
        origin_host: one &'a str = ORIGIN_HOST,
        /// Origin-Realm.
        origin_realm: one &'a str = ORIGIN_REALM,
        /// User-Name.
        user_name: opt &'a str = USER_NAME,
        /// Origin-State-Id.
        origin_state_id: opt u32 = ORIGIN_STATE_ID,
        /// Error-Message.
        error_message: opt &'a str = ERROR_MESSAGE,
        /// Error-Reporting-Host.
        error_reporting_host: opt &'a str = ERROR_REPORTING_HOST,
        /// Failed-AVP.
        failed_avp: opt FailedAvpData<'a> = FAILED_AVP,
    }
}
