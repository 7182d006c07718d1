//! One connection: the [`Connection`] handle and the driver task around the sans-IO core
//! (quinn's `ConnectionDriver`): read, feed, fire timers, drain polls, repeat.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};

use super::{ConnectionEvent, Handler, Incoming, Responder};
use crate::dictionary::DisconnectCause;
use crate::error::DecodeError;
use crate::message::Message;
use crate::messages::ErrorAnswer;
use crate::peer::{
    AnswerTicket, DownReason, Event, Node, Peer, PeerInfo, RequestFailure, Role, SendError,
};
use crate::result_code::ResultCode;

/// Why a request got no answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// No answer within the timeout.
    #[error("request timed out")]
    TimedOut,
    /// The connection went down before the answer came (re-send elsewhere with the T flag).
    #[error("connection lost before the answer")]
    ConnectionDown,
    /// The connection is not open.
    #[error("connection not open")]
    NotOpen,
    /// The bytes are not a request.
    #[error("not an encoded request")]
    NotARequest,
}

pub(crate) enum Command {
    Request {
        request: Bytes,
        timeout: Option<Duration>,
        reply: oneshot::Sender<Result<Message, RequestError>>,
    },
    Answer {
        ticket: AnswerTicket,
        answer: Bytes,
    },
    Reject {
        ticket: AnswerTicket,
        request: Message,
        error: DecodeError,
    },
    Unanswered {
        ticket: AnswerTicket,
        request: Message,
    },
    Disconnect(DisconnectCause),
}

/// What a handle can see of the connection's state.
#[derive(Clone, Debug)]
pub(crate) enum Status {
    Connecting,
    Open(Arc<PeerInfo>),
    Down(DownReason),
}

/// A handle to one connection: cheap to clone, usable from any task.
#[derive(Clone, Debug)]
pub struct Connection {
    commands: mpsc::UnboundedSender<Command>,
    permits: Arc<Semaphore>,
    status: watch::Receiver<Status>,
    node: Arc<Node>,
    local: SocketAddr,
    remote: SocketAddr,
}

impl Connection {
    /// The node this connection belongs to (its configuration and End-to-End ids).
    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// Our end of the socket.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The other end.
    pub fn peer_addr(&self) -> SocketAddr {
        self.remote
    }

    /// The remote peer, once the capabilities exchange succeeded.
    pub fn peer(&self) -> Option<Arc<PeerInfo>> {
        match &*self.status.borrow() {
            Status::Open(info) => Some(info.clone()),
            _ => None,
        }
    }

    /// Whether the connection is open.
    pub fn is_open(&self) -> bool {
        matches!(*self.status.borrow(), Status::Open(_))
    }

    /// Why the connection went down, once it has.
    pub fn down_reason(&self) -> Option<DownReason> {
        match &*self.status.borrow() {
            Status::Down(reason) => Some(reason.clone()),
            _ => None,
        }
    }

    /// Waits until the capabilities exchange is done (Ok) or the connection is down (Err).
    pub async fn wait_open(&self) -> Result<Arc<PeerInfo>, DownReason> {
        let mut status = self.status.clone();
        loop {
            match &*status.borrow_and_update() {
                Status::Open(info) => return Ok(info.clone()),
                Status::Down(reason) => return Err(reason.clone()),
                Status::Connecting => {}
            }
            if status.changed().await.is_err() {
                return Err(DownReason::TransportClosed);
            }
        }
    }

    /// Waits until the connection is down, and returns why.
    pub async fn closed(&self) -> DownReason {
        let mut status = self.status.clone();
        loop {
            if let Status::Down(reason) = &*status.borrow_and_update() {
                return reason.clone();
            }
            if status.changed().await.is_err() {
                return DownReason::TransportClosed;
            }
        }
    }

