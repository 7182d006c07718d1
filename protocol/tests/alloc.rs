//! Proves that decoding allocates nothing: a counting global allocator wraps the system one,
//! and decoding the reference CCR and CCA (parse, walk, typed decode) must not touch it.
//! This is its own test binary because the allocator is process-wide.

use std::alloc::System;

use protocol::grammar::Command;
use protocol::message::{Message, MessageView};
use protocol::messages::{Acr, Cca, Ccr};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn vector(name: &str) -> bytes::Bytes {
    let path = format!("{}/../../shared/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    hex::decode(text.trim()).expect("vector is hex").into()
}

/// Decodes every field of each message and returns something derived from all of them,
/// so that nothing is optimised away.
fn decode_all(ccr: &bytes::Bytes, cca: &bytes::Bytes, acr: &bytes::Bytes) -> usize {
    let mut total = 0;
    let ccr = Message::decode(ccr.clone()).expect("CCR parses");
    let view = ccr.view();
    total += view.walk().expect("CCR walks");
    let typed = Ccr::decode(&view).expect("CCR decodes");
    total += typed.session_id.len() + typed.multiple_services_credit_control.len();
    total += typed.multiple_services_credit_control[0].used_service_units[0]
        .cc_total_octets
        .unwrap_or(0) as usize;

    let view = MessageView::parse(cca).expect("CCA parses");
    total += view.walk().expect("CCA walks");
    let typed = Cca::decode(&view).expect("CCA decodes");
    total += typed.origin_host.len() + typed.result_code.0 as usize;

    let view = MessageView::parse(acr).expect("ACR parses");
    let typed = Acr::decode(&view).expect("ACR decodes");
    total += typed.accounting_record_number as usize;
    total
}

/// No libtest harness (`harness = false`): the allocator is process-wide, and the harness's
/// own threads (output, timers) would show up in the count.
fn main() {
    // Guard against a counter that never moves.
    let region = Region::new(GLOBAL);
    drop(std::hint::black_box(Vec::<u8>::with_capacity(64)));
    assert_eq!(
        region.change().allocations,
        1,
        "the counting allocator is not installed"
    );

    let (ccr, cca, acr) = (
        vector("ccr-update.hex"),
        vector("cca-update.hex"),
        vector("acr-interim.hex"),
    );
    // Warm up once outside the measured region (lazy statics, thread-locals).
    let expected = decode_all(&ccr, &cca, &acr);

    let region = Region::new(GLOBAL);
    let mut sum = 0;
    for _ in 0..1000 {
        sum += decode_all(&ccr, &cca, &acr);
    }
    let stats = region.change();
    assert_eq!(sum, expected * 1000);
    assert_eq!(
        (
            stats.allocations,
            stats.reallocations,
            stats.bytes_allocated
        ),
        (0, 0, 0),
        "decoding allocated: {stats:?}"
    );
    println!("alloc: decoding CCR, CCA and ACR 1000 times allocated nothing: ok");
}
