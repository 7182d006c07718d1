//! The journal: every debit on disk before its answer leaves, and recovered after a crash.
//!
//! # Policy
//!
//! - [`Durability::None`]: memory only. Nothing touches the disk, [`Journal::append`]
//!   returns a [`Commit`] that is already durable, and a restart loses every debit.
//! - [`Durability::Group`]: [`Journal::append`] queues the record and returns at once (no
//!   system call on the caller's thread unless the writer is asleep and must be woken); a
//!   dedicated writer thread takes everything queued, writes it with one `write(2)`, calls
//!   `fdatasync`, and only then publishes the highest durable sequence number, which
//!   [`Commit::durable`] awaits. Under load many records share one fsync (group commit).
//!
//! # The data directory
//!
//! - `journal.log`: fixed-size records of [`RECORD_BYTES`] bytes, little-endian:
//!   `seq: u64, account: u32, amount: i64, crc32: u32`, the CRC-32 (IEEE, as in zlib)
//!   covering the 20 bytes before it. Sequence numbers start at 1 and have no gaps.
//! - `snapshot.bin`: a header of [`SNAPSHOT_HEADER_BYTES`] bytes, little-endian: magic
//!   `PDFSNAP\0` (8 bytes), version `1` (u32), account count (u32), the sequence number it
//!   covers, i.e. the records folded into it (u64), CRC-32 (u32) of header bytes 0..24 and
//!   of the body, 4 zero bytes; then the body: every account's total debited, as i64. It is
//!   written to `snapshot.bin.tmp`, fsynced, renamed, and the directory fsynced.
//! - `origin-state-id`: the Origin-State-Id as decimal text. Every open increments it
//!   (written to a temporary file, fsynced, renamed): the PDF loses its sessions when it
//!   restarts, and RFC 6733 wants the value to grow whenever a node restarts having lost its
//!   state. A directory without one starts from the current unix time.
//! - `lock`: an empty file held with `flock` while the writer thread runs (from
//!   [`Journal::open`] to [`Journal::close`]), so that a second process cannot write the same
//!   journal.
//!
//! Every [`JournalConfig::snapshot_every`] records the writer (which keeps its own per-account
//! totals) writes a snapshot covering every record durable so far, then truncates
//! `journal.log` to zero and goes on appending. A crash at any point is safe: recovery is the
//! snapshot plus every record in `journal.log` whose seq is above the snapshot's; records at
//! or below it (a crash between the snapshot's rename and the truncation) are skipped.
//!
//! # Recovery
//!
//! [`Journal::open`] reads the snapshot (its magic, version, length and CRC must be right
//! and its account count must match, else it is an error naming the file), then replays the
//! log. The first short record or record with a bad CRC ends the replay: a write cut by the
//! crash. The file is truncated there, with a warning, and the bytes cut are counted in
//! [`Recovered::truncated_bytes`]: nothing after that point was ever acknowledged, since an
//! answer waits for the fsync of its record and of every record before it. A record naming
//! an account out of range, or a gap in the sequence numbers, is an error naming the file
//! and the offset.
//!
//! # Failure
//!
//! If a write or fsync fails, the journal stops: every pending and every later [`Commit`]
//! resolves to [`JournalError::Io`], so that no answer ever claims a debit is on disk when it
//! is not. (After a failed fsync the page cache cannot be trusted, so the writer does not
//! try again.)

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// The log's file name in the data directory.
pub const LOG_FILE: &str = "journal.log";
/// The snapshot's file name in the data directory.
pub const SNAPSHOT_FILE: &str = "snapshot.bin";
/// The Origin-State-Id's file name in the data directory.
pub const ORIGIN_STATE_ID_FILE: &str = "origin-state-id";
/// The lock file's name in the data directory.
pub const LOCK_FILE: &str = "lock";
/// Bytes per log record: seq u64, account u32, amount i64, crc32 u32.
pub const RECORD_BYTES: usize = 24;
/// The snapshot's magic number.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"PDFSNAP\0";
/// The snapshot format's version.
pub const SNAPSHOT_VERSION: u32 = 1;
/// Bytes in the snapshot's header.
pub const SNAPSHOT_HEADER_BYTES: usize = 32;

const SNAPSHOT_TMP: &str = "snapshot.bin.tmp";
const ORIGIN_STATE_ID_TMP: &str = "origin-state-id.tmp";

/// When an answer may leave.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Memory only: answers never wait, and a restart loses every debit.
    #[default]
    None,
    /// An answer waits until its debit is fsynced; fsyncs are shared by every record queued
    /// meanwhile (group commit).
    Group,
}

/// How to run the journal.
#[derive(Clone, Debug)]
pub struct JournalConfig {
    /// The data directory (created if missing). Needed by [`Durability::Group`]; ignored by
    /// [`Durability::None`].
    pub dir: Option<PathBuf>,
    /// The policy.
    pub durability: Durability,
    /// Records between snapshots (0: never snapshot). Writing a snapshot costs 8 bytes per
    /// account and holds up the records queued meanwhile, so keep it large, e.g. 1_000_000.
    pub snapshot_every: u64,
    /// How long the writer may wait, after the first record of a batch arrives, to gather
    /// more before writing. Zero writes as soon as something is queued (batches still form
    /// while an fsync is in progress).
    pub max_batch_delay: Duration,
}

impl Default for JournalConfig {
    fn default() -> Self {
        Self {
            dir: None,
            durability: Durability::None,
            snapshot_every: 1_000_000,
            max_batch_delay: Duration::ZERO,
        }
    }
}

/// What [`Journal::open`] found on disk.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Per account, the total debited by the recovered records (length: the account count).
    pub debited: Vec<i64>,
    /// Records recovered in all: those folded into the snapshot plus those replayed from the
    /// log. Also the last sequence number; the next record gets this plus one.
    pub records: u64,
    /// Records folded into the snapshot (0 without one).
    pub snapshot_records: u64,
    /// The Origin-State-Id for this run: the stored one plus one, or the unix time in
    /// seconds for a new directory or [`Durability::None`].
    pub origin_state_id: u32,
    /// Bytes cut from the end of the log: a record torn by a crash, or garbage (0 normally).
    pub truncated_bytes: u64,
}

/// Why a debit is not durable.
#[derive(Clone, Debug, thiserror::Error)]
pub enum JournalError {
    /// A write or fsync failed; the journal has stopped.
    #[error("journal write failed: {0}")]
    Io(Arc<io::Error>),
    /// The journal was closed (or its writer died) before the record reached the disk.
    #[error("the journal was closed before the record reached the disk")]
    Closed,
    /// The account is not one the journal was opened for.
    #[error("account {account} is out of range (the journal has {accounts} accounts)")]
    UnknownAccount {
        /// The account.
        account: u32,
        /// The journal's account count.
        accounts: u32,
    },
}

/// The writer's counters, as of one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct JournalStats {
    /// Records written and fsynced.
    pub records: u64,
    /// fdatasync calls on the log (one per batch).
    pub fsyncs: u64,
    /// Bytes written to the log.
    pub bytes: u64,
    /// Records in the last batch.
    pub last_batch: u64,
    /// Records in the largest batch so far.
    pub max_batch: u64,
    /// Snapshots written.
    pub snapshots: u64,
    /// The highest durable sequence number (counting recovered records).
    pub durable_seq: u64,
    /// Whether a write or fsync failed (the journal refuses everything since).
    pub failed: bool,
}

