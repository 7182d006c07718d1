//! The Diameter message header (RFC 6733 section 3).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |    Version    |                 Message Length                |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | Command Flags |                  Command Code                 |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                         Application-ID                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                      Hop-by-Hop Identifier                    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                      End-to-End Identifier                    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! The header is parsed eagerly (it is 20 bytes); the AVPs behind it are parsed lazily.

use std::fmt;

use crate::error::DecodeError;

/// Length of the fixed message header in bytes.
pub const HEADER_LEN: usize = 20;
/// The only Diameter version (RFC 6733 section 3).
pub const VERSION: u8 = 1;
/// Largest value the 24-bit Message Length field can hold.
pub const MAX_MESSAGE_LEN: u32 = 0x00ff_ffff;

/// Command Flags (RFC 6733 section 3): R, P, E, T and four reserved bits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CommandFlags(pub u8);

impl CommandFlags {
    /// No flag set.
    pub const NONE: Self = Self(0);
    /// R: the message is a request.
    pub const REQUEST: Self = Self(0x80);
    /// P: the message may be proxied, relayed or redirected.
    pub const PROXIABLE: Self = Self(0x40);
    /// E: the answer carries a protocol error (3xxx Result-Code).
    pub const ERROR: Self = Self(0x20);
    /// T: a potentially retransmitted request (after a link failover).
    pub const RETRANSMIT: Self = Self(0x10);
    /// The reserved bits: sent as zero, ignored on receipt.
    pub const RESERVED: Self = Self(0x0f);

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
    /// Whether the R bit is set.
    pub const fn is_request(self) -> bool {
        self.contains(Self::REQUEST)
    }
    /// Whether the P bit is set.
    pub const fn is_proxiable(self) -> bool {
        self.contains(Self::PROXIABLE)
    }
    /// Whether the E bit is set.
    pub const fn is_error(self) -> bool {
        self.contains(Self::ERROR)
    }
    /// Whether the T bit is set.
    pub const fn is_retransmit(self) -> bool {
        self.contains(Self::RETRANSMIT)
    }
    /// The union of both flag sets.
    #[must_use]
    pub const fn with(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
    /// These flags with the bits of `other` cleared.
    #[must_use]
    pub const fn without(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }
}

impl fmt::Debug for CommandFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (Self::REQUEST, 'R'),
            (Self::PROXIABLE, 'P'),
            (Self::ERROR, 'E'),
            (Self::RETRANSMIT, 'T'),
        ];
        let mut any = false;
        for (flag, name) in names {
            if self.contains(flag) {
                write!(f, "{name}")?;
                any = true;
            }
        }
        if !any {
            write!(f, "-")?;
        }
        if self.0 & Self::RESERVED.0 != 0 {
            write!(f, "+{:#04x}", self.0 & Self::RESERVED.0)?;
        }
        Ok(())
    }
}

/// A 24-bit Command Code (RFC 6733 section 3.1).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommandCode(pub u32);

impl CommandCode {
    /// Capabilities-Exchange-Request/Answer (RFC 6733 section 5.3).
    pub const CAPABILITIES_EXCHANGE: Self = Self(0x101);
    /// Re-Auth-Request/Answer (RFC 6733 section 8.3).
    pub const RE_AUTH: Self = Self(0x102);
    /// Accounting-Request/Answer (RFC 6733 section 9.7).
    pub const ACCOUNTING: Self = Self(0x10f);
    /// Credit-Control-Request/Answer (RFC 4006 section 3).
    pub const CREDIT_CONTROL: Self = Self(0x110);
    /// Abort-Session-Request/Answer (RFC 6733 section 8.5).
    pub const ABORT_SESSION: Self = Self(0x112);
    /// Session-Termination-Request/Answer (RFC 6733 section 8.4).
    pub const SESSION_TERMINATION: Self = Self(0x113);
    /// Device-Watchdog-Request/Answer (RFC 6733 section 5.5).
    pub const DEVICE_WATCHDOG: Self = Self(0x118);
    /// Disconnect-Peer-Request/Answer (RFC 6733 section 5.4).
    pub const DISCONNECT_PEER: Self = Self(0x11a);

