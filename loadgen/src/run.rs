//! Running a scenario: start the processes, drive the sessions, measure, check the books.
//!
//! Every message has an intended send time from the plan; latency is recorded from it
//! (scheduled) and from the actual send (service), so that a loadgen falling behind shows up
//! instead of hiding (coordinated omission). Every usage report that the gateway answered
//! 2001 or 4012 was charged by the PDF, so the loadgen knows each account's expected debit
//! and checks it against the PDF's books at the end, exactly.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;
use pdf::population::{BalanceDistribution, PopulationSpec};
use pdf::tariff::Tariff;
use protocol::dictionary::{AccountingRecordType, SubscriptionIdType, TerminationCause};
use protocol::grammar::{Command, Envelope};
use protocol::header::{ApplicationId, CommandCode, HopByHopId};
use protocol::messages::{Aca, Acr, Asa, Asr, ErrorAnswer, ServiceUnit, SubscriptionId};
use protocol::peer::{EndToEndIds, Node, PeerConfig};
use protocol::result_code::ResultCode;
use protocol::transport::{Answered, Client, ClientOptions, Connection, Handler, Incoming};
use smallvec::smallvec;

use crate::progress::Progress;
use crate::report::{Outcomes, Report, StepReport};
use crate::scenario::{Kind, Scenario};
use crate::shard::Shard;

/// The steps measured separately.
pub const STEPS: [&str; 4] = ["START", "INTERIM", "STOP", "EVENT"];

/// Per-step counters (atomics: read each second without the recorder's lock).
#[derive(Default)]
pub struct Step {
    sent: AtomicU64,
    answered: AtomicU64,
    timeouts: AtomicU64,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static bounds are valid")
}

/// One step's figures of the current second, as the answers record them.
struct StepRecord {
    results: BTreeMap<u32, u64>,
    /// Latency from the intended send time, microseconds.
    scheduled: Histogram<u64>,
    /// Latency from the actual send.
    service: Histogram<u64>,
}

/// What every answer records, behind one lock (one lock per answer, not one per figure).
/// Once a second its histograms are swapped for empty ones and closed outside this lock.
struct Recorder {
    steps: [StepRecord; 4],
    /// How far behind its schedule the loadgen sent, microseconds (the whole run).
    behind: Histogram<u64>,
}

/// One step's closed seconds.
struct StepSeconds {
    /// The closed seconds (encoded for the interval log), and the part-second not closed.
    per_second: crate::hlog::PerSecond,
    /// The whole run's histograms, summed from the closed seconds: every answer is
    /// recorded once, in its second.
    scheduled: Histogram<u64>,
    service: Histogram<u64>,
}

/// What closing a second works on (its own lock: the answers do not wait for it).
struct Seconds {
    steps: [StepSeconds; 4],
    /// Empty histograms to swap into the recorder.
    spare: Vec<Histogram<u64>>,
    /// Scratch: the closing second's answers of every step, for its timeline row.
    interval: Histogram<u64>,
}

fn record_and_seconds() -> (Recorder, Seconds) {
    let step = || StepRecord {
        results: BTreeMap::new(),
        scheduled: histogram(),
        service: histogram(),
    };
    let seconds = || StepSeconds {
        per_second: crate::hlog::PerSecond::default(),
        scheduled: histogram(),
        service: histogram(),
    };
    (
        Recorder {
            steps: [step(), step(), step(), step()],
            behind: histogram(),
        },
        Seconds {
            steps: [seconds(), seconds(), seconds(), seconds()],
            spare: (0..8).map(|_| histogram()).collect(),
            interval: histogram(),
        },
    )
}

/// A hasher for small integer keys (account numbers): SipHash per usage report shows up
/// in the loadgen's profile; these keys are not chosen by an adversary.
#[derive(Default)]
struct IntHasher(u64);