impl JournalStats {
    /// Appends the counters in the Prometheus text format (`pdf_journal_*`).
    pub fn render_prometheus(&self, out: &mut String) {
        use std::fmt::Write as _;
        let rows: [(&str, &str, &str, u64); 8] = [
            (
                "records_total",
                "counter",
                "Debit records written and fsynced.",
                self.records,
            ),
            (
                "fsyncs_total",
                "counter",
                "fdatasync calls on the journal log (one per batch).",
                self.fsyncs,
            ),
            (
                "bytes_total",
                "counter",
                "Bytes written to the journal log.",
                self.bytes,
            ),
            (
                "last_batch_records",
                "gauge",
                "Records in the last batch.",
                self.last_batch,
            ),
            (
                "max_batch_records",
                "gauge",
                "Records in the largest batch.",
                self.max_batch,
            ),
            (
                "snapshots_total",
                "counter",
                "Snapshots written.",
                self.snapshots,
            ),
            (
                "durable_seq",
                "gauge",
                "Highest durable record sequence number.",
                self.durable_seq,
            ),
            (
                "failed",
                "gauge",
                "1 once a journal write or fsync has failed.",
                u64::from(self.failed),
            ),
        ];
        for (name, kind, help, value) in rows {
            let _ = writeln!(out, "# HELP pdf_journal_{name} {help}");
            let _ = writeln!(out, "# TYPE pdf_journal_{name} {kind}");
            let _ = writeln!(out, "pdf_journal_{name} {value}");
        }
    }
}

/// The journal: a handle that may be cloned and shared between threads and tasks.
///
/// Dropping the last handle flushes and stops the writer like [`Journal::close`], without
/// reporting errors.
#[derive(Clone)]
pub struct Journal {
    inner: Arc<Inner>,
}

/// A record's way to the disk: await [`Commit::durable`] before answering.
#[must_use = "a debit is not known to be on disk until Commit::durable returns Ok"]
pub struct Commit {
    state: CommitState,
}

enum CommitState {
    Ready(Result<(), JournalError>),
    Pending {
        seq: u64,
        progress: watch::Receiver<Progress>,
    },
}

impl Commit {
    fn ready(result: Result<(), JournalError>) -> Self {
        Self {
            state: CommitState::Ready(result),
        }
    }

    /// Waits until the record is on disk (`Ok`), or will never be (`Err`).
    pub async fn durable(self) -> Result<(), JournalError> {
        match self.state {
            CommitState::Ready(result) => result,
            CommitState::Pending { seq, mut progress } => {
                match progress
                    .wait_for(|p| p.durable >= seq || p.error.is_some())
                    .await
                {
                    Ok(p) => return p.outcome(seq),
                    Err(_closed) => {}
                }
                // The writer is gone: its last word decides.
                let last = progress.borrow();
                last.outcome(seq)
            }
        }
    }

    /// Whether the record is on disk already (always, under [`Durability::None`]).
    pub fn is_durable(&self) -> bool {
        match &self.state {
            CommitState::Ready(result) => result.is_ok(),
            CommitState::Pending { seq, progress } => progress.borrow().durable >= *seq,
        }
    }

    /// The record's sequence number (`None` when nothing was queued: memory only, or an
    /// error).
    pub fn seq(&self) -> Option<u64> {
        match &self.state {
            CommitState::Ready(_) => None,
            CommitState::Pending { seq, .. } => Some(*seq),
        }
    }
}

/// What the writer publishes after each batch.
#[derive(Clone, Debug, Default)]
struct Progress {
    /// Every record up to this seq is on disk.
    durable: u64,
    /// Set when the journal failed: records above `durable` never will be.
    error: Option<JournalError>,
}

impl Progress {
    fn outcome(&self, seq: u64) -> Result<(), JournalError> {
        if self.durable >= seq {
            Ok(())
        } else if let Some(error) = &self.error {
            Err(error.clone())
        } else {
            Err(JournalError::Closed)
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Record {
    seq: u64,
    account: u32,
    amount: i64,
}

impl Record {
    fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.account.to_le_bytes());
        out.extend_from_slice(&self.amount.to_le_bytes());
        let crc = crc32(&out[start..]);
        out.extend_from_slice(&crc.to_le_bytes());
    }

    /// `None` when the CRC does not match.
    fn decode(bytes: &[u8; RECORD_BYTES]) -> Option<Self> {
        let crc = u32::from_le_bytes(bytes[20..24].try_into().ok()?);
        if crc32(&bytes[..20]) != crc {
            return None;
        }
        Some(Self {
            seq: u64::from_le_bytes(bytes[0..8].try_into().ok()?),
            account: u32::from_le_bytes(bytes[8..12].try_into().ok()?),
            amount: i64::from_le_bytes(bytes[12..20].try_into().ok()?),
        })
    }
}

/// The queue between the appenders and the writer.
#[derive(Default)]
struct Queue {
    state: Mutex<QueueState>,
    wake: Condvar,
}

#[derive(Default)]
struct QueueState {
    /// The last sequence number handed out.
    last_seq: u64,
    /// Records waiting for the writer, in seq order.
    pending: Vec<Record>,
    /// The writer sleeps on the condvar: the next appender must wake it.
    writer_idle: bool,
    /// Close requested: the writer drains the queue and stops.
    closing: bool,
    /// The journal failed: appends are refused with this.
    failed: Option<JournalError>,
}

#[derive(Default)]
struct Counters {
    records: AtomicU64,
    fsyncs: AtomicU64,
    bytes: AtomicU64,
    last_batch: AtomicU64,
    max_batch: AtomicU64,
    snapshots: AtomicU64,
    durable_seq: AtomicU64,
    failed: AtomicBool,
}

struct Inner {
    accounts: u32,
    counters: Arc<Counters>,
    /// `None` under [`Durability::None`].
    writer: Option<WriterHandle>,
}

struct WriterHandle {
    queue: Arc<Queue>,
    progress: watch::Receiver<Progress>,
    thread: Mutex<Option<JoinHandle<Result<(), JournalError>>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Inner {
    /// Asks the writer to drain the queue and stop, and waits for it.
    fn stop(&self) -> anyhow::Result<()> {
        let Some(writer) = &self.writer else {
            return Ok(());
        };
        let Some(thread) = lock(&writer.thread).take() else {
            return Ok(());
        };
        lock(&writer.queue.state).closing = true;
        writer.queue.wake.notify_all();
        match thread.join() {
            Ok(result) => result.map_err(anyhow::Error::from),
            Err(_) => bail!("the journal writer thread panicked"),
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Err(error) = self.stop() {
            tracing::debug!(%error, "journal dropped after a failure");
        }
    }
}

impl Journal {
    /// Opens the journal for `accounts` accounts: recovers what the data directory holds,
    /// increments the Origin-State-Id, and starts the writer thread.
    ///
    /// Errors: [`Durability::Group`] without a directory; a directory in use by another
    /// process; an unreadable or mismatched snapshot; a log record naming an account out of
    /// range or breaking the sequence (each naming the file, and the offset for the log).
    pub fn open(config: &JournalConfig, accounts: u32) -> anyhow::Result<(Journal, Recovered)> {
        Self::open_with(config, accounts, true)
    }

    /// Opens the journal a previous process of the same node just closed, without a new
    /// Origin-State-Id: a hot upgrade (or its rollback) lost no state, so peers must not
    /// think it did. [`Recovered::origin_state_id`] is the current one.
    pub fn open_continuing(
        config: &JournalConfig,
        accounts: u32,
    ) -> anyhow::Result<(Journal, Recovered)> {
        Self::open_with(config, accounts, false)
    }

    fn open_with(
        config: &JournalConfig,
        accounts: u32,
        bump: bool,
    ) -> anyhow::Result<(Journal, Recovered)> {
        match (config.durability, &config.dir) {
            (Durability::None, dir) => {
                if let Some(dir) = dir {
                    tracing::info!(dir = %dir.display(), "durability none: the journal stays in memory and leaves the data directory alone");
                }
                let journal = Journal {
                    inner: Arc::new(Inner {
                        accounts,
                        counters: Arc::default(),
                        writer: None,
                    }),
                };
                let recovered = Recovered {
                    debited: vec![0; accounts as usize],
                    origin_state_id: unix_seconds(),
                    ..Recovered::default()
                };
                Ok((journal, recovered))
            }
            (Durability::Group, None) => bail!("journal durability `group` needs a data directory"),
            (Durability::Group, Some(dir)) => Self::open_dir(config, dir, accounts, bump),
        }
    }

    fn open_dir(
        config: &JournalConfig,
        dir: &Path,
        accounts: u32,
        bump: bool,
    ) -> anyhow::Result<(Journal, Recovered)> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("opening {}", lock_path.display()))?;
        match lock_file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => bail!(
                "{}: the data directory is in use by another journal",
                dir.display()
            ),
            Err(TryLockError::Error(error)) => {
                return Err(error).with_context(|| format!("locking {}", lock_path.display()))
            }
        }
        for leftover in [SNAPSHOT_TMP, ORIGIN_STATE_ID_TMP] {
            let _ = fs::remove_file(dir.join(leftover));
        }

