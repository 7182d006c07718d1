//! The dictionary: the AVPs we know, with their types and flags (RFC 6733 sections 4.5,
//! 6, 8 and 9.8; RFC 4006 section 8), and the Enumerated values we use.
//!
//! Every code here was checked against the RFC text (RFC 6733 section 4.5 table, RFC 4006
//! section 12.3 table). The M flag is the one the RFC says MUST be set; AVPs the RFC marks
//! "MUST NOT" set M (Error-Message, Product-Name, Firmware-Revision, ...) have it clear.

use crate::avp::{AvpCode, AvpFlags, VendorId};

/// The data type of an AVP (RFC 6733 sections 4.2 and 4.3).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AvpType {
    /// Arbitrary bytes.
    OctetString,
    /// Signed 32-bit.
    Integer32,
    /// Signed 64-bit.
    Integer64,
    /// Unsigned 32-bit.
    Unsigned32,
    /// Unsigned 64-bit.
    Unsigned64,
    /// A sequence of AVPs.
    Grouped,
    /// An address family and address.
    Address,
    /// NTP seconds.
    Time,
    /// UTF-8 text.
    Utf8String,
    /// An FQDN or realm.
    DiameterIdentity,
    /// A `aaa://` URI.
    DiameterUri,
    /// An Integer32 with named values.
    Enumerated,
    /// An IP filter rule (RFC 6733 section 4.3.1).
    IpFilterRule,
}

impl AvpType {
    /// The smallest valid data length, used for the zero-filled payload of a Failed-AVP
    /// (RFC 6733 section 7.5).
    pub fn minimum_length(self) -> usize {
        match self {
            Self::Integer32 | Self::Unsigned32 | Self::Enumerated | Self::Time => 4,
            Self::Integer64 | Self::Unsigned64 => 8,
            Self::Address => 6,
            _ => 0,
        }
    }
}

/// One AVP's definition.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct AvpDef {
    /// The RFC name, such as "Session-Id".
    pub name: &'static str,
    /// The AVP Code.
    pub code: AvpCode,
    /// The Vendor-ID, for vendor-specific AVPs.
    pub vendor: Option<VendorId>,
    /// The data type.
    pub ty: AvpType,
    /// The flags a sender sets (M where the RFC requires it; V with a vendor).
    pub flags: AvpFlags,
}

macro_rules! avps {
    ($($name:ident = $code:literal, $text:literal, $ty:ident, $m:tt;)*) => {
        $(
            #[doc = concat!($text, " (", stringify!($code), ", ", stringify!($ty), ").")]
            pub const $name: AvpDef = AvpDef {
                name: $text,
                code: AvpCode($code),
                vendor: None,
                ty: AvpType::$ty,
                flags: avps!(@flags $m),
            };
        )*

        /// Every AVP in the dictionary.
        pub const ALL: &[AvpDef] = &[$($name),*];

        /// The AVP codes as plain integers, usable as `match` patterns.
        pub mod codes {
            $(
                #[doc = concat!($text, ".")]
                pub const $name: u32 = $code;
            )*
        }

        /// Looks up an AVP definition by code and vendor.
        pub fn lookup(code: AvpCode, vendor: Option<VendorId>) -> Option<&'static AvpDef> {
            if vendor.is_some() {
                return None;
            }
            match code.0 {
                $($code => Some(&$name),)*
                _ => None,
            }
        }
    };
    (@flags M) => { AvpFlags::MANDATORY };
    (@flags -) => { AvpFlags::NONE };
}

