//! The hot upgrade (DESIGN.md section 5; the relup of this world): a running PDF hands its
//! listening sockets, its established Diameter connections and its state to a new binary
//! on the same host, and no peer sees a connection close.
//!
//! The old process starts the new binary with `--takeover PATH`, a Unix socket it listens
//! on, and they talk over it (the control channel; frames of `[u32 length][u8 kind]
//! [postcard body]`, descriptors passed with SCM_RIGHTS):
//!
//! ```text
//!   new -> old  HELLO      pid, version, the state schemas it reads   (old refuses if not ours)
//!   old -> new  PREPARE    how big the state will be (old still serving): the new process
//!                          writes the memory it will need; then the pause starts
//!   old -> new  LISTENERS  the Diameter and admin listening sockets (old stops accepting)
//!   old -> new  CONNECTION per connection, quiesced at a message boundary: the socket, its
//!                          unread and unwritten bytes, its peer state
//!   old -> new  STATE      the versioned snapshot (crate::snapshot) in a memfd; the journal
//!                          is closed
//!   new -> old  READY      the new process restored and checked everything and holds the
//!                          journal: the commit point
//!   old -> new  GO         the new process may touch the sockets; old exits without DPR
//!                          or shutdown()
//!   new -> old  FAILED     with the reason; old resumes (as on a crash or a timeout)
//! ```
//!
//! Before READY, any failure (the new process refuses, crashes, times out, fails a check)
//! makes the old process resume: it kills the new one, reopens its journal, re-adopts its
//! connections with their unread and unwritten bytes, and accepts again. Nothing was lost,
//! because the new process reads and writes no socket (and serves no admin request) before
//! GO.
//!
//! Fault injection for tests: `PDF_HOT_FAULT=<phase>` makes the new process kill itself
//! with SIGKILL when it reaches that phase (`hello`, `listeners`, `connections`, `state`,
//! `journal`, `ready`, and `go` after the commit point); `PDF_HOT_FAULT=schema` makes it
//! announce that it reads no schema of ours (the old process must refuse).

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use protocol::peer::PeerState;
use protocol::transport::Detached;
use rustix::net::{
    recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use serde::{Deserialize, Serialize};

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use protocol::peer::HandOverError;
use protocol::peer::Node;
use protocol::transport::{HandOverFailed, Server};

use crate::charging::Engine;
use crate::journal::{Durability, Journal, JournalConfig, Recovered};
use crate::snapshot::{self, Snapshot};

const HELLO: u8 = 1;
const LISTENERS: u8 = 2;
const CONNECTION: u8 = 3;
const STATE: u8 = 4;
const READY: u8 = 5;
const FAILED: u8 = 6;
const GO: u8 = 7;
const PREPARE: u8 = 8;

/// The largest table a PREPARE may ask for (a corrupt one must not exhaust memory).
const MAX_PREPARED_SLOTS: u64 = 64 << 20;

/// PREPARE: how big the state will be, so that the new process writes its memory before
/// the pause (old -> new, after HELLO, while the old one still serves).
#[derive(Clone, Copy, Debug, Deserialize, Serialize)]
struct Prepare {
    slots: u64,
    state_bytes: u64,
}

/// The largest control frame body (the state itself travels in a memfd).
const MAX_FRAME: usize = 16 << 20;

/// How long the old process waits for the new one at each step before resuming.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(15);

/// What to start: the new binary and its arguments (`--takeover` is added).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct UpgradeRequest {
    /// The new binary.
    pub binary: PathBuf,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
}

/// What a successful hot upgrade did, for the admin port's answer and the logs.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct UpgradeReport {
    /// The new process.
    pub new_pid: u32,
    /// Its version, as it said in HELLO.
    pub new_version: String,
    /// From the moment connections stopped being read to READY, in milliseconds.
    pub pause_ms: f64,
    /// Connections handed over.
    pub connections: usize,
    /// Live sessions handed over.
    pub sessions: usize,
    /// The snapshot's size.
    pub snapshot_bytes: usize,
    /// The state schema sent.
    pub schema: u32,
    /// Milliseconds per phase: start (until HELLO), quiesce, snapshot, send, restore (until
    /// READY).
    pub phases_ms: Vec<(String, f64)>,
}

