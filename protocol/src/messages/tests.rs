//! Property tests for the typed messages: every generated valid message survives
//! encode -> decode unchanged, and no input, however mangled, makes a decoder panic.

use bytes::BytesMut;
use proptest::collection::vec;
use proptest::prelude::*;
use smallvec::SmallVec;

use super::*;
use crate::avp::DiameterTime;
use crate::dictionary::{
    AccountingRecordType, CcRequestType, FinalUnitAction, MultipleServicesIndicator,
    SubscriptionIdType, TerminationCause,
};
use crate::grammar::{Command, Envelope};
use crate::header::{ApplicationId, EndToEndId, HopByHopId};
use crate::message::MessageView;
use crate::result_code::ResultCode;

fn identity() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9.-]{0,30}"
}

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,40}"
}

fn service_unit() -> impl Strategy<Value = ServiceUnit> {
    (
        proptest::option::of(any::<u32>()),
        proptest::option::of(any::<u64>()),
        proptest::option::of(any::<u64>()),
        proptest::option::of(any::<u64>()),
        proptest::option::of(any::<u64>()),
    )
        .prop_map(|(t, total, input, output, units)| ServiceUnit {
            cc_time: t,
            cc_total_octets: total,
            cc_input_octets: input,
            cc_output_octets: output,
            cc_service_specific_units: units,
        })
}

fn mscc() -> impl Strategy<Value = MultipleServicesCreditControl> {
    (
        proptest::option::of(service_unit()),
        proptest::option::of(service_unit()),
        vec(service_unit(), 0..3),
        vec(any::<u32>(), 0..2),
        proptest::option::of(any::<u32>()),
        proptest::option::of(any::<u32>()),
        proptest::option::of(any::<u32>().prop_map(ResultCode)),
        proptest::option::of((0..3i32).prop_map(|a| FinalUnitIndication {
            final_unit_action: FinalUnitAction(a),
        })),
    )
        .prop_map(
            |(gsu, rsu, usu, sids, rg, vt, rc, fui)| MultipleServicesCreditControl {
                granted_service_unit: gsu,
                requested_service_unit: rsu,
                used_service_units: SmallVec::from_vec(usu),
                service_identifiers: SmallVec::from_vec(sids),
                rating_group: rg,
                validity_time: vt,
                result_code: rc,
                final_unit_indication: fui,
            },
        )
}

/// The owned parts of a generated message; the typed struct borrows from it.
#[derive(Debug, Clone)]
struct Strings {
    session_id: String,
    host: String,
    realm: String,
    other: String,
    subscribers: Vec<String>,
}

fn strings() -> impl Strategy<Value = Strings> {
    (
        text(),
        identity(),
        identity(),
        text(),
        vec("[0-9]{6,15}", 0..3),
    )
        .prop_map(|(session_id, host, realm, other, subscribers)| Strings {
            session_id,
            host,
            realm,
            other,
            subscribers,
        })
}

/// Encodes a message, checks the bytes parse and walk, decodes them as the same type and
/// compares with the original.
macro_rules! round_trip {
    ($ty:ident, $message:expr) => {{
        let mut buf = BytesMut::new();
        let message = $message;
        let envelope =
            Envelope::request(ApplicationId::CREDIT_CONTROL, HopByHopId(1), EndToEndId(2));
        let len = message.encode(envelope, &mut buf);
        assert_eq!(len, buf.len());
        let view = MessageView::parse(&buf).expect("our own encoding parses");
        assert_eq!(view.walk().map(|n| n > 0), Ok(true));
        let decoded = $ty::decode(&view).expect("our own encoding decodes");
        assert_eq!(decoded, message);
    }};
}

