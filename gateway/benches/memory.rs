//! Memory per live session in the gateway (issue 5's budget: < 100 bytes, a million sessions
//! in one process).
//!
//! Inserts `SESSIONS` sessions with canonical access Session-Ids into the session table (as
//! ACR START does once the PDF granted) and reports bytes per session two ways: the table's
//! heap capacity and the process's RSS growth. Run: `cargo bench -p gateway --bench memory`.

use gateway::sessions::{Pin, Sessions};

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse::<u64>().ok())
        .unwrap_or(0)
        * 4096
}

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let count: u32 = std::env::var("SESSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 10_000 } else { 1_000_000 });
    let mut sessions = Sessions::default();
    sessions.reserve(count as usize);
    let before = rss_bytes();
    let mut id = String::new();
    for i in 0..count {
        use std::fmt::Write;
        id.clear();
        let _ = write!(id, "lg1.example.net;1700000000;{i}");
        let pin = Pin {
            node: (i % 2) as u8,
            connection: (i % 4) as u8,
        };
        sessions.insert(&id, 0, i, 1, 0, pin);
    }
    let after = rss_bytes();
    assert_eq!(sessions.len(), count as usize);
    assert_eq!(
        sessions.access_session_id(count - 1),
        format!("lg1.example.net;1700000000;{}", count - 1)
    );
    let table = sessions.heap_bytes() as f64 / f64::from(count);
    let rss = (after - before) as f64 / f64::from(count);
    println!("gateway memory: {count} live sessions");
    println!("  per session: {table:.1} bytes of session table (slab + two indexes), {rss:.1} bytes of RSS growth");
    println!("{{\"bench\":\"gateway-memory\",\"sessions\":{count},\"table_bytes\":{table:.1},\"rss_bytes\":{rss:.1}}}");
}
