//! Shared inputs for the benchmarks (the reference vectors in ../shared/vectors).
//!
//! The vectors were encoded by Erlang/OTP's `diameter` (see ../shared/vectors/README.md), so
//! they are the common input for our codec and the crates.io peers alike. The CCA that the
//! encode benchmark writes is [`reference_cca`]; a test below checks that it encodes to the
//! bytes of `cca-update.hex`.

#![forbid(unsafe_code)]

use protocol::dictionary::{CcRequestType, FinalUnitAction};
use protocol::header::{EndToEndId, Header, HopByHopId};
use protocol::messages::{Cca, FinalUnitIndication, MultipleServicesCreditControl, ServiceUnit};
use protocol::result_code::ResultCode;
use smallvec::smallvec;

/// The reference CCR-UPDATE (320 bytes), hex as OTP wrote it.
pub const CCR_UPDATE_HEX: &str = include_str!("../../../shared/vectors/ccr-update.hex");
/// The reference CCA-UPDATE (264 bytes), hex as OTP wrote it.
pub const CCA_UPDATE_HEX: &str = include_str!("../../../shared/vectors/cca-update.hex");

/// Hop-by-Hop Identifier of all the reference vectors.
pub const VECTOR_HOP_BY_HOP: HopByHopId = HopByHopId(0x0000_002a);
/// End-to-End Identifier of all the reference vectors.
pub const VECTOR_END_TO_END: EndToEndId = EndToEndId(0x5a5a_0001);

/// Decodes a one-line hex vector.
///
/// # Panics
/// If the text is not hex: the vectors are fixed files, so this is a broken checkout.
pub fn from_hex(text: &str) -> Vec<u8> {
    hex::decode(text.trim()).expect("reference vector is not hex")
}

/// The reference CCR-UPDATE as bytes.
pub fn ccr_update() -> Vec<u8> {
    from_hex(CCR_UPDATE_HEX)
}

/// The reference CCA-UPDATE as bytes.
pub fn cca_update() -> Vec<u8> {
    from_hex(CCA_UPDATE_HEX)
}

/// The Session-Id the reference CCR and CCA carry.
pub const SESSION_ID: &str = "gw1.example.net;1700000000;42;sub-491700000042";

/// The CCA of `cca-update.hex` as a typed message: Session-Id, Result-Code 2001,
/// Origin-Host "ocs1.ocs.example.net", Origin-Realm "ocs.example.net", Auth-Application-Id 4,
/// CC-Request-Type UPDATE_REQUEST, CC-Request-Number 7 and one MSCC { Granted-Service-Unit
/// { CC-Total-Octets 10485760 }, Rating-Group 10, Validity-Time 600, Result-Code 2001,
/// Final-Unit-Indication { Final-Unit-Action TERMINATE } }.
pub fn reference_cca(session_id: &str) -> Cca<'_> {
    Cca {
        session_id,
        result_code: ResultCode::SUCCESS,
        origin_host: "ocs1.ocs.example.net",
        origin_realm: "ocs.example.net",
        auth_application_id: 4,
        cc_request_type: CcRequestType::UPDATE_REQUEST,
        cc_request_number: 7,
        multiple_services_credit_control: smallvec![MultipleServicesCreditControl {
            granted_service_unit: Some(ServiceUnit {
                cc_total_octets: Some(10_485_760),
                ..ServiceUnit::default()
            }),
            rating_group: Some(10),
            validity_time: Some(600),
            result_code: Some(ResultCode::SUCCESS),
            final_unit_indication: Some(FinalUnitIndication {
                final_unit_action: FinalUnitAction::TERMINATE,
            }),
            ..MultipleServicesCreditControl::default()
        }],
        ..Cca::default()
    }
}

/// The header of the reference CCR, whose identifiers the CCA answers with.
///
/// # Panics
/// If the vector does not parse (a broken checkout).
pub fn ccr_header(ccr: &[u8]) -> Header {
    *protocol::message::MessageView::parse(ccr)
        .expect("reference CCR parses")
        .header()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use protocol::grammar::{Command, Envelope};
    use protocol::message::MessageView;

    #[test]
    fn vectors_have_the_documented_lengths() {
        assert_eq!(ccr_update().len(), 320);
        assert_eq!(cca_update().len(), 264);
    }

    #[test]
    fn reference_cca_encodes_to_the_otp_vector() {
        let ccr = ccr_update();
        let header = ccr_header(&ccr);
        assert_eq!(header.hop_by_hop, VECTOR_HOP_BY_HOP);
        assert_eq!(header.end_to_end, VECTOR_END_TO_END);
        let cca = reference_cca(SESSION_ID);
        let mut buf = BytesMut::new();
        let len = cca.encode(Envelope::answer_to(&header), &mut buf);
        assert_eq!(len, buf.len());
        // The answer takes its identifiers and application from the CCR, and the CCA's
        // flags (P only) from the grammar: so the whole message, header included, must be
        // the OTP bytes.
        assert_eq!(hex::encode_upper(&buf), CCA_UPDATE_HEX.trim());
        assert_eq!(&buf[..], &cca_update()[..]);
    }

    #[test]
    fn reference_cca_round_trips_through_the_otp_vector() {
        let otp = cca_update();
        let view = MessageView::parse(&otp).expect("OTP CCA parses");
        let decoded = Cca::decode(&view).expect("OTP CCA decodes");
        assert_eq!(decoded, reference_cca(SESSION_ID));
    }

    #[test]
    fn reference_ccr_walks_and_decodes() {
        let ccr = ccr_update();
        let view = MessageView::parse(&ccr).expect("CCR parses");
        assert_eq!(view.walk().expect("CCR walks"), 18);
        let typed = protocol::messages::Ccr::decode(&view).expect("CCR decodes");
        assert_eq!(typed.session_id, SESSION_ID);
        assert_eq!(typed.cc_request_number, 7);
    }
}
