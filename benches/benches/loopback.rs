//! Request/answer throughput over one loopback connection, both ends ours (issue 3's budget:
//! >= 300k pairs per second on a 2-core machine), with the latency distribution.
//!
//! One process: a `Server` answering each CCR-U with a CCA (typed decode + encode, as the
//! PDF will), and a `Client` keeping `WINDOW` requests in flight on one connection for
//! `SECONDS`. Latency is measured per request from the call to `Connection::request` to its
//! answer, into HDR histograms.
//!
//! Run: `cargo bench -p benches --bench loopback` (env: SECONDS=10 WINDOW=256 WORKERS=2
//! DUPLICATES=on|off). Prints a summary and one JSON line.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;
use protocol::dictionary::CcRequestType;
use protocol::grammar::{Command, Envelope};
use protocol::header::{ApplicationId, HopByHopId};
use protocol::messages::{Cca, Ccr, MultipleServicesCreditControl, ServiceUnit};
use protocol::peer::{DuplicateCache, EndToEndIds, Node, PeerConfig};
use protocol::result_code::ResultCode;
use protocol::transport::{Client, ClientOptions, Connection, Handler, Incoming, Server};
use smallvec::smallvec;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Pdf;

impl Handler for Pdf {
    fn on_request(&self, _: &Connection, incoming: Incoming) {
        let message = incoming.message;
        let ccr = match Ccr::decode(&message.view()) {
            Ok(ccr) => ccr,
            Err(error) => return incoming.responder.reject(error),
        };
        incoming.responder.answer_with(|envelope, buf| {
            Cca {
                session_id: ccr.session_id,
                result_code: ResultCode::SUCCESS,
                origin_host: "pdf.example.net",
                origin_realm: "example.net",
                auth_application_id: 4,
                cc_request_type: ccr.cc_request_type,
                cc_request_number: ccr.cc_request_number,
                multiple_services_credit_control: smallvec![MultipleServicesCreditControl {
                    granted_service_unit: Some(ServiceUnit {
                        cc_time: Some(60),
                        ..Default::default()
                    }),
                    rating_group: Some(1),
                    validity_time: Some(600),
                    result_code: Some(ResultCode::SUCCESS),
                    ..Default::default()
                }],
                ..Default::default()
            }
            .encode(envelope, buf);
        });
    }
}

fn ccr(node: &Node, session: u32, number: u32) -> Bytes {
    let session_id = format!("gw1.example.net;1700000000;{session}");
    let ccr = Ccr {
        session_id: &session_id,
        origin_host: &node.config.origin_host,
        origin_realm: "example.net",
        destination_realm: "ocs.example.net",
        auth_application_id: 4,
        service_context_id: "32251@3gpp.org",
        cc_request_type: CcRequestType::UPDATE_REQUEST,
        cc_request_number: number,
        multiple_services_credit_control: smallvec![MultipleServicesCreditControl {
            used_service_units: smallvec![ServiceUnit {
                cc_time: Some(60),
                ..Default::default()
            }],
            rating_group: Some(1),
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut out = BytesMut::with_capacity(256);
    let envelope = Envelope::request(
        ApplicationId::CREDIT_CONTROL,
        HopByHopId(0),
        node.end_to_end.next(),
    );
    ccr.encode(envelope, &mut out);
    out.freeze()
}

struct Recorder;
impl Handler for Recorder {
    fn on_request(&self, _: &Connection, _: Incoming) {}
}

fn node(host: &str, duplicates: bool) -> Arc<Node> {
    let mut config = PeerConfig::new(host, "example.net");
    config.max_pending_requests = 1 << 20;
    config.max_incoming_requests = 1 << 20;
    Arc::new(Node {
        config,
        end_to_end: EndToEndIds::new(1_700_000_000, fastrand::u32(..)),
        duplicates: DuplicateCache::new(
            Duration::from_secs(60),
            if duplicates { 256 * 1024 } else { 0 },
        ),
    })
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing and wants a quick run.
    let quick = !std::env::args().any(|a| a == "--bench");
    let seconds: f64 = env("SECONDS", if quick { 0.5 } else { 10.0 });
    let window: usize = env("WINDOW", 256);
    let workers: usize = env("WORKERS", 2);
    let duplicates = std::env::var("DUPLICATES").map_or(true, |v| v != "off");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(seconds, window, workers, duplicates));
}

async fn run(seconds: f64, window: usize, workers: usize, duplicates: bool) {
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("address");
    let server = Server::bind(addr, node("pdf.example.net", duplicates), Arc::new(Pdf))
        .await
        .expect("bind");
    let client_node = node("gw1.example.net", duplicates);
    let client = Client::start(
        server.local_addr(),
        client_node.clone(),
        Arc::new(Recorder),
        ClientOptions::default(),
    );
    let connection = client
        .wait_open(Duration::from_secs(5))
        .await
        .expect("connected");

    // Warm up, then measure.
    let stop = Arc::new(AtomicBool::new(false));
    let warmup = Duration::from_secs_f64((seconds / 5.0).min(2.0));
    let measure_from = Instant::now() + warmup;
    let deadline = measure_from + Duration::from_secs_f64(seconds);
    let tasks: Vec<_> = (0..window as u32)
        .map(|lane| {
            let (connection, node, stop) = (connection.clone(), client_node.clone(), stop.clone());
            tokio::spawn(async move {
                let mut histogram =
                    Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
                let mut failures = 0u64;
                let mut number = 0;
                while !stop.load(Ordering::Relaxed) {
                    let request = ccr(&node, lane, number);
                    number += 1;
                    let sent = Instant::now();
                    let result = connection.request(request, None).await;
                    let done = Instant::now();
                    if sent >= measure_from && done <= deadline {
                        match result {
                            Ok(_) => histogram.saturating_record(
                                done.duration_since(sent).as_micros().max(1) as u64,
                            ),
                            Err(_) => failures += 1,
                        }
                    }
                    if done > deadline {
                        break;
                    }
                }
                (histogram, failures)
            })
        })
        .collect();
    tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
    let mut failures = 0;
    for task in tasks {
        let (histogram, failed) = task.await.expect("lane");
        total.add(histogram).expect("same bounds");
        failures += failed;
    }
    let pairs = total.len();
    let rate = pairs as f64 / seconds;
    println!(
        "loopback: {pairs} request/answer pairs in {seconds} s over 1 connection, window {window}, \
         {workers} runtime workers, duplicate cache {}",
        if duplicates { "on" } else { "off" }
    );
    println!(
        "  {rate:.0} pairs/s; latency us: p50 {} p99 {} p99.9 {} max {}; failures {failures}",
        total.value_at_quantile(0.5),
        total.value_at_quantile(0.99),
        total.value_at_quantile(0.999),
        total.max()
    );
    println!(
        "{{\"bench\":\"loopback\",\"pairs\":{pairs},\"seconds\":{seconds},\"rate\":{rate:.0},\"window\":{window},\
         \"workers\":{workers},\"duplicates\":{duplicates},\"p50_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{},\"failures\":{failures}}}",
        total.value_at_quantile(0.5),
        total.value_at_quantile(0.99),
        total.value_at_quantile(0.999),
        total.max()
    );
    client
        .close(protocol::dictionary::DisconnectCause::DO_NOT_WANT_TO_TALK_TO_YOU)
        .await;
    server
        .shutdown(protocol::dictionary::DisconnectCause::REBOOTING)
        .await;
}
