//! Hot upgrade of a `pdf` holding many live sessions, under load (issue 7's benchmark;
//! DESIGN.md section 7: pause < 250 ms, 0 connections closed, 0 requests failed at 1M
//! sessions).
//!
//! Starts the real `pdf` binary (port 0) with `SESSIONS` subscribers, each alone on an
//! account with a large constant balance; opens `CONNECTIONS` client connections (each its
//! own Origin-Host, as the gateway's pool does) and opens `SESSIONS` sessions over them
//! with pipelined CCR-INITIALs (`WINDOW` in flight per connection). Then a steady load of
//! CCR-UPDATEs (`RATE` per second, paced, `LANES` lanes per connection, each with one
//! request outstanding) runs on the first `LOAD_SESSIONS` sessions, on the same
//! connections; after `BEFORE` seconds the bench asks the pdf for a hot upgrade to the same
//! binary with the same arguments (`POST /upgrade`), and keeps the load `AFTER` seconds
//! more. Latency is measured from each request's intended send time (a late request does
//! not hide the wait of the ones behind it).
//!
//! Reports the pdf's pause and phases, the longest gap between two answers seen by the
//! client, p99 and max latency before / during (from the POST to 0.5 s after its answer) /
//! after the upgrade, failed and timed-out requests, whether any connection went down and
//! whether each connection's 4-tuple now belongs to the new process (the same socket,
//! found in /proc), the snapshot's size, and the books. One human line, one JSON line.
//!
//! Run: `cargo bench -p pdf --bench hot_upgrade` (env: SESSIONS=1000000 CONNECTIONS=4
//! WINDOW=256 LOAD_SESSIONS=20000 RATE=20000 LANES=32 BEFORE=3 AFTER=3 TIMEOUT=5
//! DURABILITY=none|group; TIMELINE=1 adds requests and worst latency per 100 ms on
//! stderr). Without `--bench` (`cargo test --benches`) it runs small and
//! short.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;
use protocol::dictionary::{CcRequestType, SubscriptionIdType};
use protocol::grammar::{Command, Envelope};
use protocol::header::{ApplicationId, HopByHopId};
use protocol::messages::{Cca, Ccr, MultipleServicesCreditControl, ServiceUnit, SubscriptionId};
use protocol::peer::Node;
use protocol::transport::{Connection, ConnectionEvent};
use smallvec::smallvec;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Settings {
    sessions: u32,
    connections: u32,
    window: u32,
    load_sessions: u32,
    rate: f64,
    lanes: u32,
    before: f64,
    after: f64,
    timeout: Duration,
    durability: String,
}

/// One UPDATE of the steady load.
#[derive(Clone, Copy)]
struct Sample {
    connection: u32,
    intended: Instant,
    sent: Instant,
    done: Instant,
    ok: bool,
    timed_out: bool,
}

/// Kills the new pdf (not our child: the old process started it) at the end, by pid.
struct Pid(u32);

