//! Shared test helpers: start the real binaries on 127.0.0.1 with port 0, learn their ports
//! from the `listening ...` line they print, talk to them with our Diameter client and a
//! minimal HTTP client, and kill them when the test ends. On failure the harness shows the
//! full command line and everything the process wrote. [`otp`] runs the Erlang/OTP escript
//! peer of the interop tests; [`proxy`] puts a TCP proxy between two processes so that a test
//! can cut their connections.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use protocol::peer::{EndToEndIds, Node, PeerConfig};
use protocol::transport::{Client, ClientOptions, Connection, ConnectionEvent, Handler, Incoming};

pub mod otp;
pub mod proxy;

/// A running server process (pdf or gateway), killed on drop.
pub struct Process {
    child: Option<Child>,
    command: String,
    /// Its Diameter address.
    pub diameter: SocketAddr,
    /// Its admin HTTP address.
    pub admin: SocketAddr,
    output: Arc<Mutex<String>>,
}

impl Process {
    /// Starts `binary` with `args`, waits (up to 30 s) for its `listening` line.
    pub fn start(binary: &Path, args: &[&str]) -> Self {
        let command = format!("{} {}", binary.display(), args.join(" "));
        let mut child = Command::new(binary)
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{command}`: {e}"));
        let output = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        let sink = output.clone();
        std::thread::spawn(move || {
            let mut text = String::new();
            let mut reader = BufReader::new(stderr);
            while reader.read_line(&mut text).map(|n| n > 0).unwrap_or(false) {
                sink.lock().expect("not poisoned").push_str(&text);
                text.clear();
            }
        });
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = output.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                sink.lock().expect("not poisoned").push_str(&line);
                if line.starts_with("listening ") {
                    let _ = tx.send(line.clone());
                }
                line.clear();
            }
            let mut rest = String::new();
            let _ = reader.read_to_string(&mut rest);
        });
        let mut process = Self {
            child: Some(child),
            command,
            diameter: SocketAddr::from(([0, 0, 0, 0], 0)),
            admin: SocketAddr::from(([0, 0, 0, 0], 0)),
            output,
        };
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => line,
            Err(_) => process.fail("no `listening` line within 30 s"),
        };
        for field in line.split_whitespace().skip(1) {
            let (key, value) = field.split_once('=').unwrap_or((field, ""));
            let addr: SocketAddr = value
                .parse()
                .unwrap_or_else(|_| process.fail(&format!("bad address in {line:?}")));
            match key {
                "diameter" => process.diameter = addr,
                "admin" => process.admin = addr,
                _ => {}
            }
        }
        process
    }

    /// Its process id (None once it has been waited for).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything the process printed so far (stdout and stderr).
    pub fn output(&self) -> String {
        self.output.lock().expect("not poisoned").clone()
    }

    /// Panics with the command line and the output.
    pub fn fail(&self, why: &str) -> ! {
        panic!(
            "{why}\ncommand: {}\n--- output ---\n{}",
            self.command,
            self.output()
        )
    }

    /// Waits (up to `timeout`) for the process to exit by itself; returns its exit code
    /// (None if killed by a signal). Fails the test if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let mut child = self
            .child
            .take()
            .unwrap_or_else(|| self.fail("already stopped"));
        let deadline = Instant::now() + timeout;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return status.code(),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    self.child = Some(child);
                    self.fail(&format!("still running after {timeout:?}"));
                }
            }
        }
    }

    /// Sends a signal (SIGTERM = 15, SIGKILL = 9) and waits for the exit (up to 20 s);
    /// returns the exit code (None if killed by a signal).
    pub fn signal(&mut self, signal: i32) -> Option<i32> {
        let mut child = self
            .child
            .take()
            .unwrap_or_else(|| self.fail("already stopped"));
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status();
        if !status.is_ok_and(|s| s.success()) {
            self.fail("kill failed");
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return status.code(),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = child.kill();
                    self.child = Some(child);
                    self.fail("did not exit within 20 s of the signal");
                }
            }
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- {} ---\n{}", self.command, self.output());
        }
    }
}

/// A minimal HTTP/1.1 POST of a JSON body to an admin port: (status, body).
pub fn http_post(addr: SocketAddr, path: &str, json: &str) -> (u16, String) {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}",
        json.len()
    )
    .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, body.to_owned())
}

/// A minimal HTTP/1.1 GET against an admin port: (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// Records what a Diameter client sees; answers server-initiated requests (ASR) with 2001.
#[derive(Default)]
pub struct Recorder {
    /// Connection events.
    pub events: Mutex<Vec<ConnectionEvent>>,
    /// Requests received (their bytes).
    pub requests: Mutex<Vec<bytes::Bytes>>,
}

impl Handler for Recorder {
    fn on_request(&self, _: &Connection, incoming: Incoming) {
        use protocol::grammar::Command;
        self.requests
            .lock()
            .expect("not poisoned")
            .push(incoming.message.bytes().clone());
        let session = incoming
            .message
            .view()
            .session_id()
            .unwrap_or_default()
            .to_owned();
        let asa = protocol::messages::Asa {
            session_id: &session,
            result_code: protocol::result_code::ResultCode::SUCCESS,
            origin_host: "client.example.net",
            origin_realm: "example.net",
            ..Default::default()
        };
        incoming.responder.answer_with(|envelope, buf| {
            asa.encode(envelope, buf);
        });
    }

    fn on_event(&self, _: &Connection, event: &ConnectionEvent) {
        self.events
            .lock()
            .expect("not poisoned")
            .push(event.clone());
    }
}

/// A Diameter client node (its own Origin-Host) connected to `addr`.
pub async fn connect(
    addr: SocketAddr,
    origin_host: &str,
) -> (Client, Connection, Arc<Node>, Arc<Recorder>) {
    let config = PeerConfig::new(origin_host, "example.net");
    let node = Node::new(config, EndToEndIds::new(1_700_000_000, fastrand::u32(..)));
    let recorder = Arc::new(Recorder::default());
    let options = ClientOptions {
        reconnect: false,
        ..Default::default()
    };
    let client = Client::start(addr, node.clone(), recorder.clone(), options);
    let connection = client
        .wait_open(Duration::from_secs(10))
        .await
        .unwrap_or_else(|| panic!("no connection to {addr}"));
    (client, connection, node, recorder)
}
