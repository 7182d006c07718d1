//! Memory per live Credit-Control session and per account (issue 4's budget: < 100 bytes a
//! session, < 48 bytes an account, a million sessions in one process).
//!
//! Builds an engine with `ACCOUNTS` accounts, then opens `SESSIONS` sessions through the real
//! decision path (`Engine::credit_control` with CCR-INITIAL), and reports the bytes per
//! session and per account two ways: the tables' own heap capacity, and the process's RSS
//! growth (/proc/self/statm). Run: `cargo bench -p pdf --bench memory`
//! (env: SESSIONS=1000000 ACCOUNTS=1000000).

use pdf::charging::{Engine, EngineConfig};
use pdf::population::{BalanceDistribution, Population, PopulationSpec};
use pdf::tariff::Tariff;
use protocol::dictionary::{CcRequestType, SubscriptionIdType};
use protocol::messages::{Ccr, MultipleServicesCreditControl, ServiceUnit, SubscriptionId};
use smallvec::smallvec;

fn env(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let sessions = env("SESSIONS", if quick { 10_000 } else { 1_000_000 });
    let accounts = env("ACCOUNTS", sessions);
    let spec = PopulationSpec {
        subscribers: accounts,
        shared_share: 0.0,
        balance: BalanceDistribution::Constant { value: 1_000_000 },
        ..Default::default()
    };
    let before_accounts = rss_bytes();
    let mut engine = Engine::new(
        Population::Generated(spec.clone()),
        Tariff::default(),
        EngineConfig::default(),
    );
    let after_accounts = rss_bytes();
    engine.sessions.reserve(sessions as usize);
    let before_sessions = rss_bytes();
    let mut session_id = String::new();
    let mut msisdn = String::new();
    for i in 0..sessions {
        use std::fmt::Write;
        session_id.clear();
        msisdn.clear();
        let _ = write!(session_id, "gw1.example.net;1700000000;{i}");
        let _ = write!(msisdn, "{}", spec.msisdn(i % accounts));
        let ccr = Ccr {
            session_id: &session_id,
            origin_host: "gw1.example.net",
            origin_realm: "example.net",
            destination_realm: "example.net",
            auth_application_id: 4,
            service_context_id: "32260@3gpp.org",
            cc_request_type: CcRequestType::INITIAL_REQUEST,
            cc_request_number: 0,
            subscription_ids: smallvec![SubscriptionId {
                subscription_id_type: SubscriptionIdType::END_USER_E164,
                subscription_id_data: &msisdn,
            }],
            multiple_services_credit_control: smallvec![MultipleServicesCreditControl {
                requested_service_unit: Some(ServiceUnit::default()),
                rating_group: Some(1),
                ..Default::default()
            }],
            ..Default::default()
        };
        let decision = engine.credit_control(0, &ccr);
        assert!(decision.result.is_success(), "session {i}: {decision:?}");
    }
    let after_sessions = rss_bytes();
    assert_eq!(engine.sessions.len(), sessions as usize);
    assert!(engine.check_books().is_empty());

    let table = engine.sessions.heap_bytes() as f64 / f64::from(sessions);
    let rss_session = (after_sessions - before_sessions) as f64 / f64::from(sessions);
    let account_struct = std::mem::size_of::<pdf::ledger::Account>();
    let rss_account = after_accounts.saturating_sub(before_accounts) as f64 / f64::from(accounts);
    println!("memory: {sessions} live CC sessions over {accounts} accounts");
    println!("  per session: {table:.1} bytes of session table (slots + index), {rss_session:.1} bytes of RSS growth");
    println!("  per account: {account_struct} bytes of account record, {rss_account:.1} bytes of RSS growth");
    println!(
        "{{\"bench\":\"pdf-memory\",\"sessions\":{sessions},\"accounts\":{accounts},\"session_table_bytes\":{table:.1},\
         \"session_rss_bytes\":{rss_session:.1},\"account_bytes\":{account_struct},\"account_rss_bytes\":{rss_account:.1}}}"
    );
}
