//! 3006 REDIRECT_INDICATION moves a session to another node.
//!
//! The pdf does not send 3006 yet (it will when it migrates sessions, the upgrade issue), so
//! the redirecting node here is a small Diameter server of our own protocol crate, on a real
//! socket, whose only behaviour is the one under test: answer every CCR with 3006 naming the
//! real pdf. The session must land on the real pdf and stay pinned there.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use protocol::dictionary::{AccountingRecordType, RedirectHostUsage};
use protocol::grammar::Command;
use protocol::peer::{EndToEndIds, Node, PeerConfig};
use protocol::result_code::ResultCode;
use protocol::transport::{Connection, Handler, Incoming, Server};

use crate::{acr, debited, send, sid, start_pdf};

/// Answers every request with 3006, Redirect-Host naming `target`.
struct Redirector {
    target: String,
    requests: AtomicU64,
}

impl Handler for Redirector {
    fn on_request(&self, _: &Connection, incoming: Incoming) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let request = incoming.message.clone();
        let session = request.view().session_id().unwrap_or_default().to_owned();
        let answer = protocol::messages::ErrorAnswer {
            session_id: Some(&session),
            origin_host: "redirector.example.net",
            origin_realm: "example.net",
            result_code: ResultCode::REDIRECT_INDICATION,
            redirect_hosts: smallvec::smallvec![self.target.as_str()],
            redirect_host_usage: Some(RedirectHostUsage::ALL_SESSION),
            ..Default::default()
        };
        let mut out = bytes::BytesMut::new();
        answer.encode(&request.view(), &mut out);
        incoming.responder.answer(out.freeze());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_3006_redirect_moves_the_session_to_the_named_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pdf = start_pdf(dir.path(), "pdf1", 1000);
    let mut config = PeerConfig::new("redirector.example.net", "example.net");
    config.acct_application_ids = vec![];
    let node = Node::new(config, EndToEndIds::new(1_700_000_000, 1));
    let redirector = Arc::new(Redirector {
        target: "aaa://pdf1.example.net:3868;transport=tcp".into(),
        requests: AtomicU64::new(0),
    });
    let any: SocketAddr = "127.0.0.1:0".parse().expect("address");
    let server = Server::bind(any, node, redirector.clone())
        .await
        .expect("bind");

    // Node 0 redirects everything and takes all new sessions; node 1 is the real pdf.
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[charging]\npool_size = 2\n[[pdf]]\nname = \"redirector\"\naddress = \"{}\"\nweight = 1\n\
             [[pdf]]\nname = \"pdf1\"\naddress = \"{}\"\nweight = 0\n",
            server.local_addr(),
            pdf.diameter
        ),
    )
    .expect("config");
    let config = config.display().to_string();
    let gateway = crate::start_gateway_to(&[], &["--config", &config]);
    let (_client, connection, node, _) =
        testkit::connect(gateway.diameter, "lg1.example.net").await;
    let s = sid(&node, 1);
    assert_eq!(
        send(
            &connection,
            acr(&node, &s, 4, AccountingRecordType::START_RECORD, 0, None)
        )
        .await,
        ResultCode::SUCCESS
    );
    assert_eq!(
        send(
            &connection,
            acr(
                &node,
                &s,
                4,
                AccountingRecordType::INTERIM_RECORD,
                1,
                Some(20)
            )
        )
        .await,
        ResultCode::SUCCESS
    );
    assert_eq!(
        send(
            &connection,
            acr(&node, &s, 4, AccountingRecordType::STOP_RECORD, 2, Some(5))
        )
        .await,
        ResultCode::SUCCESS
    );
    assert_eq!(
        redirector.requests.load(Ordering::Relaxed),
        1,
        "only the first CCR went to the redirecting node"
    );
    assert_eq!(
        debited(&pdf, 2),
        50,
        "25 s charged on the node the redirect named"
    );
    let (_, metrics) = testkit::http_get(gateway.admin, "/metrics");
    assert!(metrics.contains("gateway_redirects_total 1"), "{metrics}");
    server
        .shutdown(protocol::dictionary::DisconnectCause::REBOOTING)
        .await;
}

/// How a [`Scripted`] node answers a CCR.
#[derive(Clone, Copy, Debug)]
enum Reply {
    /// 3006 naming the other node.
    Redirect,
    /// 2001, after a delay.
    Success(std::time::Duration),
}

