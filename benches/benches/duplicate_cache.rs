//! The duplicate cache at a steady size: every request a new key, the oldest evicted (what
//! the gateway and the pdf do under load). Prints, for the cache and for the structure it
//! replaced (a `HashMap` and a queue beside it), the mean cost of an operation, the
//! slowest operations, and how often the map's bucket array was rebuilt.
//!
//!     cargo bench -p benches --bench duplicate_cache          (OPS=20000000 by default)
//!
//! A timing run: on a shared machine, preemptions (a few ms) show as slow operations in
//! both columns alike; the rebuilds are what differ. The former structure is hashed with
//! std's SipHash here (the cache had a cheaper hasher of its own), so compare the stalls,
//! not the means. The cache copies each 120-byte answer into its slot (the former
//! structure keeps a reference); filling at millions of operations a second, it reaches
//! its capacity before the thread preparing its memory is done, and its queue doubles
//! meanwhile: those doublings are its slow operations (at the pdf's rates the prepared
//! memory arrives within a few thousand requests).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use protocol::header::EndToEndId;
use protocol::peer::{DuplicateCache, DuplicateKey};

const CAPACITY: usize = 256 * 1024;

struct Figures {
    total: Duration,
    over_1ms: usize,
    worst: Duration,
    rebuilds: usize,
}

fn run(ops: u32, mut op: impl FnMut(u32) -> bool) -> Figures {
    let mut figures = Figures {
        total: Duration::ZERO,
        over_1ms: 0,
        worst: Duration::ZERO,
        rebuilds: 0,
    };
    for i in 0..ops {
        let start = Instant::now();
        let rebuilt = op(i);
        let took = start.elapsed();
        figures.total += took;
        figures.worst = figures.worst.max(took);
        figures.over_1ms += usize::from(took > Duration::from_millis(1));
        figures.rebuilds += usize::from(rebuilt);
    }
    figures
}

fn main() {
    // `cargo test` runs benches without `--bench` (a debug build): a short smoke run then.
    let benching = std::env::args().any(|a| a == "--bench");
    let ops: u32 = std::env::var("OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if benching { 20_000_000 } else { 300_000 });
    let answer = Bytes::from_static(&[0u8; 120]);
    let now = Instant::now();

    let cache = DuplicateCache::new(Duration::from_secs(3600), CAPACITY);
    let ours = run(ops, |i| {
        let key = DuplicateKey::new(b"gw.example.net", EndToEndId(i));
        cache.check(key, now);
        cache.complete(key, &answer);
        false
    });

    // The former structure: a map and a queue in arrival order, the oldest removed first.
    let mut map: HashMap<DuplicateKey, Option<Bytes>> = HashMap::with_capacity(CAPACITY);
    let mut order: VecDeque<DuplicateKey> = VecDeque::with_capacity(CAPACITY);
    let mut buckets = map.capacity();
    let former = run(ops, |i| {
        let key = DuplicateKey::new(b"gw.example.net", EndToEndId(i));
        if order.len() >= CAPACITY {
            if let Some(old) = order.pop_front() {
                map.remove(&old);
            }
        }
        map.insert(key, None);
        order.push_back(key);
        if let Some(entry) = map.get_mut(&key) {
            *entry = Some(answer.clone());
        }
        // `capacity()` is len + room left: it jumps when the bucket array is rebuilt
        // larger; an in-place rehash (tombstones cleared) shows only as a slow operation.
        let now_buckets = map.capacity();
        let grew = now_buckets > buckets + CAPACITY / 2;
        buckets = now_buckets;
        grew
    });

    println!("duplicate cache at a steady {CAPACITY} entries, {ops} requests (check + complete)");
    println!("| structure | mean ns/request | requests > 1 ms | slowest | bucket array grown |");
    println!("|---|---|---|---|---|");
    for (name, f) in [
        ("DuplicateCache (queue + linear-probing index)", &ours),
        ("HashMap + VecDeque (before)", &former),
    ] {
        println!(
            "| {name} | {:.0} | {} | {:.2} ms | {} |",
            f.total.as_nanos() as f64 / f64::from(ops),
            f.over_1ms,
            f.worst.as_secs_f64() * 1000.0,
            f.rebuilds
        );
    }
}
