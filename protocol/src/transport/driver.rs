//! One connection: the [`Connection`] handle and the driver task around the sans-IO core
//! (quinn's `ConnectionDriver`): read, feed, fire timers, drain polls, repeat.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};

use super::{ConnectionEvent, Handler, Incoming, Responder};
use crate::dictionary::DisconnectCause;
use crate::error::DecodeError;
use crate::message::Message;
use crate::messages::ErrorAnswer;
use crate::peer::{
    AnswerTicket, DownReason, Event, HandOverError, Node, Peer, PeerInfo, PeerState,
    RequestFailure, Role, SendError,
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
    HandOver(oneshot::Sender<Result<Detached, HandOverFailed>>),
}

/// A connection taken out of its driver for a hot upgrade (DESIGN.md section 5): the socket
/// (never shut down: closing this process's copy sends nothing while another holds it),
/// the bytes read but not yet a whole message, the bytes produced but not yet written, and
/// the core's state. [`Server::adopt`](super::Server::adopt) resumes it, here or in the
/// next process.
#[derive(Debug)]
pub struct Detached {
    /// The socket.
    pub stream: std::net::TcpStream,
    /// Received bytes not yet a whole message (a message cut by the hand-over).
    pub unread: Bytes,
    /// Output not yet written to the socket.
    pub unwritten: Bytes,
    /// The core's state.
    pub state: PeerState,
}

/// Why a connection stayed where it was.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandOverFailed {
    /// The connection is not open, or its requests were not answered in time; it keeps
    /// running here.
    #[error("connection not handed over: {0}")]
    NotQuiet(HandOverError),
    /// The connection closed before it could be handed over.
    #[error("the connection closed first")]
    Closed,
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
    pub(crate) commands: mpsc::UnboundedSender<Command>,
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
    let seed = fastrand::u64(..);
    let peer = Peer::new(node, role, Instant::now(), seed);
    start(
        stream,
        peer,
        Status::Connecting,
        handler,
        Resumed::default(),
    )
}

/// Resumes a [`Detached`] connection: writes its unwritten bytes first, then reads on from
/// its unread ones. The handler hears `Up` (the application registers the connection) but
/// the peer sees nothing: no CER, no DPR.
pub(crate) fn resume(
    detached: Detached,
    node: Arc<Node>,
    handler: Arc<dyn Handler>,
) -> std::io::Result<Connection> {
    detached.stream.set_nonblocking(true)?;
    let stream = TcpStream::from_std(detached.stream)?;
    let peer = Peer::resume(node, detached.state, Instant::now(), fastrand::u64(..));
    let info = peer
        .remote()
        .cloned()
        .expect("a resumed peer is open by construction");
    let resumed = Resumed {
        unread: detached.unread,
        unwritten: detached.unwritten,
        announce: true,
    };
    start(stream, peer, Status::Open(info), handler, resumed)
}

/// What a resumed connection starts with.
#[derive(Default)]
struct Resumed {
    unread: Bytes,
    unwritten: Bytes,
    announce: bool,
}

fn start(
    stream: TcpStream,
    peer: Peer,
    initial: Status,
    handler: Arc<dyn Handler>,
    resumed: Resumed,
) -> std::io::Result<Connection> {
    stream.set_nodelay(true)?;
    let local = stream.local_addr()?;
    let remote = stream.peer_addr()?;
    let node = peer.node().clone();
    let (commands, command_rx) = mpsc::unbounded_channel();
    let (status_tx, status) = watch::channel(initial);
    let connection = Connection {
        commands,
        permits: Arc::new(Semaphore::new(node.config.max_pending_requests)),
        status,
        node,
        local,
        remote,
    };
    if resumed.announce {
        if let Some(info) = connection.peer() {
            handler.on_event(&connection, &ConnectionEvent::Up(info));
        }
    }
    let driver = Driver {
        peer,
        handler,
        connection: connection.clone(),
        status: status_tx,
        waiters: HashMap::new(),
        hand_over: None,
    };
    tokio::spawn(driver.run(stream, command_rx, resumed.unread, resumed.unwritten));
    Ok(connection)
}

