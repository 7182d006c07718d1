//! The peer layer (RFC 6733 section 5, RFC 3539): one Diameter connection as a sans-IO
//! state machine, in the style of quinn-proto.
//!
//! A [`Peer`] is fed bytes ([`Peer::handle_input`]) and time ([`Peer::handle_timeout`]);
//! it is asked to send requests and answers; and it is polled, in this order, for bytes to
//! write ([`Peer::poll_transmit`]), events for the application ([`Peer::poll_event`]) and
//! the next time it wants to be woken ([`Peer::poll_timeout`]). It never reads a socket or
//! the clock. The tokio driver in [`crate::transport`] is a thin loop around it.
//!
//! What it does: the capabilities exchange in both roles (allowlist, applications in
//! common), the watchdog, DPR/DPA, hop-by-hop matching of answers with per-request
//! timeouts, node-wide duplicate detection of retransmitted requests, and the protocol error
//! answers of RFC 6733 section 7 (3001, 3007, 3008, 3004 under overload, and the codec's AVP
//! errors with Failed-AVP). Application requests are handed out as events and may be
//! answered in any order: one slow request never holds up the others.

mod capabilities;
mod connection;
mod duplicates;
mod pending;
mod watchdog;

#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use connection::{
    AnswerTicket, HandOverError, IncomingRequest, Peer, PeerState, PeerStats, PendingState,
    SendError,
};
pub use duplicates::{CachedAnswer, DuplicateCache, DuplicateKey, Seen};
pub use pending::{PendingRequest, PendingRequests};
pub use watchdog::{Watchdog, WatchdogAction, WatchdogState, MIN_WATCHDOG_INTERVAL};

use crate::dictionary::DisconnectCause;
use crate::error::DecodeError;
use crate::framing::DEFAULT_MAX_MESSAGE_LEN;
use crate::header::{ApplicationId, CommandCode, EndToEndId, HopByHopId};
use crate::message::Message;
use crate::result_code::ResultCode;

/// How a node presents itself and what it accepts. Shared by all its connections.
#[derive(Clone, Debug)]
pub struct PeerConfig {
    /// Origin-Host (one per connection when a pool connects to one server: RFC 6733 section
    /// 2.1 wants one connection per pair of peers).
    pub origin_host: String,
    /// Origin-Realm.
    pub origin_realm: String,
    /// Host-IP-Address values for CER/CEA (127.0.0.1 if empty).
    pub host_ip_addresses: Vec<IpAddr>,
    /// Vendor-Id (0: IETF).
    pub vendor_id: u32,
    /// Product-Name.
    pub product_name: String,
    /// Firmware-Revision.
    pub firmware_revision: Option<u32>,
    /// Origin-State-Id: increases when the node restarts and loses its state.
    pub origin_state_id: u32,
    /// Auth-Application-Id values we support (4: Credit-Control).
    pub auth_application_ids: Vec<ApplicationId>,
    /// Acct-Application-Id values we support (3: base accounting).
    pub acct_application_ids: Vec<ApplicationId>,
    /// Application requests we accept: anything else gets 3001 COMMAND_UNSUPPORTED.
    pub supported_commands: Vec<(ApplicationId, CommandCode)>,
    /// Origin-Hosts allowed to connect (None: anyone). Others get 3010 and are closed.
    pub allowed_peers: Option<Vec<String>>,
    /// Tw, the watchdog interval (default 30 s, never below 6 s).
    pub watchdog_interval: Duration,
    /// How long to wait for CER (responder) or CEA (initiator).
    pub capabilities_timeout: Duration,
    /// How long to wait for DPA after sending DPR.
    pub disconnect_timeout: Duration,
    /// Default time to wait for an answer to a request.
    pub request_timeout: Duration,
    /// Largest message accepted (default 64 KiB).
    pub max_message_len: u32,
    /// Requests we may have outstanding on one connection (backpressure for senders).
    pub max_pending_requests: usize,
    /// Requests a peer may have outstanding with us on one connection; more get 3004.
    pub max_incoming_requests: usize,
}

impl PeerConfig {
    /// A configuration with the defaults and the given identity.
    pub fn new(origin_host: impl Into<String>, origin_realm: impl Into<String>) -> Self {
        Self {
            origin_host: origin_host.into(),
            origin_realm: origin_realm.into(),
            host_ip_addresses: Vec::new(),
            vendor_id: 0,
            product_name: "diameter-suite".to_owned(),
            firmware_revision: None,
            origin_state_id: 1,
            auth_application_ids: vec![ApplicationId::CREDIT_CONTROL],
            acct_application_ids: vec![ApplicationId::BASE_ACCOUNTING],
            supported_commands: vec![
                (ApplicationId::CREDIT_CONTROL, CommandCode::CREDIT_CONTROL),
                (ApplicationId::CREDIT_CONTROL, CommandCode::ABORT_SESSION),
                (ApplicationId::CREDIT_CONTROL, CommandCode::RE_AUTH),
                (ApplicationId::BASE_ACCOUNTING, CommandCode::ACCOUNTING),
                (ApplicationId::BASE_ACCOUNTING, CommandCode::ABORT_SESSION),
            ],
            allowed_peers: None,
            watchdog_interval: Duration::from_secs(30),
            capabilities_timeout: Duration::from_secs(10),
            disconnect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            max_message_len: DEFAULT_MAX_MESSAGE_LEN,
            max_pending_requests: 65_536,
            max_incoming_requests: 65_536,
        }
    }

