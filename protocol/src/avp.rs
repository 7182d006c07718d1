//! AVPs (RFC 6733 section 4): the header, lazy zero-copy iteration and typed accessors.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                           AVP Code                            |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |V M P r r r r r|                  AVP Length                   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                        Vendor-ID (opt)                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |    Data ...
//! +-+-+-+-+-+-+-+-+
//! ```
//!
//! The AVP Length covers header and data but not the padding to the next multiple of four.
//! An [`Avp`] borrows its data from the message buffer; [`AvpIter`] parses one header per
//! step, so walking a message allocates nothing. Every AVP remembers its offset in the
//! message so that an error can quote it back in a Failed-AVP.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::error::{AvpLocation, DecodeError};
use crate::header::{read_u24, read_u32};

/// Length of an AVP header without a Vendor-ID.
pub const AVP_HEADER_LEN: usize = 8;
/// Length of an AVP header with a Vendor-ID.
pub const AVP_VENDOR_HEADER_LEN: usize = 12;

/// An AVP Code (RFC 6733 section 4.1). Constants for the codes we use are in
/// [`crate::dictionary`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AvpCode(pub u32);

impl fmt::Debug for AvpCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match crate::dictionary::lookup(*self, None) {
            Some(def) => write!(f, "{}({})", def.name, self.0),
            None => write!(f, "AvpCode({})", self.0),
        }
    }
}

/// A Vendor-ID (an IANA enterprise number).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct VendorId(pub u32);

impl VendorId {
    /// 3GPP.
    pub const TGPP: Self = Self(10415);
}

/// AVP Flags (RFC 6733 section 4.1): V, M, P and five reserved bits (ignored on receipt).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct AvpFlags(pub u8);

impl AvpFlags {
    /// V: a Vendor-ID field is present.
    pub const VENDOR: Self = Self(0x80);
    /// M: the receiver must understand the AVP or reject the message.
    pub const MANDATORY: Self = Self(0x40);
    /// P: reserved for end-to-end security (RFC 6733 keeps it for compatibility).
    pub const PROTECTED: Self = Self(0x20);
    /// No flag set.
    pub const NONE: Self = Self(0);

    /// Whether the V bit is set.
    pub const fn is_vendor(self) -> bool {
        self.0 & Self::VENDOR.0 != 0
    }
    /// Whether the M bit is set.
    pub const fn is_mandatory(self) -> bool {
        self.0 & Self::MANDATORY.0 != 0
    }
    /// The union of both flag sets.
    #[must_use]
    pub const fn with(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

impl fmt::Debug for AvpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (bit, name) in [(0x80, "V"), (0x40, "M"), (0x20, "P")] {
            f.write_str(if self.0 & bit != 0 { name } else { "-" })?;
        }
        Ok(())
    }
}

/// One AVP: a view over the message buffer.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Avp<'a> {
    code: AvpCode,
    flags: AvpFlags,
    vendor: Option<VendorId>,
    /// The AVP Length field (header and data, no padding).
    length: u32,
    /// Offset of the AVP header from the start of the message.
    offset: u32,
    data: &'a [u8],
}

impl<'a> Avp<'a> {
    /// The AVP Code.
    #[inline]
    pub fn code(&self) -> AvpCode {
        self.code
    }
    /// The AVP Flags.
    #[inline]
    pub fn flags(&self) -> AvpFlags {
        self.flags
    }
    /// The Vendor-ID, when the V bit is set.
    #[inline]
    pub fn vendor_id(&self) -> Option<VendorId> {
        self.vendor
    }
    /// Whether the M bit is set.
    #[inline]
    pub fn is_mandatory(&self) -> bool {
        self.flags.is_mandatory()
    }
    /// The AVP Length field: header plus data, without padding.
    #[inline]
    pub fn length(&self) -> u32 {
        self.length
    }
    /// Offset of this AVP's header from the start of its message.
    #[inline]
    pub fn offset(&self) -> u32 {
        self.offset
    }
    /// The raw data, without header or padding.
    #[inline]
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// Where this AVP sits in its message, for error reporting.
    pub fn location(&self) -> AvpLocation {
        AvpLocation {
            code: self.code,
            vendor: self.vendor,
            flags: self.flags,
            offset: self.offset,
            length: self.length,
            intact: true,
        }
    }

