//! The `migrate` upgrade strategy on the real binaries: an old pdf moves its accounts and
//! live sessions to a new pdf started with `--owns none`; the gateway follows each moved
//! session's 3006 to the new node; no session is cut and the books are exact across both.

use std::time::Duration;

use protocol::dictionary::AccountingRecordType;
use protocol::result_code::ResultCode;
use serde_json::Value;
use testkit::{http_get, http_post, Process};

use crate::{acr, asrs, send, sid, start_gateway, start_pdf_on};

fn json(process: &Process, path: &str) -> Value {
    let (status, body) = http_get(process.admin, path);
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).expect("JSON")
}

fn account(process: &Process, id: u32) -> Value {
    json(process, &format!("/accounts/{id}"))
}

/// 8 subscribers (0-3 in families of 2): accounts 0 to 5.
const ACCOUNTS: u32 = 6;
fn account_of(subscriber: u32) -> u32 {
    if subscriber < 4 {
        subscriber / 2
    } else {
        subscriber - 2
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_moves_live_sessions_to_the_new_node_without_cutting_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let old_data = dir.path().join("old-data").display().to_string();
    let new_data = dir.path().join("new-data").display().to_string();
    let old = start_pdf_on(
        dir.path(),
        "pdf0",
        10_000,
        "127.0.0.1:0",
        &["--data-dir", &old_data],
    );
    let mut old = old;
    let new = start_pdf_on(
        dir.path(),
        "pdf1",
        10_000,
        "127.0.0.1:0",
        &["--owns", "none", "--data-dir", &new_data],
    );
    assert_eq!(account(&new, 0)["owner"], "elsewhere");
    assert_eq!(json(&new, "/books")["totals"]["initial"], 0);
    let gateway = start_gateway(&[&old], &[]);
    let (_client, connection, node, recorder) =
        testkit::connect(gateway.diameter, "lg1.example.net").await;

    // One session per subscriber, live on the old node, 10 s used each.
    let mut expected = [0i64; ACCOUNTS as usize];
    for n in 0..8 {
        let s = sid(&node, n);
        let start = acr(&node, &s, n, AccountingRecordType::START_RECORD, 0, None);
        assert_eq!(send(&connection, start).await, ResultCode::SUCCESS);
        let interim = acr(
            &node,
            &s,
            n,
            AccountingRecordType::INTERIM_RECORD,
            1,
            Some(10),
        );
        assert_eq!(send(&connection, interim).await, ResultCode::SUCCESS);
        expected[account_of(n) as usize] += 20;
    }
    assert_eq!(json(&old, "/status")["sessions"], 8);

    // The new node joins the gateway; the old one introduces itself to it and migrates in
    // batches of 2 accounts; the old one takes no new sessions.
    let (status, body) = http_post(
        gateway.admin,
        "/nodes",
        &format!(
            "{{\"name\":\"pdf1\",\"address\":\"{}\",\"weight\":1}}",
            new.diameter
        ),
    );
    assert_eq!(status, 201, "{body}");
    let (status, body) = http_post(
        old.admin,
        "/migrate",
        &format!("{{\"to_admin\":\"{}\",\"batch\":2}}", new.admin),
    );
    assert_eq!(status, 202, "{body}");
    let (status, body) = http_post(gateway.admin, "/nodes/pdf0/weight", "{\"weight\":0}");
    assert_eq!(status, 200, "{body}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let progress = json(&old, "/migrate");
        if progress["state"] == "lingering" {
            assert_eq!(progress["accounts"], ACCOUNTS, "{progress}");
            assert_eq!(progress["sessions"], 8, "{progress}");
            assert_eq!(progress["batches"], 3, "{progress}");
            break;
        }
        assert_ne!(progress["state"], "failed", "{progress}");
        if std::time::Instant::now() > deadline {
            old.fail(&format!("migration not done: {progress}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(json(&new, "/status")["sessions"], 8);

    // Every session's next request: 3006 from the old node, re-sent to the new one.
    for n in 0..8 {
        let s = sid(&node, n);
        let interim = acr(
            &node,
            &s,
            n,
            AccountingRecordType::INTERIM_RECORD,
            2,
            Some(20),
        );
        assert_eq!(send(&connection, interim).await, ResultCode::SUCCESS);
        expected[account_of(n) as usize] += 40;
    }
    // Every moved session came back once: the old node owns nothing and stops by itself.
    assert_eq!(old.wait_exit(Duration::from_secs(15)), Some(0));
    for n in 0..8 {
        let s = sid(&node, n);
        let stop = acr(&node, &s, n, AccountingRecordType::STOP_RECORD, 3, Some(5));
        assert_eq!(send(&connection, stop).await, ResultCode::SUCCESS);
        expected[account_of(n) as usize] += 10;
    }
    // A new session after the move lands on the new node.
    let late = sid(&node, 100);
    let start = acr(&node, &late, 4, AccountingRecordType::START_RECORD, 0, None);
    assert_eq!(send(&connection, start).await, ResultCode::SUCCESS);
    let stop = acr(
        &node,
        &late,
        4,
        AccountingRecordType::STOP_RECORD,
        1,
        Some(3),
    );
    assert_eq!(send(&connection, stop).await, ResultCode::SUCCESS);
    expected[account_of(4) as usize] += 6;

    assert!(asrs(&recorder).is_empty(), "no session was cut");
    let books = json(&new, "/books");
    assert_eq!(books["ok"], true, "{books}");
    for id in 0..ACCOUNTS {
        let view = account(&new, id);
        assert_eq!(view["owner"], Value::Null, "owned here: {view}");
        assert_eq!(view["epoch"], 1, "{view}");
        let total = view["debited"].as_i64().expect("debited")
            + view["debited_before"].as_i64().expect("debited_before");
        assert_eq!(total, expected[id as usize], "account {id}: {view}");
        assert_eq!(
            view["initial"].as_i64().expect("initial") + view["debited_before"].as_i64().unwrap(),
            10_000,
            "the opening moved whole: {view}"
        );
    }
    let (_, metrics) = http_get(gateway.admin, "/metrics");
    assert!(metrics.contains("gateway_redirects_total 8"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_sent_twice_moves_money_once_and_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("new-data").display().to_string();
    let extra = ["--owns", "none", "--data-dir", data.as_str()];
    let new = start_pdf_on(dir.path(), "pdf1", 1000, "127.0.0.1:0", &extra);
    let batch = r#"{"from":"aaa://127.0.0.1:1;transport=tcp","seq":1,
        "accounts":[{"id":2,"epoch":1,"balance":700,"reserved":0,"debited_before":300}],
        "sessions":[]}"#;
    let (status, body) = http_post(new.admin, "/import", batch);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"accounts\":1"), "{body}");
    let (status, body) = http_post(new.admin, "/import", batch);
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("\"accounts\":0") && body.contains("\"duplicates\":1"),
        "{body}"
    );
    let view = account(&new, 2);
    assert_eq!(
        (view["initial"].as_i64(), view["balance"].as_i64()),
        (Some(700), Some(700))
    );
    assert_eq!(view["owner"], Value::Null, "owned here");

    // Charge it there: 15 s of voice through a gateway.
    let gateway = start_gateway(&[&new], &[]);
    let (_client, connection, node, _) =
        testkit::connect(gateway.diameter, "lg1.example.net").await;
    let s = sid(&node, 1);
    let start = acr(&node, &s, 4, AccountingRecordType::START_RECORD, 0, None);
    assert_eq!(send(&connection, start).await, ResultCode::SUCCESS);
    let stop = acr(&node, &s, 4, AccountingRecordType::STOP_RECORD, 1, Some(15));
    assert_eq!(send(&connection, stop).await, ResultCode::SUCCESS);
    // Not owned, and the old node never introduced itself: refused, never charged.
    let other = acr(
        &node,
        &sid(&node, 2),
        5,
        AccountingRecordType::START_RECORD,
        0,
        None,
    );
    assert_eq!(send(&connection, other).await, ResultCode::TOO_BUSY);
    assert_eq!(account(&new, 3)["debited"], 0);
    drop(gateway);

    // kill -9 and a restart on the same data directory: the import and the debit are kept.
    let listen = new.diameter.to_string();
    let mut new = new;
    new.signal(9);
    let new = start_pdf_on(dir.path(), "pdf1", 1000, &listen, &extra);
    let view = account(&new, 2);
    assert_eq!(view["owner"], Value::Null, "owned here: {view}");
    assert_eq!(view["epoch"], 1, "{view}");
    assert_eq!(view["debited_before"], 300, "{view}");
    assert_eq!(
        (
            view["initial"].as_i64(),
            view["balance"].as_i64(),
            view["debited"].as_i64()
        ),
        (Some(700), Some(670), Some(30)),
        "{view}"
    );
    assert_eq!(account(&new, 3)["owner"], "elsewhere");
    assert_eq!(json(&new, "/books")["ok"], true);
    // The same batch once more, after the restart: still taken once.
    let (status, body) = http_post(new.admin, "/import", batch);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"duplicates\":1"), "{body}");
    assert_eq!(account(&new, 2)["balance"], 670);
    // An older epoch is refused.
    let stale = batch.replace("\"epoch\":1", "\"epoch\":0");
    let (status, body) = http_post(new.admin, "/import", &stale);
    assert_eq!(status, 409, "{body}");
}
