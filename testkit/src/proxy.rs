//! A TCP proxy on 127.0.0.1 for tests that need a real connection loss between two real
//! processes: put it between a client and its server, then cut one chosen connection (or all
//! of them). A cut closes both sockets of the pair, so each side sees its peer go away just
//! as it would if the network or the other process dropped it; the proxy keeps accepting, so
//! a client that reconnects by itself comes back through it.
//!
//! A pair's traffic can also be paused in one direction: bytes read meanwhile are held by the
//! proxy and the rest stays in the kernel's buffers. Pausing the answers (upstream to client)
//! and then cutting makes "requests in flight at the moment of the loss" exact: the server
//! got and answered them, the client never sees the answers.
//!
//! The proxy runs on a runtime of its own, in a thread of its own: it keeps forwarding while
//! the test blocks (a blocking HTTP call, waiting for a process to exit), and it can be used
//! from plain `#[test]`s as well as from async ones. Dropping it closes everything.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

/// One live proxied connection: a client's connection to the proxy and the proxy's
/// connection to the upstream server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pair {
    /// Its id (increasing in accept order, never reused).
    pub id: u64,
    /// The client's address (the remote end of the accepted connection).
    pub client: SocketAddr,
    /// The local address of the proxy's connection to the upstream server, i.e. the
    /// address the upstream server sees as its peer.
    pub upstream_local: SocketAddr,
}

/// One direction of a pair's traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From the client to the upstream server (requests, for a client-server protocol).
    ToUpstream,
    /// From the upstream server to the client (answers).
    ToClient,
}

struct Entry {
    pair: Pair,
    cut: watch::Sender<bool>,
    to_upstream: watch::Sender<bool>,
    to_client: watch::Sender<bool>,
}

impl Entry {
    fn paused(&self, direction: Direction) -> &watch::Sender<bool> {
        match direction {
            Direction::ToUpstream => &self.to_upstream,
            Direction::ToClient => &self.to_client,
        }
    }
}

#[derive(Default)]
struct Registry {
    pairs: BTreeMap<u64, Entry>,
    accepted: u64,
    next_id: u64,
}

