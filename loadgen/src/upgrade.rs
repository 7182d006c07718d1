//! Upgrade strategies as timeline events (issue 7; DESIGN.md section 5), and what an upgrade
//! run reports.
//!
//! - [`Fleet`]: the pdfs the loadgen started (`pdf0`, and one more per drain), each with its
//!   own journal directory; every one still running is stopped at the end of the run;
//! - `drain`: start the new pdf on a free loopback port, add it to the gateway (`POST
//!   /nodes`), wait for its connections, set the old node's weight to 0, poll
//!   `/sessions/count?node=OLD` until it reaches 0 (or `drain_timeout`), copy the old pdf's
//!   books, stop it with SIGTERM (DPR, exit 0), and remove it from the gateway;
//! - `hot`: `POST /upgrade {"binary", "args"}` to the pdf's admin port; the pdf does the
//!   rest (`pdf::hot`) and answers with the new process's pid, which the fleet then tracks;
//! - `migrate`: in `crate::migrate`;
//! - [`Watch`]: when answers arrived (a bit per millisecond: the pause is the longest gap
//!   between two answers, to the millisecond) and their latency before, during and after
//!   the upgrade window;
//! - [`UpgradeReport`]: summary.json's `upgrade`: sessions cut, requests failed, the pause,
//!   latency before and during, connections closed, time to complete, money charged twice
//!   or lost, split-brain accounts during a drain, the longest streak of seconds below the
//!   SLO.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::progress::Progress;
use crate::run::PdfProcess;
use crate::scenario::{Strategy, Upgrade};

/// After an upgrade completes, answers still count as "during" it for this long.
pub const SETTLE: Duration = Duration::from_secs(1);
/// How often a drain asks the gateway how many sessions the old node has left.
const POLL: Duration = Duration::from_millis(200);
/// How often a drain shows its progress.
const SHOW: Duration = Duration::from_secs(2);
/// How long a new node may take to open a connection from the gateway.
const CONNECT: Duration = Duration::from_secs(15);

// ---- the pdfs ------------------------------------------------------------------------------

/// One account's figures on one pdf.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccountBooks {
    /// Account id.
    pub id: u32,
    /// Money charged.
    pub debited: i64,
    /// Opening balance.
    pub initial: i64,
    /// What earlier owners charged before it was migrated here (`migrate`).
    pub debited_before: i64,
    /// Whether this pdf moved it to another one (`migrate`): what it debited before counts,
    /// its opening does not.
    pub moved: bool,
}

/// A pdf's books, read from its admin port.
#[derive(Clone, Debug, Default)]
pub struct NodeBooks {
    /// Every account.
    pub accounts: Vec<AccountBooks>,
    /// The pdf's own check (`/books`: initial = balance + reserved + debited).
    pub ok: bool,
}

/// Reads a pdf's books: `/books` and every account (`/accounts?from=&count=`). Blocking.
pub fn read_books(admin: SocketAddr, accounts: u32) -> anyhow::Result<NodeBooks> {
    let books: serde_json::Value = serde_json::from_str(&crate::run::http_get(admin, "/books")?)?;
    let mut node = NodeBooks {
        ok: books["ok"] == true,
        accounts: Vec::with_capacity(accounts as usize),
    };
    let mut from = 0u32;
    while from < accounts {
        let page: serde_json::Value = serde_json::from_str(&crate::run::http_get(
            admin,
            &format!("/accounts?from={from}&count=10000"),
        )?)?;
        let list = page["accounts"]
            .as_array()
            .context("no accounts in the page")?;
        if list.is_empty() {
            break;
        }
        for account in list {
            node.accounts.push(AccountBooks {
                id: account["id"].as_u64().context("account id")? as u32,
                debited: account["debited"].as_i64().context("debited")?,
                initial: account["initial"].as_i64().unwrap_or(i64::MAX),
                debited_before: account["debited_before"].as_i64().unwrap_or(0),
                moved: account["owner"] == "moved",
            });
        }
        from += list.len() as u32;
    }
    Ok(node)
}

/// A pdf the loadgen started.
#[derive(Clone, Debug)]
pub struct FleetNode {
    /// Its name in the gateway (`pdf0`, `pdf1`, ...).
    pub name: String,
    /// The process.
    pub process: Arc<PdfProcess>,
    /// Its Diameter address.
    pub diameter: SocketAddr,
    /// Its admin address.
    pub admin: SocketAddr,
    /// Once stopped by a drain: its books as they were just before, and its exit status.
    pub retired: Option<(Result<NodeBooks, String>, Option<i32>)>,
}

/// The pdfs the loadgen started; the last one not retired is the current one.
#[derive(Debug)]
pub struct Fleet {
    nodes: Mutex<Vec<FleetNode>>,
    /// The pdf beside the loadgen.
    pub binary: PathBuf,
    /// The pdf's configuration file (the population).
    pub config: PathBuf,
    /// The output directory: logs and journal directories.
    pub out: PathBuf,
    /// The scenario file's directory (an upgrade's `binary` is relative to it).
    pub base: PathBuf,
    /// Whether the pdfs keep a journal (any upgrade: balances must survive a restart, and
    /// every strategy runs with the same durability).
    pub journal: bool,
    /// Worker threads of every pdf's runtime (`--workers`; None: the pdf's default).
    pub workers: Option<u16>,
}

impl Fleet {
    /// An empty fleet.
    pub fn new(
        binary: PathBuf,
        config: PathBuf,
        out: PathBuf,
        base: PathBuf,
        journal: bool,
    ) -> Self {
        Self {
            nodes: Mutex::default(),
            binary,
            config,
            out,
            base,
            journal,
            workers: None,
        }
    }

