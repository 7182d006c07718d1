//! Interop: an independent Diameter stack, Erlang/OTP's `diameter`, is the accounting client
//! of the real `gateway`, with the real `pdf` behind it (issue 5: "an OTP escript accounting
//! client (Acct-Application-Id 3) drives the gateway").
//!
//! The OTP side is the protocol crate's escript peer (`protocol/tests/otp/otp_peer.escript`,
//! run by [`testkit::otp::OtpPeer`]) in `acct-client` mode. Its dictionary,
//! `protocol/tests/otp/acct_rfc4006.dia`, is OTP's RFC 6733 base accounting grammar with the
//! RFC 4006 AVPs of the access leg's contract (DESIGN.md section 3) inherited from the
//! compiled RFC 4006 dictionary (`shared/otp/dcca_rfc4006.dia`), plus ASR/ASA under
//! Application-Id 3. Its CER offers Acct-Application-Id 3 and nothing else. It runs
//! [`SESSIONS`] concurrent sessions: ACR START (record 0, Subscription-Id END_USER_E164
//! `4917000000NN`, Rating-Group 1 voice), [`INTERIMS`] x ACR INTERIM with Used-Service-Unit
//! CC-Time [`INTERIM_SECONDS`], ACR STOP with CC-Time [`STOP_SECONDS`] and Termination-Cause
//! LOGOUT. It checks every ACA (Result-Code 2001; Session-Id, Accounting-Record-Type,
//! -Number and Acct-Application-Id echoed), answers any ASR with ASA 2001 and counts them,
//! lets its watchdog (Tw 6 s) exchange a DWR/DWA with the gateway and leaves with DPR.
//!
//! Then the gateway and the pdf are read back through their admin ports: the gateway counted
//! every ACR as 2001 by record type and relayed each as the matching CCR, cut nothing and
//! holds no session; the pdf started and terminated one CC session per access session, and
//! each subscriber's account was debited exactly its usage at the default voice tariff
//! (computed with [`pdf::tariff::Service::cost`], the pdf's own per-report rounding), while
//! its neighbours were not touched.
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
/// ACR INTERIMs per session, between the START and the STOP.
const INTERIMS: u32 = 3;
/// Seconds of voice each INTERIM reports (`accounting/4` in the escript).
const INTERIM_SECONDS: u64 = 30;
/// Seconds of voice the STOP reports.
const STOP_SECONDS: u64 = 10;
/// ACRs in all.
const ACRS: usize = (SESSIONS * (INTERIMS + 2)) as usize;
/// The Rating-Group the escript starts its sessions on (voice).
const RATING_GROUP: u32 = 1;
/// Every account's opening balance: enough that no grant is ever the final one.
const BALANCE: i64 = 10_000_000;
const SUBSCRIBERS: u32 = 100;
const OTP_HOST: &str = "otp-acct-client.example.org";
const GATEWAY_HOST: &str = "gw.example.net";

/// The population the pdf is configured with, as the pdf library describes it: one
/// subscriber per account (no family accounts, so no shared-account ASR).
fn population() -> PopulationSpec {
    PopulationSpec {
        subscribers: SUBSCRIBERS,
        balance: BalanceDistribution::Constant { value: BALANCE },
        shared_share: 0.0,
        ..PopulationSpec::default()
    }
}

/// The MSISDN the escript sends for session `n` (`acct_session/2` there).
fn escript_msisdn(n: u32) -> u64 {
    format!("4917000000{n:02}").parse().expect("digits")
}

/// The usage the escript reports in one session, charged at the default voice tariff
/// (2 per second), report by report as the pdf rounds: (30 x 3 + 10) x 2 = 200.
fn expected_debit_per_session() -> i64 {
    let tariff = Tariff::default();
    let voice = tariff.service(tariff.service_index(RATING_GROUP).expect("voice is rated"));
    i64::from(INTERIMS) * voice.cost(INTERIM_SECONDS) + voice.cost(STOP_SECONDS)
}

