//! The relay: accounting on the access leg becomes Credit-Control on the charging leg
//! (DESIGN.md section 3).
//!
//! ACR START opens a session and a CC session on a PDF node (CCR-INITIAL); INTERIM becomes
//! CCR-UPDATE with the usage; STOP becomes CCR-TERMINATION; EVENT a CCR-EVENT. The ACA
//! carries the PDF's verdict: 2001, 4012 (the session is over), 5030, 5002, or 3004 when no
//! PDF can serve it. A session the gateway must end for another reason (the PDF's ASR, a
//! lost PDF connection, a PDF that stopped answering) gets an ASR to its access peer with the
//! Termination-Cause that says why.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use protocol::dictionary::{AccountingRecordType, CcRequestType, TerminationCause};
use protocol::encode::set_retransmit_flag;
use protocol::grammar::{Command, Envelope};
use protocol::header::{ApplicationId, CommandCode, EndToEndId, HopByHopId};
use protocol::message::Message;
use protocol::messages::{
    Aca, Acr, Asa, Asr, Cca, Ccr, ErrorAnswer, MultipleServicesCreditControl, ServiceUnit,
};
use protocol::peer::DownReason;
use protocol::result_code::ResultCode;
use protocol::transport::{Connection, ConnectionEvent, Handler, Incoming, RequestError};
use smallvec::smallvec;

use crate::config::{Config, LossPolicy};
use crate::metrics::Metrics;
use crate::pool::{PdfNode, Pool};
use crate::sessions::{AccessKey, Pin, Sessions};

/// The gateway's shared state.
pub struct Relay {
    /// PDF nodes and their pools.
    pub pool: Pool,
    /// Sessions.
    pub sessions: Mutex<Sessions>,
    /// Metrics.
    pub metrics: Metrics,
    access: Mutex<AccessPeers>,
    origin_host: String,
    origin_realm: String,
    destination_realm: String,
    service_context_id: String,
    policy: LossPolicy,
    max_sessions: usize,
    reboot_hold: Duration,
    request_timeout: Duration,
    started: u32,
    next_cc: AtomicU32,
}

/// Access connections by index (sessions remember the index; ASRs go there).
#[derive(Default)]
struct AccessPeers {
    connections: Vec<Option<Connection>>,
    by_addr: HashMap<SocketAddr, u16>,
}

/// Why a CCR got no usable answer.
#[derive(Debug)]
enum Failure {
    /// The connection (and, under `drop`, the session) is gone.
    LinkBroken,
    /// The PDF did not answer in time.
    Timeout,
    /// No node can take the request.
    NoPdf,
}

/// Clears a session's in-flight mark when its ACR's handling ends without updating it
/// (the session, if it still exists, stays where it was).
struct InFlight<'a> {
    relay: &'a Relay,
    cc_number: u32,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut sessions = self.relay.lock_sessions();
        if let Some(slot) = sessions.find_cc(self.cc_number) {
            sessions.get_mut(slot).set_in_flight(false);
        }
    }
}

impl Relay {
    /// The relay for `config`; its PDF connections start at once.
    pub fn start(config: &Config, pool: Pool) -> Arc<Self> {
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let relay = Arc::new(Self {
            pool,
            sessions: Mutex::new(Sessions::default()),
            metrics: Metrics::default(),
            access: Mutex::new(AccessPeers::default()),
            origin_host: config.origin_host(),
            origin_realm: config.access.origin_realm.clone(),
            destination_realm: config.charging.destination_realm.clone(),
            service_context_id: config.charging.service_context_id.clone(),
            policy: config.charging.policy,
            max_sessions: config.access.max_sessions,
            reboot_hold: Duration::from_millis(config.charging.reboot_hold_ms),
            request_timeout: Duration::from_millis(config.charging.request_timeout_ms),
            started: unix as u32,
            next_cc: AtomicU32::new(1),
        });
        for node in &config.nodes {
            if let Err(error) = relay.add_node(node) {
                tracing::error!(%error, "cannot add PDF node");
            }
        }
        relay
    }

    /// Adds a PDF node (config or admin API).
    pub fn add_node(self: &Arc<Self>, node: &crate::config::NodeConfig) -> Result<u8, String> {
        let weak = Arc::downgrade(self);
        let factory = move |node: u8, connection: u8| -> Arc<dyn Handler> {
            Arc::new(PdfSide {
                relay: weak.clone(),
                node,
                connection,
                up: std::sync::atomic::AtomicBool::new(false),
            })
        };
        self.pool.add(node, &factory)
    }

