//! The `loadgen` binary.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use loadgen::scenario::Scenario;

const EXIT_CODES: &str = "Exit status:
  0   the run passed its thresholds (or `check` found the scenario valid; `merge`: the
      merged run passed)
  2   invalid scenario or usage (the message names the file and key); `merge`: reports
      that are not all the shards of one run
  3   infrastructure failure (a process did not start, no connection)
  99  thresholds breached

Progress goes to stderr (a live bar on a terminal, one line every 2 s otherwise); the summary to stdout; summary.json, timeline.csv, latency.hlog (the HdrHistogram interval
log) and report.html to --out.";

/// Scenario runner for the Diameter gateway and PDF.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version = concat!(env!("CARGO_PKG_VERSION"), " (report version 1)"), after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Validate a scenario and print its plan.
    Check {
        /// The scenario file.
        file: PathBuf,
    },
    /// Run a scenario: start pdf and gateway (topology.spawn), drive traffic, report.
    Run {
        /// The scenario file.
        file: PathBuf,
        /// Directory for summary.json and the processes' logs (default target/loadgen/<name>).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Run shard i of N (0-based): the sessions numbered i mod N, on the accounts
        /// numbered i mod N, with 1/N of the load; `loadgen merge` combines the N reports.
        #[arg(long, value_name = "i/N")]
        shard: Option<loadgen::shard::Shard>,
    },
    /// Merge the summary.json files of all the shards of one run (`run --shard i/N`) into
    /// one report: counts summed, histograms added (percentiles exact), thresholds judged
    /// again; writes summary.json, timeline.csv, report.html and latency.hlog (the shards' interval
    /// logs, found beside their summary.json, added up second by second) to --out.
    Merge {
        /// The shards' summary.json files, one per shard.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Directory for the merged summary.json (default target/loadgen/<name>-merged).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Print the JSON Schema (draft 2020-12) of the scenario format, for editors.
    Schema,
    /// Latency over a window of a run, from its interval log (`--out DIR/latency.hlog`):
    /// per step and kind, the seconds' histograms within the window added up (exact
    /// percentiles), e.g. the steady state without a ramp: `--from 3 --to 58`.
    Latency {
        /// The run's latency.hlog.
        file: PathBuf,
        /// Start of the window, seconds since traffic started.
        #[arg(long, default_value_t = 0.0)]
        from: f64,
        /// End of the window (default: the end of the run).
        #[arg(long)]
        to: Option<f64>,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run a scenario once per upgrade strategy (its `upgrade` events' strategy replaced;
    /// same seed) into DIR/<strategy>/, then compare them: DIR/compare.txt and
    /// DIR/compare.html.
    Sweep {
        /// The scenario file (with at least one `upgrade` event).
        file: PathBuf,
        /// The strategies, comma-separated (default: every one the loadgen runs:
        /// restart,drain).
        #[arg(long, value_name = "LIST")]
        strategies: Option<String>,
        /// Directory for the runs and the comparison (default target/loadgen/<name>-sweep).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Compare runs side by side: a table of several summary.json files (exit 2 when one is
    /// missing or not a summary), and with --out DIR/compare.html with overlaid plots.
    Compare {
        /// The runs' summary.json files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Directory for compare.html.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    service::keep_freed_memory();
    let (file, out) = match &cli.command {
        Mode::Check { file } => (file, None),
        Mode::Run { file, out, .. } => (file, Some(out.clone())),
        Mode::Merge { files, out } => return loadgen::merge::main(files, out.as_deref()),
        Mode::Schema => {
            let schema = loadgen::schema::scenario_schema();
            let text = serde_json::to_string_pretty(&schema).unwrap_or_default();
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = std::io::Write::write_all(&mut std::io::stdout(), (text + "\n").as_bytes());
            return ExitCode::SUCCESS;
        }
        Mode::Compare { files, out } => return loadgen::compare::main(files, out.as_deref()),
        Mode::Latency {
            file,
            from,
            to,
            json,
        } => return loadgen::hlog::main(file, *from, *to, *json),
        Mode::Sweep {
            file,
            strategies,
            out,
        } => return loadgen::sweep::main(file, strategies.as_deref(), out.as_deref()),
    };
    let scenario = match Scenario::load(file) {
        Ok(scenario) => scenario,
        Err(error) => {
            eprintln!("loadgen: {error}");
            return ExitCode::from(2);
        }
    };
    let Some(out) = out else {
        print!("{}", scenario.plan());
        println!("scenario ok");
        return ExitCode::SUCCESS;
    };
    let shard = match &cli.command {
        Mode::Run {
            shard: Some(shard), ..
        } => *shard,
        _ => loadgen::shard::Shard::WHOLE,
    };
    if let Err(error) = shard.check(&scenario) {
        eprintln!("loadgen: {}: {error}", file.display());
        return ExitCode::from(2);
    }
    let out = out.unwrap_or_else(|| {
        if shard.is_partial() {
            loadgen::run::default_out(&format!(
                "{}-shard{}of{}",
                scenario.name, shard.index, shard.count
            ))
        } else {
            loadgen::run::default_out(&scenario.name)
        }
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("loadgen: cannot start the runtime: {error}");
            return ExitCode::from(3);
        }
    };
    eprint!("{}", scenario.plan());
    if shard.is_partial() {
        let load = shard.load(&scenario.load);
        eprintln!(
            "  shard {shard}: the accounts numbered {} mod {} ({} subscribers); load {}",
            shard.index,
            shard.count,
            shard.subscribers(&scenario.population),
            match (load.concurrent_sessions, load.arrival_rate) {
                (Some(n), _) => format!("closed, {n} sessions"),
                (_, Some(r)) => format!("open, {r} sessions/s"),
                _ => String::new(),
            }
        );
    }
    let report = match runtime.block_on(loadgen::run::run_shard(scenario, shard, &out)) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("loadgen: {error:#}");
            return ExitCode::from(3);
        }
    };
    print!("{}", report.summary());
    let path = out.join("summary.json");
    match serde_json::to_string_pretty(&report) {
        Ok(json) => {
            if let Err(error) = std::fs::write(&path, json) {
                eprintln!("loadgen: writing {}: {error}", path.display());
                return ExitCode::from(3);
            }
            let csv = out.join("timeline.csv");
            if let Err(error) = std::fs::write(&csv, report.timeline_csv()) {
                eprintln!("loadgen: writing {}: {error}", csv.display());
                return ExitCode::from(3);
            }
            let html = out.join("report.html");
            if let Err(error) = std::fs::write(&html, loadgen::html::render(&report)) {
                eprintln!("loadgen: writing {}: {error}", html.display());
                return ExitCode::from(3);
            }
            println!(
                "report: {}, {} and {}",
                path.display(),
                csv.display(),
                html.display()
            );
        }
        Err(error) => {
            eprintln!("loadgen: {error}");
            return ExitCode::from(3);
        }
    }
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(99)
    }
}
