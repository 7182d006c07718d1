//! The thin tokio layer over the sans-IO [`Peer`](crate::peer::Peer): one driver task per
//! connection, a [`Client`] that connects and reconnects, a [`Server`] that accepts many
//! peers.
//!
//! The application sees no Diameter internals: it sends a request and awaits its answer
//! ([`Connection::request`]), receives requests through a [`Handler`] and answers each
//! through its [`Responder`], in any order and from any task, and observes connection
//! events (up, suspect, down with the reason, including a peer's DPR).
//!
//! Per connection: the driver task reads the socket, feeds the core, runs its timers and
//! dispatches its events; a writer task writes what the core produced, coalescing
//! everything queued into one write, so a slow reader on the other side never stops us
//! from reading (no write/write deadlock). Outstanding requests are bounded by a semaphore
//! (senders wait: backpressure); requests received beyond the configured bound are refused
//! with 3004 by the core; answers are bounded by the requests they answer.

mod client;
mod driver;
mod server;

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;

pub use client::{Client, ClientOptions};
pub use driver::{Answered, Connection, Detached, HandOverFailed, RequestError};
pub use server::Server;

use crate::error::DecodeError;
use crate::grammar::Envelope;
use crate::message::Message;
use crate::peer::{AnswerTicket, DownReason, PeerInfo};

/// What the application is told about a connection.
#[derive(Clone, Debug)]
pub enum ConnectionEvent {
    /// The capabilities exchange succeeded.
    Up(Arc<PeerInfo>),
    /// The watchdog suspects the connection (send new requests elsewhere).
    Suspect,
    /// The connection answers again.
    Recovered,
    /// The connection is gone, and why (a peer's DPR shows as `PeerDisconnected(cause)`).
    Down(DownReason),
}

/// Receives what arrives on connections.
pub trait Handler: Send + Sync + 'static {
    /// A request arrived. Called on the connection's task: answer at once if it is quick,
    /// or move the [`Incoming`] to another task (`tokio::spawn`) if it may be slow; other
    /// requests on the connection are read and dispatched meanwhile.
    fn on_request(&self, connection: &Connection, request: Incoming);

    /// A connection event.
    fn on_event(&self, connection: &Connection, event: &ConnectionEvent) {
        let _ = (connection, event);
    }
}

/// A request for the application.
#[derive(Debug)]
pub struct Incoming {
    /// The request.
    pub message: Message,
    /// The peer it came from.
    pub peer: Arc<PeerInfo>,
    /// Where the answer goes.
    pub responder: Responder,
}

/// Sends the answer to one request. Dropping it unanswered sends 5012 UNABLE_TO_COMPLY, so
/// the peer is never left waiting.
#[derive(Debug)]
pub struct Responder {
    ticket: AnswerTicket,
    request: Message,
    commands: mpsc::UnboundedSender<driver::Command>,
    answered: bool,
}

impl Responder {
    /// The envelope to encode the answer with (the request's application and ids).
    pub fn envelope(&self) -> Envelope {
        self.ticket.envelope()
    }

    /// Sends an encoded answer (encoded with [`envelope`](Self::envelope)).
    pub fn answer(mut self, answer: Bytes) {
        self.answered = true;
        let _ = self.commands.send(driver::Command::Answer {
            ticket: self.ticket,
            answer,
        });
    }

    /// Encodes the answer with `build` and sends it.
    pub fn answer_with(self, build: impl FnOnce(Envelope, &mut BytesMut)) {
        let mut buf = BytesMut::with_capacity(256);
        build(self.envelope(), &mut buf);
        self.answer(buf.freeze());
    }

    /// Answers with the error a failed decode calls for (Result-Code, Failed-AVP).
    pub fn reject(mut self, error: DecodeError) {
        self.answered = true;
        let request = self.request.clone();
        let _ = self.commands.send(driver::Command::Reject {
            ticket: self.ticket,
            request,
            error,
        });
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if !self.answered {
            let _ = self.commands.send(driver::Command::Unanswered {
                ticket: self.ticket,
                request: self.request.clone(),
            });
        }
    }
}
