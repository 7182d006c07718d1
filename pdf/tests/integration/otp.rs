//! Interop: an independent Diameter stack, Erlang/OTP's `diameter`, runs credit-control
//! sessions against the real `pdf` binary.
//!
//! The OTP side is the protocol crate's escript peer (`protocol/tests/otp/otp_peer.escript`,
//! run by [`testkit::otp::OtpPeer`]) in client mode: it connects to the pdf (CER/CEA), runs
//! [`SESSIONS`] concurrent sessions of CCR-INITIAL, [`UPDATES`] x CCR-UPDATE reporting
//! CC-Total-Octets 1000 x CC-Request-Number, and CCR-TERMINATION reporting 500 octets, all on
//! Rating-Group 10 (data) for MSISDN `4917000` + the session number in 5 digits; it checks
//! every CCA (Result-Code 2001, Session-Id, CC-Request-Type and CC-Request-Number echoed,
//! Granted-Service-Unit on INITIAL and UPDATE), lets its watchdog exchange a DWR/DWA with the
//! pdf and leaves with DPR.
//!
//! The pdf side is read back through its admin port: the books balance, no session is left,
//! the metrics count every CCR as 2001, and each account the escript used was debited
//! exactly its usage at the default tariff (computed with [`pdf::tariff::Service::cost`],
//! the pdf's own rounding), and no other account was touched.
//!
//! Erlang/OTP is required: the test fails, rather than skips, when `escript` is missing
//! (`scripts/test` installs it).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use pdf::population::{BalanceDistribution, PopulationSpec};
use pdf::tariff::Tariff;
use testkit::otp::OtpPeer;
use testkit::{http_get, Process};

/// Sessions the escript runs at once (numbered 1..=SESSIONS).
const SESSIONS: u32 = 5;
/// CCR-UPDATEs per session, between the INITIAL and the TERMINATION.
const UPDATES: u32 = 8;
/// CCRs in all.
const REQUESTS: usize = (SESSIONS * (UPDATES + 2)) as usize;
/// The Rating-Group the escript reports usage on (data).
const RATING_GROUP: u32 = 10;
/// Every account's opening balance: enough that no grant is ever the final one.
const BALANCE: i64 = 100_000_000;
const SUBSCRIBERS: u32 = 1000;
const ORIGIN_HOST: &str = "pdf-otp.example.net";
const OTP_HOST: &str = "otp-client.example.org";

/// The population the pdf is configured with, as the pdf library describes it.
fn population() -> PopulationSpec {
    PopulationSpec {
        subscribers: SUBSCRIBERS,
        balance: BalanceDistribution::Constant { value: BALANCE },
        shared_share: 0.0,
        ..PopulationSpec::default()
    }
}

/// The MSISDN the escript sends for session `n` (`credit_control/4` there).
fn escript_msisdn(n: u32) -> u64 {
    format!("4917000{n:05}").parse().expect("digits")
}

/// The usage the escript reports in one session, charged at the default tariff, report by
/// report (each rounded up on its own, as the pdf does).
fn expected_debit_per_session() -> i64 {
    let tariff = Tariff::default();
    let data = tariff.service(tariff.service_index(RATING_GROUP).expect("data is rated"));
    let updates: i64 = (1..=UPDATES)
        .map(|number| data.cost(1000 * u64::from(number)))
        .sum();
    updates + data.cost(500)
}

