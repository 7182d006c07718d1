//! End-to-end transactions through the real `gateway` with one real `pdf` behind it, on
//! loopback (DESIGN.md section 7: >= 100k ACR -> CCR -> CCA -> ACA per second with all three
//! processes on one 2-core machine; p99 < 2 ms at half that rate).
//!
//! `CONNECTIONS` access connections keep `WINDOW` sessions each going: START, `INTERIMS`
//! INTERIMs with usage, STOP, back to back. With `RATE` set (transactions per second, all
//! lanes together) each lane sends on a schedule and latency is measured from the intended
//! send time (no coordinated omission); without it, as fast as answers come. Build the pdf
//! first: `cargo build --release -p pdf`. Run: `cargo bench -p gateway --bench relay`
//! (env: SECONDS=10 CONNECTIONS=4 WINDOW=64 INTERIMS=8 RATE=).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use hdrhistogram::Histogram;
use protocol::dictionary::{AccountingRecordType, SubscriptionIdType, TerminationCause};
use protocol::grammar::{Command, Envelope};
use protocol::header::{ApplicationId, HopByHopId};
use protocol::messages::{Aca, Acr, ServiceUnit, SubscriptionId};
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
    let interims: u32 = env("INTERIMS", 8);
    let rate: Option<f64> = std::env::var("RATE").ok().and_then(|v| v.parse().ok());
    let gateway_bin = Path::new(env!("CARGO_BIN_EXE_gateway"));
    let pdf_bin = gateway_bin.with_file_name("pdf");
    if !pdf_bin.exists() {
        eprintln!(
            "relay bench: {} is missing; build it with the same profile first",
            pdf_bin.display()
        );
        if quick {
            return;
        }
        std::process::exit(2);
    }
    let dir = std::env::temp_dir().join(format!("gateway-relay-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = dir.join("pdf.toml");
    std::fs::write(&config, "[population]\nsubscribers = 100000\nshared_share = 0.0\nbalance = { dist = \"constant\", value = 1000000000 }\n")
        .expect("config");
    std::env::set_var("RUST_LOG", "warn");
    let config_arg = config.display().to_string();
    let pdf = testkit::Process::start(
        &pdf_bin,
        &[
            "--config",
            &config_arg,
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
        ],
    );
    let pdf_addr = pdf.diameter.to_string();
    let gateway = testkit::Process::start(
        gateway_bin,
        &[
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--pdf",
            &pdf_addr,
        ],
    );
    std::thread::sleep(Duration::from_millis(500));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let (done, histogram, service, failures) = runtime.block_on(load(
        gateway.diameter,
        seconds,
        connections,
        window,
        interims,
        rate,
    ));
    let achieved = done as f64 / seconds;
    let (_, books) = testkit::http_get(pdf.admin, "/books");
    let mode = rate.map_or("as fast as answers come".to_owned(), |r| {
        format!("scheduled at {r:.0}/s")
    });
    println!(
        "gateway relay: {done} transactions (ACR -> CCR -> CCA -> ACA) in {seconds} s, {connections} access connections x {window} sessions, {mode}"
    );
    println!(
        "  {achieved:.0} transactions/s; latency us (from the intended send time): p50 {} p99 {} p99.9 {} max {}; failures {failures}; pdf books ok: {}",
        histogram.value_at_quantile(0.5),
        histogram.value_at_quantile(0.99),
        histogram.value_at_quantile(0.999),
        histogram.max(),
        books.contains("\"ok\":true")
    );
    println!(
        "  service latency us (from the actual send): p50 {} p99 {} p99.9 {}",
        service.value_at_quantile(0.5),
        service.value_at_quantile(0.99),
        service.value_at_quantile(0.999)
    );
    println!(
        "{{\"bench\":\"gateway-relay\",\"transactions\":{done},\"seconds\":{seconds},\"rate\":{achieved:.0},\"target_rate\":{},\
         \"p50_us\":{},\"p99_us\":{},\"p999_us\":{},\"failures\":{failures}}}",
        rate.map_or("null".to_owned(), |r| format!("{r:.0}")),
        histogram.value_at_quantile(0.5),
        histogram.value_at_quantile(0.99),
        histogram.value_at_quantile(0.999)
    );
    drop(gateway);
    drop(pdf);
    let _ = std::fs::remove_dir_all(&dir);
}

async fn load(
    addr: std::net::SocketAddr,
    seconds: f64,
    connections: u32,
    window: u32,
    interims: u32,
    rate: Option<f64>,
) -> (u64, Histogram<u64>, Histogram<u64>, u64) {
    let warmup = Duration::from_secs_f64((seconds / 5.0).min(2.0));
    let start = Instant::now() + warmup;
    let end = start + Duration::from_secs_f64(seconds);
    let lanes_total = f64::from(connections * window);
    let interval = rate.map(|r| Duration::from_secs_f64(lanes_total / r));
    let mut lanes = Vec::new();
    for c in 0..connections {
        let (client, connection, node, _) =
            testkit::connect(addr, &format!("lg{c}.example.net")).await;
        let client = Arc::new(client);
        for lane in 0..window {
            let (connection, node, client) = (connection.clone(), node.clone(), client.clone());
            lanes.push(tokio::spawn(async move {
                let _keep = client;
                let mut histogram =
                    Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
                let mut service =
                    Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
                let (mut done, mut failures) = (0u64, 0u64);
                let subscriber = c * window + lane;
                let msisdn = (491_700_000_000u64 + u64::from(subscriber)).to_string();
                // Spread the lanes' schedules over one interval.
                let mut intended = Instant::now()
                    + interval.map_or(Duration::ZERO, |i| {
                        i.mul_f64(f64::from(lane) / f64::from(window))
                    });
                for session in 0u32.. {
                    let session_id = format!(
                        "{};1700000000;{}",
                        node.config.origin_host,
                        lane * 1_000_000 + session
                    );
                    for number in 0..=interims + 1 {
                        let kind = match number {
                            0 => AccountingRecordType::START_RECORD,
                            n if n == interims + 1 => AccountingRecordType::STOP_RECORD,
                            _ => AccountingRecordType::INTERIM_RECORD,
                        };
                        let acr = Acr {
                            session_id: &session_id,
                            origin_host: &node.config.origin_host,
                            origin_realm: "example.net",
                            destination_realm: "example.net",
                            accounting_record_type: kind,
                            accounting_record_number: number,
                            acct_application_id: Some(3),
                            subscription_ids: smallvec![SubscriptionId {
                                subscription_id_type: SubscriptionIdType::END_USER_E164,
                                subscription_id_data: &msisdn,
                            }],
                            rating_group: Some(1),
                            used_service_unit: (number > 0).then_some(ServiceUnit {
                                cc_time: Some(30),
                                ..Default::default()
                            }),
                            termination_cause: (kind == AccountingRecordType::STOP_RECORD)
                                .then_some(TerminationCause::LOGOUT),
                            ..Default::default()
                        };
                        let mut out = BytesMut::with_capacity(256);
                        acr.encode(
                            Envelope::request(
                                ApplicationId::BASE_ACCOUNTING,
                                HopByHopId(0),
                                node.end_to_end.next(),
                            ),
                            &mut out,
                        );
                        if let Some(interval) = interval {
                            tokio::time::sleep_until(tokio::time::Instant::from_std(intended))
                                .await;
                            intended += interval;
                        }
                        let sent = if interval.is_some() {
                            intended - interval.unwrap_or_default()
                        } else {
                            Instant::now()
                        };
                        let actually_sent = Instant::now();
                        let result = connection.request(out.freeze(), None).await;
                        let now = Instant::now();
                        let ok = result.ok().and_then(|a| {
                            Aca::decode(&a.view())
                                .ok()
                                .map(|a| a.result_code.is_success())
                        });
                        if sent >= start && now <= end {
                            if ok == Some(true) {
                                done += 1;
                                histogram.saturating_record(
                                    now.duration_since(sent).as_micros().max(1) as u64,
                                );
                                service.saturating_record(
                                    now.duration_since(actually_sent).as_micros().max(1) as u64,
                                );
                            } else {
                                failures += 1;
                            }
                        }
                        if now > end {
                            return (done, histogram, service, failures);
                        }
                    }
                }
                (done, histogram, service, failures)
            }));
        }
    }
    let mut total = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
    let mut service = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
    let (mut done, mut failures) = (0, 0);
    for lane in lanes {
        let (d, h, s, f) = lane.await.expect("lane");
        done += d;
        failures += f;
        total.add(h).expect("same bounds");
        service.add(s).expect("same bounds");
    }
    (done, total, service, failures)
}