/// The HELLO message.
#[derive(Clone, Debug, Deserialize, Serialize)]
struct Hello {
    pid: u32,
    version: String,
    readable: Vec<u32>,
}

/// The LISTENERS message (with two descriptors: Diameter, admin).
#[derive(Clone, Debug, Deserialize, Serialize)]
struct Listeners {
    connections: u32,
}

/// One CONNECTION message (with its socket's descriptor).
#[derive(Deserialize, Serialize)]
struct ConnectionMessage {
    unread: Vec<u8>,
    unwritten: Vec<u8>,
    state: PeerState,
}

/// READY, or FAILED with the reason.
#[derive(Clone, Debug, Deserialize, Serialize)]
struct Outcome {
    pid: u32,
    reason: Option<String>,
}

// ---- the control channel ----------------------------------------------------------------

/// One end of the control channel.
pub struct Channel {
    stream: UnixStream,
}

impl Channel {
    fn new(stream: UnixStream) -> io::Result<Self> {
        stream.set_read_timeout(Some(STEP_TIMEOUT))?;
        stream.set_write_timeout(Some(STEP_TIMEOUT))?;
        Ok(Self { stream })
    }

    /// Connects to the old process's control socket.
    pub fn connect(path: &Path) -> io::Result<Self> {
        Self::new(UnixStream::connect(path)?)
    }

    /// Sends one frame; `fds` travel with its first byte.
    fn send(&mut self, kind: u8, body: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        let mut header = [0u8; 5];
        header[..4].copy_from_slice(&(body.len() as u32).to_le_bytes());
        header[4] = kind;
        let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(4))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
            return Err(io::Error::other("too many descriptors for one frame"));
        }
        let iov = [IoSlice::new(&header)];
        let sent = loop {
            // A signal (a second SIGUSR2, say) interrupts the call: not a failure.
            match sendmsg(&self.stream, &iov, &mut control, SendFlags::empty()) {
                Err(rustix::io::Errno::INTR) => continue,
                other => break other?,
            }
        };
        self.stream.write_all(&header[sent..])?;
        self.stream.write_all(body)
    }

    /// Receives one frame and the descriptors that came with it.
    fn recv(&mut self) -> io::Result<(u8, Vec<u8>, Vec<OwnedFd>)> {
        let mut header = [0u8; 5];
        let mut fds = Vec::new();
        let received = {
            let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(4))];
            let mut control = RecvAncillaryBuffer::new(&mut space);
            let mut iov = [IoSliceMut::new(&mut header)];
            let message = loop {
                match recvmsg(
                    &self.stream,
                    &mut iov,
                    &mut control,
                    RecvFlags::CMSG_CLOEXEC,
                ) {
                    Err(rustix::io::Errno::INTR) => continue,
                    other => break other?,
                }
            };
            for message in control.drain() {
                if let RecvAncillaryMessage::ScmRights(received) = message {
                    fds.extend(received);
                }
            }
            message.bytes
        };
        if received == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.stream.read_exact(&mut header[received..])?;
        let length = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        if length > MAX_FRAME {
            return Err(io::Error::other(format!(
                "a control frame of {length} bytes (at most {MAX_FRAME})"
            )));
        }
        let mut body = vec![0u8; length];
        self.stream.read_exact(&mut body)?;
        Ok((header[4], body, fds))
    }

    fn send_message<T: Serialize>(
        &mut self,
        kind: u8,
        message: &T,
        fds: &[BorrowedFd<'_>],
    ) -> io::Result<()> {
        let body = postcard::to_stdvec(message).map_err(io::Error::other)?;
        self.send(kind, &body, fds)
    }
}

fn decode<T: for<'de> Deserialize<'de>>(kind: &str, body: &[u8]) -> anyhow::Result<T> {
    postcard::from_bytes(body).map_err(|e| anyhow!("unreadable {kind} message: {e}"))
}

// ---- the old process's side ---------------------------------------------------------------

/// The new process, started and said HELLO, not yet given anything.
pub struct Successor {
    child: Child,
    channel: Channel,
    hello: Hello,
    socket: PathBuf,
    started: Instant,
}

