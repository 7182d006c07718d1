//! The `pdf` command: command line, start-up, the serving loop and an orderly stop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::os::fd::AsFd;

use anyhow::Context;
use arc_swap::ArcSwap;
use clap::Parser;
use protocol::dictionary::DisconnectCause;
use protocol::header::{ApplicationId, CommandCode};
use protocol::peer::{EndToEndIds, Node, PeerConfig};
use protocol::transport::Server;
use tokio::net::TcpListener;

use crate::admin::{self, AdminState};
use crate::charging::Engine;
use crate::config::Config;
use crate::journal::{Durability, Journal};
use crate::metrics::Metrics;
use crate::server::PdfHandler;

/// The state-schema version (the hot upgrade's `code_change` converts older ones).
pub const STATE_SCHEMA: u32 = crate::snapshot::SCHEMA;

/// The version `--version` prints and a hot upgrade's HELLO announces.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (state schema 2)");

/// Session slots the expiry task scans per taking of the engine lock (about 1 MB of slots,
/// a fraction of a millisecond).
const EXPIRY_SLOTS: u32 = 16_384;

const EXIT_CODES: &str = "Exit status:
  0  stopped in order (SIGTERM or SIGINT: DPR with REBOOTING sent to every peer; or, after
     POST /migrate moved every account to another node: DPR with DO_NOT_WANT_TO_TALK_TO_YOU)
  1  failed while running (a socket, the journal)
  2  bad command line or configuration (the message names the file and key)

Signals: SIGTERM and SIGINT stop the PDF in order. SIGUSR2 hot-upgrades to the binary now
at this executable's path, with the same arguments (swap the file, then signal): the
new process takes the sockets, connections and state; no peer sees a connection close.
Logs go to stderr; set RUST_LOG (e.g. RUST_LOG=pdf=debug,protocol=debug).";

/// The online charging server: RFC 4006 Credit-Control on Diameter.
///
/// With no arguments it serves the default population (100,000 subscribers with MSISDNs
/// from 491700000000, positive balances) and tariff on 127.0.0.1:3868, admin port on
/// 127.0.0.1:9868, memory only. When ready it prints one line:
/// `listening diameter=ADDR admin=ADDR`.
#[derive(Debug, Parser)]
#[command(name = "pdf", version = VERSION, after_help = EXIT_CODES)]
pub struct Cli {
    /// TOML configuration file (every key optional; unknown keys are errors).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Diameter listening address (overrides diameter.listen; port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Admin HTTP listening address (overrides admin.listen).
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<SocketAddr>,
    /// Data directory for the journal (overrides journal.dir; implies group durability).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// `none` (memory only) or `group` (answers wait for their debit to be on disk).
    #[arg(long, value_name = "POLICY", value_parser = parse_durability)]
    pub durability: Option<Durability>,
    /// Origin-Host (overrides diameter.origin_host).
    #[arg(long, value_name = "HOST")]
    pub origin_host: Option<String>,
    /// Which accounts to charge (overrides ownership.owns): `all`, or `none` for a node
    /// that waits for accounts to be migrated to it (the `migrate` upgrade: the old node's
    /// `POST /migrate` moves them here; until then CCR-INITIALs for them are redirected to
    /// it with 3006 (see `--upstream`), or refused with 3004 while no old node is known). A
    /// data directory remembers the choice.
    #[arg(long, value_name = "WHICH", value_parser = parse_owns)]
    pub owns: Option<crate::ownership::Owns>,
    /// Where the accounts this node does not own are served, as a Diameter URI
    /// (`aaa://127.0.0.1:3868;transport=tcp`; overrides ownership.upstream): with
    /// `--owns none`, CCR-INITIALs for accounts not migrated here yet are redirected there
    /// with 3006 from the start, rather than refused with 3004 until the old node's
    /// `POST /migrate` introduces it.
    #[arg(long, value_name = "URI")]
    pub upstream: Option<String>,
    /// Worker threads of the runtime (default: one per core); fewer where other busy
    /// processes share the machine.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: Option<u16>,
    /// Check the configuration, print what would be served, and exit.
    #[arg(long)]
    pub check_config: bool,
    /// Take over from a running pdf through its control socket (a hot upgrade: the old
    /// process passes this when it starts the new binary; see `POST /upgrade` and SIGUSR2).
    #[arg(long, value_name = "SOCKET")]
    pub takeover: Option<PathBuf>,
}

