//! Decodes arbitrary bytes as one Diameter message off the wire (RFC 6733 section 3) through
//! every layer of the codec, with the round-trip oracle of hickory-dns's
//! `fuzz/fuzz_targets/message.rs`: whatever a typed decoder accepts must encode, decode again
//! to the same value, and re-encode to the same bytes.
//!
//! For requests that fail to decode, the error answer built by `encode_error_answer` must
//! parse back, as the answer to that request, with the Result-Code the error maps to.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use protocol::avp::AvpIter;
use protocol::error::{DecodeError, Disposition, FailedAvp};
use protocol::framing::{frame_length, DEFAULT_MAX_MESSAGE_LEN};
use protocol::grammar::{Command, Envelope, FailedAvpData};
use protocol::header::CommandFlags;
use protocol::message::{Message, MessageView};
use protocol::messages::{
    encode_error_answer, Aca, Acr, Asa, Asr, Cca, Ccr, Cea, Cer, Dpa, Dpr, Dwa, Dwr, ErrorAnswer,
    Raa, Rar,
};

const ORIGIN_HOST: &str = "fuzz.example.net";
const ORIGIN_REALM: &str = "example.net";

fuzz_target!(|data: &[u8]| {
    // The whole input as one message, as a reader handed exactly these bytes would see it.
    if let Ok(view) = MessageView::parse(data) {
        check_message(&view);
    }
    // The input as the start of a stream: the first frame, if the framing layer finds one.
    if let Ok(Some(length)) = frame_length(data, DEFAULT_MAX_MESSAGE_LEN) {
        assert!(length <= DEFAULT_MAX_MESSAGE_LEN as usize);
        if let Some(frame) = data.get(..length) {
            if frame.len() < data.len() {
                let view = MessageView::parse(frame).expect("a frame that framing accepted");
                check_message(&view);
            }
        }
    }
});

/// Decodes the view with a typed decoder; if that succeeds, encodes the value with the same
/// envelope, decodes it again and checks that nothing changed.
macro_rules! round_trip {
    ($ty:ident, $view:expr) => {{
        let view: &MessageView<'_> = &$view;
        // Declared first so that it outlives both decoded values, which must share a lifetime
        // to be compared.
        let mut buf = BytesMut::new();
        let decoded = $ty::decode(view);
        let checked = match decoded {
            Ok(first) => {
                let header = view.header();
                let envelope = Envelope {
                    application: header.application,
                    hop_by_hop: header.hop_by_hop,
                    end_to_end: header.end_to_end,
                    retransmit: header.flags.is_retransmit() && header.flags.is_request(),
                };
                let len = first.encode(envelope, &mut buf);
                assert_eq!(len, buf.len());
                let again = MessageView::parse(&buf).expect(concat!(
                    "an encoded ",
                    stringify!($ty),
                    " parses"
                ));
                assert_eq!(again.header().command, header.command);
                assert_eq!(again.header().application, header.application);
                assert_eq!(again.header().flags.is_request(), header.flags.is_request());
                // Not `walk()`: a Failed-AVP holds whatever was wrong with another message.
                assert!(again.avps().all(|avp| avp.is_ok()));
                let second = $ty::decode(&again).unwrap_or_else(|error| {
                    panic!(
                        "{} re-encoded from {:?} does not decode: {error}\n{:02x?}",
                        stringify!($ty),
                        first,
                        &buf[..]
                    )
                });
                assert_eq!(first, second, "{} changed in a round trip", stringify!($ty));
                // Encoding is stable: what decodes from our encoding encodes to the same bytes.
                let mut twice = BytesMut::new();
                second.encode(envelope, &mut twice);
                assert_eq!(buf, twice, "{} encodes differently twice", stringify!($ty));
                Ok(())
            }
            Err(error) => Err(error),
        };
        checked
    }};
}

