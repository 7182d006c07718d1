//! The admin HTTP port (axum; 127.0.0.1 by default): JSON status, Prometheus metrics,
//! accounts and the books check.
//!
//! | route | answer |
//! |---|---|
//! | `GET /status` | version, uptime, connections, sessions, money totals, engine counters |
//! | `GET /metrics` | Prometheus text format 0.0.4 |
//! | `GET /accounts/{id}` | one account: balance, reserved, debited and its live Session-Ids |
//! | `GET /accounts?ids=1,2,3` or `?from=N&count=M` | many accounts (at most [`MAX_ACCOUNTS`]) |
//! | `GET /books` | [`Engine::check_books`]: `{"ok": bool, "problems": [...], ...}` |
//!
//! Errors are JSON too: `{"error": "..."}` with 400, 404 or 405. The engine lock is held only
//! while numbers are copied out, never across an await. Everything that walks the ledger or
//! the session table (the money totals of `/status` and `/metrics`, account lists, `/books`)
//! runs on the blocking pool, so a scan of a million accounts never stalls the runtime's
//! workers; only `/accounts/{id}` locks on the worker (one account, its own sessions).

use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use axum::extract::{Path, Query, State};
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::charging::{Engine, EngineStats};
use crate::ledger::Account;
use crate::metrics::Metrics;

/// The most accounts one `/accounts` request may ask for.
pub const MAX_ACCOUNTS: usize = 10_000;

/// How many accounts `/accounts?from=N` returns without `count`.
const DEFAULT_COUNT: usize = 100;

/// The most problems `/books` lists (`problems_total` counts them all).
const MAX_PROBLEMS: usize = 1_000;

/// The content type of `/metrics`.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Everything the admin port reads.
#[derive(Clone)]
pub struct AdminState {
    /// The charging engine.
    pub engine: Arc<Mutex<Engine>>,
    /// Request metrics.
    pub metrics: Arc<Metrics>,
    /// When the process started (for the uptime).
    pub started: Instant,
    /// Open Diameter connections.
    pub connections: Arc<AtomicUsize>,
    /// The Origin-State-Id the PDF advertises.
    pub origin_state_id: u32,
    /// The binary's version (`env!("CARGO_PKG_VERSION")`).
    pub version: &'static str,
    /// The state-schema version (journal and snapshot format).
    pub state_schema: u32,
    /// The Diameter listening address.
    pub diameter_addr: SocketAddr,
    /// Appends extra Prometheus families (journal statistics and the like) to `/metrics`.
    pub extra: Arc<dyn Fn(&mut String) + Send + Sync>,
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminState")
            .field("version", &self.version)
            .field("state_schema", &self.state_schema)
            .field("origin_state_id", &self.origin_state_id)
            .field("diameter_addr", &self.diameter_addr)
            .finish_non_exhaustive()
    }
}

/// Serves the admin port on `listener` until `shutdown` completes (then lets requests in
/// flight finish).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AdminState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// The admin routes, for [`serve`] or for driving in tests.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/accounts", get(accounts))
        .route("/accounts/{id}", get(account))
        .route("/books", get(books))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// Locks the engine. A panic elsewhere while holding the lock does not take the admin port
/// down with it: the numbers are still worth reading (and `/books` says if they are off).
fn lock(engine: &Mutex<Engine>) -> MutexGuard<'_, Engine> {
    engine.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An error answer: a status and `{"error": "..."}`.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Body {
            error: String,
        }
        (
            self.status,
            Json(Body {
                error: self.message,
            }),
        )
            .into_response()
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError {
        status,
        message: message.into(),
    }
}

const ROUTES: &str = "GET /status, /metrics, /accounts/{id}, /accounts?ids=1,2,3, \
                      /accounts?from=N&count=M, /books";

async fn not_found(method: Method, uri: Uri) -> ApiError {
    error(
        StatusCode::NOT_FOUND,
        format!("no route for {method} {}; routes: {ROUTES}", uri.path()),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    let mut response = error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} not allowed on {}; use GET", uri.path()),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static("GET,HEAD"));
    response
}

/// Runs `f` on the engine on the blocking pool (for scans that take a while).
async fn with_engine<T: Send + 'static>(
    engine: &Arc<Mutex<Engine>>,
    f: impl FnOnce(&Engine) -> T + Send + 'static,
) -> Result<T, ApiError> {
    let engine = engine.clone();
    tokio::task::spawn_blocking(move || f(&lock(&engine)))
        .await
        .map_err(|e| {
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("engine task: {e}"),
            )
        })
}

/// Money totals over all accounts.
#[derive(Clone, Copy, Debug, Serialize)]
struct Totals {
    balance: i64,
    reserved: i64,
    debited: i64,
}

/// The numbers `/status` and `/metrics` copy out of the engine under its lock.
#[derive(Clone, Copy, Debug)]
struct EngineNumbers {
    sessions: usize,
    accounts: usize,
    subscribers: u32,
    totals: Totals,
    stats: EngineStats,
    session_table_heap_bytes: usize,
}

impl EngineNumbers {
    /// Copies the numbers out, on the blocking pool: [`crate::ledger::Ledger::totals`]
    /// walks every account.
    async fn of(state: &AdminState) -> Result<Self, ApiError> {
        with_engine(&state.engine, Self::copy).await
    }

    fn copy(engine: &Engine) -> Self {
        let (balance, reserved, debited) = engine.ledger.totals();
        Self {
            sessions: engine.sessions.len(),
            accounts: engine.ledger.len(),
            subscribers: engine.population.subscribers(),
            totals: Totals {
                balance,
                reserved,
                debited,
            },
            stats: engine.stats,
            session_table_heap_bytes: engine.sessions.heap_bytes(),
        }
    }
}

