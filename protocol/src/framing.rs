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

#[cfg(all(test, feature = "tokio"))]
mod tests {
    use bytes::{BufMut, BytesMut};
    use futures::StreamExt;
    use tokio::io::AsyncWriteExt;
    use tokio_util::codec::{Decoder, FramedRead};

    use super::*;

    /// Three messages of different lengths, as a peer would send them back to back.
    fn stream() -> (Vec<u8>, Vec<Vec<u8>>) {
        let ccr = hex::decode(include_str!("../../../shared/vectors/ccr-update.hex").trim())
            .expect("vector is hex");
        let cca = hex::decode(include_str!("../../../shared/vectors/cca-update.hex").trim())
            .expect("vector is hex");
        let dwr = vec![
            1, 0, 0, 20, 0x80, 0, 1, 0x18, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 9,
        ];
        let messages = vec![ccr, dwr, cca];
        (messages.concat(), messages)
    }

    #[test]
    fn one_byte_at_a_time() {
        let (wire, messages) = stream();
        let mut codec = DiameterCodec::default();
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        for &byte in &wire {
            buf.put_u8(byte);
            while let Some(frame) = codec.decode(&mut buf).unwrap() {
                frames.push(frame.to_vec());
            }
        }
        assert_eq!(frames, messages);
        assert!(buf.is_empty());
        assert_eq!(codec.decode_eof(&mut buf).unwrap(), None);
    }

    #[test]
    fn several_messages_per_read() {
        let (wire, messages) = stream();
        let mut codec = DiameterCodec::default();
        let mut buf = BytesMut::from(&wire[..]);
        let mut frames = Vec::new();
        while let Some(frame) = codec.decode(&mut buf).unwrap() {
            frames.push(frame.to_vec());
        }
        assert_eq!(frames, messages);
    }

    #[test]
    fn truncated_at_eof_is_an_error() {
        let (wire, _) = stream();
        let mut codec = DiameterCodec::default();
        for cut in [1, 3, 4, 19, 20, 319, 321] {
            let mut buf = BytesMut::from(&wire[..cut]);
            let result = std::iter::from_fn(|| codec.decode_eof(&mut buf).transpose())
                .collect::<Result<Vec<_>, _>>();
            assert!(
                matches!(result, Err(FramingError::TruncatedAtEof(_))),
                "cut at {cut}: {result:?}"
            );
        }
    }

    #[test]
    fn refuses_bad_headers_before_reserving() {
        let mut codec = DiameterCodec::new(1024);
        let cases: [(&[u8], DecodeError); 4] = [
            (
                &[1, 0, 4, 4],
                DecodeError::MessageTooLarge {
                    length: 1028,
                    max: 1024,
                },
            ),
            (
                &[1, 0xff, 0xff, 0xfc],
                DecodeError::MessageTooLarge {
                    length: 0xff_fffc,
                    max: 1024,
                },
            ),
            (
                &[2, 0, 0, 20],
                DecodeError::UnsupportedVersion { version: 2 },
            ),
            (
                &[1, 0, 0, 22],
                DecodeError::MessageLengthUnaligned { length: 22 },
            ),
        ];
        for (head, want) in cases {
            let mut buf = BytesMut::with_capacity(8);
            buf.put_slice(head);
            match codec.decode(&mut buf) {
                Err(FramingError::Malformed(got)) => assert_eq!(got, want),
                other => panic!("{head:?}: {other:?}"),
            }
            assert!(buf.capacity() < 64, "reserved memory for a refused frame");
            assert!(want.closes_connection());
        }
        let mut short = BytesMut::from(&[1u8, 0, 0, 12][..]);
        assert!(matches!(
            codec.decode(&mut short),
            Err(FramingError::Malformed(DecodeError::MessageTooShort {
                length: 12
            }))
        ));
    }

    #[tokio::test]
    async fn framed_read_over_a_trickling_stream() {
        let (wire, messages) = stream();
        let (mut tx, rx) = tokio::io::duplex(7);
        let writer = tokio::spawn(async move {
            for chunk in wire.chunks(5) {
                tx.write_all(chunk).await.unwrap();
            }
        });
        let frames: Vec<Vec<u8>> = FramedRead::new(rx, DiameterCodec::default())
            .map(|frame| frame.unwrap().to_vec())
            .collect()
            .await;
        writer.await.unwrap();
        assert_eq!(frames, messages);
    }
}
