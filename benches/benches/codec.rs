//! Codec benchmarks (DESIGN.md section 7): decode the reference CCR-UPDATE and walk all its
//! AVPs, decode it into the typed `Ccr`, encode the reference CCA-UPDATE; with the crates.io
//! `diameter` and `sawp-diameter` crates on the same bytes in the same groups, so criterion
//! reports them side by side.
//!
//! Before the groups run, the binary prints heap allocations per operation for each of them,
//! counted by a global allocator that wraps `System`.
//!
//! Run: `cargo bench -p benches --bench codec -- --warm-up-time 2 --measurement-time 5`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use benches::{ccr_header, ccr_update, reference_cca, SESSION_ID};
use bytes::BytesMut;
use criterion::{Criterion, Throughput};
use protocol::avp::AvpIter;
use protocol::error::DecodeError;
use protocol::grammar::{Command, Envelope};
use protocol::message::MessageView;
use protocol::messages::{Cca, Ccr};
use sawp::parser::{Direction, Parse};

// ---------------------------------------------------------------------------------------
// Counting allocator.

/// `System`, counting every allocation (alloc, alloc_zeroed and realloc each count one).
struct CountingAlloc;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// `GlobalAlloc` contract is `System`'s; the counter is a relaxed atomic, which allocates
// nothing and cannot re-enter the allocator.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded as is (see the impl).
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded as is (see the impl).
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded as is (see the impl).
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is (see the impl).
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Iterations over which allocations per operation are averaged.
const ALLOC_ITERATIONS: u64 = 10_000;

/// Runs `op` once to warm up (first-use allocations, such as a buffer's first growth, are not
/// per-operation costs), then `ALLOC_ITERATIONS` times, and returns allocations per call.
fn allocations_per_op(mut op: impl FnMut()) -> f64 {
    op();
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..ALLOC_ITERATIONS {
        op();
    }
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    (after - before) as f64 / ALLOC_ITERATIONS as f64
}

// ---------------------------------------------------------------------------------------
// Ours.

/// `decode/ccr-update/walk`: parse the header, then the protocol crate's own structural walk
/// (descends into every Grouped AVP the dictionary knows, checks fixed-size lengths).
fn ours_walk(bytes: &[u8]) -> Result<usize, DecodeError> {
    let view = MessageView::parse(bytes)?;
    view.walk()
}

/// `decode/ccr-update/walk-avps`: parse the header, then iterate every AVP by hand,
/// descending into the Grouped ones, touching each AVP's header fields and data.
fn ours_walk_avps(bytes: &[u8]) -> Result<usize, DecodeError> {
    let view = MessageView::parse(bytes)?;
    touch_avps(view.avps(), 0)
}

fn touch_avps(avps: AvpIter<'_>, depth: u32) -> Result<usize, DecodeError> {
    let mut count = 0;
    for avp in avps {
        let avp = avp?;
        count += 1;
        black_box((avp.code(), avp.flags(), avp.vendor_id()));
        black_box(avp.data());
        let grouped = protocol::dictionary::lookup(avp.code(), avp.vendor_id())
            .is_some_and(|def| def.ty == protocol::dictionary::AvpType::Grouped);
        if grouped && depth < 16 {
            count += touch_avps(avp.grouped(), depth + 1)?;
        }
    }
    Ok(count)
}

/// `decode/ccr-update/typed`: the typed CCR (every field decoded, strings borrowed).
fn ours_typed(bytes: &[u8]) -> Result<Ccr<'_>, DecodeError> {
    Ccr::decode(&MessageView::parse(bytes)?)
}

// ---------------------------------------------------------------------------------------
// crates.io `diameter` 0.7.1.

/// Decodes with `diameter` (every AVP is decoded eagerly into an owned tree) and walks the
/// tree, touching every AVP's header and value and descending into Grouped AVPs.
fn diameter_decode_walk(bytes: &[u8], dict: &Arc<diameter::dictionary::Dictionary>) -> usize {
    let mut cursor = Cursor::new(bytes);
    let message = diameter::DiameterMessage::decode_from(&mut cursor, Arc::clone(dict))
        .expect("diameter decodes the reference CCR");
    diameter_touch(message.get_avps())
}

fn diameter_touch(avps: &[diameter::avp::Avp]) -> usize {
    let mut count = 0;
    for avp in avps {
        count += 1;
        black_box((avp.get_code(), avp.get_flags(), avp.get_vendor_id()));
        black_box(avp.get_value());
        if let Some(group) = avp.get_grouped() {
            count += diameter_touch(group.avps());
        }
    }
    count
}