    /// The fleet with `--workers` for every pdf it starts.
    pub fn with_workers(self, workers: Option<u16>) -> Self {
        Self { workers, ..self }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<FleetNode>> {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The loadgen's arguments for a pdf: its configuration, the addresses, its own journal
    /// directory (`pdf-data` for `pdf0`, `pdf-data-<name>` for the others), its worker
    /// threads.
    fn args(&self, name: &str, listen: &str, admin: &str) -> Vec<String> {
        let mut args = vec![
            "--config".to_owned(),
            self.config.display().to_string(),
            "--listen".to_owned(),
            listen.to_owned(),
            "--admin".to_owned(),
            admin.to_owned(),
        ];
        if self.journal {
            args.extend([
                "--data-dir".to_owned(),
                self.data_dir(name).display().to_string(),
            ]);
        }
        if let Some(workers) = self.workers {
            args.extend(["--workers".to_owned(), workers.to_string()]);
        }
        args
    }

    /// The journal directory of the node `name`.
    pub fn data_dir(&self, name: &str) -> PathBuf {
        if name == "pdf0" {
            self.out.join("pdf-data")
        } else {
            self.out.join(format!("pdf-data-{name}"))
        }
    }

    /// Starts the next pdf (`pdf<n>`) on free loopback ports with its own (fresh) journal
    /// directory: `binary` (relative to the scenario's directory; default the pdf beside the
    /// loadgen) with the loadgen's arguments and `extra`. Blocking. The caller adds it to
    /// the fleet ([`Fleet::push`]) once the gateway knows it.
    pub fn start_next(&self, binary: Option<&Path>, extra: &[String]) -> anyhow::Result<FleetNode> {
        let name = format!("pdf{}", self.lock().len());
        let binary = match binary {
            Some(path) if path.is_relative() => self.base.join(path),
            Some(path) => path.to_path_buf(),
            None => self.binary.clone(),
        };
        if self.journal {
            let _ = std::fs::remove_dir_all(self.data_dir(&name));
        }
        let mut args = self.args(&name, "127.0.0.1:0", "127.0.0.1:0");
        args.extend(extra.iter().cloned());
        let log = if name == "pdf0" {
            self.out.join("pdf.log")
        } else {
            self.out.join(format!("{name}.log"))
        };
        let (process, diameter, admin) = PdfProcess::start(&binary, args, log)
            .with_context(|| format!("starting {name} ({})", binary.display()))?;
        // A restart comes back on the same addresses.
        process.set_args(self.args(&name, &diameter.to_string(), &admin.to_string()));
        Ok(FleetNode {
            name,
            process,
            diameter,
            admin,
            retired: None,
        })
    }

    /// Adds a started node: it becomes the current one.
    pub fn push(&self, node: FleetNode) {
        self.lock().push(node);
    }

    /// The current pdf.
    pub fn current(&self) -> Option<FleetNode> {
        self.lock()
            .iter()
            .rev()
            .find(|n| n.retired.is_none())
            .cloned()
    }

    /// Every pdf started, in order.
    pub fn nodes(&self) -> Vec<FleetNode> {
        self.lock().clone()
    }

    /// Marks `name` stopped, with its books from just before and its exit status.
    pub fn retire(&self, name: &str, books: Result<NodeBooks, String>, exit: Option<i32>) {
        if let Some(node) = self.lock().iter_mut().find(|n| n.name == name) {
            node.retired = Some((books, exit));
        }
    }

    /// Stops every pdf still running (SIGTERM; SIGKILL after 10 s). Blocking.
    pub fn stop_all(&self) {
        for node in self.nodes() {
            node.process.stop();
        }
    }
}

/// The gateway's `gateway_pdf_connections_closed_total`, all reasons added up (None when
/// the metrics cannot be read or do not have it). Blocking.
pub fn connections_closed(gateway_admin: SocketAddr) -> Option<u64> {
    let metrics = crate::run::http_get(gateway_admin, "/metrics").ok()?;
    sum_metric(&metrics, "gateway_pdf_connections_closed_total")
}

/// The sum of a Prometheus counter's samples (every label set).
fn sum_metric(text: &str, name: &str) -> Option<u64> {
    let mut found = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        if let Some(value) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            *found.get_or_insert(0) += value as u64;
        }
    }
    found
}

// ---- what the run measures ------------------------------------------------------------------

const UNSET: u64 = u64::MAX;

/// When answers arrived, and their latency before, during and after the upgrade window.
#[derive(Debug)]
pub struct Watch {
    started: OnceLock<Instant>,
    /// Microseconds after the start of traffic; UNSET before the first upgrade.
    window_start: AtomicU64,
    /// UNSET while an upgrade is going on (or before any).
    window_end: AtomicU64,
    /// A bit per millisecond after the start of traffic: some answer arrived in it.
    answers: Mutex<Vec<u64>>,
    /// Latency (from the intended send time, microseconds) of the answers that arrived
    /// before, during and after the window.
    latency: [Mutex<Histogram<u64>>; 3],
    /// The upgrades, as they happened.
    records: Mutex<Vec<UpgradeRecord>>,
}

impl Default for Watch {
    fn default() -> Self {
        let histogram =
            || Mutex::new(Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static bounds"));
        Self {
            started: OnceLock::new(),
            window_start: AtomicU64::new(UNSET),
            window_end: AtomicU64::new(UNSET),
            answers: Mutex::default(),
            latency: [histogram(), histogram(), histogram()],
            records: Mutex::default(),
        }
    }
}

/// Latency of the answers in one part of the run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowLatency {
    /// Answers.
    pub answered: u64,
    /// Median, microseconds.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Largest.
    pub max_us: u64,
}

/// The longest time without an answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Gap {
    /// Milliseconds between the two answers.
    pub ms: u64,
    /// When it began, seconds after traffic started.
    pub at_s: f64,
}

impl Watch {
    /// Traffic starts now: times are measured from `started`.
    pub fn start(&self, started: Instant) {
        let _ = self.started.set(started);
    }

    fn micros(&self, at: Instant) -> Option<u64> {
        self.started
            .get()
            .map(|s| at.saturating_duration_since(*s).as_micros() as u64)
    }

    /// An answer arrived at `done`, `latency_us` after its intended send time.
    pub fn answer(&self, done: Instant, latency_us: u64) {
        let Some(t) = self.micros(done) else { return };
        let ms = (t / 1000) as usize;
        {
            let mut bits = self.answers.lock().unwrap_or_else(|p| p.into_inner());
            if bits.len() <= ms / 64 {
                bits.resize(ms / 64 + 1024, 0);
            }
            bits[ms / 64] |= 1 << (ms % 64);
        }
        let (start, end) = (
            self.window_start.load(Ordering::Relaxed),
            self.window_end.load(Ordering::Relaxed),
        );
        let phase = if t < start {
            0
        } else if end == UNSET || t <= end {
            1
        } else {
            2
        };
        let _ = self.latency[phase]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(latency_us.max(1));
    }

