//! The PDF side: nodes, each with a pool of connections, and where new sessions go.
//!
//! Each connection of a pool is its own Diameter peer, with its own Origin-Host
//! (`c<i>.<gateway host>`), as RFC 6733 section 2.1 wants one connection per pair of peers. New sessions are placed on nodes at random in proportion to their weights; a node
//! of weight 0 gets none but keeps serving its own. Within a node, connections are used in
//! turn.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use protocol::dictionary::DisconnectCause;
use protocol::header::{ApplicationId, CommandCode};
use protocol::peer::{EndToEndIds, Node, PeerConfig};
use protocol::transport::{Client, ClientOptions, Connection, Handler};

use crate::config::NodeConfig;

/// How pool connections are set up.
#[derive(Clone, Debug)]
pub struct PoolSettings {
    /// The gateway's Origin-Host (each connection prefixes it).
    pub origin_host: String,
    /// Origin-Realm.
    pub origin_realm: String,
    /// Connections per node.
    pub pool_size: u8,
    /// Tw towards PDFs.
    pub watchdog: Duration,
    /// Requests in flight per connection.
    pub max_pending: usize,
    /// Request timeout.
    pub request_timeout: Duration,
    /// Reconnect backoff cap (Tc).
    pub reconnect_max: Duration,
}

/// One PDF node and its pool.
pub struct PdfNode {
    /// Index (stable for the process's life; sessions pin to it).
    pub index: u8,
    /// Name.
    pub name: String,
    /// Address.
    pub address: SocketAddr,
    weight: AtomicU32,
    removed: AtomicBool,
    clients: Mutex<Vec<Option<Client>>>,
    hosts: Vec<String>,
    next: AtomicUsize,
    rebooting_until: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for PdfNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PdfNode({} {} weight {})",
            self.name,
            self.address,
            self.weight()
        )
    }
}

impl PdfNode {
    /// Share of new sessions.
    pub fn weight(&self) -> u32 {
        self.weight.load(Ordering::Relaxed)
    }

    /// Whether the node was removed.
    pub fn is_removed(&self) -> bool {
        self.removed.load(Ordering::Relaxed)
    }

    /// The Origin-Host of connection `i` (it names the CC sessions created on it).
    pub fn origin_host(&self, i: u8) -> &str {
        &self.hosts[usize::from(i)]
    }

    /// Connection `i`, if open.
    pub fn connection(&self, i: u8) -> Option<Connection> {
        let clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients
            .get(usize::from(i))?
            .as_ref()?
            .connection()
            .filter(Connection::is_open)
    }

