//! Two peer cores wired together in memory with a fake clock (quinn-proto's `Pair`): the
//! handshake, watchdog, DPR, timeouts, retransmissions and every error answer, without
//! sockets or sleeps.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::*;
use crate::dictionary::{CcRequestType, DisconnectCause};
use crate::encode::{set_retransmit_flag, MessageWriter};
use crate::grammar::{Command, Envelope};
use crate::header::{CommandFlags, HopByHopId};
use crate::message::MessageView;
use crate::messages::{Cca, Ccr, ErrorAnswer};

fn node(host: &str) -> Arc<Node> {
    Node::new(
        PeerConfig::new(host, "example.net"),
        EndToEndIds::new(1_700_000_000, 42),
    )
}

fn node_with(host: &str, configure: impl FnOnce(&mut PeerConfig)) -> Arc<Node> {
    let mut config = PeerConfig::new(host, "example.net");
    configure(&mut config);
    Node::new(config, EndToEndIds::new(1_700_000_000, 7))
}

/// A client (initiator) and a server (responder) joined by in-memory pipes.
struct Pair {
    now: Instant,
    client: Peer,
    server: Peer,
    client_events: Vec<Event>,
    server_events: Vec<Event>,
    /// When false, bytes from the server are lost (a peer that stopped answering).
    server_reachable: bool,
}

impl Pair {
    fn new(client: Arc<Node>, server: Arc<Node>) -> Self {
        let now = Instant::now();
        Self {
            now,
            client: Peer::new(client, Role::Initiator, now, 1),
            server: Peer::new(server, Role::Responder, now, 2),
            client_events: Vec::new(),
            server_events: Vec::new(),
            server_reachable: true,
        }
    }

    fn connected() -> Self {
        let mut pair = Self::new(node("client.example.net"), node("server.example.net"));
        pair.drive();
        assert!(pair.client.is_open() && pair.server.is_open());
        pair.client_events.clear();
        pair.server_events.clear();
        pair
    }

    /// Moves bytes both ways until neither side has anything to send.
    fn drive(&mut self) {
        loop {
            let mut moved = false;
            if let Some(bytes) = self.client.poll_transmit() {
                self.server
                    .handle_input(self.now, &mut BytesMut::from(&bytes[..]));
                moved = true;
            }
            if let Some(bytes) = self.server.poll_transmit() {
                if self.server_reachable {
                    self.client
                        .handle_input(self.now, &mut BytesMut::from(&bytes[..]));
                }
                moved = true;
            }
            while let Some(event) = self.client.poll_event() {
                self.client_events.push(event);
            }
            while let Some(event) = self.server.poll_event() {
                self.server_events.push(event);
            }
            if !moved {
                return;
            }
        }
    }

    /// Advances the fake clock, firing every timer due on the way.
    fn advance(&mut self, by: Duration) {
        let end = self.now + by;
        loop {
            let next = [self.client.poll_timeout(), self.server.poll_timeout()]
                .into_iter()
                .flatten()
                .filter(|t| *t <= end)
                .min();
            let Some(next) = next else { break };
            self.now = next.max(self.now);
            self.client.handle_timeout(self.now);
            self.server.handle_timeout(self.now);
            self.drive();
        }
        self.now = end;
        self.drive();
    }

    fn send_ccr(&mut self, number: u32) -> HopByHopId {
        let bytes = ccr(number);
        let hop = self
            .client
            .send_request(self.now, &bytes, None)
            .expect("open");
        self.drive();
        hop
    }

    fn take_server_requests(&mut self) -> Vec<IncomingRequest> {
        let (requests, rest): (Vec<_>, Vec<_>) = self
            .server_events
            .drain(..)
            .partition(|e| matches!(e, Event::Request(_)));
        self.server_events = rest;
        requests
            .into_iter()
            .map(|e| match e {
                Event::Request(request) => request,
                _ => unreachable!("partitioned on Request"),
            })
            .collect()
    }