proptest! {
    #[test]
    fn ccr_round_trips(
        s in strings(),
        numbers in (any::<u32>(), 1..5i32, any::<u32>(), proptest::option::of(any::<u32>())),
        msccs in vec(mscc(), 0..3),
        usu in vec(service_unit(), 0..2),
        rsu in proptest::option::of(service_unit()),
    ) {
        let (auth, request_type, number, state) = numbers;
        let ccr = Ccr {
            session_id: &s.session_id,
            origin_host: &s.host,
            origin_realm: &s.realm,
            destination_realm: &s.realm,
            auth_application_id: auth,
            service_context_id: &s.other,
            cc_request_type: CcRequestType(request_type),
            cc_request_number: number,
            destination_host: Some(&s.host),
            user_name: None,
            origin_state_id: state,
            event_timestamp: state.map(DiameterTime),
            subscription_ids: s.subscribers.iter().map(|d| SubscriptionId {
                subscription_id_type: SubscriptionIdType::END_USER_E164,
                subscription_id_data: d,
            }).collect(),
            service_identifier: state,
            termination_cause: Some(TerminationCause::LOGOUT),
            requested_service_unit: rsu,
            used_service_units: SmallVec::from_vec(usu),
            multiple_services_indicator: Some(MultipleServicesIndicator::MULTIPLE_SERVICES_SUPPORTED),
            multiple_services_credit_control: SmallVec::from_vec(msccs),
        };
        round_trip!(Ccr, ccr);
    }

    #[test]
    fn cca_round_trips(
        s in strings(),
        result in any::<u32>(),
        msccs in vec(mscc(), 0..3),
        gsu in proptest::option::of(service_unit()),
    ) {
        let cca = Cca {
            session_id: &s.session_id,
            result_code: ResultCode(result),
            origin_host: &s.host,
            origin_realm: &s.realm,
            auth_application_id: 4,
            cc_request_type: CcRequestType::UPDATE_REQUEST,
            cc_request_number: result,
            user_name: Some(&s.other),
            granted_service_unit: gsu,
            multiple_services_credit_control: SmallVec::from_vec(msccs),
            validity_time: Some(result),
            error_message: Some(&s.other),
            ..Default::default()
        };
        round_trip!(Cca, cca);
    }

    #[test]
    fn acr_and_aca_round_trip(s in strings(), record in 1..5i32, number in any::<u32>(), usu in proptest::option::of(service_unit())) {
        let acr = Acr {
            session_id: &s.session_id,
            origin_host: &s.host,
            origin_realm: &s.realm,
            destination_realm: &s.realm,
            accounting_record_type: AccountingRecordType(record),
            accounting_record_number: number,
            acct_application_id: Some(3),
            user_name: Some(&s.other),
            subscription_ids: s.subscribers.iter().map(|d| SubscriptionId {
                subscription_id_type: SubscriptionIdType::END_USER_E164,
                subscription_id_data: d,
            }).collect(),
            rating_group: Some(number),
            used_service_unit: usu,
            termination_cause: Some(TerminationCause(record)),
            ..Default::default()
        };
        round_trip!(Acr, acr);
        let aca = Aca {
            session_id: &s.session_id,
            result_code: ResultCode(number),
            origin_host: &s.host,
            origin_realm: &s.realm,
            accounting_record_type: AccountingRecordType(record),
            accounting_record_number: number,
            error_message: Some(&s.other),
            ..Default::default()
        };
        round_trip!(Aca, aca);
    }

    #[test]
    fn peer_messages_round_trip(s in strings(), state in proptest::option::of(any::<u32>()), ip in any::<[u8; 4]>(), apps in vec(any::<u32>(), 0..4)) {
        let cer = Cer {
            origin_host: &s.host,
            origin_realm: &s.realm,
            host_ip_addresses: SmallVec::from_vec(vec![crate::avp::Address::Ip(ip.into())]),
            vendor_id: 0,
            product_name: &s.other,
            origin_state_id: state,
            auth_application_ids: SmallVec::from_vec(apps.clone()),
            acct_application_ids: SmallVec::from_vec(apps),
            vendor_specific_application_ids: SmallVec::from_vec(vec![VendorSpecificApplicationId {
                vendor_id: 10415,
                auth_application_id: Some(4),
                acct_application_id: None,
            }]),
            ..Default::default()
        };
        round_trip!(Cer, cer);
        round_trip!(Dwr, Dwr { origin_host: &s.host, origin_realm: &s.realm, origin_state_id: state });
        round_trip!(Dpr, Dpr {
            origin_host: &s.host,
            origin_realm: &s.realm,
            disconnect_cause: crate::dictionary::DisconnectCause::REBOOTING,
        });
        round_trip!(Asr, Asr {
            session_id: &s.session_id,
            origin_host: &s.host,
            origin_realm: &s.realm,
            destination_realm: &s.realm,
            destination_host: &s.host,
            auth_application_id: 4,
            termination_cause: Some(TerminationCause::ADMINISTRATIVE),
            error_message: Some(&s.other),
            ..Default::default()
        });
    }

    /// Arbitrary bytes behind a valid-looking header: the decoders return errors, never panic.
    #[test]
    fn arbitrary_bodies_never_panic(body in vec(any::<u8>(), 0..512), command in prop::sample::select(vec![257u32, 258, 271, 272, 274, 280, 282, 999]), flags in any::<u8>()) {
        let mut bytes = vec![1, 0, 0, 0, flags, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0, 2];
        bytes[5..8].copy_from_slice(&command.to_be_bytes()[1..]);
        bytes.extend_from_slice(&body);
        bytes.truncate(bytes.len() & !3);
        let len = bytes.len() as u32;
        bytes[1..4].copy_from_slice(&len.to_be_bytes()[1..]);
        exercise(&bytes);
    }

    /// A valid CCR with bytes overwritten at random: every decoder copes.
    #[test]
    fn mutated_messages_never_panic(edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut bytes = encoded_ccr();
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        exercise(&bytes);
    }

    /// Random bytes anywhere, header included.
    #[test]
    fn random_bytes_never_panic(bytes in vec(any::<u8>(), 0..256)) {
        exercise(&bytes);
    }
}