avps! {
    // RFC 6733 base protocol.
    USER_NAME = 1, "User-Name", Utf8String, M;
    CLASS = 25, "Class", OctetString, M;
    SESSION_TIMEOUT = 27, "Session-Timeout", Unsigned32, M;
    PROXY_STATE = 33, "Proxy-State", OctetString, M;
    ACCT_SESSION_ID = 44, "Acct-Session-Id", OctetString, M;
    ACCT_MULTI_SESSION_ID = 50, "Acct-Multi-Session-Id", Utf8String, M;
    EVENT_TIMESTAMP = 55, "Event-Timestamp", Time, M;
    ACCT_INTERIM_INTERVAL = 85, "Acct-Interim-Interval", Unsigned32, M;
    HOST_IP_ADDRESS = 257, "Host-IP-Address", Address, M;
    AUTH_APPLICATION_ID = 258, "Auth-Application-Id", Unsigned32, M;
    ACCT_APPLICATION_ID = 259, "Acct-Application-Id", Unsigned32, M;
    VENDOR_SPECIFIC_APPLICATION_ID = 260, "Vendor-Specific-Application-Id", Grouped, M;
    REDIRECT_HOST_USAGE = 261, "Redirect-Host-Usage", Enumerated, M;
    REDIRECT_MAX_CACHE_TIME = 262, "Redirect-Max-Cache-Time", Unsigned32, M;
    SESSION_ID = 263, "Session-Id", Utf8String, M;
    ORIGIN_HOST = 264, "Origin-Host", DiameterIdentity, M;
    SUPPORTED_VENDOR_ID = 265, "Supported-Vendor-Id", Unsigned32, M;
    VENDOR_ID = 266, "Vendor-Id", Unsigned32, M;
    FIRMWARE_REVISION = 267, "Firmware-Revision", Unsigned32, -;
    RESULT_CODE = 268, "Result-Code", Unsigned32, M;
    PRODUCT_NAME = 269, "Product-Name", Utf8String, -;
    SESSION_BINDING = 270, "Session-Binding", Unsigned32, M;
    SESSION_SERVER_FAILOVER = 271, "Session-Server-Failover", Enumerated, M;
    MULTI_ROUND_TIME_OUT = 272, "Multi-Round-Time-Out", Unsigned32, M;
    DISCONNECT_CAUSE = 273, "Disconnect-Cause", Enumerated, M;
    AUTH_REQUEST_TYPE = 274, "Auth-Request-Type", Enumerated, M;
    AUTH_GRACE_PERIOD = 276, "Auth-Grace-Period", Unsigned32, M;
    AUTH_SESSION_STATE = 277, "Auth-Session-State", Enumerated, M;
    ORIGIN_STATE_ID = 278, "Origin-State-Id", Unsigned32, M;
    FAILED_AVP = 279, "Failed-AVP", Grouped, M;
    PROXY_HOST = 280, "Proxy-Host", DiameterIdentity, M;
    ERROR_MESSAGE = 281, "Error-Message", Utf8String, -;
    ROUTE_RECORD = 282, "Route-Record", DiameterIdentity, M;
    DESTINATION_REALM = 283, "Destination-Realm", DiameterIdentity, M;
    PROXY_INFO = 284, "Proxy-Info", Grouped, M;
    RE_AUTH_REQUEST_TYPE = 285, "Re-Auth-Request-Type", Enumerated, M;
    ACCOUNTING_SUB_SESSION_ID = 287, "Accounting-Sub-Session-Id", Unsigned64, M;
    AUTHORIZATION_LIFETIME = 291, "Authorization-Lifetime", Unsigned32, M;
    REDIRECT_HOST = 292, "Redirect-Host", DiameterUri, M;
    DESTINATION_HOST = 293, "Destination-Host", DiameterIdentity, M;
    ERROR_REPORTING_HOST = 294, "Error-Reporting-Host", DiameterIdentity, -;
    TERMINATION_CAUSE = 295, "Termination-Cause", Enumerated, M;
    ORIGIN_REALM = 296, "Origin-Realm", DiameterIdentity, M;
    EXPERIMENTAL_RESULT = 297, "Experimental-Result", Grouped, M;
    EXPERIMENTAL_RESULT_CODE = 298, "Experimental-Result-Code", Unsigned32, M;
    INBAND_SECURITY_ID = 299, "Inband-Security-Id", Unsigned32, M;
    ACCOUNTING_RECORD_TYPE = 480, "Accounting-Record-Type", Enumerated, M;
    ACCOUNTING_REALTIME_REQUIRED = 483, "Accounting-Realtime-Required", Enumerated, M;
    ACCOUNTING_RECORD_NUMBER = 485, "Accounting-Record-Number", Unsigned32, M;
    // RFC 4006 Credit-Control.
    CC_CORRELATION_ID = 411, "CC-Correlation-Id", OctetString, -;
    CC_INPUT_OCTETS = 412, "CC-Input-Octets", Unsigned64, M;
    CC_MONEY = 413, "CC-Money", Grouped, M;
    CC_OUTPUT_OCTETS = 414, "CC-Output-Octets", Unsigned64, M;
    CC_REQUEST_NUMBER = 415, "CC-Request-Number", Unsigned32, M;
    CC_REQUEST_TYPE = 416, "CC-Request-Type", Enumerated, M;
    CC_SERVICE_SPECIFIC_UNITS = 417, "CC-Service-Specific-Units", Unsigned64, M;
    CC_SESSION_FAILOVER = 418, "CC-Session-Failover", Enumerated, M;
    CC_SUB_SESSION_ID = 419, "CC-Sub-Session-Id", Unsigned64, M;
    CC_TIME = 420, "CC-Time", Unsigned32, M;
    CC_TOTAL_OCTETS = 421, "CC-Total-Octets", Unsigned64, M;
    CHECK_BALANCE_RESULT = 422, "Check-Balance-Result", Enumerated, M;
    COST_INFORMATION = 423, "Cost-Information", Grouped, M;
    COST_UNIT = 424, "Cost-Unit", Utf8String, M;
    CURRENCY_CODE = 425, "Currency-Code", Unsigned32, M;
    CREDIT_CONTROL = 426, "Credit-Control", Enumerated, M;
    CREDIT_CONTROL_FAILURE_HANDLING = 427, "Credit-Control-Failure-Handling", Enumerated, M;
    DIRECT_DEBITING_FAILURE_HANDLING = 428, "Direct-Debiting-Failure-Handling", Enumerated, M;
    EXPONENT = 429, "Exponent", Integer32, M;
    FINAL_UNIT_INDICATION = 430, "Final-Unit-Indication", Grouped, M;
    GRANTED_SERVICE_UNIT = 431, "Granted-Service-Unit", Grouped, M;
    RATING_GROUP = 432, "Rating-Group", Unsigned32, M;
    REDIRECT_ADDRESS_TYPE = 433, "Redirect-Address-Type", Enumerated, M;
    REDIRECT_SERVER = 434, "Redirect-Server", Grouped, M;
    REDIRECT_SERVER_ADDRESS = 435, "Redirect-Server-Address", Utf8String, M;
    REQUESTED_ACTION = 436, "Requested-Action", Enumerated, M;
    REQUESTED_SERVICE_UNIT = 437, "Requested-Service-Unit", Grouped, M;
    RESTRICTION_FILTER_RULE = 438, "Restriction-Filter-Rule", IpFilterRule, M;
    SERVICE_IDENTIFIER = 439, "Service-Identifier", Unsigned32, M;
    SERVICE_PARAMETER_INFO = 440, "Service-Parameter-Info", Grouped, -;
    SERVICE_PARAMETER_TYPE = 441, "Service-Parameter-Type", Unsigned32, -;
    SERVICE_PARAMETER_VALUE = 442, "Service-Parameter-Value", OctetString, -;
    SUBSCRIPTION_ID = 443, "Subscription-Id", Grouped, M;
    SUBSCRIPTION_ID_DATA = 444, "Subscription-Id-Data", Utf8String, M;
    UNIT_VALUE = 445, "Unit-Value", Grouped, M;
    USED_SERVICE_UNIT = 446, "Used-Service-Unit", Grouped, M;
    VALUE_DIGITS = 447, "Value-Digits", Integer64, M;
    VALIDITY_TIME = 448, "Validity-Time", Unsigned32, M;
    FINAL_UNIT_ACTION = 449, "Final-Unit-Action", Enumerated, M;
    SUBSCRIPTION_ID_TYPE = 450, "Subscription-Id-Type", Enumerated, M;
    TARIFF_TIME_CHANGE = 451, "Tariff-Time-Change", Time, M;
    TARIFF_CHANGE_USAGE = 452, "Tariff-Change-Usage", Enumerated, M;
    G_S_U_POOL_IDENTIFIER = 453, "G-S-U-Pool-Identifier", Unsigned32, M;
    CC_UNIT_TYPE = 454, "CC-Unit-Type", Enumerated, M;
    MULTIPLE_SERVICES_INDICATOR = 455, "Multiple-Services-Indicator", Enumerated, M;
    MULTIPLE_SERVICES_CREDIT_CONTROL = 456, "Multiple-Services-Credit-Control", Grouped, M;
    G_S_U_POOL_REFERENCE = 457, "G-S-U-Pool-Reference", Grouped, M;
    USER_EQUIPMENT_INFO = 458, "User-Equipment-Info", Grouped, -;
    USER_EQUIPMENT_INFO_TYPE = 459, "User-Equipment-Info-Type", Enumerated, -;
    USER_EQUIPMENT_INFO_VALUE = 460, "User-Equipment-Info-Value", OctetString, -;
    SERVICE_CONTEXT_ID = 461, "Service-Context-Id", Utf8String, M;
}