    fn lock_sessions(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The CC Session-Id of a session: `<Origin-Host of the connection it started on>;
    /// <start time>;<number>`. Connection `i` of every node has the same Origin-Host, so the
    /// id stays valid when a redirect moves the session to another node.
    fn cc_session_id(&self, node: &PdfNode, connection: u8, number: u32) -> String {
        use std::fmt::Write;
        // One allocation of the right size: `format!` grows the string as it writes (a
        // malloc and a realloc per ACR, a visible cost in the gateway's profile).
        let host = node.origin_host(connection);
        let mut id = String::with_capacity(host.len() + 2 + 2 * 10);
        let _ = write!(id, "{host};{};{number}", self.started);
        id
    }

    // ---- the access leg ----------------------------------------------------------------

    async fn handle_acr(self: Arc<Self>, access_peer: u16, incoming: Incoming) {
        let received = Instant::now();
        let message = incoming.message;
        let acr = match Acr::decode(&message.view()) {
            Ok(acr) => acr,
            Err(error) => return incoming.responder.reject(error),
        };
        let (result, text) = match acr.accounting_record_type {
            AccountingRecordType::START_RECORD => self.open_session(access_peer, &acr).await,
            AccountingRecordType::INTERIM_RECORD => self.interim(&acr, false).await,
            AccountingRecordType::STOP_RECORD => self.interim(&acr, true).await,
            AccountingRecordType::EVENT_RECORD => self.event(&acr).await,
            other => (
                ResultCode::INVALID_AVP_VALUE,
                Some(format!("Accounting-Record-Type {} is not 1 to 4", other.0)),
            ),
        };
        self.metrics
            .record_acr(acr.accounting_record_type, result, received.elapsed());
        if result != ResultCode::SUCCESS {
            tracing::debug!(
                session_id = acr.session_id,
                record_type = ?acr.accounting_record_type,
                %result,
                reason = text.as_deref(),
                "ACR not accepted"
            );
        }
        let envelope = incoming.responder.envelope();
        let mut out = BytesMut::with_capacity(256);
        if result.is_protocol_error() {
            // 3xxx: the generic error grammar with the E bit.
            ErrorAnswer::reply(
                &message.view(),
                &self.origin_host,
                &self.origin_realm,
                result,
                text.as_deref()
                    .unwrap_or("the request could not be relayed"),
                &mut out,
            );
        } else {
            Aca {
                session_id: acr.session_id,
                result_code: result,
                origin_host: &self.origin_host,
                origin_realm: &self.origin_realm,
                accounting_record_type: acr.accounting_record_type,
                accounting_record_number: acr.accounting_record_number,
                acct_application_id: Some(ApplicationId::BASE_ACCOUNTING.0),
                error_message: text.as_deref(),
                ..Default::default()
            }
            .encode(envelope, &mut out);
        }
        incoming.responder.answer(out.freeze());
    }

    async fn open_session(
        self: &Arc<Self>,
        access_peer: u16,
        acr: &Acr<'_>,
    ) -> (ResultCode, Option<String>) {
        let key = AccessKey::of(acr.session_id);
        {
            let sessions = self.lock_sessions();
            if let Some(slot) = sessions.find(key) {
                // A retransmitted START: the session is open.
                let same = sessions.get(slot).record_number == acr.accounting_record_number;
                return if same {
                    (ResultCode::SUCCESS, None)
                } else {
                    (
                        ResultCode::INVALID_AVP_VALUE,
                        Some("the session is already started".into()),
                    )
                };
            }
            if sessions.len() >= self.max_sessions {
                return (
                    ResultCode::RESOURCES_EXCEEDED,
                    Some(format!("at most {} sessions", self.max_sessions)),
                );
            }
        }
        let Some(rating_group) = acr.rating_group else {
            return (
                ResultCode::MISSING_AVP,
                Some("ACR START needs a Rating-Group".into()),
            );
        };
        let number = self.next_cc.fetch_add(1, Ordering::Relaxed);
        let mut tried = Vec::new();
        loop {
            let Some(node) = self.pool.choose(&tried) else {
                return (
                    ResultCode::TOO_BUSY,
                    Some("no PDF can serve the session now".into()),
                );
            };
            tried.push(node.index);
            let Some((connection_index, connection)) = self.connection_for_new(&node).await else {
                continue;
            };
            let session_id = self.cc_session_id(&node, connection_index, number);
            let ccr = Ccr {
                session_id: &session_id,
                origin_host: node.origin_host(connection_index),
                origin_realm: &self.origin_realm,
                destination_realm: &self.destination_realm,
                auth_application_id: ApplicationId::CREDIT_CONTROL.0,
                service_context_id: &self.service_context_id,
                cc_request_type: CcRequestType::INITIAL_REQUEST,
                cc_request_number: 0,
                subscription_ids: subscription_ids(acr),
                multiple_services_credit_control: smallvec![MultipleServicesCreditControl {
                    requested_service_unit: Some(ServiceUnit::default()),
                    rating_group: Some(rating_group),
                    ..Default::default()
                }],
                ..Default::default()
            };
            let pin = Pin {
                node: node.index,
                connection: connection_index,
            };
            let (answer, pin) = self
                .send(
                    pin,
                    encode(&ccr, &connection),
                    CcRequestType::INITIAL_REQUEST,
                )
                .await;
            let cca = match answer {
                Ok(cca) => cca,
                Err(Failure::NoPdf | Failure::LinkBroken | Failure::Timeout) => continue,
            };
            let view = cca.view();
            if view.header().flags.is_error() {
                let error = ErrorAnswer::decode(&view)
                    .map(|e| e.result_code)
                    .unwrap_or(ResultCode::UNABLE_TO_COMPLY);
                if error == ResultCode::TOO_BUSY {
                    continue;
                }
                return (
                    ResultCode::TOO_BUSY,
                    Some(format!("the PDF answered {error}")),
                );
            }
            let Ok(answer) = Cca::decode(&view) else {
                return (ResultCode::UNABLE_TO_COMPLY, Some("unreadable CCA".into()));
            };
            if answer.result_code != ResultCode::SUCCESS {
                return (answer.result_code, answer.error_message.map(str::to_owned));
            }
            let mut sessions = self.lock_sessions();
            let slot = sessions.insert(
                acr.session_id,
                access_peer,
                number,
                rating_group,
                acr.accounting_record_number,
                pin,
            );
            let session = sessions.get_mut(slot);
            session.cc_request_number = 0;
            session.cc_connection = connection_index;
            session.set_final_units(final_units(&answer));
            return (ResultCode::SUCCESS, None);
        }
    }

    async fn interim(self: &Arc<Self>, acr: &Acr<'_>, stop: bool) -> (ResultCode, Option<String>) {
        let key = AccessKey::of(acr.session_id);
        // A copy: the table's lock is not held across the CCR's round trip.
        let session = {
            let mut sessions = self.lock_sessions();
            let Some(slot) = sessions.find(key) else {
                return (
                    ResultCode::UNKNOWN_SESSION_ID,
                    Some(format!("no session {}", acr.session_id)),
                );
            };
            let session = sessions.get_mut(slot);
            if acr.accounting_record_number == session.record_number {
                // A retransmitted record: already relayed.
                return (ResultCode::SUCCESS, None);
            }
            session.set_in_flight(true);
            session.clone()
        };
        // Until the CCR's outcome is known, a lost connection leaves the session to it.
        let in_flight = InFlight {
            relay: self,
            cc_number: session.cc_number,
        };
        let (pin, cc_number, final_units) =
            (session.pin(), session.cc_number, session.final_units());
        let Some(node) = self.pool.node(pin.node) else {
            return (ResultCode::UNABLE_TO_COMPLY, None);
        };
        // Final units used up: the session ends now, with its usage charged (RFC 4006 5.6).
        let terminate = stop || final_units;
        let kind = if terminate {
            CcRequestType::TERMINATION_REQUEST
        } else {
            CcRequestType::UPDATE_REQUEST
        };
        let session_id = self.cc_session_id(&node, session.cc_connection, cc_number);
        let number = session.cc_request_number + 1;
        let ccr = Ccr {
            session_id: &session_id,
            origin_host: node.origin_host(pin.connection),
            origin_realm: &self.origin_realm,
            destination_realm: &self.destination_realm,
            auth_application_id: ApplicationId::CREDIT_CONTROL.0,
            service_context_id: &self.service_context_id,
            cc_request_type: kind,
            cc_request_number: number,
            termination_cause: terminate
                .then(|| acr.termination_cause.unwrap_or(TerminationCause::LOGOUT)),
            multiple_services_credit_control: smallvec![MultipleServicesCreditControl {
                requested_service_unit: (!terminate).then(ServiceUnit::default),
                used_service_units: acr.used_service_unit.clone().into_iter().collect(),
                rating_group: Some(session.rating_group),
                ..Default::default()
            }],
            ..Default::default()
        };
        // No open connection while the node is restarting (DPR REBOOTING): wait for one
        // within the hold, as `send` would, instead of cutting the session.
        let connection = match node.connection(pin.connection) {
            Some(connection) => Some(connection),
            None => self.connection_for_new(&node).await.map(|(_, c)| c),
        };
        let Some(connection) = connection else {
            return self.lost(
                cc_number,
                TerminationCause::LINK_BROKEN,
                "no connection to the session's PDF",
            );
        };
        let (answer, pin) = self.send(pin, encode(&ccr, &connection), kind).await;
        let cca = match answer {
            Ok(cca) => cca,
            Err(Failure::Timeout) => {
                return self.lost(
                    cc_number,
                    TerminationCause::SESSION_TIMEOUT,
                    "the PDF did not answer",
                )
            }
            Err(_) => {
                return self.lost(
                    cc_number,
                    TerminationCause::LINK_BROKEN,
                    "the PDF connection was lost",
                )
            }
        };
        let view = cca.view();
        if view.header().flags.is_error() {
            let error = ErrorAnswer::decode(&view)
                .map(|e| e.result_code)
                .unwrap_or(ResultCode::UNABLE_TO_COMPLY);
            self.forget_cc(cc_number);
            return (
                ResultCode::TOO_BUSY,
                Some(format!("the PDF answered {error}")),
            );
        }
        let Ok(answer) = Cca::decode(&view) else {
            self.forget_cc(cc_number);
            return (ResultCode::UNABLE_TO_COMPLY, Some("unreadable CCA".into()));
        };
        // The slot read before the CCR went out may have been freed (the session cut by a
        // connection loss) and reused since: find the session again by its CC number.
        let mut sessions = self.lock_sessions();
        let Some(slot) = sessions.find_cc(cc_number) else {
            // Cut meanwhile (its access peer has had its ASR); the record itself was answered.
            return (answer.result_code, answer.error_message.map(str::to_owned));
        };
        if terminate || answer.result_code != ResultCode::SUCCESS {
            sessions.remove(slot);
            if final_units && !stop && answer.result_code == ResultCode::SUCCESS {
                return (
                    ResultCode::CREDIT_LIMIT_REACHED,
                    Some("the final units are used up".into()),
                );
            }
            return (answer.result_code, answer.error_message.map(str::to_owned));
        }
        sessions.set_pin(slot, pin);
        let current = sessions.get_mut(slot);
        current.cc_request_number = number;
        current.record_number = acr.accounting_record_number;
        current.set_final_units(self::final_units(&answer));
        current.set_in_flight(false);
        std::mem::forget(in_flight);
        (ResultCode::SUCCESS, None)
    }

    async fn event(self: &Arc<Self>, acr: &Acr<'_>) -> (ResultCode, Option<String>) {
        let Some(rating_group) = acr.rating_group else {
            return (
                ResultCode::MISSING_AVP,
                Some("ACR EVENT needs a Rating-Group".into()),
            );
        };
        let Some(node) = self.pool.choose(&[]) else {
            return (
                ResultCode::TOO_BUSY,
                Some("no PDF can serve the event now".into()),
            );
        };
        let Some((connection_index, connection)) = self.connection_for_new(&node).await else {
            return (ResultCode::TOO_BUSY, Some("no PDF connection".into()));
        };
        let number = self.next_cc.fetch_add(1, Ordering::Relaxed);
        let session_id = self.cc_session_id(&node, connection_index, number);
        let units = acr.used_service_unit.clone().unwrap_or(ServiceUnit {
            cc_service_specific_units: Some(1),
            ..Default::default()
        });
        let ccr = Ccr {
            session_id: &session_id,
            origin_host: node.origin_host(connection_index),
            origin_realm: &self.origin_realm,
            destination_realm: &self.destination_realm,
            auth_application_id: ApplicationId::CREDIT_CONTROL.0,
            service_context_id: &self.service_context_id,
            cc_request_type: CcRequestType::EVENT_REQUEST,
            cc_request_number: 0,
            subscription_ids: subscription_ids(acr),
            multiple_services_credit_control: smallvec![MultipleServicesCreditControl {
                requested_service_unit: Some(units),
                rating_group: Some(rating_group),
                ..Default::default()
            }],
            ..Default::default()
        };
        let pin = Pin {
            node: node.index,
            connection: connection_index,
        };
        match self
            .send(pin, encode(&ccr, &connection), CcRequestType::EVENT_REQUEST)
            .await
            .0
        {
            Ok(cca) => match Cca::decode(&cca.view()) {
                Ok(answer) => (answer.result_code, answer.error_message.map(str::to_owned)),
                Err(_) => (
                    ResultCode::TOO_BUSY,
                    Some("the PDF refused the event".into()),
                ),
            },
            Err(_) => (ResultCode::TOO_BUSY, Some("no answer from the PDF".into())),
        }
    }

    /// An open connection of `node` (for a new session, or for a session whose own
    /// connection is down), waiting within the hold if the node is restarting.
    async fn connection_for_new(&self, node: &PdfNode) -> Option<(u8, Connection)> {
        if let Some(open) = node.any_open() {
            return Some(open);
        }
        let until = node.rebooting()?;
        node.wait_open(until.saturating_duration_since(Instant::now()))
            .await
    }

    /// Removes a session without telling its access peer (its ACR is being answered).
    fn forget_cc(&self, cc_number: u32) {
        let mut sessions = self.lock_sessions();
        if let Some(slot) = sessions.find_cc(cc_number) {
            sessions.remove(slot);
        }
    }

    /// Ends a session the infrastructure lost: the ACR gets 3004 and the access peer an ASR
    /// (unless the session was cut already, e.g. by `connection_down`: one ASR per session).
    fn lost(
        &self,
        cc_number: u32,
        cause: TerminationCause,
        why: &str,
    ) -> (ResultCode, Option<String>) {
        self.cut(cc_number, cause, why);
        (ResultCode::TOO_BUSY, Some(why.to_owned()))
    }

    // ---- the charging leg --------------------------------------------------------------

    /// Sends a CCR on `pin`'s connection and waits for the CCA, applying the loss policy,
    /// holding requests for a restarting node, and following 3006 redirects. Returns the
    /// answer and where the session is pinned now.
    async fn send(
        &self,
        mut pin: Pin,
        request: Bytes,
        kind: CcRequestType,
    ) -> (Result<Message, Failure>, Pin) {
        let mut request = request;
        let mut redirects = 0;
        let mut retransmitted = false;
        loop {
            let Some(node) = self.pool.node(pin.node) else {
                return (Err(Failure::NoPdf), pin);
            };
            let connection = match node.connection(pin.connection) {
                Some(connection) => Some(connection),
                None if node.rebooting().is_some() || self.policy == LossPolicy::Failover => {
                    let hold = node.rebooting().map_or(self.request_timeout, |t| {
                        t.saturating_duration_since(Instant::now())
                    });
                    node.wait_open(hold).await.map(|(i, c)| {
                        pin.connection = i;
                        c
                    })
                }
                None => None,
            };
            let Some(connection) = connection else {
                self.metrics.record_ccr_failure(2);
                return (Err(Failure::LinkBroken), pin);
            };
            let sent = Instant::now();
            match connection
                .request_timed(request.clone(), Some(self.request_timeout))
                .await
            {
                Ok(protocol::transport::Answered {
                    message: answer,
                    read_at,
                }) => {
                    let view = answer.view();
                    // The Result-Code alone, for the metrics and the redirect check; the
                    // caller decodes the whole answer once.
                    let result = view
                        .find(protocol::dictionary::RESULT_CODE.code)
                        .and_then(|avp| avp.u32().ok())
                        .map_or(ResultCode::UNABLE_TO_COMPLY, ResultCode);
                    self.metrics
                        .record_ccr(kind.0, result, read_at.duration_since(sent));
                    if result == ResultCode::REDIRECT_INDICATION && redirects < 3 {
                        let host = ErrorAnswer::decode(&view)
                            .ok()
                            .and_then(|e| e.redirect_hosts.first().copied().map(str::to_owned));
                        let target = host.as_deref().and_then(|h| self.pool.find_redirect(h));
                        // The connection with the same Origin-Host if it is open.
                        let open = target.as_ref().and_then(|t| {
                            t.connection(pin.connection)
                                .map(|c| (pin.connection, c))
                                .or_else(|| t.any_open())
                        });
                        if let (Some(target), Some((i, next))) = (&target, open) {
                            self.metrics.record_redirect();
                            redirects += 1;
                            pin = Pin {
                                node: target.index,
                                connection: i,
                            };
                            // A new request, not a copy: the node it goes to may have seen
                            // this one (a redirect back to a node that redirected it while
                            // its account was moving) and would answer a copy (same
                            // Origin-Host and End-to-End id) from its duplicate cache.
                            request = renumbered(&request, next.node().end_to_end.next());
                            continue;
                        }
                        tracing::debug!(
                            redirect_host = host.as_deref(),
                            known = target.is_some(),
                            "3006 not followed: no open connection to the node it names"
                        );
                    }
                    return (Ok(answer), pin);
                }
                Err(RequestError::TimedOut) => {
                    self.metrics.record_ccr_failure(0);
                    return (Err(Failure::Timeout), pin);
                }
                Err(_) => {
                    self.metrics.record_ccr_failure(1);
                    let hold = node.rebooting().is_some();
                    if (self.policy == LossPolicy::Failover || hold) && !retransmitted {
                        // RFC 6733 5.5.4: the same request, T flag set, on another connection.
                        let mut again = BytesMut::from(&request[..]);
                        set_retransmit_flag(&mut again);
                        request = again.freeze();
                        retransmitted = true;
                        self.metrics.record_retransmission();
                        // The failed connection still looks open until its Down event is
                        // dispatched, just after the requests' failures: wait for it, or
                        // `wait_open` may pick it again and the re-sent request fail too.
                        let _ =
                            tokio::time::timeout(self.request_timeout, connection.closed()).await;
                        if let Some((i, _)) = node
                            .wait_open(node.rebooting().map_or(self.request_timeout, |t| {
                                t.saturating_duration_since(Instant::now())
                            }))
                            .await
                        {
                            pin.connection = i;
                            continue;
                        }
                    }
                    return (Err(Failure::LinkBroken), pin);
                }
            }
        }
    }

    /// A PDF connection went down: apply the loss policy to the sessions pinned to it.
    fn connection_down(&self, node_index: u8, connection: u8, reason: &DownReason) {
        let Some(node) = self.pool.node(node_index) else {
            return;
        };
        if let DownReason::PeerDisconnected(cause) = reason {
            if *cause == protocol::dictionary::DisconnectCause::REBOOTING {
                // Not a loss: hold requests until it is back or the hold expires.
                node.set_rebooting(self.reboot_hold);
                tracing::info!(node = %node.name, "PDF rebooting: holding its sessions");
                return;
            }
        }
        if node.is_removed() {
            return;
        }
        if self.policy == LossPolicy::Failover && node.open_connections() > 0 {
            // Sessions move to another connection of the same node at their next request.
            return;
        }
        let pinned: Vec<u32> = {
            let sessions = self.lock_sessions();
            sessions
                .iter()
                .filter(|(_, s)| {
                    s.pin().node == node_index
                        && (s.pin().connection == connection || self.policy == LossPolicy::Failover)
                        // A CCR of its own is out: its outcome decides (a failure on this
                        // connection cuts the session then; a 3006 may have moved it to
                        // another node, as a migrating PDF does just before its DPR).
                        && !s.in_flight()
                })
                .map(|(_, s)| s.cc_number)
                .collect()
        };
        tracing::warn!(node = %node.name, connection, ?reason, sessions = pinned.len(), "PDF connection lost: cutting its sessions");
        for cc_number in pinned {
            self.cut(
                cc_number,
                TerminationCause::LINK_BROKEN,
                "the PDF connection was lost",
            );
        }
    }

    /// Ends a session: removes it and sends ASR to its access peer with `cause`. The session
    /// is named by its CC number (unique for the process's life), never by a slot read before
    /// an await: a session that another path cut meanwhile (its slot free, or reused by a new
    /// session) is left alone, so that it gets one ASR and an unrelated session none.
    fn cut(&self, cc_number: u32, cause: TerminationCause, why: &str) {
        let (session_id, peer) = {
            let mut sessions = self.lock_sessions();
            let Some(slot) = sessions.find_cc(cc_number) else {
                return;
            };
            let peer = sessions.get(slot).access_peer;
            let id = sessions.access_session_id(slot);
            sessions.remove(slot);
            (id, peer)
        };
        self.metrics.record_cut(cause);
        self.send_access_asr(peer, session_id, cause, why.to_owned());
    }

    /// The PDF asks to abort a CC session: ASA, then ASR (ADMINISTRATIVE) to the access
    /// peer; the access client's STOP then ends the CC session with its final usage.
    fn pdf_abort(&self, incoming: Incoming) {
        self.metrics.record_asr_from_pdf();
        let message = incoming.message;
        let result = match Asr::decode(&message.view()) {
            Ok(asr) => {
                let number = protocol::session_id::split(asr.session_id).map(|(_, _, low)| low);
                let found = {
                    let mut sessions = self.lock_sessions();
                    number.and_then(|n| sessions.find_cc(n)).map(|slot| {
                        let session = sessions.get_mut(slot);
                        session.mark_aborted();
                        (session.access_peer, sessions.access_session_id(slot))
                    })
                };
                match found {
                    Some((peer, id)) => {
                        self.metrics.record_cut(TerminationCause::ADMINISTRATIVE);
                        let why = asr
                            .error_message
                            .unwrap_or("the PDF aborted the session")
                            .to_owned();
                        self.send_access_asr(peer, id, TerminationCause::ADMINISTRATIVE, why);
                        ResultCode::SUCCESS
                    }
                    None => ResultCode::UNKNOWN_SESSION_ID,
                }
            }
            Err(error) => return incoming.responder.reject(error),
        };
        let session_id = message.view().session_id().unwrap_or_default().to_owned();
        let asa = Asa {
            session_id: &session_id,
            result_code: result,
            origin_host: &self.origin_host,
            origin_realm: &self.origin_realm,
            ..Default::default()
        };
        incoming.responder.answer_with(|envelope, buf| {
            asa.encode(envelope, buf);
        });
    }

    fn send_access_asr(&self, peer: u16, session_id: String, cause: TerminationCause, why: String) {
        let connection = {
            let access = self.access.lock().unwrap_or_else(|p| p.into_inner());
            access.connections.get(usize::from(peer)).cloned().flatten()
        };
        let Some(connection) = connection else {
            tracing::warn!(
                session_id,
                "the session's access peer is gone: ASR not sent"
            );
            return;
        };
        let info = connection.peer();
        let (realm, host) = info
            .map(|p| (p.origin_realm.clone(), p.origin_host.clone()))
            .unwrap_or_default();
        let asr = Asr {
            session_id: &session_id,
            origin_host: &self.origin_host,
            origin_realm: &self.origin_realm,
            destination_realm: &realm,
            destination_host: &host,
            auth_application_id: ApplicationId::BASE_ACCOUNTING.0,
            termination_cause: Some(cause),
            error_message: Some(&why),
            ..Default::default()
        };
        let mut out = BytesMut::with_capacity(256);
        let envelope = Envelope::request(
            ApplicationId::BASE_ACCOUNTING,
            HopByHopId(0),
            connection.node().end_to_end.next(),
        );
        asr.encode(envelope, &mut out);
        tokio::spawn(async move {
            if let Err(error) = connection
                .request(out.freeze(), Some(Duration::from_secs(5)))
                .await
            {
                tracing::warn!(session_id, %error, "ASR to the access peer got no answer");
            }
        });
    }
}

/// A copy of an encoded request with a new End-to-End id and no T flag: a new request
/// (RFC 6733 section 3: Origin-Host and End-to-End id identify a request; a node answers a
/// request it has seen from its duplicate cache).
fn renumbered(request: &Bytes, end_to_end: EndToEndId) -> Bytes {
    let mut copy = BytesMut::from(&request[..]);
    if let Some(id) = copy.get_mut(16..20) {
        id.copy_from_slice(&end_to_end.0.to_be_bytes());
    }
    if let Some(flags) = copy.get_mut(4) {
        *flags &= !protocol::header::CommandFlags::RETRANSMIT.0;
    }
    copy.freeze()
}

fn encode(ccr: &Ccr<'_>, connection: &Connection) -> Bytes {
    let mut out = BytesMut::with_capacity(256);
    let envelope = Envelope::request(
        ApplicationId::CREDIT_CONTROL,
        HopByHopId(0),
        connection.node().end_to_end.next(),
    );
    ccr.encode(envelope, &mut out);
    out.freeze()
}

/// The ACR's Subscription-Ids, re-borrowed for a CCR of a shorter lifetime.
fn subscription_ids<'a>(
    acr: &'a Acr<'_>,
) -> smallvec::SmallVec<[protocol::messages::SubscriptionId<'a>; 1]> {
    acr.subscription_ids
        .iter()
        .map(|s| protocol::messages::SubscriptionId {
            subscription_id_type: s.subscription_id_type,
            subscription_id_data: s.subscription_id_data,
        })
        .collect()
}