    /// An upgrade begins now.
    pub fn open(&self, at: Instant) {
        if let Some(t) = self.micros(at) {
            self.window_start.fetch_min(t, Ordering::Relaxed);
            self.window_end.store(UNSET, Ordering::Relaxed);
        }
    }

    /// An upgrade is over (answers count as "during" for [`SETTLE`] more).
    pub fn close(&self, at: Instant) {
        if let Some(t) = self.micros(at + SETTLE) {
            self.window_end.store(t, Ordering::Relaxed);
        }
    }

    /// Records an upgrade.
    pub fn record(&self, record: UpgradeRecord) {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(record);
    }

    /// The upgrades recorded.
    pub fn records(&self) -> Vec<UpgradeRecord> {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The window, in seconds after traffic started (its end None while open).
    pub fn window(&self) -> Option<(f64, Option<f64>)> {
        let start = self.window_start.load(Ordering::Relaxed);
        let end = self.window_end.load(Ordering::Relaxed);
        (start != UNSET).then(|| {
            (
                start as f64 / 1e6,
                (end != UNSET).then_some(end as f64 / 1e6),
            )
        })
    }

    /// Latency before (0), during (1) and after (2) the window.
    pub fn latency(&self, phase: usize) -> WindowLatency {
        let h = self.latency[phase]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        WindowLatency {
            answered: h.len(),
            p50_us: h.value_at_quantile(0.5),
            p99_us: h.value_at_quantile(0.99),
            max_us: h.max(),
        }
    }

    /// The longest time between two answers where the first one arrived in `[from_ms,
    /// to_ms)` (milliseconds after traffic started); None with fewer than two answers.
    pub fn longest_gap(&self, from_ms: u64, to_ms: u64) -> Option<Gap> {
        let bits = self.answers.lock().unwrap_or_else(|p| p.into_inner());
        longest_gap(&bits, from_ms, to_ms)
    }
}

/// The longest gap between consecutive set bits `p < q` of `bits` with `from <= p < to`.
fn longest_gap(bits: &[u64], from: u64, to: u64) -> Option<Gap> {
    let set = |ms: u64| {
        bits.get((ms / 64) as usize)
            .is_some_and(|w| w & (1 << (ms % 64)) != 0)
    };
    let total = bits.len() as u64 * 64;
    let mut best: Option<Gap> = None;
    let mut previous: Option<u64> = None;
    let mut ms = from.min(total);
    // Skip to the first answer at or after `from`.
    while ms < total {
        // Whole empty words at once.
        if ms.is_multiple_of(64) && bits[(ms / 64) as usize] == 0 {
            ms += 64;
            continue;
        }
        if set(ms) {
            if let Some(p) = previous {
                let gap = ms - p;
                if best.is_none_or(|b| gap > b.ms) {
                    best = Some(Gap {
                        ms: gap,
                        at_s: p as f64 / 1000.0,
                    });
                }
            }
            if ms >= to {
                break;
            }
            previous = Some(ms);
        }
        ms += 1;
    }
    best
}

// ---- the records ----------------------------------------------------------------------------

/// One upgrade as it happened (summary.json's `upgrade.upgrades`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UpgradeRecord {
    /// `restart`, `drain`, `hot` or `migrate`.
    pub strategy: String,
    /// When it began, seconds after traffic started.
    pub fired_s: f64,
    /// Time to complete it, seconds.
    pub took_s: f64,
    /// Whether it completed.
    pub ok: bool,
    /// The node upgraded (`pdf0`).
    pub old_node: String,
    /// The node serving after it (`pdf1` after a drain; the same name otherwise).
    pub new_node: String,
    /// The old process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_pid: Option<u32>,
    /// The new process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_pid: Option<u32>,
    /// The old process's exit status after SIGTERM (0: stopped in order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_exit_status: Option<i32>,
    /// `drain`: sessions on the old node when its weight went to 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions_to_drain: Option<u64>,
    /// `drain`: from the old node's weight going to 0 until it had no session, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_s: Option<f64>,
    /// `drain`: how long both versions ran side by side (the new one listening until the
    /// old one exited), seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub side_by_side_s: Option<f64>,
    /// The scenario's `time_scale` (`drain_s` x it is the drain in scenario time).
    pub time_scale: f64,
    /// What happened, in words.
    pub detail: String,
}

impl UpgradeRecord {
    /// `drain_s` in scenario time (x `time_scale`), in words: "42 min".
    pub fn scaled(&self, seconds: f64) -> String {
        human(seconds * self.time_scale)
    }
}

/// Seconds in the largest sensible unit.
pub fn human(seconds: f64) -> String {
    if seconds >= 2.0 * 86400.0 {
        format!("{:.1} d", seconds / 86400.0)
    } else if seconds >= 2.0 * 3600.0 {
        format!("{:.1} h", seconds / 3600.0)
    } else if seconds >= 120.0 {
        format!("{:.1} min", seconds / 60.0)
    } else {
        format!("{seconds:.1} s")
    }
}

// ---- firing ----------------------------------------------------------------------------------

/// What an upgrade event acts on.
#[derive(Clone, Debug)]
pub struct UpgradeTargets {
    /// The pdfs.
    pub fleet: Arc<Fleet>,
    /// The gateway's admin address.
    pub gateway_admin: Option<SocketAddr>,
    /// The measurements (window, records).
    pub watch: Arc<Watch>,
    /// Drain progress lines.
    pub progress: Progress,
    /// When traffic started.
    pub started: Instant,
    /// The scenario's time_scale.
    pub time_scale: f64,
    /// The number of accounts (to copy a retiring pdf's books).
    pub accounts: u32,
}

impl UpgradeTargets {
    /// For a strategy that brings a new pdf beside the current one (drain, migrate): the
    /// gateway's admin address and the pdf being replaced, recorded as the old node.
    pub(crate) fn replaced(
        &self,
        record: &mut UpgradeRecord,
        strategy: &str,
    ) -> anyhow::Result<(SocketAddr, FleetNode)> {
        let gateway = self
            .gateway_admin
            .context("the gateway's admin address is not known")?;
        let old = self
            .fleet
            .current()
            .with_context(|| format!("no spawned pdf to {strategy}"))?;
        record.old_node.clone_from(&old.name);
        record.old_pid = old.process.pid();
        Ok((gateway, old))
    }
}