/// Declares an Enumerated value type: a newtype over the wire value with named constants.
macro_rules! enumerated {
    ($(#[$doc:meta])* $ty:ident { $($(#[$vdoc:meta])* $name:ident = $value:literal,)* }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub struct $ty(pub i32);

        impl $ty {
            $($(#[$vdoc])* pub const $name: Self = Self($value);)*

            /// The RFC name of the value, when it is one we know.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($value => Some(stringify!($name)),)*
                    _ => None,
                }
            }
        }

        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                match self.name() {
                    Some(name) => write!(f, "{}({})", name, self.0),
                    None => write!(f, "{}({})", stringify!($ty), self.0),
                }
            }
        }
    };
}

enumerated! {
    /// Accounting-Record-Type (RFC 6733 section 9.8.1).
    AccountingRecordType {
        /// A one-off record.
        EVENT_RECORD = 1,
        /// The session started.
        START_RECORD = 2,
        /// Usage so far in a running session.
        INTERIM_RECORD = 3,
        /// The session ended.
        STOP_RECORD = 4,
    }
}

enumerated! {
    /// CC-Request-Type (RFC 4006 section 8.3).
    CcRequestType {
        /// The first request of a session.
        INITIAL_REQUEST = 1,
        /// A request within a session.
        UPDATE_REQUEST = 2,
        /// The last request of a session.
        TERMINATION_REQUEST = 3,
        /// A one-off event.
        EVENT_REQUEST = 4,
    }
}

