//! The `migrate` upgrade strategy's IO: the admin routes, the batches sent over HTTP, and
//! the ownership log that makes them survive a restart.
//!
//! | route | on | does |
//! |---|---|---|
//! | `POST /migrate` `{"to_admin": "127.0.0.1:9869", "to_uri": "aaa://127.0.0.1:3870;transport=tcp", "batch": 500, "stay": false, "linger_seconds": 60}` | the old node | introduces itself to the new node, then moves every account it owns there in batches, in the background (202) |
//! | `GET /migrate` | the old node | progress: state, batches, accounts, sessions and money moved, time taken |
//! | `POST /import` (a [`Batch`]) | the new node | takes in a batch (idempotent per account epoch); an empty batch is the old node introducing itself |
//!
//! `to_uri` defaults to the new node's Diameter address as its `/status` reports it; only
//! `to_admin` is needed. One batch: freeze up to `batch` accounts owned here (requests for
//! them wait in the server, bounded), write the batch to the ownership log as an intent,
//! `POST /import` it (retried for up to [`SEND_PATIENCE`]: the receiver applies an account's
//! epoch once), and on the acknowledgement drop the accounts' sessions without releasing
//! their holds (the money moved), mark the accounts moved and log that. When nothing is owned
//! here, the node waits until every moved session's next request has been redirected (at
//! most `linger_seconds`, default twice the Validity-Time), then, unless `stay`, stops: DPR
//! (DO_NOT_WANT_TO_TALK_TO_YOU) to every peer, exit status 0.
//!
//! # The ownership log
//!
//! `ownership.log` in the data directory (with `journal.dir`; memory only without one): one
//! JSON object per line, each written and fsynced before what it records takes effect:
//! `{"owns":"none"}` (the node's start), `{"upstream":URI}` (where unowned accounts are
//! served: `--upstream` at start-up, or the old node's introduction), `{"import":BATCH}`
//! (before the acknowledgement), `{"export":{"to":URI, "to_admin":ADDR,"batch":BATCH}}`
//! (before sending), `{"moved":{"account":ID,"epoch":E}}`
//! and `{"abandoned":{"account":ID,"epoch":E}}` (after the answer). Recovery replays it over
//! the debits the journal recovered: imports add their money to the accounts' openings,
//! exports take theirs away. An export with neither `moved` nor `abandoned` after it counts as
//! moved and is sent again at start-up (the receiver acknowledges what it already has).

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::charging::Engine;
use crate::ownership::Owns;
use crate::transfer::Batch;

/// The ownership log's file name in the data directory.
pub const OWNERSHIP_LOG: &str = "ownership.log";
/// How long a batch is offered to the new node before the migration gives up.
pub const SEND_PATIENCE: Duration = Duration::from_secs(15);
/// Accounts per batch unless `POST /migrate` says otherwise.
pub const DEFAULT_BATCH: usize = 500;

/// One line of the ownership log.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Record {
    Owns(Owns),
    Upstream(String),
    Import(Batch),
    Export(Export),
    Moved(BatchKey),
    Abandoned(BatchKey),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Export {
    to: String,
    to_admin: String,
    batch: Batch,
}

/// Names a batch: its first account at its new epoch (epochs only grow).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct BatchKey {
    account: u32,
    epoch: u64,
}

impl BatchKey {
    fn of(batch: &Batch) -> Self {
        batch.accounts.first().map_or(
            Self {
                account: 0,
                epoch: 0,
            },
            |a| Self {
                account: a.id,
                epoch: a.epoch,
            },
        )
    }
}

/// The ownership log: appended and fsynced one record at a time (a few per batch).
#[derive(Debug)]
struct Log {
    file: Mutex<std::fs::File>,
}

impl Log {
    fn append(&self, record: &Record) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        file.write_all(&line)?;
        file.sync_data()
    }
}

/// Exports the log holds that were never confirmed: sent again at start-up.
#[derive(Debug, Default)]
pub struct Pending {
    exports: Vec<Export>,
}