struct Driver {
    peer: Peer,
    handler: Arc<dyn Handler>,
    connection: Connection,
    status: watch::Sender<Status>,
    waiters: HashMap<u32, oneshot::Sender<Result<Message, RequestError>>>,
    /// A hand-over asked for: reading stopped; done once every request received is answered.
    hand_over: Option<(oneshot::Sender<Result<Detached, HandOverFailed>>, Instant)>,
}

/// How long a hand-over waits for the application to answer what it has received.
const QUIESCE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a hand-over waits for the socket to take the output before carrying it along.
const FLUSH_TIMEOUT: Duration = Duration::from_millis(50);

impl Driver {
    async fn run(
        mut self,
        stream: TcpStream,
        mut commands: mpsc::UnboundedReceiver<Command>,
        unread: Bytes,
        unwritten: Bytes,
    ) {
        let (mut reader, writer) = stream.into_split();
        let (out_tx, out_rx) = mpsc::unbounded_channel::<Bytes>();
        let (stop_writer, writer_stopped) = oneshot::channel();
        if !unwritten.is_empty() {
            let _ = out_tx.send(unwritten);
        }
        let writer = tokio::spawn(write_loop(writer, out_rx, writer_stopped));
        let mut input = BytesMut::with_capacity(64 * 1024);
        input.extend_from_slice(&unread);
        if !input.is_empty() {
            self.peer.handle_input(Instant::now(), &mut input);
        }
        let timer = tokio::time::sleep(Duration::from_secs(3600));
        tokio::pin!(timer);
        let mut reading = true;
        loop {
            self.flush(&out_tx);
            if self.peer.is_closed() {
                break;
            }
            if let Some((_, since)) = &self.hand_over {
                reading = false;
                let in_flight = self.peer.requests_in_flight();
                if in_flight == 0 || since.elapsed() >= QUIESCE_TIMEOUT {
                    let (reply, _) = self.hand_over.take().expect("checked above");
                    match self.peer.hand_over(Instant::now()) {
                        Ok(state) => {
                            let detached =
                                finish_hand_over(reader, writer, out_tx, stop_writer, input, state)
                                    .await;
                            return self.handed_over(reply, detached, commands);
                        }
                        Err(error) => {
                            let _ = reply.send(Err(HandOverFailed::NotQuiet(error)));
                            reading = true;
                            continue;
                        }
                    }
                }
            }
            if let Some(deadline) = self.peer.poll_timeout() {
                let deadline = match &self.hand_over {
                    Some(_) => deadline.min(Instant::now() + Duration::from_millis(10)),
                    None => deadline,
                };
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
        if let Some((reply, _)) = self.hand_over.take() {
            let _ = reply.send(Err(HandOverFailed::Closed));
        }
        refuse_queued(commands);
    }

    /// The connection left this process: tell the handles and the application, refuse what
    /// is queued.
    fn handed_over(
        mut self,
        reply: oneshot::Sender<Result<Detached, HandOverFailed>>,
        detached: std::io::Result<Detached>,
        commands: mpsc::UnboundedReceiver<Command>,
    ) {
        let (reason, outcome) = match detached {
            Ok(detached) => (DownReason::HandedOver, Ok(detached)),
            Err(error) => {
                tracing::warn!(addr = %self.connection.remote, %error, "hand-over failed: the socket is unusable");
                (DownReason::TransportClosed, Err(HandOverFailed::Closed))
            }
        };
        // Our requests still awaiting answers travel with the state (or are lost with the
        // socket): their senders here learn the connection is gone from here.
        for (_, waiter) in self.waiters.drain() {
            let _ = waiter.send(Err(RequestError::ConnectionDown));
        }
        self.went_down(reason);
        let _ = reply.send(outcome);
        refuse_queued(commands);
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
            Command::HandOver(reply) => match &self.hand_over {
                Some(_) => {
                    let _ = reply.send(Err(HandOverFailed::NotQuiet(
                        HandOverError::AlreadyHandingOver,
                    )));
                }
                None if !self.peer.is_open() => {
                    let _ = reply.send(Err(HandOverFailed::NotQuiet(HandOverError::NotOpen)));
                }
                None => self.hand_over = Some((reply, now)),
            },
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
                self.went_down(reason);
            }
        }
    }

