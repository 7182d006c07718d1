//! Feeds arbitrary bytes through `DiameterCodec` (RFC 6733 section 3 over TCP) as a stream
//! arriving in reads of fuzzer-chosen sizes, the way tokio-util's `FramedRead` drives a
//! `Decoder`, and checks that:
//!
//! - every frame is at most the configured maximum, fills exactly its Message Length and
//!   parses as a message;
//! - the frames are the same, whatever the read sizes, as framing the whole stream at once
//!   with `frame_length`;
//! - a framing error is a typed `FramingError::Malformed` that closes the connection, and
//!   a stream cut in the middle of a message ends with `TruncatedAtEof`.
//!
//! Input layout: byte 0 picks the maximum message length, bytes 1..=8 the read sizes
//! (cycled), the rest is the stream.

#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use protocol::error::DecodeError;
use protocol::framing::{frame_length, DiameterCodec, FramingError};
use protocol::message::MessageView;
use tokio_util::codec::Decoder;

const CONTROL_LEN: usize = 9;

fuzz_target!(|data: &[u8]| {
    let Some((control, stream)) = data.split_at_checked(CONTROL_LEN) else {
        return;
    };
    // The default, or from 4 bytes (below the header: every frame is too large) up to
    // 64 KiB in steps of 257 bytes, so that some maxima are not multiples of four.
    let max = match control[0] {
        0 => protocol::framing::DEFAULT_MAX_MESSAGE_LEN,
        n => u32::from(n) * 257 - 253,
    };
    // Read sizes 1..=256, cycled; a zero byte means "deliver everything left at once".
    let reads: Vec<usize> = control[1..].iter().map(|&b| usize::from(b)).collect();

    let expected = frame_at_once(stream, max);
    let mut codec = DiameterCodec::new(max);
    assert_eq!(codec.max_message_len(), max);
    let mut buf = BytesMut::new();
    let mut frames: Vec<Bytes> = Vec::new();
    let mut error: Option<DecodeError> = None;
    let mut offset = 0;
    let mut step = 0;
    'stream: while offset < stream.len() {
        let read = match reads[step % reads.len()] {
            0 => stream.len() - offset,
            n => n.min(stream.len() - offset),
        };
        step += 1;
        buf.extend_from_slice(&stream[offset..offset + read]);
        offset += read;
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(e) => {
                    error = Some(malformed(e));
                    break 'stream;
                }
            }
        }
    }
    if error.is_none() {
        // End of stream: what is left must be nothing, a frame, or a truncated message.
        loop {
            match codec.decode_eof(&mut buf) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => {
                    assert!(buf.is_empty());
                    break;
                }
                Err(FramingError::TruncatedAtEof(left)) => {
                    assert_eq!(left, buf.len());
                    assert!(left > 0);
                    break;
                }
                Err(e) => {
                    error = Some(malformed(e));
                    break;
                }
            }
        }
    }

    for frame in &frames {
        assert!(
            frame.len() <= max as usize,
            "frame of {} over max {max}",
            frame.len()
        );
        let view = MessageView::parse(frame)
            .unwrap_or_else(|e| panic!("a frame the codec yielded does not parse: {e}"));
        assert_eq!(view.header().length as usize, frame.len());
        // Typed errors only (the result does not matter, a panic would).
        let _ = view.walk();
    }
    let (expected_frames, expected_error) = expected;
    assert_eq!(
        frames, expected_frames,
        "framing depends on read sizes {reads:?}"
    );
    assert_eq!(
        error, expected_error,
        "framing error depends on read sizes {reads:?}"
    );
    let consumed: usize = frames.iter().map(Bytes::len).sum();
    assert_eq!(&stream[..consumed], &frames.concat()[..]);
});

/// The framing error the codec reported, which must be a malformed stream that closes the
/// connection (IO errors cannot happen in memory, nor `TruncatedAtEof` before the end).
fn malformed(error: FramingError) -> DecodeError {
    match error {
        FramingError::Malformed(e) => {
            assert!(
                e.closes_connection(),
                "framing error {e} does not close the connection"
            );
            e
        }
        other => panic!("unexpected framing error {other}"),
    }
}

/// The reference: the whole stream framed in one pass with the sans-IO `frame_length`.
fn frame_at_once(mut stream: &[u8], max: u32) -> (Vec<Bytes>, Option<DecodeError>) {
    let mut frames = Vec::new();
    loop {
        match frame_length(stream, max) {
            Ok(Some(length)) if length <= stream.len() => {
                let (frame, rest) = stream.split_at(length);
                frames.push(Bytes::copy_from_slice(frame));
                stream = rest;
            }
            Ok(_) => return (frames, None),
            Err(e) => return (frames, Some(e)),
        }
    }
}
