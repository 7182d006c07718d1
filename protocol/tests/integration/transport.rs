//! The tokio layer over real sockets on 127.0.0.1: our client against our server, with
//! pipelined requests, a slow request that must not hold up the others, DPR REBOOTING and
//! reconnection, and the bound on outstanding requests.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use protocol::dictionary::{CcRequestType, DisconnectCause};
use protocol::grammar::{Command, Envelope};
use protocol::header::{ApplicationId, HopByHopId};
use protocol::messages::{Cca, Ccr};
use protocol::peer::{DownReason, EndToEndIds, Node, PeerConfig};
use protocol::result_code::ResultCode;
use protocol::transport::{
    Client, ClientOptions, Connection, ConnectionEvent, Handler, Incoming, Server,
};

pub(crate) fn node(host: &str, configure: impl FnOnce(&mut PeerConfig)) -> Arc<Node> {
    let mut config = PeerConfig::new(host, "example.net");
    configure(&mut config);
    Node::new(config, EndToEndIds::new(1_700_000_000, fastrand::u32(..)))
}

pub(crate) fn ccr(node: &Node, number: u32) -> Bytes {
    let session = format!("client.example.net;1;{number}");
    let ccr = Ccr {
        session_id: &session,
        origin_host: &node.config.origin_host,
        origin_realm: "example.net",
        destination_realm: "example.net",
        auth_application_id: 4,
        service_context_id: "32251@3gpp.org",
        cc_request_type: CcRequestType::UPDATE_REQUEST,
        cc_request_number: number,
        ..Default::default()
    };
    let mut out = BytesMut::new();
    let envelope = Envelope::request(
        ApplicationId::CREDIT_CONTROL,
        HopByHopId(0),
        node.end_to_end.next(),
    );
    ccr.encode(envelope, &mut out);
    out.freeze()
}

fn answer(incoming: Incoming) {
    let message = incoming.message;
    let ccr = match Ccr::decode(&message.view()) {
        Ok(ccr) => ccr,
        Err(error) => return incoming.responder.reject(error),
    };
    incoming.responder.answer_with(|envelope, buf| {
        Cca {
            session_id: ccr.session_id,
            result_code: ResultCode::SUCCESS,
            origin_host: "server.example.net",
            origin_realm: "example.net",
            auth_application_id: 4,
            cc_request_type: ccr.cc_request_type,
            cc_request_number: ccr.cc_request_number,
            ..Default::default()
        }
        .encode(envelope, buf);
    });
}

/// Answers every CCR; CC-Request-Number 0 is answered only after `slow`; tracks how many
/// requests are in flight at once and the events seen.
#[derive(Default)]
pub(crate) struct CcaServer {
    pub(crate) slow: Option<Duration>,
    pub(crate) delay: Option<Duration>,
    pub(crate) in_flight: Arc<AtomicUsize>,
    pub(crate) max_in_flight: Arc<AtomicUsize>,
    pub(crate) events: Mutex<Vec<ConnectionEvent>>,
}

impl Handler for CcaServer {
    fn on_request(&self, _: &Connection, incoming: Incoming) {
        let number = Ccr::decode(&incoming.message.view()).map(|c| c.cc_request_number);
        let delay = match number {
            Ok(0) => self.slow,
            _ => self.delay,
        };
        let Some(delay) = delay else {
            return answer(incoming);
        };
        let (in_flight, max) = (self.in_flight.clone(), self.max_in_flight.clone());
        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        max.fetch_max(now, Ordering::SeqCst);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            in_flight.fetch_sub(1, Ordering::SeqCst);
            answer(incoming);
        });
    }

    fn on_event(&self, _: &Connection, event: &ConnectionEvent) {
        self.events
            .lock()
            .expect("not poisoned")
            .push(event.clone());
    }
}

/// The client side: records events, refuses requests (the server sends none here).
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<ConnectionEvent>>,
}

impl Handler for Recorder {
    fn on_request(&self, _: &Connection, _: Incoming) {}
    fn on_event(&self, _: &Connection, event: &ConnectionEvent) {
        self.events
            .lock()
            .expect("not poisoned")
            .push(event.clone());
    }
}

async fn server(handler: Arc<dyn Handler>) -> Server {
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("address");
    Server::bind(addr, node("server.example.net", |_| {}), handler)
        .await
        .expect("bind")
}

fn quick_reconnect() -> ClientOptions {
    ClientOptions {
        initial_backoff: Duration::from_millis(50),
        tc: Duration::from_millis(200),
        ..Default::default()
    }
}

async fn connect(
    addr: SocketAddr,
    node: Arc<Node>,
    handler: Arc<dyn Handler>,
    options: ClientOptions,
) -> (Client, Connection) {
    let client = Client::start(addr, node, handler, options);
    let connection = client
        .wait_open(Duration::from_secs(5))
        .await
        .expect("connection opens");
    (client, connection)
}