    /// The conventional abbreviation, such as "CCR" or "DWA", for known commands.
    pub fn abbreviation(self, request: bool) -> Option<&'static str> {
        let (req, ans) = match self {
            Self::CAPABILITIES_EXCHANGE => ("CER", "CEA"),
            Self::RE_AUTH => ("RAR", "RAA"),
            Self::ACCOUNTING => ("ACR", "ACA"),
            Self::CREDIT_CONTROL => ("CCR", "CCA"),
            Self::ABORT_SESSION => ("ASR", "ASA"),
            Self::SESSION_TERMINATION => ("STR", "STA"),
            Self::DEVICE_WATCHDOG => ("DWR", "DWA"),
            Self::DISCONNECT_PEER => ("DPR", "DPA"),
            _ => return None,
        };
        Some(if request { req } else { ans })
    }
}

impl fmt::Debug for CommandCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.abbreviation(true) {
            Some(name) => write!(f, "{}({})", &name[..2], self.0),
            None => write!(f, "CommandCode({})", self.0),
        }
    }
}

/// An Application-Id (RFC 6733 section 2.4).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct ApplicationId(pub u32);

impl ApplicationId {
    /// Diameter common messages (CER, DWR, DPR).
    pub const COMMON: Self = Self(0);
    /// NASREQ (RFC 7155).
    pub const NASREQ: Self = Self(1);
    /// Diameter base accounting (RFC 6733).
    pub const BASE_ACCOUNTING: Self = Self(3);
    /// Diameter Credit-Control (RFC 4006/8506).
    pub const CREDIT_CONTROL: Self = Self(4);
    /// The relay application: a node that relays every application.
    pub const RELAY: Self = Self(0xffff_ffff);
}

/// Hop-by-Hop Identifier: matches an answer to its request on one connection.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
pub struct HopByHopId(pub u32);

/// End-to-End Identifier: detects duplicate requests (with Origin-Host).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
pub struct EndToEndId(pub u32);

/// A parsed message header.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Header {
    /// Total message length in bytes, header and padding included.
    pub length: u32,
    /// The command flags.
    pub flags: CommandFlags,
    /// The command code.
    pub command: CommandCode,
    /// The application the message belongs to.
    pub application: ApplicationId,
    /// The hop-by-hop identifier.
    pub hop_by_hop: HopByHopId,
    /// The end-to-end identifier.
    pub end_to_end: EndToEndId,
}

impl Header {
    /// Parses the fixed header at the start of `buf`, checking the version and that the
    /// Message Length is at least the header, a multiple of four and within `buf`.
    ///
    /// ```
    /// use protocol::header::{Header, CommandCode};
    /// let bytes = [1, 0, 0, 20, 0x80, 0, 1, 0x18, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2];
    /// let header = Header::parse(&bytes).unwrap();
    /// assert_eq!(header.command, CommandCode::DEVICE_WATCHDOG);
    /// assert!(header.flags.is_request());
    /// ```
    #[inline]
    pub fn parse(buf: &[u8]) -> Result<Self, DecodeError> {
        let Some(fixed) = buf.get(..HEADER_LEN) else {
            return Err(DecodeError::Truncated {
                needed: HEADER_LEN as u32,
                available: buf.len() as u32,
            });
        };
        let version = fixed[0];
        if version != VERSION {
            return Err(DecodeError::UnsupportedVersion { version });
        }
        let length = read_u24(&fixed[1..4]);
        check_message_length(length, MAX_MESSAGE_LEN)?;
        if length as usize > buf.len() {
            return Err(DecodeError::Truncated {
                needed: length,
                available: buf.len() as u32,
            });
        }
        Ok(Self {
            length,
            flags: CommandFlags(fixed[4]),
            command: CommandCode(read_u24(&fixed[5..8])),
            application: ApplicationId(read_u32(&fixed[8..12])),
            hop_by_hop: HopByHopId(read_u32(&fixed[12..16])),
            end_to_end: EndToEndId(read_u32(&fixed[16..20])),
        })
    }