    fn answer(&mut self, request: &IncomingRequest) {
        let ccr = Ccr::decode(&request.message.view()).expect("a CCR");
        let cca = Cca {
            session_id: ccr.session_id,
            result_code: ResultCode::SUCCESS,
            origin_host: "server.example.net",
            origin_realm: "example.net",
            auth_application_id: 4,
            cc_request_type: ccr.cc_request_type,
            cc_request_number: ccr.cc_request_number,
            ..Default::default()
        };
        let mut out = BytesMut::new();
        cca.encode(request.ticket.envelope(), &mut out);
        if self.server.answer(request.ticket, &out).is_err() {
            assert!(
                self.server.is_closed(),
                "answers fail only on a closed connection"
            );
        }
        self.drive();
    }

    fn client_answers(&self) -> Vec<(HopByHopId, u32)> {
        self.client_events
            .iter()
            .filter_map(|e| match e {
                Event::Answer {
                    hop_by_hop,
                    message,
                } => {
                    let cca = Cca::decode(&message.view()).expect("a CCA");
                    Some((*hop_by_hop, cca.cc_request_number))
                }
                _ => None,
            })
            .collect()
    }
}

fn ccr(number: u32) -> Bytes {
    let ccr = Ccr {
        session_id: "client.example.net;1;1",
        origin_host: "client.example.net",
        origin_realm: "example.net",
        destination_realm: "example.net",
        auth_application_id: 4,
        service_context_id: "32251@3gpp.org",
        cc_request_type: CcRequestType::UPDATE_REQUEST,
        cc_request_number: number,
        ..Default::default()
    };
    let mut out = BytesMut::new();
    ccr.encode(
        Envelope::request(
            ApplicationId::CREDIT_CONTROL,
            HopByHopId(0),
            EndToEndId(1000 + number),
        ),
        &mut out,
    );
    out.freeze()
}

/// Sends raw request bytes from the client side and returns the answer the server wrote.
fn raw_exchange(pair: &mut Pair, request: &[u8]) -> Bytes {
    pair.server
        .handle_input(pair.now, &mut BytesMut::from(request));
    pair.server.poll_transmit().expect("the server answers")
}

fn result_code_of(answer: &[u8]) -> (ResultCode, bool) {
    let view = MessageView::parse(answer).expect("an answer");
    let decoded = ErrorAnswer::decode(&view).expect("answers decode leniently");
    (decoded.result_code, view.header().flags.is_error())
}

#[test]
fn handshake_opens_both_sides() {
    let mut pair = Pair::new(node("client.example.net"), node("server.example.net"));
    assert!(!pair.client.is_open());
    pair.drive();
    let up = |events: &[Event]| {
        events.iter().find_map(|e| match e {
            Event::Up(info) => Some(info.clone()),
            _ => None,
        })
    };
    let server_sees = up(&pair.server_events).expect("server up");
    let client_sees = up(&pair.client_events).expect("client up");
    assert_eq!(server_sees.origin_host, "client.example.net");
    assert_eq!(client_sees.origin_host, "server.example.net");
    assert_eq!(client_sees.origin_state_id, Some(1));
    assert_eq!(
        client_sees.applications,
        vec![
            ApplicationId::BASE_ACCOUNTING,
            ApplicationId::CREDIT_CONTROL
        ]
    );
}

#[test]
fn no_common_application_is_5010_and_closes() {
    let client = node_with("client.example.net", |c| {
        c.auth_application_ids = vec![ApplicationId(16_777_238)];
        c.acct_application_ids = vec![];
    });
    let mut pair = Pair::new(client, node("server.example.net"));
    pair.drive();
    assert!(pair.server.is_closed() && pair.client.is_closed());
    assert!(pair.server_events.iter().any(|e| matches!(
        e,
        Event::Down(DownReason::CapabilitiesRefused(
            ResultCode::NO_COMMON_APPLICATION
        ))
    )));
    assert!(pair.client_events.iter().any(|e| matches!(
        e,
        Event::Down(DownReason::CapabilitiesRejected(
            ResultCode::NO_COMMON_APPLICATION
        ))
    )));
}

