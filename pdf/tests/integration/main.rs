//! The real `pdf` binary on 127.0.0.1 (port 0), driven over TCP by our Diameter client and
//! read back through its admin port.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use protocol::dictionary::{CcRequestType, DisconnectCause, SubscriptionIdType};
use protocol::encode::set_retransmit_flag;
use protocol::grammar::{Command, Envelope};
use protocol::header::{ApplicationId, HopByHopId};
use protocol::messages::{
    Asr, Cca, Ccr, MultipleServicesCreditControl, ServiceUnit, SubscriptionId,
};
use protocol::peer::{DownReason, Node};
use protocol::result_code::ResultCode;
use protocol::transport::{Connection, ConnectionEvent};
use smallvec::smallvec;
use testkit::{connect, http_get, Process};

mod hot;
mod otp;

const PDF: &str = env!("CARGO_BIN_EXE_pdf");

/// 8 subscribers: 0-3 in two families of 2 (accounts 0 and 1), 4-7 alone (accounts 2-5);
/// every account opens with `balance`. Voice: 2 per second, 60 s grants.
fn config(dir: &Path, balance: i64) -> String {
    let path = dir.join("pdf.toml");
    std::fs::write(
        &path,
        format!(
            "[population]\nsubscribers = 8\nshared_share = 0.5\nfamily_size = 2\n\
             balance = {{ dist = \"constant\", value = {balance} }}\n\
             [diameter]\norigin_host = \"pdf.test.example.net\"\nwatchdog_seconds = 6\n"
        ),
    )
    .expect("write config");
    path.display().to_string()
}

fn start(dir: &Path, balance: i64, extra: &[&str]) -> Process {
    start_binary(Path::new(PDF), dir, balance, extra)
}