/// Applies the ownership log in `dir` (if any) to a freshly recovered engine, and settles
/// what the node owns: `owns` from the configuration, unless the log says otherwise (a
/// restarted node keeps what it had); and where unowned accounts are served: `upstream`
/// from the configuration (logged), else the last one the log names. Returns the open log
/// and the unconfirmed exports.
pub fn recover(
    engine: &mut Engine,
    dir: Option<&Path>,
    owns: Owns,
    upstream: Option<&str>,
) -> anyhow::Result<(Option<PathBuf>, Pending)> {
    let Some(dir) = dir else {
        if owns == Owns::None {
            engine.own_none();
        }
        if let Some(uri) = upstream {
            engine.ownership.set_upstream(uri);
        }
        return Ok((None, Pending::default()));
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(OWNERSHIP_LOG);
    let mut records = Vec::new();
    if path.exists() {
        let file =
            std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.with_context(|| format!("reading {}", path.display()))?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Record>(&line) {
                Ok(record) => records.push(record),
                // A line cut by a crash: its fsync never returned, so nothing took effect.
                Err(error) if n + 1 == count_lines(&path)? => {
                    tracing::warn!(%error, line = n + 1, "ownership log: ignoring a torn last line");
                }
                Err(error) => bail!("{}: line {}: {error}", path.display(), n + 1),
            }
        }
    }
    let logged_owns = records.iter().find_map(|r| match r {
        Record::Owns(owns) => Some(*owns),
        _ => None,
    });
    let owns = match logged_owns {
        Some(logged) => {
            if logged != owns {
                tracing::warn!(
                    ?logged,
                    configured = ?owns,
                    "ownership.owns differs from what this data directory started with: keeping {logged:?}"
                );
            }
            logged
        }
        None => owns,
    };
    if owns == Owns::None {
        engine.own_none();
    }
    let mut pending: Vec<Export> = Vec::new();
    for record in records {
        match record {
            Record::Owns(_) => {}
            Record::Upstream(uri) => engine.ownership.set_upstream(&uri),
            Record::Import(batch) => {
                engine.apply_import(0, &batch, false);
            }
            Record::Export(export) => {
                engine.recover_export(&export.batch, &export.to);
                pending.push(export);
            }
            Record::Moved(key) => pending.retain(|e| BatchKey::of(&e.batch) != key),
            Record::Abandoned(key) => {
                if let Some(i) = pending.iter().position(|e| BatchKey::of(&e.batch) == key) {
                    let export = pending.remove(i);
                    engine.recover_abandoned(&export.batch);
                }
            }
        }
    }
    let mut fresh = Vec::new();
    if logged_owns.is_none() && owns == Owns::None {
        fresh.push(Record::Owns(owns));
    }
    if let Some(uri) = upstream {
        if engine.ownership.upstream().as_deref().map(String::as_str) != Some(uri) {
            fresh.push(Record::Upstream(uri.to_owned()));
        }
    }
    if !fresh.is_empty() {
        let log = open_log(&path)?;
        for record in &fresh {
            log.append(record)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        for record in fresh {
            if let Record::Upstream(uri) = record {
                engine.ownership.set_upstream(&uri);
            }
        }
    }
    Ok((Some(path), Pending { exports: pending }))
}

fn count_lines(path: &Path) -> anyhow::Result<usize> {
    let text = std::fs::read_to_string(path)?;
    Ok(text.lines().count())
}

fn open_log(path: &Path) -> anyhow::Result<Log> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    Ok(Log {
        file: Mutex::new(file),
    })
}

/// Progress of a migration, for `GET /migrate`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Progress {
    /// `idle`, `running`, `lingering` (everything moved, waiting for moved sessions' next
    /// requests), `done` or `failed`.
    pub state: String,
    /// The new node's admin address.
    pub to_admin: String,
    /// Its Diameter URI (the Redirect-Host).
    pub to_uri: String,
    /// Batches acknowledged.
    pub batches: u64,
    /// Accounts moved.
    pub accounts: u64,
    /// Sessions moved.
    pub sessions: u64,
    /// Money moved (free and held).
    pub money: i64,
    /// Batches sent more than once.
    pub resends: u64,
    /// The longest batch, freeze to acknowledgement, in milliseconds.
    pub max_batch_ms: f64,
    /// Seconds from `POST /migrate` to owning nothing.
    pub moved_in_s: Option<f64>,
    /// Seconds from `POST /migrate` to the end of the linger.
    pub took_s: Option<f64>,
    /// Why it failed.
    pub error: Option<String>,
}