impl Successor {
    /// Starts `request.binary` with its arguments and `--takeover`, and waits for its HELLO.
    /// Refuses (and stops it) if it cannot read our state schema.
    pub fn start(request: &UpgradeRequest) -> anyhow::Result<Self> {
        let started = Instant::now();
        let socket = std::env::temp_dir().join(format!(
            "pdf-takeover-{}-{}.sock",
            std::process::id(),
            fastrand::u32(..)
        ));
        let listener = UnixListener::bind(&socket)
            .with_context(|| format!("binding the control socket {}", socket.display()))?;
        listener.set_nonblocking(true)?;
        let mut child = Command::new(&request.binary)
            .args(&request.args)
            .arg("--takeover")
            .arg(&socket)
            .spawn()
            .with_context(|| format!("starting {}", request.binary.display()))?;
        let result = (|| {
            let stream = loop {
                match listener.accept() {
                    Ok((stream, _)) => break stream,
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                        if let Some(status) = child.try_wait()? {
                            bail!("the new binary exited before saying HELLO ({status})");
                        }
                        if started.elapsed() > STEP_TIMEOUT {
                            bail!("the new binary did not connect within {STEP_TIMEOUT:?}");
                        }
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err(error) => return Err(error.into()),
                }
            };
            stream.set_nonblocking(false)?;
            let mut channel = Channel::new(stream)?;
            let (kind, body, _) = channel.recv().context("waiting for HELLO")?;
            if kind == FAILED {
                let outcome: Outcome = decode("FAILED", &body)?;
                bail!(
                    "the new binary gave up: {}",
                    outcome.reason.unwrap_or_default()
                );
            }
            if kind != HELLO {
                bail!("expected HELLO, got message kind {kind}");
            }
            let hello: Hello = decode("HELLO", &body)?;
            if !hello.readable.contains(&snapshot::SCHEMA) {
                bail!(
                    "the new binary ({}) reads state schemas {:?}, not ours ({}): refused, still serving",
                    hello.version,
                    hello.readable,
                    snapshot::SCHEMA
                );
            }
            Ok((channel, hello))
        })();
        let _ = std::fs::remove_file(&socket);
        match result {
            Ok((channel, hello)) => Ok(Self {
                child,
                channel,
                hello,
                socket,
                started,
            }),
            Err(error) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(error)
            }
        }
    }

    /// The new process's pid.
    pub fn pid(&self) -> u32 {
        self.hello.pid
    }

    /// How long starting it took.
    pub fn start_time(&self) -> Duration {
        self.started.elapsed()
    }

    /// Tells the new process how big the state will be (PREPARE), while this one still
    /// serves, so that it writes the memory it needs before the pause.
    pub fn send_prepare(&mut self, slots: u64, state_bytes: u64) -> io::Result<()> {
        self.channel
            .send_message(PREPARE, &Prepare { slots, state_bytes }, &[])
    }

    /// Sends the listening sockets; `connections` is how many CONNECTION messages follow.
    pub fn send_listeners(
        &mut self,
        diameter: BorrowedFd<'_>,
        admin: BorrowedFd<'_>,
        connections: usize,
    ) -> io::Result<()> {
        self.channel.send_message(
            LISTENERS,
            &Listeners {
                connections: connections as u32,
            },
            &[diameter, admin],
        )
    }

    /// Sends one quiesced connection (the old process keeps its copy, for a rollback).
    pub fn send_connection(&mut self, connection: &Detached) -> io::Result<()> {
        let message = ConnectionMessage {
            unread: connection.unread.to_vec(),
            unwritten: connection.unwritten.to_vec(),
            state: connection.state.clone(),
        };
        self.channel
            .send_message(CONNECTION, &message, &[connection.stream.as_fd()])
    }

    /// Sends the snapshot: `state` is a memory file ([`state_file`]) holding its `length`
    /// bytes. Its descriptor travels with the frame: the new process reads the state at
    /// memory speed, instead of a hundred megabytes squeezed through the socket's buffer
    /// with both processes taking turns on the CPUs.
    pub fn send_state(&mut self, state: &std::fs::File, length: u64) -> io::Result<()> {
        self.channel
            .send(STATE, &length.to_le_bytes(), &[state.as_fd()])
    }

    /// Waits for READY. Any other outcome (FAILED, a crash, a timeout) stops the new
    /// process and is an error: the caller resumes.
    pub fn wait_ready(mut self) -> anyhow::Result<u32> {
        let result = match self.channel.recv() {
            Ok((READY, body, _)) => decode::<Outcome>("READY", &body).map(|o| o.pid),
            Ok((FAILED, body, _)) => decode::<Outcome>("FAILED", &body).and_then(|o| {
                Err(anyhow!(
                    "the new binary failed: {}",
                    o.reason.unwrap_or_default()
                ))
            }),
            Ok((kind, _, _)) => Err(anyhow!("expected READY, got message kind {kind}")),
            Err(error) => Err(anyhow!("no READY from the new binary: {error}")),
        };
        match result {
            // GO: from now on the new process alone reads and writes the sockets. If this
            // fails the new one sees the channel close, knows we are gone, and goes on.
            Ok(pid) => {
                if let Err(error) = self.channel.send(GO, &[], &[]) {
                    tracing::warn!(%error, "GO not sent: the new process goes on when it sees us gone");
                }
                Ok(pid)
            }
            Err(error) => {
                self.abandon();
                Err(error)
            }
        }
    }

    /// Stops the new process (before READY) and waits until it is gone, so that it no
    /// longer holds the journal.
    pub fn abandon(&mut self) {
        // The binary may be a wrapper that started the pdf as its child: kill the process
        // that said HELLO, and the one we started, and wait until both are gone.
        if let Some(pid) = rustix::process::Pid::from_raw(self.hello.pid as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let gone = Instant::now() + Duration::from_secs(5);
        while std::path::Path::new(&format!("/proc/{}", self.hello.pid)).exists()
            && Instant::now() < gone
        {
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = std::fs::remove_file(&self.socket);
    }

    /// The version it announced.
    pub fn version(&self) -> &str {
        &self.hello.version
    }
}

/// A memory file for the state (memfd: no file system, gone with its last descriptor).
pub fn state_file() -> io::Result<std::fs::File> {
    let memfd = rustix::fs::memfd_create("pdf-snapshot", rustix::fs::MemfdFlags::CLOEXEC)?;
    Ok(std::fs::File::from(memfd))
}

// ---- the old process's orchestration ----------------------------------------------------

/// What the old process hands over, and resumes on failure.
pub struct Live<'a> {
    /// The Diameter server.
    pub server: &'a Server,
    /// Its node (End-to-End ids, duplicate cache).
    pub node: &'a Node,
    /// The charging state.
    pub engine: &'a Mutex<Engine>,
    /// The journal (closed for the new process; reopened on a rollback).
    pub journal: &'a ArcSwap<Journal>,
    /// How to reopen it.
    pub journal_config: JournalConfig,
    /// The admin listening socket.
    pub admin: BorrowedFd<'a>,
    /// When the engine's clock started (its time is read at the snapshot).
    pub epoch: Instant,
    /// The Origin-State-Id being served.
    pub origin_state_id: u32,
}