        let mut debited = vec![0i64; accounts as usize];
        let snapshot_path = dir.join(SNAPSHOT_FILE);
        let snapshot_records = match read_snapshot(&snapshot_path, accounts)? {
            Some((seq, totals)) => {
                debited = totals;
                seq
            }
            None => 0,
        };

        let log_path = dir.join(LOG_FILE);
        let mut log = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let replay = replay(&log_path, &mut log, snapshot_records, &mut debited)?;
        let origin_state_id = if bump {
            bump_origin_state_id(dir)?
        } else {
            current_origin_state_id(dir)?
        };
        sync_dir(dir)?;

        let recovered = Recovered {
            debited: debited.clone(),
            records: replay.last_seq,
            snapshot_records,
            origin_state_id,
            truncated_bytes: replay.truncated_bytes,
        };
        let queue = Arc::new(Queue::default());
        lock(&queue.state).last_seq = replay.last_seq;
        let (progress_tx, progress_rx) = watch::channel(Progress {
            durable: replay.last_seq,
            error: None,
        });
        let counters = Arc::new(Counters::default());
        counters
            .durable_seq
            .store(replay.last_seq, Ordering::Relaxed);
        let writer = Writer {
            dir: dir.to_path_buf(),
            log,
            queue: queue.clone(),
            progress: progress_tx,
            counters: counters.clone(),
            totals: debited,
            durable: replay.last_seq,
            next_snapshot: snapshot_every_after(snapshot_records, config.snapshot_every),
            snapshot_every: config.snapshot_every,
            max_batch_delay: config.max_batch_delay,
            _lock: lock_file,
        };
        let guard = PanicGuard(queue.clone());
        let thread = std::thread::Builder::new()
            .name("pdf-journal".into())
            .spawn(move || {
                let _guard = guard;
                writer.run()
            })
            .context("starting the journal writer thread")?;
        let journal = Journal {
            inner: Arc::new(Inner {
                accounts,
                counters,
                writer: Some(WriterHandle {
                    queue,
                    progress: progress_rx,
                    thread: Mutex::new(Some(thread)),
                }),
            }),
        };
        Ok((journal, recovered))
    }

    /// Queues a debit of `amount` on `account` and returns at once. Await
    /// [`Commit::durable`] before sending the answer that depends on it.
    ///
    /// Records reach the disk in the order of their `append` calls, and a record is durable
    /// only once every earlier one is.
    pub fn append(&self, account: u32, amount: i64) -> Commit {
        if account >= self.inner.accounts {
            return Commit::ready(Err(JournalError::UnknownAccount {
                account,
                accounts: self.inner.accounts,
            }));
        }
        let Some(writer) = &self.inner.writer else {
            return Commit::ready(Ok(()));
        };
        let mut state = lock(&writer.queue.state);
        if let Some(error) = &state.failed {
            return Commit::ready(Err(error.clone()));
        }
        if state.closing {
            return Commit::ready(Err(JournalError::Closed));
        }
        state.last_seq += 1;
        let seq = state.last_seq;
        state.pending.push(Record {
            seq,
            account,
            amount,
        });
        let wake = std::mem::replace(&mut state.writer_idle, false);
        drop(state);
        if wake {
            writer.queue.wake.notify_one();
        }
        Commit {
            state: CommitState::Pending {
                seq,
                progress: writer.progress.clone(),
            },
        }
    }

    /// The writer's counters (all zero under [`Durability::None`]).
    pub fn stats(&self) -> JournalStats {
        let c = &self.inner.counters;
        JournalStats {
            records: c.records.load(Ordering::Relaxed),
            fsyncs: c.fsyncs.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
            last_batch: c.last_batch.load(Ordering::Relaxed),
            max_batch: c.max_batch.load(Ordering::Relaxed),
            snapshots: c.snapshots.load(Ordering::Relaxed),
            durable_seq: c.durable_seq.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
        }
    }

    /// Writes and fsyncs everything queued, then stops the writer thread. Other clones of
    /// this handle see later appends refused with [`JournalError::Closed`]. Returns the
    /// error that stopped the journal, if one did.
    pub fn close(self) -> anyhow::Result<()> {
        self.inner.stop()
    }
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("accounts", &self.inner.accounts)
            .field("memory_only", &self.inner.writer.is_none())
            .field("stats", &self.stats())
            .finish()
    }
}

impl std::fmt::Debug for Commit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.state {
            CommitState::Ready(result) => f.debug_tuple("Commit").field(result).finish(),
            CommitState::Pending { seq, .. } => f
                .debug_struct("Commit")
                .field("seq", seq)
                .field("durable", &self.is_durable())
                .finish(),
        }
    }
}

/// Should the writer thread panic, refuses every later append (its commits already fail:
/// the progress channel closes).
struct PanicGuard(Arc<Queue>);

