//! Hand-over of live connections between two servers (what a hot upgrade does between two
//! processes, here within one): a request cut at every byte offset crosses the hand-over,
//! requests in flight and our own pending requests survive it, and the socket never closes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use protocol::peer::{Event, Node, Peer, Role};
use protocol::transport::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::transport::{cc_request_number, ccr, node, CcaServer};

/// A client made of our sans-IO core over a raw socket, so that the test decides exactly
/// which bytes go out when.
struct RawClient {
    peer: Peer,
    stream: TcpStream,
    input: BytesMut,
}

impl RawClient {
    async fn connect(addr: SocketAddr, node: Arc<Node>) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let peer = Peer::new(node, Role::Initiator, Instant::now(), 7);
        let mut client = Self {
            peer,
            stream,
            input: BytesMut::new(),
        };
        client.transmit().await;
        while !client.peer.is_open() {
            client.read_some().await;
        }
        while client.peer.poll_event().is_some() {}
        client
    }

    async fn transmit(&mut self) {
        while let Some(bytes) = self.peer.poll_transmit() {
            self.stream.write_all(&bytes).await.expect("write");
        }
    }

    async fn read_some(&mut self) {
        let read = tokio::time::timeout(
            Duration::from_secs(5),
            self.stream.read_buf(&mut self.input),
        )
        .await
        .expect("an answer within 5 s")
        .expect("read");
        assert!(read > 0, "the server closed the connection");
        self.peer.handle_input(Instant::now(), &mut self.input);
    }

    /// Waits for the answer to a request and returns its CC-Request-Number.
    async fn answer(&mut self) -> u32 {
        loop {
            while let Some(event) = self.peer.poll_event() {
                match event {
                    Event::Answer { message, .. } => return cc_request_number(&message),
                    Event::Down(reason) => panic!("connection down: {reason:?}"),
                    _ => {}
                }
            }
            self.read_some().await;
        }
    }
}

