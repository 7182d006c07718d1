//! The server side: a listener that accepts many peers, one driver task per connection, and
//! an orderly shutdown that sends DPR to every peer.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::driver::{self, Connection, Detached, HandOverFailed};
use super::{ConnectionEvent, Handler, Incoming};
use crate::dictionary::DisconnectCause;
use crate::peer::{Node, Role};

type Registry = Arc<Mutex<HashMap<SocketAddr, Connection>>>;

/// A listening Diameter server.
pub struct Server {
    local: SocketAddr,
    connections: Registry,
    listener: Arc<TcpListener>,
    node: Arc<Node>,
    handler: Arc<dyn Handler>,
    accept: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local", &self.local)
            .field("connections", &lock(&self.connections).len())
            .finish_non_exhaustive()
    }
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
        let server = Self::paused(listener, node, handler)?;
        server.resume_accepting();
        Ok(server)
    }

    /// A server on `listener` that does not accept yet (peers wait in the backlog): a hot
    /// upgrade's new process [`adopt`](Self::adopt)s its connections first, then calls
    /// [`resume_accepting`](Self::resume_accepting).
    pub fn paused(
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
        Ok(Self {
            local,
            connections,
            listener: Arc::new(listener),
            node,
            handler: tracked,
            accept: Mutex::new(None),
        })
    }

    /// Starts (or restarts) accepting peers.
    pub fn resume_accepting(&self) {
        let mut accept = self.accept.lock().unwrap_or_else(|p| p.into_inner());
        if accept.as_ref().is_some_and(|task| !task.is_finished()) {
            return;
        }
        *accept = Some(tokio::spawn(accept_loop(
            self.listener.clone(),
            self.node.clone(),
            self.handler.clone(),
            self.connections.clone(),
        )));
    }

    /// Stops accepting and waits until the accept task is gone, so that no peer accepted
    /// at this very moment slips past a hand-over; peers connecting meanwhile wait in the
    /// kernel's backlog.
    pub async fn stop_accepting(&self) {
        let accept = self.accept.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = accept {
            task.abort();
            let _ = task.await;
        }
    }

    /// Stops accepting (at the accept task's next await); peers connecting meanwhile wait
    /// in the kernel's backlog.
    pub fn pause_accepting(&self) {
        if let Some(task) = self.accept.lock().unwrap_or_else(|p| p.into_inner()).take() {
            task.abort();
        }
    }

    /// A copy of the listening socket (a new descriptor for the same socket), to pass to
    /// another process.
    pub fn listener_copy(&self) -> std::io::Result<std::net::TcpListener> {
        use std::os::fd::AsFd;
        let fd = self.listener.as_fd().try_clone_to_owned()?;
        Ok(std::net::TcpListener::from(fd))
    }

    /// Takes every open connection out of its driver at a message boundary (reading stops,
    /// the requests already received are answered, the output is flushed), for a hot
    /// upgrade. Connections that are not open, or do not quiesce within two seconds, keep
    /// running here and are returned as failures; the caller decides whether to go on.
    pub async fn detach_all(&self) -> (Vec<Detached>, Vec<(SocketAddr, HandOverFailed)>) {
        let mut replies = Vec::new();
        for connection in self.connections() {
            let (reply, detached) = tokio::sync::oneshot::channel();
            if connection
                .commands()
                .send(driver::Command::HandOver(reply))
                .is_ok()
            {
                replies.push((connection.peer_addr(), detached));
            }
        }
        let (mut detached, mut failed) = (Vec::new(), Vec::new());
        for (addr, reply) in replies {
            match reply.await {
                Ok(Ok(connection)) => detached.push(connection),
                Ok(Err(error)) => failed.push((addr, error)),
                Err(_) => failed.push((addr, HandOverFailed::Closed)),
            }
        }
        (detached, failed)
    }

    /// Resumes a connection detached here (a rollback) or in the previous process.
    pub fn adopt(&self, detached: Detached) -> std::io::Result<Connection> {
        let remote = detached.stream.peer_addr()?;
        let connection = driver::resume(detached, self.node.clone(), self.handler.clone())?;
        lock(&self.connections).insert(remote, connection.clone());
        // The driver runs already: if the connection went down before it was registered,
        // its `Down` found nothing to remove.
        if !connection.is_open() {
            lock(&self.connections).remove(&remote);
        }
        Ok(connection)
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
        // Wait until the accept task is gone: it holds the listener, and a new version
        // binding the same address right after must not find it still listening.
        self.stop_accepting().await;
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
        self.pause_accepting();
    }
}

fn lock(registry: &Registry) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Connection>> {
    registry
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn accept_loop(
    listener: Arc<TcpListener>,
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