    /// Sends a request and waits for its answer. The request is encoded by the caller with
    /// any hop-by-hop id (the connection assigns its own) and an End-to-End id from
    /// `node().end_to_end`. Waits for a slot when the connection has its maximum of
    /// requests outstanding. `timeout` None uses the configured default.
    pub async fn request(
        &self,
        request: Bytes,
        timeout: Option<Duration>,
    ) -> Result<Message, RequestError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| RequestError::NotOpen)?;
        self.request_with_permit(request, timeout, permit).await
    }

    async fn request_with_permit(
        &self,
        request: Bytes,
        timeout: Option<Duration>,
        _permit: OwnedSemaphorePermit,
    ) -> Result<Message, RequestError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Request {
                request,
                timeout,
                reply,
            })
            .map_err(|_| RequestError::NotOpen)?;
        answer.await.unwrap_or(Err(RequestError::ConnectionDown))
    }

    /// Starts an orderly close with DPR.
    pub fn disconnect(&self, cause: DisconnectCause) {
        let _ = self.commands.send(Command::Disconnect(cause));
    }
}

/// Starts the tasks of one connection over `stream`; returns its handle.
pub(crate) fn spawn(
    stream: TcpStream,
    node: Arc<Node>,
    role: Role,
    handler: Arc<dyn Handler>,
) -> std::io::Result<Connection> {
    stream.set_nodelay(true)?;
    let local = stream.local_addr()?;
    let remote = stream.peer_addr()?;
    let (commands, command_rx) = mpsc::unbounded_channel();
    let (status_tx, status) = watch::channel(Status::Connecting);
    let connection = Connection {
        commands,
        permits: Arc::new(Semaphore::new(node.config.max_pending_requests)),
        status,
        node: node.clone(),
        local,
        remote,
    };
    let seed = fastrand::u64(..);
    let peer = Peer::new(node, role, Instant::now(), seed);
    let driver = Driver {
        peer,
        handler,
        connection: connection.clone(),
        status: status_tx,
        waiters: HashMap::new(),
    };
    tokio::spawn(driver.run(stream, command_rx));
    Ok(connection)
}

struct Driver {
    peer: Peer,
    handler: Arc<dyn Handler>,
    connection: Connection,
    status: watch::Sender<Status>,
    waiters: HashMap<u32, oneshot::Sender<Result<Message, RequestError>>>,
}

impl Driver {
    async fn run(mut self, stream: TcpStream, mut commands: mpsc::UnboundedReceiver<Command>) {
        let (mut reader, writer) = stream.into_split();
        let (out_tx, out_rx) = mpsc::unbounded_channel::<Bytes>();
        let writer = tokio::spawn(write_loop(writer, out_rx));
        let mut input = BytesMut::with_capacity(64 * 1024);
        let timer = tokio::time::sleep(Duration::from_secs(3600));
        tokio::pin!(timer);
        let mut reading = true;
        loop {
            self.flush(&out_tx);
            if self.peer.is_closed() {
                break;
            }
            if let Some(deadline) = self.peer.poll_timeout() {
                timer
                    .as_mut()
                    .reset(tokio::time::Instant::from_std(deadline));
            }
            if input.capacity() - input.len() < 8 * 1024 {
                input.reserve(64 * 1024);
            }
            tokio::select! {
                read = reader.read_buf(&mut input), if reading => match read {
                    Ok(0) | Err(_) => {
                        reading = false;
                        self.peer.handle_transport_closed();
                    }
                    Ok(_) => self.peer.handle_input(Instant::now(), &mut input),
                },
                command = commands.recv() => match command {
                    Some(command) => {
                        self.handle_command(command);
                        // Take everything queued: one write for many answers under load.
                        while let Ok(command) = commands.try_recv() {
                            self.handle_command(command);
                        }
                    }
                    // Every handle is gone: nobody can use this connection any more.
                    None => self.peer.disconnect(Instant::now(), DisconnectCause::DO_NOT_WANT_TO_TALK_TO_YOU),
                },
                () = &mut timer => self.peer.handle_timeout(Instant::now()),
            }
        }
        drop(out_tx);
        // Let the last bytes (a DPA, an error CEA) leave before the socket closes.
        let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
        // Requests queued after the close never reached the core.
        commands.close();
        while let Ok(command) = commands.try_recv() {
            if let Command::Request { reply, .. } = command {
                let _ = reply.send(Err(RequestError::ConnectionDown));
            }
        }
    }