fn final_units(cca: &Cca<'_>) -> bool {
    cca.final_unit_indication.is_some()
        || cca
            .multiple_services_credit_control
            .iter()
            .any(|m| m.final_unit_indication.is_some())
}

/// The access leg's handler: every accounting client connects here.
pub struct AccessSide {
    /// The relay.
    pub relay: Arc<Relay>,
}

impl Handler for AccessSide {
    fn on_request(&self, connection: &Connection, incoming: Incoming) {
        match incoming.message.header().command {
            CommandCode::ACCOUNTING => {
                let peer = {
                    let access = self.relay.access.lock().unwrap_or_else(|p| p.into_inner());
                    access
                        .by_addr
                        .get(&connection.peer_addr())
                        .copied()
                        .unwrap_or(u16::MAX)
                };
                tokio::spawn(self.relay.clone().handle_acr(peer, incoming));
            }
            command => incoming
                .responder
                .reject(protocol::error::DecodeError::CommandUnsupported { command }),
        }
    }

    fn on_event(&self, connection: &Connection, event: &ConnectionEvent) {
        let mut access = self.relay.access.lock().unwrap_or_else(|p| p.into_inner());
        match event {
            ConnectionEvent::Up(peer) => {
                let index = match access.connections.iter().position(Option::is_none) {
                    Some(free) => free,
                    None => {
                        access.connections.push(None);
                        access.connections.len() - 1
                    }
                };
                access.connections[index] = Some(connection.clone());
                access.by_addr.insert(connection.peer_addr(), index as u16);
                tracing::info!(peer = %peer.origin_host, "access peer up");
            }
            ConnectionEvent::Down(reason) => {
                if let Some(index) = access.by_addr.remove(&connection.peer_addr()) {
                    access.connections[usize::from(index)] = None;
                }
                tracing::info!(addr = %connection.peer_addr(), ?reason, "access peer down");
            }
            _ => {}
        }
    }
}

