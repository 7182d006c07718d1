//! The `gateway` binary: parses the command line, then runs (`service::main` sets up logging,
//! the runtime and the exit status).

use std::process::ExitCode;

use clap::Parser;
use gateway::app::{run, Cli};

/// mimalloc instead of glibc's malloc: every ACR is a tokio task, and tokio allocates its
/// tasks 128-byte aligned (2,560 bytes for the relay's); glibc serves aligned requests
/// outside its thread cache (`posix_memalign` -> `_int_malloc`, `malloc_consolidate`),
/// 12-16% of the gateway's CPU in a profile at 80,000 ACR/s (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    service::main("gateway", cli.workers.map(usize::from), run(cli))
}