/// [`connect`] with default options, as `client_node`, recording the client's events.
async fn connect_recording(addr: SocketAddr, client_node: &Arc<Node>) -> (Client, Connection) {
    connect(
        addr,
        client_node.clone(),
        Arc::new(Recorder::default()),
        ClientOptions::default(),
    )
    .await
}

pub(crate) fn cc_request_number(message: &protocol::message::Message) -> u32 {
    Cca::decode(&message.view())
        .expect("a CCA")
        .cc_request_number
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_all_answered() {
    let handler = Arc::new(CcaServer::default());
    let server = server(handler.clone()).await;
    let client_node = node("client.example.net", |_| {});
    let (client, connection) = connect_recording(server.local_addr(), &client_node).await;
    assert_eq!(
        connection.peer().map(|p| p.origin_host.clone()).as_deref(),
        Some("server.example.net")
    );

    let requests = (1..=2000).map(|n| {
        let connection = connection.clone();
        let bytes = ccr(&client_node, n);
        tokio::spawn(async move { connection.request(bytes, None).await })
    });
    let mut numbers = Vec::new();
    for request in requests.collect::<Vec<_>>() {
        numbers.push(cc_request_number(
            &request.await.expect("task").expect("answered"),
        ));
    }
    assert_eq!(
        numbers,
        (1..=2000).collect::<Vec<_>>(),
        "each answer matches its request"
    );
    client
        .close(DisconnectCause::DO_NOT_WANT_TO_TALK_TO_YOU)
        .await;
    server.shutdown(DisconnectCause::REBOOTING).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_request_does_not_hold_up_the_others() {
    let handler = Arc::new(CcaServer {
        slow: Some(Duration::from_secs(2)),
        ..Default::default()
    });
    let server = server(handler.clone()).await;
    let client_node = node("client.example.net", |_| {});
    let (_client, connection) = connect_recording(server.local_addr(), &client_node).await;

    let started = Instant::now();
    let slow = {
        let connection = connection.clone();
        let bytes = ccr(&client_node, 0);
        tokio::spawn(async move {
            let answer = connection.request(bytes, None).await;
            (answer, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    for n in 1..=100 {
        let answer = connection
            .request(ccr(&client_node, n), None)
            .await
            .expect("answered");
        assert_eq!(cc_request_number(&answer), n);
    }
    let fast_done = started.elapsed();
    assert!(
        !slow.is_finished(),
        "the slow request is still being processed"
    );
    assert!(
        fast_done < Duration::from_secs(2),
        "100 requests behind a slow one took {fast_done:?}"
    );
    let (answer, slow_done) = slow.await.expect("task");
    assert_eq!(cc_request_number(&answer.expect("answered")), 0);
    assert!(slow_done >= Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dpr_rebooting_then_the_client_reconnects_to_the_new_server() {
    let first = server(Arc::new(CcaServer::default())).await;
    let addr = first.local_addr();
    let recorder = Arc::new(Recorder::default());
    let client_node = node("client.example.net", |_| {});
    let (client, connection) = connect(
        addr,
        client_node.clone(),
        recorder.clone(),
        quick_reconnect(),
    )
    .await;
    connection
        .request(ccr(&client_node, 1), None)
        .await
        .expect("answered");

    first.shutdown(DisconnectCause::REBOOTING).await;
    assert_eq!(
        connection.closed().await,
        DownReason::PeerDisconnected(DisconnectCause::REBOOTING)
    );
    // The "new version" binds the same address; the client finds it by itself.
    let second = Server::bind(
        addr,
        node("server.example.net", |_| {}),
        Arc::new(CcaServer::default()),
    )
    .await
    .expect("rebind");
    let again = client
        .wait_open(Duration::from_secs(5))
        .await
        .expect("reconnected");
    let answer = again
        .request(ccr(&client_node, 2), None)
        .await
        .expect("answered");
    assert_eq!(cc_request_number(&answer), 2);
    let events = recorder.events.lock().expect("not poisoned").clone();
    assert!(events.iter().any(|e| matches!(
        e,
        ConnectionEvent::Down(DownReason::PeerDisconnected(DisconnectCause::REBOOTING))
    )));
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, ConnectionEvent::Up(_)))
            .count(),
        2
    );
    client
        .close(DisconnectCause::DO_NOT_WANT_TO_TALK_TO_YOU)
        .await;
    second.shutdown(DisconnectCause::REBOOTING).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outstanding_requests_are_bounded() {
    let handler = Arc::new(CcaServer {
        delay: Some(Duration::from_millis(20)),
        ..Default::default()
    });
    let server = server(handler.clone()).await;
    let client_node = node("client.example.net", |c| c.max_pending_requests = 4);
    let (_client, connection) = connect_recording(server.local_addr(), &client_node).await;
    let requests: Vec<_> = (1..=40)
        .map(|n| {
            let connection = connection.clone();
            let bytes = ccr(&client_node, n);
            tokio::spawn(async move { connection.request(bytes, None).await })
        })
        .collect();
    for request in requests {
        request.await.expect("task").expect("answered");
    }
    let max = handler.max_in_flight.load(Ordering::SeqCst);
    assert!(
        (1..=4).contains(&max),
        "the server saw {max} requests in flight; the bound is 4"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_timeout_and_a_dropped_responder() {
    // The server never answers number 0 within the client's timeout.
    let handler = Arc::new(CcaServer {
        slow: Some(Duration::from_secs(3)),
        ..Default::default()
    });
    let slow_server = server(handler).await;
    let client_node = node("client.example.net", |_| {});
    let (_client, connection) = connect_recording(slow_server.local_addr(), &client_node).await;
    let result = connection
        .request(ccr(&client_node, 0), Some(Duration::from_millis(200)))
        .await;
    assert_eq!(
        result.err(),
        Some(protocol::transport::RequestError::TimedOut)
    );

    // A handler that drops the responder: the peer still gets an answer (5012).
    struct Dropper;
    impl Handler for Dropper {
        fn on_request(&self, _: &Connection, _incoming: Incoming) {}
    }
    let dropper = server(Arc::new(Dropper)).await;
    let (_client2, connection) = connect_recording(dropper.local_addr(), &client_node).await;
    let answer = connection
        .request(ccr(&client_node, 5), None)
        .await
        .expect("answered");
    let view = answer.view();
    let error = protocol::messages::ErrorAnswer::decode(&view).expect("an answer");
    assert_eq!(error.result_code, ResultCode::UNABLE_TO_COMPLY);
}

/// `request_timed` stamps the answer when the connection read it, not when the caller next
/// ran: a caller that comes back late still sees when the answer arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_request_reports_when_the_answer_was_read() {
    let handler = Arc::new(CcaServer {
        delay: Some(Duration::from_millis(20)),
        ..Default::default()
    });
    let server = server(handler).await;
    let client_node = node("client.example.net", |_| {});
    let (client, connection) = connect_recording(server.local_addr(), &client_node).await;
    let sent = Instant::now();
    let mut request = Box::pin(connection.request_timed(ccr(&client_node, 1), None));
    // Polled once (the request leaves), then left alone well after its answer came.
    tokio::select! {
        biased;
        _ = &mut request => panic!("answered before the server's 20 ms delay"),
        () = tokio::time::sleep(Duration::from_millis(5)) => {}
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let answered = request.await.expect("answered");
    let resumed = Instant::now();
    assert_eq!(cc_request_number(&answered.message), 1);
    assert!(
        answered.read_at >= sent + Duration::from_millis(20),
        "read after the server's delay: {:?}",
        answered.read_at - sent
    );
    assert!(
        resumed - answered.read_at >= Duration::from_millis(200),
        "stamped when read, not when the caller resumed: {:?} before",
        resumed - answered.read_at
    );
    client
        .close(DisconnectCause::DO_NOT_WANT_TO_TALK_TO_YOU)
        .await;
    server.shutdown(DisconnectCause::REBOOTING).await;
}

/// An orderly close answers what it has received before its DPR: the client gets the
/// answer to a request that was being processed at the shutdown, not a lost connection
/// (which it would re-send elsewhere: processed twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_answers_the_requests_in_flight_before_its_dpr() {
    let handler = Arc::new(CcaServer {
        delay: Some(Duration::from_millis(300)),
        ..Default::default()
    });
    let server = server(handler.clone()).await;
    let client_node = node("client.example.net", |_| {});
    let (_client, connection) = connect_recording(server.local_addr(), &client_node).await;
    let pending = {
        let connection = connection.clone();
        let bytes = ccr(&client_node, 3);
        tokio::spawn(async move { connection.request(bytes, None).await })
    };
    // The request is in the server's hands (its handler waits 300 ms) when it shuts down.
    let deadline = Instant::now() + Duration::from_secs(5);
    while handler.in_flight.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the request never arrived");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let shutting = Instant::now();
    server.shutdown(DisconnectCause::REBOOTING).await;
    let answer = pending
        .await
        .expect("task")
        .expect("answered before the DPR, not failed by it");
    assert_eq!(cc_request_number(&answer), 3);
    assert!(
        shutting.elapsed() < Duration::from_secs(2),
        "{:?}",
        shutting.elapsed()
    );
    assert_eq!(
        connection.closed().await,
        DownReason::PeerDisconnected(DisconnectCause::REBOOTING)
    );
}