/// What the admin routes and the migration task share.
pub struct Migration {
    engine: Arc<Mutex<Engine>>,
    epoch: Instant,
    log: Option<Arc<Log>>,
    /// Our Diameter URI, named in the batches.
    self_uri: Mutex<String>,
    progress: Mutex<Progress>,
    imports: tokio::sync::Mutex<()>,
    stop: tokio::sync::watch::Sender<bool>,
    default_linger: Duration,
}

impl std::fmt::Debug for Migration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Migration").finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Migration {
    /// The shared state; `log` from [`recover`]; `epoch` is the engine's clock.
    pub fn new(
        engine: Arc<Mutex<Engine>>,
        epoch: Instant,
        log: Option<PathBuf>,
        self_uri: String,
    ) -> anyhow::Result<Arc<Self>> {
        let log = log.map(|path| open_log(&path).map(Arc::new)).transpose()?;
        let validity = lock(&engine).config().validity_time;
        Ok(Arc::new(Self {
            engine,
            epoch,
            log,
            self_uri: Mutex::new(self_uri),
            progress: Mutex::new(Progress {
                state: "idle".into(),
                ..Progress::default()
            }),
            imports: tokio::sync::Mutex::new(()),
            stop: tokio::sync::watch::channel(false).0,
            default_linger: Duration::from_secs(2 * u64::from(validity)),
        }))
    }

    fn now(&self) -> u32 {
        self.epoch.elapsed().as_secs() as u32
    }

    /// Resolves when a finished migration wants the process to stop.
    pub async fn stopped(&self) {
        let mut stop = self.stop.subscribe();
        let _ = stop.wait_for(|stop| *stop).await;
    }

    async fn append(&self, record: Record) -> anyhow::Result<()> {
        let Some(log) = self.log.clone() else {
            return Ok(());
        };
        // A few records per batch: written and fsynced on the blocking pool.
        tokio::task::spawn_blocking(move || log.append(&record))
            .await
            .context("the ownership log's task")?
            .context("writing the ownership log")
    }

    /// Sends the unconfirmed exports found at start-up again, in the background.
    pub fn resend(self: &Arc<Self>, pending: Pending) {
        for export in pending.exports {
            let me = self.clone();
            tokio::spawn(async move {
                let key = BatchKey::of(&export.batch);
                let body = export.batch.encode();
                match offer(&export.to_admin, &body, Duration::from_secs(3600)).await {
                    Ok(_) => {
                        tracing::info!(?key, "an export logged before the restart was taken");
                        if let Err(error) = me.append(Record::Moved(key)).await {
                            tracing::error!(%error, "ownership log");
                        }
                    }
                    Err(error) => {
                        tracing::error!(%error, ?key, "an export logged before the restart was never taken")
                    }
                }
            });
        }
    }
}

/// The routes, merged into the admin port's.
pub fn router(migration: Arc<Migration>) -> Router {
    Router::new()
        .route("/migrate", post(start).get(progress))
        .route("/import", post(import))
        .with_state(migration)
}

fn json_error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// The body of `POST /migrate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MigrateRequest {
    /// The new node's admin address (`127.0.0.1:9869` or `http://127.0.0.1:9869`).
    to_admin: String,
    /// Its Diameter URI; default `aaa://<its diameter_addr>;transport=tcp`.
    #[serde(default)]
    to_uri: Option<String>,
    /// Accounts per batch.
    #[serde(default)]
    batch: Option<usize>,
    /// Keep running once everything moved.
    #[serde(default)]
    stay: bool,
    /// The longest wait for moved sessions' next requests, in seconds.
    #[serde(default)]
    linger_seconds: Option<u64>,
    /// Our own Diameter URI as the gateway knows it (default: our listening address).
    #[serde(default)]
    from_uri: Option<String>,
}

async fn progress(State(migration): State<Arc<Migration>>) -> Json<serde_json::Value> {
    let progress = lock(&migration.progress).clone();
    let numbers = lock(&migration.engine).ownership.numbers();
    let mut value = serde_json::to_value(progress).unwrap_or_default();
    value["ownership"] = serde_json::to_value(numbers).unwrap_or_default();
    Json(value)
}

