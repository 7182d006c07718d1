//! Encoding straight into a `BytesMut` (RFC 6733 sections 3 and 4).
//!
//! There is no intermediate tree: [`MessageWriter`] writes the header with a zero length,
//! each AVP is written in place, a Grouped AVP's length is patched once its members are
//! written, and [`MessageWriter::finish`] patches the message length. Padding is written as
//! zeros; AVP lengths exclude it and message and Grouped lengths include it.
//!
//! ```
//! use bytes::BytesMut;
//! use protocol::dictionary::{ORIGIN_HOST, ORIGIN_REALM};
//! use protocol::encode::MessageWriter;
//! use protocol::header::{ApplicationId, CommandCode, CommandFlags, EndToEndId, HopByHopId};
//! use protocol::message::MessageView;
//!
//! let mut buf = BytesMut::new();
//! let mut w = MessageWriter::new(
//!     &mut buf,
//!     CommandFlags::REQUEST,
//!     CommandCode::DEVICE_WATCHDOG,
//!     ApplicationId::COMMON,
//!     HopByHopId(1),
//!     EndToEndId(2),
//! );
//! w.utf8(&ORIGIN_HOST, "gw.example.net");
//! w.utf8(&ORIGIN_REALM, "example.net");
//! let len = w.finish();
//! let view = MessageView::parse(&buf).unwrap();
//! assert_eq!(view.header().length as usize, len);
//! assert_eq!(view.avps().count(), 2);
//! ```

use std::net::IpAddr;
use std::ops::{Deref, DerefMut};

use bytes::{BufMut, BytesMut};

use crate::avp::{AvpCode, AvpFlags, DiameterTime, VendorId, AVP_HEADER_LEN};
use crate::dictionary::AvpDef;
use crate::header::{
    ApplicationId, CommandCode, CommandFlags, EndToEndId, Header, HopByHopId, HEADER_LEN,
};

/// Writes AVPs into a buffer; the same type writes a message body and a Grouped AVP's body.
pub struct AvpWriter<'b> {
    buf: &'b mut BytesMut,
}

impl<'b> AvpWriter<'b> {
    /// Appends AVPs to `buf`.
    pub fn new(buf: &'b mut BytesMut) -> Self {
        Self { buf }
    }

    /// Writes an AVP header for `data_len` bytes of data (no padding yet).
    #[inline]
    fn header(
        &mut self,
        code: AvpCode,
        flags: AvpFlags,
        vendor: Option<VendorId>,
        data_len: usize,
    ) {
        // Fixed-size appends only: a copy of variable length becomes a call to memmove,
        // which costs more than the rest of a small AVP.
        let mut header = [0u8; AVP_HEADER_LEN];
        header[..4].copy_from_slice(&code.0.to_be_bytes());
        match vendor {
            Some(vendor) => {
                let length = (AVP_HEADER_LEN + 4 + data_len) as u32 & 0x00ff_ffff;
                let flags = flags.with(AvpFlags::VENDOR);
                header[4..].copy_from_slice(&((u32::from(flags.0) << 24) | length).to_be_bytes());
                self.buf.put_slice(&header);
                self.buf.put_slice(&vendor.0.to_be_bytes());
            }
            None => {
                let length = (AVP_HEADER_LEN + data_len) as u32 & 0x00ff_ffff;
                header[4..].copy_from_slice(&((u32::from(flags.0) << 24) | length).to_be_bytes());
                self.buf.put_slice(&header);
            }
        }
    }

    #[inline]
    fn pad(&mut self, data_len: usize) {
        match data_len % 4 {
            1 => self.buf.put_slice(&[0; 3]),
            2 => self.buf.put_slice(&[0; 2]),
            3 => self.buf.put_slice(&[0; 1]),
            _ => {}
        }
    }

    /// Writes an AVP with any code, flags and vendor, and raw data.
    #[inline]
    pub fn raw(&mut self, code: AvpCode, flags: AvpFlags, vendor: Option<VendorId>, data: &[u8]) {
        self.header(code, flags, vendor, data.len());
        self.buf.put_slice(data);
        self.pad(data.len());
    }

    /// Copies a complete, already encoded AVP (header included), adding padding if needed.
    #[inline]
    pub fn copy_encoded(&mut self, avp: &[u8]) {
        self.buf.put_slice(avp);
        self.pad(avp.len());
    }