#[test]
fn unknown_peer_is_3010_and_closes() {
    let server = node_with("server.example.net", |c| {
        c.allowed_peers = Some(vec!["gw.example.net".into()])
    });
    let mut pair = Pair::new(node("client.example.net"), server);
    pair.drive();
    assert!(pair.client_events.iter().any(|e| matches!(
        e,
        Event::Down(DownReason::CapabilitiesRejected(ResultCode::UNKNOWN_PEER))
    )));
    assert!(pair.server.is_closed());
}

#[test]
fn allowlisted_peer_is_accepted() {
    let server = node_with("server.example.net", |c| {
        c.allowed_peers = Some(vec!["CLIENT.example.net".into()])
    });
    let mut pair = Pair::new(node("client.example.net"), server);
    pair.drive();
    assert!(pair.client.is_open() && pair.server.is_open());
}

#[test]
fn application_messages_before_cer_close_the_connection() {
    let mut server = Peer::new(
        node("server.example.net"),
        Role::Responder,
        Instant::now(),
        3,
    );
    server.handle_input(Instant::now(), &mut BytesMut::from(&ccr(1)[..]));
    assert!(server.is_closed());
    assert!(matches!(
        server.poll_event(),
        Some(Event::Down(DownReason::ProtocolViolation(_)))
    ));
    assert!(
        server.poll_transmit().is_none(),
        "nothing is answered before CER"
    );
}

#[test]
fn capabilities_timeout() {
    let now = Instant::now();
    let mut server = Peer::new(node("server.example.net"), Role::Responder, now, 3);
    let deadline = server.poll_timeout().expect("a CER deadline");
    server.handle_timeout(deadline);
    assert!(matches!(
        server.poll_event(),
        Some(Event::Down(DownReason::CapabilitiesTimeout))
    ));
}

#[test]
fn requests_and_answers_match_out_of_order() {
    let mut pair = Pair::connected();
    let first = pair.send_ccr(1);
    let second = pair.send_ccr(2);
    assert_ne!(first, second);
    let requests = pair.take_server_requests();
    assert_eq!(requests.len(), 2);
    // The second is answered first: nothing waits for the slow first one.
    pair.answer(&requests[1]);
    assert_eq!(pair.client_answers(), vec![(second, 2)]);
    pair.answer(&requests[0]);
    assert_eq!(pair.client_answers(), vec![(second, 2), (first, 1)]);
    assert_eq!(pair.client.pending_requests(), 0);
    assert_eq!(pair.server.stats().answers_sent, 2);
}

#[test]
fn request_timeout_then_late_answer_is_counted_unknown() {
    let mut pair = Pair::connected();
    let hop = pair.send_ccr(1);
    let requests = pair.take_server_requests();
    pair.advance(Duration::from_secs(5));
    assert!(pair.client_events.iter().any(|e| matches!(
        e,
        Event::RequestFailed { hop_by_hop, reason: RequestFailure::TimedOut, .. } if *hop_by_hop == hop
    )));
    pair.answer(&requests[0]);
    assert!(pair.client_answers().is_empty());
    assert_eq!(pair.client.stats().unknown_answers, 1);
}

#[test]
fn watchdog_probes_an_idle_connection_and_keeps_it() {
    let mut pair = Pair::connected();
    pair.advance(Duration::from_secs(100));
    assert!(pair.client.is_open() && pair.server.is_open());
    assert_eq!(pair.client.watchdog_state(), Some(WatchdogState::Okay));
    assert!(!pair
        .client_events
        .iter()
        .any(|e| matches!(e, Event::Suspect)));
}

