//! Losing PDF connections for real: a TCP proxy ([`testkit::proxy`]) between the gateway
//! and the real `pdf` cuts one of the gateway's pool connections (both sockets closed, as
//! a network or process failure would), and the pdf is stopped with SIGTERM (DPR REBOOTING)
//! and started again on the same port. The access client is our Diameter client, whose
//! recorder answers and keeps the gateway's ASRs.
//!
//! Charging figures: the pdf's default tariff prices voice (Rating-Group 1) at 2 per second
//! (pdf/src/tariff.rs). The test population has 8 subscribers: 0-3 share accounts in
//! families of 2 (accounts 0 and 1), 4-7 have accounts 2 to 5.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use protocol::dictionary::{AccountingRecordType, TerminationCause};
use protocol::grammar::Command;
use protocol::peer::Node;
use protocol::result_code::ResultCode;
use protocol::transport::{Connection, RequestError};
use testkit::proxy::{Direction, Proxy};
use testkit::{connect, http_get, Process};

use super::{acr, asrs, sid, start_gateway, start_gateway_to, start_pdf, start_pdf_on, wait_for};

/// Voice price per second (the pdf's default tariff).
const VOICE_PRICE: i64 = 2;
/// Sessions per test.
const SESSIONS: u32 = 20;
/// INTERIMs per session in the phase during which a connection is cut.
const ROUNDS: u32 = 5;

/// The account of subscriber `n` in the population of `start_pdf`.
fn account_of(subscriber: u32) -> u32 {
    if subscriber < 4 {
        subscriber / 2
    } else {
        subscriber - 2
    }
}

/// The subscriber of session `n`.
fn subscriber(n: u32) -> u32 {
    n % 8
}

/// Seconds of voice reported by session `n` in its record `record`: small, varied, never 0.
fn seconds(n: u32, record: u32) -> u32 {
    1 + (n * 7 + record * 3) % 11
}

/// Sends an ACR; the ACA's (or error answer's) Result-Code, or why there was none.
async fn try_send(connection: &Connection, request: Bytes) -> Result<ResultCode, RequestError> {
    explained(connection, request).await.map(|(code, _)| code)
}

/// [`try_send`] with the answer's Error-Message.
async fn explained(
    connection: &Connection,
    request: Bytes,
) -> Result<(ResultCode, Option<String>), RequestError> {
    let answer = connection
        .request(request, Some(Duration::from_secs(10)))
        .await?;
    let view = answer.view();
    Ok(if view.header().flags.is_error() {
        let error = protocol::messages::ErrorAnswer::decode(&view).expect("an error answer");
        (error.result_code, error.error_message.map(str::to_owned))
    } else {
        let aca = protocol::messages::Aca::decode(&view).expect("an ACA");
        (aca.result_code, aca.error_message.map(str::to_owned))
    })
}

/// The value of one series (`name{labels}` exactly as rendered) on a Prometheus page.
fn metric(admin: std::net::SocketAddr, series: &str) -> Option<f64> {
    let (_, text) = http_get(admin, "/metrics");
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok()).flatten()
        })
}