pub(crate) async fn call(
    address: SocketAddr,
    method: &'static str,
    path: String,
    body: Option<String>,
) -> anyhow::Result<(u16, String)> {
    tokio::task::spawn_blocking(move || crate::run::http(address, method, &path, body.as_deref()))
        .await
        .context("the HTTP task panicked")?
}

/// Fires an upgrade: returns (ok, detail) for the event's record, and records the upgrade
/// in the watch.
pub async fn fire(upgrade: &Upgrade, targets: &UpgradeTargets) -> (bool, String) {
    let fired = Instant::now();
    targets.watch.open(fired);
    let mut record = UpgradeRecord {
        strategy: upgrade.strategy.name().to_owned(),
        fired_s: fired
            .saturating_duration_since(targets.started)
            .as_secs_f64(),
        time_scale: targets.time_scale,
        ..Default::default()
    };
    let result = match upgrade.strategy {
        Strategy::Restart => restart(upgrade, targets, &mut record).await,
        Strategy::Drain => drain(upgrade, targets, &mut record).await,
        Strategy::Hot => hot(upgrade, targets, &mut record).await,
        Strategy::Migrate => crate::migrate::migrate(upgrade, targets, &mut record).await,
    };
    targets.watch.close(Instant::now());
    record.took_s = fired.elapsed().as_secs_f64();
    let (ok, detail) = match result {
        Ok(detail) => (true, detail),
        Err(error) => (false, format!("{error:#}")),
    };
    record.ok = ok;
    record.detail.clone_from(&detail);
    targets.watch.record(record);
    (ok, detail)
}

async fn restart(
    upgrade: &Upgrade,
    targets: &UpgradeTargets,
    record: &mut UpgradeRecord,
) -> anyhow::Result<String> {
    let node = targets
        .fleet
        .current()
        .context("no spawned pdf to restart")?;
    record.old_node.clone_from(&node.name);
    record.new_node.clone_from(&node.name);
    record.old_pid = node.process.pid();
    let binary = upgrade.binary.as_ref().map(|b| {
        if b.is_relative() {
            targets.fleet.base.join(b)
        } else {
            b.clone()
        }
    });
    let extra = (!upgrade.args.is_empty()).then(|| upgrade.args.clone());
    let process = node.process.clone();
    let detail =
        tokio::task::spawn_blocking(move || process.restart(binary.as_deref(), extra.as_deref()))
            .await
            .context("the restart task panicked")??;
    record.new_pid = node.process.pid();
    Ok(detail)
}