#[test]
fn otp_accounting_client_drives_the_gateway_and_the_pdf_charges_it() {
    // Before anything starts: no Erlang, no test (the panic says to run scripts/test).
    testkit::otp::find_escript();

    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("pdf.toml");
    std::fs::write(
        &config,
        format!(
            "[population]\nsubscribers = {SUBSCRIBERS}\nshared_share = 0.0\n\
             balance = {{ dist = \"constant\", value = {BALANCE} }}\n\
             [diameter]\norigin_host = \"pdf-otp.example.net\"\n"
        ),
    )
    .expect("write config");
    let config = config.display().to_string();
    let pdf = Process::start(
        &super::pdf_binary(),
        &[
            "--config",
            &config,
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
        ],
    );
    // `--pdf <pdf addr>`, a pool of 2, Origin-Host GATEWAY_HOST; returns once the pool is open.
    let gateway = super::start_gateway(&[&pdf], &[]);

    let root = env!("CARGO_MANIFEST_DIR");
    let started = Instant::now();
    let mut otp = OtpPeer::start(
        Path::new(&format!("{root}/../protocol/tests/otp/otp_peer.escript")),
        Path::new(&format!("{root}/../../shared/otp/dcca_rfc4006.dia")),
        "acct-client",
        &[
            &format!("{root}/../protocol/tests/otp/acct_rfc4006.dia"),
            &gateway.diameter.port().to_string(),
            &SESSIONS.to_string(),
            &INTERIMS.to_string(),
        ],
    );
    let status = otp.wait_exit(Duration::from_secs(40));
    let elapsed = started.elapsed();
    let context = || {
        otp.report(&format!(
            "--- gateway ---\n{}\n--- pdf ---\n{}",
            gateway.output(),
            pdf.output()
        ))
    };
    assert!(status.success(), "the OTP client failed\n{}", context());

    // OTP's account: every ACA 2001 with its fields echoed (the escript checks each and
    // counts the 2001s), no ASR, its DWR answered, its DPR answered.
    let result = otp.result();
    assert!(
        otp.stdout().lines().any(|l| l.starts_with("RESULT ok ")),
        "{}",
        context()
    );
    for (key, value) in [
        ("sessions", SESSIONS as usize),
        ("acas", ACRS),
        ("aca_2001", ACRS),
        ("asr_recv", 0),
        ("asa_2001", 0),
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
    // The gateway's CEA as OTP read it: its Origin-Host, and base accounting only.
    assert!(
        otp.stdout().contains(&format!(
            "EVENT up peer={GATEWAY_HOST} product=diameter-suite gateway acct_apps=[3] \
             auth_apps=[]"
        )),
        "{}",
        context()
    );

    // The gateway's account: OTP's peer came up (its Origin-Host from the CER) and left with
    // DPR; every ACR answered 2001 and relayed as the matching CCR; nothing cut, nothing left.
    let log = strip_ansi(&gateway.output());
    assert!(
        log.lines()
            .any(|l| l.contains("access peer up") && l.contains(&format!("peer={OTP_HOST}"))),
        "no `access peer up` for {OTP_HOST} in the gateway's log\n{}",
        context()
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !strip_ansi(&gateway.output())
        .lines()
        .any(|l| l.contains("access peer down") && l.contains("PeerDisconnected"))
    {
        assert!(
            Instant::now() < deadline,
            "the gateway did not see OTP's DPR\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (code, count) = http_get(gateway.admin, "/sessions/count");
    assert_eq!(
        (code, count.as_str()),
        (200, "{\"sessions\":0}"),
        "{}",
        context()
    );
    let (code, metrics) = http_get(gateway.admin, "/metrics");
    assert_eq!(code, 200, "{metrics}");
    let gateway_samples = samples(&metrics);
    let sessions = f64::from(SESSIONS);
    let interims = sessions * f64::from(INTERIMS);
    for (series, value) in [
        (
            "gateway_acr_total{record_type=\"START\",result=\"2001\"}",
            sessions,
        ),
        (
            "gateway_acr_total{record_type=\"INTERIM\",result=\"2001\"}",
            interims,
        ),
        (
            "gateway_acr_total{record_type=\"STOP\",result=\"2001\"}",
            sessions,
        ),
        (
            "gateway_ccr_total{request_type=\"INITIAL\",result=\"2001\"}",
            sessions,
        ),
        (
            "gateway_ccr_total{request_type=\"UPDATE\",result=\"2001\"}",
            interims,
        ),
        (
            "gateway_ccr_total{request_type=\"TERMINATION\",result=\"2001\"}",
            sessions,
        ),
        ("gateway_sessions", 0.0),
        ("gateway_pdf_asr_total", 0.0),
        ("gateway_retransmissions_total", 0.0),
    ] {
        assert_eq!(
            gateway_samples.get(series),
            Some(&value),
            "{series}\n{metrics}"
        );
    }
    for (prefix, all) in [
        ("gateway_acr_total{", ACRS as f64),
        ("gateway_ccr_total{", ACRS as f64),
        ("gateway_sessions_cut_total{", 0.0),
        ("gateway_ccr_failures_total{", 0.0),
    ] {
        let sum: f64 = gateway_samples
            .iter()
            .filter(|(series, _)| series.starts_with(prefix))
            .map(|(_, value)| value)
            .sum();
        assert_eq!(sum, all, "{prefix}...}} with another result\n{metrics}");
    }

    // The pdf's account: one CC session per access session, started and terminated, the
    // total debited exactly the usage.
    let (code, body) = http_get(pdf.admin, "/status");
    assert_eq!(code, 200, "/status: {body}");
    let status: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let per_session = expected_debit_per_session();
    assert_eq!(
        per_session,
        ((INTERIM_SECONDS * u64::from(INTERIMS) + STOP_SECONDS) * 2) as i64,
        "the default voice tariff is 2 per second"
    );
    for (key, value) in [
        ("sessions", 0),
        ("reserved", 0),
        ("debited", per_session * i64::from(SESSIONS)),
    ] {
        assert_eq!(status[key], value, "pdf /status {key}: {status}");
    }
    for (key, value) in [
        ("sessions_started", u64::from(SESSIONS)),
        ("sessions_terminated", u64::from(SESSIONS)),
        ("sessions_exhausted", 0),
        ("sessions_expired", 0),
        ("retransmissions", 0),
        ("aborts", 0),
    ] {
        assert_eq!(
            status["stats"][key], value,
            "pdf /status stats.{key}: {status}"
        );
    }
    let (code, books) = http_get(pdf.admin, "/books");
    let books_json: serde_json::Value = serde_json::from_str(&books).expect("JSON");
    assert!(code == 200 && books_json["ok"] == true, "books: {books}");

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
        let expected = serde_json::json!({
            "id": id,
            "initial": BALANCE,
            "balance": BALANCE - per_session,
            "reserved": 0,
            "debited": per_session,
            "sessions": [],
        });
        assert_eq!(account(&pdf, id), expected, "session {n}, MSISDN {msisdn}");
    }
    for id in [0, SESSIONS + 1] {
        let account = account(&pdf, id);
        assert_eq!(
            (account["balance"].as_i64(), account["debited"].as_i64()),
            (Some(BALANCE), Some(0)),
            "account {id} is not one the escript used: {account}"
        );
    }

    let acr_lines: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("gateway_acr_total{") || l.starts_with("gateway_ccr_total{"))
        .collect();
    eprintln!(
        "OTP ran {ACRS} ACRs in {SESSIONS} sessions through the gateway; the escript took \
         {elapsed:?} (with its DWR/DWA wait); the pdf debited {per_session} per session\n{}\n{}",
        acr_lines.join("\n"),
        otp.stdout()
    );
}

/// One account from the pdf's `/accounts/{id}`.
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

/// `text` without ANSI escape sequences (the logs are coloured even into a pipe).
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