/// A failure the process cannot serve on from (the journal would not reopen after a
/// rollback): the caller stops, with DPR.
#[derive(Debug, thiserror::Error)]
#[error("{0:#}")]
pub struct Fatal(pub anyhow::Error);

/// Performs a hot upgrade to `request`: on success the caller exits at once, without DPR
/// and without shutting any socket down (the new process holds them all). On error this
/// process has resumed serving as before and the error says why; unless the error is a
/// [`Fatal`] (see `resume`).
pub async fn upgrade(live: &Live<'_>, request: &UpgradeRequest) -> anyhow::Result<UpgradeReport> {
    let mut phases = Vec::new();
    let mut successor = tokio::task::block_in_place(|| Successor::start(request))?;
    phases.push(("start".to_owned(), ms(successor.start_time())));
    tracing::info!(
        pid = successor.pid(),
        version = successor.version(),
        "hot upgrade: the new binary said HELLO; quiescing"
    );

    // Still serving: size the state, allocate its memory file, and let the new process
    // write the memory it will need, so that the pause pays no page faults for them.
    let prepared = tokio::task::block_in_place(|| -> io::Result<std::fs::File> {
        let (slots, accounts) = {
            let engine = live.engine.lock().unwrap_or_else(|p| p.into_inner());
            (
                engine.sessions.slot_count() as u64,
                engine.ledger.len() as u64,
            )
        };
        // Room for sessions opened meanwhile; the accounts that changed, at most all.
        let slots = slots + slots / 8 + 1024;
        let estimate = slots * 56 + accounts * 36 + (1 << 20);
        let state = state_file()?;
        let _ = rustix::fs::fallocate(&state, rustix::fs::FallocateFlags::empty(), 0, estimate);
        successor.send_prepare(slots, estimate)?;
        Ok(state)
    });
    let mut state = match prepared {
        Ok(state) => state,
        Err(error) => {
            successor.abandon();
            bail!("preparing the new binary failed: {error}; still serving");
        }
    };

    let paused = Instant::now();
    live.server.stop_accepting().await;
    let (detached, failed) = live.server.detach_all().await;
    phases.push(("quiesce".to_owned(), ms(paused.elapsed())));
    // A connection still exchanging capabilities, or closing, stays and closes with this
    // process (it was not serving); one that would not quiesce aborts the upgrade.
    let (left, stuck): (Vec<_>, Vec<_>) = failed.into_iter().partition(|(_, why)| {
        matches!(
            why,
            HandOverFailed::Closed | HandOverFailed::NotQuiet(HandOverError::NotOpen)
        )
    });
    if let Some((addr, why)) = stuck.first() {
        successor.abandon();
        resume(live, detached, false)?;
        bail!(
            "{} connection(s) could not be handed over (first: {addr}: {why}); still serving",
            stuck.len()
        );
    }
    if !left.is_empty() {
        tracing::warn!(
            connections = left.len(),
            "connections not open (capabilities exchange, or closing) stay and close with this process"
        );
    }

    let at = Instant::now();
    let written = tokio::task::block_in_place(|| -> anyhow::Result<_> {
        let engine = live.engine.lock().unwrap_or_else(|p| p.into_inner());
        // Checked again under the lock: a migration started meanwhile would move money the
        // snapshot does not describe.
        if engine.ownership.owned() as usize != engine.ledger.len()
            || engine.ownership.upstream().is_some()
        {
            bail!("accounts are moving to or from another node (migrate)");
        }
        let length = Snapshot::write_engine(
            &engine,
            live.epoch.elapsed().as_secs() as u32,
            live.origin_state_id,
            live.node.end_to_end.peek(),
            live.node
                .duplicates
                .export(Instant::now(), snapshot::DUPLICATES_CARRIED),
            &mut state,
        )?;
        Ok((length, engine.sessions.len()))
    });
    let (length, sessions) = match written {
        Ok(written) => written,
        Err(error) => {
            successor.abandon();
            resume(live, detached, false)?;
            bail!("taking the state failed: {error:#}; still serving");
        }
    };
    // Every answer that moved money waited for its record, so closing loses nothing; the
    // new process opens the same files.
    let closed = Journal::clone(&live.journal.load()).close();
    phases.push(("snapshot".to_owned(), ms(at.elapsed())));
    if let Err(error) = closed {
        successor.abandon();
        resume(live, detached, true)?;
        return Err(error.context("closing the journal for the new process; still serving"));
    }

    let at = Instant::now();
    let sent = tokio::task::block_in_place(|| -> io::Result<()> {
        let diameter = live.server.listener_copy()?;
        successor.send_listeners(diameter.as_fd(), live.admin, detached.len())?;
        for connection in &detached {
            successor.send_connection(connection)?;
        }
        successor.send_state(&state, length)
    });
    phases.push(("send".to_owned(), ms(at.elapsed())));
    if let Err(error) = sent {
        successor.abandon();
        resume(live, detached, true)?;
        bail!("sending to the new binary failed: {error}; still serving");
    }

    let at = Instant::now();
    let new_version = successor.version().to_owned();
    match tokio::task::block_in_place(|| successor.wait_ready()) {
        Ok(new_pid) => {
            phases.push(("restore".to_owned(), ms(at.elapsed())));
            let report = UpgradeReport {
                new_pid,
                new_version,
                pause_ms: ms(paused.elapsed()),
                connections: detached.len(),
                sessions,
                snapshot_bytes: length as usize,
                schema: snapshot::SCHEMA,
                phases_ms: phases,
            };
            // Closing our copies of the sockets (close(), never shutdown()) sends nothing:
            // the new process holds them.
            drop(detached);
            Ok(report)
        }
        Err(error) => {
            resume(live, detached, true)?;
            Err(error.context("still serving"))
        }
    }
}