impl Drop for Pid {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-9", &self.0.to_string()])
            .status();
        // Not our child, so not ours to reap: wait until it is gone or a zombie.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            match std::fs::read_to_string(format!("/proc/{}/stat", self.0)) {
                Ok(stat) if !stat.contains(") Z ") => std::thread::sleep(Duration::from_millis(10)),
                _ => break,
            }
        }
    }
}

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let sessions: u32 = env("SESSIONS", if quick { 2_000 } else { 1_000_000 });
    let settings = Settings {
        sessions,
        connections: env("CONNECTIONS", 4),
        window: env("WINDOW", 256),
        load_sessions: env("LOAD_SESSIONS", sessions.min(20_000)).min(sessions),
        rate: env("RATE", if quick { 2_000.0 } else { 20_000.0 }),
        lanes: env("LANES", 32),
        before: env("BEFORE", if quick { 0.5 } else { 3.0 }),
        after: env("AFTER", if quick { 0.5 } else { 3.0 }),
        timeout: Duration::from_secs_f64(env("TIMEOUT", 5.0)),
        durability: env("DURABILITY", "none".to_owned()),
    };
    let dir = std::env::temp_dir().join(format!("pdf-hot-upgrade-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = dir.join("pdf.toml");
    std::fs::write(
        &config,
        format!(
            "[population]\nsubscribers = {}\nshared_share = 0.0\nbalance = {{ dist = \"constant\", value = 1000000000 }}\n",
            settings.sessions.max(8)
        ),
    )
    .expect("config");
    let data = dir.join("data").display().to_string();
    let mut args: Vec<String> = [
        "--config",
        &config.display().to_string(),
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--durability",
        &settings.durability,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    if settings.durability == "group" {
        args.extend(["--data-dir".to_owned(), data]);
    }
    // `hot upgrade` log lines (both processes write to the same pipes) time the new
    // process's side of the pause.
    std::env::set_var("RUST_LOG", "warn,pdf=info");
    let binary = env!("CARGO_BIN_EXE_pdf");
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut pdf = testkit::Process::start(Path::new(binary), &arg_refs);
    let old_pid = status(pdf.admin)["pid"].as_u64().expect("pid") as u32;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let outcome = runtime.block_on(run(&pdf, old_pid, binary, &args, &settings));
    let Outcome {
        report,
        _new_pid: new_pid,
        opened,
        open_failures,
        open_seconds,
        samples,
        post_sent,
        post_done,
        load_start,
        went_down,
        tuples_kept,
        same_sockets,
    } = outcome;
    let old_exit = pdf.wait_exit(Duration::from_secs(20));
    let after_status = status(pdf.admin);
    let (_, books) = testkit::http_get(pdf.admin, "/books");
    let books_ok = books.contains("\"ok\":true");
    let new_rss_mib = rss_mib(new_pid.0);

    // The windows, by intended send time.
    let window_end = post_done + Duration::from_millis(500);
    let mut windows = [Window::new(), Window::new(), Window::new()];
    for s in &samples {
        let w = if s.intended < post_sent {
            0
        } else if s.intended < window_end {
            1
        } else {
            2
        };
        windows[w].add(s);
    }
    if std::env::var("TIMELINE").is_ok_and(|v| v == "1") {
        timeline(&samples, post_sent);
    }
    // The longest gap between two answers, over every connection and per connection.
    let mut answers: Vec<(Instant, u32)> = samples
        .iter()
        .filter(|s| s.ok)
        .map(|s| (s.done, s.connection))
        .collect();
    answers.sort();
    let (gap, gap_at) = longest_gap(answers.iter().map(|a| a.0), load_start);
    let per_connection_gap = (0..settings.connections)
        .map(|c| longest_gap(answers.iter().filter(|a| a.1 == c).map(|a| a.0), load_start).0)
        .fold(Duration::ZERO, Duration::max);
    let gap_ms = gap.as_secs_f64() * 1000.0;
    let gap_from_post_ms = gap_at
        .map(|at| signed_ms(at, post_sent))
        .unwrap_or(f64::NAN);

    let pause_ms = report["pause_ms"].as_f64().unwrap_or(f64::NAN);
    let phases: Vec<(String, f64)> = report["phases_ms"]
        .as_array()
        .map(|phases| {
            phases
                .iter()
                .map(|p| {
                    (
                        p[0].as_str().unwrap_or("?").to_owned(),
                        p[1].as_f64().unwrap_or(f64::NAN),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let phases_text = phases
        .iter()
        .map(|(name, ms)| format!("{name} {ms:.1}"))
        .collect::<Vec<_>>()
        .join(", ");
    let failed: u64 = windows.iter().map(|w| w.failed).sum();
    let timed_out: u64 = windows.iter().map(|w| w.timed_out).sum();
    let budget = pause_ms < 250.0 && !went_down && tuples_kept && failed == 0 && open_failures == 0;
    let [before, during, after] = &windows;
    println!(
        "pdf hot upgrade: {} sessions ({} opened in {open_seconds:.1} s, {open_failures} failed), \
         {} connections, load {:.0} UPDATE/s on {} sessions, durability {}: \
         pause {pause_ms:.1} ms (phases ms: {phases_text}); longest answer gap {gap_ms:.1} ms \
         (at {gap_from_post_ms:+.0} ms from the POST; {:.1} ms on one connection); \
         latency p99/max us before {}/{} ({} reqs), during {}/{} ({} reqs), after {}/{} ({} reqs); \
         failed {failed} (timed out {timed_out}); connection down: {went_down}; 4-tuples kept: {tuples_kept}; \
         same sockets in the new pid: {same_sockets}; snapshot {} bytes; sessions after {}; books ok: {books_ok}; \
         old exit {old_exit:?}; budget (pause < 250 ms, 0 closed, 0 failed): {}",
        settings.sessions,
        opened,
        settings.connections,
        settings.rate,
        settings.load_sessions,
        settings.durability,
        per_connection_gap.as_secs_f64() * 1000.0,
        before.p99(),
        before.max(),
        before.count,
        during.p99(),
        during.max(),
        during.count,
        after.p99(),
        after.max(),
        after.count,
        report["snapshot_bytes"],
        after_status["sessions"],
        if budget { "met" } else { "NOT met" },
    );
    let json = serde_json::json!({
        "bench": "pdf-hot-upgrade",
        "sessions": settings.sessions,
        "opened": opened,
        "open_failures": open_failures,
        "open_seconds": open_seconds,
        "connections": settings.connections,
        "load_rate": settings.rate,
        "load_sessions": settings.load_sessions,
        "durability": settings.durability,
        "pause_ms": pause_ms,
        "phases_ms": report["phases_ms"],
        "snapshot_bytes": report["snapshot_bytes"],
        "handed_over": {"connections": report["connections"], "sessions": report["sessions"]},
        "longest_gap_ms": gap_ms,
        "longest_gap_from_post_ms": gap_from_post_ms,
        "longest_gap_one_connection_ms": per_connection_gap.as_secs_f64() * 1000.0,
        "upgrade_request_ms": post_done.duration_since(post_sent).as_secs_f64() * 1000.0,
        "before": before.json(),
        "during": during.json(),
        "after": after.json(),
        "failed": failed,
        "timed_out": timed_out,
        "connection_down": went_down,
        "tuples_kept": tuples_kept,
        "same_sockets": same_sockets,
        "sessions_after": after_status["sessions"],
        "books_ok": books_ok,
        "old_exit": old_exit,
        "new_rss_mib": new_rss_mib,
        "budget_met": budget,
    });
    println!("{json}");
    drop(new_pid);
    drop(pdf);
    let _ = std::fs::remove_dir_all(&dir);
}

struct Outcome {
    report: serde_json::Value,
    _new_pid: Pid,
    opened: u64,
    open_failures: u64,
    open_seconds: f64,
    samples: Vec<Sample>,
    post_sent: Instant,
    post_done: Instant,
    load_start: Instant,
    went_down: bool,
    tuples_kept: bool,
    same_sockets: bool,
}

async fn run(
    pdf: &testkit::Process,
    old_pid: u32,
    binary: &str,
    args: &[String],
    settings: &Settings,
) -> Outcome {
    let addr = pdf.diameter;
    let admin = pdf.admin;
    let mut clients = Vec::new();
    for c in 0..settings.connections {
        clients.push(testkit::connect(addr, &format!("gw{c}.example.net")).await);
    }
    let tuples: Vec<(SocketAddr, SocketAddr)> = clients
        .iter()
        .map(|(_, connection, ..)| (connection.local_addr(), connection.peer_addr()))
        .collect();

    // Open the sessions: session n on connection n % CONNECTIONS, subscriber n.
    let started = Instant::now();
    let failures = Arc::new(AtomicU64::new(0));
    let mut openers = Vec::new();
    for (c, (_, connection, node, _)) in clients.iter().enumerate() {
        let next = Arc::new(AtomicU32::new(0));
        for _ in 0..settings.window {
            let (connection, node, next, failures) = (
                connection.clone(),
                node.clone(),
                next.clone(),
                failures.clone(),
            );
            let (c, connections, sessions, timeout) = (
                c as u32,
                settings.connections,
                settings.sessions,
                settings.timeout,
            );
            openers.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let n = u64::from(i) * u64::from(connections) + u64::from(c);
                    if n >= u64::from(sessions) {
                        break;
                    }
                    let n = n as u32;
                    let request = ccr(&node, n, CcRequestType::INITIAL_REQUEST, 0);
                    if !answered_ok(&connection, request, timeout).await.0 {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
    }
    for opener in openers {
        opener.await.expect("opener");
    }
    let open_seconds = started.elapsed().as_secs_f64();
    let open_failures = failures.load(Ordering::Relaxed);
    let live = tokio::task::spawn_blocking(move || status(admin))
        .await
        .expect("status");
    let opened = live["sessions"].as_u64().unwrap_or(0);
    eprintln!(
        "opened {opened} sessions in {open_seconds:.1} s ({:.0}/s), {open_failures} failed; old pdf RSS {:.0} MiB",
        settings.sessions as f64 / open_seconds,
        rss_mib(old_pid)
    );
    let sockets_before: Vec<Option<u64>> = tuples.iter().map(|t| server_inode(*t)).collect();

    // The steady load: UPDATEs on the first LOAD_SESSIONS sessions, paced.
    let stop = Arc::new(AtomicBool::new(false));
    let total_lanes = settings.connections * settings.lanes;
    let interval = Duration::from_secs_f64(f64::from(total_lanes) / settings.rate);
    let load_start = Instant::now() + Duration::from_millis(200);
    let mut lanes = Vec::new();
    for (c, (_, connection, node, _)) in clients.iter().enumerate() {
        for lane in 0..settings.lanes {
            let (connection, node, stop) = (connection.clone(), node.clone(), stop.clone());
            let (c, connections, lanes_each, timeout) = (
                c as u32,
                settings.connections,
                settings.lanes,
                settings.timeout,
            );
            // Sessions n with n % connections == c and (n / connections) % lanes == lane.
            let mine: Vec<u32> = (0..settings.load_sessions)
                .filter(|n| n % connections == c && (n / connections) % lanes_each == lane)
                .collect();
            // Lanes of different connections interleave, so that every connection sees a
            // steady stream (no connection waits for the others' turn).
            let phase =
                interval.mul_f64(f64::from(lane * connections + c) / f64::from(total_lanes));
            lanes.push(tokio::spawn(async move {
                let mut numbers = vec![1u32; mine.len()];
                let mut samples = Vec::new();
                if mine.is_empty() {
                    return samples;
                }
                let mut intended = load_start + phase;
                for k in 0usize.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    tokio::time::sleep_until(tokio::time::Instant::from_std(intended)).await;
                    let which = k % mine.len();
                    let request = ccr(
                        &node,
                        mine[which],
                        CcRequestType::UPDATE_REQUEST,
                        numbers[which],
                    );
                    numbers[which] += 1;
                    let sent = Instant::now();
                    let (ok, timed_out) = answered_ok(&connection, request, timeout).await;
                    samples.push(Sample {
                        connection: c,
                        intended,
                        sent,
                        done: Instant::now(),
                        ok,
                        timed_out,
                    });
                    intended += interval;
                }
                samples
            }));
        }
    }

    tokio::time::sleep_until(tokio::time::Instant::from_std(
        load_start + Duration::from_secs_f64(settings.before),
    ))
    .await;
    let request = serde_json::json!({ "binary": binary, "args": args }).to_string();
    let post_sent = Instant::now();
    let (code, body) =
        tokio::task::spawn_blocking(move || testkit::http_post(admin, "/upgrade", &request))
            .await
            .expect("upgrade");
    let post_done = Instant::now();
    let report: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    if code != 200 {
        pdf.fail(&format!("POST /upgrade answered {code}: {body}"));
    }
    let new_pid = Pid(report["new_pid"].as_u64().expect("new pid") as u32);
    eprintln!("upgrade: {report}");
    tokio::time::sleep(Duration::from_secs_f64(settings.after) + Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut samples = Vec::new();
    for lane in lanes {
        samples.extend(lane.await.expect("lane"));
    }

    let went_down = clients.iter().any(|(_, connection, _, recorder)| {
        !connection.is_open()
            || recorder
                .events
                .lock()
                .expect("not poisoned")
                .iter()
                .any(|e| matches!(e, ConnectionEvent::Down(_)))
    });
    let tuples_kept = clients
        .iter()
        .zip(&tuples)
        .all(|((_, connection, ..), tuple)| {
            (connection.local_addr(), connection.peer_addr()) == *tuple
                && server_inode(*tuple).is_some()
        });
    // The server's end of each connection: the same socket (inode), now held by the new pid.
    let held = socket_inodes(new_pid.0);
    let same_sockets = tuples.iter().zip(&sockets_before).all(|(tuple, before)| {
        let now = server_inode(*tuple);
        now.is_some() && now == *before && now.is_some_and(|inode| held.contains(&inode))
    });
    for line in pdf.output().lines().filter(|l| l.contains("hot upgrade")) {
        eprintln!("  {line}");
    }
    Outcome {
        report,
        _new_pid: new_pid,
        opened,
        open_failures,
        open_seconds,
        samples,
        post_sent,
        post_done,
        load_start,
        went_down,
        tuples_kept,
        same_sockets,
    }
}

/// A voice CCR for session (and subscriber) `n`; UPDATEs report 1 s used.
fn ccr(node: &Node, n: u32, kind: CcRequestType, number: u32) -> Bytes {
    let session_id = format!("{};1700000000;{n}", node.config.origin_host);
    let msisdn = (491_700_000_000u64 + u64::from(n)).to_string();
    let ccr = Ccr {
        session_id: &session_id,
        origin_host: &node.config.origin_host,
        origin_realm: "example.net",
        destination_realm: "example.net",
        auth_application_id: 4,
        service_context_id: "32260@3gpp.org",
        cc_request_type: kind,
        cc_request_number: number,
        subscription_ids: smallvec![SubscriptionId {
            subscription_id_type: SubscriptionIdType::END_USER_E164,
            subscription_id_data: &msisdn,
        }],
        multiple_services_credit_control: smallvec![MultipleServicesCreditControl {
            used_service_units: if number > 0 {
                smallvec![ServiceUnit {
                    cc_time: Some(1),
                    ..Default::default()
                }]
            } else {
                smallvec![]
            },
            rating_group: Some(1),
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut out = BytesMut::with_capacity(256);
    ccr.encode(
        Envelope::request(
            ApplicationId::CREDIT_CONTROL,
            HopByHopId(0),
            node.end_to_end.next(),
        ),
        &mut out,
    );
    out.freeze()
}

/// (answered with success, timed out)
async fn answered_ok(connection: &Connection, request: Bytes, timeout: Duration) -> (bool, bool) {
    match connection.request(request, Some(timeout)).await {
        Ok(answer) => (
            Cca::decode(&answer.view()).is_ok_and(|c| c.result_code.is_success()),
            false,
        ),
        Err(error) => (
            false,
            format!("{error:?}").to_lowercase().contains("timeout"),
        ),
    }
}

/// Latency from the intended send time, per window.
struct Window {
    histogram: Histogram<u64>,
    service_max_us: u64,
    count: u64,
    failed: u64,
    timed_out: u64,
}

impl Window {
    fn new() -> Self {
        Self {
            histogram: Histogram::new_with_bounds(1, 600_000_000, 3).expect("bounds"),
            service_max_us: 0,
            count: 0,
            failed: 0,
            timed_out: 0,
        }
    }

    fn add(&mut self, sample: &Sample) {
        self.count += 1;
        if !sample.ok {
            self.failed += 1;
            self.timed_out += u64::from(sample.timed_out);
            return;
        }
        let latency = sample
            .done
            .duration_since(sample.intended)
            .as_micros()
            .max(1) as u64;
        self.histogram.saturating_record(latency);
        let service = sample.done.duration_since(sample.sent).as_micros() as u64;
        self.service_max_us = self.service_max_us.max(service);
    }

    fn p99(&self) -> u64 {
        self.histogram.value_at_quantile(0.99)
    }

    fn max(&self) -> u64 {
        self.histogram.max()
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "requests": self.count,
            "failed": self.failed,
            "timed_out": self.timed_out,
            "p50_us": self.histogram.value_at_quantile(0.5),
            "p99_us": self.p99(),
            "max_us": self.max(),
            "service_max_us": self.service_max_us,
        })
    }
}

/// `TIMELINE=1`: per 100 ms of intended send time around the POST, requests, failures and
/// the worst latency, on stderr.
fn timeline(samples: &[Sample], post_sent: Instant) {
    let mut buckets = std::collections::BTreeMap::<i64, (u64, u64, u64)>::new();
    for s in samples {
        let bucket = (signed_ms(s.intended, post_sent) / 100.0).floor() as i64;
        let entry = buckets.entry(bucket).or_default();
        entry.0 += 1;
        entry.1 += u64::from(!s.ok);
        entry.2 = entry
            .2
            .max(s.done.duration_since(s.intended).as_micros() as u64);
    }
    for (bucket, (count, failed, worst)) in buckets {
        eprintln!(
            "  {:+6} ms: {count} requests, {failed} failed, max latency {worst} us",
            bucket * 100
        );
    }
}

/// The longest gap between consecutive instants (sorted), and where it started.
fn longest_gap(
    instants: impl Iterator<Item = Instant>,
    from: Instant,
) -> (Duration, Option<Instant>) {
    let mut previous: Option<Instant> = None;
    let mut best = (Duration::ZERO, None);
    for at in instants.filter(|at| *at >= from) {
        if let Some(previous) = previous {
            let gap = at.duration_since(previous);
            if gap > best.0 {
                best = (gap, Some(previous));
            }
        }
        previous = Some(at);
    }
    best
}

fn signed_ms(at: Instant, origin: Instant) -> f64 {
    if at >= origin {
        at.duration_since(origin).as_secs_f64() * 1000.0
    } else {
        -(origin.duration_since(at).as_secs_f64() * 1000.0)
    }
}

fn status(admin: SocketAddr) -> serde_json::Value {
    let (code, body) = testkit::http_get(admin, "/status");
    assert_eq!(code, 200, "/status: {body}");
    serde_json::from_str(&body).expect("JSON")
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// `/proc/net/tcp`'s spelling of an IPv4 address and port.
fn proc_addr(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(v4) => format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(v4.ip().octets()),
            v4.port()
        ),
        SocketAddr::V6(_) => String::new(),
    }
}

/// The inode of the server's end of an established connection (client local, server).
fn server_inode((client, server): (SocketAddr, SocketAddr)) -> Option<u64> {
    let (local, remote) = (proc_addr(server), proc_addr(client));
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.len() > 9 && fields[1] == local && fields[2] == remote && fields[3] == "01")
            .then(|| fields[9].parse().ok())
            .flatten()
    })
}

/// The socket inodes a process holds.
fn socket_inodes(pid: u32) -> Vec<u64> {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            target
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}
