//! The client side: connect to a peer, run the connection, and reconnect when it drops
//! (RFC 6733 section 2.1: the Tc timer paces connection attempts; default 30 s), with
//! exponential backoff and jitter so that many clients do not reconnect in step.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::driver::{self, Connection, RequestError};
use super::Handler;
use crate::dictionary::DisconnectCause;
use crate::message::Message;
use crate::peer::{DownReason, Node, Role};

/// How a client connects and reconnects.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Tc: the longest wait between connection attempts (RFC 6733 recommends 30 s).
    pub tc: Duration,
    /// The first wait after a failure; doubled each time up to Tc.
    pub initial_backoff: Duration,
    /// How long one TCP connect may take.
    pub connect_timeout: Duration,
    /// Whether to reconnect at all after the connection ends.
    pub reconnect: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            tc: Duration::from_secs(30),
            initial_backoff: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(5),
            reconnect: true,
        }
    }
}

/// A client connection that keeps itself connected.
#[derive(Debug)]
pub struct Client {
    current: watch::Receiver<Option<Connection>>,
    task: JoinHandle<()>,
}

impl Client {
    /// Starts connecting to `addr` in the background.
    pub fn start(
        addr: SocketAddr,
        node: Arc<Node>,
        handler: Arc<dyn Handler>,
        options: ClientOptions,
    ) -> Self {
        let (current_tx, current) = watch::channel(None);
        let task = tokio::spawn(supervise(addr, node, handler, options, current_tx));
        Self { current, task }
    }

    /// The current connection, if one is up or being set up.
    pub fn connection(&self) -> Option<Connection> {
        self.current.borrow().clone()
    }

    /// Waits until a connection is open, for at most `timeout`.
    pub async fn wait_open(&self, timeout: Duration) -> Option<Connection> {
        let mut current = self.current.clone();
        let wait = async {
            loop {
                let connection = current.borrow_and_update().clone();
                if let Some(connection) = connection {
                    if connection.wait_open().await.is_ok() {
                        return connection;
                    }
                }
                if current.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.ok()
    }

    /// Sends a request on the current connection (fails at once with NotOpen when there is
    /// none: the caller decides whether to retry elsewhere).
    pub async fn request(
        &self,
        request: Bytes,
        timeout: Option<Duration>,
    ) -> Result<Message, RequestError> {
        let connection = self.connection().ok_or(RequestError::NotOpen)?;
        if !connection.is_open() {
            return Err(RequestError::NotOpen);
        }
        connection.request(request, timeout).await
    }

    /// Stops reconnecting, sends DPR with `cause` and waits (bounded by the disconnect
    /// timeout) until the connection is closed.
    pub async fn close(self, cause: DisconnectCause) {
        self.task.abort();
        if let Some(connection) = self.connection() {
            connection.disconnect(cause);
            let limit = connection.node().config.disconnect_timeout + Duration::from_secs(1);
            let _ = tokio::time::timeout(limit, connection.closed()).await;
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn supervise(
    addr: SocketAddr,
    node: Arc<Node>,
    handler: Arc<dyn Handler>,
    options: ClientOptions,
    current: watch::Sender<Option<Connection>>,
) {
    let mut backoff = options.initial_backoff;
    loop {
        let attempt = tokio::time::timeout(options.connect_timeout, TcpStream::connect(addr)).await;
        let reason = match attempt {
            Ok(Ok(stream)) => {
                match driver::spawn(stream, node.clone(), Role::Initiator, handler.clone()) {
                    Ok(connection) => {
                        current.send_replace(Some(connection.clone()));
                        let opened = connection.wait_open().await.is_ok();
                        let reason = connection.closed().await;
                        if opened {
                            backoff = options.initial_backoff;
                        }
                        current.send_replace(None);
                        Some(reason)
                    }
                    Err(error) => {
                        tracing::debug!(%addr, %error, "socket setup failed");
                        None
                    }
                }
            }
            Ok(Err(error)) => {
                tracing::debug!(%addr, %error, "connect failed");
                None
            }
            Err(_) => {
                tracing::debug!(%addr, "connect timed out");
                None
            }
        };
        if !options.reconnect
            || reason
                .as_ref()
                .is_some_and(|r| !DownReason::should_reconnect(r))
        {
            return;
        }
        // Jitter: between half and all of the backoff.
        let wait = backoff.mul_f64(0.5 + fastrand::f64() * 0.5);
        tokio::time::sleep(wait).await;
        backoff = (backoff * 2).min(options.tc);
    }
}