/// The reference CCA built with `diameter`'s API (same AVPs, order, flags and header).
fn diameter_cca(
    dict: &Arc<diameter::dictionary::Dictionary>,
    hop_by_hop: u32,
    end_to_end: u32,
) -> diameter::DiameterMessage {
    use diameter::avp::flags::M;
    use diameter::avp::{Enumerated, Grouped, Identity, UTF8String, Unsigned32, Unsigned64};

    let mut cca = diameter::DiameterMessage::new(
        diameter::CommandCode::CreditControl,
        diameter::ApplicationId::CreditControl,
        diameter::flags::PROXYABLE,
        hop_by_hop,
        end_to_end,
        Arc::clone(dict),
    );
    cca.add_avp(263, None, M, UTF8String::new(SESSION_ID).into());
    cca.add_avp(268, None, M, Unsigned32::new(2001).into());
    cca.add_avp(264, None, M, Identity::new("ocs1.ocs.example.net").into());
    cca.add_avp(296, None, M, Identity::new("ocs.example.net").into());
    cca.add_avp(258, None, M, Unsigned32::new(4).into());
    cca.add_avp(416, None, M, Enumerated::new(2).into());
    cca.add_avp(415, None, M, Unsigned32::new(7).into());

    let mut gsu = Grouped::new(vec![], Arc::clone(dict));
    gsu.add_avp(421, None, M, Unsigned64::new(10_485_760).into());
    let mut fui = Grouped::new(vec![], Arc::clone(dict));
    fui.add_avp(449, None, M, Enumerated::new(0).into());
    let mut mscc = Grouped::new(vec![], Arc::clone(dict));
    mscc.add_avp(431, None, M, gsu.into());
    mscc.add_avp(432, None, M, Unsigned32::new(10).into());
    mscc.add_avp(448, None, M, Unsigned32::new(600).into());
    mscc.add_avp(268, None, M, Unsigned32::new(2001).into());
    mscc.add_avp(430, None, M, fui.into());
    cca.add_avp(456, None, M, mscc.into());
    cca
}

// ---------------------------------------------------------------------------------------
// crates.io `sawp-diameter` 0.13.1.

/// Parses with `sawp-diameter`. It knows only the RFC 6733 base AVPs: the RFC 4006 ones
/// (Subscription-Id, MSCC and their members) stay `Unhandled` byte vectors, and its AVP
/// fields are private, so the walk can only touch each top-level AVP as a whole.
fn sawp_parse_walk(bytes: &[u8]) -> usize {
    let parser = sawp_diameter::Diameter {};
    let (_, message) = parser
        .parse(bytes, Direction::ToServer)
        .expect("sawp-diameter parses the reference CCR");
    let message = message.expect("sawp-diameter returns a message");
    black_box(&message.header);
    let mut count = 0;
    for avp in &message.avps {
        count += 1;
        black_box(avp);
    }
    count
}

// ---------------------------------------------------------------------------------------

/// Prints allocations per operation, and checks that every decoder saw the message whole.
fn report_allocations(ccr: &[u8], dict: &Arc<diameter::dictionary::Dictionary>) {
    let header = ccr_header(ccr);
    let cca = reference_cca(SESSION_ID);
    let otp_cca = benches::cca_update();

    println!(
        "AVPs visited in the reference CCR-UPDATE ({} bytes):",
        ccr.len()
    );
    println!(
        "  ours walk:                {}",
        ours_walk(ccr).expect("walk")
    );
    println!(
        "  ours walk-avps:           {}",
        ours_walk_avps(ccr).expect("walk-avps")
    );
    println!(
        "  diameter-0.7.1:           {}",
        diameter_decode_walk(ccr, dict)
    );
    println!(
        "  sawp-diameter-0.13.1:     {} (top level only)",
        sawp_parse_walk(ccr)
    );

    let mut buf = BytesMut::with_capacity(1024);
    cca.encode(Envelope::answer_to(&header), &mut buf);
    let ours_matches = buf[..] == otp_cca[..];
    let peer = diameter_cca(dict, header.hop_by_hop.0, header.end_to_end.0);
    let mut peer_buf = Vec::with_capacity(1024);
    peer.encode_to(&mut peer_buf).expect("diameter encodes");
    let peer_matches = peer_buf == otp_cca;
    println!(
        "CCA-UPDATE encodings equal to cca-update.hex ({} bytes):",
        otp_cca.len()
    );
    println!(
        "  ours:                     {ours_matches} ({} bytes)",
        buf.len()
    );
    println!(
        "  diameter-0.7.1:           {peer_matches} ({} bytes)",
        peer_buf.len()
    );

    println!("Heap allocations per operation (mean over {ALLOC_ITERATIONS} iterations):");
    let rows: [(&str, f64); 9] = [
        (
            "decode/ccr-update/walk",
            allocations_per_op(|| {
                black_box(ours_walk(black_box(ccr)).expect("walk"));
            }),
        ),
        (
            "decode/ccr-update/walk-avps",
            allocations_per_op(|| {
                black_box(ours_walk_avps(black_box(ccr)).expect("walk-avps"));
            }),
        ),
        (
            "decode/ccr-update/typed",
            allocations_per_op(|| {
                black_box(ours_typed(black_box(ccr)).expect("typed"));
            }),
        ),
        (
            "decode/ccr-update/diameter-0.7.1",
            allocations_per_op(|| {
                black_box(diameter_decode_walk(black_box(ccr), dict));
            }),
        ),
        (
            "decode/ccr-update/sawp-diameter-0.13.1",
            allocations_per_op(|| {
                black_box(sawp_parse_walk(black_box(ccr)));
            }),
        ),
        (
            "encode/cca-update/typed",
            allocations_per_op(|| {
                buf.clear();
                black_box(black_box(&cca).encode(Envelope::answer_to(&header), &mut buf));
            }),
        ),
        (
            "encode/cca-update/typed-build",
            allocations_per_op(|| {
                buf.clear();
                let cca = reference_cca(black_box(SESSION_ID));
                black_box(cca.encode(Envelope::answer_to(&header), &mut buf));
            }),
        ),
        (
            "encode/cca-update/diameter-0.7.1",
            allocations_per_op(|| {
                peer_buf.clear();
                black_box(&peer).encode_to(&mut peer_buf).expect("encode");
                black_box(&peer_buf);
            }),
        ),
        (
            "encode/cca-update/diameter-0.7.1-build",
            allocations_per_op(|| {
                peer_buf.clear();
                let peer = diameter_cca(dict, header.hop_by_hop.0, header.end_to_end.0);
                peer.encode_to(&mut peer_buf).expect("encode");
                black_box(&peer_buf);
            }),
        ),
    ];
    for (name, allocations) in rows {
        println!("  {name:<40} {allocations:>8.2} allocations/op");
    }
    assert_eq!(rows[0].1, 0.0, "our decode+walk must not allocate");
    assert_eq!(rows[1].1, 0.0, "our decode+walk-avps must not allocate");
    assert_eq!(rows[2].1, 0.0, "our typed decode must not allocate");
}