enumerated! {
    /// Disconnect-Cause (RFC 6733 section 5.4.3).
    DisconnectCause {
        /// The peer is going down and will come back: reconnect after Tc.
        REBOOTING = 0,
        /// The peer is too busy: do not reconnect soon.
        BUSY = 1,
        /// The peer does not want this connection.
        DO_NOT_WANT_TO_TALK_TO_YOU = 2,
    }
}

enumerated! {
    /// Termination-Cause (RFC 6733 section 8.15).
    TerminationCause {
        /// The user logged out.
        LOGOUT = 1,
        /// The service could not be provided.
        SERVICE_NOT_PROVIDED = 2,
        /// An answer could not be used.
        BAD_ANSWER = 3,
        /// An administrator ended the session.
        ADMINISTRATIVE = 4,
        /// The link to the user or a server was lost.
        LINK_BROKEN = 5,
        /// Authorisation expired.
        AUTH_EXPIRED = 6,
        /// The user moved.
        USER_MOVED = 7,
        /// The session timed out.
        SESSION_TIMEOUT = 8,
    }
}

enumerated! {
    /// Subscription-Id-Type (RFC 4006 section 8.47).
    SubscriptionIdType {
        /// An E.164 number (MSISDN).
        END_USER_E164 = 0,
        /// An IMSI.
        END_USER_IMSI = 1,
        /// A SIP URI.
        END_USER_SIP_URI = 2,
        /// A network access identifier.
        END_USER_NAI = 3,
        /// An operator-private identifier.
        END_USER_PRIVATE = 4,
    }
}

enumerated! {
    /// Final-Unit-Action (RFC 4006 section 8.35).
    FinalUnitAction {
        /// End the service when the final units are used.
        TERMINATE = 0,
        /// Redirect the user (to a top-up server).
        REDIRECT = 1,
        /// Restrict access.
        RESTRICT_ACCESS = 2,
    }
}

