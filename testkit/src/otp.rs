//! Erlang/OTP's `diameter` as an independent peer in the interop tests: runs
//! `protocol/tests/otp/otp_peer.escript`, which compiles the RFC 4006 dictionary
//! (`shared/otp/dcca_rfc4006.dia`) at start into a scratch directory this harness owns, and
//! prints machine-readable lines (`EVENT`, `STATS`, `DWR`, `LISTENING`, `RESULT`, `FAIL`).
//!
//! [`OtpPeer::start`] finds `escript` on the `PATH` (and fails the test, naming
//! `scripts/test`, when it is not there), runs the escript with its output captured, and
//! kills it when the [`OtpPeer`] is dropped; [`OtpPeer::wait_exit`] bounds the run with a
//! timeout. Erlang/OTP is required: the tests fail, rather than skip, when it is missing.
//! `scripts/test` installs it (erlang-base, erlang-diameter, erlang-dev; see
//! `shared/README.md`).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What to do when Erlang/OTP is missing.
pub const INSTALL_HINT: &str = "This interop test needs Erlang/OTP with its diameter \
     application: run scripts/test, which installs erlang-base, erlang-diameter and \
     erlang-dev (see shared/README.md).";

/// The `escript` on `path` (a `PATH`-style list of directories), or why there is none.
pub fn find_escript_in(path: Option<&OsStr>) -> Result<PathBuf, String> {
    path.into_iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("escript"))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            format!(
                "`escript` is not installed (not found on PATH {:?}). {INSTALL_HINT}",
                path.unwrap_or_default()
            )
        })
}

/// The `escript` on this process's `PATH`; panics (failing the test) with what to run when
/// there is none.
pub fn find_escript() -> PathBuf {
    find_escript_in(std::env::var_os("PATH").as_deref()).unwrap_or_else(|why| panic!("{why}"))
}

/// `key=value` words of one line from the escript.
#[derive(Clone, Debug, Default)]
pub struct Fields(HashMap<String, String>);