/// The body of `/status`.
#[derive(Debug, Serialize)]
struct Status {
    /// The process serving (it changes with a hot upgrade; the addresses do not).
    pid: u32,
    version: &'static str,
    state_schema: u32,
    uptime_seconds: f64,
    origin_state_id: u32,
    diameter_addr: String,
    connections: usize,
    sessions: usize,
    accounts: usize,
    subscribers: u32,
    balance: i64,
    reserved: i64,
    debited: i64,
    stats: EngineStats,
    session_table_heap_bytes: usize,
}

async fn status(State(state): State<AdminState>) -> Result<Json<Status>, ApiError> {
    let numbers = EngineNumbers::of(&state).await?;
    Ok(Json(Status {
        pid: std::process::id(),
        version: state.version,
        state_schema: state.state_schema,
        uptime_seconds: uptime(&state),
        origin_state_id: state.origin_state_id,
        diameter_addr: state.diameter_addr.to_string(),
        connections: state.connections.load(Ordering::Relaxed),
        sessions: numbers.sessions,
        accounts: numbers.accounts,
        subscribers: numbers.subscribers,
        balance: numbers.totals.balance,
        reserved: numbers.totals.reserved,
        debited: numbers.totals.debited,
        stats: numbers.stats,
        session_table_heap_bytes: numbers.session_table_heap_bytes,
    }))
}

/// Seconds since the start, to the millisecond.
fn uptime(state: &AdminState) -> f64 {
    (state.started.elapsed().as_millis() as f64) / 1000.0
}

/// Escapes a Prometheus label value.
fn label_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Writes one single-sample family.
fn family(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

/// Help for the engine's counters, by field; a field added later still gets a line.
fn stat_help(field: &str) -> &'static str {
    match field {
        "sessions_started" => "Credit-control sessions opened.",
        "sessions_terminated" => "Sessions ended by CCR-TERMINATION.",
        "sessions_exhausted" => "Sessions ended because the money ran out (4012).",
        "sessions_expired" => "Sessions expired after silence.",
        "retransmissions" => "Retransmissions answered from a session's memory.",
        "out_of_order" => "Requests refused for an out-of-order CC-Request-Number.",
        "aborts" => "ASRs decided because a shared account ran dry.",
        _ => "An engine counter.",
    }
}

async fn metrics(State(state): State<AdminState>) -> Result<Response, ApiError> {
    let numbers = EngineNumbers::of(&state).await?;
    let mut out = String::with_capacity(8 * 1024);
    state.metrics.render_prometheus(&mut out);
    let _ = writeln!(
        out,
        "# HELP pdf_info The PDF's version, state schema and Origin-State-Id.\n\
         # TYPE pdf_info gauge\n\
         pdf_info{{version=\"{}\",state_schema=\"{}\",origin_state_id=\"{}\"}} 1",
        label_value(state.version),
        state.state_schema,
        state.origin_state_id
    );
    let gauges: [(&str, &str, String); 9] = [
        (
            "pdf_sessions",
            "Live credit-control sessions.",
            numbers.sessions.to_string(),
        ),
        ("pdf_accounts", "Accounts.", numbers.accounts.to_string()),
        (
            "pdf_subscribers",
            "Subscribers.",
            numbers.subscribers.to_string(),
        ),
        (
            "pdf_reserved_money",
            "Money held by live sessions, in minor units.",
            numbers.totals.reserved.to_string(),
        ),
        (
            "pdf_debited_money",
            "Money charged, in minor units.",
            numbers.totals.debited.to_string(),
        ),
        (
            "pdf_balance_money",
            "Free money on all accounts, in minor units.",
            numbers.totals.balance.to_string(),
        ),
        (
            "pdf_connections",
            "Open Diameter connections.",
            state.connections.load(Ordering::Relaxed).to_string(),
        ),
        (
            "pdf_session_table_heap_bytes",
            "Heap bytes held by the session table.",
            numbers.session_table_heap_bytes.to_string(),
        ),
        (
            "pdf_uptime_seconds",
            "Seconds since the PDF started.",
            uptime(&state).to_string(),
        ),
    ];
    for (name, help, value) in gauges {
        family(&mut out, name, "gauge", help, value);
    }
    if let Ok(serde_json::Value::Object(stats)) = serde_json::to_value(numbers.stats) {
        for (field, value) in stats {
            if let Some(value) = value.as_u64() {
                let name = format!("pdf_{field}_total");
                family(&mut out, &name, "counter", stat_help(&field), value);
            }
        }
    }
    (state.extra)(&mut out);
    Ok(([(header::CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE)], out).into_response())
}

/// One account, as `/accounts` shows it.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccountView {
    /// The account id.
    pub id: u32,
    /// Opening balance.
    pub initial: i64,
    /// Free money.
    pub balance: i64,
    /// Money held by live sessions.
    pub reserved: i64,
    /// Money charged.
    pub debited: i64,
    /// The Session-Ids of its live sessions.
    pub sessions: Vec<String>,
    /// Where it is charged (`crate::ownership`), when not here: `elsewhere` (never owned
    /// here), `frozen` (moving) or `moved` (`debited` is then what this node charged before
    /// the move). Absent: here. The migration fields below are absent when zero, so a node
    /// that never migrated answers as it always did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// What earlier owners charged, carried over when it was migrated here: its total
    /// charge is `debited + debited_before` on its owner.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub debited_before: i64,
    /// Its ownership epoch (one more at each move).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub epoch: u64,
    /// Where it moved to (a Diameter URI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved_to: Option<String>,
}

