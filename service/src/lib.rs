//! What the server binaries (`pdf`, `gateway`) share: `main`'s set-up (logging with
//! `RUST_LOG`, coloured only on a terminal; an explicit multi-threaded runtime), their
//! documented exit codes, and waiting for the stop signals; and what the `loadgen` shares
//! with them: [`keep_freed_memory`].

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

/// Makes glibc's malloc keep the memory the process frees for its next allocations: no
/// trimming of its heaps, and blocks below 32 MiB from the heap rather than each from its
/// own mapping. By default it hands freed memory back to the system and asks for it again
/// a moment later, and every page of it comes back through a page fault: 4-28 us each on
/// the virtual machines we measure on, where a few hundred a second in the loadgen's
/// once-a-second histogram encoding gave latency spikes (BENCHMARKS.md, the page faults).
/// The price: a process keeps its high-water mark of memory. (The gateway's mimalloc has
/// its own setting, in its `main`.)
#[allow(unsafe_code)]
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes the allocator's thresholds; valid at any time.
        let trim = unsafe { libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX) };
        // SAFETY: as above (32 MiB is glibc's largest mmap threshold on 64-bit systems).
        let mmap = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20) };
        if trim != 1 || mmap != 1 {
            tracing::warn!("malloc refused its thresholds: freed memory may be returned");
        }
    }
}

/// The body of a server's `main`: freed memory kept ([`keep_freed_memory`]), logging to
/// stderr (`RUST_LOG`, default `info`), a runtime with `workers` worker threads (None:
/// tokio's default, one per core), `run`, and the exit status (0, 1 runtime failure, 2
/// configuration), with errors printed as `<name>: <message>`.
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
    keep_freed_memory();
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

#[cfg(test)]
mod tests {
    use super::*;

    /// This thread's minor page faults so far (/proc/thread-self/stat, field 10).
    fn minor_faults() -> u64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("proc");
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .expect("comm")
            .1
            .split_whitespace()
            .collect();
        fields[7].parse().expect("minflt")
    }

    /// Freed memory is reused without page faults: 2 MiB in 64 KiB blocks, written and
    /// freed 20 times on a thread of its own, faults its pages in once. (With glibc's
    /// defaults the freed top of the thread's heap goes back to the system every round:
    /// 9,601 faults.)
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn freed_memory_comes_back_without_page_faults() {
        keep_freed_memory();
        let faults = std::thread::spawn(|| {
            let round = || {
                let blocks: Vec<Vec<u8>> = (0..32).map(|_| vec![1u8; 64 << 10]).collect();
                drop(std::hint::black_box(blocks));
            };
            round();
            let before = minor_faults();
            for _ in 0..20 {
                round();
            }
            minor_faults() - before
        })
        .join()
        .expect("thread");
        assert!(faults < 100, "{faults} page faults in 20 rounds");
    }
}
