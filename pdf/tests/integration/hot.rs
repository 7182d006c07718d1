//! The hot upgrade on the real binary: `POST /upgrade` and SIGUSR2 hand the sockets, the
//! connections and the state to a new process; no connection closes, the money is exact,
//! the Origin-State-Id stays; a new process killed at any phase leaves the old one serving
//! with nothing lost; fifty upgrades in a row under load close nothing and fail nothing.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol::dictionary::CcRequestType;
use protocol::result_code::ResultCode;
use protocol::transport::ConnectionEvent;
use testkit::{connect, http_get, http_post, Process};

use super::{account, books_ok, ccr, send, session_id, start, PDF};

/// The arguments `start` gave the pdf (the new binary gets the same, or a variant).
fn args(dir: &Path, config: &str, data: &Path) -> Vec<String> {
    let _ = dir;
    [
        "--config",
        config,
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--data-dir",
        &data.display().to_string(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

fn status(pdf: &Process) -> serde_json::Value {
    let (code, body) = http_get(pdf.admin, "/status");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("JSON")
}

/// `POST /upgrade`; returns the HTTP status and the JSON answer.
fn upgrade(pdf: &Process, binary: &str, args: &[String]) -> (u16, serde_json::Value) {
    let request = serde_json::json!({ "binary": binary, "args": args }).to_string();
    let (code, body) = http_post(pdf.admin, "/upgrade", &request);
    let json =
        serde_json::from_str(&body).unwrap_or_else(|_| pdf.fail(&format!("not JSON: {body}")));
    (code, json)
}

/// Stops a process this test did not start (the new pdf), by pid.
struct Pid(u32);

impl Drop for Pid {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-9", &self.0.to_string()])
            .status();
    }
}

fn no_connection_went_down(events: &[ConnectionEvent]) {
    assert!(
        !events.iter().any(|e| matches!(e, ConnectionEvent::Down(_))),
        "a connection went down: {events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_upgrade_keeps_the_connection_the_sessions_and_the_money() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data_arg = data.display().to_string();
    let mut pdf = start(dir.path(), 1000, &["--data-dir", &data_arg]);
    let before = status(&pdf);
    let (_client, connection, node, recorder) = connect(pdf.diameter, "gw1.example.net").await;
    let local = connection.local_addr();
    let s = session_id(&node, 1);
    send(
        &connection,
        ccr(&node, &s, 4, CcRequestType::INITIAL_REQUEST, 0, None),
    )
    .await;
    send(
        &connection,
        ccr(&node, &s, 4, CcRequestType::UPDATE_REQUEST, 1, Some(45)),
    )
    .await;

    // The new version's configuration prices voice at 3 instead of 2: proof that the new
    // code serves after the switch.
    let config = dir.path().join("pdf.toml");
    let text = std::fs::read_to_string(&config).expect("config");
    let repriced = dir.path().join("pdf-v2.toml");
    std::fs::write(
        &repriced,
        format!(
            "{text}[[tariff.service]]\nrating_group = 1\nname = \"voice\"\nunit = \"second\"\nprice = 3\ngrant = 60\n"
        ),
    )
    .expect("write");
    let (code, report) = upgrade(
        &pdf,
        PDF,
        &args(dir.path(), &repriced.display().to_string(), &data),
    );
    assert_eq!(code, 200, "{report}");
    let new_pid = report["new_pid"].as_u64().expect("new pid") as u32;
    let _new = Pid(new_pid);
    assert_eq!(report["connections"], 1, "{report}");
    assert_eq!(report["sessions"], 1, "{report}");
    assert!(
        report["pause_ms"].as_f64().expect("pause") < 2000.0,
        "{report}"
    );
    assert_eq!(
        pdf.wait_exit(Duration::from_secs(10)),
        Some(0),
        "the old pdf exits 0"
    );

    let after = status(&pdf);
    assert_eq!(after["pid"], new_pid);
    assert_eq!(after["origin_state_id"], before["origin_state_id"]);
    assert_eq!(after["sessions"], 1);
    // The same connection goes on: UPDATE and TERMINATION, charged at the new price.
    let (result, ..) = send(
        &connection,
        ccr(&node, &s, 4, CcRequestType::UPDATE_REQUEST, 2, Some(10)),
    )
    .await;
    assert_eq!(result, ResultCode::SUCCESS);
    let (result, ..) = send(
        &connection,
        ccr(&node, &s, 4, CcRequestType::TERMINATION_REQUEST, 3, Some(5)),
    )
    .await;
    assert_eq!(result, ResultCode::SUCCESS);
    let a = account(&pdf, 2);
    assert_eq!(a["debited"], 45 * 2 + (10 + 5) * 3, "{a}");
    assert_eq!(a["reserved"], 0, "{a}");
    books_ok(&pdf);
    assert_eq!(connection.local_addr(), local);
    assert!(connection.is_open());
    no_connection_went_down(&recorder.events.lock().expect("not poisoned"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_process_dying_at_any_phase_leaves_the_old_one_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data_arg = data.display().to_string();
    let pdf = start(dir.path(), 100_000, &["--data-dir", &data_arg]);
    let before = status(&pdf);
    let (_client, connection, node, recorder) = connect(pdf.diameter, "gw1.example.net").await;
    let s = session_id(&node, 1);
    send(
        &connection,
        ccr(&node, &s, 4, CcRequestType::INITIAL_REQUEST, 0, None),
    )
    .await;
    let config = dir.path().join("pdf.toml").display().to_string();
    // Traffic on another session all along: every failed upgrade detaches and re-adopts
    // the connection mid-stream (unread and unwritten bytes included).
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (connection, node, stop) = (connection.clone(), node.clone(), stop.clone());
        tokio::spawn(async move {
            let s = session_id(&node, 2);
            let (result, ..) = send(
                &connection,
                ccr(&node, &s, 5, CcRequestType::INITIAL_REQUEST, 0, None),
            )
            .await;
            assert_eq!(result, ResultCode::SUCCESS);
            let mut number = 1;
            while !stop.load(Ordering::Relaxed) {
                let (result, ..) = send(
                    &connection,
                    ccr(&node, &s, 5, CcRequestType::UPDATE_REQUEST, number, Some(1)),
                )
                .await;
                assert_eq!(result, ResultCode::SUCCESS, "UPDATE {number}");
                number += 1;
            }
            u64::from(number - 1)
        })
    };
    let mut number = 1;
    for phase in [
        "schema",
        "hello",
        "listeners",
        "connections",
        "state",
        "journal",
        "ready",
    ] {
        // `env` starts the new pdf with the fault: it kills itself (SIGKILL) at that phase.
        let mut fault = vec![format!("PDF_HOT_FAULT={phase}"), PDF.to_owned()];
        fault.extend(args(dir.path(), &config, &data));
        let (code, answer) = upgrade(&pdf, "/usr/bin/env", &fault);
        assert_eq!(code, 409, "{phase}: {answer}");
        let now = status(&pdf);
        assert_eq!(now["pid"], before["pid"], "{phase}: the old process serves");
        assert_eq!(now["origin_state_id"], before["origin_state_id"]);
        let (result, ..) = send(
            &connection,
            ccr(&node, &s, 4, CcRequestType::UPDATE_REQUEST, number, Some(1)),
        )
        .await;
        assert_eq!(result, ResultCode::SUCCESS, "{phase}");
        number += 1;
        books_ok(&pdf);
    }
    assert_eq!(account(&pdf, 2)["debited"], 7 * 2);
    stop.store(true, Ordering::Relaxed);
    let updates = load.await.expect("every UPDATE answered 2001");
    assert!(
        updates > 7,
        "traffic ran through the failed upgrades: {updates}"
    );
    assert_eq!(account(&pdf, 3)["debited"], 2 * updates);
    no_connection_went_down(&recorder.events.lock().expect("not poisoned"));
    // And after all that, an upgrade that works.
    let (code, report) = upgrade(&pdf, PDF, &args(dir.path(), &config, &data));
    assert_eq!(code, 200, "{report}");
    let _new = Pid(report["new_pid"].as_u64().expect("pid") as u32);
    let (result, ..) = send(
        &connection,
        ccr(
            &node,
            &s,
            4,
            CcRequestType::TERMINATION_REQUEST,
            number,
            Some(1),
        ),
    )
    .await;
    assert_eq!(result, ResultCode::SUCCESS);
    assert_eq!(account(&pdf, 2)["debited"], 8 * 2);
    books_ok(&pdf);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr2_upgrades_to_the_binary_at_the_same_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The pdf runs from a copy that is then replaced, as an operator swaps the file: the
    // new process must be the file now at the path, not the running (deleted) image.
    let binary = dir.path().join("pdf");
    std::fs::copy(PDF, &binary).expect("copy the binary");
    let mut pdf = super::start_binary(&binary, dir.path(), 1000, &[]);
    std::fs::remove_file(&binary).expect("remove");
    std::fs::copy(PDF, &binary).expect("the new version at the same path");
    let before = status(&pdf);
    let (_client, connection, node, recorder) = connect(pdf.diameter, "gw1.example.net").await;
    let s = session_id(&node, 1);
    send(
        &connection,
        ccr(&node, &s, 4, CcRequestType::INITIAL_REQUEST, 0, None),
    )
    .await;
    assert_eq!(
        pdf.signal(12),
        Some(0),
        "SIGUSR2: the old pdf hands over and exits 0"
    );
    let after = status(&pdf);
    let _new = Pid(after["pid"].as_u64().expect("pid") as u32);
    assert_ne!(after["pid"], before["pid"]);
    assert_eq!(after["origin_state_id"], before["origin_state_id"]);
    let (result, ..) = send(
        &connection,
        ccr(&node, &s, 4, CcRequestType::TERMINATION_REQUEST, 1, Some(7)),
    )
    .await;
    assert_eq!(result, ResultCode::SUCCESS);
    assert_eq!(account(&pdf, 2)["debited"], 14);
    no_connection_went_down(&recorder.events.lock().expect("not poisoned"));
}

/// Fifty hot upgrades in a row while a client keeps sessions going on one connection:
/// the connection never closes (same 4-tuple), every request gets 2001, the money is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_hot_upgrades_under_load_close_nothing_and_fail_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data_arg = data.display().to_string();
    let pdf = start(dir.path(), 1_000_000, &["--data-dir", &data_arg]);
    let config = dir.path().join("pdf.toml").display().to_string();
    let (_client, connection, node, recorder) = connect(pdf.diameter, "gw1.example.net").await;
    let tuple = (connection.local_addr(), connection.peer_addr());

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let used = Arc::new(AtomicU64::new(0));
    let answered = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    for worker in 0..4u32 {
        let (connection, node) = (connection.clone(), node.clone());
        let (stop, used, answered) = (stop.clone(), used.clone(), answered.clone());
        // Subscribers 4 to 7 have accounts 2 to 5 to themselves.
        let subscriber = 4 + worker;
        load.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let s = session_id(&node, worker * 1_000_000 + n);
                n += 1;
                let steps = [
                    (CcRequestType::INITIAL_REQUEST, None),
                    (CcRequestType::UPDATE_REQUEST, Some(3)),
                    (CcRequestType::TERMINATION_REQUEST, Some(2)),
                ];
                for (number, (kind, usage)) in steps.into_iter().enumerate() {
                    let (result, ..) = send(
                        &connection,
                        ccr(&node, &s, subscriber, kind, number as u32, usage),
                    )
                    .await;
                    assert_eq!(result, ResultCode::SUCCESS, "{s} step {number}");
                    used.fetch_add(u64::from(usage.unwrap_or(0)), Ordering::Relaxed);
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let mut pids = Vec::new();
    let mut worst_pause: f64 = 0.0;
    let started = Instant::now();
    for round in 0..50 {
        let seen = answered.load(Ordering::Relaxed);
        let (code, report) = upgrade(&pdf, PDF, &args(dir.path(), &config, &data));
        // Guarded before any assertion, so that a failing round leaks no process.
        if let Some(pid) = report["new_pid"].as_u64() {
            pids.push(Pid(pid as u32));
        }
        assert_eq!(code, 200, "round {round}: {report}");
        worst_pause = worst_pause.max(report["pause_ms"].as_f64().unwrap_or(0.0));
        // Traffic flows between upgrades.
        let deadline = Instant::now() + Duration::from_secs(10);
        while answered.load(Ordering::Relaxed) < seen + 20 {
            assert!(
                Instant::now() < deadline,
                "round {round}: no traffic after the upgrade"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for worker in load {
        worker.await.expect("every request answered 2001");
    }
    eprintln!(
        "50 hot upgrades in {:?}, {} requests answered, worst pause {worst_pause:.1} ms",
        started.elapsed(),
        answered.load(Ordering::Relaxed)
    );
    assert_eq!((connection.local_addr(), connection.peer_addr()), tuple);
    assert!(connection.is_open());
    no_connection_went_down(&recorder.events.lock().expect("not poisoned"));
    let debited: i64 = (2..6)
        .map(|id| account(&pdf, id)["debited"].as_i64().expect("debited"))
        .sum();
    assert_eq!(
        debited,
        2 * used.load(Ordering::Relaxed) as i64,
        "every second charged once"
    );
    books_ok(&pdf);
}
