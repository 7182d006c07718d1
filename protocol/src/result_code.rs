//! Result-Code values (RFC 6733 section 7.1, RFC 4006 section 9).
//!
//! The thousands digit is the class: 1xxx informational, 2xxx success, 3xxx protocol errors
//! (answered with the E bit), 4xxx transient failures, 5xxx permanent failures.

use std::fmt;

/// A Result-Code AVP value.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ResultCode(pub u32);

macro_rules! result_codes {
    ($($(#[$doc:meta])* $name:ident = $value:literal,)*) => {
        impl ResultCode {
            $($(#[$doc])* pub const $name: Self = Self($value);)*

            /// The RFC name without the `DIAMETER_` prefix, for known codes.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($value => Some(stringify!($name)),)*
                    _ => None,
                }
            }
        }
    };
}

result_codes! {
    /// 1001: more authentication rounds needed.
    MULTI_ROUND_AUTH = 1001,
    /// 2001: the request was successfully completed.
    SUCCESS = 2001,
    /// 2002: the request is complete; further action is needed.
    LIMITED_SUCCESS = 2002,
    /// 3001: the command code is not recognised or supported.
    COMMAND_UNSUPPORTED = 3001,
    /// 3002: the message could not be delivered.
    UNABLE_TO_DELIVER = 3002,
    /// 3003: the Destination-Realm is not served.
    REALM_NOT_SERVED = 3003,
    /// 3004: the node is too busy; try another.
    TOO_BUSY = 3004,
    /// 3005: a forwarding loop was detected.
    LOOP_DETECTED = 3005,
    /// 3006: re-send the request to the Redirect-Host.
    REDIRECT_INDICATION = 3006,
    /// 3007: the application is not supported.
    APPLICATION_UNSUPPORTED = 3007,
    /// 3008: the command flags are invalid.
    INVALID_HDR_BITS = 3008,
    /// 3009: the AVP flags are invalid.
    INVALID_AVP_BITS = 3009,
    /// 3010: a CER from an unknown peer.
    UNKNOWN_PEER = 3010,
    /// 4001: authentication failed.
    AUTHENTICATION_REJECTED = 4001,
    /// 4002: no space to store the accounting record.
    OUT_OF_SPACE = 4002,
    /// 4003: the peer won the election (RFC 6733 section 5.6.4).
    ELECTION_LOST = 4003,
    /// 4010: the end user's service is denied (RFC 4006).
    END_USER_SERVICE_DENIED = 4010,
    /// 4011: credit control does not apply to this service (RFC 4006).
    CREDIT_CONTROL_NOT_APPLICABLE = 4011,
    /// 4012: the account has no credit left for the service (RFC 4006).
    CREDIT_LIMIT_REACHED = 4012,
    /// 5001: an M-bit AVP is not supported.
    AVP_UNSUPPORTED = 5001,
    /// 5002: the Session-Id is unknown.
    UNKNOWN_SESSION_ID = 5002,
    /// 5003: the user is not authorised.
    AUTHORIZATION_REJECTED = 5003,
    /// 5004: an AVP has an invalid value.
    INVALID_AVP_VALUE = 5004,
    /// 5005: a required AVP is missing.
    MISSING_AVP = 5005,
    /// 5006: resources were exceeded.
    RESOURCES_EXCEEDED = 5006,
    /// 5007: AVPs contradict each other.
    CONTRADICTING_AVPS = 5007,
    /// 5008: an AVP is not allowed in this message.
    AVP_NOT_ALLOWED = 5008,
    /// 5009: an AVP occurs more often than allowed.
    AVP_OCCURS_TOO_MANY_TIMES = 5009,
    /// 5010: no application in common (CER/CEA).
    NO_COMMON_APPLICATION = 5010,
    /// 5011: the Diameter version is not supported.
    UNSUPPORTED_VERSION = 5011,
    /// 5012: the request cannot be honoured for an unspecified reason.
    UNABLE_TO_COMPLY = 5012,
    /// 5013: an invalid bit in the header.
    INVALID_BIT_IN_HEADER = 5013,
    /// 5014: an AVP has an invalid length.
    INVALID_AVP_LENGTH = 5014,
    /// 5015: the message has an invalid length.
    INVALID_MESSAGE_LENGTH = 5015,
    /// 5016: an invalid combination of AVP flags.
    INVALID_AVP_BIT_COMBO = 5016,
    /// 5017: no security mechanism in common.
    NO_COMMON_SECURITY = 5017,
    /// 5030: the subscriber is unknown (RFC 4006).
    USER_UNKNOWN = 5030,
    /// 5031: the request could not be rated (RFC 4006).
    RATING_FAILED = 5031,
}

impl ResultCode {
    /// 2xxx.
    pub fn is_success(self) -> bool {
        (2000..3000).contains(&self.0)
    }
    /// 3xxx: protocol errors, sent with the E bit and the generic error grammar.
    pub fn is_protocol_error(self) -> bool {
        (3000..4000).contains(&self.0)
    }
    /// 4xxx.
    pub fn is_transient_failure(self) -> bool {
        (4000..5000).contains(&self.0)
    }
    /// 5xxx.
    pub fn is_permanent_failure(self) -> bool {
        (5000..6000).contains(&self.0)
    }
}

impl fmt::Debug for ResultCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{}({name})", self.0),
            None => write!(f, "ResultCode({})", self.0),
        }
    }
}

impl fmt::Display for ResultCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_and_names() {
        assert!(ResultCode::SUCCESS.is_success());
        assert!(ResultCode::REDIRECT_INDICATION.is_protocol_error());
        assert!(ResultCode::CREDIT_LIMIT_REACHED.is_transient_failure());
        assert!(ResultCode::USER_UNKNOWN.is_permanent_failure());
        assert_eq!(ResultCode(5014).name(), Some("INVALID_AVP_LENGTH"));
        assert_eq!(
            format!("{:?}", ResultCode(4012)),
            "4012(CREDIT_LIMIT_REACHED)"
        );
    }
}
