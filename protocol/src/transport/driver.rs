//! One connection: the [`Connection`] handle and the driver task around the sans-IO core
//! (quinn's `ConnectionDriver`): read, feed, fire timers, drain polls, write, repeat. One
//! task per connection does all of it, so a turn of the loop ends in one (vectored) write
//! of everything it produced.

use std::collections::{HashMap, VecDeque};
use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;
use tokio::io::Interest;
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

/// An answer and when it arrived (see [`Connection::request_timed`]).
#[derive(Debug)]
pub struct Answered {
    /// The answer.
    pub message: Message,
    /// When the read that completed the answer returned.
    pub read_at: Instant,
}

pub(crate) enum Command {
    Request {
        request: Bytes,
        timeout: Option<Duration>,
        reply: oneshot::Sender<Result<Answered, RequestError>>,
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

/// A handle to one connection: cheap to clone (one reference count: the gateway clones
/// one per request, and four counts shared by every worker thread were a measurable cost),
/// usable from any task.
#[derive(Clone, Debug)]
pub struct Connection {
    inner: Arc<Handle>,
}

#[derive(Debug)]
pub(crate) struct Handle {
    pub(crate) commands: mpsc::UnboundedSender<Command>,
    permits: Arc<Semaphore>,
    status: watch::Receiver<Status>,
    node: Arc<Node>,
    local: SocketAddr,
    remote: SocketAddr,
}

impl Connection {
    /// The command queue of the connection's driver.
    pub(crate) fn commands(&self) -> &mpsc::UnboundedSender<Command> {
        &self.inner.commands
    }

    /// The node this connection belongs to (its configuration and End-to-End ids).
    pub fn node(&self) -> &Arc<Node> {
        &self.inner.node
    }

    /// Our end of the socket.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local
    }

    /// The other end.
    pub fn peer_addr(&self) -> SocketAddr {
        self.inner.remote
    }

    /// The remote peer, once the capabilities exchange succeeded.
    pub fn peer(&self) -> Option<Arc<PeerInfo>> {
        match &*self.inner.status.borrow() {
            Status::Open(info) => Some(info.clone()),
            _ => None,
        }
    }

    /// Whether the connection is open.
    pub fn is_open(&self) -> bool {
        matches!(*self.inner.status.borrow(), Status::Open(_))
    }

    /// Why the connection went down, once it has.
    pub fn down_reason(&self) -> Option<DownReason> {
        match &*self.inner.status.borrow() {
            Status::Down(reason) => Some(reason.clone()),
            _ => None,
        }
    }

    /// Waits until the capabilities exchange is done (Ok) or the connection is down (Err).
    pub async fn wait_open(&self) -> Result<Arc<PeerInfo>, DownReason> {
        let mut status = self.inner.status.clone();
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
        let mut status = self.inner.status.clone();
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
        self.request_timed(request, timeout)
            .await
            .map(|answered| answered.message)
    }

    /// [`request`](Self::request), with the time the answer arrived: when the read that
    /// completed it returned, before this task was woken and ran. A load generator measures
    /// latency to that moment; the delay between it and the caller running again is the
    /// caller's own scheduling, not the peer's.
    pub async fn request_timed(
        &self,
        request: Bytes,
        timeout: Option<Duration>,
    ) -> Result<Answered, RequestError> {
        let permit = self
            .inner
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
    ) -> Result<Answered, RequestError> {
        let (reply, answer) = oneshot::channel();
        self.inner
            .commands
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
        let _ = self.inner.commands.send(Command::Disconnect(cause));
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
        inner: Arc::new(Handle {
            commands,
            permits: Arc::new(Semaphore::new(node.config.max_pending_requests)),
            status,
            node,
            local,
            remote,
        }),
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
        read_at: Instant::now(),
        hand_over: None,
        disconnecting: None,
    };
    tokio::spawn(driver.run(stream, command_rx, resumed.unread, resumed.unwritten));
    Ok(connection)
}

struct Driver {
    peer: Peer,
    handler: Arc<dyn Handler>,
    connection: Connection,
    status: watch::Sender<Status>,
    waiters: HashMap<u32, oneshot::Sender<Result<Answered, RequestError>>>,
    /// When the last read returned: the arrival time of the answers it completed.
    read_at: Instant,
    /// A hand-over asked for: reading stopped; done once every request received is answered.
    hand_over: Option<(oneshot::Sender<Result<Detached, HandOverFailed>>, Instant)>,
    /// An orderly close asked for while requests received were unanswered: reading paused,
    /// the DPR goes once they are answered (or after [`QUIESCE_TIMEOUT`]). Sent at once, it
    /// would make the peer fail them and send them elsewhere while they are processed
    /// here: a restarted PDF charged a re-sent CCR-EVENT twice that way.
    disconnecting: Option<(DisconnectCause, Instant)>,
}

/// How long a hand-over or an orderly close waits for the application to answer what it has
/// received.
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
        let mut output = Output::default();
        output.push(unwritten);
        let mut input = BytesMut::with_capacity(64 * 1024);
        input.extend_from_slice(&unread);
        if !input.is_empty() {
            self.peer.handle_input(Instant::now(), &mut input);
        }
        let timer = tokio::time::sleep(Duration::from_secs(3600));
        tokio::pin!(timer);
        let mut reading = true;
        loop {
            self.flush(&mut output);
            if !output.is_empty() {
                // Once to the back of the run queue before writing: the tasks that became
                // ready with this turn's input (a gateway's ACR tasks, a loadgen's sessions)
                // queue their messages first, and one write takes them all. Each write on
                // loopback runs the receiver's TCP path and wakes it: at 80,000
                // transactions/s this cut the CPU per transaction by 11% and the median
                // latency from 3-5 ms to 1 ms (BENCHMARKS.md).
                tokio::task::yield_now().await;
                while let Ok(command) = commands.try_recv() {
                    self.handle_command(command);
                }
                self.flush(&mut output);
            }
            // Written here, not by a task of its own: one write per turn of the loop for
            // everything it produced (a writer task cost a wake-up and a copy per batch).
            if let Err(error) = output.write(&stream) {
                tracing::debug!(addr = %self.connection.inner.remote, %error, "write failed");
                output.clear();
                reading = false;
                self.peer.handle_transport_closed();
                continue;
            }
            if self.peer.is_closed() {
                break;
            }
            if let Some((_, since)) = &self.hand_over {
                reading = false;
                if self.quiesced(*since) {
                    let (reply, _) = self.hand_over.take().expect("checked above");
                    match self.peer.hand_over(Instant::now()) {
                        Ok(state) => {
                            let detached = finish_hand_over(stream, output, input, state).await;
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
            if let Some((cause, since)) = self.disconnecting {
                if self.quiesced(since) || !self.peer.is_open() {
                    self.disconnecting = None;
                    self.peer.disconnect(Instant::now(), cause);
                    continue;
                }
            }
            // Paused while a close waits for the answers: what the peer sends meanwhile is
            // read after the DPR (and refused: the core does not deliver requests then).
            let reading_now = reading && self.disconnecting.is_none();
            if let Some(deadline) = self.peer.poll_timeout() {
                let deadline = if self.hand_over.is_some() || self.disconnecting.is_some() {
                    deadline.min(Instant::now() + Duration::from_millis(10))
                } else {
                    deadline
                };
                timer
                    .as_mut()
                    .reset(tokio::time::Instant::from_std(deadline));
            }
            if input.capacity() - input.len() < 8 * 1024 {
                input.reserve(64 * 1024);
            }
            let interest = match (reading_now, output.is_empty()) {
                (true, true) => Some(Interest::READABLE),
                (true, false) => Some(Interest::READABLE | Interest::WRITABLE),
                (false, false) => Some(Interest::WRITABLE),
                (false, true) => None,
            };
            tokio::select! {
                ready = stream.ready(interest.unwrap_or(Interest::READABLE)), if interest.is_some() => match ready {
                    // Writable: the next turn writes.
                    Ok(ready) if reading_now && (ready.is_readable() || ready.is_read_closed() || ready.is_error()) => {
                        match stream.try_read_buf(&mut input) {
                            Ok(0) => {
                                reading = false;
                                self.peer.handle_transport_closed();
                            }
                            Ok(_) => {
                                self.read_at = Instant::now();
                                self.peer.handle_input(self.read_at, &mut input);
                            }
                            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
                            Err(_) => {
                                reading = false;
                                self.peer.handle_transport_closed();
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(_) => {
                        reading = false;
                        self.peer.handle_transport_closed();
                    }
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
        // Let the last bytes (a DPA, an error CEA) leave before the socket closes.
        let _ = tokio::time::timeout(Duration::from_secs(2), output.write_all(&stream)).await;
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
                tracing::warn!(addr = %self.connection.inner.remote, %error, "hand-over failed: the socket is unusable");
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

    /// Whether a hand-over or a close waiting since `since` may go on: every request
    /// received is answered, or the application had [`QUIESCE_TIMEOUT`] to answer them.
    fn quiesced(&self, since: Instant) -> bool {
        self.peer.requests_in_flight() == 0 || since.elapsed() >= QUIESCE_TIMEOUT
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
            Command::Disconnect(cause) => {
                if self.peer.is_open() && self.peer.requests_in_flight() > 0 {
                    self.disconnecting.get_or_insert((cause, now));
                } else {
                    self.peer.disconnect(now, cause);
                }
            }
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

    /// Queues the core's output and hands events to their owners.
    fn flush(&mut self, out: &mut Output) {
        loop {
            if let Some(bytes) = self.peer.poll_transmit() {
                out.push(bytes);
            }
            let Some(event) = self.peer.poll_event() else {
                break;
            };
            self.dispatch(event);
        }
        if let Some(bytes) = self.peer.poll_transmit() {
            out.push(bytes);
        }
    }

    fn dispatch(&mut self, event: Event) {
        match event {
            Event::Up(info) => {
                self.status.send_replace(Status::Open(info.clone()));
                tracing::debug!(peer = %info.origin_host, addr = %self.connection.inner.remote, "connection up");
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
                    commands: self.connection.inner.commands.clone(),
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
                    let _ = waiter.send(Ok(Answered {
                        message,
                        read_at: self.read_at,
                    }));
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
                        tracing::warn!(addr = %self.connection.inner.remote, %error, "closing: framing error")
                    }
                    reason => {
                        tracing::debug!(addr = %self.connection.inner.remote, ?reason, "connection down")
                    }
                }
                self.went_down(reason);
            }
        }
    }

    /// Tells the handles and the application that the connection is gone, and why.
    fn went_down(&mut self, reason: DownReason) {
        self.status.send_replace(Status::Down(reason.clone()));
        self.connection.inner.permits.close();
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

/// Gives the output [`FLUSH_TIMEOUT`] to leave, then hands the socket over with what was
/// neither read into a message nor written.
async fn finish_hand_over(
    stream: TcpStream,
    mut output: Output,
    input: BytesMut,
    state: PeerState,
) -> std::io::Result<Detached> {
    // Out of time: what is left travels with the socket.
    if let Ok(Err(error)) = tokio::time::timeout(FLUSH_TIMEOUT, output.write_all(&stream)).await {
        return Err(error);
    }
    Ok(Detached {
        stream: stream.into_std()?,
        unread: input.freeze(),
        unwritten: output.into_bytes(),
        state,
    })
}

/// Output not yet written: the core's transmits as they came (no copy), written with one
/// vectored write.
#[derive(Default)]
struct Output {
    chunks: VecDeque<Bytes>,
}

/// The most slices one write takes (Linux's UIO_MAXIOV is 1024).
const MAX_SLICES: usize = 64;

impl Output {
    fn push(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            self.chunks.push_back(bytes);
        }
    }

    fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    fn clear(&mut self) {
        self.chunks.clear();
    }

    /// Writes until everything is written or the socket would block.
    fn write(&mut self, stream: &TcpStream) -> std::io::Result<()> {
        while !self.chunks.is_empty() {
            let slices: SmallVec<[IoSlice<'_>; MAX_SLICES]> = self
                .chunks
                .iter()
                .take(MAX_SLICES)
                .map(|chunk| IoSlice::new(chunk))
                .collect();
            let written = stream.try_write_vectored(&slices);
            drop(slices);
            match written {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => self.advance(n),
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// Writes everything, waiting for the socket as needed.
    async fn write_all(&mut self, stream: &TcpStream) -> std::io::Result<()> {
        loop {
            self.write(stream)?;
            if self.is_empty() {
                return Ok(());
            }
            stream.writable().await?;
        }
    }

    fn advance(&mut self, mut written: usize) {
        while written > 0 {
            let Some(front) = self.chunks.front_mut() else {
                return;
            };
            if written < front.len() {
                let _ = front.split_to(written);
                return;
            }
            written -= front.len();
            self.chunks.pop_front();
        }
    }

    /// What is left, in one piece (a hand-over carries it).
    fn into_bytes(self) -> Bytes {
        let mut all = BytesMut::with_capacity(self.chunks.iter().map(Bytes::len).sum());
        for chunk in self.chunks {
            all.extend_from_slice(&chunk);
        }
        all.freeze()
    }
}