impl std::hash::Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u32(&mut self, value: u32) {
        self.0 = (self.0 ^ u64::from(value)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type IntBuild = std::hash::BuildHasherDefault<IntHasher>;

/// Everything the sessions record.
pub struct Stats {
    steps: [Step; 4],
    recorder: Mutex<Recorder>,
    seconds: Mutex<Seconds>,
    outcomes: Mutex<Outcomes>,
    expected: Mutex<HashMap<u32, i64, IntBuild>>,
    uncertain: Mutex<HashSet<u32, IntBuild>>,
    live: AtomicU64,
    failed: AtomicU64,
    timeline: Mutex<Vec<Second>>,
    /// When answers arrived, and latency around upgrades.
    pub watch: Arc<crate::upgrade::Watch>,
}

/// The access connections' handler: answers ASR and remembers its cause per session.
#[derive(Default)]
struct AsrInbox {
    causes: Mutex<HashMap<String, Option<TerminationCause>>>,
    /// How many causes wait in `causes` (changed under its lock): the sessions look there
    /// before every record only when some do.
    waiting: AtomicU64,
}

impl AsrInbox {
    /// The ASR's cause for `session_id`, if one came (and is taken now).
    fn take(&self, session_id: &str) -> Option<Option<TerminationCause>> {
        if self.waiting.load(Ordering::Acquire) == 0 {
            return None;
        }
        let mut causes = self.causes.lock().unwrap_or_else(|p| p.into_inner());
        let cause = causes.remove(session_id);
        if cause.is_some() {
            self.waiting.fetch_sub(1, Ordering::Release);
        }
        cause
    }
}

impl Handler for AsrInbox {
    fn on_request(&self, _: &Connection, incoming: Incoming) {
        if incoming.message.header().command != CommandCode::ABORT_SESSION {
            return incoming
                .responder
                .reject(protocol::error::DecodeError::CommandUnsupported {
                    command: incoming.message.header().command,
                });
        }
        let message = incoming.message;
        let (session_id, cause) = match Asr::decode(&message.view()) {
            Ok(asr) => (asr.session_id.to_owned(), asr.termination_cause),
            Err(error) => return incoming.responder.reject(error),
        };
        {
            let mut causes = self.causes.lock().unwrap_or_else(|p| p.into_inner());
            if causes.insert(session_id.clone(), cause).is_none() {
                self.waiting.fetch_add(1, Ordering::Release);
            }
        }
        let asa = Asa {
            session_id: &session_id,
            result_code: ResultCode::SUCCESS,
            origin_host: "loadgen",
            origin_realm: "example.net",
            ..Default::default()
        };
        incoming.responder.answer_with(|envelope, buf| {
            asa.encode(envelope, buf);
        });
    }
}

/// A started server process, stopped with SIGTERM when dropped.
struct Spawned {
    child: std::process::Child,
    name: &'static str,
    /// Its exit status once it was reaped (nothing is signalled after that: the pid may be
    /// another process's by then).
    exited: Option<std::process::ExitStatus>,
}

impl Spawned {
    /// SIGTERM, then waits up to 10 s for the exit (SIGKILL after that); the exit status.
    fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        if self.exited.is_some() {
            return self.exited;
        }
        if let Ok(Some(status)) = self.child.try_wait() {
            self.exited = Some(status);
            return self.exited;
        }
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exited = Some(status);
                return self.exited;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        tracing::warn!(
            process = self.name,
            "did not stop within 10 s of SIGTERM; killing it"
        );
        let _ = self.child.kill();
        self.exited = self.child.wait().ok();
        self.exited
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// A pdf the loadgen started: restartable by an `upgrade` event with `strategy =
/// "restart"`, stopped by a drain, and after a hot upgrade the process that took over
/// (not the loadgen's child: stopped by its pid).
pub struct PdfProcess {
    slot: Mutex<Option<Spawned>>,
    /// The binary, the loadgen's arguments, and the scenario's extra ones.
    command: Mutex<(PathBuf, Vec<String>, Vec<String>)>,
    log: PathBuf,
    /// The pid of a process that took over by a hot upgrade.
    adopted: Mutex<Option<u32>>,
}

impl std::fmt::Debug for PdfProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let command = self.command.lock().unwrap_or_else(|p| p.into_inner());
        write!(f, "PdfProcess({})", command.0.display())
    }
}

impl PdfProcess {
    /// Starts `binary` with `args` (its stderr into `log`); returns it with its Diameter and
    /// admin addresses.
    pub fn start(
        binary: &Path,
        args: Vec<String>,
        log: PathBuf,
    ) -> anyhow::Result<(Arc<Self>, SocketAddr, SocketAddr)> {
        let (spawned, diameter, admin) = spawn("pdf", binary, &args, &log)?;
        let process = Arc::new(Self {
            slot: Mutex::new(Some(spawned)),
            command: Mutex::new((binary.to_path_buf(), args, Vec::new())),
            log,
            adopted: Mutex::new(None),
        });
        Ok((process, diameter, admin))
    }

    /// Replaces the loadgen's arguments (a restart comes back with them: the addresses the
    /// first start was given).
    pub fn set_args(&self, args: Vec<String>) {
        self.command.lock().unwrap_or_else(|p| p.into_inner()).1 = args;
    }

    /// The binary and every argument the pdf runs with.
    pub fn command_line(&self) -> (PathBuf, Vec<String>) {
        let command = self.command.lock().unwrap_or_else(|p| p.into_inner());
        let mut args = command.1.clone();
        args.extend(command.2.iter().cloned());
        (command.0.clone(), args)
    }

    /// The running process's pid.
    pub fn pid(&self) -> Option<u32> {
        if let Some(pid) = *self.adopted.lock().unwrap_or_else(|p| p.into_inner()) {
            return Some(pid);
        }
        self.slot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .filter(|s| s.exited.is_none())
            .map(|s| s.child.id())
    }

    /// Stops the pdf with SIGTERM (it sends DPR REBOOTING to the gateway and closes its
    /// journal) and starts it again on the same addresses and data directory: with `binary`
    /// and the scenario's `extra` arguments if given (the new version). Blocking; returns
    /// what happened, for the event's record.
    pub fn restart(
        &self,
        binary: Option<&Path>,
        extra: Option<&[String]>,
    ) -> anyhow::Result<String> {
        let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        let stopping = Instant::now();
        let mut old = slot.take().context("the pdf is not running")?;
        let old_pid = old.child.id();
        let status = old.terminate(); // SIGTERM, then waits for the exit (killed after 10 s)
        let stopped = stopping.elapsed();
        let log = self.log.with_extension("restarted.log");
        let (binary, args) = {
            let mut command = self.command.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(binary) = binary {
                command.0 = binary.to_path_buf();
            }
            if let Some(extra) = extra {
                command.2 = extra.to_vec();
            }
            let mut args = command.1.clone();
            args.extend(command.2.iter().cloned());
            (command.0.clone(), args)
        };
        let (new, address, _) = spawn("pdf", &binary, &args, &log)?;
        let detail = format!(
            "pdf {old_pid} stopped in {} ms ({}); pdf {} listening on {address} {} ms later",
            stopped.as_millis(),
            status.map_or("exit status unknown".to_owned(), |s| s.to_string()),
            new.child.id(),
            (stopping.elapsed() - stopped).as_millis()
        );
        *slot = Some(new);
        Ok(detail)
    }

    /// Stops the pdf with SIGTERM and waits for it (SIGKILL after 10 s); its exit status
    /// (None if it was not running or is not the loadgen's child). Blocking.
    pub fn stop(&self) -> Option<std::process::ExitStatus> {
        if let Some(pid) = self
            .adopted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            stop_pid(pid);
        }
        let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        slot.as_mut().and_then(Spawned::terminate)
    }

