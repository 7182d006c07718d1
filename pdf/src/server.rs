//! The Diameter side of the PDF: decodes each CCR, asks the [`Engine`], waits for the
//! journal when money moved, answers with a CCA, and sends ASR for sessions whose shared
//! account ran dry.
//!
//! Requests are handled on the connection's task while the engine lock is held for the
//! decision only; the answer waits for the journal on a task of its own, so a request whose
//! debit is being written never holds up the others.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::{Bytes, BytesMut};
use protocol::dictionary::FinalUnitAction;
use protocol::grammar::{Command, Envelope, FailedAvpData};
use protocol::header::{ApplicationId, CommandCode, HopByHopId};
use protocol::message::Message;
use protocol::messages::{Asa, Asr, Cca, Ccr, FinalUnitIndication, MultipleServicesCreditControl};
use protocol::result_code::ResultCode;
use protocol::transport::{Connection, ConnectionEvent, Handler, Incoming};
use smallvec::smallvec;

use crate::charging::{Decision, Engine};
use crate::journal::Journal;
use crate::metrics::Metrics;
use crate::tariff::Unit;

/// What the handler shares with the rest of the process.
pub struct PdfHandler {
    /// The charging state.
    pub engine: Arc<Mutex<Engine>>,
    /// Where debits go before answers (swapped when a failed hot upgrade reopens it).
    pub journal: Arc<ArcSwap<Journal>>,
    /// Request counters.
    pub metrics: Arc<Metrics>,
    /// The engine's clock starts here.
    pub epoch: Instant,
    /// Open connections.
    pub connections: Arc<AtomicUsize>,
    /// Our Origin-Host and Origin-Realm.
    pub origin_host: Arc<str>,
    /// Our Origin-Realm.
    pub origin_realm: Arc<str>,
    /// Open connections by remote address, with the peer's Origin-Host (where ASRs go).
    pub peers: Mutex<HashMap<std::net::SocketAddr, (String, Connection)>>,
    /// This handler itself, so that a request held while its account moves to another node
    /// can be decided again from a task of its own (`Arc::new_cyclic`).
    pub me: std::sync::Weak<PdfHandler>,
}

/// How long a request for an account being moved waits before it is refused with 3004.
pub const HOLD_LIMIT: Duration = Duration::from_secs(2);
/// How often a held request looks again.
const HOLD_POLL: Duration = Duration::from_millis(2);

impl PdfHandler {
    /// Seconds since the engine started.
    pub fn now(&self) -> u32 {
        self.epoch.elapsed().as_secs() as u32
    }

    fn lock_engine(&self) -> std::sync::MutexGuard<'_, Engine> {
        // A panic in the engine is a bug; keep serving with the state as it is.
        self.engine
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn answer_ccr(&self, incoming: Incoming, received: Instant) {
        let message = incoming.message.clone();
        let ccr = match Ccr::decode(&message.view()) {
            Ok(ccr) => ccr,
            Err(error) => {
                self.metrics
                    .record_other(CommandCode::CREDIT_CONTROL, error.result_code());
                return incoming.responder.reject(error);
            }
        };
        let (decision, rated) = {
            let mut engine = self.lock_engine();
            let decision = engine.credit_control(self.now(), &ccr);
            let rated = decision.service.map(|i| {
                let service = engine.tariff.service(i);
                (service.rating_group, service.unit)
            });
            (decision, rated)
        };
        if decision.hold && received.elapsed() < HOLD_LIMIT {
            // Its account is in a batch moving to another node: decide again in a moment
            // (it will be charged here, or redirected there).
            if let Some(me) = self.me.upgrade() {
                tokio::spawn(async move {
                    tokio::time::sleep(HOLD_POLL).await;
                    me.answer_ccr(incoming, received);
                });
                return;
            }
        }
        let answer = encode_cca(
            &self.origin_host,
            &self.origin_realm,
            &ccr,
            &message,
            &decision,
            rated,
            incoming.responder.envelope(),
        );
        let request_type = ccr.cc_request_type;
        let result = decision.result;
        for session_id in &decision.aborts {
            self.send_asr(session_id);
        }
        if let Some((account, amount)) = decision.debit {
            tracing::debug!(
                session_id = ccr.session_id,
                request_type = ?ccr.cc_request_type,
                request_number = ccr.cc_request_number,
                retransmit = message.header().flags.is_retransmit(),
                account,
                amount,
                "debit"
            );
        }
        // A retransmission is answered as before, but not before the original's debit is on
        // disk: a zero record's commit comes after it in the journal's order.
        let commit = match decision.debit {
            Some((account, amount)) => Some(self.journal.load().append(account, amount)),
            None if decision.retransmission => Some(self.journal.load().append(0, 0)),
            None => None,
        };
        let metrics = self.metrics.clone();
        match commit {
            Some(commit) if !commit.is_durable() => {
                let responder = incoming.responder;
                let request = message.clone();
                let (host, realm) = (self.origin_host.clone(), self.origin_realm.clone());
                tokio::spawn(async move {
                    match commit.durable().await {
                        Ok(()) => {
                            metrics.record_ccr(request_type, result, received.elapsed());
                            responder.answer(answer);
                        }
                        Err(error) => {
                            tracing::error!(%error, "journal write failed: the debit is not durable");
                            metrics.record_ccr(
                                request_type,
                                ResultCode::UNABLE_TO_COMPLY,
                                received.elapsed(),
                            );
                            let failed = unable_to_comply(&request, &host, &realm);
                            responder.answer(failed);
                        }
                    }
                });
            }
            _ => {
                metrics.record_ccr(request_type, result, received.elapsed());
                incoming.responder.answer(answer);
            }
        }
    }