/// Starts the new pdf (`upgrade.binary`, the fleet's arguments plus `extra`) on free
/// loopback ports with its own journal, adds it to the gateway (`POST /nodes` with
/// `upgrade.weight`) and waits until the gateway has a connection open to it: the first
/// steps of `drain` and `migrate`. Returns its name, its admin address and when it started.
/// From its start the fleet stops it at the end of the run, whatever happens.
pub(crate) async fn join_new_pdf(
    upgrade: &Upgrade,
    targets: &UpgradeTargets,
    gateway: SocketAddr,
    extra: Vec<String>,
    record: &mut UpgradeRecord,
) -> anyhow::Result<(String, SocketAddr, Instant)> {
    let fleet = targets.fleet.clone();
    let binary = upgrade.binary.clone();
    let new = tokio::task::spawn_blocking(move || fleet.start_next(binary.as_deref(), &extra))
        .await
        .context("the start task panicked")??;
    let started = Instant::now();
    record.new_node.clone_from(&new.name);
    record.new_pid = new.process.pid();
    let (name, admin) = (new.name.clone(), new.admin);
    let body = serde_json::json!({
        "name": new.name,
        "address": new.diameter.to_string(),
        "weight": upgrade.weight,
    })
    .to_string();
    let added = call(gateway, "POST", "/nodes".into(), Some(body)).await;
    targets.fleet.push(new);
    let (status, answer) = added?;
    if status != 201 && status != 200 {
        bail!("POST /nodes {name}: HTTP {status} {}", answer.trim());
    }
    // New sessions go to a node with an open connection only: wait for one.
    let deadline = Instant::now() + CONNECT;
    loop {
        let (_, nodes) = call(gateway, "GET", "/nodes".into(), None).await?;
        let nodes: serde_json::Value = serde_json::from_str(&nodes).context("GET /nodes")?;
        let open = nodes["nodes"].as_array().and_then(|list| {
            list.iter()
                .find(|n| n["name"] == name.as_str() && n["removed"] != true)
                .and_then(|n| n["open_connections"].as_u64())
        });
        if open.unwrap_or(0) > 0 {
            return Ok((name, admin, started));
        }
        if Instant::now() >= deadline {
            bail!(
                "the gateway opened no connection to {name} within {} s",
                CONNECT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sets a node's weight in the gateway to 0: new sessions go elsewhere, its own go on
/// (`drain` and `migrate`).
pub(crate) async fn weight_zero(gateway: SocketAddr, node: &str) -> anyhow::Result<()> {
    let (status, answer) = call(
        gateway,
        "POST",
        format!("/nodes/{node}/weight"),
        Some(r#"{"weight":0}"#.into()),
    )
    .await?;
    if status != 200 {
        bail!(
            "POST /nodes/{node}/weight 0: HTTP {status} {}",
            answer.trim()
        );
    }
    Ok(())
}

/// The drain: see the module's documentation.
async fn drain(
    upgrade: &Upgrade,
    targets: &UpgradeTargets,
    record: &mut UpgradeRecord,
) -> anyhow::Result<String> {
    let (gateway, old) = targets.replaced(record, "drain")?;
    let (new_name, _, both_since) =
        join_new_pdf(upgrade, targets, gateway, upgrade.args.clone(), record)
            .await
            .with_context(|| format!("{} keeps its weight", old.name))?;
    weight_zero(gateway, &old.name).await?;
    let weight_zero = Instant::now();
    let count = |name: String| async move {
        let (status, body) =
            call(gateway, "GET", format!("/sessions/count?node={name}"), None).await?;
        if status != 200 {
            bail!(
                "GET /sessions/count?node={name}: HTTP {status} {}",
                body.trim()
            );
        }
        let value: serde_json::Value = serde_json::from_str(&body)?;
        value["sessions"]
            .as_u64()
            .context("no sessions in /sessions/count")
    };
    let first = count(old.name.clone()).await?;
    record.sessions_to_drain = Some(first);
    targets.progress.println(&format!(
        "drain: {} -> {} (weight {}); {first} sessions to drain on {} (timeout {})",
        old.name,
        new_name,
        upgrade.weight,
        old.name,
        human(upgrade.drain_timeout.as_secs_f64())
    ));
    let mut shown = Instant::now();
    let mut left = first;
    while left > 0 {
        if weight_zero.elapsed() >= upgrade.drain_timeout {
            let detail = format!(
                "drain timed out after {}: {left} of {first} sessions still on {}; both {} and {new_name} keep running to the end",
                human(upgrade.drain_timeout.as_secs_f64()),
                old.name,
                old.name
            );
            record.side_by_side_s = Some(both_since.elapsed().as_secs_f64());
            bail!(detail);
        }
        tokio::time::sleep(POLL).await;
        left = count(old.name.clone()).await?;
        if shown.elapsed() >= SHOW && left > 0 {
            shown = Instant::now();
            let waited = weight_zero.elapsed().as_secs_f64();
            targets.progress.println(&format!(
                "drain: {left} of {first} sessions left on {} after {waited:.1} s ({} at time_scale {})",
                old.name,
                human(waited * targets.time_scale),
                targets.time_scale
            ));
        }
    }
    let drained = weight_zero.elapsed();
    record.drain_s = Some(drained.as_secs_f64());
    // Its books before it goes: the books check adds them to the new node's.
    let admin = old.admin;
    let accounts = targets.accounts;
    let books = tokio::task::spawn_blocking(move || read_books(admin, accounts))
        .await
        .context("the books task panicked")?
        .map_err(|e| format!("{e:#}"));
    let process = old.process.clone();
    let status = tokio::task::spawn_blocking(move || process.stop())
        .await
        .context("the stop task panicked")?;
    let side_by_side = both_since.elapsed();
    let exit = status.and_then(|s| s.code());
    record.old_exit_status = exit;
    record.side_by_side_s = Some(side_by_side.as_secs_f64());
    let books_error = books.as_ref().err().cloned();
    targets.fleet.retire(&old.name, books, exit);
    // The gateway forgets it (it would try to reconnect after the DPR REBOOTING).
    let removed = call(gateway, "DELETE", format!("/nodes/{}", old.name), None).await;
    let mut detail = format!(
        "{first} sessions drained from {} in {:.2} s ({} at time_scale {}); {} (pid {}) stopped with SIGTERM: {}; both versions ran {:.2} s side by side; {new_name} (pid {}) serves",
        old.name,
        drained.as_secs_f64(),
        human(drained.as_secs_f64() * targets.time_scale),
        targets.time_scale,
        old.name,
        record.old_pid.map_or("?".into(), |p| p.to_string()),
        status.map_or("exit status unknown".into(), |s| s.to_string()),
        side_by_side.as_secs_f64(),
        record.new_pid.map_or("?".into(), |p| p.to_string()),
    );
    if let Err(error) = removed {
        detail += &format!("; DELETE /nodes/{}: {error:#}", old.name);
    }
    if let Some(error) = books_error {
        bail!("{detail}; but its books could not be read before it stopped: {error}");
    }
    if exit != Some(0) {
        bail!("{detail}; the old pdf did not exit 0");
    }
    Ok(detail)
}

/// The hot upgrade: `POST /upgrade {"binary", "args"}` to the pdf's admin port; the answer
/// names the new process (`pid` or `new_pid`), which the loadgen then stops at the end. The
/// scenario check refuses `strategy = "hot"` until the pdf has the route.
async fn hot(
    upgrade: &Upgrade,
    targets: &UpgradeTargets,
    record: &mut UpgradeRecord,
) -> anyhow::Result<String> {
    let node = targets
        .fleet
        .current()
        .context("no spawned pdf to upgrade")?;
    record.old_node.clone_from(&node.name);
    record.new_node.clone_from(&node.name);
    record.old_pid = node.process.pid();
    let (current, mut args) = node.process.command_line();
    let binary = match &upgrade.binary {
        Some(path) if path.is_relative() => targets.fleet.base.join(path),
        Some(path) => path.clone(),
        None => current,
    };
    args.extend(upgrade.args.iter().cloned());
    let body = hot_body(&binary, &args);
    let (status, answer) = call(node.admin, "POST", "/upgrade".into(), Some(body)).await?;
    if status != 200 {
        bail!("POST /upgrade: HTTP {status} {}", answer.trim());
    }
    let pid = new_pid(&answer).with_context(|| format!("POST /upgrade answered {answer:?}"))?;
    record.new_pid = Some(pid);
    let process = node.process.clone();
    let exit = tokio::task::spawn_blocking(move || process.adopt(pid, Duration::from_secs(30)))
        .await
        .context("the wait task panicked")?;
    record.old_exit_status = exit.and_then(|s| s.code());
    Ok(format!(
        "pid {} handed over to pid {pid} ({}); old process {}{}",
        record.old_pid.map_or("?".into(), |p| p.to_string()),
        binary.display(),
        exit.map_or("still running after 30 s".into(), |s| s.to_string()),
        pdf_pause(&answer)
    ))
}

/// What the pdf said of its own pause in its answer to `POST /upgrade`: "; the pdf's pause
/// 31.2 ms (quiesce 0.1, snapshot 10.0, ...), 4 connections, 100000 sessions".
fn pdf_pause(answer: &str) -> String {
    let Ok(report) = serde_json::from_str::<serde_json::Value>(answer) else {
        return String::new();
    };
    let Some(pause) = report["pause_ms"].as_f64() else {
        return String::new();
    };
    let phases: Vec<String> = report["phases_ms"]
        .as_array()
        .map(|phases| {
            phases
                .iter()
                .filter_map(|p| Some(format!("{} {:.1}", p[0].as_str()?, p[1].as_f64()?)))
                .collect()
        })
        .unwrap_or_default();
    format!(
        "; the pdf's pause {pause:.1} ms ({}), {} connections, {} sessions",
        phases.join(", "),
        report["connections"],
        report["sessions"]
    )
}

/// The body of `POST /upgrade`.
fn hot_body(binary: &Path, args: &[String]) -> String {
    serde_json::json!({ "binary": binary.display().to_string(), "args": args }).to_string()
}

/// The new process's pid in the answer to `POST /upgrade` (`pid` or `new_pid`).
fn new_pid(answer: &str) -> Option<u32> {
    let value: serde_json::Value = serde_json::from_str(answer).ok()?;
    ["new_pid", "pid"]
        .iter()
        .find_map(|key| value[key].as_u64())
        .and_then(|p| u32::try_from(p).ok())
}

// ---- the books over several pdfs -------------------------------------------------------------

/// Accounts whose money went through two pdfs during a drain: both start with the whole
/// population's opening balances (each builds it from the same seed), so an account with
/// sessions on both can spend its balance once on each.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SplitBrain {
    /// The pdfs whose books were added up.
    pub nodes: Vec<String>,
    /// Accounts charged on more than one pdf.
    pub accounts_on_both: u64,
    /// Accounts whose debits on all the pdfs add up to more than their opening balance:
    /// money granted twice.
    pub overdrawn_accounts: u64,
    /// The money debited beyond those accounts' opening balances.
    pub overdrawn_money: i64,
}

/// Per account: the debits on every pdf added up, how many pdfs charged it, and its opening
/// balance.
#[derive(Clone, Debug, Default)]
pub struct Combined {
    /// Account id -> (total debited, pdfs that charged it, opening balance).
    pub accounts: HashMap<u32, (i64, u32, i64)>,
    /// Every pdf's own books check held.
    pub ok: bool,
    /// The split-brain figures (with more than one pdf).
    pub split_brain: Option<SplitBrain>,
}

/// Adds up the books of several pdfs.
pub fn combine(books: &[(String, NodeBooks)]) -> Combined {
    let mut combined = Combined {
        ok: books.iter().all(|(_, b)| b.ok),
        ..Default::default()
    };
    for (_, node) in books {
        for account in &node.accounts {
            let entry = combined
                .accounts
                .entry(account.id)
                .or_insert((0, 0, i64::MIN));
            entry.0 += account.debited;
            // A pdf that migrated the account away charged it before the move: its debits
            // count, but it is not a second pdf spending the same money, and its opening
            // went with the account (the owner's opening plus what earlier owners debited).
            if account.debited != 0 && !account.moved {
                entry.1 += 1;
            }
            if !account.moved && entry.2 == i64::MIN {
                entry.2 = account.initial + account.debited_before;
            }
        }
    }
    for entry in combined.accounts.values_mut() {
        if entry.2 == i64::MIN {
            entry.2 = i64::MAX;
        }
    }
    if books.len() > 1 {
        let mut split = SplitBrain {
            nodes: books.iter().map(|(name, _)| name.clone()).collect(),
            ..Default::default()
        };
        for (debited, charged_by, initial) in combined.accounts.values() {
            if *charged_by > 1 {
                split.accounts_on_both += 1;
            }
            if debited > initial {
                split.overdrawn_accounts += 1;
                split.overdrawn_money += debited - initial;
            }
        }
        combined.split_brain = Some(split);
    }
    combined
}

// ---- the report ------------------------------------------------------------------------------

/// What an upgrade run cost (summary.json's `upgrade`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UpgradeReport {
    /// The strategies used, in order (one per upgrade event).
    pub strategies: Vec<String>,
    /// Each upgrade as it happened.
    pub upgrades: Vec<UpgradeRecord>,
    /// The window: from the first upgrade's start to the last one's end plus 1 s, seconds
    /// after traffic started.
    pub window_s: (f64, f64),
    /// Time to complete the upgrades (sum of their durations); None if one failed.
    pub completed_s: Option<f64>,
    /// Sessions lost to the infrastructure (the whole run).
    pub sessions_cut: u64,
    /// Requests failed: timeouts, 3xxx, unexpected Result-Codes (the whole run).
    pub failed_requests: u64,
    /// Of which no answer at all.
    pub timeouts: u64,
    /// The longest gap between two answers that began in the window (1 s before it
    /// included), to the millisecond.
    pub pause: Option<Gap>,
    /// The same before the window (from the end of the ramp): what a gap is without an
    /// upgrade.
    pub gap_before: Option<Gap>,
    /// Latency of the answers that arrived before the window.
    pub latency_before: WindowLatency,
    /// During it.
    pub latency_during: WindowLatency,
    /// After it.
    pub latency_after: WindowLatency,
    /// PDF connections the gateway saw closed during the run (its
    /// `gateway_pdf_connections_closed_total`); None when it could not be read.
    pub connections_closed: Option<u64>,
    /// Accounts debited more than usage x tariff (money charged twice) and by how much.
    pub overcharged_accounts: u64,
    /// The money charged beyond usage x tariff.
    pub overcharged_money: i64,
    /// Accounts debited less than usage x tariff (money lost) and by how much.
    pub undercharged_accounts: u64,
    /// The money not charged.
    pub undercharged_money: i64,
    /// Accounts left out of the books check (a request's outcome unknown).
    pub accounts_uncertain: u64,
    /// Seconds below the SLO: with a failed request or a lost session, with no answer
    /// while sessions were live, or (with `[slo] p99_latency`) a p99 above it.
    pub seconds_below_slo: u64,
    /// The longest streak of such seconds.
    pub longest_below_slo_s: u64,
    /// When that streak began (second number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub longest_below_slo_at: Option<u64>,
    /// Accounts whose money went through two pdfs (drain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_brain: Option<SplitBrain>,
}

/// Seconds below the SLO: (count, longest streak, the streak's first second).
pub fn below_slo(
    timeline: &[crate::run::Second],
    p99_limit: Option<Duration>,
) -> (u64, u64, Option<u64>) {
    let mut count = 0;
    let mut best = (0, None);
    let mut streak = (0, None);
    let mut lost_before = 0;
    for row in timeline {
        let below = row.failed > 0
            || row.lost_sessions > lost_before
            || (row.answered == 0 && row.live_sessions > 0)
            || p99_limit.is_some_and(|limit| u128::from(row.p99_us) > limit.as_micros());
        lost_before = row.lost_sessions;
        if below {
            count += 1;
            streak = (streak.0 + 1, streak.1.or(Some(row.second)));
            if streak.0 > best.0 {
                best = streak;
            }
        } else {
            streak = (0, None);
        }
    }
    (count, best.0, best.1)
}

/// The upgrade part of a finished run's report; None when no upgrade fired.
pub fn report(
    report: &crate::report::Report,
    watch: &Watch,
    ramp: Duration,
    connections_closed: Option<u64>,
) -> Option<UpgradeReport> {
    let upgrades = watch.records();
    if upgrades.is_empty() {
        return None;
    }
    let (start, end) = watch.window()?;
    let end = end.unwrap_or(report.elapsed_seconds);
    let start_ms = (start * 1000.0) as u64;
    let pause = watch.longest_gap(start_ms.saturating_sub(1000), (end * 1000.0) as u64);
    let ramp_ms = ramp.as_millis() as u64;
    let gap_before = (start_ms.saturating_sub(1000) > ramp_ms)
        .then(|| watch.longest_gap(ramp_ms, start_ms.saturating_sub(1000)))
        .flatten();
    let p99_limit = report.slo.p99_latency.map(|s| s.0);
    let (seconds_below_slo, longest, longest_at) = below_slo(&report.timeline, p99_limit);
    let books = &report.books;
    Some(UpgradeReport {
        strategies: upgrades.iter().map(|u| u.strategy.clone()).collect(),
        completed_s: upgrades
            .iter()
            .all(|u| u.ok)
            .then(|| upgrades.iter().map(|u| u.took_s).sum()),
        upgrades,
        window_s: (start, end),
        sessions_cut: report.sessions.dropped(),
        failed_requests: report.failed_requests,
        timeouts: report.steps.iter().map(|s| s.timeouts).sum(),
        pause,
        gap_before,
        latency_before: watch.latency(0),
        latency_during: watch.latency(1),
        latency_after: watch.latency(2),
        connections_closed,
        overcharged_accounts: books.overcharged,
        overcharged_money: books.overcharged_money,
        undercharged_accounts: books.undercharged,
        undercharged_money: books.undercharged_money,
        accounts_uncertain: books.accounts_uncertain,
        seconds_below_slo,
        longest_below_slo_s: longest,
        longest_below_slo_at: longest_at,
        split_brain: books.split_brain.clone(),
    })
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

impl UpgradeReport {
    /// The terminal summary's upgrade lines.
    pub fn summary(&self) -> String {
        let mut text = String::from("upgrade:\n");
        for u in &self.upgrades {
            text += &format!(
                "  {} at {:.1} s: {} in {:.2} s ({} -> {})\n",
                u.strategy,
                u.fired_s,
                if u.ok { "completed" } else { "FAILED" },
                u.took_s,
                u.old_node,
                u.new_node
            );
            if let (Some(drain), Some(both)) = (u.drain_s, u.side_by_side_s) {
                text += &format!(
                    "    drained {} sessions in {drain:.2} s ({} at time_scale {}); both versions side by side {both:.2} s ({}); old pdf exit status {}\n",
                    u.sessions_to_drain.unwrap_or(0),
                    u.scaled(drain),
                    u.time_scale,
                    u.scaled(both),
                    u.old_exit_status.map_or("unknown".into(), |c| c.to_string())
                );
            }
        }
        text += &format!(
            "  sessions cut by the infrastructure {}; requests failed {} ({} without an answer)\n",
            self.sessions_cut, self.failed_requests, self.timeouts
        );
        let gap =
            |g: &Option<Gap>| g.map_or("-".into(), |g| format!("{} ms at {:.2} s", g.ms, g.at_s));
        text += &format!(
            "  pause (longest gap between answers): {}; before the upgrade: {}\n",
            gap(&self.pause),
            gap(&self.gap_before)
        );
        text += &format!(
            "  latency p99/max ms: before {}/{}, during {}/{}, after {}/{}\n",
            ms(self.latency_before.p99_us),
            ms(self.latency_before.max_us),
            ms(self.latency_during.p99_us),
            ms(self.latency_during.max_us),
            ms(self.latency_after.p99_us),
            ms(self.latency_after.max_us)
        );
        text += &format!(
            "  connections closed (gateway to pdf): {}; time to complete: {}\n",
            self.connections_closed
                .map_or("unknown".into(), |c| c.to_string()),
            self.completed_s
                .map_or("did not complete".into(), |s| format!("{s:.2} s"))
        );
        text += &format!(
            "  money: {} accounts charged twice ({} over), {} lost ({} under), {} uncertain\n",
            self.overcharged_accounts,
            self.overcharged_money,
            self.undercharged_accounts,
            self.undercharged_money,
            self.accounts_uncertain
        );
        text += &format!(
            "  seconds below the SLO: {} (longest streak {} s{})\n",
            self.seconds_below_slo,
            self.longest_below_slo_s,
            self.longest_below_slo_at
                .map_or(String::new(), |s| format!(" from second {s}"))
        );
        if let Some(split) = &self.split_brain {
            text += &format!(
                "  split brain ({}): both pdfs started with every opening balance; {} accounts charged on more than one, {} overdrawn across them by {} in all\n",
                split.nodes.join(" + "),
                split.accounts_on_both,
                split.overdrawn_accounts,
                split.overdrawn_money
            );
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pdf_of_the_fleet_gets_its_worker_threads() {
        let fleet = |workers| {
            Fleet::new(
                "pdf".into(),
                "pdf.toml".into(),
                "out".into(),
                ".".into(),
                false,
            )
            .with_workers(workers)
        };
        let args = fleet(Some(1)).args("pdf1", "127.0.0.1:0", "127.0.0.1:0");
        assert!(args.windows(2).any(|w| w == ["--workers", "1"]), "{args:?}");
        let args = fleet(None).args("pdf1", "127.0.0.1:0", "127.0.0.1:0");
        assert!(!args.iter().any(|a| a == "--workers"), "{args:?}");
    }

    fn bits(ms: &[u64]) -> Vec<u64> {
        let mut bits = vec![0u64; 64];
        for &m in ms {
            bits[(m / 64) as usize] |= 1 << (m % 64);
        }
        bits
    }

    #[test]
    fn the_longest_gap_between_answers_to_the_millisecond() {
        let b = bits(&[5, 6, 100, 101, 1300, 1301, 1500, 3000]);
        assert_eq!(
            longest_gap(&b, 0, 4096),
            Some(Gap {
                ms: 1500,
                at_s: 1.5
            })
        );
        // Only gaps that begin in [from, to).
        assert_eq!(
            longest_gap(&b, 0, 1000),
            Some(Gap {
                ms: 1199,
                at_s: 0.101
            })
        );
        assert_eq!(longest_gap(&b, 0, 100).map(|g| g.ms), Some(94));
        assert_eq!(longest_gap(&b, 3000, 4096), None);
        assert_eq!(longest_gap(&[], 0, 100), None);
    }

    #[test]
    fn the_watch_splits_latency_at_the_window() {
        let watch = Watch::default();
        let t0 = Instant::now();
        watch.answer(t0, 5); // before start(): ignored
        watch.start(t0);
        watch.answer(t0 + Duration::from_millis(10), 100);
        watch.open(t0 + Duration::from_millis(20));
        watch.answer(t0 + Duration::from_millis(30), 90_000);
        watch.answer(t0 + Duration::from_millis(400), 1_000);
        watch.close(t0 + Duration::from_millis(500));
        watch.answer(t0 + Duration::from_millis(1400), 2_000); // settle: still during
        watch.answer(t0 + Duration::from_millis(1600), 200);
        assert_eq!(watch.latency(0).answered, 1);
        assert_eq!(watch.latency(1).answered, 3);
        assert!(watch.latency(1).max_us >= 89_000);
        assert_eq!(watch.latency(2).answered, 1);
        let (start, end) = watch.window().expect("window");
        assert!((start - 0.02).abs() < 1e-3 && (end.expect("closed") - 1.5).abs() < 1e-3);
        assert_eq!(
            watch.longest_gap(0, 2000),
            Some(Gap {
                ms: 1000,
                at_s: 0.4
            })
        );
    }

    #[test]
    fn seconds_below_the_slo_and_the_longest_streak() {
        let row = |second, answered, failed, lost, p99_us| crate::run::Second {
            second,
            answered,
            failed,
            live_sessions: 10,
            lost_sessions: lost,
            p50_us: 100,
            p99_us,
            max_us: p99_us,
        };
        let timeline = [
            row(1, 100, 0, 0, 1_000),
            row(2, 0, 0, 0, 0),         // a stall
            row(3, 50, 2, 0, 1_000),    // failures
            row(4, 80, 0, 5, 1_000),    // sessions lost
            row(5, 100, 0, 5, 1_000),   // fine (the count did not grow)
            row(6, 100, 0, 5, 900_000), // slow
            row(7, 100, 0, 5, 1_000),
        ];
        assert_eq!(below_slo(&timeline, None), (3, 3, Some(2)));
        assert_eq!(
            below_slo(&timeline, Some(Duration::from_millis(50))),
            (4, 3, Some(2))
        );
        assert_eq!(below_slo(&[], None), (0, 0, None));
    }

    #[test]
    fn books_of_two_pdfs_add_up_and_split_brain_is_counted() {
        let node = |accounts: &[(u32, i64)]| NodeBooks {
            ok: true,
            accounts: accounts
                .iter()
                .map(|&(id, debited)| AccountBooks {
                    id,
                    debited,
                    initial: 100,
                    debited_before: 0,
                    moved: false,
                })
                .collect(),
        };
        let combined = combine(&[
            ("pdf0".into(), node(&[(1, 60), (2, 10), (3, 0)])),
            ("pdf1".into(), node(&[(1, 70), (2, 0), (3, 5)])),
        ]);
        assert!(combined.ok);
        assert_eq!(combined.accounts[&1], (130, 2, 100));
        assert_eq!(combined.accounts[&2], (10, 1, 100));
        assert_eq!(combined.accounts[&3], (5, 1, 100));
        assert_eq!(
            combined.split_brain,
            Some(SplitBrain {
                nodes: vec!["pdf0".into(), "pdf1".into()],
                accounts_on_both: 1,
                overdrawn_accounts: 1,
                overdrawn_money: 30,
            })
        );
        let one = combine(&[("pdf0".into(), node(&[(1, 5)]))]);
        assert!(one.split_brain.is_none());
    }

    #[test]
    fn the_pdfs_own_pause_goes_into_the_detail() {
        let answer = r#"{"new_pid":7,"pause_ms":31.25,"connections":4,"sessions":100,"phases_ms":[["quiesce",0.1],["snapshot",10.0]]}"#;
        assert_eq!(
            pdf_pause(answer),
            "; the pdf's pause 31.2 ms (quiesce 0.1, snapshot 10.0), 4 connections, 100 sessions"
        );
        assert_eq!(pdf_pause("not json"), "");
    }

    #[test]
    fn hot_posts_the_binary_and_arguments_and_reads_the_new_pid() {
        let body = hot_body(
            Path::new("/opt/pdf-2"),
            &["--config".into(), "x.toml".into()],
        );
        let value: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(value["binary"], "/opt/pdf-2");
        assert_eq!(value["args"][1], "x.toml");
        assert_eq!(new_pid(r#"{"new_pid": 4242, "old_pid": 17}"#), Some(4242));
        assert_eq!(new_pid(r#"{"pid": 99}"#), Some(99));
        assert_eq!(new_pid(r#"{"error": "refused"}"#), None);
    }

    #[test]
    fn a_counter_is_summed_over_its_labels() {
        let text = "# HELP gateway_pdf_connections_closed_total x\n# TYPE gateway_pdf_connections_closed_total counter\n\
                    gateway_pdf_connections_closed_total{reason=\"pdf_dpr\"} 2\n\
                    gateway_pdf_connections_closed_total{reason=\"lost\"} 3\n\
                    gateway_pdf_connections_closed_totally 9\n";
        assert_eq!(
            sum_metric(text, "gateway_pdf_connections_closed_total"),
            Some(5)
        );
        assert_eq!(sum_metric(text, "gateway_sessions"), None);
    }

    #[test]
    fn durations_in_words() {
        assert_eq!(human(12.34), "12.3 s");
        assert_eq!(human(600.0), "10.0 min");
        assert_eq!(human(3.0 * 86400.0), "3.0 d");
    }
}