    /// Waits up to `wait` for the process to exit by itself (a `migrate`d pdf stops once it
    /// owns nothing); its exit status, None if still running.
    pub fn wait_exit(&self, wait: Duration) -> Option<std::process::ExitStatus> {
        let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        let process = slot.as_mut()?;
        let deadline = Instant::now() + wait;
        loop {
            if let Ok(Some(status)) = process.child.try_wait() {
                process.exited = Some(status);
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// After a hot upgrade: the process `pid` serves now; the loadgen's child (the old
    /// process) should exit by itself. Waits up to `wait` for it; its exit status.
    pub fn adopt(&self, pid: u32, wait: Duration) -> Option<std::process::ExitStatus> {
        *self.adopted.lock().unwrap_or_else(|p| p.into_inner()) = Some(pid);
        let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        let old = slot.as_mut()?;
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = old.child.try_wait() {
                old.exited = Some(status);
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

/// SIGTERM to a process that is not the loadgen's child, then waits up to 10 s for it to
/// go (SIGKILL after that).
fn stop_pid(pid: u32) {
    let alive = || {
        std::process::Command::new("kill")
            .args(["-0", &pid.to_string()])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if !alive() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status();
}

/// Starts `binary` with `args`, its stderr into `log`; returns it and its addresses.
fn spawn(
    name: &'static str,
    binary: &Path,
    args: &[String],
    log: &Path,
) -> anyhow::Result<(Spawned, SocketAddr, SocketAddr)> {
    use std::io::BufRead;
    if !binary.exists() {
        bail!(
            "{} not found: build the workspace first (cargo build --release)",
            binary.display()
        );
    }
    let stderr =
        std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut child = std::process::Command::new(binary)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let process = Spawned {
        child,
        name,
        exited: None,
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = std::io::BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        for _ in lines {}
    });
    let line = rx.recv_timeout(Duration::from_secs(30)).map_err(|_| {
        anyhow::anyhow!(
            "{name} printed no `listening` line within 30 s; see {}",
            log.display()
        )
    })?;
    let field = |key: &str| -> anyhow::Result<SocketAddr> {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(key))
            .context(format!("{name}: no {key} in {line:?}"))?
            .parse()
            .context(format!("{name}: bad address in {line:?}"))
    };
    let (diameter, admin) = (field("diameter=")?, field("admin=")?);
    Ok((process, diameter, admin))
}

fn population_toml(spec: &PopulationSpec) -> String {
    let balance = match spec.balance {
        BalanceDistribution::Constant { value } => {
            format!("{{ dist = \"constant\", value = {value} }}")
        }
        BalanceDistribution::Uniform { min, max } => {
            format!("{{ dist = \"uniform\", min = {min}, max = {max} }}")
        }
    };
    format!(
        "[population]\nseed = {}\nsubscribers = {}\nfirst_msisdn = {}\nbalance = {balance}\nshared_share = {}\nfamily_size = {}\n",
        spec.seed, spec.subscribers, spec.first_msisdn, spec.shared_share, spec.family_size
    )
}

/// A minimal HTTP/1.1 request to an admin port (`Connection: close`, a JSON body if any);
/// returns the status code and the body.
pub(crate) fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("{method} http://{addr}{path}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(body) = body {
        request += &format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
    } else {
        request += "\r\n";
    }
    stream.write_all(request.as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").context("no HTTP body")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("{method} {path}: not an HTTP answer: {head:?}"))?;
    Ok((status, body.to_owned()))
}

/// A GET that must answer 200; returns the body.
pub(crate) fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let (status, body) = http(addr, "GET", path, None)?;
    if status != 200 {
        bail!("GET {path}: HTTP {status}");
    }
    Ok(body)
}

/// Runs the scenario; returns the report.
pub async fn run(scenario: Scenario, out: &Path) -> anyhow::Result<Report> {
    run_shard(scenario, Shard::WHOLE, out).await
}

/// Runs one shard of the scenario (see [`crate::shard`]); returns its report.
pub async fn run_shard(scenario: Scenario, shard: Shard, out: &Path) -> anyhow::Result<Report> {
    let load = shard.load(&scenario.load);
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut processes = Vec::new();
    let mut fleet: Option<Arc<crate::upgrade::Fleet>> = None;
    let mut targets = crate::events::Targets {
        dir: scenario.base.clone(),
        out: out.to_path_buf(),
        ..Default::default()
    };
    let (gateway_addr, pdf_admin) = if scenario.topology.spawn {
        let dir = std::env::current_exe()?
            .parent()
            .context("no directory for the loadgen")?
            .to_path_buf();
        let pdf_config = out.join("pdf.toml");
        std::fs::write(&pdf_config, population_toml(&scenario.population))?;
        // With an upgrade, every pdf keeps a journal in its own fresh data directory
        // (balances survive a restart; every strategy runs with the same durability).
        let upgrades = scenario.events.iter().any(|e| e.upgrade().is_some());
        let pdfs = Arc::new(
            crate::upgrade::Fleet::new(
                dir.join("pdf"),
                pdf_config,
                out.to_path_buf(),
                scenario.base.clone(),
                upgrades,
            )
            .with_workers(scenario.topology.pdf_workers),
        );
        let first = pdfs.start_next(None, &[])?;
        let (pdf_addr, pdf_admin) = (first.diameter, first.admin);
        targets.pdf_pid = first.process.pid();
        pdfs.push(first);
        fleet = Some(pdfs);
        let mut gateway_args: Vec<String> = vec![
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--admin".into(),
            "127.0.0.1:0".into(),
            "--pdf".into(),
            pdf_addr.to_string(),
            "--pool-size".into(),
            scenario.topology.pdf_connections.to_string(),
            "--policy".into(),
            scenario.topology.policy.clone(),
        ];
        if let Some(workers) = scenario.topology.gateway_workers {
            gateway_args.extend(["--workers".into(), workers.to_string()]);
        }
        let (gateway, gateway_addr, gateway_admin) = spawn(
            "gateway",
            &dir.join("gateway"),
            &gateway_args,
            &out.join("gateway.log"),
        )?;
        processes.push(gateway);
        targets.gateway_admin = Some(gateway_admin);
        (gateway_addr, pdf_admin)
    } else {
        targets.gateway_admin = scenario.topology.gateway_admin;
        (
            scenario.topology.gateway.context("topology.gateway")?,
            scenario.topology.pdf_admin.context("topology.pdf_admin")?,
        )
    };
    targets.gateway = Some(gateway_addr);
    targets.pdf_admin = Some(pdf_admin);

    let inbox = Arc::new(AsrInbox::default());
    let mut connections = Vec::new();
    let mut clients = Vec::new();
    for i in 0..scenario.topology.access_connections {
        let host = if shard.is_partial() {
            format!("lg{i}.s{}.loadgen.example.net", shard.index)
        } else {
            format!("lg{i}.loadgen.example.net")
        };
        let config = PeerConfig::new(host, "example.net");
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let node = Node::new(config, EndToEndIds::new(unix, fastrand::u32(..)));
        let client = Client::start(
            gateway_addr,
            node.clone(),
            inbox.clone(),
            ClientOptions {
                reconnect: false,
                ..Default::default()
            },
        );
        let connection = client
            .wait_open(Duration::from_secs(15))
            .await
            .context("no access connection to the gateway")?;
        connections.push((connection, node));
        clients.push(client);
    }
    // Let the gateway's PDF pool come up before the first START.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (recorder, seconds) = record_and_seconds();
    let stats = Arc::new(Stats {
        steps: Default::default(),
        recorder: Mutex::new(recorder),
        seconds: Mutex::new(seconds),
        outcomes: Mutex::default(),
        expected: Mutex::default(),
        uncertain: Mutex::default(),
        live: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        timeline: Mutex::default(),
        watch: Arc::default(),
    });
    // PDF connections the gateway closed before traffic (none, normally): the upgrade
    // report counts those closed during the run.
    let closed_before = match targets.gateway_admin {
        Some(admin) if !scenario.events.is_empty() => {
            tokio::task::spawn_blocking(move || crate::upgrade::connections_closed(admin))
                .await
                .ok()
                .flatten()
        }
        _ => None,
    };
    let scenario = Arc::new(scenario);
    let started = Instant::now();
    stats.watch.start(started);
    let deadline = started + scenario.duration.0;
    let counter = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Progress::for_stderr(scenario.duration.0);
    // Live sessions per PDF node and the gateway's own latency, from the gateway's admin
    // port once a second (with a shared gateway, spawn = false, only shard 0 samples it).
    let node_samples = Arc::new(Mutex::new(Vec::new()));
    let gateway_latency = Arc::new(Mutex::new(crate::gateway_latency::GatewayLatency::default()));
    let sampler = targets
        .gateway_admin
        .filter(|_| scenario.topology.spawn || shard.index == 0)
        .map(|admin| {
            tokio::spawn(crate::nodes::sample_every_second(
                admin,
                started,
                node_samples.clone(),
                gateway_latency.clone(),
            ))
        });
    let ticker = tokio::spawn(report_progress(
        stats.clone(),
        started,
        scenario.duration.0,
        progress.clone(),
    ));
    targets.upgrade = fleet.clone().map(|fleet| crate::upgrade::UpgradeTargets {
        fleet,
        gateway_admin: targets.gateway_admin,
        watch: stats.watch.clone(),
        progress: progress.clone(),
        started,
        time_scale: scenario.time_scale,
        accounts: scenario.population.accounts(),
    });
    let gateway_admin = targets.gateway_admin;
    // Events act on shared processes once: with spawn = false only shard 0 fires them.
    let fire_events = scenario.topology.spawn || shard.index == 0;
    let events = tokio::spawn(crate::events::run(
        if fire_events {
            scenario.events.clone()
        } else {
            Vec::new()
        },
        started,
        deadline,
        targets,
        progress.clone(),
    ));

    let mut tasks = Vec::new();
    let ramp = scenario.load.ramp.map_or(Duration::ZERO, |r| r.0);
    // What every session shares; the pdf the loadgen spawns runs the default tariff.
    let shared = Ctx {
        scenario: scenario.clone(),
        stats: stats.clone(),
        inbox: inbox.clone(),
        connections: connections.clone(),
        deadline,
        counter: counter.clone(),
        shard,
        tariff: Arc::new(Tariff::default()),
        pacer: Arc::new(crate::pacer::Pacer::start().context("creating the pacer's timer")?),
    };
    match (load.concurrent_sessions, load.arrival_rate) {
        (Some(n), _) => {
            for slot in 0..n {
                let ctx = shared.clone();
                let begin = started + ramp.mul_f64(f64::from(slot) / f64::from(n));
                tasks.push(tokio::spawn(async move {
                    tokio::time::sleep_until(begin.into()).await;
                    while Instant::now() < ctx.deadline {
                        ctx.session(None).await;
                    }
                }));
            }
        }
        (_, Some(rate)) => {
            let ctx = shared.clone();
            let cap = u64::from(load.max_sessions.unwrap_or(u32::MAX));
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                let mut rng = fastrand::Rng::with_seed(
                    ctx.scenario.seed
                        ^ 0x5eed
                        ^ u64::from(shard.index).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                );
                let mut next = Instant::now();
                let mut children = Vec::new();
                while next < ctx.deadline && !stop.load(Ordering::Relaxed) {
                    ctx.pacer.until(next).await;
                    if ctx.stats.live.load(Ordering::Relaxed) < cap {
                        let child = ctx.clone();
                        let arrival = next;
                        children.push(tokio::spawn(
                            async move { child.session(Some(arrival)).await },
                        ));
                    }
                    let ramped = if ramp.is_zero() {
                        1.0
                    } else {
                        (next.duration_since(started).as_secs_f64() / ramp.as_secs_f64())
                            .clamp(0.05, 1.0)
                    };
                    next += Duration::from_secs_f64(-(1.0 - rng.f64()).ln() / (rate * ramped));
                }
                for child in children {
                    let _ = child.await;
                }
            }));
        }
        _ => unreachable!("validated: one load model"),
    }
    for task in tasks {
        task.await.context("a session task panicked")?;
    }
    stop.store(true, Ordering::Relaxed);
    ticker.abort();
    if let Some(sampler) = sampler {
        sampler.abort();
    }
    let elapsed = started.elapsed();
    progress.finish();
    // The interval log: every second's histograms, and the part-second since the last one.
    stats.close_second(elapsed.as_secs_f64());
    let hlog = out.join("latency.hlog");
    if let Err(error) = crate::hlog::write(
        &hlog,
        std::time::SystemTime::now() - elapsed,
        &scenario.name,
        &stats.interval_log(),
    ) {
        tracing::warn!("cannot write {}: {error:#}", hlog.display());
    }
    let events = events.await.context("the events task panicked")?;

    let closed = match (closed_before, gateway_admin) {
        (Some(before), Some(admin)) => {
            tokio::task::spawn_blocking(move || crate::upgrade::connections_closed(admin))
                .await
                .ok()
                .flatten()
                .map(|after| after.saturating_sub(before))
        }
        _ => None,
    };
    // The books of every pdf the run charged on: the ones still running, and those a drain
    // stopped (read just before they stopped).
    let sources: Vec<(String, BookSource)> = match &fleet {
        Some(fleet) => fleet
            .nodes()
            .into_iter()
            .map(|node| {
                let source = match node.retired {
                    Some((books, _)) => BookSource::Read(books),
                    None => BookSource::Live(node.admin),
                };
                (node.name, source)
            })
            .collect(),
        None => vec![("pdf".to_owned(), BookSource::Live(pdf_admin))],
    };
    let books = check_books(sources, &stats, &scenario.population, shard).await;
    for client in clients {
        client
            .close(protocol::dictionary::DisconnectCause::DO_NOT_WANT_TO_TALK_TO_YOU)
            .await;
    }
    drop(processes);
    // Every pdf the loadgen started stops here (SIGTERM; SIGKILL after 10 s).
    if let Some(fleet) = fleet {
        let _ = tokio::task::spawn_blocking(move || fleet.stop_all()).await;
    }
    let mut report = crate::report::build(&scenario, &stats, elapsed, books);
    report.shard = Some(shard);
    report.events = events;
    report.pdf_sessions =
        std::mem::take(&mut *node_samples.lock().unwrap_or_else(|p| p.into_inner()));
    report.gateway_latency = Some(std::mem::take(
        &mut *gateway_latency.lock().unwrap_or_else(|p| p.into_inner()),
    ))
    .filter(|latency| !latency.seconds.is_empty());
    report.upgrade = crate::upgrade::report(
        &report,
        &stats.watch,
        scenario.load.ramp.map_or(Duration::ZERO, |r| r.0),
        closed,
    );
    Ok(report)
}

/// Where the books check reads a pdf's books.
enum BookSource {
    /// From its admin port now.
    Live(SocketAddr),
    /// Read before it stopped (a drained pdf), or why they could not be.
    Read(Result<crate::upgrade::NodeBooks, String>),
}

/// What one session needs.
#[derive(Clone)]
struct Ctx {
    scenario: Arc<Scenario>,
    stats: Arc<Stats>,
    inbox: Arc<AsrInbox>,
    connections: Vec<(Connection, Arc<Node>)>,
    deadline: Instant,
    counter: Arc<AtomicU64>,
    shard: Shard,
    tariff: Arc<Tariff>,
    /// Wakes sessions at their messages' intended send times.
    pacer: Arc<crate::pacer::Pacer>,
}

/// How a session ended.
enum End {
    Completed,
    ChargedOut,
    Refused,
    Lost(&'static str),
}

impl Ctx {
    /// One session from its START to its end. `arrival` is its planned start (the open
    /// model's arrival time; None: now), from which its messages' send times are planned
    /// and its START's latency measured, so a late start counts against the run.
    async fn session(&self, arrival: Option<Instant>) {
        let arrival = arrival.unwrap_or_else(Instant::now);
        let local = self.counter.fetch_add(1, Ordering::Relaxed);
        // Session k of the whole run is session k / N of shard k mod N.
        let index = self.shard.session_index(local);
        self.stats.live.fetch_add(1, Ordering::Relaxed);
        let mut rng = fastrand::Rng::with_seed(
            self.scenario.seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        );
        let mix = &self.scenario.mix[self.scenario.pick(rng.f64())];
        let subscriber = self
            .shard
            .draw_subscriber(&self.scenario.population, &mut rng);
        let account = self.scenario.population.account_of(subscriber);
        let (connection, node) =
            &self.connections[(local % self.connections.len() as u64) as usize];
        let session_id = format!(
            "{};{};{}",
            node.config.origin_host,
            index >> 32,
            index & 0xffff_ffff
        );
        let msisdn = self.scenario.population.msisdn(subscriber).to_string();
        let service = self
            .tariff
            .service_index(mix.rating_group())
            .map(|i| self.tariff.service(i));
        let send = |kind: AccountingRecordType, number: u32, usage: Option<u64>| {
            let acr = Acr {
                session_id: &session_id,
                origin_host: &node.config.origin_host,
                origin_realm: "example.net",
                destination_realm: "example.net",
                accounting_record_type: kind,
                accounting_record_number: number,
                acct_application_id: Some(3),
                subscription_ids: smallvec![SubscriptionId {
                    subscription_id_type: SubscriptionIdType::END_USER_E164,
                    subscription_id_data: &msisdn
                }],
                rating_group: Some(mix.rating_group()),
                used_service_unit: usage.map(|u| match mix.kind {
                    Kind::Voice => ServiceUnit {
                        cc_time: Some(u as u32),
                        ..Default::default()
                    },
                    Kind::Data => ServiceUnit {
                        cc_total_octets: Some(u),
                        ..Default::default()
                    },
                    Kind::Event => ServiceUnit {
                        cc_service_specific_units: Some(u),
                        ..Default::default()
                    },
                }),
                termination_cause: (kind == AccountingRecordType::STOP_RECORD)
                    .then_some(TerminationCause::LOGOUT),
                ..Default::default()
            };
            let mut out = BytesMut::with_capacity(256);
            acr.encode(
                Envelope::request(
                    ApplicationId::BASE_ACCOUNTING,
                    HopByHopId(0),
                    node.end_to_end.next(),
                ),
                &mut out,
            );
            out.freeze()
        };
        let charge = |usage: u64| {
            if let Some(service) = service {
                *self
                    .stats
                    .expected
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(account)
                    .or_default() += service.cost(usage);
            }
        };
        let uncertain = || {
            self.stats
                .uncertain
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(account);
        };
        let scale = self.scenario.time_scale;

        if mix.kind == Kind::Event {
            let result = self
                .exchange(
                    connection,
                    3,
                    arrival,
                    send(AccountingRecordType::EVENT_RECORD, 0, Some(1)),
                )
                .await;
            match result {
                Some(ResultCode::SUCCESS) => charge(1),
                Some(_) => {}
                None => uncertain(),
            }
            return self.finish(match result {
                Some(ResultCode::SUCCESS) => End::Completed,
                Some(ResultCode::CREDIT_LIMIT_REACHED) => End::ChargedOut,
                Some(_) => End::Refused,
                None => End::Lost("timeout"),
            });
        }

        let length = mix
            .duration
            .as_ref()
            .map_or(0.0, |d| d.sample(&mut rng))
            .max(1.0);
        let start = arrival;
        match self
            .exchange(
                connection,
                0,
                start,
                send(AccountingRecordType::START_RECORD, 0, None),
            )
            .await
        {
            Some(ResultCode::SUCCESS) => {}
            Some(ResultCode::CREDIT_LIMIT_REACHED) => return self.finish(End::ChargedOut),
            Some(_) => return self.finish(End::Refused),
            None => {
                uncertain();
                return self.finish(End::Lost("timeout"));
            }
        }
        let mut elapsed = 0.0;
        let mut number = 0;
        let end = loop {
            // A fixed interval draws nothing; a distribution draws each interval afresh.
            let interval = mix.interval.as_ref().map_or(30.0, |i| i.next(&mut rng));
            let next = (elapsed + interval).min(length);
            let intended = start + Duration::from_secs_f64(next / scale);
            // Sessions still going when the run ends stop at their next tick, not all at the
            // deadline: a herd of STOPs would measure the loadgen, not the system.
            let last = next >= length || intended >= self.deadline;
            self.pacer.until(intended).await;
            let aborted = self.inbox.take(&session_id);
            if let Some(cause) = aborted {
                match cause {
                    Some(TerminationCause::ADMINISTRATIVE) => {
                        // A charging decision: the session stops with its usage, charged.
                        number += 1;
                        let used =
                            self.usage(mix.kind, &mut rng, mix.usage.as_ref(), next - elapsed);
                        match self
                            .exchange(
                                connection,
                                2,
                                intended,
                                send(AccountingRecordType::STOP_RECORD, number, Some(used)),
                            )
                            .await
                        {
                            Some(ResultCode::SUCCESS | ResultCode::CREDIT_LIMIT_REACHED) => {
                                charge(used)
                            }
                            // Any other answer (3004 or 5002 around a pdf restart, say): the
                            // pdf may have charged the STOP before the answer was lost.
                            Some(_) | None => uncertain(),
                        }
                        break End::ChargedOut;
                    }
                    Some(TerminationCause::SESSION_TIMEOUT) => break End::Lost("session_timeout"),
                    _ => break End::Lost("link_broken"),
                }
            }
            let actual_next = next;
            let used = self.usage(
                mix.kind,
                &mut rng,
                mix.usage.as_ref(),
                (actual_next - elapsed).max(0.0),
            );
            number += 1;
            let (kind, step) = if last {
                (AccountingRecordType::STOP_RECORD, 2)
            } else {
                (AccountingRecordType::INTERIM_RECORD, 1)
            };
            match self
                .exchange(connection, step, intended, send(kind, number, Some(used)))
                .await
            {
                Some(ResultCode::SUCCESS) => charge(used),
                Some(ResultCode::CREDIT_LIMIT_REACHED) => {
                    charge(used);
                    break End::ChargedOut;
                }
                Some(ResultCode::UNKNOWN_SESSION_ID) => {
                    // The session is gone on the PDF side, but this record's usage may have
                    // been charged before it went (a restarted PDF charged the original, then
                    // forgot the session, and the gateway's re-send got 5002): unknown.
                    uncertain();
                    break End::Lost("unknown_session");
                }
                Some(ResultCode::TOO_BUSY) => {
                    uncertain();
                    break End::Lost("no_pdf");
                }
                Some(_) => {
                    uncertain();
                    break End::Lost("error");
                }
                None => {
                    uncertain();
                    break End::Lost("timeout");
                }
            }
            elapsed = actual_next;
            if last {
                break End::Completed;
            }
        };
        self.finish(end);
    }

