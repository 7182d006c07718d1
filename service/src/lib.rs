//! What the server binaries (`pdf`, `gateway`) share: `main`'s set-up (logging with
//! `RUST_LOG`, coloured only on a terminal; an explicit multi-threaded runtime), their
//! documented exit codes, and waiting for the stop signals.

use std::future::Future;
use std::process::ExitCode;

use anyhow::Context;

/// Why a server's `run` failed: the exit status tells a bad configuration from a runtime
/// failure.
#[derive(Debug)]
pub enum Failure {
    /// Exit 2: bad command line or configuration (the message names the file and key).
    Config(String),
    /// Exit 1: failed while running.
    Runtime(anyhow::Error),
}

/// The body of a server's `main`: logging to stderr (`RUST_LOG`, default `info`), a runtime
/// with `workers` worker threads (None: tokio's default, one per core), `run`, and the exit
/// status (0, 1 runtime failure, 2 configuration), with errors printed as
/// `<name>: <message>`.
pub fn main<F>(name: &str, workers: Option<usize>, run: F) -> ExitCode
where
    F: Future<Output = Result<(), Failure>>,
{
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal, not in files and pipes.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = workers {
        builder.worker_threads(workers);
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("{name}: cannot start the runtime: {error}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Config(message)) => {
            eprintln!("{name}: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(error)) => {
            eprintln!("{name}: {error:#}");
            ExitCode::from(1)
        }
    }
}

/// Installs the SIGTERM and SIGINT handlers now, and returns the wait for the first of them
/// (an orderly stop). Call it before announcing the ports: a signal that arrives before the
/// returned future is first awaited is kept, not left to the default action (which kills
/// the process without its DPR).
pub fn stop_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}
