//! Timeline events (`[[event]]`): fired at their offsets from the start of traffic, each
//! recorded with when it fired and what came of it (summary.json's `events`, the terminal
//! summary, and markers on report.html's plots).
//!
//! - `kill_node`: SIGKILL to the spawned pdf;
//! - `set_weight`: `POST /nodes/{node}/weight` `{"weight":N}` to the gateway's admin port;
//! - `command`: a program run in the scenario file's directory, with the addresses in its
//!   environment (`LOADGEN_GATEWAY`, `LOADGEN_GATEWAY_ADMIN`, `LOADGEN_PDF_ADMIN`,
//!   `LOADGEN_PDF_PID`, `LOADGEN_OUT`), its output in `event-<i>.log` in the output
//!   directory, its exit status recorded. Commands run beside the traffic (a long one does
//!   not hold up later events); one still running 10 s after traffic ended is killed;
//! - `upgrade`: a strategy run by [`crate::upgrade`] (restart, drain; hot once the pdf has it).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::progress::Progress;
use crate::scenario::{shell_words, Event};

/// How long a command may outlive the traffic.
pub const COMMAND_GRACE: Duration = Duration::from_secs(10);

/// One event as it happened.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    /// When the scenario wanted it, seconds after traffic started.
    pub at_s: f64,
    /// When it fired, seconds after traffic started.
    pub fired_s: f64,
    /// `kill_node`, `set_weight` or `command`.
    pub action: String,
    /// What it does, in a few words (`set_weight pdf0 = 0`).
    pub description: String,
    /// `ok` or `failed`.
    pub outcome: String,
    /// What came of it: the HTTP answer, the exit status, the error.
    pub detail: String,
    /// A command's exit status (absent if it was killed by a signal or did not start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_status: Option<i32>,
    /// Seconds from firing to the outcome.
    pub took_s: f64,
}

impl EventRecord {
    /// Whether the event did what it should.
    pub fn ok(&self) -> bool {
        self.outcome == "ok"
    }

    /// One line for the terminal.
    pub fn line(&self) -> String {
        format!(
            "event at {:.1} s: {}: {} ({})",
            self.fired_s, self.description, self.outcome, self.detail
        )
    }
}

/// What events act on.
#[derive(Clone, Debug, Default)]
pub struct Targets {
    /// The spawned pdf's process id.
    pub pdf_pid: Option<u32>,
    /// The gateway's admin address.
    pub gateway_admin: Option<SocketAddr>,
    /// The gateway's access address.
    pub gateway: Option<SocketAddr>,
    /// The pdf's admin address.
    pub pdf_admin: Option<SocketAddr>,
    /// Where commands run (the scenario file's directory).
    pub dir: PathBuf,
    /// The output directory (command logs).
    pub out: PathBuf,
    /// The spawned pdfs and the measurements, for `upgrade` events.
    pub upgrade: Option<crate::upgrade::UpgradeTargets>,
}

impl Targets {
    fn environment(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![("LOADGEN_OUT", self.out.display().to_string())];
        let addresses = [
            ("LOADGEN_GATEWAY", self.gateway),
            ("LOADGEN_GATEWAY_ADMIN", self.gateway_admin),
            ("LOADGEN_PDF_ADMIN", self.pdf_admin),
        ];
        for (name, address) in addresses {
            if let Some(address) = address {
                env.push((name, address.to_string()));
            }
        }
        if let Some(pid) = self.pdf_pid {
            env.push(("LOADGEN_PDF_PID", pid.to_string()));
        }
        env
    }
}

/// Fires `events` at their offsets from `started`; returns their records in the order they
/// fired. `traffic_end` bounds the commands (plus [`COMMAND_GRACE`]).
pub async fn run(
    events: Vec<Event>,
    started: Instant,
    traffic_end: Instant,
    targets: Targets,
    progress: Progress,
) -> Vec<EventRecord> {
    let mut order: Vec<(usize, Event)> = events.into_iter().enumerate().collect();
    order.sort_by_key(|(i, e)| (e.at(), *i));
    let mut pending = Vec::new();
    for (index, event) in order {
        let Some(at) = event.at() else { continue };
        tokio::time::sleep_until((started + at).into()).await;
        let targets = targets.clone();
        let progress = progress.clone();
        pending.push(tokio::spawn(async move {
            let record = fire(
                index,
                &event,
                started,
                traffic_end + COMMAND_GRACE,
                &targets,
            )
            .await;
            progress.println(&record.line());
            record
        }));
        // Let an event that does not wait (kill, set_weight) finish before the next one.
        tokio::task::yield_now().await;
    }
    let mut records = Vec::new();
    for task in pending {
        if let Ok(record) = task.await {
            records.push(record);
        }
    }
    records.sort_by(|a, b| a.fired_s.total_cmp(&b.fired_s));
    records
}

