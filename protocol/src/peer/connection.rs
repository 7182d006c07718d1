//! [`Peer`]: the state machine of one connection (RFC 6733 section 5.6, simplified to the
//! states one connection goes through once the transport is up).
//!
//! ```text
//!   Responder: WaitCer --CER ok--> Open --DPR sent--> Closing --DPA--> Closed
//!   Initiator: WaitCea --CEA ok--> Open --DPR received, watchdog, error--> Closed
//! ```
//!
//! Each state holds only its own data. Output accumulates in one buffer, so many messages
//! leave in one write under load.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::capabilities::{self, Verdict};
use super::duplicates::{DuplicateKey, Seen};
use super::pending::{PendingRequest, PendingRequests};
use super::watchdog::{Watchdog, WatchdogAction};
use super::{DownReason, Event, Node, PeerInfo, RequestFailure, Role};
use crate::dictionary::{self, DisconnectCause};
use crate::error::DecodeError;
use crate::framing::frame_length;
use crate::grammar::{Command, Envelope};
use crate::header::{ApplicationId, CommandCode, Header, HopByHopId, HEADER_LEN};
use crate::message::{Message, MessageView};
use crate::messages::{encode_error_answer, Dpa, Dpr, Dwa, Dwr, ErrorAnswer};
use crate::result_code::ResultCode;

/// The connection's state.
#[derive(Debug)]
enum State {
    /// Responder, waiting for the peer's CER until the deadline.
    WaitCer { deadline: Instant },
    /// Initiator, CER sent, waiting for CEA until the deadline.
    WaitCea { deadline: Instant, hop: HopByHopId },
    /// Capabilities exchanged.
    Open(Open),
    /// We sent DPR; waiting for DPA until the deadline.
    Closing {
        open: Open,
        deadline: Instant,
        cause: DisconnectCause,
        hop: HopByHopId,
    },
    /// Done: flush the output and close the socket.
    Closed,
}

/// The data of an open connection.
#[derive(Debug)]
struct Open {
    remote: Arc<PeerInfo>,
    watchdog: Watchdog,
    /// The hop-by-hop id of our outstanding DWR.
    dwr: Option<HopByHopId>,
}

/// Counters, for metrics.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct PeerStats {
    /// Requests we sent.
    pub requests_sent: u64,
    /// Answers to our requests.
    pub answers_received: u64,
    /// Answers matching no pending request (late, or bogus): dropped.
    pub unknown_answers: u64,
    /// Our requests that timed out.
    pub requests_timed_out: u64,
    /// Requests received and handed to the application.
    pub requests_received: u64,
    /// Answers we sent to the application's requests.
    pub answers_sent: u64,
    /// Requests answered with an error by the peer layer itself.
    pub errors_answered: u64,
    /// Requests refused with 3004 because too many were in flight.
    pub busy_answered: u64,
    /// Retransmissions answered from the duplicate cache.
    pub duplicates_answered: u64,
    /// Retransmissions of a request still being processed, handed to the application.
    pub duplicates_in_progress: u64,
}

/// An open connection's core as it travels to another process in a hot upgrade (DESIGN.md
/// section 5): the peer learnt in the capabilities exchange, the next hop-by-hop id, the
/// requests of ours still awaiting an answer (so their answers are recognised on the other
/// side), and the counters. The watchdog restarts on resumption: traffic resumes at once.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct PeerState {
    /// The remote Origin-Host.
    pub origin_host: String,
    /// The remote Origin-Realm.
    pub origin_realm: String,
    /// The remote Origin-State-Id, if it sent one.
    pub origin_state_id: Option<u32>,
    /// The remote Product-Name.
    pub product_name: String,
    /// The applications both sides support.
    pub applications: Vec<u32>,
    /// The last hop-by-hop id used (the next one is this plus one).
    pub last_hop_by_hop: u32,
    /// Our requests awaiting an answer (a DWA is recognised by its command alone).
    pub pending: Vec<PendingState>,
    /// The counters so far.
    pub stats: PeerStats,
}