fn encoded_ccr() -> Vec<u8> {
    let hex = include_str!("../../../../shared/vectors/ccr-update.hex");
    hex::decode(hex.trim()).expect("vector is hex")
}

/// Runs every decoder over `bytes`; answers the errors the way a server would.
fn exercise(bytes: &[u8]) {
    let _ = crate::framing::frame_length(bytes, 65536);
    let Ok(view) = MessageView::parse(bytes) else {
        return;
    };
    let _ = view.walk();
    let _ = view.session_id();
    let results = [
        Ccr::decode(&view).err(),
        Cca::decode(&view).err(),
        Acr::decode(&view).err(),
        Aca::decode(&view).err(),
        Cer::decode(&view).err(),
        Cea::decode(&view).err(),
        Dwr::decode(&view).err(),
        Dwa::decode(&view).err(),
        Dpr::decode(&view).err(),
        Dpa::decode(&view).err(),
        Asr::decode(&view).err(),
        Asa::decode(&view).err(),
        Rar::decode(&view).err(),
        Raa::decode(&view).err(),
        ErrorAnswer::decode(&view).err(),
    ];
    for error in results.into_iter().flatten() {
        let _ = error.disposition();
        let mut out = BytesMut::new();
        if let Some(len) =
            encode_error_answer(&view, &error, "pdf.example.net", "example.net", &mut out)
        {
            let answer = MessageView::parse(&out[..len]).expect("error answers parse");
            let decoded = ErrorAnswer::decode(&answer).expect("error answers decode");
            assert_eq!(decoded.result_code, error.result_code());
        }
    }
}

#[test]
fn reference_ccr_decodes_as_documented() {
    let bytes = encoded_ccr();
    let view = MessageView::parse(&bytes).unwrap();
    let ccr = Ccr::decode(&view).unwrap();
    assert_eq!(
        ccr.session_id,
        "gw1.example.net;1700000000;42;sub-491700000042"
    );
    assert_eq!(ccr.service_context_id, "32251@3gpp.org");
    assert_eq!(ccr.cc_request_type, CcRequestType::UPDATE_REQUEST);
    assert_eq!(ccr.subscription_ids[0].subscription_id_data, "491700000042");
    let mscc = &ccr.multiple_services_credit_control[0];
    assert_eq!(mscc.requested_service_unit, Some(ServiceUnit::default()));
    assert_eq!(mscc.used_service_units[0].cc_time, Some(120));
    assert_eq!(mscc.used_service_units[0].cc_total_octets, Some(5_242_880));
    assert_eq!(mscc.rating_group, Some(10));
}

/// Found by fuzzing (fuzz/corpus/decode_message/seed-regression-error-answer-copies-e-bit):
/// a request with the E bit and a bad AVP got a 5014 answer that kept the E bit.
#[test]
fn regression_error_answer_sets_e_only_for_protocol_errors() {
    let request =
        hex::decode("01000024a0000118000000000000000100000002000001164000000d0000000000000000")
            .expect("hex");
    let view = MessageView::parse(&request).expect("header");
    let error = view.walk().expect_err("Origin-State-Id has 5 bytes");
    let mut out = BytesMut::new();
    encode_error_answer(&view, &error, "pdf.example.net", "example.net", &mut out)
        .expect("answerable");
    let answer = MessageView::parse(&out).expect("answer");
    assert_eq!(error.result_code(), ResultCode::INVALID_AVP_LENGTH);
    assert!(
        !answer.header().flags.is_error(),
        "5014 is not a protocol error"
    );
}

/// Found by fuzzing (seed-regression-failed-avp-unpadded-data): a Failed-AVP whose content is
/// not a multiple of four grew by its padding in a decode/encode round trip.
#[test]
fn regression_failed_avp_with_unpadded_content_round_trips() {
    let bytes = hex::decode(
        "01000048000001180000000000000007000000080000010c4000000c000007d1000001084000000b612e\
         6200000001284000000962000000000001174000000d0102030405000000",
    )
    .expect("hex");
    let view = MessageView::parse(&bytes).expect("header");
    let dwa = Dwa::decode(&view).expect("a DWA");
    assert_eq!(dwa.failed_avp.map(|f| f.0.len()), Some(5));
    let mut out = BytesMut::new();
    dwa.encode(Envelope::answer_to(view.header()), &mut out);
    assert_eq!(&out[..], &bytes[..], "re-encoded byte for byte");
}