/// The handler of one PDF connection: the PDF's ASR, and connection loss.
struct PdfSide {
    relay: Weak<Relay>,
    node: u8,
    connection: u8,
    /// Whether the connection is up (a Down after an Up is a connection closed; a failed
    /// connect is not).
    up: std::sync::atomic::AtomicBool,
}

impl Handler for PdfSide {
    fn on_request(&self, _: &Connection, incoming: Incoming) {
        let Some(relay) = self.relay.upgrade() else {
            return;
        };
        match incoming.message.header().command {
            CommandCode::ABORT_SESSION => relay.pdf_abort(incoming),
            command => incoming
                .responder
                .reject(protocol::error::DecodeError::CommandUnsupported { command }),
        }
    }

    fn on_event(&self, _: &Connection, event: &ConnectionEvent) {
        let Some(relay) = self.relay.upgrade() else {
            return;
        };
        match event {
            ConnectionEvent::Down(reason) => {
                if self.up.swap(false, std::sync::atomic::Ordering::Relaxed) {
                    relay.metrics.record_pdf_connection_closed(reason);
                }
                relay.connection_down(self.node, self.connection, reason)
            }
            ConnectionEvent::Up(peer) => {
                self.up.store(true, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(node = self.node, connection = self.connection, peer = %peer.origin_host, "PDF connection up")
            }
            _ => {}
        }
    }
}