/// Whether the message has a top-level Failed-AVP whose data is not a multiple of four bytes.
fn check_message(view: &MessageView<'_>) {
    let owned = Message::decode(bytes::Bytes::copy_from_slice(view.bytes()))
        .expect("MessageView accepted these bytes");
    assert_eq!(owned.header(), view.header());
    let _ = view.session_id();
    let flags = view.check_flags();
    let walked = view.walk();
    let mut errors: Vec<DecodeError> = Vec::new();
    errors.extend(flags.err());
    errors.extend(walked.err());

    macro_rules! typed {
        ($($ty:ident),*) => {$(
            match round_trip!($ty, view) {
                Ok(()) => {}
                Err(error) => errors.push(error),
            }
        )*};
    }
    typed!(Cer, Cea, Dwr, Dwa, Dpr, Dpa, Acr, Aca, Ccr, Cca, Asr, Asa, Rar, Raa);

    // Declared before `first` so that it outlives it: `first` and `second` must share a
    // lifetime to be compared.
    let mut buf = BytesMut::new();
    match ErrorAnswer::decode(view) {
        Ok(first) => {
            // Re-encoding needs the request it answers; the answer's own header stands in:
            // same command, application and identifiers, and the R bit is cleared anyway.
            let len = first.encode(view, &mut buf);
            assert_eq!(len, buf.len());
            let again = MessageView::parse(&buf).expect("an encoded error answer parses");
            assert_eq!(again.header().command, view.header().command);
            assert_eq!(again.header().hop_by_hop, view.header().hop_by_hop);
            assert_eq!(again.header().end_to_end, view.header().end_to_end);
            let second = ErrorAnswer::decode(&again).expect("an encoded error answer decodes");
            assert_eq!(first, second, "ErrorAnswer changed in a round trip");
            let mut twice = BytesMut::new();
            second.encode(&again, &mut twice);
            assert_eq!(buf, twice, "ErrorAnswer encodes differently twice");
        }
        Err(error) => {
            if view.header().is_request() {
                assert!(matches!(error, DecodeError::CommandUnsupported { .. }));
            }
        }
    }

    if view.header().is_request() {
        for error in &errors {
            check_error_answer(view, error);
        }
    }
}

/// Builds the answer to a request that failed with `error` and checks it.
fn check_error_answer(request: &MessageView<'_>, error: &DecodeError) {
    let mut buf = BytesMut::new();
    let written = encode_error_answer(request, error, ORIGIN_HOST, ORIGIN_REALM, &mut buf);
    let Disposition::Answer {
        result_code,
        failed_avp,
    } = error.disposition()
    else {
        assert_eq!(
            written, None,
            "{error} closes the connection, yet was answered"
        );
        assert!(buf.is_empty());
        return;
    };
    let len = written.expect("a request with an answerable error is answered");
    assert_eq!(len, buf.len());
    let answer = MessageView::parse(&buf).unwrap_or_else(|e| {
        panic!(
            "the answer to {error} does not parse: {e}\n{:02x?}",
            &buf[..]
        )
    });
    let (request_header, answer_header) = (request.header(), answer.header());
    assert!(!answer_header.is_request());
    assert_eq!(answer_header.command, request_header.command);
    assert_eq!(answer_header.application, request_header.application);
    assert_eq!(answer_header.hop_by_hop, request_header.hop_by_hop);
    assert_eq!(answer_header.end_to_end, request_header.end_to_end);
    // RFC 6733 section 3: the E bit marks protocol errors (3xxx) only.
    assert_eq!(
        answer_header.flags.is_error(),
        result_code.is_protocol_error(),
        "E bit of the answer to {error}: {:02x?}",
        &buf[..]
    );
    assert!(!answer_header.flags.contains(CommandFlags::RETRANSMIT));
    answer.check_flags().expect("an answer's flags are valid");
    // Not `walk()`: the Failed-AVP holds the offending AVP, which may be invalid for its type.
    assert!(
        answer.avps().all(|avp| avp.is_ok()),
        "{error}: {:02x?}",
        &buf[..]
    );
    let decoded = ErrorAnswer::decode(&answer).unwrap_or_else(|e| {
        panic!(
            "the answer to {error} does not decode: {e}\n{:02x?}",
            &buf[..]
        )
    });
    assert_eq!(decoded.result_code, result_code);
    assert_eq!(decoded.origin_host, ORIGIN_HOST);
    assert_eq!(decoded.origin_realm, ORIGIN_REALM);
    assert_eq!(decoded.failed_avp.is_some(), failed_avp.is_some());
    if let (Some(expected), Some(FailedAvpData(data))) = (failed_avp, decoded.failed_avp) {
        let quoted = AvpIter::new(data, 0)
            .next()
            .and_then(Result::ok)
            .unwrap_or_else(|| panic!("the Failed-AVP for {error} holds no AVP: {data:02x?}"));
        match expected {
            FailedAvp::Copy(at) => {
                assert_eq!(quoted.code(), at.code);
                let (start, end) = (at.offset as usize, (at.offset + at.length) as usize);
                if let Some(original) = request.bytes().get(start..end) {
                    assert!(
                        data.starts_with(original),
                        "Failed-AVP for {error} is not a copy"
                    );
                }
            }
            FailedAvp::ZeroFilled { code, vendor, .. } => {
                assert_eq!((quoted.code(), quoted.vendor_id()), (code, vendor));
                assert!(quoted.data().iter().all(|&b| b == 0));
            }
        }
    }
    if let Some(session_id) = request.session_id() {
        assert_eq!(decoded.session_id, Some(session_id));
    }
}
