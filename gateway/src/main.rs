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

/// mimalloc's `mi_option_purge_delay` (mimalloc.h, versions 2 and 3; the Rust bindings do
/// not name it): how long freed memory waits before it goes back to the system (1 s in
/// mimalloc 3, the version libmimalloc-sys builds).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps the memory mimalloc frees for the next allocations, as `service::keep_freed_memory`
/// does for glibc's malloc in the other binaries: by default mimalloc returns it a second after
/// it is freed, and the gateway took 150-450 page faults a second taking it back, each
/// 4-28 us on the virtual machines we measure on (BENCHMARKS.md, the page faults).
#[allow(unsafe_code)]
fn keep_freed_memory() {
    // SAFETY: sets an option of the allocator; valid at any time, from any thread.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

fn main() -> ExitCode {
    keep_freed_memory();
    let cli = Cli::parse();
    service::main("gateway", cli.workers.map(usize::from), run(cli))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The option number is mimalloc's purge delay: its default is 1000 ms (mimalloc 3's
    /// options.c; no other option of the first twenty has it), and setting it reads back.
    #[test]
    #[allow(unsafe_code)]
    fn the_purge_delay_option_is_the_one_set() {
        // SAFETY: reads and sets an allocator option.
        unsafe {
            assert_eq!(libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY), 1000);
            keep_freed_memory();
            assert_eq!(libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY), -1);
        }
    }
}
