//! The `migrate` upgrade strategy as a timeline event (DESIGN.md section 5): start the new
//! pdf owning no account (`--owns none`) and redirecting requests for them to the old one
//! until they arrive (`--upstream`), add it to the gateway (`POST /nodes`, the event's
//! `weight`) and wait for its connections, `POST /migrate` to the old pdf (it introduces
//! itself to the new one, then moves its accounts and live sessions there in batches of
//! `batch`), set the old node's weight to 0, wait until the old pdf owns nothing (its books
//! are final from then on: they are read for the books check), then until it has redirected
//! every moved session with 3006 and exited by itself (DPR, exit 0), all within
//! `drain_timeout`; the gateway then forgets it.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::scenario::Upgrade;
use crate::upgrade::{call, human, read_books, weight_zero, UpgradeRecord, UpgradeTargets};

/// How often the old pdf's `GET /migrate` is asked.
const POLL: Duration = Duration::from_millis(50);

/// The migration: see the module's documentation.
pub async fn migrate(
    upgrade: &Upgrade,
    targets: &UpgradeTargets,
    record: &mut UpgradeRecord,
) -> anyhow::Result<String> {
    let (gateway, old) = targets.replaced(record, "migrate")?;
    // It knows where the accounts it does not own yet are served from the start: a START
    // placed on it before the old pdf introduces itself is redirected there (3006), not
    // refused (3004).
    let mut extra = vec![
        "--owns".to_owned(),
        "none".to_owned(),
        "--upstream".to_owned(),
        format!("aaa://{};transport=tcp", old.diameter),
    ];
    extra.extend(upgrade.args.iter().cloned());
    let (new_name, new_admin, both_since) =
        crate::upgrade::join_new_pdf(upgrade, targets, gateway, extra, record).await?;
    // The old pdf introduces itself to the new one (which from then on redirects accounts
    // it does not own yet to it), then moves them in the background.
    let mut order = serde_json::json!({ "to_admin": new_admin.to_string() });
    if let Some(batch) = upgrade.batch {
        order["batch"] = batch.into();
    }
    let started = Instant::now();
    let (status, answer) = call(
        old.admin,
        "POST",
        "/migrate".into(),
        Some(order.to_string()),
    )
    .await?;
    if status != 202 {
        bail!(
            "POST /migrate to {}: HTTP {status} {}",
            old.name,
            answer.trim()
        );
    }
    weight_zero(gateway, &old.name).await?;
    targets.progress.println(&format!(
        "migrate: {} -> {new_name}: moving accounts and sessions (timeout {})",
        old.name,
        human(upgrade.drain_timeout.as_secs_f64())
    ));
    // Until the old pdf owns nothing: from then on its books cannot change.
    let progress = loop {
        let (status, body) = call(old.admin, "GET", "/migrate".into(), None).await?;
        let progress: serde_json::Value =
            serde_json::from_str(&body).with_context(|| format!("GET /migrate: HTTP {status}"))?;
        match progress["state"].as_str() {
            Some("lingering" | "done") => break progress,
            Some("failed") => bail!(
                "the migration from {} failed: {}",
                old.name,
                progress["error"].as_str().unwrap_or("?")
            ),
            _ => {}
        }
        if started.elapsed() >= upgrade.drain_timeout {
            bail!(
                "the migration from {} was not done within {}: {progress}",
                old.name,
                human(upgrade.drain_timeout.as_secs_f64())
            );
        }
        tokio::time::sleep(POLL).await;
    };
    let moved_in = started.elapsed();
    let admin = old.admin;
    let accounts = targets.accounts;
    let books = tokio::task::spawn_blocking(move || read_books(admin, accounts))
        .await
        .context("the books task panicked")?
        .map_err(|e| format!("{e:#}"));
    // It redirects each moved session's next request, then stops by itself.
    let process = old.process.clone();
    let wait = upgrade.drain_timeout.saturating_sub(started.elapsed());
    let status = tokio::task::spawn_blocking(move || process.wait_exit(wait))
        .await
        .context("the wait task panicked")?;
    let took = started.elapsed();
    let exit = status.and_then(|s| s.code());
    record.old_exit_status = exit;
    record.side_by_side_s = Some(both_since.elapsed().as_secs_f64());
    let books_error = books.as_ref().err().cloned();
    targets.fleet.retire(&old.name, books, exit);
    let removed = call(gateway, "DELETE", format!("/nodes/{}", old.name), None).await;
    let mut detail = format!(
        "{} accounts and {} sessions moved from {} to {new_name} in {} batches ({:.2} s, longest batch {:.1} ms); every account moved in {:.2} s, {} stopped by itself {:.2} s after POST /migrate: {}",
        progress["accounts"],
        progress["sessions"],
        old.name,
        progress["batches"],
        progress["moved_in_s"].as_f64().unwrap_or(moved_in.as_secs_f64()),
        progress["max_batch_ms"].as_f64().unwrap_or(0.0),
        moved_in.as_secs_f64(),
        old.name,
        took.as_secs_f64(),
        status.map_or("still running".into(), |s| s.to_string()),
    );
    if let Err(error) = removed {
        detail += &format!("; DELETE /nodes/{}: {error:#}", old.name);
    }
    if let Some(error) = books_error {
        bail!("{detail}; but its books could not be read: {error}");
    }
    if exit != Some(0) {
        bail!("{detail}; the old pdf did not exit 0 within the timeout");
    }
    Ok(detail)
}