#[test]
fn watchdog_suspects_then_recovers_then_closes() {
    let mut pair = Pair::connected();
    pair.server_reachable = false;
    // Tw (28..32 s) until the DWR, another Tw until SUSPECT.
    pair.advance(Duration::from_secs(65));
    assert_eq!(pair.client.watchdog_state(), Some(WatchdogState::Suspect));
    assert!(pair
        .client_events
        .iter()
        .any(|e| matches!(e, Event::Suspect)));
    // The peer comes back: the next DWA recovers the connection.
    pair.server_reachable = true;
    let hop = pair.send_ccr(1);
    let requests = pair.take_server_requests();
    pair.answer(&requests[0]);
    assert!(pair
        .client_events
        .iter()
        .any(|e| matches!(e, Event::Recovered)));
    assert_eq!(pair.client_answers(), vec![(hop, 1)]);
    // Silent again: suspect, then down after one more Tw.
    pair.server_reachable = false;
    pair.advance(Duration::from_secs(100));
    assert!(pair.client.is_closed());
    assert!(pair
        .client_events
        .iter()
        .any(|e| matches!(e, Event::Down(DownReason::WatchdogExpired))));
}

#[test]
fn dpr_rebooting_closes_both_and_fails_pending_requests() {
    let mut pair = Pair::connected();
    let hop = pair.send_ccr(1);
    pair.server.disconnect(pair.now, DisconnectCause::REBOOTING);
    pair.drive();
    assert!(pair.server.is_closed() && pair.client.is_closed());
    let client_down = pair.client_events.iter().find_map(|e| match e {
        Event::Down(reason) => Some(reason.clone()),
        _ => None,
    });
    assert_eq!(
        client_down,
        Some(DownReason::PeerDisconnected(DisconnectCause::REBOOTING))
    );
    assert!(client_down.is_some_and(|r| r.should_reconnect()));
    assert!(pair.client_events.iter().any(|e| matches!(
        e,
        Event::RequestFailed { hop_by_hop, reason: RequestFailure::ConnectionDown, .. } if *hop_by_hop == hop
    )));
    assert!(pair.server_events.iter().any(|e| matches!(
        e,
        Event::Down(DownReason::LocalDisconnect(DisconnectCause::REBOOTING))
    )));
    assert!(!DownReason::PeerDisconnected(DisconnectCause::BUSY).should_reconnect());
}

/// A request that crosses our DPR on the wire is not processed: the peer fails it when it
/// reads the DPR and sends it elsewhere.
#[test]
fn a_request_after_our_dpr_is_refused_3002_not_delivered() {
    let mut pair = Pair::connected();
    pair.server.disconnect(pair.now, DisconnectCause::REBOOTING);
    let dpr = pair.server.poll_transmit().expect("the DPR");
    assert!(MessageView::parse(&dpr)
        .expect("a message")
        .header()
        .is_request());
    let answer = raw_exchange(&mut pair, &ccr(7));
    assert_eq!(
        result_code_of(&answer),
        (ResultCode::UNABLE_TO_DELIVER, true)
    );
    pair.drive();
    assert!(pair.take_server_requests().is_empty(), "not delivered");
}

#[test]
fn dpr_without_dpa_closes_after_the_timeout() {
    let mut pair = Pair::connected();
    pair.server_reachable = false;
    pair.client.disconnect(pair.now, DisconnectCause::BUSY);
    pair.drive();
    // The server answered DPA, but it was lost; the client gives up after the timeout.
    assert!(!pair.client.is_closed());
    pair.advance(Duration::from_secs(5));
    assert!(pair.client.is_closed());
}

#[test]
fn retransmission_is_answered_from_the_cache_not_processed_twice() {
    let mut pair = Pair::connected();
    let original = ccr(9);
    pair.client
        .send_request(pair.now, &original, None)
        .expect("open");
    pair.drive();
    // While the original is being processed, a retransmission goes to the application too
    // (the original's answer might never leave: the application is idempotent).
    let mut retransmission = BytesMut::from(&original[..]);
    set_retransmit_flag(&mut retransmission);
    pair.client
        .send_request(pair.now, &retransmission, None)
        .expect("open");
    pair.drive();
    assert_eq!(pair.server.stats().duplicates_in_progress, 1);
    let requests = pair.take_server_requests();
    assert_eq!(
        requests.len(),
        2,
        "the in-progress copy is handed to the application"
    );
    pair.answer(&requests[0]);
    pair.answer(&requests[1]);
    // After the answer, a retransmission gets the cached answer under its own hop-by-hop id.
    let hop = pair
        .client
        .send_request(pair.now, &retransmission, None)
        .expect("open");
    pair.drive();
    assert!(pair.take_server_requests().is_empty());
    assert_eq!(pair.server.stats().duplicates_answered, 1);
    assert!(pair.client_answers().contains(&(hop, 9)));
}