    /// Units used over `seconds` of session time.
    fn usage(
        &self,
        kind: Kind,
        rng: &mut fastrand::Rng,
        usage: Option<&crate::scenario::Dist>,
        seconds: f64,
    ) -> u64 {
        match kind {
            Kind::Voice => seconds.round() as u64,
            Kind::Data => usage.map_or(0.0, |d| d.sample(rng)).max(0.0) as u64,
            Kind::Event => 1,
        }
    }

    fn finish(&self, end: End) {
        let mut outcomes = self
            .stats
            .outcomes
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match end {
            End::Completed => outcomes.completed += 1,
            End::ChargedOut => outcomes.charged_out += 1,
            End::Refused => outcomes.refused += 1,
            End::Lost(why) => *outcomes.lost.entry(why.to_owned()).or_default() += 1,
        }
        drop(outcomes);
        self.stats.live.fetch_sub(1, Ordering::Relaxed);
    }

    /// Sends one ACR and records the step; None on timeout or connection loss.
    async fn exchange(
        &self,
        connection: &Connection,
        step: usize,
        intended: Instant,
        request: Bytes,
    ) -> Option<ResultCode> {
        let measure = &self.stats.steps[step];
        measure.sent.fetch_add(1, Ordering::Relaxed);
        let sent = Instant::now();
        let behind_us = sent.saturating_duration_since(intended).as_micros().max(1) as u64;
        // The answer's time is when the connection read it off the socket, not when this
        // task next ran: the delay between the two is the loadgen's own scheduling.
        let Ok(Answered {
            message: answer,
            read_at: done,
        }) = connection
            .request_timed(request, Some(Duration::from_secs(5)))
            .await
        else {
            let _ = self.stats.recorder().behind.record(behind_us);
            measure.timeouts.fetch_add(1, Ordering::Relaxed);
            self.stats.failed.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        let view = answer.view();
        let result = if view.header().flags.is_error() {
            ErrorAnswer::decode(&view).map(|e| e.result_code)
        } else {
            Aca::decode(&view).map(|a| a.result_code)
        }
        .unwrap_or(ResultCode::UNABLE_TO_COMPLY);
        let scheduled_us = done.duration_since(intended.min(sent)).as_micros().max(1) as u64;
        let service_us = done.duration_since(sent).as_micros().max(1) as u64;
        {
            // One lock for every figure of this answer; the whole run's histograms and the
            // timeline's are made from the per-second ones when a second closes.
            let mut recorder = self.stats.recorder();
            let _ = recorder.behind.record(behind_us);
            let record = &mut recorder.steps[step];
            *record.results.entry(result.0).or_default() += 1;
            let _ = record.scheduled.record(scheduled_us);
            let _ = record.service.record(service_us);
            // Counted under the lock: a second's answered count and its histograms agree.
            measure.answered.fetch_add(1, Ordering::Relaxed);
        }
        self.stats.watch.answer(done, scheduled_us);
        if !matches!(
            result,
            ResultCode::SUCCESS | ResultCode::CREDIT_LIMIT_REACHED | ResultCode::USER_UNKNOWN
        ) {
            self.stats.failed.fetch_add(1, Ordering::Relaxed);
        }
        Some(result)
    }
}

/// One row of the per-second timeline.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Second {
    /// Seconds since traffic started.
    pub second: u64,
    /// Answers received in this second.
    pub answered: u64,
    /// Requests failed in this second.
    pub failed: u64,
    /// Live sessions at the end of the second.
    pub live_sessions: u64,
    /// Sessions lost to the infrastructure so far.
    pub lost_sessions: u64,
    /// Latency of this second's answers (from the intended send time), microseconds.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Largest.
    pub max_us: u64,
}

/// Every second: a timeline row, and the progress display.
async fn report_progress(stats: Arc<Stats>, started: Instant, total: Duration, progress: Progress) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let (mut last_answered, mut last_failed) = (0, 0);
    for second in 1u64.. {
        tick.tick().await;
        let answered: u64 = stats
            .steps
            .iter()
            .map(|s| s.answered.load(Ordering::Relaxed))
            .sum();
        let failed = stats.failed.load(Ordering::Relaxed);
        // This second's answers of every step: the interval log's second and the row's
        // percentiles are the same answers.
        // Off the runtime's workers: closing a second encodes (deflates) every step's
        // histograms, about 1 ms at 50,000 answers a second, which delayed the sessions
        // queued on that worker (a latency spike the loadgen itself made, every second).
        let closing = stats.clone();
        let (p50, p99, max) =
            tokio::task::spawn_blocking(move || closing.close_second(second as f64))
                .await
                .unwrap_or_default();
        let row = Second {
            second,
            answered: answered - last_answered,
            failed: failed - last_failed,
            live_sessions: stats.live.load(Ordering::Relaxed),
            lost_sessions: stats
                .outcomes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .dropped(),
            p50_us: p50,
            p99_us: p99,
            max_us: max,
        };
        progress.second(&row, started.elapsed(), total, failed);
        stats
            .timeline
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(row);
        (last_answered, last_failed) = (answered, failed);
    }
}

/// The books check's result.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Books {
    /// Whether the check could run.
    pub checked: bool,
    /// Accounts compared exactly.
    pub accounts_compared: u64,
    /// Accounts left out because some request's outcome is unknown (a timeout).
    pub accounts_uncertain: u64,
    /// Accounts whose debit differs from usage x tariff.
    pub mismatches: u64,
    /// The first few mismatches.
    pub examples: Vec<String>,
    /// The pdf's own books check (every pdf's, after a drain).
    pub pdf_books_ok: bool,
    /// Why the check could not run.
    pub error: Option<String>,
    /// Of the mismatches: accounts debited more than usage x tariff (charged twice).
    #[serde(default)]
    pub overcharged: u64,
    /// The money debited beyond usage x tariff.
    #[serde(default)]
    pub overcharged_money: i64,
    /// Of the mismatches: accounts debited less than usage x tariff (money lost).
    #[serde(default)]
    pub undercharged: u64,
    /// The money not debited.
    #[serde(default)]
    pub undercharged_money: i64,
    /// The pdfs whose books were added up (`pdf0`, and `pdf1` after a drain).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
    /// With several pdfs: accounts charged on more than one and overdrawn across them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_brain: Option<crate::upgrade::SplitBrain>,
}