fn parse_owns(text: &str) -> Result<crate::ownership::Owns, String> {
    match text {
        "all" => Ok(crate::ownership::Owns::All),
        "none" => Ok(crate::ownership::Owns::None),
        other => Err(format!("`{other}`: expected `all` or `none`")),
    }
}

fn parse_durability(text: &str) -> Result<Durability, String> {
    match text {
        "none" => Ok(Durability::None),
        "group" => Ok(Durability::Group),
        other => Err(format!("`{other}`: expected `none` or `group`")),
    }
}

impl Cli {
    /// The configuration file with the command line's overrides, validated.
    pub fn config(&self) -> Result<Config, String> {
        let mut config = match &self.config {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        if let Some(listen) = self.listen {
            config.diameter.listen = listen;
        }
        if let Some(admin) = self.admin {
            config.admin.listen = admin;
        }
        if let Some(dir) = &self.data_dir {
            config.journal.dir = Some(dir.clone());
        }
        if let Some(durability) = self.durability {
            config.journal.durability = Some(durability);
        }
        if let Some(host) = &self.origin_host {
            config.diameter.origin_host = Some(host.clone());
        }
        if let Some(owns) = self.owns {
            config.ownership.owns = owns;
        }
        if let Some(upstream) = &self.upstream {
            config.ownership.upstream = Some(upstream.clone());
        }
        config.validate()?;
        Ok(config)
    }
}

pub use service::Failure;

/// Runs the PDF until SIGTERM/SIGINT (or `stop` resolves, for tests).
pub async fn run(cli: Cli) -> Result<(), Failure> {
    let config = cli.config().map_err(Failure::Config)?;
    let population = config.population().map_err(Failure::Config)?;
    if cli.check_config {
        println!(
            "configuration ok: {} subscribers in {} accounts, {} services, diameter {}, admin {}, durability {:?}",
            population.subscribers(),
            population.accounts(),
            config.tariff.services.len(),
            config.diameter.listen,
            config.admin.listen,
            config.journal().durability,
        );
        return Ok(());
    }
    // SIGUSR2 restarts this path with these arguments (whatever binary is there by then).
    let again = crate::hot::UpgradeRequest {
        binary: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("pdf")),
        args: without_takeover(std::env::args().skip(1)),
    };
    serve(config, population, cli.takeover, again)
        .await
        .map_err(Failure::Runtime)
}

/// The arguments minus `--takeover SOCKET` (a taken-over process upgrades like any other).
fn without_takeover(args: impl Iterator<Item = String>) -> Vec<String> {
    let mut kept = Vec::new();
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        if arg == "--takeover" {
            args.next();
        } else if !arg.starts_with("--takeover=") {
            kept.push(arg);
        }
    }
    kept
}

/// The engine, the journal and the Origin-State-Id: recovered from the journal at a start,
/// or restored from the old process's snapshot (and checked against the journal) in a
/// hot upgrade.
fn open_state(
    config: &Config,
    fresh: Engine,
    inherited: Option<&mut crate::hot::Inheritance>,
) -> anyhow::Result<(Engine, Journal, u32)> {
    let accounts = fresh.ledger.len() as u32;
    let Some(inherited) = inherited else {
        let mut engine = fresh;
        let (journal, recovered) =
            Journal::open(&config.journal(), accounts).context("opening the journal")?;
        for (account, &debited) in recovered.debited.iter().enumerate() {
            if debited != 0 {
                engine.ledger.recover_debit(account as u32, debited);
            }
        }
        if recovered.records > 0 {
            tracing::info!(
                records = recovered.records,
                "recovered debits from the journal"
            );
        }
        let origin_state_id = recovered.origin_state_id;
        return Ok((engine, journal, origin_state_id));
    };
    let mut fresh = fresh;
    fresh.sessions = std::mem::take(&mut inherited.sessions);
    let engine = inherited
        .snapshot
        .take()
        .context("the snapshot was already restored")?
        .restore_into(fresh, 0)
        .context("restoring the old process's state")?;
    crate::hot::fault_point("journal");
    let (journal, recovered) = Journal::open_continuing(&config.journal(), accounts)
        .context("opening the journal the old process closed")?;
    crate::hot::check_journal(&engine, &recovered, config.journal().durability)?;
    tracing::info!(
        sessions = engine.sessions.len(),
        snapshot_bytes = inherited.snapshot_bytes,
        connections = inherited.connections.len(),
        "hot upgrade: state restored and checked"
    );
    Ok((engine, journal, inherited.origin_state_id))
}