fn json(admin: std::net::SocketAddr, path: &str) -> serde_json::Value {
    let (status, body) = http_get(admin, path);
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

/// Every account's `debited`, from `/accounts/{id}`.
fn debited_by_account(pdf: &Process) -> BTreeMap<u32, i64> {
    let accounts = json(pdf.admin, "/books")["accounts"]
        .as_u64()
        .expect("account count") as u32;
    (0..accounts)
        .map(|id| {
            let account = json(pdf.admin, &format!("/accounts/{id}"));
            (id, account["debited"].as_i64().expect("debited"))
        })
        .collect()
}

/// START every session (sequentially: placement alternates over the pool's connections).
async fn start_sessions(connection: &Connection, node: &Node) {
    for n in 0..SESSIONS {
        let start = acr(
            node,
            &sid(node, n),
            subscriber(n),
            AccountingRecordType::START_RECORD,
            0,
            None,
        );
        assert_eq!(
            try_send(connection, start).await,
            Ok(ResultCode::SUCCESS),
            "START {n}"
        );
    }
}

/// What one INTERIM got: (Accounting-Record-Number, seconds reported, result).
type Outcome = (u32, u32, Result<ResultCode, RequestError>);

/// INTERIMs on many sessions at once: one task per session sends records `first..first +
/// ROUNDS` in order and stops at its first answer other than 2001.
struct Interims {
    tasks: Vec<(u32, tokio::task::JoinHandle<Vec<Outcome>>)>,
    answered: Arc<AtomicU32>,
    done: Arc<AtomicU32>,
}

impl Interims {
    fn spawn(connection: &Connection, node: &Arc<Node>, sessions: &[u32], first: u32) -> Self {
        let answered = Arc::new(AtomicU32::new(0));
        let done = Arc::new(AtomicU32::new(0));
        let tasks = sessions
            .iter()
            .map(|&n| {
                let (connection, node) = (connection.clone(), node.clone());
                let (answered, done) = (answered.clone(), done.clone());
                let task = tokio::spawn(async move {
                    let mut seen = Vec::new();
                    for record in first..first + ROUNDS {
                        let used = seconds(n, record);
                        let request = acr(
                            &node,
                            &sid(&node, n),
                            subscriber(n),
                            AccountingRecordType::INTERIM_RECORD,
                            record,
                            Some(used),
                        );
                        let answer = explained(&connection, request).await;
                        answered.fetch_add(1, Ordering::SeqCst);
                        if let Ok((code, Some(text))) = &answer {
                            eprintln!("session {n} record {record}: {code:?} {text:?}");
                        }
                        let result = answer.map(|(code, _)| code);
                        let go_on = result == Ok(ResultCode::SUCCESS);
                        seen.push((record, used, result));
                        if !go_on {
                            break;
                        }
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                    seen
                });
                (n, task)
            })
            .collect();
        Self {
            tasks,
            answered,
            done,
        }
    }

    /// Waits until `count` answers have come back.
    async fn wait_answered(&self, count: u32) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.answered.load(Ordering::SeqCst) < count {
            assert!(Instant::now() < deadline, "the first answers did not come");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Waits until no answer has come for `quiet` (at most 5 s).
    async fn wait_quiet(&self, quiet: Duration) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut last = (self.answered.load(Ordering::SeqCst), Instant::now());
        while last.1.elapsed() < quiet {
            assert!(Instant::now() < deadline, "the answers never stopped");
            tokio::time::sleep(Duration::from_millis(5)).await;
            let now = self.answered.load(Ordering::SeqCst);
            if now != last.0 {
                last = (now, Instant::now());
            }
        }
    }

    /// Sessions whose task is still waiting for an answer.
    fn unfinished(&self) -> u32 {
        self.tasks.len() as u32 - self.done.load(Ordering::SeqCst)
    }

    /// Every session's outcomes.
    async fn join(self) -> BTreeMap<u32, Vec<Outcome>> {
        let mut outcomes = BTreeMap::new();
        for (n, task) in self.tasks {
            outcomes.insert(n, task.await.expect("a session's task"));
        }
        outcomes
    }
}

/// Holds the answers on one of the gateway's two pool connections (the proxy's oldest pair)
/// until traffic has settled: every session pinned to it then has one INTERIM in flight,
/// received and answered by the pdf, its answer held by the proxy. Then cuts that connection.
/// Returns how many requests were in flight at the cut.
async fn hold_answers_then_cut(proxy: &Proxy, interims: &Interims) -> u32 {
    let pairs = proxy.pairs();
    assert_eq!(
        pairs.len(),
        2,
        "the gateway's pool of 2 goes through the proxy"
    );
    assert!(proxy.pause(pairs[0].id, Direction::ToClient));
    interims.wait_quiet(Duration::from_millis(200)).await;
    let in_flight = interims.unfinished();
    assert!(proxy.cut(pairs[0].id), "cut {:?}", pairs[0]);
    in_flight
}

/// INTERIM and STOP on every session in turn; their seconds go to `charge`.
async fn interim_and_stop_all(
    connection: &Connection,
    node: &Node,
    record: u32,
    mut charge: impl FnMut(u32, u32),
) {
    for n in 0..SESSIONS {
        let used = seconds(n, record);
        let interim = acr(
            node,
            &sid(node, n),
            subscriber(n),
            AccountingRecordType::INTERIM_RECORD,
            record,
            Some(used),
        );
        assert_eq!(
            try_send(connection, interim).await,
            Ok(ResultCode::SUCCESS),
            "INTERIM {n}"
        );
        charge(n, used);
        let used = seconds(n, record + 1);
        let stop = acr(
            node,
            &sid(node, n),
            subscriber(n),
            AccountingRecordType::STOP_RECORD,
            record + 1,
            Some(used),
        );
        assert_eq!(
            try_send(connection, stop).await,
            Ok(ResultCode::SUCCESS),
            "STOP {n}"
        );
        charge(n, used);
    }
}

/// The first INTERIM of every session, answered 2001; its seconds go to `charge`.
async fn first_interims(connection: &Connection, node: &Node, mut charge: impl FnMut(u32, u32)) {
    for n in 0..SESSIONS {
        let used = seconds(n, 1);
        let interim = acr(
            node,
            &sid(node, n),
            subscriber(n),
            AccountingRecordType::INTERIM_RECORD,
            1,
            Some(used),
        );
        assert_eq!(try_send(connection, interim).await, Ok(ResultCode::SUCCESS));
        charge(n, used);
    }
}

/// Checks the pdf's books against `usage` (seconds per account): each account debited
/// exactly its seconds x the voice price, nothing left reserved, no CC session left open.
fn assert_charged_once(pdf: &Process, usage: &BTreeMap<u32, i64>) {
    let expected: BTreeMap<u32, i64> = usage
        .iter()
        .map(|(&account, &seconds)| (account, seconds * VOICE_PRICE))
        .collect();
    let debited: BTreeMap<u32, i64> = debited_by_account(pdf)
        .into_iter()
        .filter(|&(_, d)| d != 0)
        .collect();
    assert_eq!(debited, expected, "debited per account == usage x tariff");
    let books = json(pdf.admin, "/books");
    assert_eq!(books["ok"], true, "{books}");
    assert_eq!(
        books["totals"]["debited"].as_i64(),
        Some(expected.values().sum::<i64>())
    );
    assert_eq!(
        books["totals"]["reserved"], 0,
        "nothing left reserved: {books}"
    );
    assert_eq!(books["sessions"], 0, "no CC session left open: {books}");
}

/// Under `failover`, cutting one of the two connections to a PDF loses no session, even
/// with requests in flight on it at the moment of the cut: those are re-sent with the T flag
/// on the other connection (RFC 6733 5.5.4), sessions pinned to the cut connection move to
/// the other one, and the gateway reconnects through the proxy by itself.
///
/// The requests in flight were received, charged and answered by the pdf, and the answers
/// lost with the connection (the proxy held them): the re-sent copies carry the same
/// End-to-End id and are answered from the pdf's duplicate cache, so every reported second
/// is charged exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failover_keeps_every_session_and_charges_once() {
    let began = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let pdf = start_pdf(dir.path(), "pdf0", 1_000_000);
    let proxy = Proxy::start(pdf.diameter);
    let gateway = start_gateway_to(&[proxy.addr()], &["--policy", "failover"]);
    assert!(proxy.wait_live(2, Duration::from_secs(5)));
    let (_client, connection, node, recorder) = connect(gateway.diameter, "lg1.example.net").await;
    let mut usage: BTreeMap<u32, i64> = BTreeMap::new();
    let mut charge = |n: u32, used: u32| {
        *usage.entry(account_of(subscriber(n))).or_default() += i64::from(used);
    };

    start_sessions(&connection, &node).await;
    first_interims(&connection, &node, &mut charge).await;

    // Records 2..=6 on every session at once; once the first 20 answers are back, one pool
    // connection's answers are held, then it is cut.
    let all: Vec<u32> = (0..SESSIONS).collect();
    let interims = Interims::spawn(&connection, &node, &all, 2);
    interims.wait_answered(SESSIONS).await;
    let in_flight = hold_answers_then_cut(&proxy, &interims).await;
    for (n, seen) in interims.join().await {
        assert_eq!(seen.len(), ROUNDS as usize, "session {n}: {seen:?}");
        for (record, used, result) in seen {
            assert_eq!(
                result,
                Ok(ResultCode::SUCCESS),
                "session {n} record {record}"
            );
            charge(n, used);
        }
    }

    // The gateway reconnected through the proxy by itself.
    assert!(
        proxy.wait_accepted(3, Duration::from_secs(5))
            && proxy.wait_live(2, Duration::from_secs(5)),
        "the gateway did not reconnect: {} accepted, {} live",
        proxy.accepted(),
        proxy.live()
    );
    // Every session still works after the reconnection, and STOP ends each one.
    interim_and_stop_all(&connection, &node, 2 + ROUNDS, &mut charge).await;

    // No session was lost: no ASR reached the access client, no cut was counted.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(asrs(&recorder), vec![], "no session cut under failover");
    assert_eq!(
        metric(
            gateway.admin,
            "gateway_sessions_cut_total{cause=\"LINK_BROKEN\"}"
        ),
        Some(0.0)
    );
    let count = json(gateway.admin, "/sessions/count");
    assert_eq!(count["sessions"], 0, "every session stopped: {count}");
    assert_charged_once(&pdf, &usage);

    // Each request lost with the cut connection was re-sent once, and only those. The
    // requests in flight at the cut are counted from the client's side (sessions whose
    // answer had not come back when traffic settled): all of them, normally; fewer would
    // be re-sent if the other connection stalled longer than the settling time.
    let retransmissions =
        metric(gateway.admin, "gateway_retransmissions_total").expect("retransmissions");
    let lost = metric(
        gateway.admin,
        "gateway_ccr_failures_total{reason=\"connection_lost\"}",
    )
    .expect("connection_lost failures");
    eprintln!(
        "failover: {in_flight} requests in flight at the cut; gateway_retransmissions_total \
         {retransmissions}, connection_lost failures {lost}; {} s charged {} in all; proxy \
         accepted {}; {:?}",
        usage.values().sum::<i64>(),
        usage.values().sum::<i64>() * VOICE_PRICE,
        proxy.accepted(),
        began.elapsed()
    );
    assert_eq!(retransmissions, lost, "one retransmission per request lost");
    assert!(
        retransmissions >= 1.0 && retransmissions <= f64::from(in_flight),
        "{retransmissions} retransmissions for {in_flight} requests in flight"
    );
}

/// Under `drop`, cutting one of the two connections to a PDF ends exactly the sessions
/// pinned to it, each with one ASR (Termination-Cause LINK_BROKEN): those with an INTERIM in
/// flight at the cut get 3004 for it, the others 5002 for their next INTERIM (the session is
/// gone); every other session keeps working. The gateway does not say how many sessions a
/// connection holds, so the test counts from the outcomes: cut + survivors == total, and the
/// cut sessions are exactly the ones that got an ASR, once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drop_cuts_only_the_sessions_of_the_cut_connection() {
    let began = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let pdf = start_pdf(dir.path(), "pdf0", 1_000_000);
    let proxy = Proxy::start(pdf.diameter);
    let gateway = start_gateway_to(&[proxy.addr()], &["--policy", "drop"]);
    assert!(proxy.wait_live(2, Duration::from_secs(5)));
    let (_client, connection, node, recorder) = connect(gateway.diameter, "lg1.example.net").await;
    // Seconds answered 2001, and seconds of the INTERIMs in flight at the cut (answered 3004
    // to the client, but received and charged by the pdf: only the answer was lost).
    let (mut acknowledged, mut in_flight_seconds) = (0i64, 0i64);

    start_sessions(&connection, &node).await;
    first_interims(&connection, &node, |_, used| {
        acknowledged += i64::from(used)
    })
    .await;

    // Half the sessions (of each connection: placement alternates) talk while the cut
    // happens; the others are idle.
    let active: Vec<u32> = (0..SESSIONS).filter(|n| n % 4 < 2).collect();
    let interims = Interims::spawn(&connection, &node, &active, 2);
    interims.wait_answered(active.len() as u32).await;
    let in_flight = hold_answers_then_cut(&proxy, &interims).await;
    let mut cut = BTreeSet::new();
    let mut answered_3004 = 0;
    for (n, seen) in interims.join().await {
        for (record, used, result) in seen {
            match result {
                Ok(ResultCode::SUCCESS) => acknowledged += i64::from(used),
                Ok(ResultCode::TOO_BUSY) => {
                    answered_3004 += 1;
                    in_flight_seconds += i64::from(used);
                    cut.insert(n);
                }
                other => panic!("session {n} record {record}: {other:?}"),
            }
        }
    }
    // Normally every request in flight at the cut; fewer if the other connection stalled
    // longer than the settling time (those were answered 2001 later).
    assert!(
        answered_3004 >= 1 && answered_3004 <= in_flight,
        "{answered_3004} answered 3004 of {in_flight} in flight at the cut"
    );

    // The next INTERIM of every session: 5002 for a cut one (idle ones included), 2001 for
    // the others.
    assert!(proxy.wait_live(2, Duration::from_secs(5)), "reconnected");
    let next = 2 + ROUNDS;
    let mut survivors = BTreeSet::new();
    let mut answered_5002 = 0;
    for n in 0..SESSIONS {
        let used = seconds(n, next);
        let interim = acr(
            &node,
            &sid(&node, n),
            subscriber(n),
            AccountingRecordType::INTERIM_RECORD,
            next,
            Some(used),
        );
        match try_send(&connection, interim).await {
            Ok(ResultCode::SUCCESS) => {
                assert!(!cut.contains(&n), "session {n} was cut, yet answered 2001");
                acknowledged += i64::from(used);
                survivors.insert(n);
            }
            Ok(ResultCode::UNKNOWN_SESSION_ID) => {
                answered_5002 += 1;
                cut.insert(n);
            }
            other => panic!("session {n}'s next INTERIM: {other:?}"),
        }
    }
    assert_eq!(cut.len() + survivors.len(), SESSIONS as usize);
    assert!(
        cut.len() > in_flight as usize && !survivors.is_empty(),
        "both connections held sessions, idle and active: {} cut, {in_flight} of them in \
         flight, {} survived",
        cut.len(),
        survivors.len()
    );

    // One ASR per cut session, LINK_BROKEN, and none for a survivor.
    wait_for("an ASR per cut session", &gateway, || {
        asrs(&recorder).len() >= cut.len()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let received = asrs(&recorder);
    let cut_ids: BTreeSet<String> = cut.iter().map(|&n| sid(&node, n)).collect();
    let asr_ids: BTreeSet<String> = received.iter().map(|(id, _)| id.clone()).collect();
    assert!(
        received
            .iter()
            .all(|(_, cause)| *cause == Some(TerminationCause::LINK_BROKEN)),
        "{received:?}"
    );
    assert_eq!(asr_ids, cut_ids, "the ASRs name exactly the cut sessions");
    assert_eq!(
        received.len(),
        cut.len(),
        "one ASR per cut session, not more: {received:?}"
    );
    assert_eq!(
        metric(
            gateway.admin,
            "gateway_sessions_cut_total{cause=\"LINK_BROKEN\"}"
        ),
        Some(cut.len() as f64)
    );
    let count = json(gateway.admin, "/sessions/count");
    assert_eq!(count["sessions"], survivors.len(), "{count}");

    // The survivors keep working to their STOP; a cut session's STOP is unknown.
    for n in 0..SESSIONS {
        let used = seconds(n, next + 1);
        let stop = acr(
            &node,
            &sid(&node, n),
            subscriber(n),
            AccountingRecordType::STOP_RECORD,
            next + 1,
            Some(used),
        );
        let expected = if survivors.contains(&n) {
            acknowledged += i64::from(used);
            ResultCode::SUCCESS
        } else {
            ResultCode::UNKNOWN_SESSION_ID
        };
        assert_eq!(try_send(&connection, stop).await, Ok(expected), "STOP {n}");
    }
    let count = json(gateway.admin, "/sessions/count");
    assert_eq!(count["sessions"], 0, "{count}");

    // The pdf charged what was acknowledged and, normally, the INTERIMs whose answers were
    // lost: it received and answered them before the cut (the client got 3004 for them:
    // usage charged that the client may report again). The cut
    // sessions' CC sessions stay open on the pdf, their reservations held, since no CCR-T
    // reached it: the pdf expires them after twice the Validity-Time.
    let books = json(pdf.admin, "/books");
    assert_eq!(books["ok"], true, "{books}");
    let debited = books["totals"]["debited"].as_i64().expect("debited");
    assert!(
        (acknowledged * VOICE_PRICE..=(acknowledged + in_flight_seconds) * VOICE_PRICE)
            .contains(&debited),
        "debited {debited}: {acknowledged} s acknowledged, {in_flight_seconds} s in flight"
    );
    assert_eq!(books["sessions"], cut.len(), "{books}");
    eprintln!(
        "drop: {} of {SESSIONS} cut ({answered_3004} answered 3004 in flight, {answered_5002} \
         answered 5002 next), {} survived, {} ASRs LINK_BROKEN; debited {debited} for \
         {acknowledged} s acknowledged + {in_flight_seconds} s in flight (x {VOICE_PRICE} = {}); \
         {} CC sessions left on the pdf holding {}; {:?}",
        cut.len(),
        survivors.len(),
        received.len(),
        (acknowledged + in_flight_seconds) * VOICE_PRICE,
        books["sessions"],
        books["totals"]["reserved"],
        began.elapsed()
    );
}

/// The same loss as [`failover_keeps_every_session_and_charges_once`], but the connection is
/// cut while requests flow freely, so some are caught inside the pdf: received, not yet
/// answered (here the pdf writes its journal to disk before answering, which widens that
/// window). Three such cuts in a row; every session must survive each one, and be charged
/// once.
///
/// This used to fail (regression test): the re-sent copy of such a request (T flag, same Origin-Host and End-to-End id, on
/// the other connection) is never answered, the gateway times out after
/// charging.request_timeout_ms (2 s) and cuts the session with SESSION_TIMEOUT (ACA 3004 "the
/// PDF did not answer", ASR cause 8). The cause is in the protocol crate's peer layer on the
/// pdf, not in the gateway: the node-wide duplicate cache (protocol/src/peer/duplicates.rs)
/// dropped every duplicate of a request still `InProgress`, though the original's answer was
/// going to the dead connection; the copy now goes to the application, which is idempotent
/// for it (the pdf answers a repeated CC-Request-Number from the session's memory).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failover_survives_cuts_that_catch_requests_inside_the_pdf() {
    const CUTS: u32 = 3;
    let began = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("pdf0-data");
    let data = data.display().to_string();
    let pdf = start_pdf_on(
        dir.path(),
        "pdf0",
        1_000_000,
        "127.0.0.1:0",
        &["--data-dir", &data],
    );
    let proxy = Proxy::start(pdf.diameter);
    let gateway = start_gateway_to(&[proxy.addr()], &["--policy", "failover"]);
    assert!(proxy.wait_live(2, Duration::from_secs(5)));
    let (_client, connection, node, recorder) = connect(gateway.diameter, "lg1.example.net").await;
    let mut usage: BTreeMap<u32, i64> = BTreeMap::new();
    let mut charge = |n: u32, used: u32| {
        *usage.entry(account_of(subscriber(n))).or_default() += i64::from(used);
    };
    start_sessions(&connection, &node).await;
    first_interims(&connection, &node, &mut charge).await;

    let all: Vec<u32> = (0..SESSIONS).collect();
    let mut record = 2;
    for cut in 0..CUTS {
        let interims = Interims::spawn(&connection, &node, &all, record);
        interims.wait_answered(SESSIONS).await;
        let pairs = proxy.pairs();
        assert_eq!(pairs.len(), 2, "cut {cut}: the pool is back");
        assert!(proxy.cut(pairs[0].id));
        for (n, seen) in interims.join().await {
            assert_eq!(
                seen.len(),
                ROUNDS as usize,
                "cut {cut}, session {n}: {seen:?}"
            );
            for (record, used, result) in seen {
                assert_eq!(
                    result,
                    Ok(ResultCode::SUCCESS),
                    "session {n} record {record}"
                );
                charge(n, used);
            }
        }
        assert!(
            proxy.wait_live(2, Duration::from_secs(5)),
            "cut {cut}: no reconnection"
        );
        record += ROUNDS;
    }
    interim_and_stop_all(&connection, &node, record, &mut charge).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(asrs(&recorder), vec![], "no session cut under failover");
    assert_charged_once(&pdf, &usage);
    eprintln!(
        "failover, free-flowing cuts: gateway_retransmissions_total {:?}; {:?}",
        metric(gateway.admin, "gateway_retransmissions_total"),
        began.elapsed()
    );
}

/// A pdf that stops with SIGTERM sends DPR with Disconnect-Cause REBOOTING: the gateway
/// holds that node's requests (up to charging.reboot_hold_ms, 10 s by default) instead of
/// cutting its sessions. A request sent while the pdf is down waits and is served when the
/// pdf is back on the same port, with no change to the gateway's configuration.
///
/// This restart loses the pdf's state (no data directory): the old CC sessions are unknown
/// to the new pdf, which answers their CCR-U with 5002. The gateway then forgets the session
/// and answers the access client's ACR with 5002 UNKNOWN_SESSION_ID, without an ASR: a
/// session lost to a state-losing restart is reported on its next ACR, not pushed to the
/// client.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pdf_reboot_is_held_not_dropped() {
    let began = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut pdf = start_pdf(dir.path(), "pdf0", 1_000_000);
    let port = pdf.diameter;
    let gateway = start_gateway(&[&pdf], &[]);
    let (_client, connection, node, recorder) = connect(gateway.diameter, "lg1.example.net").await;
    const OLD: u32 = 6;
    for n in 0..OLD {
        let start = acr(
            &node,
            &sid(&node, n),
            subscriber(n),
            AccountingRecordType::START_RECORD,
            0,
            None,
        );
        assert_eq!(try_send(&connection, start).await, Ok(ResultCode::SUCCESS));
        let interim = acr(
            &node,
            &sid(&node, n),
            subscriber(n),
            AccountingRecordType::INTERIM_RECORD,
            1,
            Some(seconds(n, 1)),
        );
        assert_eq!(
            try_send(&connection, interim).await,
            Ok(ResultCode::SUCCESS)
        );
    }

    // SIGTERM: DPR (REBOOTING) on both pool connections, then exit 0.
    let (mut pdf, code) = tokio::task::spawn_blocking(move || {
        let code = pdf.signal(15);
        (pdf, code)
    })
    .await
    .expect("join");
    assert_eq!(code, Some(0), "SIGTERM is an orderly stop");
    let nodes = json(gateway.admin, "/nodes");
    assert_eq!(nodes["nodes"][0]["rebooting"], true, "{nodes}");
    assert_eq!(nodes["nodes"][0]["open_connections"], 0, "{nodes}");

    // While the pdf is down: an INTERIM on an old session and a new START are held.
    let down_at = Instant::now();
    let held_interim = {
        let (connection, node) = (connection.clone(), node.clone());
        tokio::spawn(async move {
            let request = acr(
                &node,
                &sid(&node, 0),
                subscriber(0),
                AccountingRecordType::INTERIM_RECORD,
                2,
                Some(5),
            );
            (try_send(&connection, request).await, down_at.elapsed())
        })
    };
    let held_start = {
        let (connection, node) = (connection.clone(), node.clone());
        tokio::spawn(async move {
            let request = acr(
                &node,
                &sid(&node, 100),
                subscriber(100),
                AccountingRecordType::START_RECORD,
                0,
                None,
            );
            (try_send(&connection, request).await, down_at.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    if held_interim.is_finished() || held_start.is_finished() {
        let interim = if held_interim.is_finished() {
            Some(held_interim.await.expect("join"))
        } else {
            None
        };
        let start = if held_start.is_finished() {
            Some(held_start.await.expect("join"))
        } else {
            None
        };
        gateway.fail(&format!(
            "requests for a rebooting pdf are held, not answered: INTERIM {interim:?}, \
             START {start:?}"
        ));
    }
    assert_eq!(asrs(&recorder), vec![], "no ASR during the hold");

    // The pdf comes back on the same port; the gateway reconnects by itself.
    let listen = port.to_string();
    let restarted = tokio::task::spawn_blocking({
        let dir = dir.path().to_owned();
        move || start_pdf_on(&dir, "pdf0", 1_000_000, &listen, &[])
    })
    .await
    .expect("join");
    assert_eq!(restarted.diameter, port);
    drop(std::mem::replace(&mut pdf, restarted));

    let (start_result, start_waited) = held_start.await.expect("join");
    assert_eq!(
        start_result,
        Ok(ResultCode::SUCCESS),
        "a START held over the restart succeeds on the new pdf"
    );
    // The old session is unknown to the new pdf: ACA 5002, and the gateway forgets it.
    let (interim_result, interim_waited) = held_interim.await.expect("join");
    assert_eq!(interim_result, Ok(ResultCode::UNKNOWN_SESSION_ID));
    assert!(
        start_waited < Duration::from_secs(8) && interim_waited < Duration::from_secs(8),
        "held for {start_waited:?} and {interim_waited:?}: the reconnection is quick"
    );

    // A new START after the restart, no reconfiguration: served; so is its INTERIM.
    let fresh = sid(&node, 101);
    let start = acr(
        &node,
        &fresh,
        subscriber(5),
        AccountingRecordType::START_RECORD,
        0,
        None,
    );
    assert_eq!(try_send(&connection, start).await, Ok(ResultCode::SUCCESS));
    let interim = acr(
        &node,
        &fresh,
        subscriber(5),
        AccountingRecordType::INTERIM_RECORD,
        1,
        Some(30),
    );
    assert_eq!(
        try_send(&connection, interim).await,
        Ok(ResultCode::SUCCESS)
    );

    // The other old sessions: their next INTERIM reaches the new pdf, which does not know
    // them: 5002 to the access client. Asked again, the gateway itself no longer knows them.
    for n in 1..OLD {
        let interim = acr(
            &node,
            &sid(&node, n),
            subscriber(n),
            AccountingRecordType::INTERIM_RECORD,
            2,
            Some(seconds(n, 2)),
        );
        assert_eq!(
            try_send(&connection, interim).await,
            Ok(ResultCode::UNKNOWN_SESSION_ID),
            "old session {n} after a state-losing restart"
        );
        let stop = acr(
            &node,
            &sid(&node, n),
            subscriber(n),
            AccountingRecordType::STOP_RECORD,
            3,
            Some(1),
        );
        assert_eq!(
            try_send(&connection, stop).await,
            Ok(ResultCode::UNKNOWN_SESSION_ID)
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        asrs(&recorder),
        vec![],
        "the hold cut nothing, and 5002 is an answer, not an ASR"
    );
    // Both pool connections come back; each reconnects after its own backoff (with
    // jitter), so the second may still be on its way when the first already serves.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let nodes = loop {
        let nodes = json(gateway.admin, "/nodes");
        if nodes["nodes"][0]["open_connections"] == 2 || std::time::Instant::now() > deadline {
            break nodes;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(nodes["nodes"][0]["open_connections"], 2, "{nodes}");
    assert_eq!(
        metric(
            gateway.admin,
            "gateway_sessions_cut_total{cause=\"LINK_BROKEN\"}"
        ),
        Some(0.0)
    );
    // Left on the gateway: the START held over the restart and the fresh one.
    let count = json(gateway.admin, "/sessions/count");
    assert_eq!(count["sessions"], 2, "{count}");
    // The new pdf charged only what it served: the fresh session's 30 s.
    let books = json(pdf.admin, "/books");
    assert_eq!(books["ok"], true, "{books}");
    assert_eq!(books["totals"]["debited"], 30 * VOICE_PRICE, "{books}");
    eprintln!(
        "reboot: START held {start_waited:?}, INTERIM held {interim_waited:?} (answered \
         {interim_result:?}); {:?}",
        began.elapsed()
    );
}