fn listener_of(server: &Server) -> tokio::net::TcpListener {
    let std = server.listener_copy().expect("dup the listener");
    std.set_nonblocking(true).expect("nonblocking");
    tokio::net::TcpListener::from_std(std).expect("listener")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_cut_at_every_offset_crosses_the_hand_over() {
    let handler = Arc::new(CcaServer::default());
    let mut servers = vec![Server::bind(
        "127.0.0.1:0".parse().expect("address"),
        node("server.example.net", |_| {}),
        handler.clone(),
    )
    .await
    .expect("bind")];
    let addr = servers[0].local_addr();
    let client_node = node("client.example.net", |_| {});
    let mut client = RawClient::connect(addr, client_node.clone()).await;
    let local = client.stream.local_addr().expect("local address");

    let request_len = ccr(&client_node, 0).len() as u32;
    // How many hand-overs carried part of a message as unread bytes (the rest of the head
    // may still sit in the kernel's buffer when the old server lets go: that is fine too).
    let mut carried = 0;
    for offset in 0..=request_len {
        client
            .peer
            .send_request(Instant::now(), &ccr(&client_node, offset), None)
            .expect("send");
        let bytes = client.peer.poll_transmit().expect("the request");
        let (head, tail) = bytes.split_at(offset as usize);
        client.stream.write_all(head).await.expect("write");
        // Let the old server read the head before it lets go of the connection.
        tokio::time::sleep(Duration::from_millis(2)).await;

        let old = servers.pop().expect("a server");
        old.pause_accepting();
        let (detached, failed) = old.detach_all().await;
        assert!(failed.is_empty(), "offset {offset}: {failed:?}");
        assert_eq!(detached.len(), 1, "offset {offset}");
        assert!(detached[0].unread.len() <= offset as usize);
        if !detached[0].unread.is_empty() {
            carried += 1;
        }
        let new = Server::paused(
            listener_of(&old),
            node("server.example.net", |_| {}),
            handler.clone(),
        )
        .expect("new server");
        for connection in detached {
            new.adopt(connection).expect("adopt");
        }
        new.resume_accepting();
        // The old process's copies close without a word to the peer.
        drop(old);
        servers.push(new);

        client.stream.write_all(tail).await.expect("write");
        assert_eq!(client.answer().await, offset, "offset {offset}");
    }
    assert!(
        carried > request_len / 2,
        "only {carried} of {request_len} hand-overs carried a cut message"
    );
    assert_eq!(client.stream.local_addr().expect("still bound"), local);
    assert_eq!(servers[0].connections().len(), 1);
    // The listener went along too: a new peer is accepted by the last server.
    let other = RawClient::connect(addr, node("other.example.net", |_| {})).await;
    drop(other);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_are_answered_before_the_hand_over() {
    let handler = Arc::new(CcaServer {
        delay: Some(Duration::from_millis(100)),
        ..Default::default()
    });
    let old = Server::bind(
        "127.0.0.1:0".parse().expect("address"),
        node("server.example.net", |_| {}),
        handler.clone(),
    )
    .await
    .expect("bind");
    let client_node = node("client.example.net", |_| {});
    let mut client = RawClient::connect(old.local_addr(), client_node.clone()).await;
    for number in 0..50 {
        client
            .peer
            .send_request(Instant::now(), &ccr(&client_node, number), None)
            .expect("send");
    }
    client.transmit().await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let started = Instant::now();
    let (detached, failed) = old.detach_all().await;
    assert!(failed.is_empty(), "{failed:?}");
    // The hand-over waited for the slow answers: they left with the old process's writer
    // or travel as unwritten bytes.
    assert!(started.elapsed() >= Duration::from_millis(50));
    let new = Server::paused(
        listener_of(&old),
        node("server.example.net", |_| {}),
        handler.clone(),
    )
    .expect("new server");
    for connection in detached {
        new.adopt(connection).expect("adopt");
    }
    drop(old);
    let mut answered: Vec<u32> = Vec::new();
    for _ in 0..50 {
        answered.push(client.answer().await);
    }
    answered.sort_unstable();
    assert_eq!(answered, (0..50).collect::<Vec<_>>());
    // And the connection goes on with the new server.
    client
        .peer
        .send_request(Instant::now(), &ccr(&client_node, 99), None)
        .expect("send");
    client.transmit().await;
    assert_eq!(client.answer().await, 99);
}

/// A server-initiated request pending across the hand-over (the PDF's ASR), and a DWR that
/// arrives while the connection is between processes: the DWA comes from the new server,
/// the late answer finds the connection open, nothing closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_server_request_and_a_dwr_during_the_pause() {
    use protocol::grammar::{Command, Envelope};
    use protocol::header::{ApplicationId, CommandCode, HopByHopId};
    use protocol::message::Message;
    use protocol::messages::{Asa, Asr, Dwr};

    let handler = Arc::new(CcaServer::default());
    let old = Server::bind(
        "127.0.0.1:0".parse().expect("address"),
        node("server.example.net", |_| {}),
        handler.clone(),
    )
    .await
    .expect("bind");
    let client_node = node("client.example.net", |_| {});
    let mut client = RawClient::connect(old.local_addr(), client_node.clone()).await;

    // The server asks something of the client (an ASR) and the client does not answer yet.
    let server_side = old.connections().pop().expect("one connection");
    let server_node = server_side.node().clone();
    let mut asr = BytesMut::new();
    Asr {
        session_id: "client.example.net;1;1",
        origin_host: "server.example.net",
        origin_realm: "example.net",
        destination_realm: "example.net",
        destination_host: "client.example.net",
        auth_application_id: 4,
        ..Default::default()
    }
    .encode(
        Envelope::request(
            ApplicationId::CREDIT_CONTROL,
            HopByHopId(0),
            server_node.end_to_end.next(),
        ),
        &mut asr,
    );
    let pending = tokio::spawn(async move { server_side.request(asr.freeze(), None).await });
    let asr = loop {
        if let Some(Event::Request(request)) = client.peer.poll_event() {
            break request;
        }
        client.read_some().await;
    };

    let (detached, failed) = old.detach_all().await;
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(
        detached[0].state.pending.len(),
        1,
        "the ASR travels as pending"
    );
    // Its sender in the old process learns the connection left.
    assert!(pending.await.expect("task").is_err());

    // A DWR while no process reads the socket.
    let mut dwr = BytesMut::new();
    Dwr {
        origin_host: "client.example.net",
        origin_realm: "example.net",
        origin_state_id: None,
    }
    .encode(
        Envelope::request(
            ApplicationId::COMMON,
            HopByHopId(77),
            client_node.end_to_end.next(),
        ),
        &mut dwr,
    );
    client.stream.write_all(&dwr).await.expect("write DWR");
    tokio::time::sleep(Duration::from_millis(20)).await;

    let new = Server::paused(
        listener_of(&old),
        node("server.example.net", |_| {}),
        handler.clone(),
    )
    .expect("new server");
    for connection in detached {
        new.adopt(connection).expect("adopt");
    }
    drop(old);

    // The DWA comes from the new server, with the DWR's hop-by-hop id.
    let mut raw = BytesMut::new();
    let dwa = loop {
        if let Ok(Some(length)) = protocol::framing::frame_length(&raw, 65536) {
            if raw.len() >= length {
                break Message::decode(raw.split_to(length).freeze()).expect("a message");
            }
        }
        tokio::time::timeout(Duration::from_secs(5), client.stream.read_buf(&mut raw))
            .await
            .expect("a DWA within 5 s")
            .expect("read");
    };
    let header = *dwa.header();
    assert!(!header.is_request());
    assert_eq!(header.command, CommandCode::DEVICE_WATCHDOG);
    assert_eq!(header.hop_by_hop, HopByHopId(77));

    // The client answers the ASR now; the new server takes it, and the connection goes on.
    let mut asa = BytesMut::new();
    Asa {
        session_id: "client.example.net;1;1",
        result_code: protocol::result_code::ResultCode::SUCCESS,
        origin_host: "client.example.net",
        origin_realm: "example.net",
        ..Default::default()
    }
    .encode(asr.ticket.envelope(), &mut asa);
    client.stream.write_all(&asa).await.expect("write ASA");
    client
        .peer
        .send_request(Instant::now(), &ccr(&client_node, 5), None)
        .expect("send");
    client.transmit().await;
    assert_eq!(client.answer().await, 5);
    assert_eq!(new.connections().len(), 1);
}