    #[inline]
    fn fixed<const N: usize>(&self) -> Result<[u8; N], DecodeError> {
        self.data
            .try_into()
            .map_err(|_| DecodeError::InvalidAvpLength {
                avp: self.location(),
            })
    }

    /// The value as Unsigned32 (also used for Enumerated values we treat as unsigned).
    #[inline]
    pub fn u32(&self) -> Result<u32, DecodeError> {
        self.fixed::<4>().map(u32::from_be_bytes)
    }
    /// The value as Unsigned64.
    #[inline]
    pub fn u64(&self) -> Result<u64, DecodeError> {
        self.fixed::<8>().map(u64::from_be_bytes)
    }
    /// The value as Integer32.
    #[inline]
    pub fn i32(&self) -> Result<i32, DecodeError> {
        self.fixed::<4>().map(i32::from_be_bytes)
    }
    /// The value as Integer64.
    #[inline]
    pub fn i64(&self) -> Result<i64, DecodeError> {
        self.fixed::<8>().map(i64::from_be_bytes)
    }
    /// The value as Enumerated (an Integer32 on the wire).
    #[inline]
    pub fn enumerated(&self) -> Result<i32, DecodeError> {
        self.i32()
    }
    /// The value as OctetString.
    #[inline]
    pub fn octets(&self) -> &'a [u8] {
        self.data
    }
    /// The value as UTF8String; invalid UTF-8 is 5004 INVALID_AVP_VALUE.
    #[inline]
    pub fn utf8(&self) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.data).map_err(|_| DecodeError::InvalidAvpValue {
            avp: self.location(),
        })
    }
    /// The value as DiameterIdentity: a non-empty FQDN or realm, ASCII only.
    #[inline]
    pub fn identity(&self) -> Result<&'a str, DecodeError> {
        let valid = !self.data.is_empty() && self.data.iter().all(|&b| b.is_ascii_graphic());
        if !valid {
            return Err(DecodeError::InvalidAvpValue {
                avp: self.location(),
            });
        }
        // Checked above: every byte is printable ASCII.
        self.utf8()
    }
    /// The value as Time: seconds since 1900-01-01 UTC, as in NTP.
    #[inline]
    pub fn time(&self) -> Result<DiameterTime, DecodeError> {
        self.u32().map(DiameterTime)
    }
    /// The value as Address (an address family from IANA and the address).
    pub fn address(&self) -> Result<Address<'a>, DecodeError> {
        let invalid = || DecodeError::InvalidAvpLength {
            avp: self.location(),
        };
        let (family, rest) = self.data.split_first_chunk::<2>().ok_or_else(invalid)?;
        Ok(match u16::from_be_bytes(*family) {
            1 => Address::Ip(IpAddr::V4(Ipv4Addr::from(
                <[u8; 4]>::try_from(rest).map_err(|_| invalid())?,
            ))),
            2 => Address::Ip(IpAddr::V6(Ipv6Addr::from(
                <[u8; 16]>::try_from(rest).map_err(|_| invalid())?,
            ))),
            family => Address::Other {
                family,
                address: rest,
            },
        })
    }
    /// The AVPs inside a Grouped AVP, parsed lazily like the message's own.
    #[inline]
    pub fn grouped(&self) -> AvpIter<'a> {
        let header = if self.vendor.is_some() {
            AVP_VENDOR_HEADER_LEN
        } else {
            AVP_HEADER_LEN
        };
        AvpIter::new(self.data, self.offset + header as u32)
    }
}

impl fmt::Debug for Avp<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} [{:?}", self.code, self.flags)?;
        if let Some(vendor) = self.vendor {
            write!(f, " vendor={}", vendor.0)?;
        }
        write!(f, "] {} bytes", self.data.len())
    }
}

/// An Address AVP value (RFC 6733 section 4.3.1).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Address<'a> {
    /// IPv4 (family 1) or IPv6 (family 2).
    Ip(IpAddr),
    /// Any other address family, with its raw bytes.
    Other {
        /// The IANA address family number.
        family: u16,
        /// The address bytes.
        address: &'a [u8],
    },
}