    /// Sends an ASR for a session to the gateway that owns it (the Session-Id's host).
    fn send_asr(&self, session_id: &str) {
        let host = session_id.split(';').next().unwrap_or_default();
        let connection = self
            .peers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .find(|(name, _)| name.eq_ignore_ascii_case(host))
            .map(|(_, connection)| connection.clone());
        let Some(connection) = connection else {
            tracing::warn!(
                session_id,
                "no connection to the session's gateway: ASR not sent"
            );
            self.metrics.record_asr(Err(()));
            return;
        };
        let realm = connection
            .peer()
            .map(|p| p.origin_realm.clone())
            .unwrap_or_default();
        let asr = Asr {
            session_id,
            origin_host: &self.origin_host,
            origin_realm: &self.origin_realm,
            destination_realm: &realm,
            destination_host: host,
            auth_application_id: ApplicationId::CREDIT_CONTROL.0,
            error_message: Some("the shared account has no credit left"),
            ..Default::default()
        };
        let mut out = BytesMut::with_capacity(256);
        let envelope = Envelope::request(
            ApplicationId::CREDIT_CONTROL,
            HopByHopId(0),
            connection.node().end_to_end.next(),
        );
        asr.encode(envelope, &mut out);
        let metrics = self.metrics.clone();
        let session_id = session_id.to_owned();
        tokio::spawn(async move {
            match connection
                .request(out.freeze(), Some(Duration::from_secs(5)))
                .await
            {
                Ok(answer) => {
                    let result = Asa::decode(&answer.view())
                        .map(|a| a.result_code)
                        .unwrap_or(ResultCode::UNABLE_TO_COMPLY);
                    metrics.record_asr(Ok(result));
                }
                Err(error) => {
                    tracing::warn!(session_id, %error, "ASR got no answer");
                    metrics.record_asr(Err(()));
                }
            }
        });
    }
}

/// The CCA for a decision; `rated` is the service's Rating-Group and unit.
fn encode_cca(
    origin_host: &str,
    origin_realm: &str,
    ccr: &Ccr<'_>,
    request: &Message,
    decision: &Decision,
    rated: Option<(u32, Unit)>,
    envelope: Envelope,
) -> Bytes {
    if decision.result.is_protocol_error() {
        tracing::debug!(
            session_id = ccr.session_id,
            request_type = ?ccr.cc_request_type,
            result = %decision.result,
            redirect = decision.redirect.as_deref().map(String::as_str),
            reason = decision.error_message.as_deref(),
            "refused"
        );
        return encode_protocol_error(origin_host, origin_realm, ccr, request, decision);
    }
    let granting = matches!(
        decision.result,
        ResultCode::SUCCESS | ResultCode::CREDIT_LIMIT_REACHED
    );
    let mscc = match rated {
        Some((rating_group, unit)) if granting => smallvec![MultipleServicesCreditControl {
            granted_service_unit: decision.granted.map(|units| unit.service_unit(units)),
            rating_group: Some(rating_group),
            validity_time: decision.validity_time,
            result_code: Some(decision.result),
            final_unit_indication: decision.final_units.then_some(FinalUnitIndication {
                final_unit_action: FinalUnitAction::TERMINATE
            }),
            ..Default::default()
        }],
        _ => smallvec![],
    };
    let view = request.view();
    let failed = decision.failed_avp.and_then(|code| {
        let avp = view.find(code)?;
        let start = avp.offset() as usize;
        let padded = (avp.length() as usize + 3) & !3;
        view.bytes().get(start..start + padded).map(FailedAvpData)
    });
    let cca = Cca {
        session_id: ccr.session_id,
        result_code: decision.result,
        origin_host,
        origin_realm,
        auth_application_id: ApplicationId::CREDIT_CONTROL.0,
        cc_request_type: ccr.cc_request_type,
        cc_request_number: ccr.cc_request_number,
        multiple_services_credit_control: mscc,
        error_message: decision.error_message.as_deref(),
        failed_avps: failed.into_iter().collect(),
        ..Default::default()
    };
    let mut out = BytesMut::with_capacity(256);
    cca.encode(envelope, &mut out);
    out.freeze()
}