/// A PDF node of our own whose answers follow a rule of (CC-Request-Type, how many
/// requests of this Session-Id it has seen before); it counts the requests its handler saw
/// (not those its peer layer answered from the duplicate cache) and signals each redirect.
struct Scripted {
    host: &'static str,
    redirect_to: std::sync::OnceLock<String>,
    rule: fn(protocol::dictionary::CcRequestType, u32) -> Reply,
    seen: std::sync::Mutex<std::collections::HashMap<String, u32>>,
    requests: AtomicU64,
    redirected: tokio::sync::Notify,
}

impl Scripted {
    fn new(
        host: &'static str,
        rule: fn(protocol::dictionary::CcRequestType, u32) -> Reply,
    ) -> Arc<Self> {
        Arc::new(Self {
            host,
            redirect_to: std::sync::OnceLock::new(),
            rule,
            seen: std::sync::Mutex::default(),
            requests: AtomicU64::new(0),
            redirected: tokio::sync::Notify::new(),
        })
    }

    async fn serve(self: &Arc<Self>) -> Server {
        let mut config = PeerConfig::new(self.host, "example.net");
        config.acct_application_ids = vec![];
        let node = Node::new(config, EndToEndIds::new(1_700_000_000, 1));
        let any: SocketAddr = "127.0.0.1:0".parse().expect("address");
        Server::bind(any, node, self.clone()).await.expect("bind")
    }
}

impl Handler for Scripted {
    fn on_request(&self, _: &Connection, incoming: Incoming) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let request = incoming.message.clone();
        let ccr = protocol::messages::Ccr::decode(&request.view()).expect("a CCR");
        let seen = {
            let mut seen = self.seen.lock().expect("not poisoned");
            let count = seen.entry(ccr.session_id.to_owned()).or_default();
            *count += 1;
            *count - 1
        };
        let mut out = bytes::BytesMut::new();
        match (self.rule)(ccr.cc_request_type, seen) {
            Reply::Redirect => {
                let target = self.redirect_to.get().expect("a target").as_str();
                protocol::messages::ErrorAnswer {
                    session_id: Some(ccr.session_id),
                    origin_host: self.host,
                    origin_realm: "example.net",
                    result_code: ResultCode::REDIRECT_INDICATION,
                    redirect_hosts: smallvec::smallvec![target],
                    redirect_host_usage: Some(RedirectHostUsage::ALL_SESSION),
                    ..Default::default()
                }
                .encode(&request.view(), &mut out);
                incoming.responder.answer(out.freeze());
                self.redirected.notify_one();
            }
            Reply::Success(delay) => {
                protocol::messages::Cca {
                    session_id: ccr.session_id,
                    result_code: ResultCode::SUCCESS,
                    origin_host: self.host,
                    origin_realm: "example.net",
                    auth_application_id: 4,
                    cc_request_type: ccr.cc_request_type,
                    cc_request_number: ccr.cc_request_number,
                    ..Default::default()
                }
                .encode(incoming.responder.envelope(), &mut out);
                let responder = incoming.responder;
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    responder.answer(out.freeze());
                });
            }
        }
    }
}

fn uri(server: &Server) -> String {
    format!("aaa://{};transport=tcp", server.local_addr())
}

/// A gateway with the scripted nodes `(name, server, weight)`.
fn gateway_to(dir: &std::path::Path, nodes: &[(&str, &Server, u32)]) -> testkit::Process {
    let mut toml = String::from("[charging]\npool_size = 2\n");
    for (name, server, weight) in nodes {
        toml += &format!(
            "[[pdf]]\nname = \"{name}\"\naddress = \"{}\"\nweight = {weight}\n",
            server.local_addr()
        );
    }
    let config = dir.join("gateway.toml");
    std::fs::write(&config, toml).expect("config");
    let config = config.display().to_string();
    crate::start_gateway_to(&[], &["--config", &config])
}