async fn start(
    State(migration): State<Arc<Migration>>,
    body: Result<Json<MigrateRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let request = match body {
        Ok(Json(request)) => request,
        Err(rejection) => return json_error(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    {
        let progress = lock(&migration.progress);
        if matches!(progress.state.as_str(), "running" | "lingering") {
            return json_error(
                StatusCode::CONFLICT,
                format!("a migration to {} is running", progress.to_admin),
            );
        }
    }
    let to_admin = request
        .to_admin
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let batch = request.batch.unwrap_or(DEFAULT_BATCH).max(1);
    if let Some(from) = request.from_uri {
        *lock(&migration.self_uri) = from;
    }
    let to_uri = match request.to_uri {
        Some(uri) => uri,
        None => match status_uri(&to_admin).await {
            Ok(uri) => uri,
            Err(error) => {
                return json_error(
                    StatusCode::BAD_GATEWAY,
                    format!("asking {to_admin} for its Diameter address: {error:#}"),
                )
            }
        },
    };
    // Introduce ourselves: from now on the new node redirects accounts it does not own yet
    // to us rather than refusing them.
    let hello = Batch {
        from: lock(&migration.self_uri).clone(),
        seq: 0,
        accounts: Vec::new(),
        sessions: Vec::new(),
    };
    if let Err(error) = offer(&to_admin, &hello.encode(), Duration::from_secs(5)).await {
        return json_error(
            StatusCode::BAD_GATEWAY,
            format!("the new node at {to_admin} did not take our introduction: {error:#}"),
        );
    }
    *lock(&migration.progress) = Progress {
        state: "running".into(),
        to_admin: to_admin.clone(),
        to_uri: to_uri.clone(),
        ..Progress::default()
    };
    let linger = request
        .linger_seconds
        .map_or(migration.default_linger, Duration::from_secs);
    let task = migration.clone();
    let stay = request.stay;
    tokio::spawn(async move { task.run(to_admin, to_uri, batch, linger, stay).await });
    let progress = lock(&migration.progress).clone();
    (StatusCode::ACCEPTED, Json(progress)).into_response()
}

impl Migration {
    async fn run(
        self: Arc<Self>,
        to_admin: String,
        to_uri: String,
        size: usize,
        linger: Duration,
        stay: bool,
    ) {
        let started = Instant::now();
        let from = lock(&self.self_uri).clone();
        let mut cursor = 0u32;
        let mut seq = 0u64;
        let failure = loop {
            seq += 1;
            let batch = {
                let mut engine = lock(&self.engine);
                let now = self.now();
                engine.freeze_batch(now, size, &from, seq, &mut cursor)
            };
            let Some(batch) = batch else { break None };
            let frozen = Instant::now();
            let key = BatchKey::of(&batch);
            let export = Export {
                to: to_uri.clone(),
                to_admin: to_admin.clone(),
                batch,
            };
            if let Err(error) = self.append(Record::Export(export.clone())).await {
                lock(&self.engine).unfreeze(&export.batch);
                break Some(format!("{error:#}"));
            }
            let batch = export.batch;
            match offer(&to_admin, &batch.encode(), SEND_PATIENCE).await {
                Ok(tries) => {
                    lock(&self.engine).finish_export(&batch, &to_uri);
                    if let Err(error) = self.append(Record::Moved(key)).await {
                        // Recovery counts an unconfirmed export as moved: nothing is lost.
                        tracing::error!(%error, "ownership log");
                    }
                    let mut progress = lock(&self.progress);
                    progress.batches += 1;
                    progress.accounts += batch.accounts.len() as u64;
                    progress.sessions += batch.sessions.len() as u64;
                    progress.money += batch.money();
                    progress.resends += u64::from(tries.saturating_sub(1));
                    progress.max_batch_ms = progress
                        .max_batch_ms
                        .max(frozen.elapsed().as_secs_f64() * 1e3);
                }
                Err(error) => {
                    // The new node never acknowledged: ours again (the log says so first).
                    let logged = self.append(Record::Abandoned(key)).await;
                    if logged.is_ok() {
                        lock(&self.engine).unfreeze(&batch);
                    }
                    break Some(format!("batch {seq}: {error:#}"));
                }
            }
        };
        if let Some(error) = failure {
            tracing::error!(%error, "migration failed");
            let mut progress = lock(&self.progress);
            progress.state = "failed".into();
            progress.error = Some(error);
            return;
        }
        let moved_in = started.elapsed();
        {
            let mut progress = lock(&self.progress);
            progress.state = "lingering".into();
            progress.moved_in_s = Some(moved_in.as_secs_f64());
            tracing::info!(
                accounts = progress.accounts,
                sessions = progress.sessions,
                batches = progress.batches,
                seconds = moved_in.as_secs_f64(),
                "every account moved to {to_uri}; waiting for moved sessions to be redirected"
            );
        }
        let deadline = Instant::now() + linger;
        loop {
            let waiting = lock(&self.engine)
                .ownership
                .numbers()
                .sessions_waiting_redirect;
            if waiting == 0 {
                break;
            }
            if Instant::now() >= deadline {
                tracing::warn!(
                    waiting,
                    "moved sessions never came back to be redirected: giving up on them"
                );
                lock(&self.engine).ownership.forget_moved_sessions();
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        {
            let mut progress = lock(&self.progress);
            progress.state = "done".into();
            progress.took_s = Some(started.elapsed().as_secs_f64());
        }
        if !stay {
            tracing::info!("this node owns nothing any more: stopping");
            let _ = self.stop.send(true);
        }
    }
}

async fn import(State(migration): State<Arc<Migration>>, body: Bytes) -> Response {
    let batch = match Batch::decode(&body) {
        Ok(batch) => batch,
        Err(error) => return json_error(StatusCode::BAD_REQUEST, error),
    };
    // One import at a time: check, log, apply must not interleave with a copy of the batch.
    let _one = migration.imports.lock().await;
    if batch.accounts.is_empty() {
        let known = lock(&migration.engine).ownership.upstream();
        if known.as_deref() != Some(&batch.from) {
            if let Err(error) = migration.append(Record::Upstream(batch.from.clone())).await {
                return json_error(StatusCode::INTERNAL_SERVER_ERROR, format!("{error:#}"));
            }
            lock(&migration.engine).ownership.set_upstream(&batch.from);
        }
        return Json(
            json!({ "accounts": 0, "sessions": 0, "duplicates": 0, "upstream": batch.from }),
        )
        .into_response();
    }
    let fresh = {
        let engine = lock(&migration.engine);
        if let Err(conflict) = engine.check_import(&batch) {
            return json_error(StatusCode::CONFLICT, conflict.0);
        }
        engine.is_new_import(&batch)
    };
    if fresh {
        // On disk before it takes effect and before the acknowledgement.
        if let Err(error) = migration.append(Record::Import(batch.clone())).await {
            return json_error(StatusCode::INTERNAL_SERVER_ERROR, format!("{error:#}"));
        }
    }
    let now = migration.now();
    let done = lock(&migration.engine).apply_import(now, &batch, true);
    tracing::debug!(
        seq = batch.seq,
        accounts = done.accounts,
        sessions = done.sessions,
        duplicates = done.duplicates,
        "imported"
    );
    Json(done).into_response()
}

/// The Diameter URI of the node whose admin port is `admin`.
async fn status_uri(admin: &str) -> anyhow::Result<String> {
    let (status, body) = http(admin, "GET", "/status", &[]).await?;
    if status != 200 {
        bail!("GET /status: HTTP {status}");
    }
    let status: serde_json::Value = serde_json::from_slice(&body)?;
    let addr = status["diameter_addr"]
        .as_str()
        .context("no diameter_addr in /status")?;
    Ok(format!("aaa://{addr};transport=tcp"))
}

/// `POST /import` until it is acknowledged or `patience` runs out; returns the attempts.
async fn offer(admin: &str, body: &[u8], patience: Duration) -> anyhow::Result<u32> {
    let deadline = Instant::now() + patience;
    let mut pause = Duration::from_millis(20);
    let mut tries = 0;
    loop {
        tries += 1;
        let error = match http(admin, "POST", "/import", body).await {
            Ok((200, _)) => return Ok(tries),
            // A refusal is final: retrying the same batch cannot change it.
            Ok((409, body)) => bail!("refused: {}", String::from_utf8_lossy(&body)),
            Ok((status, body)) => {
                anyhow::anyhow!("HTTP {status}: {}", String::from_utf8_lossy(&body))
            }
            Err(error) => error,
        };
        if Instant::now() + pause > deadline {
            return Err(error.context(format!("POST http://{admin}/import, {tries} attempts")));
        }
        tracing::warn!(%error, tries, "POST /import failed; sending the batch again");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

/// A minimal HTTP/1.1 exchange (`Connection: close`, bounded by 10 s): (status, body).
async fn http(addr: &str, method: &str, path: &str, body: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        let split = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .context("no end of the HTTP head")?;
        let head = String::from_utf8_lossy(&response[..split]).into_owned();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("not an HTTP answer: {head:?}"))?;
        let body = response[split + 4..].to_vec();
        anyhow::Ok((status, body))
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| anyhow::anyhow!("{method} http://{addr}{path}: no answer within 10 s"))?
}

#[cfg(test)]
mod tests {
    use protocol::dictionary::{CcRequestType, SubscriptionIdType};
    use protocol::messages::{Ccr, MultipleServicesCreditControl, SubscriptionId};
    use protocol::result_code::ResultCode;
    use smallvec::smallvec;

    use super::*;
    use crate::charging::EngineConfig;
    use crate::population::{BalanceDistribution, Population, PopulationSpec};
    use crate::tariff::Tariff;

    fn engine() -> Engine {
        let spec = PopulationSpec {
            subscribers: 4,
            balance: BalanceDistribution::Constant { value: 1000 },
            ..Default::default()
        };
        Engine::new(
            Population::Generated(spec),
            Tariff::default(),
            EngineConfig::default(),
        )
    }

    fn initial(session: &str) -> Ccr<'_> {
        Ccr {
            session_id: session,
            origin_host: "gw.example.net",
            origin_realm: "example.net",
            destination_realm: "example.net",
            auth_application_id: 4,
            service_context_id: "32260@3gpp.org",
            cc_request_type: CcRequestType::INITIAL_REQUEST,
            cc_request_number: 0,
            subscription_ids: smallvec![SubscriptionId {
                subscription_id_type: SubscriptionIdType::END_USER_E164,
                subscription_id_data: "491700000002",
            }],
            multiple_services_credit_control: smallvec![MultipleServicesCreditControl {
                rating_group: Some(1),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    const OLD: &str = "aaa://127.0.0.1:3868;transport=tcp";

    /// A new node told its upstream at start-up redirects a new session of an account it
    /// does not own yet to it from its first request: before the old node's introduction it
    /// used to answer 3004, which a gateway that had just set the old node's weight to 0
    /// could only pass on to its client as a refused START.
    #[test]
    fn a_new_node_given_its_upstream_redirects_before_any_introduction() {
        let mut new = engine();
        recover(&mut new, None, Owns::None, Some(OLD)).expect("recover");
        let d = new.credit_control(0, &initial("gw.example.net;1;1"));
        assert_eq!(d.result, ResultCode::REDIRECT_INDICATION, "{d:?}");
        assert_eq!(d.redirect.as_deref().map(String::as_str), Some(OLD));

        // Without it (and before an introduction) the owner is unknown: 3004.
        let mut alone = engine();
        recover(&mut alone, None, Owns::None, None).expect("recover");
        let d = alone.credit_control(0, &initial("gw.example.net;1;2"));
        assert_eq!(d.result, ResultCode::TOO_BUSY, "{d:?}");
    }

    /// The upstream given at start-up is in the ownership log: a restart without the flag
    /// still redirects there.
    #[test]
    fn the_upstream_given_at_start_up_survives_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut new = engine();
        recover(&mut new, Some(dir.path()), Owns::None, Some(OLD)).expect("recover");
        let log = std::fs::read_to_string(dir.path().join(OWNERSHIP_LOG)).expect("log");
        assert_eq!(
            log,
            format!("{{\"owns\":\"none\"}}\n{{\"upstream\":\"{OLD}\"}}\n")
        );
        // Started again with the same flag: nothing new to log.
        let mut again = engine();
        recover(&mut again, Some(dir.path()), Owns::None, Some(OLD)).expect("recover");
        assert_eq!(
            std::fs::read_to_string(dir.path().join(OWNERSHIP_LOG)).expect("log"),
            log
        );
        let mut restarted = engine();
        recover(&mut restarted, Some(dir.path()), Owns::All, None).expect("recover");
        let d = restarted.credit_control(0, &initial("gw.example.net;1;3"));
        assert_eq!(d.result, ResultCode::REDIRECT_INDICATION, "{d:?}");
        assert_eq!(d.redirect.as_deref().map(String::as_str), Some(OLD));
    }
}