    /// Tells the handles and the application that the connection is gone, and why.
    fn went_down(&mut self, reason: DownReason) {
        self.status.send_replace(Status::Down(reason.clone()));
        self.connection.permits.close();
        self.handler
            .on_event(&self.connection, &ConnectionEvent::Down(reason));
    }
}

/// Requests queued after the close never reached the core.
fn refuse_queued(mut commands: mpsc::UnboundedReceiver<Command>) {
    commands.close();
    while let Ok(command) = commands.try_recv() {
        match command {
            Command::Request { reply, .. } => {
                let _ = reply.send(Err(RequestError::ConnectionDown));
            }
            Command::HandOver(reply) => {
                let _ = reply.send(Err(HandOverFailed::Closed));
            }
            _ => {}
        }
    }
}

/// Stops the writer (giving it [`FLUSH_TIMEOUT`] to write what it holds) and puts the socket
/// back together with what was neither read into a message nor written.
async fn finish_hand_over(
    reader: OwnedReadHalf,
    writer: tokio::task::JoinHandle<WriterEnd>,
    out: mpsc::UnboundedSender<Bytes>,
    stop_writer: oneshot::Sender<()>,
    input: BytesMut,
    state: PeerState,
) -> std::io::Result<Detached> {
    drop(out);
    let mut writer = writer;
    let end = match tokio::time::timeout(FLUSH_TIMEOUT, &mut writer).await {
        Ok(end) => end,
        Err(_) => {
            let _ = stop_writer.send(());
            writer.await
        }
    }
    .map_err(std::io::Error::other)?;
    if let Some(error) = end.error {
        return Err(error);
    }
    let stream = reader
        .reunite(end.half)
        .map_err(std::io::Error::other)?
        .into_std()?;
    Ok(Detached {
        stream,
        unread: input.freeze(),
        unwritten: end.unwritten.freeze(),
        state,
    })
}

/// What the writer leaves: the socket's write half, what it could not write yet, and the
/// error that stopped it, if one did.
struct WriterEnd {
    half: OwnedWriteHalf,
    unwritten: BytesMut,
    error: Option<std::io::Error>,
}

/// Writes whatever the driver produced; everything queued goes out in one write. Ends when
/// the driver is done and everything is written, or when told to stop (a hand-over), or on
/// an error; in each case it returns the write half and what is left.
async fn write_loop(
    mut half: OwnedWriteHalf,
    mut out: mpsc::UnboundedReceiver<Bytes>,
    mut stop: oneshot::Receiver<()>,
) -> WriterEnd {
    let mut batch = BytesMut::new();
    loop {
        if batch.is_empty() {
            tokio::select! {
                biased;
                next = out.recv() => match next {
                    Some(bytes) => batch.extend_from_slice(&bytes),
                    None => break,
                },
                _ = &mut stop => break,
            }
        }
        while batch.len() < 256 * 1024 {
            match out.try_recv() {
                Ok(more) => batch.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        // `write_buf` is cancel-safe: it writes once and advances the buffer by what went.
        tokio::select! {
            biased;
            written = half.write_buf(&mut batch) => match written {
                Ok(0) => {
                    let error = std::io::Error::from(std::io::ErrorKind::WriteZero);
                    return WriterEnd { half, unwritten: batch, error: Some(error) };
                }
                Ok(_) => {}
                // The reader will see the failure too and close the peer.
                Err(error) => return WriterEnd { half, unwritten: batch, error: Some(error) },
            },
            _ = &mut stop => break,
        }
    }
    // Stopped for a hand-over: what is still queued travels too, after the batch.
    while let Ok(more) = out.try_recv() {
        batch.extend_from_slice(&more);
    }
    WriterEnd {
        half,
        unwritten: batch,
        error: None,
    }
}