impl Drop for PanicGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut state = lock(&self.0.state);
            state.failed.get_or_insert(JournalError::Closed);
            state.pending = Vec::new();
        }
    }
}

fn snapshot_every_after(seq: u64, every: u64) -> u64 {
    if every == 0 {
        u64::MAX
    } else {
        seq.saturating_add(every)
    }
}

/// The writer thread's state.
struct Writer {
    dir: PathBuf,
    log: File,
    queue: Arc<Queue>,
    progress: watch::Sender<Progress>,
    counters: Arc<Counters>,
    /// Per account total debited, up to `durable`.
    totals: Vec<i64>,
    /// Every record up to this seq is on disk.
    durable: u64,
    /// Write a snapshot once `durable` reaches this.
    next_snapshot: u64,
    snapshot_every: u64,
    max_batch_delay: Duration,
    /// Held (flock) while the writer runs, so that no other journal opens the directory.
    _lock: File,
}

impl Writer {
    fn run(mut self) -> Result<(), JournalError> {
        let mut batch = Vec::new();
        let mut buffer = Vec::new();
        loop {
            {
                let mut state = lock(&self.queue.state);
                while state.pending.is_empty() {
                    if state.closing {
                        return Ok(());
                    }
                    state.writer_idle = true;
                    state = self
                        .queue
                        .wake
                        .wait(state)
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                }
                state.writer_idle = false;
                if !self.max_batch_delay.is_zero() && !state.closing {
                    drop(state);
                    std::thread::sleep(self.max_batch_delay);
                    state = lock(&self.queue.state);
                }
                std::mem::swap(&mut state.pending, &mut batch);
            }
            if let Err(error) = self.write_batch(&batch, &mut buffer) {
                return Err(self.fail(error));
            }
            batch.clear();
            if self.durable >= self.next_snapshot {
                self.snapshot()?;
            }
        }
    }

    fn write_batch(&mut self, batch: &[Record], buffer: &mut Vec<u8>) -> io::Result<()> {
        let Some(last) = batch.last() else {
            return Ok(());
        };
        buffer.clear();
        for record in batch {
            record.encode(buffer);
        }
        self.log.write_all(buffer)?;
        self.log.sync_data()?;
        for record in batch {
            self.totals[record.account as usize] += record.amount;
        }
        self.durable = last.seq;
        let c = &self.counters;
        let n = batch.len() as u64;
        c.records.fetch_add(n, Ordering::Relaxed);
        c.fsyncs.fetch_add(1, Ordering::Relaxed);
        c.bytes.fetch_add(buffer.len() as u64, Ordering::Relaxed);
        c.last_batch.store(n, Ordering::Relaxed);
        c.max_batch.fetch_max(n, Ordering::Relaxed);
        c.durable_seq.store(last.seq, Ordering::Relaxed);
        let durable = last.seq;
        self.progress.send_modify(|p| p.durable = durable);
        Ok(())
    }

    /// Writes a snapshot of everything durable, then empties the log. A failed snapshot is
    /// only a warning (the log still holds every record; it is tried again later); a failed
    /// truncation stops the journal.
    fn snapshot(&mut self) -> Result<(), JournalError> {
        self.next_snapshot = snapshot_every_after(self.durable, self.snapshot_every);
        if let Err(error) = write_snapshot(&self.dir, self.durable, &self.totals) {
            tracing::warn!(%error, dir = %self.dir.display(), "journal snapshot failed; the log keeps every record and the snapshot will be tried again");
            let _ = fs::remove_file(self.dir.join(SNAPSHOT_TMP));
            return Ok(());
        }
        if let Err(error) = self.log.set_len(0).and_then(|()| self.log.sync_all()) {
            return Err(self.fail(error));
        }
        self.counters.snapshots.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(records = self.durable, "journal snapshot written");
        Ok(())
    }

    /// Stops the journal after an IO error: refuses every queued and later record.
    fn fail(&mut self, error: io::Error) -> JournalError {
        tracing::error!(%error, dir = %self.dir.display(), "journal write failed: refusing every debit from now on");
        let error = JournalError::Io(Arc::new(error));
        {
            let mut state = lock(&self.queue.state);
            state.failed = Some(error.clone());
            state.pending = Vec::new();
        }
        self.counters.failed.store(true, Ordering::Relaxed);
        self.progress.send_modify(|p| p.error = Some(error.clone()));
        error
    }
}

fn unix_seconds() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32)
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("fsyncing the directory {}", dir.display()))
}

/// Writes `contents` to `dir/tmp`, fsyncs it, and renames it to `dir/name` (the caller
/// fsyncs the directory).
fn replace_file(dir: &Path, tmp: &str, name: &str, contents: &[u8]) -> io::Result<()> {
    let tmp = dir.join(tmp);
    let mut file = File::create(&tmp)?;
    file.write_all(contents)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, dir.join(name))
}

fn write_snapshot(dir: &Path, seq: u64, totals: &[i64]) -> io::Result<()> {
    let mut bytes = Vec::with_capacity(SNAPSHOT_HEADER_BYTES + 8 * totals.len());
    bytes.extend_from_slice(&SNAPSHOT_MAGIC);
    bytes.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&(totals.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&seq.to_le_bytes());
    bytes.extend_from_slice(&[0; 8]); // crc, reserved
    for total in totals {
        bytes.extend_from_slice(&total.to_le_bytes());
    }
    let crc = snapshot_crc(&bytes);
    bytes[24..28].copy_from_slice(&crc.to_le_bytes());
    replace_file(dir, SNAPSHOT_TMP, SNAPSHOT_FILE, &bytes)?;
    File::open(dir)?.sync_all()
}

fn snapshot_crc(bytes: &[u8]) -> u32 {
    let mut crc = Crc32::new();
    crc.update(&bytes[..24]);
    crc.update(&bytes[SNAPSHOT_HEADER_BYTES..]);
    crc.finish()
}

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320: the one of zlib, gzip and PNG).
#[derive(Clone, Copy)]
struct Crc32(u32);

const CRC32_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            bit += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

impl Crc32 {
    fn new() -> Self {
        Self(!0)
    }

    fn update(&mut self, bytes: &[u8]) {
        let mut c = self.0;
        for &byte in bytes {
            c = CRC32_TABLE[((c ^ u32::from(byte)) & 0xff) as usize] ^ (c >> 8);
        }
        self.0 = c;
    }

    fn finish(self) -> u32 {
        !self.0
    }
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = Crc32::new();
    crc.update(bytes);
    crc.finish()
}