/// During a migration a new session can go new node -> old node -> new node: the new node
/// redirects an account it does not own yet to the old one, which holds the request while the
/// account travels and then redirects it back. The second visit must be a new request: with
/// the first one's Origin-Host and End-to-End id the new node's peer layer answers it from
/// its duplicate cache (RFC 6733 section 3), that is with its first 3006 again, and the
/// START used to end in 3004 after three redirects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_back_to_a_node_that_redirected_the_request_is_a_new_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let new = Scripted::new("new.example.net", |_, seen| {
        if seen == 0 {
            Reply::Redirect
        } else {
            Reply::Success(std::time::Duration::ZERO)
        }
    });
    let old = Scripted::new("old.example.net", |_, _| Reply::Redirect);
    let (new_server, old_server) = (new.serve().await, old.serve().await);
    new.redirect_to.set(uri(&old_server)).expect("once");
    old.redirect_to.set(uri(&new_server)).expect("once");
    // As during a migration: the old node's weight is 0.
    let gateway = gateway_to(
        dir.path(),
        &[("pdf0", &old_server, 0), ("pdf1", &new_server, 1)],
    );
    let (_client, connection, node, recorder) =
        testkit::connect(gateway.diameter, "lg1.example.net").await;
    let s = sid(&node, 1);
    let start = acr(&node, &s, 4, AccountingRecordType::START_RECORD, 0, None);
    assert_eq!(send(&connection, start).await, ResultCode::SUCCESS);
    assert_eq!(
        (
            new.requests.load(Ordering::Relaxed),
            old.requests.load(Ordering::Relaxed)
        ),
        (2, 1),
        "new (3006) -> old (3006) -> new (2001), each seen by the node's handler"
    );
    let interim = acr(
        &node,
        &s,
        4,
        AccountingRecordType::INTERIM_RECORD,
        1,
        Some(10),
    );
    assert_eq!(send(&connection, interim).await, ResultCode::SUCCESS);
    assert_eq!(
        new.requests.load(Ordering::Relaxed),
        3,
        "pinned to the new node"
    );
    assert!(crate::asrs(&recorder).is_empty());
    let (_, metrics) = testkit::http_get(gateway.admin, "/metrics");
    assert!(metrics.contains("gateway_redirects_total 2"), "{metrics}");
    for server in [new_server, old_server] {
        server
            .shutdown(protocol::dictionary::DisconnectCause::REBOOTING)
            .await;
    }
}

/// A migrating node answers a moved session's next request with 3006 and, once every moved
/// session has come back, sends DPR (DO_NOT_WANT_TO_TALK_TO_YOU) and exits, possibly before
/// the redirected request is answered on the new node. The session was still pinned to the
/// old node's connection in the gateway's table, and the connection's loss used to cut it
/// (ASR LINK_BROKEN to the access client, then 5002 for its STOP): a session whose CCR is out
/// is left to that CCR's outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_redirected_just_before_its_node_sends_dpr_is_not_cut() {
    use protocol::dictionary::CcRequestType;
    let dir = tempfile::tempdir().expect("tempdir");
    let old = Scripted::new("old.example.net", |kind, _| {
        if kind == CcRequestType::INITIAL_REQUEST {
            Reply::Success(std::time::Duration::ZERO)
        } else {
            Reply::Redirect
        }
    });
    // Slow enough for the old node's DPR to be handled while the CCR is out.
    let new = Scripted::new("new.example.net", |_, _| {
        Reply::Success(std::time::Duration::from_millis(500))
    });
    let (old_server, new_server) = (old.serve().await, new.serve().await);
    old.redirect_to.set(uri(&new_server)).expect("once");
    let gateway = gateway_to(
        dir.path(),
        &[("pdf0", &old_server, 1), ("pdf1", &new_server, 0)],
    );
    let (_client, connection, node, recorder) =
        testkit::connect(gateway.diameter, "lg1.example.net").await;
    let s = sid(&node, 1);
    let start = acr(&node, &s, 4, AccountingRecordType::START_RECORD, 0, None);
    assert_eq!(send(&connection, start).await, ResultCode::SUCCESS);

    let interim = acr(
        &node,
        &s,
        4,
        AccountingRecordType::INTERIM_RECORD,
        1,
        Some(10),
    );
    let (result, ()) = tokio::join!(send(&connection, interim), async {
        old.redirected.notified().await;
        old_server
            .shutdown(protocol::dictionary::DisconnectCause::DO_NOT_WANT_TO_TALK_TO_YOU)
            .await;
    });
    assert_eq!(result, ResultCode::SUCCESS);
    let (_, nodes) = testkit::http_get(gateway.admin, "/nodes");
    assert!(
        nodes.contains("\"open_connections\":0"),
        "the old node's connections closed: {nodes}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        crate::asrs(&recorder).is_empty(),
        "no ASR: the session lives on the new node"
    );
    let (_, count) = testkit::http_get(gateway.admin, "/sessions/count");
    assert!(count.contains("\"sessions\":1"), "{count}");
    let stop = acr(&node, &s, 4, AccountingRecordType::STOP_RECORD, 2, Some(5));
    assert_eq!(send(&connection, stop).await, ResultCode::SUCCESS);
    assert_eq!(
        new.requests.load(Ordering::Relaxed),
        2,
        "the UPDATE and the TERMINATION"
    );
    new_server
        .shutdown(protocol::dictionary::DisconnectCause::REBOOTING)
        .await;
}