    fn handle_command(&mut self, command: Command) {
        let now = Instant::now();
        match command {
            Command::Request {
                request,
                timeout,
                reply,
            } => match self.peer.send_request(now, &request, timeout) {
                Ok(hop) => {
                    self.waiters.insert(hop.0, reply);
                }
                Err(error) => {
                    let _ = reply.send(Err(match error {
                        SendError::NotARequest => RequestError::NotARequest,
                        _ => RequestError::NotOpen,
                    }));
                }
            },
            Command::Answer { ticket, answer } => {
                let _ = self.peer.answer(ticket, &answer);
            }
            Command::Reject {
                ticket,
                request,
                error,
            } => {
                let _ = self.peer.answer_decode_error(ticket, &request, &error);
            }
            Command::Unanswered { ticket, request } => {
                let node = self.peer.node().clone();
                let config = &node.config;
                let mut out = BytesMut::new();
                ErrorAnswer::reply(
                    &request.view(),
                    &config.origin_host,
                    &config.origin_realm,
                    ResultCode::UNABLE_TO_COMPLY,
                    "the application dropped the request unanswered",
                    &mut out,
                );
                let _ = self.peer.answer(ticket, &out);
            }
            Command::Disconnect(cause) => self.peer.disconnect(now, cause),
        }
    }

    /// Hands output to the writer and events to their owners.
    fn flush(&mut self, out: &mpsc::UnboundedSender<Bytes>) {
        loop {
            if let Some(bytes) = self.peer.poll_transmit() {
                let _ = out.send(bytes);
            }
            let Some(event) = self.peer.poll_event() else {
                break;
            };
            self.dispatch(event);
        }
        if let Some(bytes) = self.peer.poll_transmit() {
            let _ = out.send(bytes);
        }
    }

    fn dispatch(&mut self, event: Event) {
        match event {
            Event::Up(info) => {
                self.status.send_replace(Status::Open(info.clone()));
                tracing::debug!(peer = %info.origin_host, addr = %self.connection.remote, "connection up");
                self.handler
                    .on_event(&self.connection, &ConnectionEvent::Up(info));
            }
            Event::Request(request) => {
                let Some(peer) = self.peer.remote().cloned() else {
                    return;
                };
                let responder = Responder {
                    ticket: request.ticket,
                    request: request.message.clone(),
                    commands: self.connection.commands.clone(),
                    answered: false,
                };
                let incoming = Incoming {
                    message: request.message,
                    peer,
                    responder,
                };
                self.handler.on_request(&self.connection, incoming);
            }
            Event::Answer {
                hop_by_hop,
                message,
            } => {
                if let Some(waiter) = self.waiters.remove(&hop_by_hop.0) {
                    let _ = waiter.send(Ok(message));
                }
            }
            Event::RequestFailed {
                hop_by_hop, reason, ..
            } => {
                if let Some(waiter) = self.waiters.remove(&hop_by_hop.0) {
                    let _ = waiter.send(Err(match reason {
                        RequestFailure::TimedOut => RequestError::TimedOut,
                        RequestFailure::ConnectionDown => RequestError::ConnectionDown,
                    }));
                }
            }
            Event::Suspect => self
                .handler
                .on_event(&self.connection, &ConnectionEvent::Suspect),
            Event::Recovered => self
                .handler
                .on_event(&self.connection, &ConnectionEvent::Recovered),
            Event::Down(reason) => {
                match &reason {
                    DownReason::FramingError(error) => {
                        tracing::warn!(addr = %self.connection.remote, %error, "closing: framing error")
                    }
                    reason => {
                        tracing::debug!(addr = %self.connection.remote, ?reason, "connection down")
                    }
                }
                self.status.send_replace(Status::Down(reason.clone()));
                self.connection.permits.close();
                self.handler
                    .on_event(&self.connection, &ConnectionEvent::Down(reason));
            }
        }
    }
}

/// Writes whatever the driver produced; everything queued goes out in one write.
async fn write_loop(mut writer: OwnedWriteHalf, mut out: mpsc::UnboundedReceiver<Bytes>) {
    let mut batch = BytesMut::new();
    while let Some(first) = out.recv().await {
        let result = match out.try_recv() {
            Err(_) => writer.write_all(&first).await,
            Ok(second) => {
                batch.extend_from_slice(&first);
                batch.extend_from_slice(&second);
                while let Ok(more) = out.try_recv() {
                    batch.extend_from_slice(&more);
                    if batch.len() > 256 * 1024 {
                        break;
                    }
                }
                let result = writer.write_all(&batch).await;
                batch.clear();
                result
            }
        };
        if result.is_err() {
            // The reader will see the failure too and close the peer.
            return;
        }
    }
}