/// A Time AVP value: seconds since 1900-01-01 00:00 UTC (RFC 6733 section 4.3.1), which wraps
/// in 2036; values with the top bit clear are read as after the wrap (RFC 5905 era 1).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
pub struct DiameterTime(pub u32);

impl DiameterTime {
    const UNIX_EPOCH_NTP: i64 = 2_208_988_800;

    /// Seconds since the Unix epoch.
    pub fn unix_seconds(self) -> i64 {
        let seconds = i64::from(self.0);
        if self.0 & 0x8000_0000 != 0 {
            seconds - Self::UNIX_EPOCH_NTP
        } else {
            seconds + (1i64 << 32) - Self::UNIX_EPOCH_NTP
        }
    }

    /// The Time for a number of seconds since the Unix epoch (1968 to 2104).
    pub fn from_unix_seconds(unix: i64) -> Self {
        Self((unix + Self::UNIX_EPOCH_NTP) as u32)
    }
}

/// A lazy iterator over a run of AVPs (a message body or the inside of a Grouped AVP).
///
/// Each step checks one AVP header: its length against the header size and the remaining
/// buffer, and that the padding is zero. After the first error the iterator is fused.
#[derive(Clone)]
pub struct AvpIter<'a> {
    rest: &'a [u8],
    /// Offset of `rest` from the start of the message.
    offset: u32,
}

impl<'a> AvpIter<'a> {
    /// Iterates the AVPs in `buf`, which starts `offset` bytes into its message.
    #[inline]
    pub fn new(buf: &'a [u8], offset: u32) -> Self {
        Self { rest: buf, offset }
    }

    // Always inlined: returned through memory, the large Result stalls store forwarding.
    #[inline(always)]
    fn parse_next(&mut self) -> Result<Avp<'a>, DecodeError> {
        let buf = self.rest;
        let offset = self.offset;
        let Some(head) = buf.first_chunk::<AVP_HEADER_LEN>() else {
            return Err(truncated_header(buf, offset));
        };
        let code = read_u32(&head[..4]);
        let flags = AvpFlags(head[4]);
        let length = read_u24(&head[5..8]);
        let (vendor, header_len) = if flags.is_vendor() {
            match buf.get(8..12) {
                Some(v) => (Some(VendorId(read_u32(v))), AVP_VENDOR_HEADER_LEN),
                None => return Err(invalid_length(code, None, flags, offset, length)),
            }
        } else {
            (None, AVP_HEADER_LEN)
        };
        let length_usize = length as usize;
        if length_usize < header_len || length_usize > buf.len() {
            return Err(invalid_length(code, vendor, flags, offset, length));
        }
        let padded = (length_usize + 3) & !3;
        // The data fits; its padding must fit too and be zero.
        match buf.get(length_usize..padded) {
            Some(padding) if padding.iter().all(|&b| b == 0) => {}
            _ => return Err(invalid_padding(code, vendor, flags, offset, length)),
        }
        let avp = Avp {
            code: AvpCode(code),
            flags,
            vendor,
            length,
            offset,
            data: &buf[header_len..length_usize],
        };
        self.rest = &buf[padded..];
        self.offset += padded as u32;
        Ok(avp)
    }
}

// The error paths are cold and out of line, so the hot loop stays small enough to inline.

#[cold]
#[inline(never)]
fn truncated_header(buf: &[u8], offset: u32) -> DecodeError {
    // Fewer than eight bytes left: a truncated AVP header. Quote what is there.
    let code = buf.first_chunk::<4>().map_or(0, |c| u32::from_be_bytes(*c));
    let flags = buf.get(4).copied().unwrap_or(0);
    DecodeError::InvalidAvpLength {
        avp: AvpLocation::broken(code, None, flags, offset, buf.len() as u32),
    }
}

#[cold]
#[inline(never)]
fn invalid_length(
    code: u32,
    vendor: Option<VendorId>,
    flags: AvpFlags,
    offset: u32,
    length: u32,
) -> DecodeError {
    DecodeError::InvalidAvpLength {
        avp: AvpLocation::broken(code, vendor, flags.0, offset, length),
    }
}