/// [`start`] with another copy of the pdf binary.
fn start_binary(binary: &Path, dir: &Path, balance: i64, extra: &[&str]) -> Process {
    let config = config(dir, balance);
    let mut args = vec![
        "--config",
        &config,
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    Process::start(binary, &args)
}

fn msisdn(subscriber: u32) -> String {
    (491_700_000_000u64 + u64::from(subscriber)).to_string()
}

/// A voice CCR; `used` seconds reported in the MSCC.
fn ccr(
    node: &Node,
    session: &str,
    subscriber: u32,
    kind: CcRequestType,
    number: u32,
    used: Option<u32>,
) -> Bytes {
    let msisdn = msisdn(subscriber);
    let ccr = Ccr {
        session_id: session,
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
            requested_service_unit: (kind != CcRequestType::TERMINATION_REQUEST)
                .then(ServiceUnit::default),
            used_service_units: used
                .map(|s| smallvec![ServiceUnit {
                    cc_time: Some(s),
                    ..Default::default()
                }])
                .unwrap_or_default(),
            rating_group: Some(1),
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut out = BytesMut::new();
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

/// (Result-Code, MSCC result, granted seconds, final units)
async fn send(
    connection: &Connection,
    request: Bytes,
) -> (ResultCode, Option<ResultCode>, Option<u32>, bool) {
    let answer = connection
        .request(request, Some(Duration::from_secs(10)))
        .await
        .expect("answered");
    let cca = Cca::decode(&answer.view()).expect("a CCA");
    let mscc = cca.multiple_services_credit_control.first();
    (
        cca.result_code,
        mscc.and_then(|m| m.result_code),
        mscc.and_then(|m| m.granted_service_unit.as_ref())
            .and_then(|g| g.cc_time),
        mscc.is_some_and(|m| m.final_unit_indication.is_some()),
    )
}

fn account(pdf: &Process, id: u32) -> serde_json::Value {
    let (status, body) = http_get(pdf.admin, &format!("/accounts/{id}"));
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| pdf.fail(&format!("bad JSON {body}: {e}")))
}

fn books_ok(pdf: &Process) {
    let (status, body) = http_get(pdf.admin, "/books");
    let books: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    if status != 200 || books["ok"] != true {
        pdf.fail(&format!("books do not balance: {body}"));
    }
}

fn session_id(node: &Node, n: u32) -> String {
    format!("{};1700000000;{n}", node.config.origin_host)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_update_termination_charges_the_usage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pdf = start(dir.path(), 1000, &[]);
    let (_client, connection, node, _) = connect(pdf.diameter, "gw1.example.net").await;
    let s = session_id(&node, 1);
    assert_eq!(
        send(
            &connection,
            ccr(&node, &s, 4, CcRequestType::INITIAL_REQUEST, 0, None)
        )
        .await,
        (
            ResultCode::SUCCESS,
            Some(ResultCode::SUCCESS),
            Some(60),
            false
        )
    );
    assert_eq!(account(&pdf, 2)["reserved"], 120);
    assert_eq!(
        send(
            &connection,
            ccr(&node, &s, 4, CcRequestType::UPDATE_REQUEST, 1, Some(45))
        )
        .await
        .0,
        ResultCode::SUCCESS
    );
    assert_eq!(
        send(
            &connection,
            ccr(
                &node,
                &s,
                4,
                CcRequestType::TERMINATION_REQUEST,
                2,
                Some(10)
            )
        )
        .await
        .0,
        ResultCode::SUCCESS
    );
    let a = account(&pdf, 2);
    assert_eq!(
        (
            a["balance"].as_i64(),
            a["reserved"].as_i64(),
            a["debited"].as_i64()
        ),
        (Some(890), Some(0), Some(110))
    );
    books_ok(&pdf);
    let (status, status_body) = http_get(pdf.admin, "/status");
    assert_eq!(status, 200);
    assert!(status_body.contains("\"sessions\":0"), "{status_body}");
    let (_, metrics) = http_get(pdf.admin, "/metrics");
    assert!(metrics.contains("pdf_requests_total"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn final_units_then_credit_limit_reached() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pdf = start(dir.path(), 150, &[]);
    let (_client, connection, node, _) = connect(pdf.diameter, "gw1.example.net").await;
    let s = session_id(&node, 2);
    assert_eq!(
        send(
            &connection,
            ccr(&node, &s, 4, CcRequestType::INITIAL_REQUEST, 0, None)
        )
        .await
        .2,
        Some(60)
    );
    let (result, _, granted, final_units) = send(
        &connection,
        ccr(&node, &s, 4, CcRequestType::UPDATE_REQUEST, 1, Some(60)),
    )
    .await;
    assert_eq!(
        (result, granted, final_units),
        (ResultCode::SUCCESS, Some(15), true)
    );
    let (result, mscc, _, _) = send(
        &connection,
        ccr(&node, &s, 4, CcRequestType::UPDATE_REQUEST, 2, Some(15)),
    )
    .await;
    assert_eq!(
        (result, mscc),
        (
            ResultCode::CREDIT_LIMIT_REACHED,
            Some(ResultCode::CREDIT_LIMIT_REACHED)
        )
    );
    assert_eq!(account(&pdf, 2)["debited"], 150);
    books_ok(&pdf);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_account_running_dry_sends_asr_for_the_other_session() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pdf = start(dir.path(), 240, &[]);
    let (_client, connection, node, recorder) = connect(pdf.diameter, "gw1.example.net").await;
    let (a, b) = (session_id(&node, 3), session_id(&node, 4));
    send(
        &connection,
        ccr(&node, &a, 0, CcRequestType::INITIAL_REQUEST, 0, None),
    )
    .await;
    send(
        &connection,
        ccr(&node, &b, 1, CcRequestType::INITIAL_REQUEST, 0, None),
    )
    .await;
    let (result, ..) = send(
        &connection,
        ccr(&node, &a, 0, CcRequestType::UPDATE_REQUEST, 1, Some(60)),
    )
    .await;
    assert_eq!(result, ResultCode::CREDIT_LIMIT_REACHED);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let asr = recorder
            .requests
            .lock()
            .expect("not poisoned")
            .first()
            .cloned();
        if let Some(asr) = asr {
            let view = protocol::message::MessageView::parse(&asr).expect("message");
            let asr = Asr::decode(&view).expect("an ASR");
            assert_eq!(asr.session_id, b);
            assert_eq!(asr.auth_application_id, 4);
            assert_eq!(view.header().application, ApplicationId::CREDIT_CONTROL);
            break;
        }
        if tokio::time::Instant::now() > deadline {
            pdf.fail("no ASR for the other session of the shared account");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The gateway ends the aborted session with its final usage: charged.
    assert_eq!(
        send(
            &connection,
            ccr(
                &node,
                &b,
                1,
                CcRequestType::TERMINATION_REQUEST,
                1,
                Some(30)
            )
        )
        .await
        .0,
        ResultCode::SUCCESS
    );
    assert_eq!(account(&pdf, 0)["debited"], 180);
    books_ok(&pdf);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_subscriber_unknown_session_and_out_of_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pdf = start(dir.path(), 1000, &[]);
    let (_client, connection, node, _) = connect(pdf.diameter, "gw1.example.net").await;
    let s = session_id(&node, 5);
    assert_eq!(
        send(
            &connection,
            ccr(&node, &s, 99, CcRequestType::INITIAL_REQUEST, 0, None)
        )
        .await
        .0,
        ResultCode::USER_UNKNOWN
    );
    assert_eq!(
        send(
            &connection,
            ccr(&node, &s, 4, CcRequestType::UPDATE_REQUEST, 1, Some(5))
        )
        .await
        .0,
        ResultCode::UNKNOWN_SESSION_ID
    );
    send(
        &connection,
        ccr(&node, &s, 4, CcRequestType::INITIAL_REQUEST, 0, None),
    )
    .await;
    let answer = connection
        .request(
            ccr(&node, &s, 4, CcRequestType::UPDATE_REQUEST, 7, Some(5)),
            None,
        )
        .await
        .expect("answered");
    let cca = Cca::decode(&answer.view()).expect("a CCA");
    assert_eq!(cca.result_code, ResultCode::INVALID_AVP_VALUE);
    assert!(
        cca.error_message.is_some_and(|m| m.contains("expected 1")),
        "{cca:?}"
    );
    assert_eq!(cca.failed_avps.len(), 1, "the CC-Request-Number is quoted");
    assert_eq!(account(&pdf, 2)["debited"], 0, "nothing charged");
    books_ok(&pdf);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retransmission_is_charged_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pdf = start(dir.path(), 1000, &[]);
    let (_client, connection, node, _) = connect(pdf.diameter, "gw1.example.net").await;
    let s = session_id(&node, 6);
    send(
        &connection,
        ccr(&node, &s, 5, CcRequestType::INITIAL_REQUEST, 0, None),
    )
    .await;
    let update = ccr(&node, &s, 5, CcRequestType::UPDATE_REQUEST, 1, Some(30));
    let first = send(&connection, update.clone()).await;
    let mut again = BytesMut::from(&update[..]);
    set_retransmit_flag(&mut again);
    let second = send(&connection, again.freeze()).await;
    assert_eq!(first, second);
    // The same retransmission with a new End-to-End id (another path): answered from the
    // session's memory, still charged once.
    let third = send(
        &connection,
        ccr(&node, &s, 5, CcRequestType::UPDATE_REQUEST, 1, Some(30)),
    )
    .await;
    assert_eq!(first, third);
    assert_eq!(account(&pdf, 3)["debited"], 60);
    books_ok(&pdf);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_sends_dpr_rebooting_and_exits_0() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut pdf = start(dir.path(), 1000, &[]);
    let (_client, connection, _node, recorder) = connect(pdf.diameter, "gw1.example.net").await;
    let code = tokio::task::spawn_blocking(move || {
        let code = pdf.signal(15);
        (code, pdf)
    });
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(10), connection.closed())
            .await
            .expect("closed"),
        DownReason::PeerDisconnected(DisconnectCause::REBOOTING)
    );
    let (code, pdf) = code.await.expect("join");
    if code != Some(0) {
        pdf.fail(&format!("exit code {code:?}"));
    }
    assert!(recorder
        .events
        .lock()
        .expect("not poisoned")
        .iter()
        .any(|e| matches!(e, ConnectionEvent::Down(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_no_acknowledged_debit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data_arg = data.display().to_string();
    let mut pdf = start(dir.path(), 1_000_000, &["--data-dir", &data_arg]);
    let (_client, connection, node, _) = connect(pdf.diameter, "gw1.example.net").await;
    let acknowledged = Arc::new(std::sync::Mutex::new([0i64; 6]));
    let in_flight = Arc::new(std::sync::Mutex::new([0i64; 6]));
    // 8 subscribers, one session each, updating as fast as answers come.
    let lanes: Vec<_> = (0..8u32)
        .map(|subscriber| {
            let (connection, node) = (connection.clone(), node.clone());
            let (acknowledged, in_flight) = (acknowledged.clone(), in_flight.clone());
            tokio::spawn(async move {
                let account = if subscriber < 4 {
                    subscriber / 2
                } else {
                    subscriber - 2
                } as usize;
                let s = session_id(&node, 100 + subscriber);
                if connection
                    .request(
                        ccr(
                            &node,
                            &s,
                            subscriber,
                            CcRequestType::INITIAL_REQUEST,
                            0,
                            None,
                        ),
                        None,
                    )
                    .await
                    .is_err()
                {
                    return;
                }
                for number in 1.. {
                    in_flight.lock().expect("not poisoned")[account] += 2;
                    let result = connection
                        .request(
                            ccr(
                                &node,
                                &s,
                                subscriber,
                                CcRequestType::UPDATE_REQUEST,
                                number,
                                Some(1),
                            ),
                            None,
                        )
                        .await;
                    let ok = result.ok().and_then(|a| {
                        Cca::decode(&a.view())
                            .ok()
                            .map(|c| c.result_code == ResultCode::SUCCESS)
                    });
                    if ok == Some(true) {
                        acknowledged.lock().expect("not poisoned")[account] += 2;
                    } else {
                        return;
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let pdf_killed = tokio::task::spawn_blocking(move || {
        pdf.signal(9);
        pdf
    })
    .await
    .expect("join");
    for lane in lanes {
        let _ = lane.await;
    }
    let acknowledged = *acknowledged.lock().expect("not poisoned");
    let sent = *in_flight.lock().expect("not poisoned");
    assert!(
        acknowledged.iter().sum::<i64>() > 100,
        "the load ran: {acknowledged:?}"
    );
    drop(pdf_killed);

    let pdf = start(dir.path(), 1_000_000, &["--data-dir", &data_arg]);
    for account_id in 0..6u32 {
        let debited = account(&pdf, account_id)["debited"]
            .as_i64()
            .expect("a number");
        let (low, high) = (acknowledged[account_id as usize], sent[account_id as usize]);
        if debited < low || debited > high {
            pdf.fail(&format!("account {account_id}: recovered debited {debited}, acknowledged {low}, sent {high}"));
        }
    }
    books_ok(&pdf);
    let (_, status) = http_get(pdf.admin, "/status");
    let status: serde_json::Value = serde_json::from_str(&status).expect("JSON");
    assert!(
        status["origin_state_id"].as_u64().unwrap_or(0) >= 2,
        "Origin-State-Id increases after a restart: {status}"
    );
}

/// `--workers N` sets the runtime's worker threads: a pdf started with 3 has two threads
/// more than one started with 1; 0 is refused.
#[test]
fn workers_sets_the_runtime_threads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let threads = |workers: &str| {
        let pdf = start(dir.path(), 100, &["--workers", workers]);
        let pid = pdf.pid().expect("running");
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .expect("its threads")
            .count()
    };
    assert_eq!(threads("3"), threads("1") + 2);
    let output = std::process::Command::new(PDF)
        .args(["--workers", "0", "--check-config"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--workers"), "{stderr}");
}

#[test]
fn check_config_and_configuration_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = config(dir.path(), 100);
    let output = std::process::Command::new(PDF)
        .args(["--config", &good, "--check-config"])
        .output()
        .expect("run");
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("8 subscribers in 6 accounts"), "{stdout}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[charging]\nvalidity_secs = 10\n").expect("write");
    let output = std::process::Command::new(PDF)
        .args(["--config", &bad.display().to_string()])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("bad.toml") && stderr.contains("validity_secs"),
        "{stderr}"
    );

    let output = std::process::Command::new(PDF)
        .arg("--version")
        .output()
        .expect("run");
    assert!(String::from_utf8_lossy(&output.stdout).contains("state schema 2"));
}