#[test]
fn otp_client_runs_credit_control_sessions_against_the_real_pdf() {
    // Before anything starts: no Erlang, no test (the panic says to run scripts/test).
    testkit::otp::find_escript();

    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("pdf.toml");
    std::fs::write(
        &config,
        format!(
            "[population]\nsubscribers = {SUBSCRIBERS}\nshared_share = 0.0\n\
             balance = {{ dist = \"constant\", value = {BALANCE} }}\n\
             [diameter]\norigin_host = \"{ORIGIN_HOST}\"\n"
        ),
    )
    .expect("write config");
    let config = config.display().to_string();
    let pdf = Process::start(
        Path::new(super::PDF),
        &[
            "--config",
            &config,
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
        ],
    );

    let root = env!("CARGO_MANIFEST_DIR");
    let started = Instant::now();
    let mut otp = OtpPeer::start(
        Path::new(&format!("{root}/../protocol/tests/otp/otp_peer.escript")),
        Path::new(&format!("{root}/../../shared/otp/dcca_rfc4006.dia")),
        "client",
        &[
            &pdf.diameter.port().to_string(),
            &SESSIONS.to_string(),
            &UPDATES.to_string(),
        ],
    );
    let status = otp.wait_exit(Duration::from_secs(40));
    let elapsed = started.elapsed();
    let context = || otp.report(&format!("--- pdf ---\n{}", pdf.output()));
    assert!(status.success(), "the OTP client failed\n{}", context());

    // OTP's account: every CCA 2001 with its fields echoed and units granted (the escript
    // checks each and counts the 2001s), its DWR answered, its DPR answered.
    let result = otp.result();
    for (key, value) in [
        ("answers", REQUESTS),
        ("cca_2001", REQUESTS),
        ("dpr_sent", 1),
        ("dpa_recv", 1),
        ("dpa_2001", 1),
        ("errors", 0),
    ] {
        assert_eq!(result.number(key), value, "RESULT {key}\n{}", context());
    }
    for key in ["dwr_sent", "dwa_recv", "dwa_2001"] {
        assert!(result.number(key) >= 1, "RESULT {key}\n{}", context());
    }
    assert_eq!(result.get("watchdog"), "okay", "{}", context());
    assert!(
        otp.stdout().contains(&format!(
            "EVENT up peer={ORIGIN_HOST} product=diameter-suite pdf"
        )),
        "{}",
        context()
    );

    // The pdf's account: OTP's peer came up (its Origin-Host from the CER) and left; the
    // books balance, nothing is left live.
    let output = strip_ansi(&pdf.output());
    for event in ["peer up", "peer down"] {
        assert!(
            output
                .lines()
                .any(|l| l.contains(event) && l.contains(&format!("peer={OTP_HOST}"))),
            "no `{event}` for {OTP_HOST} in the pdf's log\n{}",
            context()
        );
    }
    let (code, books) = http_get(pdf.admin, "/books");
    let books_json: serde_json::Value = serde_json::from_str(&books).expect("JSON");
    assert!(
        code == 200 && books_json["ok"] == true,
        "books: {books}\n{}",
        context()
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        let (code, body) = http_get(pdf.admin, "/status");
        assert_eq!(code, 200, "/status: {body}");
        let status: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        if status["connections"] == 0 || Instant::now() > deadline {
            break status;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let sessions = u64::from(SESSIONS);
    let per_session = expected_debit_per_session();
    assert!(per_session > 0, "the usage costs something");
    for (key, value) in [
        ("sessions", 0),
        ("connections", 0),
        ("reserved", 0),
        ("debited", per_session * i64::from(SESSIONS)),
    ] {
        assert_eq!(status[key], value, "/status {key}: {status}\n{}", context());
    }
    for (key, value) in [
        ("sessions_started", sessions),
        ("sessions_terminated", sessions),
        ("sessions_exhausted", 0),
        ("sessions_expired", 0),
        ("retransmissions", 0),
        ("out_of_order", 0),
        ("aborts", 0),
    ] {
        assert_eq!(
            status["stats"][key],
            value,
            "/status stats.{key}: {status}\n{}",
            context()
        );
    }

    // The metrics: every CCR answered 2001, by request type, and no other CCR series.
    let (code, metrics) = http_get(pdf.admin, "/metrics");
    assert_eq!(code, 200, "{metrics}");
    let samples = samples(&metrics);
    let ccr = |request_type: &str| {
        samples
            .get(&format!(
                "pdf_requests_total{{command=\"CCR\",request_type=\"{request_type}\",result=\"2001\"}}"
            ))
            .copied()
    };
    for (request_type, count) in [
        ("INITIAL", sessions),
        ("UPDATE", sessions * u64::from(UPDATES)),
        ("TERMINATION", sessions),
        ("EVENT", 0),
    ] {
        assert_eq!(
            ccr(request_type),
            Some(count as f64),
            "CCR {request_type} 2001\n{metrics}"
        );
    }
    let all_ccrs: f64 = samples
        .iter()
        .filter(|(series, _)| series.starts_with("pdf_requests_total{command=\"CCR\""))
        .map(|(_, value)| value)
        .sum();
    assert_eq!(
        all_ccrs, REQUESTS as f64,
        "CCRs with another Result-Code\n{metrics}"
    );
    assert_eq!(samples.get("pdf_sessions"), Some(&0.0), "{metrics}");

    // The money: each escript account debited exactly its usage at the tariff, nothing
    // reserved, no session left; its neighbours untouched.
    let spec = population();
    for n in 1..=SESSIONS {
        let msisdn = escript_msisdn(n);
        let subscriber = spec
            .subscriber(msisdn)
            .unwrap_or_else(|| panic!("MSISDN {msisdn} is not in the population"));
        let id = spec.account_of(subscriber);
        assert_eq!(id, subscriber, "one account per subscriber");
        let account = account(&pdf, id);
        let expected = serde_json::json!({
            "id": id,
            "initial": BALANCE,
            "balance": BALANCE - per_session,
            "reserved": 0,
            "debited": per_session,
            "sessions": [],
        });
        assert_eq!(account, expected, "session {n}, MSISDN {msisdn}");
    }
    for id in [0, SESSIONS + 1] {
        let account = account(&pdf, id);
        assert_eq!(
            (account["balance"].as_i64(), account["debited"].as_i64()),
            (Some(BALANCE), Some(0)),
            "account {id} is not one the escript used: {account}"
        );
    }

    let ccr_lines: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("pdf_requests_total{"))
        .collect();
    eprintln!(
        "OTP ran {REQUESTS} CCRs in {SESSIONS} sessions against the pdf; the escript took \
         {elapsed:?} (with its DWR/DWA wait); debited {per_session} per session\n{}\n{}",
        ccr_lines.join("\n"),
        otp.stdout()
    );
}

/// One account from `/accounts/{id}`.
fn account(pdf: &Process, id: u32) -> serde_json::Value {
    let (code, body) = http_get(pdf.admin, &format!("/accounts/{id}"));
    if code != 200 {
        pdf.fail(&format!("/accounts/{id}: {code} {body}"));
    }
    serde_json::from_str(&body).unwrap_or_else(|e| pdf.fail(&format!("bad JSON {body}: {e}")))
}

/// The samples of a Prometheus text exposition: series (name and labels as written) to
/// value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// `text` without ANSI escape sequences (the pdf's log is coloured even into a pipe).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ parameters... final byte in @..=~.
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