/// Fires one event (number `index` in the scenario) now; a command still running at
/// `command_deadline` is killed.
pub async fn fire(
    index: usize,
    event: &Event,
    started: Instant,
    command_deadline: Instant,
    targets: &Targets,
) -> EventRecord {
    let fired = Instant::now();
    let (ok, detail, exit_status) = match event {
        Event::KillNode { node, .. } => kill(node, targets.pdf_pid).await,
        Event::SetWeight { node, weight, .. } => {
            set_weight(targets.gateway_admin, node, *weight).await
        }
        Event::Command { run, .. } => {
            command(
                run,
                targets,
                targets.out.join(format!("event-{index}.log")),
                command_deadline,
            )
            .await
        }
        Event::Upgrade(_) => match (event.upgrade(), &targets.upgrade) {
            (Some(upgrade), Some(upgrade_targets)) => {
                let (ok, detail) = crate::upgrade::fire(&upgrade, upgrade_targets).await;
                (ok, detail, None)
            }
            (None, _) => (false, "not a valid upgrade event".to_owned(), None),
            (_, None) => (
                false,
                "no spawned pdf to upgrade (topology.spawn = false)".to_owned(),
                None,
            ),
        },
    };
    EventRecord {
        at_s: event.at().unwrap_or_default().as_secs_f64(),
        fired_s: fired.saturating_duration_since(started).as_secs_f64(),
        action: event.action().to_owned(),
        description: event.describe(),
        outcome: if ok { "ok" } else { "failed" }.to_owned(),
        detail,
        exit_status,
        took_s: fired.elapsed().as_secs_f64(),
    }
}

async fn kill(node: &str, pid: Option<u32>) -> (bool, String, Option<i32>) {
    let Some(pid) = pid else {
        return (false, format!("no spawned {node} to kill"), None);
    };
    match tokio::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .await
    {
        Ok(status) if status.success() => {
            (true, format!("SIGKILL sent to {node} (pid {pid})"), None)
        }
        Ok(status) => (false, format!("kill -KILL {pid}: {status}"), None),
        Err(error) => (false, format!("cannot run kill: {error}"), None),
    }
}

async fn set_weight(
    admin: Option<SocketAddr>,
    node: &str,
    weight: u32,
) -> (bool, String, Option<i32>) {
    let Some(admin) = admin else {
        return (
            false,
            "the gateway's admin address is not known".into(),
            None,
        );
    };
    let path = format!("/nodes/{node}/weight");
    let body = serde_json::json!({ "weight": weight }).to_string();
    let answer =
        tokio::task::spawn_blocking(move || crate::run::http(admin, "POST", &path, Some(&body)))
            .await;
    match answer {
        Ok(Ok((status, body))) => (
            status == 200,
            format!("HTTP {status} {}", body.trim()),
            None,
        ),
        Ok(Err(error)) => (false, format!("{error:#}"), None),
        Err(error) => (false, error.to_string(), None),
    }
}

