//! The real `gateway` in front of the real `pdf`, both on 127.0.0.1 with port 0, driven by
//! our Diameter accounting client.

mod failover;
mod migrate;
mod otp;
mod redirect;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use protocol::dictionary::{AccountingRecordType, SubscriptionIdType, TerminationCause};
use protocol::grammar::{Command, Envelope};
use protocol::header::{ApplicationId, HopByHopId};
use protocol::message::MessageView;
use protocol::messages::{Aca, Acr, Asr, ServiceUnit, SubscriptionId};
use protocol::peer::Node;
use protocol::result_code::ResultCode;
use protocol::transport::Connection;
use smallvec::smallvec;
use testkit::{connect, http_get, Process, Recorder};

const GATEWAY: &str = env!("CARGO_BIN_EXE_gateway");

fn pdf_binary() -> std::path::PathBuf {
    // The pdf binary is built by `cargo test --workspace` beside ours.
    let path = Path::new(GATEWAY).with_file_name("pdf");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build -p pdf` (scripts/test builds the workspace)",
        path.display()
    );
    path
}

/// A pdf with 8 subscribers (0-3 in families of 2), every account at `balance`.
fn start_pdf(dir: &Path, name: &str, balance: i64) -> Process {
    start_pdf_on(dir, name, balance, "127.0.0.1:0", &[])
}

/// [`start_pdf`] with its Diameter port at `listen` (a restart on the port it had) and
/// `extra` arguments.
fn start_pdf_on(dir: &Path, name: &str, balance: i64, listen: &str, extra: &[&str]) -> Process {
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            "[population]\nsubscribers = 8\nshared_share = 0.5\nfamily_size = 2\n\
             balance = {{ dist = \"constant\", value = {balance} }}\n\
             [diameter]\norigin_host = \"{name}.example.net\"\n"
        ),
    )
    .expect("config");
    let config = config.display().to_string();
    let mut args = vec![
        "--config",
        &config,
        "--listen",
        listen,
        "--admin",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    Process::start(&pdf_binary(), &args)
}

fn start_gateway(pdfs: &[&Process], extra: &[&str]) -> Process {
    let addresses: Vec<SocketAddr> = pdfs.iter().map(|p| p.diameter).collect();
    start_gateway_to(&addresses, extra)
}

/// A gateway whose PDF nodes are at `addresses` (a PDF, or a proxy in front of one), with a
/// pool of 2 connections per node; returns once every pool is open.
fn start_gateway_to(addresses: &[SocketAddr], extra: &[&str]) -> Process {
    let addresses: Vec<String> = addresses.iter().map(SocketAddr::to_string).collect();
    let mut args = vec![
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--pool-size",
        "2",
        "--origin-host",
        "gw.example.net",
    ];
    for address in &addresses {
        args.extend_from_slice(&["--pdf", address]);
    }
    args.extend_from_slice(extra);
    let gateway = Process::start(Path::new(GATEWAY), &args);
    // Wait until every PDF node has its pool open.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = http_get(gateway.admin, "/nodes");
        let nodes: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        let ready = nodes["nodes"]
            .as_array()
            .is_some_and(|n| n.iter().all(|n| n["open_connections"] == 2));
        if ready {
            return gateway;
        }
        if std::time::Instant::now() > deadline {
            gateway.fail(&format!("the PDF pools did not open: {body}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An ACR; `seconds` of voice usage for INTERIM/STOP.
fn acr(
    node: &Node,
    session: &str,
    subscriber: u32,
    kind: AccountingRecordType,
    number: u32,
    seconds: Option<u32>,
) -> Bytes {
    let msisdn = (491_700_000_000u64 + u64::from(subscriber)).to_string();
    let acr = Acr {
        session_id: session,
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
        used_service_unit: seconds.map(|s| ServiceUnit {
            cc_time: Some(s),
            ..Default::default()
        }),
        termination_cause: (kind == AccountingRecordType::STOP_RECORD)
            .then_some(TerminationCause::LOGOUT),
        ..Default::default()
    };
    let mut out = BytesMut::new();
    acr.encode(
        Envelope::request(
            ApplicationId::BASE_ACCOUNTING,
            HopByHopId(0),
            node.end_to_end.next(),
        ),
        &mut out,
    );
    out.freeze()
}

async fn send(connection: &Connection, request: Bytes) -> ResultCode {
    let answer = connection
        .request(request, Some(Duration::from_secs(10)))
        .await
        .expect("answered");
    let view = answer.view();
    if view.header().flags.is_error() {
        return protocol::messages::ErrorAnswer::decode(&view)
            .expect("an error answer")
            .result_code;
    }
    Aca::decode(&view).expect("an ACA").result_code
}

fn debited(pdf: &Process, account: u32) -> i64 {
    let (_, body) = http_get(pdf.admin, &format!("/accounts/{account}"));
    let value: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    value["debited"]
        .as_i64()
        .unwrap_or_else(|| pdf.fail(&format!("no debited in {body}")))
}

fn sid(node: &Node, n: u32) -> String {
    format!("{};1700000000;{n}", node.config.origin_host)
}

/// The ASRs the access client received: (Session-Id, Termination-Cause).
fn asrs(recorder: &Recorder) -> Vec<(String, Option<TerminationCause>)> {
    recorder
        .requests
        .lock()
        .expect("not poisoned")
        .iter()
        .filter_map(|bytes| {
            let view = MessageView::parse(bytes).ok()?;
            let asr = Asr::decode(&view).ok()?;
            Some((asr.session_id.to_owned(), asr.termination_cause))
        })
        .collect()
}

async fn wait_for(what: &str, process: &Process, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        if tokio::time::Instant::now() > deadline {
            process.fail(&format!("timed out waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_interim_stop_is_charged_on_the_pdf() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pdf = start_pdf(dir.path(), "pdf0", 1000);
    let gateway = start_gateway(&[&pdf], &[]);
    let (_client, connection, node, _) = connect(gateway.diameter, "lg1.example.net").await;
    let s = sid(&node, 1);
    assert_eq!(
        send(
            &connection,
            acr(&node, &s, 4, AccountingRecordType::START_RECORD, 0, None)
        )
        .await,
        ResultCode::SUCCESS
    );
    assert_eq!(
        send(
            &connection,
            acr(
                &node,
                &s,
                4,
                AccountingRecordType::INTERIM_RECORD,
                1,
                Some(45)
            )
        )
        .await,
        ResultCode::SUCCESS
    );
    assert_eq!(
        send(
            &connection,
            acr(&node, &s, 4, AccountingRecordType::STOP_RECORD, 2, Some(10))
        )
        .await,
        ResultCode::SUCCESS
    );
    assert_eq!(debited(&pdf, 2), 110, "55 s of voice at 2 per second");
    let (_, count) = http_get(gateway.admin, "/sessions/count");
    assert!(count.contains("\"sessions\":0"), "{count}");
    assert_eq!(
        send(
            &connection,
            acr(
                &node,
                &sid(&node, 2),
                99,
                AccountingRecordType::START_RECORD,
                0,
                None
            )
        )
        .await,
        ResultCode::USER_UNKNOWN
    );
    assert_eq!(
        send(
            &connection,
            acr(
                &node,
                &sid(&node, 3),
                4,
                AccountingRecordType::INTERIM_RECORD,
                1,
                Some(1)
            )
        )
        .await,
        ResultCode::UNKNOWN_SESSION_ID
    );
    let (_, metrics) = http_get(gateway.admin, "/metrics");
    assert!(
        metrics.contains("gateway_acr_total{record_type=\"START\",result=\"2001\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credit_exhaustion_ends_the_session_with_4012() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pdf = start_pdf(dir.path(), "pdf0", 150);
    let gateway = start_gateway(&[&pdf], &[]);
    let (_client, connection, node, _) = connect(gateway.diameter, "lg1.example.net").await;
    let s = sid(&node, 1);
    send(
        &connection,
        acr(&node, &s, 4, AccountingRecordType::START_RECORD, 0, None),
    )
    .await;
    // 60 s used: the PDF grants the last 15 s with Final-Unit-Indication.
    assert_eq!(
        send(
            &connection,
            acr(
                &node,
                &s,
                4,
                AccountingRecordType::INTERIM_RECORD,
                1,
                Some(60)
            )
        )
        .await,
        ResultCode::SUCCESS
    );
    // The final units are used up: the gateway terminates the CC session and answers 4012.
    assert_eq!(
        send(
            &connection,
            acr(
                &node,
                &s,
                4,
                AccountingRecordType::INTERIM_RECORD,
                2,
                Some(15)
            )
        )
        .await,
        ResultCode::CREDIT_LIMIT_REACHED
    );
    assert_eq!(debited(&pdf, 2), 150);
    assert_eq!(
        send(
            &connection,
            acr(
                &node,
                &s,
                4,
                AccountingRecordType::INTERIM_RECORD,
                3,
                Some(1)
            )
        )
        .await,
        ResultCode::UNKNOWN_SESSION_ID
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_account_asr_reaches_the_access_session_with_cause_4() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pdf = start_pdf(dir.path(), "pdf0", 240);
    let gateway = start_gateway(&[&pdf], &[]);
    let (_client, connection, node, recorder) = connect(gateway.diameter, "lg1.example.net").await;
    let (a, b) = (sid(&node, 10), sid(&node, 11));
    send(
        &connection,
        acr(&node, &a, 0, AccountingRecordType::START_RECORD, 0, None),
    )
    .await;
    send(
        &connection,
        acr(&node, &b, 1, AccountingRecordType::START_RECORD, 0, None),
    )
    .await;
    assert_eq!(
        send(
            &connection,
            acr(
                &node,
                &a,
                0,
                AccountingRecordType::INTERIM_RECORD,
                1,
                Some(60)
            )
        )
        .await,
        ResultCode::CREDIT_LIMIT_REACHED
    );
    wait_for("the ASR for the other session", &gateway, || {
        !asrs(&recorder).is_empty()
    })
    .await;
    assert_eq!(
        asrs(&recorder),
        vec![(b.clone(), Some(TerminationCause::ADMINISTRATIVE))]
    );
    // The client stops the aborted session with its usage: charged.
    assert_eq!(
        send(
            &connection,
            acr(&node, &b, 1, AccountingRecordType::STOP_RECORD, 1, Some(30))
        )
        .await,
        ResultCode::SUCCESS
    );
    assert_eq!(debited(&pdf, 0), 180);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_a_pdf_under_drop_cuts_exactly_its_sessions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pdf0 = start_pdf(dir.path(), "pdf0", 100_000);
    let mut pdf1 = start_pdf(dir.path(), "pdf1", 100_000);
    let gateway = start_gateway(&[&pdf0, &pdf1], &[]);
    let (_client, connection, node, recorder) = connect(gateway.diameter, "lg1.example.net").await;
    for n in 0..40 {
        assert_eq!(
            send(
                &connection,
                acr(
                    &node,
                    &sid(&node, n),
                    n % 8,
                    AccountingRecordType::START_RECORD,
                    0,
                    None
                )
            )
            .await,
            ResultCode::SUCCESS
        );
    }
    let (_, count) = http_get(gateway.admin, "/sessions/count?node=pdf1");
    let on_pdf1 = serde_json::from_str::<serde_json::Value>(&count).expect("JSON")["sessions"]
        .as_u64()
        .expect("count");
    assert!(
        on_pdf1 > 0 && on_pdf1 < 40,
        "placement by weight spreads sessions: {on_pdf1} of 40 on pdf1"
    );
    let pdf1 = tokio::task::spawn_blocking(move || {
        pdf1.signal(9);
        pdf1
    })
    .await
    .expect("join");
    wait_for("an ASR per session of the lost node", &gateway, || {
        asrs(&recorder).len() as u64 >= on_pdf1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let cut = asrs(&recorder);
    assert_eq!(
        cut.len() as u64,
        on_pdf1,
        "exactly the sessions pinned to the lost node"
    );
    assert!(cut
        .iter()
        .all(|(_, cause)| *cause == Some(TerminationCause::LINK_BROKEN)));
    let (_, count) = http_get(gateway.admin, "/sessions/count");
    let left = serde_json::from_str::<serde_json::Value>(&count).expect("JSON")["sessions"]
        .as_u64()
        .expect("count");
    assert_eq!(left, 40 - on_pdf1);
    drop(pdf1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weight_zero_drains_a_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pdf0 = start_pdf(dir.path(), "pdf0", 100_000);
    let pdf1 = start_pdf(dir.path(), "pdf1", 100_000);
    let gateway = start_gateway(&[&pdf0, &pdf1], &[]);
    let (_client, connection, node, _) = connect(gateway.diameter, "lg1.example.net").await;
    for n in 0..20 {
        send(
            &connection,
            acr(
                &node,
                &sid(&node, n),
                n % 8,
                AccountingRecordType::START_RECORD,
                0,
                None,
            ),
        )
        .await;
    }
    let count = |node: &str| {
        let (_, body) = http_get(gateway.admin, &format!("/sessions/count?node={node}"));
        serde_json::from_str::<serde_json::Value>(&body).expect("JSON")["sessions"]
            .as_u64()
            .expect("count")
    };
    let before = count("pdf1");
    // POST /nodes/pdf1/weight {"weight":0} through a raw request.
    let body = "{\"weight\":0}";
    let request = format!(
        "POST /nodes/pdf1/weight HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = std::net::TcpStream::connect(gateway.admin).expect("admin");
    std::io::Write::write_all(&mut stream, request.as_bytes()).expect("write");
    let mut response = String::new();
    std::io::Read::read_to_string(&mut stream, &mut response).expect("read");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    for n in 20..40 {
        send(
            &connection,
            acr(
                &node,
                &sid(&node, n),
                n % 8,
                AccountingRecordType::START_RECORD,
                0,
                None,
            ),
        )
        .await;
    }
    assert_eq!(count("pdf1"), before, "no new session on the drained node");
    // Its old sessions keep working.
    for n in 0..20 {
        assert_eq!(
            send(
                &connection,
                acr(
                    &node,
                    &sid(&node, n),
                    n % 8,
                    AccountingRecordType::INTERIM_RECORD,
                    1,
                    Some(1)
                )
            )
            .await,
            ResultCode::SUCCESS
        );
    }
}

#[test]
fn check_config_and_errors() {
    let output = std::process::Command::new(GATEWAY)
        .args(["--check-config"])
        .output()
        .expect("run");
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("127.0.0.1:3869"));
    let output = std::process::Command::new(GATEWAY)
        .args(["--workers", "0", "--check-config"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("--workers"));
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("gw.toml");
    std::fs::write(&bad, "[charging]\npolicy = \"retry\"\n").expect("write");
    let output = std::process::Command::new(GATEWAY)
        .args(["--config", &bad.display().to_string()])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("gw.toml") && stderr.contains("policy"),
        "{stderr}"
    );
}
