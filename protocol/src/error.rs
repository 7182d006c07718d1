//! Decode errors and what each one means for the peer (RFC 6733 section 7).
//!
//! One enum covers every way a message can be malformed. Each variant maps explicitly, in
//! [`DecodeError::disposition`], either to closing the connection (the stream cannot be
//! re-synchronised when the header is garbage) or to an answer with a Result-Code and, where
//! RFC 6733 section 7.5 asks for one, a Failed-AVP built from the offending AVP.

use crate::avp::{AvpCode, AvpFlags, VendorId};
use crate::header::{ApplicationId, CommandCode, CommandFlags};
use crate::result_code::ResultCode;

/// Where an offending AVP sits in its message, so that an error answer can quote it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct AvpLocation {
    /// The AVP Code.
    pub code: AvpCode,
    /// The Vendor-ID, if the V bit was set and readable.
    pub vendor: Option<VendorId>,
    /// The AVP flags as received.
    pub flags: AvpFlags,
    /// Offset of the AVP header from the start of the message.
    pub offset: u32,
    /// The AVP Length field as received (may be nonsense when `intact` is false).
    pub length: u32,
    /// Whether `offset..offset + length` is a well-formed AVP that can be copied verbatim.
    pub intact: bool,
}

impl AvpLocation {
    /// The location of an AVP whose header cannot be trusted.
    pub(crate) fn broken(
        code: u32,
        vendor: Option<VendorId>,
        flags: u8,
        offset: u32,
        length: u32,
    ) -> Self {
        Self {
            code: AvpCode(code),
            vendor,
            flags: AvpFlags(flags),
            offset,
            length,
            intact: false,
        }
    }
}

impl std::fmt::Display for AvpLocation {
    /// "Session-Id (263) at offset 20", or "AVP 99999 (vendor 10415) at offset 20".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} at offset {}",
            AvpName(self.code, self.vendor),
            self.offset
        )
    }
}

/// An AVP named from the dictionary when it is there (vendor included in the lookup).
struct AvpName(AvpCode, Option<VendorId>);

impl std::fmt::Display for AvpName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (crate::dictionary::lookup(self.0, self.1), self.1) {
            (Some(def), _) => write!(f, "{} ({})", def.name, self.0 .0),
            (None, Some(vendor)) => write!(f, "{} (vendor {})", self.0 .0, vendor.0),
            (None, None) => write!(f, "{}", self.0 .0),
        }
    }
}