async fn command(
    run: &[String],
    targets: &Targets,
    log: PathBuf,
    deadline: Instant,
) -> (bool, String, Option<i32>) {
    let Some((program, args)) = run.split_first() else {
        return (false, "no program".into(), None);
    };
    let output = match std::fs::File::create(&log) {
        Ok(file) => file,
        Err(error) => return (false, format!("creating {}: {error}", log.display()), None),
    };
    let errors = match output.try_clone() {
        Ok(file) => file,
        Err(error) => return (false, format!("{}: {error}", log.display()), None),
    };
    let dir = if targets.dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        targets.dir.clone()
    };
    let child = tokio::process::Command::new(program)
        .args(args)
        .current_dir(&dir)
        .envs(targets.environment())
        .stdin(std::process::Stdio::null())
        .stdout(output)
        .stderr(errors)
        // Its own process group, so that a timeout kills what it started too.
        .process_group(0)
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(error) => {
            return (
                false,
                format!(
                    "cannot start {} in {}: {error}",
                    shell_words(run),
                    dir.display()
                ),
                None,
            )
        }
    };
    match tokio::time::timeout_at(deadline.into(), child.wait()).await {
        Ok(Ok(status)) => {
            let code = status.code();
            let detail = match code {
                Some(code) => format!("exit status {code}; output in {}", log.display()),
                None => format!("{status}; output in {}", log.display()),
            };
            (status.success(), detail, code)
        }
        Ok(Err(error)) => (false, format!("waiting for it: {error}"), None),
        Err(_) => {
            if let Some(pid) = child.id() {
                let _ = tokio::process::Command::new("kill")
                    .args(["-KILL", "--", &format!("-{pid}")])
                    .status()
                    .await;
            }
            let _ = child.kill().await;
            (
                false,
                format!(
                    "still running {} s after traffic ended: killed; output in {}",
                    COMMAND_GRACE.as_secs(),
                    log.display()
                ),
                None,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Span;

    fn targets(dir: &std::path::Path) -> Targets {
        Targets {
            dir: dir.to_path_buf(),
            out: dir.to_path_buf(),
            gateway: Some("127.0.0.1:3868".parse().expect("address")),
            ..Default::default()
        }
    }

    fn command_event(script: &str) -> Event {
        Event::Command {
            at: Span(Duration::from_millis(50)),
            run: vec!["sh".into(), "-c".into(), script.into()],
        }
    }

    #[tokio::test]
    async fn commands_run_in_the_scenario_directory_and_their_exit_status_is_recorded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let now = Instant::now();
        let end = now + Duration::from_secs(5);
        let ok = fire(
            0,
            &command_event("pwd; echo gateway=$LOADGEN_GATEWAY"),
            now,
            end,
            &targets(dir.path()),
        )
        .await;
        assert!(ok.ok(), "{ok:?}");
        assert_eq!(ok.exit_status, Some(0));
        assert_eq!(ok.action, "command");
        let log = std::fs::read_to_string(dir.path().join("event-0.log")).expect("log");
        let here = dir.path().canonicalize().expect("canonical");
        assert!(log.contains(&here.display().to_string()), "{log}");
        assert!(log.contains("gateway=127.0.0.1:3868"), "{log}");

        let failed = fire(1, &command_event("exit 3"), now, end, &targets(dir.path())).await;
        assert_eq!(failed.outcome, "failed");
        assert_eq!(failed.exit_status, Some(3));
        assert!(failed.detail.contains("exit status 3"), "{failed:?}");

        let missing = Event::Command {
            at: Span(Duration::ZERO),
            run: vec!["no-such-program-here".into()],
        };
        let missing = fire(2, &missing, now, end, &targets(dir.path())).await;
        assert_eq!(missing.outcome, "failed");
        assert!(missing.detail.contains("cannot start"), "{missing:?}");

        // Past its deadline, a command is killed.
        let deadline = Instant::now() + Duration::from_millis(200);
        let slow = fire(
            3,
            &command_event("sleep 30 & echo $! > sleeper; wait"),
            now,
            deadline,
            &targets(dir.path()),
        )
        .await;
        assert_eq!(slow.outcome, "failed");
        // What it started went with it (its process group was killed).
        let sleeper = std::fs::read_to_string(dir.path().join("sleeper")).expect("pid");
        std::thread::sleep(Duration::from_millis(100));
        // Gone, or a zombie waiting for init to reap it.
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", sleeper.trim()));
        let state = stat
            .as_deref()
            .ok()
            .and_then(|s| s.rsplit(')').next())
            .and_then(|s| s.split_whitespace().next());
        assert!(
            matches!(state, None | Some("Z" | "X")),
            "sleep {} still running: {stat:?}",
            sleeper.trim()
        );
        assert!(slow.detail.contains("killed"), "{slow:?}");
        assert!(slow.took_s < 5.0, "{slow:?}");
    }

    #[tokio::test]
    async fn set_weight_posts_to_the_admin_port_and_kill_node_kills() {
        // A one-shot HTTP server standing in for the gateway's admin port.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let admin = listener.local_addr().expect("address");
        let server = std::thread::spawn(move || {
            use std::io::{Read, Write};
            let mut requests = Vec::new();
            for status in ["200 OK", "404 Not Found"] {
                let (mut stream, _) = listener.accept().expect("accept");
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !String::from_utf8_lossy(&request).contains("{\"weight\"") {
                    let n = stream.read(&mut buf).expect("read");
                    if n == 0 {
                        break;
                    }
                    request.extend_from_slice(&buf[..n]);
                }
                let body = "{\"name\":\"pdf0\",\"weight\":0}";
                write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .expect("write");
                requests.push(String::from_utf8_lossy(&request).into_owned());
            }
            requests
        });
        let targets = Targets {
            gateway_admin: Some(admin),
            ..Default::default()
        };
        let event = Event::SetWeight {
            at: Span(Duration::from_secs(2)),
            node: "pdf0".into(),
            weight: 0,
        };
        let now = Instant::now();
        let ok = fire(0, &event, now, now, &targets).await;
        assert!(ok.ok(), "{ok:?}");
        assert_eq!(ok.at_s, 2.0);
        assert_eq!(ok.description, "set_weight pdf0 = 0");
        assert!(ok.detail.starts_with("HTTP 200"), "{ok:?}");
        let not_found = fire(0, &event, now, now, &targets).await;
        assert_eq!(not_found.outcome, "failed");
        assert!(not_found.detail.starts_with("HTTP 404"), "{not_found:?}");
        let requests = server.join().expect("server");
        assert!(
            requests[0].starts_with("POST /nodes/pdf0/weight HTTP/1.1"),
            "{requests:?}"
        );
        assert!(requests[0].contains("{\"weight\":0}"), "{requests:?}");

        // kill_node: SIGKILL to the process.
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        let kill = Event::KillNode {
            at: Span(Duration::ZERO),
            node: "pdf".into(),
        };
        let targets = Targets {
            pdf_pid: Some(child.id()),
            ..Default::default()
        };
        let killed = fire(0, &kill, now, now, &targets).await;
        assert!(killed.ok(), "{killed:?}");
        let status = child.wait().expect("wait");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
        let nothing = fire(0, &kill, now, now, &Targets::default()).await;
        assert_eq!(nothing.outcome, "failed");
    }
}