#[test]
fn error_answers_for_protocol_errors() {
    let mut pair = Pair::connected();
    // 3001: a command we do not support (STR, command 275, application 4).
    let mut unknown = BytesMut::new();
    let mut w = MessageWriter::new(
        &mut unknown,
        CommandFlags::REQUEST.with(CommandFlags::PROXIABLE),
        CommandCode(275),
        ApplicationId::CREDIT_CONTROL,
        HopByHopId(1),
        EndToEndId(1),
    );
    w.utf8(&crate::dictionary::SESSION_ID, "s;1");
    w.utf8(&crate::dictionary::ORIGIN_HOST, "client.example.net");
    w.finish();
    assert_eq!(
        result_code_of(&raw_exchange(&mut pair, &unknown)),
        (ResultCode::COMMAND_UNSUPPORTED, true)
    );

    // 3007: an application not negotiated.
    let mut app = BytesMut::from(&ccr(1)[..]);
    app[8..12].copy_from_slice(&16_777_238u32.to_be_bytes());
    assert_eq!(
        result_code_of(&raw_exchange(&mut pair, &app)),
        (ResultCode::APPLICATION_UNSUPPORTED, true)
    );

    // 3008: a request with the E bit.
    let mut bits = BytesMut::from(&ccr(1)[..]);
    bits[4] |= CommandFlags::ERROR.0;
    assert_eq!(
        result_code_of(&raw_exchange(&mut pair, &bits)),
        (ResultCode::INVALID_HDR_BITS, true)
    );

    // 5014: CC-Request-Number with 3 bytes of data (the walk checks lengths by type).
    let mut short = BytesMut::from(&ccr(1)[..]);
    let at = MessageView::parse(&ccr(1))
        .expect("ccr")
        .find(crate::dictionary::CC_REQUEST_NUMBER.code)
        .expect("present")
        .offset() as usize;
    short[at + 7] = 11;
    let answer = raw_exchange(&mut pair, &short);
    assert_eq!(
        result_code_of(&answer),
        (ResultCode::INVALID_AVP_LENGTH, false)
    );
    let failed = ErrorAnswer::decode(&MessageView::parse(&answer).expect("answer"))
        .expect("answer")
        .failed_avp;
    assert!(failed.is_some(), "5014 carries the Failed-AVP");

    // 5001 via the application's typed decode: an unknown M-bit AVP.
    let mut extra = BytesMut::new();
    let mut w = MessageWriter::new(
        &mut extra,
        CommandFlags::REQUEST.with(CommandFlags::PROXIABLE),
        CommandCode::CREDIT_CONTROL,
        ApplicationId::CREDIT_CONTROL,
        HopByHopId(1),
        EndToEndId(77),
    );
    w.utf8(&crate::dictionary::SESSION_ID, "s;2");
    w.utf8(&crate::dictionary::ORIGIN_HOST, "client.example.net");
    w.raw(
        crate::avp::AvpCode(99_999),
        crate::avp::AvpFlags::MANDATORY,
        None,
        b"x",
    );
    w.finish();
    pair.server
        .handle_input(pair.now, &mut BytesMut::from(&extra[..]));
    let Some(Event::Request(request)) = pair.server.poll_event() else {
        panic!("a request")
    };
    let error = Ccr::decode(&request.message.view()).expect_err("unknown M-bit AVP");
    pair.server
        .answer_decode_error(request.ticket, &request.message, &error)
        .expect("open");
    let answer = pair.server.poll_transmit().expect("answer");
    assert_eq!(
        result_code_of(&answer),
        (ResultCode::AVP_UNSUPPORTED, false)
    );
    assert!(
        pair.server.is_open(),
        "errors other than framing keep the connection"
    );
    assert_eq!(pair.server.stats().errors_answered, 4);
}

