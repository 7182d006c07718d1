//! Stream framing (RFC 6733 section 3 over TCP): finding message boundaries in a byte stream.
//!
//! [`frame_length`] is the sans-IO core: given the bytes received so far, it says how long
//! the next message is, or that more bytes are needed, or that the stream is garbage. It
//! checks the version, the minimum length, 4-byte alignment and the configured maximum from
//! the first four bytes, before anything reserves memory for the frame. [`DiameterCodec`]
//! wraps it as a tokio-util `Decoder`/`Encoder` that yields frozen `Bytes` frames.
//!
//! A framing error cannot be answered: the stream cannot be re-synchronised, so the
//! connection is closed (see [`DecodeError::disposition`]).

use crate::error::DecodeError;
use crate::header::{check_message_length, read_u24, VERSION};

/// The default maximum message size: 64 KiB.
pub const DEFAULT_MAX_MESSAGE_LEN: u32 = 64 * 1024;

/// The length of the message at the start of `buf`: `Ok(None)` while fewer than four bytes
/// have arrived, an error if the version or length field is invalid.
///
/// ```
/// use protocol::framing::frame_length;
/// assert_eq!(frame_length(&[1, 0], 65536), Ok(None));
/// assert_eq!(frame_length(&[1, 0, 0, 20, 0x80], 65536), Ok(Some(20)));
/// assert!(frame_length(&[2, 0, 0, 20], 65536).is_err());
/// ```
pub fn frame_length(buf: &[u8], max: u32) -> Result<Option<usize>, DecodeError> {
    let Some(first) = buf.first_chunk::<4>() else {
        return Ok(None);
    };
    if first[0] != VERSION {
        return Err(DecodeError::UnsupportedVersion { version: first[0] });
    }
    let length = read_u24(&first[1..]);
    check_message_length(length, max)?;
    Ok(Some(length as usize))
}

#[cfg(feature = "tokio")]
pub use self::codec::DiameterCodec;

#[cfg(feature = "tokio")]
mod codec {
    use bytes::{Bytes, BytesMut};
    use tokio_util::codec::{Decoder, Encoder};

    use super::{frame_length, DEFAULT_MAX_MESSAGE_LEN};
    use crate::error::DecodeError;

    /// A tokio-util codec for Diameter over a stream: decodes into frozen `Bytes` holding
    /// exactly one message each, encodes already-encoded messages.
    #[derive(Clone, Copy, Debug)]
    pub struct DiameterCodec {
        max_message_len: u32,
    }

    impl DiameterCodec {
        /// A codec refusing messages longer than `max_message_len` bytes.
        pub fn new(max_message_len: u32) -> Self {
            Self { max_message_len }
        }

        /// The configured maximum.
        pub fn max_message_len(&self) -> u32 {
            self.max_message_len
        }
    }

    impl Default for DiameterCodec {
        fn default() -> Self {
            Self::new(DEFAULT_MAX_MESSAGE_LEN)
        }
    }

    /// A framing failure: the stream is unusable (a bad header) or the socket failed.
    #[derive(Debug, thiserror::Error)]
    #[non_exhaustive]
    pub enum FramingError {
        /// The bytes received cannot be a Diameter message: close the connection.
        #[error("framing error: {0}")]
        Malformed(#[from] DecodeError),
        /// The stream ended in the middle of a message.
        #[error("connection closed with {0} bytes of an incomplete message")]
        TruncatedAtEof(usize),
        /// The transport failed.
        #[error(transparent)]
        Io(#[from] std::io::Error),
    }

    impl Decoder for DiameterCodec {
        type Item = Bytes;
        type Error = FramingError;

        fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, FramingError> {
            let Some(length) = frame_length(src, self.max_message_len)? else {
                return Ok(None);
            };
            if src.len() < length {
                // The length is validated, so reserving for the whole frame is bounded.
                src.reserve(length - src.len());
                return Ok(None);
            }
            Ok(Some(src.split_to(length).freeze()))
        }

        fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, FramingError> {
            match self.decode(src)? {
                Some(frame) => Ok(Some(frame)),
                None if src.is_empty() => Ok(None),
                None => Err(FramingError::TruncatedAtEof(src.len())),
            }
        }
    }

    impl Encoder<Bytes> for DiameterCodec {
        type Error = FramingError;

        fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> Result<(), FramingError> {
            dst.extend_from_slice(&item);
            Ok(())
        }
    }

    impl Encoder<&[u8]> for DiameterCodec {
        type Error = FramingError;

        fn encode(&mut self, item: &[u8], dst: &mut BytesMut) -> Result<(), FramingError> {
            dst.extend_from_slice(item);
            Ok(())
        }
    }
}

#[cfg(feature = "tokio")]
pub use self::codec::FramingError;
