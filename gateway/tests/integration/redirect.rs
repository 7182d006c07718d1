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