    /// Writes an AVP with the definition's code, vendor and flags and raw data.
    #[inline]
    pub fn octets(&mut self, def: &AvpDef, data: &[u8]) {
        self.raw(def.code, def.flags, def.vendor, data);
    }
    /// Writes a UTF8String, DiameterIdentity or DiameterURI.
    #[inline]
    pub fn utf8(&mut self, def: &AvpDef, value: &str) {
        self.octets(def, value.as_bytes());
    }
    /// Writes an Unsigned32.
    #[inline]
    pub fn u32(&mut self, def: &AvpDef, value: u32) {
        self.header(def.code, def.flags, def.vendor, 4);
        self.buf.put_u32(value);
    }
    /// Writes an Unsigned64.
    #[inline]
    pub fn u64(&mut self, def: &AvpDef, value: u64) {
        self.header(def.code, def.flags, def.vendor, 8);
        self.buf.put_u64(value);
    }
    /// Writes an Integer32 or Enumerated.
    #[inline]
    pub fn i32(&mut self, def: &AvpDef, value: i32) {
        self.header(def.code, def.flags, def.vendor, 4);
        self.buf.put_i32(value);
    }
    /// Writes an Integer64.
    #[inline]
    pub fn i64(&mut self, def: &AvpDef, value: i64) {
        self.header(def.code, def.flags, def.vendor, 8);
        self.buf.put_i64(value);
    }
    /// Writes a Time.
    #[inline]
    pub fn time(&mut self, def: &AvpDef, value: DiameterTime) {
        self.u32(def, value.0);
    }
    /// Writes an Address holding an IP address.
    pub fn address(&mut self, def: &AvpDef, value: IpAddr) {
        match value {
            IpAddr::V4(ip) => self.address_family(def, 1, &ip.octets()),
            IpAddr::V6(ip) => self.address_family(def, 2, &ip.octets()),
        }
    }
    /// Writes an Address with any address family.
    pub fn address_family(&mut self, def: &AvpDef, family: u16, address: &[u8]) {
        let len = 2 + address.len();
        self.header(def.code, def.flags, def.vendor, len);
        self.buf.put_u16(family);
        self.buf.put_slice(address);
        self.pad(len);
    }

    /// Writes a Grouped AVP: `members` writes its AVPs, then the length is back-patched.
    #[inline]
    pub fn group(&mut self, def: &AvpDef, members: impl FnOnce(&mut AvpWriter<'_>)) {
        let start = self.buf.len();
        self.header(def.code, def.flags, def.vendor, 0);
        members(&mut AvpWriter { buf: self.buf });
        let length = (self.buf.len() - start) as u32;
        // The members are padded, so a Grouped AVP's length is a multiple of four already.
        let flags = u32::from(self.buf[start + 4]) << 24;
        self.buf[start + 4..start + 8].copy_from_slice(&(flags | length).to_be_bytes());
    }
}

/// Writes one message: the header, then AVPs through [`AvpWriter`] (this derefs to it).
pub struct MessageWriter<'b> {
    avps: AvpWriter<'b>,
    start: usize,
}

impl<'b> MessageWriter<'b> {
    /// Starts a message at the end of `buf`.
    pub fn new(
        buf: &'b mut BytesMut,
        flags: CommandFlags,
        command: CommandCode,
        application: ApplicationId,
        hop_by_hop: HopByHopId,
        end_to_end: EndToEndId,
    ) -> Self {
        let start = buf.len();
        let header = Header {
            length: 0,
            flags,
            command,
            application,
            hop_by_hop,
            end_to_end,
        };
        let mut fixed = [0u8; HEADER_LEN];
        header.write(&mut fixed);
        buf.reserve(256);
        buf.put_slice(&fixed);
        Self {
            avps: AvpWriter { buf },
            start,
        }
    }

    /// Patches the message length and returns it.
    #[inline]
    pub fn finish(self) -> usize {
        let buf = self.avps.buf;
        let length = buf.len() - self.start;
        buf[self.start + 1..self.start + 4].copy_from_slice(&(length as u32).to_be_bytes()[1..]);
        length
    }
}

impl<'b> Deref for MessageWriter<'b> {
    type Target = AvpWriter<'b>;
    fn deref(&self) -> &AvpWriter<'b> {
        &self.avps
    }
}

impl<'b> DerefMut for MessageWriter<'b> {
    fn deref_mut(&mut self) -> &mut AvpWriter<'b> {
        &mut self.avps
    }
}

/// Sets the T flag on an encoded request, for a retransmission after failover
/// (RFC 6733 section 5.5.4). Does nothing to a buffer too short to hold a header.
pub fn set_retransmit_flag(message: &mut [u8]) {
    if let Some(flags) = message.get_mut(4) {
        *flags |= CommandFlags::RETRANSMIT.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dictionary::{CC_TIME, GRANTED_SERVICE_UNIT, HOST_IP_ADDRESS, SESSION_ID};

    #[test]
    fn writes_padding_and_back_patches_lengths() {
        let mut buf = BytesMut::new();
        let mut w = MessageWriter::new(
            &mut buf,
            CommandFlags::REQUEST,
            CommandCode::CREDIT_CONTROL,
            ApplicationId::CREDIT_CONTROL,
            HopByHopId(1),
            EndToEndId(2),
        );
        w.utf8(&SESSION_ID, "abcde");
        w.group(&GRANTED_SERVICE_UNIT, |g| g.u32(&CC_TIME, 60));
        w.address(&HOST_IP_ADDRESS, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(w.finish(), 20 + 16 + 20 + 16);
        #[rustfmt::skip]
        let expected: &[u8] = &[
            1, 0, 0, 72, 0x80, 0, 1, 0x10, 0, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0, 2,
            0, 0, 1, 7, 0x40, 0, 0, 13, b'a', b'b', b'c', b'd', b'e', 0, 0, 0,
            0, 0, 1, 0xaf, 0x40, 0, 0, 20, 0, 0, 1, 0xa4, 0x40, 0, 0, 12, 0, 0, 0, 60,
            0, 0, 1, 1, 0x40, 0, 0, 14, 0, 1, 127, 0, 0, 1, 0, 0,
        ];
        assert_eq!(&buf[..], expected);
        set_retransmit_flag(&mut buf);
        assert_eq!(buf[4], 0x90);
    }
}