#[test]
fn overload_is_answered_3004() {
    let server = node_with("server.example.net", |c| c.max_incoming_requests = 1);
    let mut pair = Pair::new(node("client.example.net"), server);
    pair.drive();
    pair.send_ccr(1);
    pair.send_ccr(2);
    assert_eq!(pair.take_server_requests().len(), 1);
    assert_eq!(pair.server.stats().busy_answered, 1);
    let busy = pair.client_events.iter().find_map(|e| match e {
        Event::Answer { message, .. } => Some(result_code_of(message.bytes())),
        _ => None,
    });
    assert_eq!(busy, Some((ResultCode::TOO_BUSY, true)));
}

#[test]
fn framing_error_closes_the_connection() {
    let mut pair = Pair::connected();
    pair.server
        .handle_input(pair.now, &mut BytesMut::from(&[2u8, 0, 0, 20][..]));
    assert!(pair.server.is_closed());
    pair.drive();
    assert!(pair.server_events.iter().any(|e| matches!(
        e,
        Event::Down(DownReason::FramingError(DecodeError::UnsupportedVersion {
            version: 2
        }))
    )));
}

#[test]
fn backpressure_bounds_outstanding_requests() {
    let client = node_with("client.example.net", |c| c.max_pending_requests = 2);
    let mut pair = Pair::new(client, node("server.example.net"));
    pair.drive();
    assert_eq!(
        pair.client
            .send_request(pair.now, &ccr(1), None)
            .map(|_| ()),
        Ok(())
    );
    assert_eq!(
        pair.client
            .send_request(pair.now, &ccr(2), None)
            .map(|_| ()),
        Ok(())
    );
    assert_eq!(
        pair.client.send_request(pair.now, &ccr(3), None),
        Err(SendError::Backpressure(2))
    );
    let mut closed = Peer::new(node("x.example.net"), Role::Initiator, pair.now, 1);
    assert_eq!(
        closed.send_request(pair.now, &ccr(1), None),
        Err(SendError::NotOpen)
    );
}

#[test]
fn byte_at_a_time_input_works() {
    let mut pair = Pair::new(node("client.example.net"), node("server.example.net"));
    let cer = pair.client.poll_transmit().expect("CER");
    let mut input = BytesMut::new();
    for &b in cer.iter() {
        input.extend_from_slice(&[b]);
        pair.server.handle_input(pair.now, &mut input);
    }
    assert!(pair.server.is_open());
}

proptest! {
    /// Random interleavings of requests, answers, timer advances and garbage keep the
    /// invariants: no panic, pending requests never exceed the bound, a closed peer stays
    /// closed, and every request ends exactly once (answer or failure).
    #[test]
    fn random_event_sequences_keep_invariants(ops in proptest::collection::vec(0u8..6, 1..60)) {
        let mut pair = Pair::connected();
        let mut requests = Vec::new();
        let mut sent = 0;
        for op in ops {
            match op {
                0 => if pair.client.send_request(pair.now, &ccr(sent), None).is_ok() { sent += 1; pair.drive(); },
                1 => requests.extend(pair.take_server_requests()),
                2 => if let Some(r) = requests.pop() { pair.answer(&r) },
                3 => pair.advance(Duration::from_secs(2)),
                4 => { pair.server.handle_input(pair.now, &mut BytesMut::from(&[2u8, 0, 0, 20][..])); pair.drive(); }
                _ => pair.server_reachable = !pair.server_reachable,
            }
            prop_assert!(pair.client.pending_requests() <= 65_536);
        }
        pair.server_reachable = true;
        pair.advance(Duration::from_secs(200));
        let ended = pair.client_events.iter().filter(|e| matches!(e, Event::Answer { .. } | Event::RequestFailed { .. })).count();
        prop_assert_eq!(ended as u32, sent, "every request ends exactly once");
        prop_assert_eq!(pair.client.pending_requests(), 0);
    }
}