/// Everything that can be wrong with a received message.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The Version field is not 1.
    #[error("unsupported Diameter version {version}")]
    UnsupportedVersion {
        /// The version received.
        version: u8,
    },
    /// The Message Length is below the 20-byte header.
    #[error("message length {length} is shorter than the header")]
    MessageTooShort {
        /// The length field received.
        length: u32,
    },
    /// The Message Length is not a multiple of four.
    #[error("message length {length} is not a multiple of 4")]
    MessageLengthUnaligned {
        /// The length field received.
        length: u32,
    },
    /// The Message Length exceeds the configured maximum.
    #[error("message length {length} exceeds the maximum of {max}")]
    MessageTooLarge {
        /// The length field received.
        length: u32,
        /// The configured maximum.
        max: u32,
    },
    /// The buffer ends before the message does.
    #[error("truncated message: {needed} bytes needed, {available} available")]
    Truncated {
        /// Bytes the header says the message has.
        needed: u32,
        /// Bytes available.
        available: u32,
    },
    /// The buffer holds more bytes than the Message Length says.
    #[error("{available} bytes given for a message of length {length}")]
    TrailingBytes {
        /// The length field received.
        length: u32,
        /// Bytes available.
        available: u32,
    },
    /// An invalid combination of command flags (a request with the E bit, say).
    #[error("invalid command flags {flags:?}")]
    InvalidHeaderBits {
        /// The flags received.
        flags: CommandFlags,
    },
    /// AVP flags inconsistent with the AVP's definition.
    #[error("invalid flags on AVP {avp}")]
    InvalidAvpBits {
        /// The offending AVP.
        avp: AvpLocation,
    },
    /// An AVP Length below its header, past the end of its container, or wrong for its type.
    #[error("invalid length {} of AVP {avp}", avp.length)]
    InvalidAvpLength {
        /// The offending AVP.
        avp: AvpLocation,
    },
    /// Padding that is missing or not zero.
    #[error("bad padding after AVP {avp}")]
    InvalidAvpPadding {
        /// The offending AVP.
        avp: AvpLocation,
    },
    /// A value that its type or the dictionary does not allow.
    #[error("invalid value of AVP {avp}")]
    InvalidAvpValue {
        /// The offending AVP.
        avp: AvpLocation,
    },
    /// An AVP with the M bit that this command does not know.
    #[error("unsupported mandatory AVP {avp}")]
    AvpUnsupported {
        /// The offending AVP.
        avp: AvpLocation,
    },
    /// A required AVP is absent.
    #[error("missing AVP {}", AvpName(*code, *vendor))]
    MissingAvp {
        /// The missing AVP's code.
        code: AvpCode,
        /// Its Vendor-ID, if vendor-specific.
        vendor: Option<VendorId>,
    },
    /// An AVP appears more often than the command's grammar allows.
    #[error("AVP {avp} occurs too many times")]
    AvpOccursTooManyTimes {
        /// The first occurrence beyond the allowed count.
        avp: AvpLocation,
    },
    /// A command code this node does not implement.
    #[error("unsupported command {command:?}")]
    CommandUnsupported {
        /// The command received.
        command: CommandCode,
    },
    /// An application this node does not support.
    #[error("unsupported application {application:?}")]
    ApplicationUnsupported {
        /// The application received.
        application: ApplicationId,
    },
}

/// What the receiver of a malformed message must do about it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Disposition {
    /// The stream cannot be trusted any more: close the connection (log the reason).
    CloseConnection,
    /// Answer a request with this Result-Code (an answer in error is only logged).
    Answer {
        /// The Result-Code of the error answer.
        result_code: ResultCode,
        /// What the Failed-AVP should hold, if anything.
        failed_avp: Option<FailedAvp>,
    },
}

/// The content of a Failed-AVP (RFC 6733 section 7.5).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FailedAvp {
    /// Copy the offending AVP verbatim from the message.
    Copy(AvpLocation),
    /// Write an AVP with this code and flags and a zero-filled payload of the type's minimum
    /// length (for an AVP that is missing or whose length cannot be trusted).
    ZeroFilled {
        /// The AVP Code.
        code: AvpCode,
        /// The Vendor-ID, if any.
        vendor: Option<VendorId>,
        /// The AVP flags.
        flags: AvpFlags,
    },
}

impl DecodeError {
    /// What to do about this error: close the connection, or answer with which Result-Code
    /// and Failed-AVP.
    pub fn disposition(&self) -> Disposition {
        use DecodeError as E;
        let answer = |result_code, failed_avp| Disposition::Answer {
            result_code,
            failed_avp,
        };
        let copy = |avp: &AvpLocation| {
            if avp.intact {
                FailedAvp::Copy(*avp)
            } else {
                FailedAvp::ZeroFilled {
                    code: avp.code,
                    vendor: avp.vendor,
                    flags: avp.flags,
                }
            }
        };
        match self {
            E::UnsupportedVersion { .. }
            | E::MessageTooShort { .. }
            | E::MessageLengthUnaligned { .. }
            | E::MessageTooLarge { .. }
            | E::Truncated { .. }
            | E::TrailingBytes { .. } => Disposition::CloseConnection,
            E::InvalidHeaderBits { .. } => answer(ResultCode::INVALID_HDR_BITS, None),
            E::InvalidAvpBits { avp } => answer(ResultCode::INVALID_AVP_BITS, Some(copy(avp))),
            E::InvalidAvpLength { avp } | E::InvalidAvpPadding { avp } => {
                answer(ResultCode::INVALID_AVP_LENGTH, Some(copy(avp)))
            }
            E::InvalidAvpValue { avp } => answer(ResultCode::INVALID_AVP_VALUE, Some(copy(avp))),
            E::AvpUnsupported { avp } => answer(ResultCode::AVP_UNSUPPORTED, Some(copy(avp))),
            E::MissingAvp { code, vendor } => {
                let flags = crate::dictionary::lookup(*code, *vendor)
                    .map_or(AvpFlags::MANDATORY, |def| def.flags);
                answer(
                    ResultCode::MISSING_AVP,
                    Some(FailedAvp::ZeroFilled {
                        code: *code,
                        vendor: *vendor,
                        flags,
                    }),
                )
            }
            E::AvpOccursTooManyTimes { avp } => {
                answer(ResultCode::AVP_OCCURS_TOO_MANY_TIMES, Some(copy(avp)))
            }
            E::CommandUnsupported { .. } => answer(ResultCode::COMMAND_UNSUPPORTED, None),
            E::ApplicationUnsupported { .. } => answer(ResultCode::APPLICATION_UNSUPPORTED, None),
        }
    }