/// One of our requests awaiting an answer, in a [`PeerState`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct PendingState {
    /// Its hop-by-hop id.
    pub hop_by_hop: u32,
    /// Its command code.
    pub command: u32,
    /// Its End-to-End id.
    pub end_to_end: u32,
    /// Milliseconds left before it times out.
    pub remaining_ms: u64,
}

/// Why a connection cannot be handed over now.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandOverError {
    /// Only an open connection travels (one still exchanging capabilities or closing ends
    /// where it is).
    #[error("the connection is not open")]
    NotOpen,
    /// Requests received are still being processed: answer them first.
    #[error("{0} requests received are not answered yet")]
    RequestsInFlight(usize),
    /// Output is waiting for `poll_transmit`.
    #[error("output not yet transmitted")]
    OutputQueued,
    /// A hand-over of this connection is already under way.
    #[error("a hand-over is already under way")]
    AlreadyHandingOver,
}

/// Why a request could not be sent.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The connection is not open (capabilities not exchanged yet, closing or closed).
    #[error("the connection is not open")]
    NotOpen,
    /// Too many requests outstanding on this connection.
    #[error("too many requests outstanding ({0})")]
    Backpressure(usize),
    /// The bytes are not a request message.
    #[error("not an encoded request")]
    NotARequest,
}

/// What the peer needs to answer a request: its header and its duplicate-cache key.
#[derive(Clone, Copy, Debug)]
pub struct AnswerTicket {
    header: Header,
    duplicate: Option<DuplicateKey>,
}

impl AnswerTicket {
    /// The envelope of the answer: same application and identifiers as the request.
    pub fn envelope(&self) -> Envelope {
        Envelope::answer_to(&self.header)
    }

    /// The request's header.
    pub fn header(&self) -> &Header {
        &self.header
    }
}

/// A request for the application, with the ticket to answer it.
#[derive(Debug)]
pub struct IncomingRequest {
    /// The request.
    pub message: Message,
    /// Pass back to [`Peer::answer`].
    pub ticket: AnswerTicket,
}

/// One Diameter connection, without IO.
#[derive(Debug)]
pub struct Peer {
    node: Arc<Node>,
    state: State,
    next_hop: u32,
    pending: PendingRequests,
    incoming_in_flight: usize,
    out: BytesMut,
    events: VecDeque<Event>,
    stats: PeerStats,
    seed: u64,
}

impl Peer {
    /// A new connection. An initiator queues its CER at once. `seed` drives the watchdog
    /// jitter and the first hop-by-hop id.
    pub fn new(node: Arc<Node>, role: Role, now: Instant, seed: u64) -> Self {
        let deadline = now + node.config.capabilities_timeout;
        let mut peer = Self {
            node,
            state: State::WaitCer { deadline },
            next_hop: (seed as u32) ^ 0x5bd1_e995,
            pending: PendingRequests::default(),
            incoming_in_flight: 0,
            out: BytesMut::with_capacity(4096),
            events: VecDeque::new(),
            stats: PeerStats::default(),
            seed,
        };
        if role == Role::Initiator {
            let hop = peer.next_hop();
            let end_to_end = peer.node.end_to_end.next();
            capabilities::write_cer(&peer.node.config, hop, end_to_end, &mut peer.out);
            peer.state = State::WaitCea { deadline, hop };
        }
        peer
    }

    /// The node this connection belongs to.
    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// The remote peer, once the capabilities exchange succeeded.
    pub fn remote(&self) -> Option<&Arc<PeerInfo>> {
        match &self.state {
            State::Open(open) | State::Closing { open, .. } => Some(&open.remote),
            _ => None,
        }
    }