#[derive(Default)]
struct Shared {
    registry: Mutex<Registry>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits (at most `timeout`) until `done` holds for the registry; whether it does.
    fn wait(&self, timeout: Duration, mut done: impl FnMut(&Registry) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut registry = self.lock();
        loop {
            if done(&registry) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            registry = self
                .changed
                .wait_timeout(registry, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// How long [`Proxy::cut`] and [`Proxy::cut_all`] wait for the sockets to be closed.
const CUT_WAIT: Duration = Duration::from_secs(5);

/// A TCP proxy listening on 127.0.0.1 (a free port) and forwarding to one upstream address.
pub struct Proxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Proxy({} -> {})", self.addr, self.upstream)
    }
}

impl Proxy {
    /// Starts a proxy on 127.0.0.1:0 that forwards every accepted connection to `upstream`.
    /// When the upstream refuses a connection, the accepted one is closed at once (it is
    /// counted as accepted, but never becomes a [`Pair`]).
    pub fn start(upstream: SocketAddr) -> Self {
        let shared = Arc::new(Shared::default());
        let (stop, stopped) = oneshot::channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let state = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("proxy->{upstream}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("the proxy's runtime");
                runtime.block_on(async move {
                    let listener = TcpListener::bind(("127.0.0.1", 0))
                        .await
                        .expect("the proxy's listening socket");
                    let _ = ready_tx.send(listener.local_addr().expect("local address"));
                    tokio::select! {
                        _ = accept_loop(listener, upstream, state) => {}
                        _ = stopped => {}
                    }
                });
                // Dropping the runtime here cancels every forwarding task: both sockets of
                // every pair are closed.
            })
            .expect("the proxy's thread");
        let addr = ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the proxy did not start");
        Self {
            addr,
            upstream,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Where clients connect (give this to the client instead of the upstream address).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where connections are forwarded.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// Connections accepted since the start (including those the upstream refused).
    pub fn accepted(&self) -> u64 {
        self.shared.lock().accepted
    }

    /// The live pairs, oldest first.
    pub fn pairs(&self) -> Vec<Pair> {
        self.shared.lock().pairs.values().map(|e| e.pair).collect()
    }

    /// How many pairs are live.
    pub fn live(&self) -> usize {
        self.shared.lock().pairs.len()
    }

    /// Cuts the pair `id`: closes the client's socket and the upstream socket, and waits
    /// until both are closed. False if no such pair is live (it ended or was cut already).
    pub fn cut(&self, id: u64) -> bool {
        {
            let registry = self.shared.lock();
            let Some(entry) = registry.pairs.get(&id) else {
                return false;
            };
            let _ = entry.cut.send(true);
        }
        let closed = self
            .shared
            .wait(CUT_WAIT, |registry| !registry.pairs.contains_key(&id));
        assert!(closed, "pair {id} was not closed within {CUT_WAIT:?}");
        true
    }

    /// Stops forwarding `direction` of pair `id` (bytes are held, none is lost, until
    /// [`Proxy::resume`] or a cut). False if no such pair is live.
    pub fn pause(&self, id: u64, direction: Direction) -> bool {
        self.set_paused(id, direction, true)
    }

    /// Forwards `direction` of pair `id` again, held bytes first. False if no such pair is
    /// live.
    pub fn resume(&self, id: u64, direction: Direction) -> bool {
        self.set_paused(id, direction, false)
    }

    fn set_paused(&self, id: u64, direction: Direction, paused: bool) -> bool {
        let registry = self.shared.lock();
        let Some(entry) = registry.pairs.get(&id) else {
            return false;
        };
        entry.paused(direction).send_replace(paused);
        true
    }

    /// Cuts every live pair; returns how many were cut.
    pub fn cut_all(&self) -> usize {
        let ids: Vec<u64> = {
            let registry = self.shared.lock();
            for entry in registry.pairs.values() {
                let _ = entry.cut.send(true);
            }
            registry.pairs.keys().copied().collect()
        };
        let closed = self.shared.wait(CUT_WAIT, |registry| {
            ids.iter().all(|id| !registry.pairs.contains_key(id))
        });
        assert!(closed, "pairs {ids:?} were not closed within {CUT_WAIT:?}");
        ids.len()
    }

    /// Waits (at most `timeout`) until at least `count` pairs are live; whether they are.
    pub fn wait_live(&self, count: usize, timeout: Duration) -> bool {
        self.shared
            .wait(timeout, |registry| registry.pairs.len() >= count)
    }

    /// Waits (at most `timeout`) until at least `count` connections were accepted in all;
    /// whether they were.
    pub fn wait_accepted(&self, count: u64, timeout: Duration) -> bool {
        self.shared
            .wait(timeout, |registry| registry.accepted >= count)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, shared: Arc<Shared>) {
    loop {
        let (client, client_addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(_) => {
                // Out of descriptors or an aborted handshake: try again shortly.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        {
            let mut registry = shared.lock();
            registry.accepted += 1;
        }
        shared.changed.notify_all();
        tokio::spawn(forward(client, client_addr, upstream, shared.clone()));
    }
}

/// Copies `from` to `to` until EOF or an error, holding the bytes while `paused`; then
/// half-closes `to` (the other direction goes on, as with `copy_bidirectional`).
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut paused: watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // Not reading while paused leaves the bytes in the kernel's buffers...
        if paused.wait_for(|p| !*p).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // ...and bytes read just before a pause are held here.
        if paused.wait_for(|p| !*p).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

async fn forward(
    client: TcpStream,
    client_addr: SocketAddr,
    upstream: SocketAddr,
    shared: Arc<Shared>,
) {
    let connect = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(upstream)).await;
    let Ok(Ok(server)) = connect else {
        // The client sees its connection closed right after it was accepted.
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let Ok(upstream_local) = server.local_addr() else {
        return;
    };
    let (cut, mut cut_rx) = watch::channel(false);
    let (to_upstream, to_upstream_rx) = watch::channel(false);
    let (to_client, to_client_rx) = watch::channel(false);
    let id = {
        let mut registry = shared.lock();
        let id = registry.next_id;
        registry.next_id += 1;
        registry.pairs.insert(
            id,
            Entry {
                pair: Pair {
                    id,
                    client: client_addr,
                    upstream_local,
                },
                cut,
                to_upstream,
                to_client,
            },
        );
        id
    };
    shared.changed.notify_all();
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    {
        let both = async {
            tokio::join!(
                pump(client_read, server_write, to_upstream_rx),
                pump(server_read, client_write, to_client_rx),
            )
        };
        tokio::select! {
            _ = both => {}
            _ = cut_rx.wait_for(|cut| *cut) => {}
        }
        // Both sockets close here (the halves are dropped with `both`), before the pair
        // leaves the registry: when `cut` returns, both peers have been told (FIN, or RST
        // when bytes were left unread).
    }
    shared.lock().pairs.remove(&id);
    shared.changed.notify_all();
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An echo server on 127.0.0.1:0; counts the connections it saw end.
    async fn echo_server() -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let ended = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = ended.clone();
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.expect("accept");
                let counter = counter.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    loop {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if stream.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                });
            }
        });
        (addr, ended)
    }