    /// Every application we advertise.
    pub fn applications(&self) -> Vec<ApplicationId> {
        self.auth_application_ids
            .iter()
            .chain(&self.acct_application_ids)
            .copied()
            .collect()
    }
}

/// End-to-End ids for a node (RFC 6733 section 3): the high 12 bits from the start time,
/// the low 20 counting up from a random start, unique across all the node's connections.
#[derive(Debug)]
pub struct EndToEndIds(AtomicU32);

impl EndToEndIds {
    /// Starts the sequence: `unix_seconds` is the node's start time, `random` any random
    /// number (the core reads no clock and draws no entropy itself).
    pub fn new(unix_seconds: u64, random: u32) -> Self {
        Self(AtomicU32::new(
            ((unix_seconds as u32 & 0xfff) << 20) | (random & 0x000f_ffff),
        ))
    }

    /// The next id.
    pub fn next(&self) -> EndToEndId {
        EndToEndId(self.0.fetch_add(1, Ordering::Relaxed))
    }

    /// The id [`next`](Self::next) returns next, for a hot upgrade: the new process
    /// continues the sequence ([`EndToEndIds::continuing`]) so that no id is reused while a
    /// peer may still remember it.
    pub fn peek(&self) -> u32 {
        self.0.load(Ordering::Relaxed)
    }

    /// Continues a sequence another process [`peek`](Self::peek)ed.
    pub fn continuing(next: u32) -> Self {
        Self(AtomicU32::new(next))
    }
}

/// What a node shares between its connections: configuration, End-to-End ids and the
/// duplicate cache.
#[derive(Debug)]
pub struct Node {
    /// The configuration.
    pub config: PeerConfig,
    /// End-to-End id generator.
    pub end_to_end: EndToEndIds,
    /// Retransmission detection.
    pub duplicates: DuplicateCache,
}

impl Node {
    /// A node with duplicate detection keeping entries 60 s, at most 256k of them.
    pub fn new(config: PeerConfig, end_to_end: EndToEndIds) -> Arc<Self> {
        Arc::new(Self {
            config,
            end_to_end,
            duplicates: DuplicateCache::new(Duration::from_secs(60), 256 * 1024),
        })
    }
}

/// Which side opened the connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Role {
    /// We connected: we send CER.
    Initiator,
    /// We accepted: we wait for CER.
    Responder,
}

/// The remote peer, as learnt in the capabilities exchange.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PeerInfo {
    /// Its Origin-Host.
    pub origin_host: String,
    /// Its Origin-Realm.
    pub origin_realm: String,
    /// Its Origin-State-Id, if sent.
    pub origin_state_id: Option<u32>,
    /// Its Product-Name.
    pub product_name: String,
    /// The applications both sides support.
    pub applications: Vec<ApplicationId>,
}

/// Why a request got no answer.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RequestFailure {
    /// No answer within its timeout.
    TimedOut,
    /// The connection went down first (the request may be re-sent elsewhere with the T flag).
    ConnectionDown,
}

/// Why a connection ended.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum DownReason {
    /// The peer refused our CER with this Result-Code.
    CapabilitiesRejected(ResultCode),
    /// We refused the peer's CER with this Result-Code (3010 unknown peer, 5010 no common
    /// application, or a decoding error).
    CapabilitiesRefused(ResultCode),
    /// No CER/CEA in time.
    CapabilitiesTimeout,
    /// The peer sent DPR with this cause (REBOOTING: reconnect after Tc; BUSY and
    /// DO_NOT_WANT_TO_TALK_TO_YOU: do not).
    PeerDisconnected(DisconnectCause),
    /// We sent DPR with this cause (and got DPA, or waited long enough).
    LocalDisconnect(DisconnectCause),
    /// The watchdog declared the connection dead.
    WatchdogExpired,
    /// The peer sent something that is not Diameter: the stream cannot be resynchronised.
    FramingError(DecodeError),
    /// The peer sent a message the state does not allow (before the capabilities exchange).
    ProtocolViolation(&'static str),
    /// The transport closed (EOF or a socket error).
    TransportClosed,
    /// The connection was handed to another process (a hot upgrade): it is not closed, it
    /// goes on elsewhere.
    HandedOver,
}

impl DownReason {
    /// Whether a client should reconnect (after Tc).
    pub fn should_reconnect(&self) -> bool {
        !matches!(
            self,
            Self::PeerDisconnected(DisconnectCause::BUSY)
                | Self::PeerDisconnected(DisconnectCause::DO_NOT_WANT_TO_TALK_TO_YOU)
                | Self::LocalDisconnect(_)
                | Self::HandedOver
        )
    }
}

/// What the peer tells the application.
#[derive(Debug)]
pub enum Event {
    /// The capabilities exchange succeeded.
    Up(Arc<PeerInfo>),
    /// A request to answer (through [`Peer::answer`] with its ticket).
    Request(IncomingRequest),
    /// The answer to one of our requests.
    Answer {
        /// The hop-by-hop id [`Peer::send_request`] returned.
        hop_by_hop: HopByHopId,
        /// The answer.
        message: Message,
    },
    /// One of our requests will get no answer here.
    RequestFailed {
        /// The hop-by-hop id [`Peer::send_request`] returned.
        hop_by_hop: HopByHopId,
        /// Its End-to-End id (keep it when re-sending with the T flag).
        end_to_end: EndToEndId,
        /// Why.
        reason: RequestFailure,
    },
    /// The watchdog suspects the connection: send new requests elsewhere.
    Suspect,
    /// The connection answered again after being suspect.
    Recovered,
    /// The connection is closed; flush [`Peer::poll_transmit`] and close the socket.
    Down(DownReason),
}