async fn serve(
    config: Config,
    population: crate::population::Population,
    takeover: Option<PathBuf>,
    again: crate::hot::UpgradeRequest,
) -> anyhow::Result<()> {
    // Built before a hot upgrade's pause (it needs only our own configuration).
    let fresh = Engine::new(population, config.tariff.clone(), config.engine());
    // A hot upgrade's new process: everything from the old one first.
    let mut inherited = match &takeover {
        Some(path) => Some(tokio::task::block_in_place(|| {
            crate::hot::Inheritance::receive(path)
        })?),
        None => None,
    };
    let (mut engine, journal, origin_state_id) =
        match open_state(&config, fresh, inherited.as_mut()) {
            Ok(state) => state,
            Err(error) => {
                if let Some(inherited) = inherited {
                    inherited.failed(&error);
                }
                return Err(error);
            }
        };
    let ownership_dir = match config.journal().durability {
        Durability::Group => config.journal().dir,
        Durability::None => None,
    };
    let (ownership_log, pending_exports) = crate::migrate::recover(
        &mut engine,
        ownership_dir.as_deref(),
        config.ownership.owns,
        config.ownership.upstream.as_deref(),
    )
    .context("recovering the ownership log")?;
    let journal = Arc::new(ArcSwap::from_pointee(journal));
    let engine = Arc::new(Mutex::new(engine));
    let metrics = Arc::new(Metrics::default());
    let connections = Arc::new(AtomicUsize::new(0));

    let origin_host = config.origin_host();
    let mut peer = PeerConfig::new(origin_host.clone(), config.diameter.origin_realm.clone());
    peer.origin_state_id = origin_state_id;
    peer.product_name = "diameter-suite pdf".into();
    peer.auth_application_ids = vec![ApplicationId::CREDIT_CONTROL];
    peer.acct_application_ids = vec![];
    peer.supported_commands = vec![(ApplicationId::CREDIT_CONTROL, CommandCode::CREDIT_CONTROL)];
    peer.allowed_peers = config.diameter.allowed_peers.clone();
    peer.watchdog_interval = Duration::from_secs(config.diameter.watchdog_seconds);
    peer.max_message_len = config.diameter.max_message_bytes;
    peer.max_incoming_requests = config.diameter.max_requests_in_flight;
    if !config.diameter.listen.ip().is_unspecified() {
        peer.host_ip_addresses = vec![config.diameter.listen.ip()];
    }
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let end_to_end = match &inherited {
        Some(inherited) => EndToEndIds::continuing(inherited.end_to_end_next),
        None => EndToEndIds::new(unix, fastrand::u32(..)),
    };
    let node = Node::new(peer, end_to_end);
    if let Some(inherited) = &mut inherited {
        node.duplicates
            .import(std::mem::take(&mut inherited.duplicates), Instant::now());
    }

    let handler = Arc::new_cyclic(|me| PdfHandler {
        me: me.clone(),
        engine: engine.clone(),
        journal: journal.clone(),
        metrics: metrics.clone(),
        epoch: Instant::now(),
        connections: connections.clone(),
        origin_host: origin_host.into(),
        origin_realm: config.diameter.origin_realm.clone().into(),
        peers: Mutex::default(),
    });
    let (server, admin_listener) = match &inherited {
        Some(inherited) => {
            // Not accepting yet: the old process may still resume until READY.
            let diameter = inherited.diameter.try_clone()?;
            diameter.set_nonblocking(true)?;
            let admin = inherited.admin.try_clone()?;
            admin.set_nonblocking(true)?;
            let server = Server::paused(
                TcpListener::from_std(diameter)?,
                node.clone(),
                handler.clone(),
            )?;
            (server, TcpListener::from_std(admin)?)
        }
        None => {
            let diameter = TcpListener::bind(config.diameter.listen)
                .await
                .with_context(|| format!("binding the Diameter port {}", config.diameter.listen))?;
            let server = Server::from_listener(diameter, node.clone(), handler.clone())?;
            let admin = TcpListener::bind(config.admin.listen)
                .await
                .with_context(|| format!("binding the admin port {}", config.admin.listen))?;
            (server, admin)
        }
    };
    // A copy of the admin socket outlives axum's, for a hot upgrade to pass on.
    let admin_copy = admin_listener.as_fd().try_clone_to_owned()?;
    let admin_addr = admin_listener.local_addr()?;
    let journal_stats = journal.clone();
    let admin_state = AdminState {
        engine: engine.clone(),
        metrics: metrics.clone(),
        started: Instant::now(),
        connections: connections.clone(),
        origin_state_id,
        version: env!("CARGO_PKG_VERSION"),
        state_schema: STATE_SCHEMA,
        diameter_addr: server.local_addr(),
        extra: Arc::new(move |out: &mut String| {
            journal_stats.load().stats().render_prometheus(out)
        }),
    };
    let migration = crate::migrate::Migration::new(
        engine.clone(),
        handler.epoch,
        ownership_log,
        format!("aaa://{};transport=tcp", server.local_addr()),
    )?;
    let (upgrades, mut upgrade_requests) = tokio::sync::mpsc::channel(1);
    let admin_routes = admin::router(admin_state)
        .merge(crate::migrate::router(migration.clone()))
        .merge(crate::hot::router(upgrades));

    if let Some(mut inherited) = inherited {
        // The commit point: from READY (and GO) on, the old process exits and this one
        // serves. Not a socket is touched before: the connections' leftover output goes out
        // first, then they are read again; the admin port accepts after.
        let connections = std::mem::take(&mut inherited.connections);
        inherited.ready();
        let count = connections.len();
        for connection in connections {
            if let Err(error) = server.adopt(connection) {
                tracing::warn!(%error, "an inherited connection could not be resumed");
            }
        }
        server.resume_accepting();
        tracing::info!(connections = count, "hot upgrade: serving");
    }
    migration.resend(pending_exports);
    let mut admin = AdminServer::spawn(admin_listener, admin_routes.clone());

    let stop = service::stop_signal()?;
    // Harnesses wait for this line to learn the ports (DESIGN.md section 9).
    println!(
        "listening diameter={} admin={}",
        server.local_addr(),
        admin_addr
    );
    tracing::info!(
        diameter = %server.local_addr(),
        admin = %admin_addr,
        origin_state_id,
        durability = ?config.journal().durability,
        "pdf ready"
    );

    let expiry = {
        let (engine, handler) = (engine.clone(), handler.clone());
        let every = Duration::from_secs(config.charging.expiry_scan_seconds);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let now = handler.now();
                // In parts of EXPIRY_SLOTS slots, the engine lock released between them.
                let (mut expired, mut from) = (0, Some(0));
                while let Some(start) = from {
                    let (count, next) = engine
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .expire_slots(now, start, EXPIRY_SLOTS);
                    expired += count;
                    from = next;
                    tokio::task::yield_now().await;
                }
                if expired > 0 {
                    tracing::info!(expired, "expired silent sessions");
                }
            }
        })
    };

    let mut usr2 = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined2())?;
    // Installed before the ports are announced; created once, so that a SIGTERM during a
    // hot upgrade is seen when the upgrade is over.
    tokio::pin!(stop);
    let mut fatal = None;
    let cause = loop {
        let (request, reply) = tokio::select! {
            () = &mut stop => {
                tracing::info!("stopping: DPR (REBOOTING) to every peer");
                break DisconnectCause::REBOOTING;
            }
            () = migration.stopped() => {
                tracing::info!("migrated every account away: DPR (DO_NOT_WANT_TO_TALK_TO_YOU) to every peer");
                break DisconnectCause::DO_NOT_WANT_TO_TALK_TO_YOU;
            }
            Some(asked) = upgrade_requests.recv() => asked,
            Some(()) = usr2.recv() => (again.clone(), None),
        };
        tracing::info!(binary = %request.binary.display(), args = ?request.args, "hot upgrade");
        // The snapshot does not carry ownership yet: a node that does not own every
        // account (`migrate` moved some, or it waits for some) is not hot-upgraded.
        let pristine = {
            let engine = engine.lock().unwrap_or_else(|p| p.into_inner());
            engine.ownership.owned() as usize == engine.ledger.len()
                && engine.ownership.upstream().is_none()
        };
        if !pristine {
            let refusal = "a hot upgrade of a node whose accounts moved (migrate) is not supported yet: still serving";
            tracing::error!(refusal);
            if let Some(reply) = reply {
                let _ = reply.send(Err(refusal.to_owned()));
            }
            continue;
        }
        // Only the new process may accept admin connections from here on (a request
        // accepted here meanwhile would reach a process about to exit).
        admin.stop_accepting();
        let live = crate::hot::Live {
            server: &server,
            node: &node,
            engine: &engine,
            journal: &journal,
            journal_config: config.journal(),
            admin: admin_copy.as_fd(),
            epoch: handler.epoch,
            origin_state_id,
        };
        let outcome = crate::hot::upgrade(&live, &request).await;
        let upgraded = outcome.is_ok();
        let cannot_serve = outcome
            .as_ref()
            .err()
            .is_some_and(|e| e.downcast_ref::<crate::hot::Fatal>().is_some());
        match &outcome {
            Ok(report) => tracing::info!(?report, "hot upgrade done: the new process serves"),
            Err(error) => tracing::error!("hot upgrade failed: {error:#}"),
        }
        if let Some(reply) = reply {
            let _ = reply.send(outcome.map_err(|e| format!("{e:#}")));
        }
        if upgraded {
            // Exit without DPR: the peers' connections live on in the new process. The
            // admin port finishes the answer to POST /upgrade first.
            expiry.abort();
            let _ = tokio::time::timeout(Duration::from_secs(2), admin.stopped()).await;
            return Ok(());
        }
        if cannot_serve {
            // The journal would not reopen: charging is impossible. Stop in order.
            fatal = Some(anyhow::anyhow!(
                "the journal could not be reopened after a failed hot upgrade"
            ));
            break DisconnectCause::REBOOTING;
        }
        let listener = admin_copy.try_clone().map(std::net::TcpListener::from)?;
        listener.set_nonblocking(true)?;
        admin = AdminServer::spawn(TcpListener::from_std(listener)?, admin_routes.clone());
    };
    expiry.abort();
    server.shutdown(cause).await;
    admin.stop_accepting();
    admin.stopped().await;
    // Closing any copy flushes, syncs and stops the writer for all of them.
    Journal::clone(&journal.load())
        .close()
        .context("closing the journal")?;
    match fatal {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// The admin HTTP server: stops accepting on request (a hot upgrade hands its socket on),
/// and can be started again on the same socket (the upgrade failed).
struct AdminServer {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl AdminServer {
    fn spawn(listener: TcpListener, routes: axum::Router) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, routes)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        Self {
            stop: Some(stop),
            task,
        }
    }

    /// Stops accepting; requests in progress finish.
    fn stop_accepting(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Waits until the requests in progress are answered.
    async fn stopped(self) {
        let _ = self.task.await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_version_names_the_state_schema_written() {
        assert!(
            super::VERSION.ends_with(&format!("(state schema {})", crate::snapshot::SCHEMA)),
            "{}",
            super::VERSION
        );
    }

    #[test]
    fn a_taken_over_process_upgrades_with_the_same_arguments_minus_takeover() {
        let args = [
            "--config",
            "a.toml",
            "--takeover",
            "/tmp/s",
            "--listen=x",
            "--takeover=/y",
        ];
        assert_eq!(
            super::without_takeover(args.iter().map(|s| s.to_string())),
            ["--config", "a.toml", "--listen=x"]
        );
    }
}