fn is_zero<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

impl AccountView {
    fn of(engine: &Engine, id: u32, account: &Account) -> Self {
        Self {
            id,
            initial: account.initial,
            balance: account.balance,
            reserved: account.reserved,
            debited: account.debited,
            sessions: if account.sessions == 0 {
                Vec::new()
            } else {
                engine.account_sessions(id)
            },
            owner: match engine.ownership.owner(id) {
                crate::ownership::Owner::Here => None,
                owner => serde_json::to_value(owner)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned)),
            },
            debited_before: engine.ownership.debited_before(id),
            epoch: engine.ownership.epoch(id),
            moved_to: engine.ownership.moved_to(id).map(|uri| uri.to_string()),
        }
    }
}

async fn account(
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Json<AccountView>, ApiError> {
    let Ok(wide) = id.parse::<u64>() else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("account id {id:?} is not a number"),
        ));
    };
    let view = u32::try_from(wide).ok().and_then(|id| {
        let engine = lock(&state.engine);
        engine
            .ledger
            .get(id)
            .map(|account| AccountView::of(&engine, id, account))
    });
    view.map(Json)
        .ok_or_else(|| error(StatusCode::NOT_FOUND, format!("no account {wide}")))
}

/// The query of `/accounts`.
#[derive(Debug, Deserialize)]
struct AccountsQuery {
    ids: Option<String>,
    from: Option<String>,
    count: Option<String>,
}

/// The body of `/accounts`.
#[derive(Debug, Serialize, Deserialize)]
pub struct AccountList {
    /// Accounts in the ledger.
    pub total: usize,
    /// The accounts found, in the order asked.
    pub accounts: Vec<AccountView>,
    /// With `ids=`: the ids that name no account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing: Option<Vec<u64>>,
    /// With `from=`: where the next page starts, if there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<usize>,
}

fn parse_number(name: &str, text: &str) -> Result<u64, ApiError> {
    text.trim().parse().map_err(|_| {
        error(
            StatusCode::BAD_REQUEST,
            format!("{name} {text:?} is not a number"),
        )
    })
}

fn too_many(asked: usize) -> ApiError {
    error(
        StatusCode::BAD_REQUEST,
        format!(
            "{asked} accounts asked; at most {MAX_ACCOUNTS} per request (page with \
             from=N&count={MAX_ACCOUNTS})"
        ),
    )
}

async fn accounts(
    State(state): State<AdminState>,
    query: Result<Query<AccountsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AccountList>, ApiError> {
    let Query(query) = query.map_err(|e| error(StatusCode::BAD_REQUEST, e.body_text()))?;
    let list = match (query.ids, query.from, query.count) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => Err(error(
            StatusCode::BAD_REQUEST,
            "give either ids=1,2,3 or from=N&count=M, not both",
        )),
        (Some(ids), None, None) => by_ids(&state, &ids).await,
        (None, from, count) => by_range(&state, from.as_deref(), count.as_deref()).await,
    }?;
    Ok(Json(list))
}

async fn by_ids(state: &AdminState, ids: &str) -> Result<AccountList, ApiError> {
    let ids: Vec<&str> = ids.split(',').filter(|s| !s.trim().is_empty()).collect();
    if ids.is_empty() {
        return Err(error(StatusCode::BAD_REQUEST, "ids is empty"));
    }
    if ids.len() > MAX_ACCOUNTS {
        return Err(too_many(ids.len()));
    }
    let ids = ids
        .into_iter()
        .map(|id| parse_number("account id", id))
        .collect::<Result<Vec<u64>, _>>()?;
    with_engine(&state.engine, move |engine| {
        let mut accounts = Vec::with_capacity(ids.len());
        let mut missing = Vec::new();
        for wide in ids {
            let found = u32::try_from(wide)
                .ok()
                .and_then(|id| Some((id, engine.ledger.get(id)?)));
            match found {
                Some((id, account)) => accounts.push(AccountView::of(engine, id, account)),
                None => missing.push(wide),
            }
        }
        AccountList {
            total: engine.ledger.len(),
            accounts,
            missing: Some(missing),
            next: None,
        }
    })
    .await
}

async fn by_range(
    state: &AdminState,
    from: Option<&str>,
    count: Option<&str>,
) -> Result<AccountList, ApiError> {
    let from = from
        .map(|f| parse_number("from", f))
        .transpose()?
        .unwrap_or(0);
    let count = count
        .map(|c| parse_number("count", c))
        .transpose()?
        .map_or(DEFAULT_COUNT, |c| usize::try_from(c).unwrap_or(usize::MAX));
    if count > MAX_ACCOUNTS {
        return Err(too_many(count));
    }
    let from = usize::try_from(from).unwrap_or(usize::MAX);
    with_engine(&state.engine, move |engine| {
        let total = engine.ledger.len();
        let end = from.saturating_add(count).min(total);
        let accounts = (from.min(end)..end)
            .filter_map(|id| {
                let id = u32::try_from(id).ok()?;
                Some(AccountView::of(engine, id, engine.ledger.get(id)?))
            })
            .collect();
        AccountList {
            total,
            accounts,
            missing: None,
            next: (end < total).then_some(end),
        }
    })
    .await
}

/// The body of `/books`.
#[derive(Debug, Serialize)]
struct Books {
    ok: bool,
    problems: Vec<String>,
    problems_total: usize,
    accounts: usize,
    sessions: usize,
    totals: BookTotals,
}

/// Totals for `/books`: `initial == balance + reserved + debited` when the books balance.
#[derive(Debug, Serialize)]
struct BookTotals {
    initial: i64,
    balance: i64,
    reserved: i64,
    debited: i64,
}

