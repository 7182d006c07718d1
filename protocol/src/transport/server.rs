//! The server side: a listener that accepts many peers, one driver task per connection, and
//! an orderly shutdown that sends DPR to every peer.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::driver::{self, Connection};
use super::{ConnectionEvent, Handler, Incoming};
use crate::dictionary::DisconnectCause;
use crate::peer::{Node, Role};

type Registry = Arc<Mutex<HashMap<SocketAddr, Connection>>>;

/// A listening Diameter server.
#[derive(Debug)]
pub struct Server {
    local: SocketAddr,
    connections: Registry,
    accept: JoinHandle<()>,
}

impl Server {
    /// Binds `addr` (port 0 picks a free port) and accepts peers in the background.
    pub async fn bind(
        addr: SocketAddr,
        node: Arc<Node>,
        handler: Arc<dyn Handler>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        Self::from_listener(listener, node, handler)
    }

    /// Serves on an already bound listener.
    pub fn from_listener(
        listener: TcpListener,
        node: Arc<Node>,
        handler: Arc<dyn Handler>,
    ) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let connections: Registry = Arc::default();
        let tracked: Arc<dyn Handler> = Arc::new(Tracked {
            inner: handler,
            connections: connections.clone(),
        });
        let accept = tokio::spawn(accept_loop(listener, node, tracked, connections.clone()));
        Ok(Self {
            local,
            connections,
            accept,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The connections currently up (or exchanging capabilities).
    pub fn connections(&self) -> Vec<Connection> {
        lock(&self.connections).values().cloned().collect()
    }

    /// Stops accepting, sends DPR with `cause` to every peer and waits until each
    /// connection is closed (DPA received, or the disconnect timeout passed).
    pub async fn shutdown(self, cause: DisconnectCause) {
        self.accept.abort();
        let connections = self.connections();
        for connection in &connections {
            connection.disconnect(cause);
        }
        for connection in connections {
            let limit = connection.node().config.disconnect_timeout + Duration::from_secs(1);
            let _ = tokio::time::timeout(limit, connection.closed()).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

fn lock(registry: &Registry) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Connection>> {
    registry
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn accept_loop(
    listener: TcpListener,
    node: Arc<Node>,
    handler: Arc<dyn Handler>,
    connections: Registry,
) {
    loop {
        match listener.accept().await {
            Ok((stream, remote)) => {
                match driver::spawn(stream, node.clone(), Role::Responder, handler.clone()) {
                    Ok(connection) => {
                        lock(&connections).insert(remote, connection);
                    }
                    Err(error) => tracing::warn!(%remote, %error, "socket setup failed"),
                }
            }
            Err(error) => {
                // Out of file descriptors, most likely: back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Removes connections from the registry when they go down.
struct Tracked {
    inner: Arc<dyn Handler>,
    connections: Registry,
}

impl Handler for Tracked {
    fn on_request(&self, connection: &Connection, request: Incoming) {
        self.inner.on_request(connection, request);
    }

    fn on_event(&self, connection: &Connection, event: &ConnectionEvent) {
        if let ConnectionEvent::Down(_) = event {
            lock(&self.connections).remove(&connection.peer_addr());
        }
        self.inner.on_event(connection, event);
    }
}