async fn check_books(
    sources: Vec<(String, BookSource)>,
    stats: &Stats,
    spec: &PopulationSpec,
    shard: Shard,
) -> Books {
    let expected = stats
        .expected
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let uncertain = stats
        .uncertain
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let accounts = spec.accounts();
    let result = tokio::task::spawn_blocking(move || -> anyhow::Result<Books> {
        let mut books = Books {
            checked: true,
            ..Default::default()
        };
        let mut read = Vec::new();
        for (name, source) in sources {
            let node = match source {
                BookSource::Live(admin) => crate::upgrade::read_books(admin, accounts)
                    .with_context(|| format!("{name}'s books"))?,
                BookSource::Read(result) => result
                    .map_err(|e| anyhow::anyhow!("{name}'s books (read before it stopped): {e}"))?,
            };
            books.nodes.push(name.clone());
            read.push((name, node));
        }
        // With several pdfs (a drain), an account's debits on each add up.
        let combined = crate::upgrade::combine(&read);
        books.pdf_books_ok = combined.ok;
        books.split_brain = combined.split_brain;
        let mut ids: Vec<u32> = combined.accounts.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let debited = combined.accounts[&id].0;
            if !shard.owns_account(id) {
                // Another shard's account: that shard checks it.
                continue;
            }
            if uncertain.contains(&id) {
                books.accounts_uncertain += 1;
                continue;
            }
            books.accounts_compared += 1;
            let want = expected.get(&id).copied().unwrap_or(0);
            if debited != want {
                books.mismatches += 1;
                if debited > want {
                    books.overcharged += 1;
                    books.overcharged_money += debited - want;
                } else {
                    books.undercharged += 1;
                    books.undercharged_money += want - debited;
                }
                if books.examples.len() < 10 {
                    books.examples.push(format!(
                        "account {id}: debited {debited}, usage x tariff {want}"
                    ));
                }
            }
        }
        Ok(books)
    })
    .await;
    match result {
        Ok(Ok(books)) => books,
        Ok(Err(error)) => Books {
            error: Some(format!("{error:#}")),
            ..Default::default()
        },
        Err(error) => Books {
            error: Some(error.to_string()),
            ..Default::default()
        },
    }
}

