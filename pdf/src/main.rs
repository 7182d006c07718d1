//! The `pdf` binary: parses the command line, then runs (`service::main` sets up logging,
//! the runtime and the exit status).

use std::process::ExitCode;

use clap::Parser;
use pdf::app::{run, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    service::main("pdf", cli.workers.map(usize::from), run(cli))
}