    /// Whether application messages can be sent.
    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open(_))
    }

    /// Whether the connection is finished (flush the output, then close the socket).
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// The counters.
    pub fn stats(&self) -> PeerStats {
        self.stats
    }

    /// Requests of ours awaiting an answer.
    pub fn pending_requests(&self) -> usize {
        self.pending.len()
    }

    /// The watchdog state, while open.
    pub fn watchdog_state(&self) -> Option<super::WatchdogState> {
        match &self.state {
            State::Open(open) | State::Closing { open, .. } => Some(open.watchdog.state()),
            _ => None,
        }
    }

    /// Requests received and handed to the application, not answered yet.
    pub fn requests_in_flight(&self) -> usize {
        self.incoming_in_flight
    }

    /// Takes the state of an open, quiet connection (every received request answered,
    /// output transmitted) for another process to [`resume`](Self::resume), and closes this
    /// core without a word on the wire: no DPR, no events. A half-read message is the
    /// caller's (it stays in its input buffer).
    pub fn hand_over(&mut self, now: Instant) -> Result<PeerState, HandOverError> {
        let State::Open(open) = &self.state else {
            return Err(HandOverError::NotOpen);
        };
        if self.incoming_in_flight > 0 {
            return Err(HandOverError::RequestsInFlight(self.incoming_in_flight));
        }
        if !self.out.is_empty() {
            return Err(HandOverError::OutputQueued);
        }
        let remote = &open.remote;
        let mut pending: Vec<PendingState> = self
            .pending
            .drain()
            .map(|(hop, request)| PendingState {
                hop_by_hop: hop.0,
                command: request.command.0,
                end_to_end: request.end_to_end.0,
                remaining_ms: request.deadline.saturating_duration_since(now).as_millis() as u64,
            })
            .collect();
        pending.sort_by_key(|request| request.hop_by_hop);
        let state = PeerState {
            origin_host: remote.origin_host.clone(),
            origin_realm: remote.origin_realm.clone(),
            origin_state_id: remote.origin_state_id,
            product_name: remote.product_name.clone(),
            applications: remote.applications.iter().map(|id| id.0).collect(),
            last_hop_by_hop: self.next_hop,
            pending,
            stats: self.stats,
        };
        self.state = State::Closed;
        Ok(state)
    }

    /// An open connection resumed from a [`PeerState`] taken by [`hand_over`](Self::hand_over)
    /// (in this process after a rollback, or in the new one). Emits no `Up` event: the
    /// connection was never down.
    pub fn resume(node: Arc<Node>, state: PeerState, now: Instant, seed: u64) -> Self {
        let remote = Arc::new(PeerInfo {
            origin_host: state.origin_host,
            origin_realm: state.origin_realm,
            origin_state_id: state.origin_state_id,
            product_name: state.product_name,
            applications: state.applications.into_iter().map(ApplicationId).collect(),
        });
        let watchdog = Watchdog::new(node.config.watchdog_interval, now, seed);
        let mut pending = PendingRequests::default();
        for request in state.pending {
            pending.insert(
                HopByHopId(request.hop_by_hop),
                PendingRequest {
                    command: CommandCode(request.command),
                    end_to_end: crate::header::EndToEndId(request.end_to_end),
                    // Bounded: a corrupt state must not overflow the clock.
                    deadline: now
                        + Duration::from_millis(request.remaining_ms)
                            .min(node.config.request_timeout),
                },
            );
        }
        Self {
            node,
            state: State::Open(Open {
                remote,
                watchdog,
                dwr: None,
            }),
            next_hop: state.last_hop_by_hop,
            pending,
            incoming_in_flight: 0,
            out: BytesMut::with_capacity(4096),
            events: VecDeque::new(),
            stats: state.stats,
            seed,
        }
    }

    fn next_hop(&mut self) -> HopByHopId {
        self.next_hop = self.next_hop.wrapping_add(1);
        HopByHopId(self.next_hop)
    }

    // ---- input -------------------------------------------------------------------------

    /// Feeds received bytes: every complete message is split off `input` (without copying)
    /// and processed; a partial message stays in `input` for the next call.
    pub fn handle_input(&mut self, now: Instant, input: &mut BytesMut) {
        while !self.is_closed() {
            let length = match frame_length(input, self.node.config.max_message_len) {
                Ok(Some(length)) => length,
                Ok(None) => return,
                Err(error) => {
                    input.clear();
                    return self.close(DownReason::FramingError(error));
                }
            };
            if input.len() < length {
                input.reserve(length - input.len());
                return;
            }
            let frame = input.split_to(length).freeze();
            match Message::decode(frame) {
                Ok(message) => self.handle_message(now, message),
                Err(error) => return self.close(DownReason::FramingError(error)),
            }
        }
    }

    /// The transport reached EOF or failed.
    pub fn handle_transport_closed(&mut self) {
        if !self.is_closed() {
            self.close(DownReason::TransportClosed);
        }
    }

    /// Processes one complete message.
    pub fn handle_message(&mut self, now: Instant, message: Message) {
        let view = message.view();
        match &mut self.state {
            State::Closed => {}
            State::WaitCer { .. } => {
                if capabilities::is_capabilities_exchange(&view, true) {
                    self.handle_cer(now, &view);
                } else {
                    self.close(DownReason::ProtocolViolation("a message before CER"));
                }
            }
            State::WaitCea { hop, .. } => {
                if capabilities::is_capabilities_exchange(&view, false)
                    && view.header().hop_by_hop == *hop
                {
                    self.handle_cea(now, &view);
                } else {
                    self.close(DownReason::ProtocolViolation("a message before CEA"));
                }
            }
            State::Open(open) | State::Closing { open, .. } => {
                let is_dwa = !view.header().is_request()
                    && view.header().command == CommandCode::DEVICE_WATCHDOG;
                let recovered = if is_dwa {
                    open.dwr = None;
                    open.watchdog.on_dwa(now)
                } else {
                    open.watchdog.on_receive(now)
                };
                if recovered {
                    self.events.push_back(Event::Recovered);
                }
                if view.header().is_request() {
                    self.handle_request(now, message);
                } else if !is_dwa {
                    self.handle_answer(message);
                }
            }
        }
    }

    fn handle_cer(&mut self, now: Instant, view: &MessageView<'_>) {
        let config = &self.node.config;
        let cer = match crate::messages::Cer::decode(view) {
            Ok(cer) => cer,
            Err(error) => {
                let result = error.result_code();
                encode_error_answer(
                    view,
                    &error,
                    &config.origin_host,
                    &config.origin_realm,
                    &mut self.out,
                );
                return self.close(DownReason::CapabilitiesRefused(result));
            }
        };
        match capabilities::judge_cer(config, &cer) {
            Verdict::Accept(info) => {
                capabilities::write_cea(config, view, ResultCode::SUCCESS, None, &mut self.out);
                self.open(now, info, view.header().end_to_end.0);
            }
            Verdict::Refuse(result, reason) => {
                capabilities::write_cea(config, view, result, Some(reason), &mut self.out);
                self.close(DownReason::CapabilitiesRefused(result));
            }
        }
    }

    fn handle_cea(&mut self, now: Instant, view: &MessageView<'_>) {
        match capabilities::judge_cea(&self.node.config, view) {
            Verdict::Accept(info) => self.open(now, info, view.header().end_to_end.0),
            Verdict::Refuse(result, _) => self.close(DownReason::CapabilitiesRejected(result)),
        }
    }

    fn open(&mut self, now: Instant, info: PeerInfo, salt: u32) {
        let remote = Arc::new(info);
        let watchdog = Watchdog::new(
            self.node.config.watchdog_interval,
            now,
            self.seed ^ u64::from(salt),
        );
        self.state = State::Open(Open {
            remote: remote.clone(),
            watchdog,
            dwr: None,
        });
        self.events.push_back(Event::Up(remote));
    }

    fn handle_request(&mut self, now: Instant, message: Message) {
        let view = message.view();
        let header = *view.header();
        if let Err(error) = view.check_flags() {
            return self.answer_error(&view, &error);
        }
        match header.command {
            CommandCode::DEVICE_WATCHDOG => return self.handle_dwr(&view),
            CommandCode::DISCONNECT_PEER => return self.handle_dpr(&view),
            CommandCode::CAPABILITIES_EXCHANGE => {
                // A second CER on an open connection: refuse it, keep the connection.
                let error = DecodeError::CommandUnsupported {
                    command: header.command,
                };
                return self.answer_error(&view, &error);
            }
            _ => {}
        }
        let node = self.node.clone();
        let config = &node.config;
        let negotiated = self
            .remote()
            .is_some_and(|remote| remote.applications.contains(&header.application));
        if !negotiated {
            let error = DecodeError::ApplicationUnsupported {
                application: header.application,
            };
            return self.answer_error(&view, &error);
        }
        if !config
            .supported_commands
            .contains(&(header.application, header.command))
        {
            let error = DecodeError::CommandUnsupported {
                command: header.command,
            };
            return self.answer_error(&view, &error);
        }
        if let Err(error) = view.walk() {
            return self.answer_error(&view, &error);
        }
        if matches!(self.state, State::Closing { .. }) {
            // Our DPR is sent: the peer fails what it has pending here when it reads it and
            // sends it elsewhere, so a request processed now would be processed twice (a
            // CCR charged twice). Not delivered: 3002 says so.
            return self.write_error_answer(
                &view,
                ResultCode::UNABLE_TO_DELIVER,
                "closing: DPR sent",
            );
        }
        let duplicate = self.check_duplicate(now, &view);
        let duplicate = match duplicate {
            Ok(key) => key,
            Err(()) => return,
        };
        if self.incoming_in_flight >= config.max_incoming_requests {
            if let Some(key) = duplicate {
                self.node.duplicates.forget(key);
            }
            self.stats.busy_answered += 1;
            return self.write_error_answer(
                &view,
                ResultCode::TOO_BUSY,
                "too many requests in flight",
            );
        }
        self.incoming_in_flight += 1;
        self.stats.requests_received += 1;
        let ticket = AnswerTicket { header, duplicate };
        self.events
            .push_back(Event::Request(IncomingRequest { message, ticket }));
    }

    /// Looks the request up in the duplicate cache: `Ok(key)` to process it, `Err(())` when
    /// it was a duplicate and has been dealt with.
    fn check_duplicate(
        &mut self,
        now: Instant,
        view: &MessageView<'_>,
    ) -> Result<Option<DuplicateKey>, ()> {
        let duplicates = &self.node.duplicates;
        if !duplicates.is_enabled() {
            return Ok(None);
        }
        let Some(origin_host) = view.find(dictionary::ORIGIN_HOST.code) else {
            return Ok(None);
        };
        let key = DuplicateKey::new(origin_host.data(), view.header().end_to_end);
        match duplicates.check(key, now) {
            Seen::New => Ok(Some(key)),
            Seen::InProgress => {
                // The original has no answer yet, and may never get one here: its connection
                // may be the one that failed. Dropping the copy would leave the client
                // waiting; the application gets it and must be idempotent for it (the PDF is:
                // Session-Id and CC-Request-Number identify a charge).
                self.stats.duplicates_in_progress += 1;
                Ok(None)
            }
            Seen::Answered(answer) => {
                // Re-send the cached answer under the retransmission's hop-by-hop id.
                let start = self.out.len();
                self.out.extend_from_slice(&answer);
                if let Some(hop) = self.out.get_mut(start + 12..start + 16) {
                    hop.copy_from_slice(&view.header().hop_by_hop.0.to_be_bytes());
                }
                self.stats.duplicates_answered += 1;
                Err(())
            }
        }
    }

    fn handle_dwr(&mut self, view: &MessageView<'_>) {
        if let Err(error) = Dwr::decode(view) {
            return self.answer_error(view, &error);
        }
        let config = &self.node.config;
        let dwa = Dwa {
            result_code: ResultCode::SUCCESS,
            origin_host: &config.origin_host,
            origin_realm: &config.origin_realm,
            origin_state_id: Some(config.origin_state_id),
            ..Default::default()
        };
        dwa.encode(Envelope::answer_to(view.header()), &mut self.out);
    }

    fn handle_dpr(&mut self, view: &MessageView<'_>) {
        let cause = match Dpr::decode(view) {
            Ok(dpr) => dpr.disconnect_cause,
            Err(error) => return self.answer_error(view, &error),
        };
        let config = &self.node.config;
        let dpa = Dpa {
            result_code: ResultCode::SUCCESS,
            origin_host: &config.origin_host,
            origin_realm: &config.origin_realm,
            ..Default::default()
        };
        dpa.encode(Envelope::answer_to(view.header()), &mut self.out);
        self.close(DownReason::PeerDisconnected(cause));
    }

    fn handle_answer(&mut self, message: Message) {
        let header = *message.header();
        if header.command == CommandCode::DISCONNECT_PEER {
            if let State::Closing { hop, cause, .. } = self.state {
                if hop == header.hop_by_hop {
                    return self.close(DownReason::LocalDisconnect(cause));
                }
            }
        }
        match self.pending.remove(header.hop_by_hop) {
            Some(_) => {
                self.stats.answers_received += 1;
                self.events.push_back(Event::Answer {
                    hop_by_hop: header.hop_by_hop,
                    message,
                });
            }
            None => self.stats.unknown_answers += 1,
        }
    }

    fn answer_error(&mut self, view: &MessageView<'_>, error: &DecodeError) {
        let config = &self.node.config;
        if encode_error_answer(
            view,
            error,
            &config.origin_host,
            &config.origin_realm,
            &mut self.out,
        )
        .is_some()
        {
            self.stats.errors_answered += 1;
        }
    }

    fn write_error_answer(&mut self, view: &MessageView<'_>, result_code: ResultCode, text: &str) {
        let config = &self.node.config;
        ErrorAnswer::reply(
            view,
            &config.origin_host,
            &config.origin_realm,
            result_code,
            text,
            &mut self.out,
        );
    }

    // ---- timers ------------------------------------------------------------------------

    /// Handles every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        match &mut self.state {
            State::Closed => return,
            State::WaitCer { deadline } | State::WaitCea { deadline, .. } => {
                if now >= *deadline {
                    return self.close(DownReason::CapabilitiesTimeout);
                }
            }
            State::Closing {
                deadline, cause, ..
            } => {
                if now >= *deadline {
                    let cause = *cause;
                    return self.close(DownReason::LocalDisconnect(cause));
                }
            }
            State::Open(open) => match open.watchdog.on_timeout(now) {
                WatchdogAction::None => {}
                WatchdogAction::SendDwr => self.send_dwr(),
                WatchdogAction::Suspect => self.events.push_back(Event::Suspect),
                WatchdogAction::Close => return self.close(DownReason::WatchdogExpired),
            },
        }
        while let Some((hop, request)) = self.pending.pop_expired(now) {
            self.stats.requests_timed_out += 1;
            self.events.push_back(Event::RequestFailed {
                hop_by_hop: hop,
                end_to_end: request.end_to_end,
                reason: RequestFailure::TimedOut,
            });
        }
    }

    fn send_dwr(&mut self) {
        let hop = self.next_hop();
        let end_to_end = self.node.end_to_end.next();
        let config = &self.node.config;
        let dwr = Dwr {
            origin_host: &config.origin_host,
            origin_realm: &config.origin_realm,
            origin_state_id: Some(config.origin_state_id),
        };
        dwr.encode(
            Envelope::request(ApplicationId::COMMON, hop, end_to_end),
            &mut self.out,
        );
        if let State::Open(open) = &mut self.state {
            open.dwr = Some(hop);
        }
    }

    // ---- commands ----------------------------------------------------------------------

    /// Sends an encoded request. Its hop-by-hop id is overwritten with this connection's
    /// next one (returned); its End-to-End id and T flag are kept. The answer arrives as
    /// [`Event::Answer`], or [`Event::RequestFailed`] after `timeout` (the configured
    /// default if None).
    pub fn send_request(
        &mut self,
        now: Instant,
        request: &[u8],
        timeout: Option<Duration>,
    ) -> Result<HopByHopId, SendError> {
        if !self.is_open() {
            return Err(SendError::NotOpen);
        }
        if self.pending.len() >= self.node.config.max_pending_requests {
            return Err(SendError::Backpressure(self.pending.len()));
        }
        let header = Header::parse(request).map_err(|_| SendError::NotARequest)?;
        if !header.is_request() || header.length as usize != request.len() {
            return Err(SendError::NotARequest);
        }
        let hop = self.next_hop();
        let deadline = now + timeout.unwrap_or(self.node.config.request_timeout);
        let entry = PendingRequest {
            command: header.command,
            end_to_end: header.end_to_end,
            deadline,
        };
        if !self.pending.insert(hop, entry) {
            // 2^32 requests in flight cannot happen with a bounded table; keep the invariant.
            return Err(SendError::Backpressure(self.pending.len()));
        }
        let start = self.out.len();
        self.out.extend_from_slice(request);
        self.out[start + 12..start + HEADER_LEN - 4].copy_from_slice(&hop.0.to_be_bytes());
        self.stats.requests_sent += 1;
        Ok(hop)
    }

    /// Forgets a pending request (its sender gave up); a late answer is then counted as
    /// unknown and dropped.
    pub fn cancel_request(&mut self, hop: HopByHopId) {
        self.pending.remove(hop);
    }

    /// Sends the encoded answer to a request received as [`Event::Request`]. The answer
    /// must have been encoded with [`AnswerTicket::envelope`].
    pub fn answer(&mut self, ticket: AnswerTicket, answer: &[u8]) -> Result<(), SendError> {
        self.incoming_in_flight = self.incoming_in_flight.saturating_sub(1);
        if matches!(
            self.state,
            State::Closed | State::WaitCer { .. } | State::WaitCea { .. }
        ) {
            if let Some(key) = ticket.duplicate {
                self.node.duplicates.forget(key);
            }
            return Err(SendError::NotOpen);
        }
        self.out.extend_from_slice(answer);
        self.stats.answers_sent += 1;
        if let Some(key) = ticket.duplicate {
            self.node.duplicates.complete(key, answer);
        }
        Ok(())
    }

    /// Answers a request with an error for a decoding failure the application found (the
    /// Result-Code and Failed-AVP come from the error).
    pub fn answer_decode_error(
        &mut self,
        ticket: AnswerTicket,
        request: &Message,
        error: &DecodeError,
    ) -> Result<(), SendError> {
        let mut answer = BytesMut::new();
        let config = &self.node.config;
        encode_error_answer(
            &request.view(),
            error,
            &config.origin_host,
            &config.origin_realm,
            &mut answer,
        );
        self.answer(ticket, &answer)
    }

    /// Starts an orderly close: DPR with `cause`, then [`Event::Down`] on DPA or after the
    /// disconnect timeout. Requests still pending keep their chance of an answer until then.
    pub fn disconnect(&mut self, now: Instant, cause: DisconnectCause) {
        match std::mem::replace(&mut self.state, State::Closed) {
            State::Open(open) => {
                let hop = self.next_hop();
                let end_to_end = self.node.end_to_end.next();
                let config = &self.node.config;
                let dpr = Dpr {
                    origin_host: &config.origin_host,
                    origin_realm: &config.origin_realm,
                    disconnect_cause: cause,
                };
                dpr.encode(
                    Envelope::request(ApplicationId::COMMON, hop, end_to_end),
                    &mut self.out,
                );
                let deadline = now + config.disconnect_timeout;
                self.state = State::Closing {
                    open,
                    deadline,
                    cause,
                    hop,
                };
            }
            State::Closed => {}
            other => {
                self.state = other;
                self.close(DownReason::LocalDisconnect(cause));
            }
        }
    }

    fn close(&mut self, reason: DownReason) {
        self.state = State::Closed;
        for (hop, request) in self.pending.drain() {
            self.events.push_back(Event::RequestFailed {
                hop_by_hop: hop,
                end_to_end: request.end_to_end,
                reason: RequestFailure::ConnectionDown,
            });
        }
        self.events.push_back(Event::Down(reason));
    }

    // ---- output ------------------------------------------------------------------------

    /// Everything to write, as one buffer (all the messages queued since the last call).
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        if self.out.is_empty() {
            return None;
        }
        Some(self.out.split().freeze())
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let state = match &self.state {
            State::Closed => return None,
            State::WaitCer { deadline } | State::WaitCea { deadline, .. } => *deadline,
            State::Closing { deadline, .. } => *deadline,
            State::Open(open) => open.watchdog.deadline(),
        };
        Some(match self.pending.next_deadline() {
            Some(request) => request.min(state),
            None => state,
        })
    }
}