enumerated! {
    /// Redirect-Host-Usage (RFC 6733 section 6.13).
    RedirectHostUsage {
        /// Do not cache the redirect.
        DONT_CACHE = 0,
        /// Send every message of this session to the Redirect-Host.
        ALL_SESSION = 1,
        /// Everything for this realm.
        ALL_REALM = 2,
        /// Everything for this realm and application.
        REALM_AND_APPLICATION = 3,
        /// Everything for this application.
        ALL_APPLICATION = 4,
        /// Everything for this host.
        ALL_HOST = 5,
        /// Everything for this user.
        ALL_USER = 6,
    }
}

enumerated! {
    /// Re-Auth-Request-Type (RFC 6733 section 8.12).
    ReAuthRequestType {
        /// Re-authorise only.
        AUTHORIZE_ONLY = 0,
        /// Re-authenticate and re-authorise.
        AUTHORIZE_AUTHENTICATE = 1,
    }
}

enumerated! {
    /// Auth-Session-State (RFC 6733 section 8.11).
    AuthSessionState {
        /// The server keeps session state.
        STATE_MAINTAINED = 0,
        /// The server keeps none.
        NO_STATE_MAINTAINED = 1,
    }
}

enumerated! {
    /// Multiple-Services-Indicator (RFC 4006 section 8.40).
    MultipleServicesIndicator {
        /// One service per session.
        MULTIPLE_SERVICES_NOT_SUPPORTED = 0,
        /// MSCC is supported.
        MULTIPLE_SERVICES_SUPPORTED = 1,
    }
}

/// Services by Rating-Group, as the suite uses them (DESIGN.md section 3).
pub mod rating_group {
    /// Voice, charged per second.
    pub const VOICE: u32 = 1;
    /// Data, charged per octet.
    pub const DATA: u32 = 10;
    /// Messaging, charged per event.
    pub const MESSAGING: u32 = 20;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_lookup_finds_each() {
        let mut codes: Vec<u32> = ALL.iter().map(|d| d.code.0).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(
            codes.len(),
            ALL.len(),
            "duplicate AVP code in the dictionary"
        );
        for def in ALL {
            assert_eq!(lookup(def.code, None), Some(def));
        }
        assert_eq!(lookup(AvpCode(263), Some(VendorId::TGPP)), None);
        assert_eq!(lookup(AvpCode(9999), None), None);
    }

    #[test]
    fn spot_check_against_design() {
        // DESIGN.md section 3 lists these; the RFC tables confirm them.
        for (def, code) in [
            (&SESSION_ID, 263),
            (&ORIGIN_HOST, 264),
            (&ORIGIN_REALM, 296),
            (&DESTINATION_REALM, 283),
            (&AUTH_APPLICATION_ID, 258),
            (&ACCT_APPLICATION_ID, 259),
            (&RESULT_CODE, 268),
            (&FAILED_AVP, 279),
            (&DISCONNECT_CAUSE, 273),
            (&REDIRECT_HOST, 292),
            (&ACCOUNTING_RECORD_TYPE, 480),
            (&ACCOUNTING_RECORD_NUMBER, 485),
            (&CC_REQUEST_TYPE, 416),
            (&CC_REQUEST_NUMBER, 415),
            (&SUBSCRIPTION_ID, 443),
            (&SUBSCRIPTION_ID_TYPE, 450),
            (&SUBSCRIPTION_ID_DATA, 444),
            (&MULTIPLE_SERVICES_CREDIT_CONTROL, 456),
            (&GRANTED_SERVICE_UNIT, 431),
            (&REQUESTED_SERVICE_UNIT, 437),
            (&USED_SERVICE_UNIT, 446),
            (&CC_TIME, 420),
            (&CC_TOTAL_OCTETS, 421),
            (&RATING_GROUP, 432),
            (&VALIDITY_TIME, 448),
            (&FINAL_UNIT_INDICATION, 430),
        ] {
            assert_eq!(def.code.0, code, "{}", def.name);
        }
        assert!(!ERROR_MESSAGE.flags.is_mandatory());
        assert_eq!(
            format!("{:?}", CcRequestType::UPDATE_REQUEST),
            "UPDATE_REQUEST(2)"
        );
    }
}
