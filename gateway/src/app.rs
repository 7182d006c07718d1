//! The `gateway` command: command line, start-up, serving, an orderly stop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use protocol::dictionary::DisconnectCause;
use protocol::header::{ApplicationId, CommandCode};
use protocol::peer::{EndToEndIds, Node, PeerConfig};
use protocol::transport::Server;
use tokio::net::TcpListener;

use crate::admin::{self, AdminState};
use crate::config::{Config, LossPolicy, NodeConfig};
use crate::pool::{Pool, PoolSettings};
use crate::relay::{AccessSide, Relay};

const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (state schema 1)");

const EXIT_CODES: &str = "Exit status:
  0  stopped in order (SIGTERM or SIGINT: DPR with REBOOTING to access peers and PDFs)
  1  failed while running (a socket could not be bound)
  2  bad command line or configuration (the message names the file and key)

Logs go to stderr; set RUST_LOG (e.g. RUST_LOG=gateway=debug).";

/// The gateway: accounting clients connect here; their sessions are charged on PDF nodes
/// through Credit-Control.
///
/// With no arguments it listens on 127.0.0.1:3869 (admin 127.0.0.1:9869) and connects to a
/// PDF at 127.0.0.1:3868 with a pool of 4 connections. When ready it prints one line:
/// `listening diameter=ADDR admin=ADDR`.
#[derive(Debug, Parser)]
#[command(name = "gateway", version = VERSION, after_help = EXIT_CODES)]
pub struct Cli {
    /// TOML configuration file (every key optional; unknown keys are errors).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Access listening address (overrides access.listen; port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Admin HTTP listening address (overrides admin.listen).
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<SocketAddr>,
    /// A PDF node's address (repeatable; replaces the configured nodes; named pdf0, pdf1...).
    #[arg(long = "pdf", value_name = "ADDR")]
    pub pdfs: Vec<SocketAddr>,
    /// Loss policy: `drop` or `failover` (overrides charging.policy).
    #[arg(long, value_name = "POLICY", value_parser = parse_policy)]
    pub policy: Option<LossPolicy>,
    /// Connections per PDF node (overrides charging.pool_size).
    #[arg(long, value_name = "N")]
    pub pool_size: Option<u8>,
    /// Origin-Host (overrides access.origin_host).
    #[arg(long, value_name = "HOST")]
    pub origin_host: Option<String>,
    /// Worker threads of the runtime (default: one per core); fewer where other busy
    /// processes share the machine.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: Option<u16>,
    /// Check the configuration, print it, and exit.
    #[arg(long)]
    pub check_config: bool,
}

fn parse_policy(text: &str) -> Result<LossPolicy, String> {
    match text {
        "drop" => Ok(LossPolicy::Drop),
        "failover" => Ok(LossPolicy::Failover),
        other => Err(format!("`{other}`: expected `drop` or `failover`")),
    }
}

impl Cli {
    /// The configuration with the command line's overrides, validated.
    pub fn config(&self) -> Result<Config, String> {
        let mut config = match &self.config {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        if let Some(listen) = self.listen {
            config.access.listen = listen;
        }
        if let Some(admin) = self.admin {
            config.admin.listen = admin;
        }
        if !self.pdfs.is_empty() {
            config.nodes = self
                .pdfs
                .iter()
                .enumerate()
                .map(|(i, address)| NodeConfig {
                    name: format!("pdf{i}"),
                    address: *address,
                    weight: 1,
                })
                .collect();
        }
        if let Some(policy) = self.policy {
            config.charging.policy = policy;
        }
        if let Some(size) = self.pool_size {
            config.charging.pool_size = size;
        }
        if let Some(host) = &self.origin_host {
            config.access.origin_host = Some(host.clone());
        }
        config.validate()?;
        Ok(config)
    }
}

pub use service::Failure;

/// Runs the gateway until SIGTERM or SIGINT.
pub async fn run(cli: Cli) -> Result<(), Failure> {
    let config = cli.config().map_err(Failure::Config)?;
    if cli.check_config {
        let nodes: Vec<String> = config
            .nodes
            .iter()
            .map(|n| format!("{}={} (weight {})", n.name, n.address, n.weight))
            .collect();
        println!(
            "configuration ok: access {}, admin {}, {} connections per PDF, policy {:?}, nodes {}",
            config.access.listen,
            config.admin.listen,
            config.charging.pool_size,
            config.charging.policy,
            nodes.join(", ")
        );
        return Ok(());
    }
    serve(config).await.map_err(Failure::Runtime)
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let origin_host = config.origin_host();
    let pool = Pool::new(PoolSettings {
        origin_host: origin_host.clone(),
        origin_realm: config.access.origin_realm.clone(),
        pool_size: config.charging.pool_size,
        watchdog: Duration::from_secs(config.charging.watchdog_seconds),
        max_pending: config.charging.max_pending_per_connection,
        request_timeout: Duration::from_millis(config.charging.request_timeout_ms),
        reconnect_max: Duration::from_millis(config.charging.reconnect_max_ms),
    });
    let relay = Relay::start(&config, pool);

    let mut peer = PeerConfig::new(origin_host, config.access.origin_realm.clone());
    peer.product_name = "diameter-suite gateway".into();
    peer.auth_application_ids = vec![];
    peer.acct_application_ids = vec![ApplicationId::BASE_ACCOUNTING];
    peer.supported_commands = vec![(ApplicationId::BASE_ACCOUNTING, CommandCode::ACCOUNTING)];
    peer.watchdog_interval = Duration::from_secs(config.access.watchdog_seconds);
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    peer.origin_state_id = unix as u32;
    let node = Node::new(peer, EndToEndIds::new(unix, fastrand::u32(..)));
    let listener = TcpListener::bind(config.access.listen)
        .await
        .with_context(|| format!("binding the access port {}", config.access.listen))?;
    let server = Server::from_listener(
        listener,
        node,
        Arc::new(AccessSide {
            relay: relay.clone(),
        }),
    )?;
    let admin_listener = TcpListener::bind(config.admin.listen)
        .await
        .with_context(|| format!("binding the admin port {}", config.admin.listen))?;
    let admin_addr = admin_listener.local_addr()?;
    let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let state = AdminState {
        relay: relay.clone(),
        started: Instant::now(),
        access_addr: server.local_addr(),
    };
    let admin_task = tokio::spawn(admin::serve(admin_listener, state, async {
        let _ = admin_stopped.await;
    }));

    // The stop signals are installed before the ports are announced: a SIGTERM sent right
    // after the `listening` line is kept, not left to the default action.
    let stop = service::stop_signal()?;
    println!(
        "listening diameter={} admin={}",
        server.local_addr(),
        admin_addr
    );
    tracing::info!(access = %server.local_addr(), admin = %admin_addr, "gateway ready");

    stop.await;
    tracing::info!("stopping: DPR (REBOOTING) to access peers, then to PDFs");
    server.shutdown(DisconnectCause::REBOOTING).await;
    for node in relay.pool.nodes() {
        let _ = relay.pool.remove(&node.name).await;
    }
    let _ = stop_admin.send(());
    let _ = admin_task.await;
    Ok(())
}