    /// The next open connection, in turn.
    pub fn any_open(&self) -> Option<(u8, Connection)> {
        let size = self.hosts.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..size)
            .map(|k| ((start + k) % size) as u8)
            .find_map(|i| self.connection(i).map(|c| (i, c)))
    }

    /// How many connections are open.
    pub fn open_connections(&self) -> usize {
        (0..self.hosts.len() as u8)
            .filter(|&i| self.connection(i).is_some())
            .count()
    }

    /// Marks the node as restarting (its DPR said REBOOTING) for `hold`.
    pub fn set_rebooting(&self, hold: Duration) {
        *self
            .rebooting_until
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + hold);
    }

    /// Whether requests for this node should be held (it is restarting).
    pub fn rebooting(&self) -> Option<Instant> {
        let until = *self
            .rebooting_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        until.filter(|t| *t > Instant::now())
    }

    /// Waits until some connection is open, for at most `limit`.
    pub async fn wait_open(&self, limit: Duration) -> Option<(u8, Connection)> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(open) = self.any_open() {
                return Some(open);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// All PDF nodes.
pub struct Pool {
    nodes: RwLock<Vec<Arc<PdfNode>>>,
    settings: PoolSettings,
}

/// Makes the handler for one pool connection, given (node index, connection index).
pub type HandlerFactory = dyn Fn(u8, u8) -> Arc<dyn Handler> + Send + Sync;

impl Pool {
    /// An empty pool.
    pub fn new(settings: PoolSettings) -> Self {
        Self {
            nodes: RwLock::new(Vec::new()),
            settings,
        }
    }

    /// The settings.
    pub fn settings(&self) -> &PoolSettings {
        &self.settings
    }

    /// Adds a node and starts its connections.
    pub fn add(&self, node: &NodeConfig, handlers: &HandlerFactory) -> Result<u8, String> {
        let mut nodes = self.nodes.write().unwrap_or_else(|p| p.into_inner());
        if nodes.iter().any(|n| n.name == node.name && !n.is_removed()) {
            return Err(format!("a node named {:?} exists", node.name));
        }
        if nodes.len() >= usize::from(u8::MAX) {
            return Err("too many nodes (255 over the process's life)".into());
        }
        let index = nodes.len() as u8;
        // Connection i has the same Origin-Host towards every node: (host, node) pairs stay
        // distinct peers, and a CC Session-Id named after it stays routable after a redirect.
        let hosts: Vec<String> = (0..self.settings.pool_size)
            .map(|i| format!("c{i}.{}", self.settings.origin_host))
            .collect();
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let clients = hosts
            .iter()
            .enumerate()
            .map(|(i, host)| {
                let mut config = PeerConfig::new(host.clone(), self.settings.origin_realm.clone());
                config.product_name = "diameter-suite gateway".into();
                config.auth_application_ids = vec![ApplicationId::CREDIT_CONTROL];
                config.acct_application_ids = vec![];
                config.supported_commands = vec![
                    (ApplicationId::CREDIT_CONTROL, CommandCode::ABORT_SESSION),
                    (ApplicationId::CREDIT_CONTROL, CommandCode::RE_AUTH),
                ];
                config.watchdog_interval = self.settings.watchdog;
                config.max_pending_requests = self.settings.max_pending;
                config.request_timeout = self.settings.request_timeout;
                let peer = Node::new(config, EndToEndIds::new(unix, fastrand::u32(..)));
                let options = ClientOptions {
                    tc: self.settings.reconnect_max,
                    initial_backoff: Duration::from_millis(100),
                    ..ClientOptions::default()
                };
                Some(Client::start(
                    node.address,
                    peer,
                    handlers(index, i as u8),
                    options,
                ))
            })
            .collect();
        nodes.push(Arc::new(PdfNode {
            index,
            name: node.name.clone(),
            address: node.address,
            weight: AtomicU32::new(node.weight),
            removed: AtomicBool::new(false),
            clients: Mutex::new(clients),
            hosts,
            next: AtomicUsize::new(0),
            rebooting_until: Mutex::new(None),
        }));
        Ok(index)
    }

    /// Removes a node: no new sessions, its connections closed with DPR.
    pub async fn remove(&self, name: &str) -> Result<(), String> {
        let node = self
            .by_name(name)
            .ok_or_else(|| format!("no node named {name:?}"))?;
        node.removed.store(true, Ordering::Relaxed);
        node.weight.store(0, Ordering::Relaxed);
        let clients: Vec<Client> = node
            .clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter_mut()
            .filter_map(Option::take)
            .collect();
        for client in clients {
            client
                .close(DisconnectCause::DO_NOT_WANT_TO_TALK_TO_YOU)
                .await;
        }
        Ok(())
    }

    /// Sets a node's weight.
    pub fn set_weight(&self, name: &str, weight: u32) -> Result<(), String> {
        let node = self
            .by_name(name)
            .ok_or_else(|| format!("no node named {name:?}"))?;
        node.weight.store(weight, Ordering::Relaxed);
        Ok(())
    }

    /// A node by index.
    pub fn node(&self, index: u8) -> Option<Arc<PdfNode>> {
        self.nodes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(usize::from(index))
            .cloned()
    }

    /// A live node by name.
    pub fn by_name(&self, name: &str) -> Option<Arc<PdfNode>> {
        self.nodes()
            .into_iter()
            .find(|n| n.name == name && !n.is_removed())
    }

    /// Every node (removed ones included, so that indexes stay valid).
    pub fn nodes(&self) -> Vec<Arc<PdfNode>> {
        self.nodes.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Picks a node for a new session: weighted at random among nodes with weight, an open
    /// connection, and not in `exclude`.
    pub fn choose(&self, exclude: &[u8]) -> Option<Arc<PdfNode>> {
        let candidates: Vec<Arc<PdfNode>> = self
            .nodes()
            .into_iter()
            .filter(|n| !n.is_removed() && n.weight() > 0 && !exclude.contains(&n.index))
            .filter(|n| n.open_connections() > 0 || n.rebooting().is_some())
            .collect();
        let total: u64 = candidates.iter().map(|n| u64::from(n.weight())).sum();
        if total == 0 {
            return None;
        }
        let mut pick = fastrand::u64(0..total);
        for node in candidates {
            let weight = u64::from(node.weight());
            if pick < weight {
                return Some(node);
            }
            pick -= weight;
        }
        None
    }

    /// The node a Redirect-Host names: a DiameterURI (`aaa://host:port`), a host, an address
    /// or a node name; matched against node names, addresses and the PDF's Origin-Host.
    pub fn find_redirect(&self, redirect_host: &str) -> Option<Arc<PdfNode>> {
        let target = redirect_host
            .trim_start_matches("aaas://")
            .trim_start_matches("aaa://")
            .split(';')
            .next()
            .unwrap_or_default();
        let host_only = target.rsplit_once(':').map_or(target, |(h, _)| h);
        self.nodes()
            .into_iter()
            .filter(|n| !n.is_removed())
            .find(|n| {
                n.name == target
                    || n.name == host_only
                    || n.address.to_string() == target
                    || (0..n.hosts.len() as u8).any(|i| {
                        n.connection(i).and_then(|c| c.peer()).is_some_and(|p| {
                            p.origin_host.eq_ignore_ascii_case(host_only)
                                || p.origin_host.eq_ignore_ascii_case(target)
                        })
                    })
            })
    }
}