impl Fields {
    /// The `key=value` words of `line` (other words are ignored).
    pub fn parse(line: &str) -> Self {
        Self(
            line.split_whitespace()
                .filter_map(|word| word.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }

    /// The value of `key`, or "" when absent.
    pub fn get(&self, key: &str) -> &str {
        self.0.get(key).map_or("", String::as_str)
    }

    /// The value of `key` as a number; `usize::MAX` when absent or not a number (so that an
    /// equality check against the expected count fails and shows the line).
    pub fn number(&self, key: &str) -> usize {
        self.get(key).parse().unwrap_or(usize::MAX)
    }
}

/// The escript, running with its stdout and stderr captured; killed on drop, and its
/// scratch directory (the compiled dictionary) removed.
pub struct OtpPeer {
    command: String,
    child: Child,
    lines: mpsc::Receiver<String>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
    status: Option<ExitStatus>,
    scratch: PathBuf,
}

impl OtpPeer {
    /// Runs `escript SCRIPT MODE DICTIONARY SCRATCH ARGS...`, where SCRATCH is a fresh
    /// directory for the compiled dictionary. Panics (failing the test) when `escript`, the
    /// script or the dictionary is missing.
    pub fn start(script: &Path, dictionary: &Path, mode: &str, args: &[&str]) -> Self {
        let escript = find_escript();
        for (what, path) in [("escript", script), ("dictionary", dictionary)] {
            assert!(
                path.is_file(),
                "the OTP peer's {what} {} is missing",
                path.display()
            );
        }
        let scratch = scratch_dir(mode);
        let mut all: Vec<&OsStr> = vec![
            script.as_os_str(),
            OsStr::new(mode),
            dictionary.as_os_str(),
            scratch.as_os_str(),
        ];
        all.extend(args.iter().map(OsStr::new));
        let command = format!(
            "{} {}",
            escript.display(),
            all.iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ")
        );
        let spawned = Command::new(&escript)
            .args(&all)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&scratch);
                panic!("cannot run `{command}`: {e}. {INSTALL_HINT}")
            }
        };
        let (tx, lines) = mpsc::channel();
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let out = BufReader::new(child.stdout.take().expect("piped stdout"));
        let out_text = stdout.clone();
        let stdout_reader = std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                let mut text = out_text.lock().expect("not poisoned");
                text.push_str(&line);
                text.push('\n');
                let _ = tx.send(line);
            }
        });
        let mut err = child.stderr.take().expect("piped stderr");
        let err_text = stderr.clone();
        let stderr_reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = err.read(&mut buf) {
                err_text
                    .lock()
                    .expect("not poisoned")
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Self {
            command,
            child,
            lines,
            stdout,
            stderr,
            readers: vec![stdout_reader, stderr_reader],
            status: None,
            scratch,
        }
    }

    /// Waits for the next stdout line starting with `prefix` (earlier lines are skipped);
    /// panics with everything the escript said when it does not come in time.
    pub fn wait_line(&mut self, prefix: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return line,
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!(
                        "no `{prefix}` line from the escript within {limit:?}\n{}",
                        self.report("")
                    )
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.reap(Duration::from_secs(2));
                    panic!(
                        "the escript ended without a `{prefix}` line\n{}",
                        self.report("")
                    )
                }
            }
        }
    }

    /// Waits for the escript to exit; kills it and panics when it does not in time.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        if !self.reap(limit) {
            let _ = self.child.kill();
            self.reap(Duration::from_secs(2));
            panic!(
                "the escript did not exit within {limit:?}\n{}",
                self.report("")
            );
        }
        self.status.expect("reaped")
    }

    /// Waits up to `limit` for the exit, then for the output readers; whether it exited.
    fn reap(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while self.status.is_none() {
            match self.child.try_wait() {
                Ok(Some(status)) => self.status = Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => return false,
            }
        }
        let drained = Instant::now() + Duration::from_secs(2);
        while self.readers.iter().any(|r| !r.is_finished()) && Instant::now() < drained {
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// Its exit status, once [`OtpPeer::wait_exit`] has seen it.
    pub fn status(&self) -> Option<ExitStatus> {
        self.status
    }

    /// Everything it printed on stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout.lock().expect("not poisoned").clone()
    }

    /// Everything it printed on stderr so far (OTP's own log).
    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("not poisoned").clone()
    }

    /// The last `RESULT` line's fields; panics with the report when there is none.
    pub fn result(&self) -> Fields {
        let stdout = self.stdout();
        match stdout.lines().rev().find(|l| l.starts_with("RESULT ")) {
            Some(line) => Fields::parse(line),
            None => panic!("no RESULT line\n{}", self.report("")),
        }
    }

    /// The command line, exit status and everything the escript printed, with the other
    /// side's account `ours`.
    pub fn report(&self, ours: &str) -> String {
        format!(
            "command: {}\nstatus: {:?}\n--- escript stdout ---\n{}--- escript stderr ---\n{}\
             --- ours ---\n{ours}\n(OTP's diameter missing? {INSTALL_HINT})",
            self.command,
            self.status,
            self.stdout(),
            self.stderr(),
        )
    }
}

impl Drop for OtpPeer {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

/// A fresh directory for the compiled dictionary.
fn scratch_dir(tag: &str) -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let path = std::env::temp_dir().join(format!(
        "diameter-otp-{tag}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&path);
    std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_escript_names_scripts_test() {
        for path in [None, Some(OsStr::new("")), Some(OsStr::new("/nonexistent"))] {
            let why = find_escript_in(path).expect_err("no escript there");
            assert!(why.contains("run scripts/test"), "{why}");
        }
    }

    #[test]
    fn escript_is_found_on_a_path_that_has_it() {
        let dir = std::env::temp_dir().join(format!("testkit-escript-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("escript"), "").expect("write");
        let path = std::env::join_paths(["/nonexistent".as_ref(), dir.as_path()]).expect("join");
        assert_eq!(find_escript_in(Some(&path)), Ok(dir.join("escript")));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn fields_of_a_result_line() {
        let fields = Fields::parse("RESULT ok answers=50 watchdog=okay");
        assert_eq!(fields.number("answers"), 50);
        assert_eq!(fields.get("watchdog"), "okay");
        assert_eq!(fields.get("missing"), "");
        assert_eq!(fields.number("watchdog"), usize::MAX);
    }
}
