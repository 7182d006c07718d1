//! Encodes a Credit-Control-Request the way the gateway does, decodes it back (as a lazy AVP
//! walk and as a typed view), decodes the Erlang/OTP reference CCR, and shows the error
//! answer to a broken copy of it. Run: `cargo run -p diameter-protocol --example ccr`.

use bytes::BytesMut;
use protocol::avp::AvpIter;
use protocol::dictionary::{self, CcRequestType, MultipleServicesIndicator, SubscriptionIdType};
use protocol::grammar::{Command, Envelope};
use protocol::header::{ApplicationId, EndToEndId, HopByHopId};
use protocol::message::MessageView;
use protocol::messages::{
    encode_error_answer, Ccr, ErrorAnswer, MultipleServicesCreditControl, ServiceUnit,
    SubscriptionId,
};
use smallvec::smallvec;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Declared first: the decoded view borrows from it and is compared with `ccr`.
    let mut buf = BytesMut::new();
    let ccr = Ccr {
        session_id: "gw1.example.net;1700000000;42;sub-491700000042",
        origin_host: "gw1.example.net",
        origin_realm: "example.net",
        destination_realm: "ocs.example.net",
        auth_application_id: ApplicationId::CREDIT_CONTROL.0,
        service_context_id: "32251@3gpp.org",
        cc_request_type: CcRequestType::UPDATE_REQUEST,
        cc_request_number: 7,
        subscription_ids: smallvec![SubscriptionId {
            subscription_id_type: SubscriptionIdType::END_USER_E164,
            subscription_id_data: "491700000042",
        }],
        multiple_services_indicator: Some(MultipleServicesIndicator::MULTIPLE_SERVICES_SUPPORTED),
        multiple_services_credit_control: smallvec![MultipleServicesCreditControl {
            requested_service_unit: Some(ServiceUnit::default()),
            used_service_units: smallvec![ServiceUnit {
                cc_time: Some(120),
                cc_total_octets: Some(5_242_880),
                ..Default::default()
            }],
            rating_group: Some(dictionary::rating_group::DATA),
            ..Default::default()
        }],
        ..Default::default()
    };
    let envelope = Envelope::request(
        ApplicationId::CREDIT_CONTROL,
        HopByHopId(0x2a),
        EndToEndId(0x5a5a_0001),
    );
    let len = ccr.encode(envelope, &mut buf);
    println!("encoded CCR-UPDATE: {len} bytes\n{}\n", hex(&buf));

    let view = MessageView::parse(&buf)?;
    println!("{:?}", view.header());
    print_avps(view.avps(), 1)?;
    let decoded = Ccr::decode(&view)?;
    assert_eq!(decoded, ccr);
    println!("\ntyped decode matches what was encoded\n");

    let reference = hex_decode(include_str!("../../../shared/vectors/ccr-update.hex"))?;
    assert_eq!(
        &buf[..],
        &reference[..],
        "differs from the Erlang/OTP encoding"
    );
    println!(
        "byte-identical to the Erlang/OTP reference encoding (shared/vectors/ccr-update.hex)\n"
    );
    let otp = Ccr::decode(&MessageView::parse(&reference)?)?;
    println!(
        "Erlang/OTP reference CCR: {} AVPs, {:#?}\n",
        MessageView::parse(&reference)?.walk()?,
        otp
    );

    // Break the reference: an unknown AVP with the M bit in place of Service-Context-Id.
    let mut broken = reference.clone();
    let at = MessageView::parse(&reference)?
        .find(dictionary::SERVICE_CONTEXT_ID.code)
        .map(|avp| avp.offset() as usize)
        .ok_or("the reference has a Service-Context-Id")?;
    broken[at..at + 4].copy_from_slice(&99_999u32.to_be_bytes());
    let view = MessageView::parse(&broken)?;
    let error = Ccr::decode(&view).expect_err("an unknown M-bit AVP is refused");
    println!("broken CCR: {error} -> {:?}", error.disposition());
    let mut answer = BytesMut::new();
    encode_error_answer(&view, &error, "pdf.example.net", "example.net", &mut answer)
        .ok_or("this error is answerable")?;
    let answer_view = MessageView::parse(&answer)?;
    println!(
        "error answer {:?}:\n{:#?}",
        answer_view.header().flags,
        ErrorAnswer::decode(&answer_view)?
    );
    Ok(())
}

fn print_avps(avps: AvpIter<'_>, depth: usize) -> Result<(), protocol::error::DecodeError> {
    for avp in avps {
        let avp = avp?;
        let def = dictionary::lookup(avp.code(), avp.vendor_id());
        print!("{:indent$}{:?}", "", avp, indent = depth * 2);
        match def.map(|d| d.ty) {
            Some(dictionary::AvpType::Grouped) => {
                println!();
                print_avps(avp.grouped(), depth + 1)?;
                continue;
            }
            Some(dictionary::AvpType::Unsigned32 | dictionary::AvpType::Enumerated) => {
                print!(" = {}", avp.u32()?)
            }
            Some(dictionary::AvpType::Unsigned64) => print!(" = {}", avp.u64()?),
            Some(
                dictionary::AvpType::Utf8String
                | dictionary::AvpType::DiameterIdentity
                | dictionary::AvpType::DiameterUri,
            ) => print!(" = {:?}", avp.utf8()?),
            _ => {}
        }
        println!();
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .chunks(16)
        .map(|line| {
            line.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn hex_decode(text: &str) -> Result<Vec<u8>, std::num::ParseIntError> {
    let text = text.trim();
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16))
        .collect()
}