async fn books(State(state): State<AdminState>) -> Result<Json<Books>, ApiError> {
    with_engine(&state.engine, |engine| {
        let mut problems = engine.check_books();
        let (balance, reserved, debited) = engine.ledger.totals();
        let initial = engine.ledger.iter().map(|(_, a)| a.initial).sum();
        let problems_total = problems.len();
        problems.truncate(MAX_PROBLEMS);
        Books {
            ok: problems_total == 0,
            problems,
            problems_total,
            accounts: engine.ledger.len(),
            sessions: engine.sessions.len(),
            totals: BookTotals {
                initial,
                balance,
                reserved,
                debited,
            },
        }
    })
    .await
    .map(Json)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap, HashSet};
    use std::time::Duration;

    use protocol::dictionary::{CcRequestType, SubscriptionIdType};
    use protocol::header::CommandCode;
    use protocol::messages::{Ccr, MultipleServicesCreditControl, ServiceUnit, SubscriptionId};
    use protocol::result_code::ResultCode;
    use serde_json::Value;
    use smallvec::smallvec;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::oneshot;

    use super::*;
    use crate::charging::EngineConfig;
    use crate::population::{BalanceDistribution, Population, PopulationSpec};
    use crate::tariff::Tariff;

    /// 10 subscribers at 1000 each: 0..=3 share account 0, 4..=9 have accounts 1..=6.
    fn engine() -> Engine {
        let spec = PopulationSpec {
            subscribers: 10,
            shared_share: 0.4,
            family_size: 4,
            balance: BalanceDistribution::Constant { value: 1000 },
            ..Default::default()
        };
        Engine::new(
            Population::Generated(spec),
            Tariff::default(),
            EngineConfig::default(),
        )
    }

    fn ccr<'a>(
        session: &'a str,
        msisdn: &'a str,
        kind: CcRequestType,
        number: u32,
        used_seconds: Option<u32>,
    ) -> Ccr<'a> {
        Ccr {
            session_id: session,
            origin_host: "gw.example.net",
            origin_realm: "example.net",
            destination_realm: "example.net",
            auth_application_id: 4,
            service_context_id: "32260@3gpp.org",
            cc_request_type: kind,
            cc_request_number: number,
            subscription_ids: smallvec![SubscriptionId {
                subscription_id_type: SubscriptionIdType::END_USER_E164,
                subscription_id_data: msisdn,
            }],
            multiple_services_credit_control: smallvec![MultipleServicesCreditControl {
                used_service_units: used_seconds
                    .map(|s| smallvec![ServiceUnit {
                        cc_time: Some(s),
                        ..Default::default()
                    }])
                    .unwrap_or_default(),
                rating_group: Some(1),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    /// A running admin server; dropping it stops the server.
    struct Server {
        addr: SocketAddr,
        engine: Arc<Mutex<Engine>>,
        metrics: Arc<Metrics>,
        stop: Option<oneshot::Sender<()>>,
        task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    }

    impl Server {
        async fn start(engine: Engine) -> Self {
            let engine = Arc::new(Mutex::new(engine));
            let metrics = Arc::new(Metrics::default());
            let state = AdminState {
                engine: engine.clone(),
                metrics: metrics.clone(),
                started: Instant::now(),
                connections: Arc::new(AtomicUsize::new(3)),
                origin_state_id: 1_700_000_000,
                version: env!("CARGO_PKG_VERSION"),
                state_schema: 1,
                diameter_addr: "127.0.0.1:3868".parse().expect("address"),
                extra: Arc::new(|out: &mut String| {
                    out.push_str(
                        "# HELP pdf_journal_bytes Journal size.\n\
                         # TYPE pdf_journal_bytes gauge\n\
                         pdf_journal_bytes 4096\n",
                    );
                }),
            };
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("address");
            let (stop, stopped) = oneshot::channel::<()>();
            let task = tokio::spawn(serve(listener, state, async {
                let _ = stopped.await;
            }));
            Self {
                addr,
                engine,
                metrics,
                stop: Some(stop),
                task: Some(task),
            }
        }

        /// Sends one request; returns the status, the headers (lower-case names) and the body.
        async fn request(
            &self,
            method: &str,
            path: &str,
        ) -> (u16, HashMap<String, String>, String) {
            let mut stream = tokio::net::TcpStream::connect(self.addr)
                .await
                .expect("connect");
            let request =
                format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            stream.write_all(request.as_bytes()).await.expect("write");
            let mut raw = Vec::new();
            tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
                .await
                .expect("answer within 10 s")
                .expect("read");
            let raw = String::from_utf8(raw).expect("UTF-8 answer");
            let (head, body) = raw.split_once("\r\n\r\n").expect("a head and a body");
            let mut lines = head.split("\r\n");
            let status_line = lines.next().expect("status line");
            let status = status_line
                .strip_prefix("HTTP/1.1 ")
                .and_then(|s| s.get(..3))
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("status line {status_line:?}"));
            let headers: HashMap<String, String> = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                .collect();
            let body = if headers.get("transfer-encoding").map(String::as_str) == Some("chunked") {
                dechunk(body)
            } else {
                if let Some(length) = headers.get("content-length") {
                    assert_eq!(
                        length.parse::<usize>().ok(),
                        Some(body.len()),
                        "content-length"
                    );
                }
                body.to_owned()
            };
            (status, headers, body)
        }

        async fn json(&self, path: &str) -> (u16, Value) {
            let (status, headers, body) = self.request("GET", path).await;
            assert_eq!(
                headers.get("content-type").map(String::as_str),
                Some("application/json"),
                "{path}"
            );
            let json =
                serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
            (status, json)
        }

        async fn stop(mut self) {
            let _ = self.stop.take().expect("running").send(());
            let task = self.task.take().expect("running");
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("stops within 10 s")
                .expect("task")
                .expect("serve");
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            if let Some(task) = &self.task {
                task.abort();
            }
        }
    }

    fn dechunk(mut body: &str) -> String {
        let mut out = String::new();
        loop {
            let (size, rest) = body.split_once("\r\n").expect("chunk size");
            let size = usize::from_str_radix(size.trim(), 16).expect("hex chunk size");
            if size == 0 {
                return out;
            }
            out.push_str(&rest[..size]);
            body = &rest[size + 2..];
        }
    }

    /// Opens sessions: two on the shared account 0, one on account 4 (subscriber 7); the
    /// account-4 session is then updated with 30 s of use.
    fn drive(engine: &Mutex<Engine>, metrics: &Metrics) {
        let mut engine = lock(engine);
        let calls = [
            (
                "gw.example.net;1;1",
                "491700000000",
                CcRequestType::INITIAL_REQUEST,
                0,
                None,
            ),
            (
                "gw.example.net;1;2",
                "491700000001",
                CcRequestType::INITIAL_REQUEST,
                0,
                None,
            ),
            (
                "gw.example.net;1;3",
                "491700000007",
                CcRequestType::INITIAL_REQUEST,
                0,
                None,
            ),
            (
                "gw.example.net;1;3",
                "491700000007",
                CcRequestType::UPDATE_REQUEST,
                1,
                Some(30),
            ),
            (
                "gw.example.net;1;4",
                "491799999999",
                CcRequestType::INITIAL_REQUEST,
                0,
                None,
            ),
        ];
        for (session, msisdn, kind, number, used) in calls {
            let decision = engine.credit_control(0, &ccr(session, msisdn, kind, number, used));
            metrics.record_ccr(kind, decision.result, Duration::from_micros(300));
        }
        metrics.record_other(CommandCode::DEVICE_WATCHDOG, ResultCode::SUCCESS);
        metrics.record_asr(Err(()));
    }

    #[tokio::test]
    async fn admin_status() {
        let server = Server::start(engine()).await;
        drive(&server.engine, &server.metrics);
        let (status, json) = server.json("/status").await;
        assert_eq!(status, 200);
        assert_eq!(json["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(json["state_schema"], 1);
        assert_eq!(json["origin_state_id"], 1_700_000_000);
        assert_eq!(json["diameter_addr"], "127.0.0.1:3868");
        assert_eq!(json["connections"], 3);
        assert_eq!(json["sessions"], 3);
        assert_eq!(json["accounts"], 7);
        assert_eq!(json["subscribers"], 10);
        assert!(json["uptime_seconds"].as_f64().expect("uptime") >= 0.0);
        let money = |k: &str| json[k].as_i64().unwrap_or_else(|| panic!("{k} in {json}"));
        assert_eq!(
            money("balance") + money("reserved") + money("debited"),
            7000
        );
        assert_eq!(money("debited"), 60, "30 s at 2 per second");
        assert_eq!(json["stats"]["sessions_started"], 3);
        assert!(json["stats"]["retransmissions"].is_u64());
        assert!(json["session_table_heap_bytes"].as_u64().expect("heap") > 0);
        server.stop().await;
    }

    #[tokio::test]
    async fn admin_account() {
        let server = Server::start(engine()).await;
        drive(&server.engine, &server.metrics);
        let (status, json) = server.json("/accounts/0").await;
        assert_eq!(status, 200);
        assert_eq!(json["id"], 0);
        assert_eq!(json["initial"], 1000);
        let mut sessions: Vec<&str> = json["sessions"]
            .as_array()
            .expect("sessions")
            .iter()
            .map(|s| s.as_str().expect("a Session-Id"))
            .collect();
        sessions.sort_unstable();
        assert_eq!(sessions, ["gw.example.net;1;1", "gw.example.net;1;2"]);
        assert_eq!(
            json["balance"].as_i64().expect("balance")
                + json["reserved"].as_i64().expect("reserved"),
            1000
        );
        let (status, json) = server.json("/accounts/4").await;
        assert_eq!(status, 200);
        assert_eq!(json["debited"], 60);
        assert_eq!(json["sessions"], serde_json::json!(["gw.example.net;1;3"]));
        let (status, json) = server.json("/accounts/6").await;
        assert_eq!((status, &json["sessions"]), (200, &serde_json::json!([])));
        for missing in [
            "/accounts/7",
            "/accounts/4294967295",
            "/accounts/99999999999",
        ] {
            let (status, json) = server.json(missing).await;
            assert_eq!(status, 404, "{missing}");
            assert!(json["error"]
                .as_str()
                .expect("error")
                .contains("no account"));
        }
        for bad in ["/accounts/abc", "/accounts/-1", "/accounts/1.5"] {
            let (status, json) = server.json(bad).await;
            assert_eq!(status, 400, "{bad}");
            assert!(json["error"]
                .as_str()
                .expect("error")
                .contains("not a number"));
        }
        server.stop().await;
    }

    #[tokio::test]
    async fn admin_accounts_list() {
        let server = Server::start(engine()).await;
        drive(&server.engine, &server.metrics);
        let ids = |json: &Value| -> Vec<u64> {
            json["accounts"]
                .as_array()
                .expect("accounts")
                .iter()
                .map(|a| a["id"].as_u64().expect("id"))
                .collect()
        };
        let (status, json) = server.json("/accounts?ids=4,0,9,4").await;
        assert_eq!(status, 200);
        assert_eq!(ids(&json), [4, 0, 4]);
        assert_eq!(json["missing"], serde_json::json!([9]));
        assert_eq!(json["total"], 7);
        assert_eq!(json["accounts"][0]["debited"], 60);
        assert_eq!(
            json["accounts"][1]["sessions"].as_array().map(Vec::len),
            Some(2)
        );

        let (status, json) = server.json("/accounts?from=2&count=3").await;
        assert_eq!(status, 200);
        assert_eq!(ids(&json), [2, 3, 4]);
        assert_eq!(json["next"], 5);
        let (_, json) = server.json("/accounts?from=5&count=10").await;
        assert_eq!(ids(&json), [5, 6]);
        assert!(json.get("next").is_none(), "last page: {json}");
        let (_, json) = server.json("/accounts?from=100").await;
        assert_eq!(ids(&json), Vec::<u64>::new());
        let (_, json) = server.json("/accounts").await;
        assert_eq!(ids(&json), [0, 1, 2, 3, 4, 5, 6], "from 0, up to 100");
        let (status, _) = server.json("/accounts?from=0&count=10000").await;
        assert_eq!(status, 200, "the limit itself is allowed");

        let too_many = (0..=MAX_ACCOUNTS)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",");
        for (path, says) in [
            ("/accounts?from=0&count=10001".to_owned(), "at most 10000"),
            (format!("/accounts?ids={too_many}"), "at most 10000"),
            ("/accounts?ids=1,x".to_owned(), "not a number"),
            ("/accounts?ids=".to_owned(), "empty"),
            ("/accounts?from=-1".to_owned(), "not a number"),
            ("/accounts?ids=1&from=0".to_owned(), "not both"),
        ] {
            let (status, json) = server.json(&path).await;
            assert_eq!(status, 400, "{path}");
            let error = json["error"].as_str().expect("error");
            assert!(error.contains(says), "{path}: {error}");
        }
        server.stop().await;
    }

    #[tokio::test]
    async fn admin_books() {
        let server = Server::start(engine()).await;
        drive(&server.engine, &server.metrics);
        let (status, json) = server.json("/books").await;
        assert_eq!(status, 200);
        assert_eq!(json["ok"], true, "{json}");
        assert_eq!(json["problems"], serde_json::json!([]));
        assert_eq!(json["accounts"], 7);
        assert_eq!(json["sessions"], 3);
        let totals = &json["totals"];
        let money = |k: &str| {
            totals[k]
                .as_i64()
                .unwrap_or_else(|| panic!("{k} in {totals}"))
        };
        assert_eq!(money("initial"), 7000);
        assert_eq!(
            money("balance") + money("reserved") + money("debited"),
            7000
        );

        // Money held with no session to hold it: the books are off.
        lock(&server.engine).ledger.reserve(5, 10);
        let (status, json) = server.json("/books").await;
        assert_eq!(status, 200, "a failed check is still an answer");
        assert_eq!(json["ok"], false);
        assert_eq!(json["problems_total"], 1);
        let problem = json["problems"][0].as_str().expect("a problem");
        assert!(problem.contains("account 5"), "{problem}");
        server.stop().await;
    }

    #[tokio::test]
    async fn admin_unknown_routes_are_json_errors() {
        let server = Server::start(engine()).await;
        for path in ["/", "/nope", "/accounts/1/x", "/status/"] {
            let (status, json) = server.json(path).await;
            assert_eq!(status, 404, "{path}");
            assert!(
                json["error"].as_str().expect("error").contains("no route"),
                "{path}"
            );
        }
        let (status, headers, body) = server.request("POST", "/status").await;
        assert_eq!(status, 405);
        assert_eq!(headers.get("allow").map(String::as_str), Some("GET,HEAD"));
        let json: Value = serde_json::from_str(&body).expect("JSON");
        assert!(json["error"].as_str().expect("error").contains("use GET"));
        server.stop().await;
    }

    /// One parsed sample line.
    #[derive(Debug)]
    struct Sample {
        name: String,
        labels: BTreeMap<String, String>,
        value: f64,
    }

    fn is_name(name: &str, colons: bool) -> bool {
        let mut chars = name.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colons && c == ':'))
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colons && c == ':'))
    }

    fn parse_value(text: &str) -> Option<f64> {
        match text {
            "+Inf" => Some(f64::INFINITY),
            "-Inf" => Some(f64::NEG_INFINITY),
            "NaN" => Some(f64::NAN),
            _ => text.parse().ok(),
        }
    }

    /// Parses `name{a="b",c="d"} value [timestamp]`, strictly.
    fn parse_sample(line: &str) -> Result<Sample, String> {
        let end = line.find(['{', ' ']).ok_or("no value")?;
        let name = &line[..end];
        if !is_name(name, true) {
            return Err(format!("bad metric name {name:?}"));
        }
        let mut rest = &line[end..];
        let mut labels = BTreeMap::new();
        if let Some(inner) = rest.strip_prefix('{') {
            let mut chars = inner.char_indices().peekable();
            loop {
                let Some(&(start, c)) = chars.peek() else {
                    return Err("unterminated labels".into());
                };
                if c == '}' {
                    rest = &inner[start + 1..];
                    break;
                }
                let eq = inner[start..].find('=').ok_or("label without =")? + start;
                let label = &inner[start..eq];
                if !is_name(label, false) {
                    return Err(format!("bad label name {label:?}"));
                }
                if !inner[eq + 1..].starts_with('"') {
                    return Err(format!("label {label} value not quoted"));
                }
                while chars.peek().is_some_and(|&(i, _)| i <= eq + 1) {
                    chars.next();
                }
                let mut value = String::new();
                loop {
                    match chars.next() {
                        Some((_, '\\')) => match chars.next() {
                            Some((_, '\\')) => value.push('\\'),
                            Some((_, '"')) => value.push('"'),
                            Some((_, 'n')) => value.push('\n'),
                            other => return Err(format!("bad escape {other:?}")),
                        },
                        Some((_, '"')) => break,
                        Some((_, '\n')) | None => return Err("unterminated label value".into()),
                        Some((_, c)) => value.push(c),
                    }
                }
                if labels.insert(label.to_owned(), value).is_some() {
                    return Err(format!("label {label} twice"));
                }
                if chars.peek().is_some_and(|&(_, c)| c == ',') {
                    chars.next();
                }
            }
        }
        let mut fields = rest
            .strip_prefix(' ')
            .ok_or("no space before the value")?
            .split(' ');
        let value = fields.next().ok_or("no value")?;
        let value = parse_value(value).ok_or_else(|| format!("value {value:?} is not a number"))?;
        if let Some(timestamp) = fields.next() {
            timestamp
                .parse::<i64>()
                .map_err(|_| format!("bad timestamp {timestamp:?}"))?;
        }
        if fields.next().is_some() {
            return Err("trailing fields".into());
        }
        Ok(Sample {
            name: name.to_owned(),
            labels,
            value,
        })
    }

    /// Checks the text exposition format 0.0.4 strictly: one HELP and one TYPE per family,
    /// both before its samples; each family's samples together; no series twice; values
    /// numbers; histograms with `le` buckets in increasing order, cumulative, ending with
    /// `+Inf` equal to `_count`, and a `_sum`. Returns the samples by series text.
    fn check_exposition(text: &str) -> Vec<Sample> {
        assert!(text.ends_with('\n'), "the text ends with a newline");
        let mut types: HashMap<String, String> = HashMap::new();
        let mut helps: HashSet<String> = HashSet::new();
        let mut done: HashSet<String> = HashSet::new();
        let mut current: Option<String> = None;
        let mut series: HashSet<String> = HashSet::new();
        let mut samples = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let at = format!("line {}: {line:?}", number + 1);
            assert!(!line.is_empty(), "{at}: empty line");
            if let Some(comment) = line.strip_prefix('#') {
                let words: Vec<&str> = comment.trim_start().splitn(3, ' ').collect();
                if let ["HELP" | "TYPE", name, rest] = words[..] {
                    assert!(is_name(name, true), "{at}: bad name");
                    assert!(
                        !done.contains(name) && current.as_deref() != Some(name),
                        "{at}: metadata after the family's samples"
                    );
                    if words[0] == "HELP" {
                        assert!(helps.insert(name.to_owned()), "{at}: second HELP");
                    } else {
                        assert!(
                            ["counter", "gauge", "histogram", "summary", "untyped"].contains(&rest),
                            "{at}: unknown type"
                        );
                        assert!(
                            types.insert(name.to_owned(), rest.to_owned()).is_none(),
                            "{at}: second TYPE"
                        );
                    }
                }
                continue;
            }
            let sample = parse_sample(line).unwrap_or_else(|e| panic!("{at}: {e}"));
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| {
                    let base = sample.name.strip_suffix(suffix)?;
                    (types.get(base).map(String::as_str) == Some("histogram")).then_some(base)
                })
                .unwrap_or(&sample.name)
                .to_owned();
            let kind = types
                .get(&family)
                .unwrap_or_else(|| panic!("{at}: no TYPE before the sample"));
            assert!(helps.contains(&family), "{at}: no HELP before the sample");
            if kind == "histogram" {
                assert_ne!(
                    sample.name, family,
                    "{at}: a histogram sample needs a suffix"
                );
            }
            if current.as_deref() != Some(&family) {
                assert!(
                    !done.contains(&family),
                    "{at}: the family's samples are split"
                );
                if let Some(previous) = current.replace(family.clone()) {
                    done.insert(previous);
                }
            }
            assert!(
                sample.name.ends_with("_bucket") == sample.labels.contains_key("le")
                    || kind != "histogram",
                "{at}: le only on buckets"
            );
            if kind == "counter"
                || sample.name.ends_with("_count")
                || sample.name.ends_with("_bucket")
            {
                assert!(sample.value >= 0.0, "{at}: negative count");
            }
            assert!(
                series.insert(format!("{} {:?}", sample.name, sample.labels)),
                "{at}: series twice"
            );
            samples.push(sample);
        }

        // Histograms: group buckets by family and the labels other than le.
        type Key = (String, BTreeMap<String, String>);
        let mut buckets: BTreeMap<Key, Vec<(f64, f64)>> = BTreeMap::new();
        let mut counts: HashMap<Key, f64> = HashMap::new();
        let mut sums: HashSet<Key> = HashSet::new();
        for s in &samples {
            let mut labels = s.labels.clone();
            let le = labels.remove("le");
            if let Some(base) = s.name.strip_suffix("_bucket") {
                let le = parse_value(&le.expect("le")).expect("numeric le");
                buckets
                    .entry((base.to_owned(), labels))
                    .or_default()
                    .push((le, s.value));
            } else if let Some(base) = s.name.strip_suffix("_count") {
                counts.insert((base.to_owned(), labels), s.value);
            } else if let Some(base) = s.name.strip_suffix("_sum") {
                sums.insert((base.to_owned(), labels));
            }
        }
        for (key, list) in &buckets {
            for pair in list.windows(2) {
                assert!(pair[0].0 < pair[1].0, "{key:?}: le not increasing");
                assert!(pair[0].1 <= pair[1].1, "{key:?}: buckets not cumulative");
            }
            let &(le, last) = list.last().expect("a bucket");
            assert_eq!(le, f64::INFINITY, "{key:?}: the last bucket is +Inf");
            assert_eq!(Some(&last), counts.get(key), "{key:?}: +Inf == _count");
            assert!(sums.contains(key), "{key:?}: no _sum");
        }
        samples
    }

    fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        samples
            .iter()
            .find(|s| {
                s.name == name
                    && s.labels.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(v))
            })
            .map(|s| s.value)
    }

    #[tokio::test]
    async fn admin_metrics_are_valid_exposition() {
        let server = Server::start(engine()).await;
        drive(&server.engine, &server.metrics);
        server.metrics.record_ccr(
            CcRequestType::UPDATE_REQUEST,
            ResultCode::SUCCESS,
            Duration::from_secs(5),
        );
        let (status, headers, body) = server.request("GET", "/metrics").await;
        assert_eq!(status, 200);
        assert!(
            headers["content-type"].starts_with("text/plain; version=0.0.4"),
            "{headers:?}"
        );
        let samples = check_exposition(&body);
        let ccr = |t: &str, r: &str| {
            value(
                &samples,
                "pdf_requests_total",
                &[("command", "CCR"), ("request_type", t), ("result", r)],
            )
        };
        assert_eq!(ccr("INITIAL", "2001"), Some(3.0), "{body}");
        assert_eq!(ccr("INITIAL", "5030"), Some(1.0));
        assert_eq!(ccr("UPDATE", "2001"), Some(2.0));
        assert_eq!(ccr("TERMINATION", "2001"), Some(0.0));
        assert_eq!(
            value(
                &samples,
                "pdf_requests_total",
                &[("command", "DWR"), ("result", "2001")]
            ),
            Some(1.0)
        );
        assert_eq!(
            value(&samples, "pdf_asr_total", &[("result", "no_answer")]),
            Some(1.0)
        );
        let bucket = |t: &str, le: &str| {
            value(
                &samples,
                "pdf_request_duration_seconds_bucket",
                &[("request_type", t), ("le", le)],
            )
        };
        assert_eq!(bucket("INITIAL", "0.00025"), Some(0.0));
        assert_eq!(bucket("INITIAL", "0.0005"), Some(4.0));
        assert_eq!(bucket("UPDATE", "1"), Some(1.0));
        assert_eq!(bucket("UPDATE", "+Inf"), Some(2.0));
        let gauge = |name: &str| value(&samples, name, &[]).unwrap_or_else(|| panic!("{name}"));
        assert_eq!(gauge("pdf_sessions"), 3.0);
        assert_eq!(gauge("pdf_accounts"), 7.0);
        assert_eq!(gauge("pdf_subscribers"), 10.0);
        assert_eq!(gauge("pdf_connections"), 3.0);
        assert_eq!(gauge("pdf_debited_money"), 60.0);
        assert_eq!(
            gauge("pdf_balance_money") + gauge("pdf_reserved_money") + gauge("pdf_debited_money"),
            7000.0
        );
        assert!(gauge("pdf_uptime_seconds") >= 0.0);
        assert!(gauge("pdf_session_table_heap_bytes") > 0.0);
        assert_eq!(gauge("pdf_sessions_started_total"), 3.0);
        for counter in [
            "pdf_sessions_terminated_total",
            "pdf_sessions_exhausted_total",
            "pdf_sessions_expired_total",
            "pdf_retransmissions_total",
            "pdf_out_of_order_total",
            "pdf_aborts_total",
        ] {
            assert_eq!(value(&samples, counter, &[]), Some(0.0), "{counter}");
        }
        assert_eq!(
            gauge("pdf_journal_bytes"),
            4096.0,
            "extra lines are appended"
        );
        assert_eq!(
            value(
                &samples,
                "pdf_info",
                &[
                    ("version", env!("CARGO_PKG_VERSION")),
                    ("state_schema", "1"),
                    ("origin_state_id", "1700000000"),
                ],
            ),
            Some(1.0)
        );
        server.stop().await;
    }

    #[test]
    fn admin_exposition_checker_rejects_bad_text() {
        let good = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 2\n";
        assert_eq!(check_exposition(good).len(), 1);
        let bad = [
            "a_total 1\n",
            "# HELP a A.\n# TYPE a gauge\na one\n",
            "# HELP a A.\n# TYPE a gauge\na 1\n# HELP a A.\n",
            "# HELP a A.\n# TYPE a gauge\n# HELP b B.\n# TYPE b gauge\na 1\nb 1\na{x=\"2\"} 1\n",
            "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
            "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n",
            "# HELP a A.\n# TYPE a gauge\na{x=1} 1\n",
        ];
        for text in bad {
            let caught = std::panic::catch_unwind(|| check_exposition(text)).is_err();
            assert!(caught, "accepted {text:?}");
        }
    }

    #[tokio::test]
    async fn admin_serve_stops_on_shutdown() {
        let server = Server::start(engine()).await;
        // An idle keep-alive connection does not hold the shutdown up.
        let mut idle = tokio::net::TcpStream::connect(server.addr)
            .await
            .expect("connect");
        idle.write_all(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let mut buffer = [0u8; 4096];
        let read = idle.read(&mut buffer).await.expect("read");
        assert!(buffer[..read].starts_with(b"HTTP/1.1 200"), "answered");
        server.stop().await;
        let closed = tokio::time::timeout(Duration::from_secs(10), idle.read(&mut buffer))
            .await
            .expect("closed within 10 s");
        assert!(
            matches!(closed, Ok(0) | Err(_)),
            "the idle connection is closed"
        );
    }
}