/// A 3xxx answer (E bit, RFC 6733 section 7.2's generic grammar): 3004 for an account not
/// owned here, or 3006 REDIRECT_INDICATION with Redirect-Host naming the account's node,
/// Redirect-Host-Usage ALL_SESSION and Redirect-Max-Cache-Time (section 6.13).
fn encode_protocol_error(
    origin_host: &str,
    origin_realm: &str,
    ccr: &Ccr<'_>,
    request: &Message,
    decision: &Decision,
) -> Bytes {
    let mut out = BytesMut::with_capacity(256);
    let answer = protocol::messages::ErrorAnswer {
        session_id: Some(ccr.session_id),
        origin_host,
        origin_realm,
        result_code: decision.result,
        error_message: decision.error_message.as_deref(),
        redirect_hosts: decision
            .redirect
            .as_deref()
            .map(String::as_str)
            .into_iter()
            .collect(),
        redirect_host_usage: decision
            .redirect
            .is_some()
            .then_some(protocol::dictionary::RedirectHostUsage::ALL_SESSION),
        redirect_max_cache_time: decision
            .redirect
            .is_some()
            .then_some(crate::ownership::REDIRECT_CACHE_SECONDS),
        ..Default::default()
    };
    answer.encode(&request.view(), &mut out);
    out.freeze()
}

/// A 5012 answer for a request whose debit could not be made durable.
fn unable_to_comply(request: &Message, host: &str, realm: &str) -> Bytes {
    let mut out = BytesMut::new();
    protocol::messages::ErrorAnswer::reply(
        &request.view(),
        host,
        realm,
        ResultCode::UNABLE_TO_COMPLY,
        "the charge could not be written to disk",
        &mut out,
    );
    out.freeze()
}

impl Handler for PdfHandler {
    fn on_request(&self, _connection: &Connection, incoming: Incoming) {
        let received = Instant::now();
        match incoming.message.header().command {
            CommandCode::CREDIT_CONTROL => self.answer_ccr(incoming, received),
            command => {
                // The peer layer only lets configured commands through; anything else here
                // is answered (and counted) rather than dropped.
                self.metrics
                    .record_other(command, ResultCode::COMMAND_UNSUPPORTED);
                incoming
                    .responder
                    .reject(protocol::error::DecodeError::CommandUnsupported { command });
            }
        }
    }

    fn on_event(&self, connection: &Connection, event: &ConnectionEvent) {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        match event {
            ConnectionEvent::Up(peer) => {
                self.connections.fetch_add(1, Ordering::Relaxed);
                tracing::info!(peer = %peer.origin_host, addr = %connection.peer_addr(), "peer up");
                peers.insert(
                    connection.peer_addr(),
                    (peer.origin_host.clone(), connection.clone()),
                );
            }
            ConnectionEvent::Down(reason) => match peers.remove(&connection.peer_addr()) {
                Some((name, _)) => {
                    self.connections.fetch_sub(1, Ordering::Relaxed);
                    tracing::info!(peer = %name, ?reason, "peer down");
                }
                None => {
                    tracing::info!(addr = %connection.peer_addr(), ?reason, "closed before capabilities exchange")
                }
            },
            ConnectionEvent::Suspect => {
                tracing::warn!(addr = %connection.peer_addr(), "peer suspect (watchdog)")
            }
            ConnectionEvent::Recovered => {
                tracing::info!(addr = %connection.peer_addr(), "peer recovered")
            }
        }
    }
}