#[cold]
#[inline(never)]
fn invalid_padding(
    code: u32,
    vendor: Option<VendorId>,
    flags: AvpFlags,
    offset: u32,
    length: u32,
) -> DecodeError {
    DecodeError::InvalidAvpPadding {
        avp: AvpLocation::broken(code, vendor, flags.0, offset, length),
    }
}

impl<'a> Iterator for AvpIter<'a> {
    type Item = Result<Avp<'a>, DecodeError>;

    #[inline(always)]
    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let item = self.parse_next();
        if item.is_err() {
            self.rest = &[];
        }
        Some(item)
    }
}

impl std::iter::FusedIterator for AvpIter<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    fn avp(code: u32, flags: u8, data: &[u8]) -> Vec<u8> {
        let mut out = code.to_be_bytes().to_vec();
        let len = (8 + data.len()) as u32;
        out.push(flags);
        out.extend_from_slice(&len.to_be_bytes()[1..]);
        out.extend_from_slice(data);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
        out
    }

    #[test]
    fn iterates_and_reads_typed_values() {
        let mut buf = avp(263, 0x40, b"abc");
        buf.extend(avp(415, 0x40, &7u32.to_be_bytes()));
        buf.extend(avp(421, 0x40, &5_242_880u64.to_be_bytes()));
        let avps: Vec<_> = AvpIter::new(&buf, 20).collect::<Result<_, _>>().unwrap();
        assert_eq!(avps.len(), 3);
        assert_eq!(avps[0].utf8().unwrap(), "abc");
        assert_eq!(avps[0].offset(), 20);
        assert_eq!(avps[1].offset(), 32);
        assert_eq!(avps[1].u32().unwrap(), 7);
        assert_eq!(avps[2].u64().unwrap(), 5_242_880);
        assert!(matches!(
            avps[2].u32(),
            Err(DecodeError::InvalidAvpLength { .. })
        ));
    }

    #[test]
    fn reads_addresses_and_times() {
        let v4 = avp(257, 0x40, &[0, 1, 127, 0, 0, 1]);
        let a = AvpIter::new(&v4, 0).next().unwrap().unwrap();
        assert_eq!(
            a.address().unwrap(),
            Address::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST))
        );
        let t = DiameterTime(0xEEB3_62A0);
        assert_eq!(t.unix_seconds(), 1_795_744_800); // 2026-11-27 02:00:00 UTC
        assert_eq!(DiameterTime::from_unix_seconds(t.unix_seconds()), t);
        assert_eq!(
            DiameterTime(0x0000_0001).unix_seconds(),
            (1i64 << 32) + 1 - 2_208_988_800
        );
    }

    #[test]
    fn rejects_malformed_avps() {
        // Length below the header.
        let mut short = avp(1, 0, b"");
        short[7] = 7;
        assert!(matches!(
            AvpIter::new(&short, 0).next(),
            Some(Err(DecodeError::InvalidAvpLength { .. }))
        ));
        // Length past the buffer.
        let mut long = avp(1, 0, b"abcd");
        long[7] = 40;
        assert!(matches!(
            AvpIter::new(&long, 0).next(),
            Some(Err(DecodeError::InvalidAvpLength { .. }))
        ));
        // Non-zero padding.
        let mut pad = avp(1, 0, b"a");
        pad[11] = 1;
        assert!(matches!(
            AvpIter::new(&pad, 0).next(),
            Some(Err(DecodeError::InvalidAvpPadding { .. }))
        ));
        // Padding cut off by the end of the buffer.
        let cut = &avp(1, 0, b"a")[..9];
        assert!(matches!(
            AvpIter::new(cut, 0).next(),
            Some(Err(DecodeError::InvalidAvpPadding { .. }))
        ));
        // V bit set but no room for the Vendor-ID.
        let vend = avp(1, 0x80, b"");
        let mut iter = AvpIter::new(&vend, 0);
        assert!(matches!(
            iter.next(),
            Some(Err(DecodeError::InvalidAvpLength { .. }))
        ));
        assert!(iter.next().is_none(), "fused after an error");
        // A truncated header.
        assert!(matches!(
            AvpIter::new(&[0, 0, 1], 0).next(),
            Some(Err(DecodeError::InvalidAvpLength { .. }))
        ));
    }
}