    /// The Result-Code an answer to this error carries; for errors that close the connection,
    /// the code that best names the problem (for logs and counters).
    pub fn result_code(&self) -> ResultCode {
        match self.disposition() {
            Disposition::Answer { result_code, .. } => result_code,
            Disposition::CloseConnection => match self {
                Self::UnsupportedVersion { .. } => ResultCode::UNSUPPORTED_VERSION,
                _ => ResultCode::INVALID_MESSAGE_LENGTH,
            },
        }
    }

    /// Whether the connection must be closed.
    pub fn closes_connection(&self) -> bool {
        self.disposition() == Disposition::CloseConnection
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_an_explicit_disposition() {
        let avp = AvpLocation {
            code: AvpCode(1),
            vendor: None,
            flags: AvpFlags::MANDATORY,
            offset: 20,
            length: 12,
            intact: true,
        };
        let broken = AvpLocation {
            intact: false,
            ..avp
        };
        let cases = [
            (DecodeError::UnsupportedVersion { version: 2 }, None),
            (
                DecodeError::MessageTooLarge {
                    length: 1 << 20,
                    max: 65536,
                },
                None,
            ),
            (
                DecodeError::InvalidHeaderBits {
                    flags: CommandFlags(0xa0),
                },
                Some(3008),
            ),
            (DecodeError::InvalidAvpBits { avp }, Some(3009)),
            (DecodeError::InvalidAvpLength { avp: broken }, Some(5014)),
            (DecodeError::InvalidAvpPadding { avp: broken }, Some(5014)),
            (DecodeError::InvalidAvpValue { avp }, Some(5004)),
            (DecodeError::AvpUnsupported { avp }, Some(5001)),
            (
                DecodeError::MissingAvp {
                    code: AvpCode(263),
                    vendor: None,
                },
                Some(5005),
            ),
            (DecodeError::AvpOccursTooManyTimes { avp }, Some(5009)),
            (
                DecodeError::CommandUnsupported {
                    command: CommandCode(9),
                },
                Some(3001),
            ),
            (
                DecodeError::ApplicationUnsupported {
                    application: ApplicationId(9),
                },
                Some(3007),
            ),
        ];
        for (error, code) in cases {
            match (error.disposition(), code) {
                (Disposition::CloseConnection, None) => assert!(error.closes_connection()),
                (Disposition::Answer { result_code, .. }, Some(code)) => {
                    assert_eq!(result_code.0, code, "{error}")
                }
                (got, want) => panic!("{error}: got {got:?}, want {want:?}"),
            }
        }
        assert!(matches!(
            DecodeError::InvalidAvpLength { avp: broken }.disposition(),
            Disposition::Answer {
                failed_avp: Some(FailedAvp::ZeroFilled { .. }),
                ..
            }
        ));
        assert!(matches!(
            DecodeError::AvpUnsupported { avp }.disposition(),
            Disposition::Answer {
                failed_avp: Some(FailedAvp::Copy(_)),
                ..
            }
        ));
    }
}