fn decode_group(c: &mut Criterion, ccr: &[u8], dict: &Arc<diameter::dictionary::Dictionary>) {
    let mut group = c.benchmark_group("decode/ccr-update");
    group.throughput(Throughput::Bytes(ccr.len() as u64));
    group.bench_function("walk", |b| {
        b.iter(|| ours_walk(black_box(ccr)).expect("walk"));
    });
    group.bench_function("walk-avps", |b| {
        b.iter(|| ours_walk_avps(black_box(ccr)).expect("walk-avps"));
    });
    group.bench_function("typed", |b| {
        b.iter(|| ours_typed(black_box(ccr)).expect("typed"));
    });
    group.bench_function("diameter-0.7.1", |b| {
        b.iter(|| diameter_decode_walk(black_box(ccr), dict));
    });
    group.bench_function("sawp-diameter-0.13.1", |b| {
        b.iter(|| sawp_parse_walk(black_box(ccr)));
    });
    group.finish();
}

fn encode_group(c: &mut Criterion, ccr: &[u8], dict: &Arc<diameter::dictionary::Dictionary>) {
    let header = ccr_header(ccr);
    let cca: Cca<'_> = reference_cca(SESSION_ID);
    let mut buf = BytesMut::with_capacity(1024);
    let len = cca.encode(Envelope::answer_to(&header), &mut buf);

    let mut group = c.benchmark_group("encode/cca-update");
    group.throughput(Throughput::Bytes(len as u64));
    group.bench_function("typed", |b| {
        b.iter(|| {
            buf.clear();
            black_box(&cca).encode(Envelope::answer_to(black_box(&header)), &mut buf)
        });
    });
    group.bench_function("typed-build", |b| {
        b.iter(|| {
            buf.clear();
            let cca = reference_cca(black_box(SESSION_ID));
            cca.encode(Envelope::answer_to(black_box(&header)), &mut buf)
        });
    });
    let peer = diameter_cca(dict, header.hop_by_hop.0, header.end_to_end.0);
    let mut peer_buf = Vec::with_capacity(1024);
    group.bench_function("diameter-0.7.1", |b| {
        b.iter(|| {
            peer_buf.clear();
            black_box(&peer).encode_to(&mut peer_buf).expect("encode");
            peer_buf.len()
        });
    });
    group.bench_function("diameter-0.7.1-build", |b| {
        b.iter(|| {
            peer_buf.clear();
            let peer = diameter_cca(dict, black_box(header.hop_by_hop.0), header.end_to_end.0);
            peer.encode_to(&mut peer_buf).expect("encode");
            peer_buf.len()
        });
    });
    group.finish();
}

fn main() {
    let ccr = ccr_update();
    let dict = Arc::new(diameter::dictionary::Dictionary::new(&[
        &diameter::dictionary::DEFAULT_DICT_XML,
    ]));

    report_allocations(&ccr, &dict);

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();
    decode_group(&mut c, &ccr, &dict);
    encode_group(&mut c, &ccr, &dict);
    c.final_summary();
}