    async fn round_trip(stream: &mut TcpStream, text: &[u8]) {
        stream.write_all(text).await.expect("write");
        let mut back = vec![0u8; text.len()];
        tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut back))
            .await
            .expect("echo in time")
            .expect("echo");
        assert_eq!(back, text);
    }

    /// Whether the peer closed `stream` (EOF or a reset), within 5 s.
    async fn closed(stream: &mut TcpStream) -> bool {
        let mut buf = [0u8; 16];
        matches!(
            tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn forwards_both_ways_and_registers_each_pair() {
        let (upstream, _) = echo_server().await;
        let proxy = Proxy::start(upstream);
        assert_eq!(proxy.upstream(), upstream);
        assert_eq!((proxy.accepted(), proxy.live()), (0, 0));
        let mut a = TcpStream::connect(proxy.addr()).await.expect("connect a");
        let mut b = TcpStream::connect(proxy.addr()).await.expect("connect b");
        round_trip(&mut a, b"hello").await;
        round_trip(&mut b, b"world").await;
        assert!(proxy.wait_live(2, Duration::from_secs(5)));
        assert_eq!(proxy.accepted(), 2);
        let pairs = proxy.pairs();
        let clients: Vec<SocketAddr> = pairs.iter().map(|p| p.client).collect();
        assert!(clients.contains(&a.local_addr().expect("a")), "{pairs:?}");
        assert!(clients.contains(&b.local_addr().expect("b")), "{pairs:?}");
        assert!(pairs.iter().all(|p| p.upstream_local.ip().is_loopback()));
        // A large transfer goes through intact.
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        round_trip(&mut a, &big).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cut_closes_both_sides_of_one_pair_only() {
        let (upstream, ended) = echo_server().await;
        let proxy = Proxy::start(upstream);
        let mut a = TcpStream::connect(proxy.addr()).await.expect("connect a");
        let mut b = TcpStream::connect(proxy.addr()).await.expect("connect b");
        round_trip(&mut a, b"a").await;
        round_trip(&mut b, b"b").await;
        let a_addr = a.local_addr().expect("a");
        let victim = proxy
            .pairs()
            .into_iter()
            .find(|p| p.client == a_addr)
            .expect("a's pair");
        assert!(proxy.cut(victim.id));
        assert!(!proxy.cut(victim.id), "a pair is cut once");
        // The client sees its connection closed...
        assert!(closed(&mut a).await, "a's client side is closed");
        // ...and so does the upstream server.
        let deadline = Instant::now() + Duration::from_secs(5);
        while ended.load(std::sync::atomic::Ordering::SeqCst) < 1 {
            assert!(
                Instant::now() < deadline,
                "the upstream side was not closed"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The other pair is untouched.
        round_trip(&mut b, b"still here").await;
        assert_eq!(proxy.live(), 1);
        assert_eq!(proxy.pairs()[0].client, b.local_addr().expect("b"));
        // A reconnection goes through the proxy again and is counted.
        let mut c = TcpStream::connect(proxy.addr()).await.expect("connect c");
        round_trip(&mut c, b"again").await;
        assert_eq!(proxy.accepted(), 3);
        assert!(proxy.pairs().iter().all(|p| p.id != victim.id));
    }

    /// Whether `stream` gets nothing for `wait`.
    async fn silent(stream: &mut TcpStream, wait: Duration) -> bool {
        let mut buf = [0u8; 16];
        tokio::time::timeout(wait, stream.read(&mut buf))
            .await
            .is_err()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pause_holds_one_direction_and_resume_delivers() {
        let (upstream, ended) = echo_server().await;
        let proxy = Proxy::start(upstream);
        let mut a = TcpStream::connect(proxy.addr()).await.expect("connect");
        round_trip(&mut a, b"warm").await;
        let id = proxy.pairs()[0].id;
        // Answers held: the echo server gets the request, the client not the echo.
        assert!(proxy.pause(id, Direction::ToClient));
        a.write_all(b"held answer").await.expect("write");
        assert!(silent(&mut a, Duration::from_millis(200)).await);
        assert!(proxy.resume(id, Direction::ToClient));
        let mut back = [0u8; 11];
        tokio::time::timeout(Duration::from_secs(5), a.read_exact(&mut back))
            .await
            .expect("in time")
            .expect("read");
        assert_eq!(&back, b"held answer");
        // Requests held: nothing reaches the echo server, so nothing comes back.
        assert!(proxy.pause(id, Direction::ToUpstream));
        a.write_all(b"held request").await.expect("write");
        assert!(silent(&mut a, Duration::from_millis(200)).await);
        assert!(proxy.resume(id, Direction::ToUpstream));
        let mut back = [0u8; 12];
        tokio::time::timeout(Duration::from_secs(5), a.read_exact(&mut back))
            .await
            .expect("in time")
            .expect("read");
        assert_eq!(&back, b"held request");
        // A cut while answers are held: the client never sees them.
        assert!(proxy.pause(id, Direction::ToClient));
        a.write_all(b"lost").await.expect("write");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(proxy.cut(id));
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), a.read_to_end(&mut rest)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "closed without the held answer: {read:?} {rest:?}"
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while ended.load(std::sync::atomic::Ordering::SeqCst) < 1 {
            assert!(
                Instant::now() < deadline,
                "the upstream side was not closed"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            !proxy.pause(id, Direction::ToClient),
            "no such pair any more"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cut_all_and_drop_close_everything() {
        let (upstream, ended) = echo_server().await;
        let proxy = Proxy::start(upstream);
        let mut streams = Vec::new();
        for i in 0..3u8 {
            let mut s = TcpStream::connect(proxy.addr()).await.expect("connect");
            round_trip(&mut s, &[i]).await;
            streams.push(s);
        }
        assert_eq!(proxy.cut_all(), 3);
        assert_eq!(proxy.live(), 0);
        for s in &mut streams {
            assert!(closed(s).await);
        }
        assert_eq!(proxy.cut_all(), 0);
        let mut late = TcpStream::connect(proxy.addr()).await.expect("connect");
        round_trip(&mut late, b"x").await;
        assert!(proxy.wait_accepted(4, Duration::from_secs(1)));
        drop(proxy);
        assert!(
            closed(&mut late).await,
            "dropping the proxy closes its pairs"
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while ended.load(std::sync::atomic::Ordering::SeqCst) < 4 {
            assert!(Instant::now() < deadline, "upstream sides left open");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_upstream_closes_the_client_and_registers_nothing() {
        // A port with nothing behind it: bind, learn the port, close.
        let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let dead = free.local_addr().expect("addr");
        drop(free);
        let proxy = Proxy::start(dead);
        let mut s = TcpStream::connect(proxy.addr()).await.expect("connect");
        assert!(closed(&mut s).await);
        assert!(proxy.wait_accepted(1, Duration::from_secs(5)));
        assert_eq!(proxy.live(), 0);
        assert!(!proxy.wait_live(1, Duration::from_millis(100)));
    }

    #[test]
    fn works_without_a_runtime_in_the_caller() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let upstream = listener.local_addr().expect("addr");
        let server = std::thread::spawn(move || {
            use std::io::{Read, Write};
            let (mut stream, _) = listener.accept().expect("accept");
            let mut buf = [0u8; 4];
            stream.read_exact(&mut buf).expect("read");
            stream.write_all(&buf).expect("write");
            // Then wait for the cut: EOF.
            let n = stream.read(&mut buf).unwrap_or(0);
            assert_eq!(n, 0, "the cut closes the upstream side");
        });
        let proxy = Proxy::start(upstream);
        let mut client = std::net::TcpStream::connect(proxy.addr()).expect("connect");
        use std::io::{Read, Write};
        client.write_all(b"ping").expect("write");
        let mut buf = [0u8; 4];
        client.read_exact(&mut buf).expect("read");
        assert_eq!(&buf, b"ping");
        assert!(proxy.wait_live(1, Duration::from_secs(5)));
        let id = proxy.pairs()[0].id;
        assert!(proxy.cut(id));
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        assert_eq!(client.read(&mut buf).unwrap_or(0), 0);
        server.join().expect("server");
    }
}
