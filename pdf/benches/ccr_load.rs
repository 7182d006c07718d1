//! CCR throughput of one `pdf` process driven over loopback (issue 4).
//!
//! Starts the real `pdf` binary (port 0), opens `CONNECTIONS` client connections (each its
//! own Origin-Host, as the gateway's pool does), and runs `WINDOW` sessions in flight per
//! connection, each INITIAL, `UPDATES` UPDATEs with usage, TERMINATION, back to back, for
//! `SECONDS`. Reports answered CCRs per second and latency percentiles, and checks the books
//! at the end. Run: `cargo bench -p pdf --bench ccr_load` (env: SECONDS=10 CONNECTIONS=4
//! WINDOW=64 UPDATES=8 DURABILITY=none|group).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use hdrhistogram::Histogram;
use protocol::dictionary::{CcRequestType, SubscriptionIdType};
use protocol::grammar::{Command, Envelope};
use protocol::header::{ApplicationId, HopByHopId};
use protocol::messages::{Cca, Ccr, MultipleServicesCreditControl, ServiceUnit, SubscriptionId};
use smallvec::smallvec;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let seconds: f64 = env("SECONDS", if quick { 0.5 } else { 10.0 });
    let connections: u32 = env("CONNECTIONS", 4);
    let window: u32 = env("WINDOW", 64);
    let updates: u32 = env("UPDATES", 8);
    let durability: String = env("DURABILITY", "none".to_owned());
    let dir = std::env::temp_dir().join(format!("pdf-ccr-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = dir.join("pdf.toml");
    std::fs::write(
        &config,
        "[population]\nsubscribers = 100000\nshared_share = 0.0\nbalance = { dist = \"constant\", value = 1000000000 }\n",
    )
    .expect("config");
    let data = dir.join("data").display().to_string();
    let config_arg = config.display().to_string();
    let mut args = vec![
        "--config",
        config_arg.as_str(),
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--durability",
        &durability,
    ];
    if durability == "group" {
        args.extend_from_slice(&["--data-dir", &data]);
    }
    std::env::set_var("RUST_LOG", "warn");
    let pdf = testkit::Process::start(Path::new(env!("CARGO_BIN_EXE_pdf")), &args);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let (answered, histogram, failures) =
        runtime.block_on(load(pdf.diameter, seconds, connections, window, updates));
    let rate = answered as f64 / seconds;
    let (_, books) = testkit::http_get(pdf.admin, "/books");
    println!(
        "pdf ccr load: {answered} CCRs answered in {seconds} s over {connections} connections x {window} sessions in flight, \
         {updates} updates a session, durability {durability}"
    );
    println!(
        "  {rate:.0} CCR/s; latency us: p50 {} p99 {} p99.9 {} max {}; failures {failures}; books ok: {}",
        histogram.value_at_quantile(0.5),
        histogram.value_at_quantile(0.99),
        histogram.value_at_quantile(0.999),
        histogram.max(),
        books.contains("\"ok\":true")
    );
    println!(
        "{{\"bench\":\"pdf-ccr-load\",\"ccrs\":{answered},\"seconds\":{seconds},\"rate\":{rate:.0},\"connections\":{connections},\
         \"window\":{window},\"durability\":\"{durability}\",\"p50_us\":{},\"p99_us\":{},\"p999_us\":{},\"failures\":{failures}}}",
        histogram.value_at_quantile(0.5),
        histogram.value_at_quantile(0.99),
        histogram.value_at_quantile(0.999)
    );
    drop(pdf);
    let _ = std::fs::remove_dir_all(&dir);
}

async fn load(
    addr: std::net::SocketAddr,
    seconds: f64,
    connections: u32,
    window: u32,
    updates: u32,
) -> (u64, Histogram<u64>, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let warmup = Duration::from_secs_f64((seconds / 5.0).min(2.0));
    let start = Instant::now() + warmup;
    let end = start + Duration::from_secs_f64(seconds);
    let mut lanes = Vec::new();
    for c in 0..connections {
        let (client, connection, node, _) =
            testkit::connect(addr, &format!("gw{c}.example.net")).await;
        let client = Arc::new(client);
        for lane in 0..window {
            let (connection, node, stop, client) = (
                connection.clone(),
                node.clone(),
                stop.clone(),
                client.clone(),
            );
            lanes.push(tokio::spawn(async move {
                let _keep = client;
                let mut histogram =
                    Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
                let (mut answered, mut failures) = (0u64, 0u64);
                let subscriber = c * window + lane;
                let msisdn = (491_700_000_000u64 + u64::from(subscriber)).to_string();
                for session in 0u32.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let session_id = format!(
                        "{};1700000000;{}",
                        node.config.origin_host,
                        lane * 1_000_000 + session
                    );
                    for number in 0..=updates + 1 {
                        let kind = match number {
                            0 => CcRequestType::INITIAL_REQUEST,
                            n if n == updates + 1 => CcRequestType::TERMINATION_REQUEST,
                            _ => CcRequestType::UPDATE_REQUEST,
                        };
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
                            multiple_services_credit_control: smallvec![
                                MultipleServicesCreditControl {
                                    used_service_units: if number > 0 {
                                        smallvec![ServiceUnit {
                                            cc_time: Some(30),
                                            ..Default::default()
                                        }]
                                    } else {
                                        smallvec![]
                                    },
                                    rating_group: Some(1),
                                    ..Default::default()
                                }
                            ],
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
                        let sent = Instant::now();
                        let result = connection.request(out.freeze(), None).await;
                        let done = Instant::now();
                        let ok = result.ok().and_then(|a| {
                            Cca::decode(&a.view())
                                .ok()
                                .map(|c| c.result_code.is_success())
                        });
                        if sent >= start && done <= end {
                            if ok == Some(true) {
                                answered += 1;
                                histogram.saturating_record(
                                    done.duration_since(sent).as_micros().max(1) as u64,
                                );
                            } else {
                                failures += 1;
                            }
                        }
                        if done > end {
                            return (answered, histogram, failures);
                        }
                    }
                }
                (answered, histogram, failures)
            }));
        }
    }
    tokio::time::sleep_until(tokio::time::Instant::from_std(end)).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
    let (mut answered, mut failures) = (0, 0);
    for lane in lanes {
        let (a, h, f) = lane.await.expect("lane");
        answered += a;
        failures += f;
        total.add(h).expect("same bounds");
    }
    (answered, total, failures)
}