    /// Writes the header with the given length into `out` (exactly [`HEADER_LEN`] bytes).
    pub fn write(&self, out: &mut [u8; HEADER_LEN]) {
        out[0] = VERSION;
        out[1..4].copy_from_slice(&self.length.to_be_bytes()[1..]);
        out[4] = self.flags.0;
        out[5..8].copy_from_slice(&self.command.0.to_be_bytes()[1..]);
        out[8..12].copy_from_slice(&self.application.0.to_be_bytes());
        out[12..16].copy_from_slice(&self.hop_by_hop.0.to_be_bytes());
        out[16..20].copy_from_slice(&self.end_to_end.0.to_be_bytes());
    }

    /// Whether this is a request.
    pub fn is_request(&self) -> bool {
        self.flags.is_request()
    }
}

/// Checks a Message Length field against the rules that make a stream re-synchronisable.
#[inline]
pub(crate) fn check_message_length(length: u32, max: u32) -> Result<(), DecodeError> {
    if (length as usize) < HEADER_LEN {
        return Err(DecodeError::MessageTooShort { length });
    }
    if !length.is_multiple_of(4) {
        return Err(DecodeError::MessageLengthUnaligned { length });
    }
    if length > max {
        return Err(DecodeError::MessageTooLarge { length, max });
    }
    Ok(())
}

#[inline]
pub(crate) fn read_u24(b: &[u8]) -> u32 {
    (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2])
}

#[inline]
pub(crate) fn read_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let header = Header {
            length: 0x0001_0004,
            flags: CommandFlags::REQUEST.with(CommandFlags::PROXIABLE),
            command: CommandCode::CREDIT_CONTROL,
            application: ApplicationId::CREDIT_CONTROL,
            hop_by_hop: HopByHopId(0xdead_beef),
            end_to_end: EndToEndId(7),
        };
        let mut raw = vec![0u8; header.length as usize];
        let fixed: &mut [u8; HEADER_LEN] = (&mut raw[..HEADER_LEN]).try_into().unwrap();
        header.write(fixed);
        assert_eq!(&raw[..8], &[1, 0x01, 0x00, 0x04, 0xc0, 0, 1, 0x10]);
        assert_eq!(Header::parse(&raw).unwrap(), header);
    }

    #[test]
    fn rejects_bad_headers() {
        let mut raw = [0u8; 20];
        raw[0] = 2;
        raw[3] = 20;
        assert!(matches!(
            Header::parse(&raw),
            Err(DecodeError::UnsupportedVersion { version: 2 })
        ));
        raw[0] = 1;
        raw[3] = 19;
        assert!(matches!(
            Header::parse(&raw),
            Err(DecodeError::MessageTooShort { length: 19 })
        ));
        raw[3] = 22;
        assert!(matches!(
            Header::parse(&raw),
            Err(DecodeError::MessageLengthUnaligned { .. })
        ));
        raw[3] = 24;
        assert!(matches!(
            Header::parse(&raw),
            Err(DecodeError::Truncated { needed: 24, .. })
        ));
        assert!(matches!(
            Header::parse(&raw[..5]),
            Err(DecodeError::Truncated { needed: 20, .. })
        ));
    }

    #[test]
    fn flags_debug_is_readable() {
        let flags = CommandFlags(0x80 | 0x40 | 0x01);
        assert_eq!(format!("{flags:?}"), "RP+0x01");
        assert_eq!(format!("{:?}", CommandFlags(0)), "-");
    }
}