impl Stats {
    /// The step measurements, for the report.
    pub fn step_reports(&self) -> Vec<StepReport> {
        STEPS
            .iter()
            .zip(&self.steps)
            .filter(|(_, s)| s.sent.load(Ordering::Relaxed) > 0)
            .enumerate()
            .map(|(i, (name, s))| {
                // The closed seconds, the part-second not closed, and what the answers
                // recorded since the last close.
                let seconds = self.seconds.lock().unwrap_or_else(|p| p.into_inner());
                let closed = &seconds.steps[i];
                let (mut scheduled, mut service) =
                    (closed.scheduled.clone(), closed.service.clone());
                let (open_scheduled, open_service) = closed.per_second.current();
                let _ = scheduled.add(open_scheduled);
                let _ = service.add(open_service);
                drop(seconds);
                let recorder = self.recorder();
                let record = &recorder.steps[i];
                let _ = scheduled.add(&record.scheduled);
                let _ = service.add(&record.service);
                let results = record.results.clone();
                drop(recorder);
                StepReport::new(
                    name,
                    s.sent.load(Ordering::Relaxed),
                    s.answered.load(Ordering::Relaxed),
                    s.timeouts.load(Ordering::Relaxed),
                    results,
                    &scheduled,
                    &service,
                )
            })
            .collect()
    }