/// The snapshot's seq and totals, or `None` when there is none.
fn read_snapshot(path: &Path, accounts: u32) -> anyhow::Result<Option<(u64, Vec<i64>)>> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    };
    let name = path.display();
    if bytes.len() < SNAPSHOT_HEADER_BYTES || bytes[..8] != SNAPSHOT_MAGIC {
        bail!("{name}: not a journal snapshot (bad magic or too short)");
    }
    let u32_at =
        |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let version = u32_at(8);
    if version != SNAPSHOT_VERSION {
        bail!("{name}: snapshot version {version}, this build reads version {SNAPSHOT_VERSION}");
    }
    let count = u32_at(12);
    let expected_len = SNAPSHOT_HEADER_BYTES + 8 * count as usize;
    if bytes.len() != expected_len {
        bail!(
            "{name}: {} bytes, but a snapshot of {count} accounts has {expected_len}",
            bytes.len()
        );
    }
    if snapshot_crc(&bytes) != u32_at(24) {
        bail!("{name}: the snapshot's checksum does not match (the file is damaged)");
    }
    if count != accounts {
        bail!("{name}: the snapshot is for {count} accounts, but the population has {accounts}");
    }
    let mut seq = [0; 8];
    seq.copy_from_slice(&bytes[16..24]);
    let totals = bytes[SNAPSHOT_HEADER_BYTES..]
        .chunks_exact(8)
        .map(|chunk| {
            let mut total = [0; 8];
            total.copy_from_slice(chunk);
            i64::from_le_bytes(total)
        })
        .collect();
    Ok(Some((u64::from_le_bytes(seq), totals)))
}

struct Replay {
    /// The last seq recovered (the snapshot's when the log adds nothing).
    last_seq: u64,
    truncated_bytes: u64,
}

/// Reads up to `buf.len()` bytes; fewer only at the end of the file.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

/// Adds the log's records above `snapshot_seq` to `debited`; cuts a damaged tail.
fn replay(
    path: &Path,
    log: &mut File,
    snapshot_seq: u64,
    debited: &mut [i64],
) -> anyhow::Result<Replay> {
    let name = path.display();
    let len = log
        .metadata()
        .with_context(|| format!("reading {name}"))?
        .len();
    let mut reader = BufReader::with_capacity(1 << 16, &*log);
    let mut offset = 0u64;
    let mut previous: Option<u64> = None;
    let mut damage = None;
    let mut bytes = [0u8; RECORD_BYTES];
    while offset < len {
        let got = read_full(&mut reader, &mut bytes).with_context(|| format!("reading {name}"))?;
        if got < RECORD_BYTES {
            damage = Some("a record cut short");
            break;
        }
        let Some(record) = Record::decode(&bytes) else {
            damage = Some("a record with a bad checksum");
            break;
        };
        let expected = previous.map_or(snapshot_seq + 1, |p| p + 1);
        let in_sequence = match previous {
            Some(_) => record.seq == expected,
            // The first record may precede the snapshot (crash before the log was emptied).
            None => (1..=expected).contains(&record.seq),
        };
        if !in_sequence {
            bail!(
                "{name}: offset {offset}: record seq {} where {expected} was expected (records are missing)",
                record.seq
            );
        }
        if record.seq > snapshot_seq {
            let Some(total) = debited.get_mut(record.account as usize) else {
                bail!(
                    "{name}: offset {offset}: record seq {} is for account {}, but there are only {} accounts",
                    record.seq,
                    record.account,
                    debited.len()
                );
            };
            *total = total.checked_add(record.amount).with_context(|| {
                format!(
                    "{name}: offset {offset}: account {} total overflows",
                    record.account
                )
            })?;
        }
        previous = Some(record.seq);
        offset += RECORD_BYTES as u64;
    }
    drop(reader);
    let mut truncated_bytes = 0;
    if let Some(damage) = damage {
        truncated_bytes = len - offset;
        tracing::warn!(
            file = %name,
            offset,
            bytes = truncated_bytes,
            "the journal ends with {damage} (a write cut by a crash): truncating it there"
        );
        log.set_len(offset)
            .and_then(|()| log.sync_all())
            .with_context(|| format!("truncating {name} at {offset}"))?;
    }
    Ok(Replay {
        last_seq: previous.map_or(snapshot_seq, |seq| seq.max(snapshot_seq)),
        truncated_bytes,
    })
}

/// Reads the Origin-State-Id (a new directory gets one, as when bumping).
fn current_origin_state_id(dir: &Path) -> anyhow::Result<u32> {
    let path = dir.join(ORIGIN_STATE_ID_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => text
            .trim()
            .parse::<u32>()
            .with_context(|| format!("{}: not a u32: {text:?}", path.display())),
        Err(error) if error.kind() == io::ErrorKind::NotFound => bump_origin_state_id(dir),
        Err(error) => Err(error).with_context(|| format!("reading {}", path.display())),
    }
}