/// Takes back what was detached: the journal (checked against the engine), before any
/// request can arrive, then the connections and the listener, even when the journal did
/// not reopen (so that it does not also cost every connection). If the journal does not
/// reopen, the error is [`Fatal`]: the process cannot charge, and stops with DPR.
fn resume(live: &Live<'_>, detached: Vec<Detached>, reopen_journal: bool) -> anyhow::Result<()> {
    let mut reopened = Ok(());
    if reopen_journal {
        reopened = (|| {
            let accounts = live
                .engine
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .ledger
                .len() as u32;
            let (journal, recovered) = Journal::open_continuing(&live.journal_config, accounts)
                .context("reopening the journal after a failed hot upgrade")?;
            check_journal(
                &live.engine.lock().unwrap_or_else(|p| p.into_inner()),
                &recovered,
                live.journal_config.durability,
            )?;
            live.journal.store(Arc::new(journal));
            anyhow::Ok(())
        })();
    }
    let count = detached.len();
    for connection in detached {
        if let Err(error) = live.server.adopt(connection) {
            tracing::warn!(%error, "a connection could not be resumed");
        }
    }
    live.server.resume_accepting();
    if let Err(error) = reopened {
        return Err(Fatal(error).into());
    }
    tracing::warn!(connections = count, "hot upgrade abandoned: serving again");
    Ok(())
}