    /// Session outcomes.
    pub fn outcomes(&self) -> Outcomes {
        self.outcomes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The histogram of how far behind its schedule the loadgen sent, microseconds.
    pub fn behind_histogram(&self) -> Histogram<u64> {
        self.recorder().behind.clone()
    }

    /// How far behind its schedule the loadgen sent (p99, max) in microseconds.
    pub fn behind(&self) -> (u64, u64) {
        let behind = &self.recorder().behind;
        (behind.value_at_quantile(0.99), behind.max())
    }

    /// The per-second timeline.
    pub fn timeline(&self) -> Vec<Second> {
        self.timeline
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Requests failed.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
}

impl Stats {
    fn recorder(&self) -> std::sync::MutexGuard<'_, Recorder> {
        self.recorder.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Closes every step's current interval of the interval log at `end_s` seconds after
    /// traffic started, adding it to the step's whole-run histograms; the p50, p99 and max
    /// latency (scheduled, microseconds) of the interval's answers of every step.
    fn close_second(&self, end_s: f64) -> (u64, u64, u64) {
        let mut seconds = self.seconds.lock().unwrap_or_else(|p| p.into_inner());
        let Seconds {
            steps,
            spare,
            interval,
        } = &mut *seconds;
        // The answers wait only for the swap; merging and encoding (milliseconds: the
        // interval log deflates every histogram) happen outside their lock.
        let mut taken: Vec<(Histogram<u64>, Histogram<u64>)> = Vec::with_capacity(4);
        {
            let mut recorder = self.recorder();
            for record in &mut recorder.steps {
                let scheduled = spare.pop().unwrap_or_else(histogram);
                let service = spare.pop().unwrap_or_else(histogram);
                taken.push((
                    std::mem::replace(&mut record.scheduled, scheduled),
                    std::mem::replace(&mut record.service, service),
                ));
            }
        }
        interval.reset();
        for (step, (mut second_scheduled, mut second_service)) in steps.iter_mut().zip(taken) {
            let StepSeconds {
                per_second,
                scheduled,
                service,
            } = step;
            // Into the interval (a part-second not closed yet keeps them for the next).
            per_second.add(&second_scheduled, &second_service);
            per_second.close_with(end_s, |closed_scheduled, closed_service| {
                let _ = scheduled.add(closed_scheduled);
                let _ = service.add(closed_service);
                let _ = interval.add(closed_scheduled);
            });
            second_scheduled.reset();
            second_service.reset();
            spare.push(second_scheduled);
            spare.push(second_service);
        }
        (
            interval.value_at_quantile(0.5),
            interval.value_at_quantile(0.99),
            interval.max(),
        )
    }

    /// Every step's closed intervals, for [`crate::hlog::write`].
    pub fn interval_log(&self) -> Vec<(&'static str, Vec<crate::hlog::Closed>)> {
        STEPS
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let closed = self.seconds.lock().unwrap_or_else(|p| p.into_inner()).steps[i]
                    .per_second
                    .closed()
                    .to_vec();
                (*name, closed)
            })
            .collect()
    }
}

/// Where reports go by default.
pub fn default_out(name: &str) -> PathBuf {
    PathBuf::from("target").join("loadgen").join(name)
}