/// Reads, increments and stores the Origin-State-Id (the unix time for a new directory).
fn bump_origin_state_id(dir: &Path) -> anyhow::Result<u32> {
    let path = dir.join(ORIGIN_STATE_ID_FILE);
    let next = match fs::read_to_string(&path) {
        Ok(text) => text
            .trim()
            .parse::<u32>()
            .with_context(|| format!("{}: not a u32: {text:?}", path.display()))?
            .wrapping_add(1),
        Err(error) if error.kind() == io::ErrorKind::NotFound => unix_seconds(),
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    };
    replace_file(
        dir,
        ORIGIN_STATE_ID_TMP,
        ORIGIN_STATE_ID_FILE,
        format!("{next}\n").as_bytes(),
    )
    .with_context(|| format!("writing {}", path.display()))?;
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::io::{BufRead, Seek, SeekFrom};
    use std::time::Instant;

    const ACCOUNTS: u32 = 10;

    fn group(dir: &Path, snapshot_every: u64) -> JournalConfig {
        JournalConfig {
            dir: Some(dir.to_path_buf()),
            durability: Durability::Group,
            snapshot_every,
            max_batch_delay: Duration::ZERO,
        }
    }

    /// The debit of record `seq` in the tests' deterministic stream.
    fn debit(seq: u64) -> (u32, i64) {
        (
            (seq.wrapping_mul(7919) % u64::from(ACCOUNTS)) as u32,
            1 + (seq % 13) as i64,
        )
    }

    /// Totals after records 1..=n of the stream.
    fn expected(n: u64) -> Vec<i64> {
        let mut totals = vec![0; ACCOUNTS as usize];
        for seq in 1..=n {
            let (account, amount) = debit(seq);
            totals[account as usize] += amount;
        }
        totals
    }

    /// Appends records `from..=to` of the stream one by one, each awaited.
    async fn append_awaited(journal: &Journal, from: u64, to: u64) {
        for seq in from..=to {
            let (account, amount) = debit(seq);
            let commit = journal.append(account, amount);
            assert_eq!(commit.seq(), Some(seq));
            commit.durable().await.expect("durable");
        }
    }

    fn log_len(dir: &Path) -> u64 {
        fs::metadata(dir.join(LOG_FILE)).expect("log").len()
    }

    #[test]
    fn journal_is_send_and_sync() {
        fn check<T: Send + Sync + 'static>() {}
        check::<Journal>();
        check::<Commit>();
        check::<JournalError>();
    }

    #[test]
    fn crc32_is_the_standard_one() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
        let mut split = Crc32::new();
        split.update(b"1234");
        split.update(b"56789");
        assert_eq!(split.finish(), 0xCBF4_3926);
    }

    #[test]
    fn record_round_trip_and_crc() {
        let record = Record {
            seq: 42,
            account: 7,
            amount: -1234,
        };
        let mut bytes = Vec::new();
        record.encode(&mut bytes);
        assert_eq!(bytes.len(), RECORD_BYTES);
        let mut fixed: [u8; RECORD_BYTES] = bytes.as_slice().try_into().expect("24 bytes");
        assert_eq!(Record::decode(&fixed), Some(record));
        fixed[13] ^= 1;
        assert_eq!(Record::decode(&fixed), None);
    }

    #[tokio::test]
    async fn open_continuing_keeps_the_origin_state_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = group(dir.path(), 0);
        let (journal, first) = Journal::open(&config, 4).expect("open");
        let _ = journal.append(1, 5).durable().await;
        journal.close().expect("close");
        let (journal, again) = Journal::open_continuing(&config, 4).expect("reopen");
        assert_eq!(again.origin_state_id, first.origin_state_id);
        assert_eq!(again.debited[1], 5);
        journal.close().expect("close");
        let (_journal, bumped) = Journal::open(&config, 4).expect("reopen");
        assert_eq!(bumped.origin_state_id, first.origin_state_id + 1);
    }

    #[tokio::test]
    async fn reopen_recovers_totals_and_bumps_origin_state_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = group(dir.path(), 1_000_000);
        let (journal, recovered) = Journal::open(&config, ACCOUNTS).expect("open");
        assert_eq!(recovered.records, 0);
        assert_eq!(recovered.debited, vec![0; ACCOUNTS as usize]);
        let first_id = recovered.origin_state_id;
        assert!(
            first_id > 1_600_000_000,
            "a new directory starts from the unix time"
        );

        let commits: Vec<Commit> = (1..=1000)
            .map(|seq| {
                let (account, amount) = debit(seq);
                journal.append(account, amount)
            })
            .collect();
        for commit in commits {
            commit.durable().await.expect("durable");
        }
        let stats = journal.stats();
        assert_eq!(stats.records, 1000);
        assert_eq!(stats.durable_seq, 1000);
        assert_eq!(stats.bytes, 1000 * RECORD_BYTES as u64);
        journal.close().expect("close");
        assert_eq!(log_len(dir.path()), 1000 * RECORD_BYTES as u64);

        let (journal, recovered) = Journal::open(&config, ACCOUNTS).expect("reopen");
        assert_eq!(recovered.debited, expected(1000));
        assert_eq!(recovered.records, 1000);
        assert_eq!(recovered.snapshot_records, 0);
        assert_eq!(recovered.truncated_bytes, 0);
        assert_eq!(recovered.origin_state_id, first_id + 1);
        // Sequence numbers go on from the recovered ones.
        append_awaited(&journal, 1001, 1010).await;
        journal.close().expect("close");

        let (journal, recovered) = Journal::open(&config, ACCOUNTS).expect("reopen");
        assert_eq!(recovered.debited, expected(1010));
        assert_eq!(recovered.origin_state_id, first_id + 2);
        let stored = fs::read_to_string(dir.path().join(ORIGIN_STATE_ID_FILE)).expect("id");
        assert_eq!(stored.trim(), (first_id + 2).to_string());
        journal.close().expect("close");
    }

    #[tokio::test]
    async fn snapshot_plus_tail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = group(dir.path(), 100);
        let (journal, _) = Journal::open(&config, ACCOUNTS).expect("open");
        append_awaited(&journal, 1, 1050).await;
        let stats = journal.stats();
        assert_eq!(stats.snapshots, 10, "one snapshot per 100 records");
        assert_eq!(stats.records, 1050);
        journal.close().expect("close");
        assert_eq!(
            log_len(dir.path()),
            50 * RECORD_BYTES as u64,
            "the log holds the tail only"
        );
        let snapshot = fs::read(dir.path().join(SNAPSHOT_FILE)).expect("snapshot");
        assert_eq!(
            snapshot.len(),
            SNAPSHOT_HEADER_BYTES + 8 * ACCOUNTS as usize
        );
        assert!(!dir.path().join(SNAPSHOT_TMP).exists());

        let (journal, recovered) = Journal::open(&config, ACCOUNTS).expect("reopen");
        assert_eq!(recovered.snapshot_records, 1000);
        assert_eq!(recovered.records, 1050);
        assert_eq!(recovered.debited, expected(1050));
        append_awaited(&journal, 1051, 1100).await;
        let observer = journal.clone();
        journal.close().expect("close");
        // (The writer snapshots after publishing the batch, so count once it has stopped.)
        assert_eq!(
            observer.stats().snapshots,
            1,
            "the next snapshot comes 100 records after the last"
        );

        let (journal, recovered) = Journal::open(&config, ACCOUNTS).expect("reopen");
        assert_eq!(
            (recovered.snapshot_records, recovered.records),
            (1100, 1100)
        );
        assert_eq!(recovered.debited, expected(1100));
        journal.close().expect("close");
    }

    #[tokio::test]
    async fn crash_between_snapshot_and_truncation_is_safe() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = group(dir.path(), 0);
        let (journal, _) = Journal::open(&config, ACCOUNTS).expect("open");
        append_awaited(&journal, 1, 300).await;
        journal.close().expect("close");
        // A snapshot at 200 whose log was not emptied: records 1..=200 are in both.
        write_snapshot(dir.path(), 200, &expected(200)).expect("snapshot");
        let (journal, recovered) = Journal::open(&config, ACCOUNTS).expect("reopen");
        assert_eq!((recovered.snapshot_records, recovered.records), (200, 300));
        assert_eq!(recovered.debited, expected(300), "nothing counted twice");
        journal.close().expect("close");
    }

    #[tokio::test]
    async fn torn_tail_is_cut_and_complete_records_survive() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = group(dir.path(), 1_000_000);
        let (journal, _) = Journal::open(&config, ACCOUNTS).expect("open");
        append_awaited(&journal, 1, 100).await;
        journal.close().expect("close");
        let full = 100 * RECORD_BYTES as u64;

        // Garbage after the last record.
        let mut log = OpenOptions::new()
            .append(true)
            .open(dir.path().join(LOG_FILE))
            .expect("log");
        log.write_all(b"garbage!!!").expect("write");
        drop(log);
        let (journal, recovered) = Journal::open(&config, ACCOUNTS).expect("reopen");
        assert_eq!(recovered.records, 100);
        assert_eq!(recovered.truncated_bytes, 10);
        assert_eq!(recovered.debited, expected(100));
        assert_eq!(log_len(dir.path()), full);
        journal.close().expect("close");

        // The last record cut in half.
        let log = OpenOptions::new()
            .write(true)
            .open(dir.path().join(LOG_FILE))
            .expect("log");
        log.set_len(full - 12).expect("cut");
        drop(log);
        let (journal, recovered) = Journal::open(&config, ACCOUNTS).expect("reopen");
        assert_eq!(recovered.records, 99);
        assert_eq!(recovered.truncated_bytes, 12);
        assert_eq!(recovered.debited, expected(99));
        assert_eq!(log_len(dir.path()), full - RECORD_BYTES as u64);
        // The lost record's seq is given again, and the log stays in sequence.
        append_awaited(&journal, 100, 120).await;
        journal.close().expect("close");

        // A damaged last record (bad CRC).
        let mut log = OpenOptions::new()
            .write(true)
            .open(dir.path().join(LOG_FILE))
            .expect("log");
        log.seek(SeekFrom::Start(119 * RECORD_BYTES as u64 + 15))
            .expect("seek");
        log.write_all(&[0xff]).expect("write");
        drop(log);
        let (journal, recovered) = Journal::open(&config, ACCOUNTS).expect("reopen");
        assert_eq!(recovered.records, 119);
        assert_eq!(recovered.truncated_bytes, RECORD_BYTES as u64);
        assert_eq!(recovered.debited, expected(119));
        journal.close().expect("close");
    }

    #[tokio::test]
    async fn dropped_without_close_keeps_everything_durable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = group(dir.path(), 64);
        let (journal, _) = Journal::open(&config, ACCOUNTS).expect("open");
        append_awaited(&journal, 1, 500).await;
        let other = journal.clone();
        drop(journal);
        // Not durable yet when dropped: the writer drains the queue before it stops.
        let queued: Vec<Commit> = (501..=600)
            .map(|seq| {
                let (account, amount) = debit(seq);
                other.append(account, amount)
            })
            .collect();
        drop(other);
        for commit in queued {
            commit
                .durable()
                .await
                .expect("flushed by the last handle's drop");
        }
        let (journal, recovered) = Journal::open(&config, ACCOUNTS).expect("reopen");
        assert_eq!(recovered.records, 600);
        assert_eq!(recovered.debited, expected(600));
        journal.close().expect("close");
    }

    const CHILD_DIR: &str = "PDF_JOURNAL_TEST_CHILD_DIR";

    /// kill -9 of a process appending as fast as it can: every record it saw durable is
    /// recovered, and the totals are exactly those of the records recovered.
    #[test]
    fn kill9_loses_no_acknowledged_debit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "journal::tests::kill9_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR, dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn the child");
        let stdout = child.stdout.take().expect("stdout");
        let mut acknowledged = 0;
        for line in io::BufReader::new(stdout).lines() {
            let line = line.expect("read the child");
            if let Some(seq) = line.strip_prefix("durable ") {
                acknowledged = seq.parse::<u64>().expect("a seq");
                if acknowledged >= 20_000 {
                    break;
                }
            }
        }
        child.kill().expect("kill -9");
        child.wait().expect("reap");
        assert!(
            acknowledged >= 20_000,
            "the child stopped early at {acknowledged}"
        );

        let (journal, recovered) =
            Journal::open(&group(dir.path(), 5_000), ACCOUNTS).expect("reopen");
        assert!(
            recovered.records >= acknowledged,
            "acknowledged {acknowledged}, recovered {}",
            recovered.records
        );
        assert_eq!(recovered.debited, expected(recovered.records));
        println!(
            "kill -9: {acknowledged} acknowledged, {} recovered ({} from the snapshot), {} bytes of torn tail cut",
            recovered.records, recovered.snapshot_records, recovered.truncated_bytes
        );
        journal.close().expect("close");
    }

    /// The child half of [`kill9_loses_no_acknowledged_debit`] (does nothing on its own).
    #[test]
    #[ignore = "the child process of kill9_loses_no_acknowledged_debit"]
    fn kill9_child() {
        let Some(dir) = std::env::var_os(CHILD_DIR) else {
            return;
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let (journal, _) =
                Journal::open(&group(Path::new(&dir), 5_000), ACCOUNTS).expect("open");
            // Up to 20 batches of 50 in flight, so that the kill lands amid writes.
            let (batches, mut awaited) = tokio::sync::mpsc::channel::<(u64, Vec<Commit>)>(20);
            let acknowledge = tokio::spawn(async move {
                while let Some((last, commits)) = awaited.recv().await {
                    for commit in commits {
                        commit.durable().await.expect("durable");
                    }
                    let mut out = io::stdout().lock();
                    writeln!(out, "durable {last}").expect("stdout");
                    out.flush().expect("stdout");
                }
            });
            let mut seq = 0;
            loop {
                let commits: Vec<Commit> = (0..50)
                    .map(|_| {
                        seq += 1;
                        let (account, amount) = debit(seq);
                        journal.append(account, amount)
                    })
                    .collect();
                if batches.send((seq, commits)).await.is_err() {
                    break;
                }
            }
            acknowledge.await.expect("acknowledger");
        });
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn group_commit_shares_fsyncs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (journal, _) = Journal::open(&group(dir.path(), 1_000_000), ACCOUNTS).expect("open");
        let journal = Arc::new(journal);
        let tasks: Vec<_> = (0..16u32)
            .map(|task| {
                let journal = journal.clone();
                tokio::spawn(async move {
                    for _ in 0..25 {
                        let commits: Vec<Commit> = (0..25)
                            .map(|_| journal.append(task % ACCOUNTS, 3))
                            .collect();
                        for commit in commits {
                            commit.durable().await.expect("durable");
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("task");
        }
        let stats = journal.stats();
        println!(
            "group commit: {} records in {} fsyncs ({:.1} records per fsync, largest batch {})",
            stats.records,
            stats.fsyncs,
            stats.records as f64 / stats.fsyncs as f64,
            stats.max_batch
        );
        assert_eq!(stats.records, 10_000);
        assert!(stats.fsyncs * 4 < stats.records, "{stats:?}");
        Arc::try_unwrap(journal)
            .expect("last handle")
            .close()
            .expect("close");
        let (journal, recovered) =
            Journal::open(&group(dir.path(), 1_000_000), ACCOUNTS).expect("reopen");
        assert_eq!(recovered.records, 10_000);
        assert_eq!(recovered.debited.iter().sum::<i64>(), 30_000);
        journal.close().expect("close");
    }

    #[tokio::test]
    async fn memory_only_touches_no_disk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        for dir in [None, Some(data.clone())] {
            let config = JournalConfig {
                dir,
                durability: Durability::None,
                ..JournalConfig::default()
            };
            let (journal, recovered) = Journal::open(&config, ACCOUNTS).expect("open");
            assert_eq!(recovered.debited, vec![0; ACCOUNTS as usize]);
            assert!(recovered.origin_state_id.abs_diff(unix_seconds()) <= 2);
            let commit = journal.append(3, 100);
            assert!(commit.is_durable());
            commit.durable().await.expect("durable at once");
            assert_eq!(journal.stats(), JournalStats::default());
            journal.close().expect("close");
        }
        assert!(!data.exists(), "nothing written");
        assert_eq!(fs::read_dir(dir.path()).expect("dir").count(), 0);
    }

    #[test]
    fn group_without_a_directory_is_an_error() {
        let config = JournalConfig {
            durability: Durability::Group,
            ..JournalConfig::default()
        };
        let error = Journal::open(&config, ACCOUNTS).expect_err("refused");
        assert!(error.to_string().contains("data directory"), "{error}");
    }

    #[tokio::test]
    async fn unknown_account_and_closed_journal_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (journal, _) = Journal::open(&group(dir.path(), 0), ACCOUNTS).expect("open");
        let other = journal.clone();
        assert!(matches!(
            journal.append(ACCOUNTS, 1).durable().await,
            Err(JournalError::UnknownAccount {
                account: ACCOUNTS,
                accounts: ACCOUNTS
            })
        ));
        journal.close().expect("close");
        let late = other.append(1, 1);
        assert!(!late.is_durable());
        assert!(matches!(late.durable().await, Err(JournalError::Closed)));
    }

    #[test]
    fn a_second_open_of_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (journal, _) = Journal::open(&group(dir.path(), 0), ACCOUNTS).expect("open");
        let error = Journal::open(&group(dir.path(), 0), ACCOUNTS).expect_err("refused");
        assert!(error.to_string().contains("in use"), "{error}");
        journal.close().expect("close");
        Journal::open(&group(dir.path(), 0), ACCOUNTS)
            .expect("free again")
            .0
            .close()
            .expect("close");
    }

    #[tokio::test]
    async fn mismatched_files_are_errors_naming_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (journal, _) = Journal::open(&group(dir.path(), 0), ACCOUNTS).expect("open");
        append_awaited(&journal, 1, 50).await;
        journal.close().expect("close");

        // The log names accounts up to 9: too many for 5 accounts.
        let error = Journal::open(&group(dir.path(), 0), 5).expect_err("refused");
        let message = format!("{error:#}");
        assert!(
            message.contains(LOG_FILE) && message.contains("offset"),
            "{message}"
        );

        // A snapshot for 10 accounts opened for 12.
        write_snapshot(dir.path(), 50, &expected(50)).expect("snapshot");
        let error = Journal::open(&group(dir.path(), 0), 12).expect_err("refused");
        let message = format!("{error:#}");
        assert!(
            message.contains(SNAPSHOT_FILE) && message.contains("10 accounts"),
            "{message}"
        );

        // A damaged snapshot.
        let path = dir.path().join(SNAPSHOT_FILE);
        let mut bytes = fs::read(&path).expect("snapshot");
        bytes[SNAPSHOT_HEADER_BYTES + 3] ^= 0x10;
        fs::write(&path, &bytes).expect("write");
        let error = Journal::open(&group(dir.path(), 0), ACCOUNTS).expect_err("refused");
        let message = format!("{error:#}");
        assert!(
            message.contains(SNAPSHOT_FILE) && message.contains("checksum"),
            "{message}"
        );

        // A gap in the sequence: no snapshot covers records 1..=4, yet the log starts at 5.
        write_snapshot(dir.path(), 0, &vec![0; ACCOUNTS as usize]).expect("snapshot");
        let mut bytes = Vec::new();
        Record {
            seq: 5,
            account: 1,
            amount: 1,
        }
        .encode(&mut bytes);
        fs::write(dir.path().join(LOG_FILE), &bytes).expect("write");
        let error = Journal::open(&group(dir.path(), 0), ACCOUNTS).expect_err("refused");
        let message = format!("{error:#}");
        assert!(
            message.contains("missing") && message.contains("offset 0"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_failed_write_fails_every_pending_and_later_commit() {
        // /dev/full accepts the open and fails every write with ENOSPC.
        if !Path::new("/dev/full").exists() {
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink("/dev/full", dir.path().join(LOG_FILE)).expect("symlink");
        let (journal, recovered) = Journal::open(&group(dir.path(), 0), ACCOUNTS).expect("open");
        assert_eq!(recovered.records, 0);
        let first = journal.append(1, 5);
        let second = journal.append(2, 5);
        assert!(matches!(first.durable().await, Err(JournalError::Io(_))));
        assert!(matches!(second.durable().await, Err(JournalError::Io(_))));
        let later = journal.append(3, 5);
        assert!(!later.is_durable());
        assert!(matches!(later.durable().await, Err(JournalError::Io(_))));
        assert!(journal.stats().failed);
        assert_eq!(journal.stats().records, 0);
        let error = journal.close().expect_err("close reports the failure");
        assert!(
            error.to_string().contains("journal write failed"),
            "{error}"
        );
    }

    /// `in_flight` tasks each appending and awaiting one record at a time, for `seconds`.
    async fn measure(in_flight: usize, delay: Duration, seconds: f64) -> (f64, JournalStats) {
        let dir = tempfile::tempdir_in(
            std::env::var_os("PDF_JOURNAL_BENCH_DIR")
                .map_or_else(std::env::temp_dir, PathBuf::from),
        )
        .expect("tempdir");
        let config = JournalConfig {
            max_batch_delay: delay,
            ..group(dir.path(), 1_000_000)
        };
        let (journal, _) = Journal::open(&config, 1_000).expect("open");
        let journal = Arc::new(journal);
        let started = Instant::now();
        let deadline = started + Duration::from_secs_f64(seconds);
        let tasks: Vec<_> = (0..in_flight)
            .map(|task| {
                let journal = journal.clone();
                tokio::spawn(async move {
                    let mut done = 0u64;
                    while Instant::now() < deadline {
                        journal
                            .append((task % 1_000) as u32, 1)
                            .durable()
                            .await
                            .expect("durable");
                        done += 1;
                    }
                    done
                })
            })
            .collect();
        let mut done = 0;
        for task in tasks {
            done += task.await.expect("task");
        }
        let rate = done as f64 / started.elapsed().as_secs_f64();
        let stats = journal.stats();
        Arc::try_unwrap(journal)
            .expect("last handle")
            .close()
            .expect("close");
        (rate, stats)
    }

    /// `cargo test --release -p pdf --lib journal::tests::bench_group_commit -- --ignored --nocapture`
    #[tokio::test(flavor = "multi_thread")]
    #[ignore = "a benchmark: prints append+durable rates"]
    async fn bench_group_commit() {
        for delay in [Duration::ZERO, Duration::from_micros(500)] {
            for in_flight in [1, 16, 128, 1024] {
                let (rate, stats) = measure(in_flight, delay, 2.0).await;
                println!(
                    "delay {:>4} us, {in_flight:>4} in flight: {rate:>9.0} durable appends/s, {:>6} fsyncs, {:>6.1} records per fsync",
                    delay.as_micros(),
                    stats.fsyncs,
                    stats.records as f64 / stats.fsyncs.max(1) as f64,
                );
            }
        }
        // What a snapshot of a million accounts costs the writer, and what replaying a
        // million-record log costs a restart.
        let dir = tempfile::tempdir().expect("tempdir");
        let started = Instant::now();
        write_snapshot(dir.path(), 1, &vec![1; 1_000_000]).expect("snapshot");
        println!(
            "snapshot of 1000000 accounts: {:.1} ms",
            started.elapsed().as_secs_f64() * 1e3
        );
        let config = group(dir.path(), 0);
        let (journal, _) = Journal::open(&config, 1_000_000).expect("open");
        let commits: Vec<Commit> = (0..1_000_000u32).map(|i| journal.append(i, 1)).collect();
        for commit in commits {
            commit.durable().await.expect("durable");
        }
        journal.close().expect("close");
        let started = Instant::now();
        let (journal, recovered) = Journal::open(&config, 1_000_000).expect("reopen");
        println!(
            "open replaying {} log records over a snapshot of 1000000 accounts: {:.1} ms",
            recovered.records - recovered.snapshot_records,
            started.elapsed().as_secs_f64() * 1e3
        );
        journal.close().expect("close");
    }
}