/// Checks that the journal on disk holds exactly what the engine says was debited.
pub fn check_journal(
    engine: &Engine,
    recovered: &Recovered,
    durability: Durability,
) -> anyhow::Result<()> {
    if durability == Durability::None {
        return Ok(());
    }
    for (id, account) in engine.ledger.iter() {
        let journaled = recovered.debited.get(id as usize).copied().unwrap_or(0);
        if journaled != account.debited {
            bail!(
                "account {id}: the journal holds {journaled} debited, the state {}",
                account.debited
            );
        }
    }
    Ok(())
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

// ---- the admin port's trigger ---------------------------------------------------------------

/// An upgrade asked for, with where its outcome goes (None: SIGUSR2, nobody waits).
pub type UpgradeAsked = (
    UpgradeRequest,
    Option<tokio::sync::oneshot::Sender<Result<UpgradeReport, String>>>,
);

/// `POST /upgrade` with `{"binary": PATH, "args": [...]}`: performs a hot upgrade and
/// answers 200 with the [`UpgradeReport`] (the process then exits; the new pid serves), or
/// 409 with the reason when it failed (this process serves on, nothing dropped).
pub fn router(upgrades: tokio::sync::mpsc::Sender<UpgradeAsked>) -> axum::Router {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use axum::Json;

    async fn upgrade(
        axum::extract::State(upgrades): axum::extract::State<
            tokio::sync::mpsc::Sender<UpgradeAsked>,
        >,
        Json(request): Json<UpgradeRequest>,
    ) -> axum::response::Response {
        let (reply, outcome) = tokio::sync::oneshot::channel();
        if upgrades.send((request, Some(reply))).await.is_err() {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({"error": "the pdf is stopping"})),
            )
                .into_response();
        }
        match outcome.await {
            Ok(Ok(report)) => (StatusCode::OK, Json(report)).into_response(),
            Ok(Err(error)) => (
                StatusCode::CONFLICT,
                Json(serde_json::json!({"error": error})),
            )
                .into_response(),
            Err(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({"error": "the pdf upgraded or stopped meanwhile"})),
            )
                .into_response(),
        }
    }

    axum::Router::new()
        .route("/upgrade", axum::routing::post(upgrade))
        .with_state(upgrades)
}

// ---- the new process's side ---------------------------------------------------------------

/// What the new process received before it restores: sockets, connections and the state.
pub struct Inheritance {
    /// The Diameter listening socket.
    pub diameter: std::net::TcpListener,
    /// The admin listening socket.
    pub admin: std::net::TcpListener,
    /// The connections, quiesced.
    pub connections: Vec<Detached>,
    /// The snapshot, decoded and converted to the current schema (taken to restore it).
    pub snapshot: Option<Snapshot>,
    /// Its Origin-State-Id.
    pub origin_state_id: u32,
    /// Its next End-to-End id.
    pub end_to_end_next: u32,
    /// Its retransmission answers, for the Diameter layer's duplicate cache.
    pub duplicates: Vec<protocol::peer::CachedAnswer>,
    /// Its size in bytes.
    pub snapshot_bytes: usize,
    /// The session table's memory, written before the pause (PREPARE): give it to the
    /// fresh engine before restoring.
    pub sessions: crate::sessions::Sessions,
    channel: Channel,
}

/// Dies at `phase` if the test harness asked for it (`PDF_HOT_FAULT`).
pub fn fault_point(phase: &str) {
    if std::env::var("PDF_HOT_FAULT").is_ok_and(|wanted| wanted == phase) {
        tracing::warn!(phase, "PDF_HOT_FAULT: killing this process");
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    }
}

impl Inheritance {
    /// Connects to the old process, says HELLO and receives everything. Errors are sent to
    /// the old process as FAILED (it resumes) and returned.
    pub fn receive(path: &Path) -> anyhow::Result<Self> {
        let mut channel = Channel::connect(path)
            .with_context(|| format!("connecting to the control socket {}", path.display()))?;
        fault_point("hello");
        channel.send_message(
            HELLO,
            &Hello {
                pid: std::process::id(),
                version: crate::app::VERSION.to_owned(),
                // The `schema` fault plays a binary that reads none of our schemas.
                readable: if std::env::var("PDF_HOT_FAULT").is_ok_and(|f| f == "schema") {
                    Vec::new()
                } else {
                    snapshot::READABLE.to_vec()
                },
            },
            &[],
        )?;
        // Before the pause: the memory for the state and for the session table, written
        // now so that the pause does not pay its page faults.
        let (mut buffer, sessions) = match channel.recv() {
            Ok((PREPARE, body, _)) => {
                let prepare: Prepare = decode("PREPARE", &body)?;
                let slots = prepare.slots.min(MAX_PREPARED_SLOTS) as usize;
                let bytes = (prepare.state_bytes as usize)
                    .min(slots * crate::sessions::SLOT_RECORD * 2 + (64 << 20));
                // Non-zero: a zeroed allocation would leave its pages untouched (calloc).
                let mut buffer = vec![1u8; bytes];
                buffer.clear();
                (buffer, crate::sessions::Sessions::preallocated(slots))
            }
            Ok((kind, _, _)) => bail!("expected PREPARE, got message kind {kind}"),
            Err(error) => return Err(anyhow!("waiting for PREPARE: {error}")),
        };
        match Self::receive_rest(&mut channel, &mut buffer) {
            Ok((diameter, admin, connections, mut snapshot, snapshot_bytes)) => Ok(Self {
                diameter,
                admin,
                connections,
                sessions,
                origin_state_id: snapshot.origin_state_id,
                end_to_end_next: snapshot.end_to_end_next,
                duplicates: std::mem::take(&mut snapshot.duplicates),
                snapshot: Some(snapshot),
                snapshot_bytes,
                channel,
            }),
            Err(error) => {
                let _ = fail(&mut channel, &error);
                Err(error)
            }
        }
    }

    #[allow(clippy::type_complexity)]
    fn receive_rest(
        channel: &mut Channel,
        buffer: &mut Vec<u8>,
    ) -> anyhow::Result<(
        std::net::TcpListener,
        std::net::TcpListener,
        Vec<Detached>,
        Snapshot,
        usize,
    )> {
        let (kind, body, fds) = channel.recv().context("waiting for LISTENERS")?;
        if kind != LISTENERS || fds.len() != 2 {
            bail!(
                "expected LISTENERS with 2 sockets, got kind {kind} with {}",
                fds.len()
            );
        }
        let listeners: Listeners = decode("LISTENERS", &body)?;
        let mut fds = fds.into_iter();
        let diameter = std::net::TcpListener::from(fds.next().expect("checked: two"));
        let admin = std::net::TcpListener::from(fds.next().expect("checked: two"));
        fault_point("listeners");
        let mut connections = Vec::with_capacity(listeners.connections as usize);
        for i in 0..listeners.connections {
            let (kind, body, fds) = channel
                .recv()
                .with_context(|| format!("waiting for connection {i}"))?;
            let Some(fd) = fds.into_iter().next().filter(|_| kind == CONNECTION) else {
                bail!("expected CONNECTION with its socket, got kind {kind}");
            };
            let message: ConnectionMessage = decode("CONNECTION", &body)?;
            connections.push(Detached {
                stream: std::net::TcpStream::from(fd),
                unread: Bytes::from(message.unread),
                unwritten: Bytes::from(message.unwritten),
                state: message.state,
            });
            if i == 0 {
                fault_point("connections");
            }
        }
        let (kind, body, fds) = channel.recv().context("waiting for STATE")?;
        let (Some(fd), Ok(length)) = (
            fds.into_iter().next().filter(|_| kind == STATE),
            <[u8; 8]>::try_from(body.as_slice()),
        ) else {
            bail!("expected STATE with its memory file, got kind {kind}");
        };
        fault_point("state");
        let length = u64::from_le_bytes(length);
        // The descriptor shares the old process's file offset (at the end): read from 0.
        let mut file = std::fs::File::from(fd);
        let size_on_file = file.metadata()?.len();
        if length > size_on_file {
            bail!("the state announces {length} bytes, its file holds {size_on_file}");
        }
        // Into the memory PREPARE wrote (it grows if the state outgrew the estimate).
        let mut state = std::mem::take(buffer);
        state.clear();
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(0))?;
        file.take(length).read_to_end(&mut state)?;
        if state.len() as u64 != length {
            bail!("the state is {} bytes, {length} announced", state.len());
        }
        let size = state.len();
        let snapshot = Snapshot::decode_bytes(Bytes::from(state))?;
        Ok((diameter, admin, connections, snapshot, size))
    }

    /// Reports READY: from now on this process owns everything and the old one exits.
    ///
    /// Then waits for GO before the caller touches a socket: an old process that gave up
    /// waiting (and resumes) kills this one first, so no byte is read or written twice. If
    /// the channel fails instead (the old process died after sending everything), this one
    /// goes on: it holds every socket and the journal, and nobody else serves them.
    pub fn ready(mut self) {
        fault_point("ready");
        let sent = self.channel.send_message(
            READY,
            &Outcome {
                pid: std::process::id(),
                reason: None,
            },
            &[],
        );
        let go = sent.and_then(|()| self.channel.recv());
        match go {
            Ok((GO, _, _)) => {}
            Ok((kind, _, _)) => tracing::warn!(kind, "expected GO; going on"),
            Err(error) => {
                tracing::warn!(%error, "no GO (the old process is gone); going on")
            }
        }
        fault_point("go");
    }

    /// Reports FAILED: the old process resumes.
    pub fn failed(mut self, error: &anyhow::Error) {
        let _ = fail(&mut self.channel, error);
    }
}

fn fail(channel: &mut Channel, error: &anyhow::Error) -> io::Result<()> {
    channel.send_message(
        FAILED,
        &Outcome {
            pid: std::process::id(),
            reason: Some(format!("{error:#}")),
        },
        &[],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_bodies_and_descriptors() {
        let (a, b) = UnixStream::pair().expect("pair");
        let (mut a, mut b) = (Channel::new(a).expect("a"), Channel::new(b).expect("b"));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let big = vec![7u8; 3 * 1024 * 1024];
        let sender = std::thread::spawn(move || {
            a.send(LISTENERS, b"two", &[listener.as_fd(), listener.as_fd()])
                .expect("send");
            a.send(STATE, &big, &[]).expect("send big");
        });
        let (kind, body, fds) = b.recv().expect("recv");
        assert_eq!(
            (kind, body.as_slice(), fds.len()),
            (LISTENERS, &b"two"[..], 2)
        );
        let received = std::net::TcpListener::from(fds.into_iter().next().expect("fd"));
        assert_eq!(received.local_addr().expect("addr"), addr);
        let (kind, body, fds) = b.recv().expect("recv big");
        assert_eq!((kind, body.len(), fds.len()), (STATE, 3 * 1024 * 1024, 0));
        assert!(body.iter().all(|&byte| byte == 7));
        sender.join().expect("sender");
    }
}
