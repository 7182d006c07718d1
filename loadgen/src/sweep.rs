//! `loadgen sweep FILE [--strategies restart,drain] [--out DIR]`: the same scenario (and
//! seed) run once per upgrade strategy, then compared.
//!
//! The scenario must have at least one `upgrade` event; for each strategy every upgrade
//! event's `strategy` is replaced (its other keys stay: `binary` and `args` serve every
//! strategy, `weight` and `drain_timeout` the drain), the scenario is named
//! `<name>-<strategy>`, checked again (a strategy the loadgen cannot run yet is refused
//! before anything starts, naming the file and the key) and run into `DIR/<strategy>/`.
//! Then `DIR/compare.txt` holds the `loadgen compare` table and `DIR/compare.html` the page.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::scenario::{Event, Scenario, Strategy};

/// The strategies swept by default: every one the loadgen can run.
pub fn default_strategies() -> Vec<Strategy> {
    Strategy::ALL
        .into_iter()
        .filter(|s| s.implemented())
        .collect()
}

/// Reads `--strategies restart,drain`.
pub fn parse_strategies(text: &str) -> Result<Vec<Strategy>, String> {
    let mut strategies = Vec::new();
    for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let strategy = Strategy::from_name(name).ok_or(format!(
            "--strategies: {name:?} is not a strategy: expected restart, drain, hot or migrate"
        ))?;
        if !strategies.contains(&strategy) {
            strategies.push(strategy);
        }
    }
    if strategies.is_empty() {
        return Err("--strategies: name at least one".into());
    }
    Ok(strategies)
}

/// The scenario with every upgrade event's strategy set to `strategy`, named
/// `<name>-<strategy>`, and checked again; errors name `file` and the key.
pub fn variant(scenario: &Scenario, strategy: Strategy, file: &Path) -> Result<Scenario, String> {
    let mut variant = scenario.clone();
    let mut upgrades = 0;
    for event in &mut variant.events {
        if let Event::Upgrade(fields) = event {
            fields.insert(
                "strategy".into(),
                serde_json::Value::String(strategy.name().into()),
            );
            upgrades += 1;
        }
    }
    if upgrades == 0 {
        return Err(format!(
            "{}: no [[event]] with action = \"upgrade\": a sweep replaces its strategy",
            file.display()
        ));
    }
    variant.name = format!("{}-{}", scenario.name, strategy.name());
    variant
        .validate()
        .map_err(|e| format!("{} (--strategies {strategy}): {e}", file.display()))?;
    Ok(variant)
}

/// Writes a run's summary.json, timeline.csv and report.html into `out`.
pub fn write_outputs(report: &crate::report::Report, out: &Path) -> Result<PathBuf, String> {
    let path = out.join("summary.json");
    let json = serde_json::to_string_pretty(report).map_err(|e| e.to_string())?;
    let write = |path: PathBuf, text: String| {
        std::fs::write(&path, text).map_err(|e| format!("writing {}: {e}", path.display()))
    };
    write(path.clone(), json)?;
    write(out.join("timeline.csv"), report.timeline_csv())?;
    write(out.join("report.html"), crate::html::render(report))?;
    Ok(path)
}

/// `loadgen sweep`: 0 when every run passed its thresholds, 99 when one did not, 2 for an
/// invalid scenario or strategy list, 3 when a run could not be done.
pub fn main(file: &Path, strategies: Option<&str>, out: Option<&Path>) -> ExitCode {
    let scenario = match Scenario::load(file) {
        Ok(scenario) => scenario,
        Err(error) => {
            eprintln!("loadgen sweep: {error}");
            return ExitCode::from(2);
        }
    };
    let strategies = match strategies.map(parse_strategies) {
        None => default_strategies(),
        Some(Ok(list)) => list,
        Some(Err(error)) => {
            eprintln!("loadgen sweep: {error}");
            return ExitCode::from(2);
        }
    };
    // Every variant is checked before the first one runs.
    let variants = match strategies
        .iter()
        .map(|s| variant(&scenario, *s, file).map(|v| (*s, v)))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(variants) => variants,
        Err(error) => {
            eprintln!("loadgen sweep: {error}");
            return ExitCode::from(2);
        }
    };
    let out = out.map_or_else(
        || crate::run::default_out(&format!("{}-sweep", scenario.name)),
        Path::to_path_buf,
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("loadgen sweep: cannot start the runtime: {error}");
            return ExitCode::from(3);
        }
    };
    let mut summaries = Vec::new();
    let mut passed = true;
    for (strategy, variant) in variants {
        let dir = out.join(strategy.name());
        eprintln!(
            "loadgen sweep: {} with strategy {strategy} (seed {}) into {}",
            scenario.name,
            variant.seed,
            dir.display()
        );
        eprint!("{}", variant.plan());
        let report = match runtime.block_on(crate::run::run(variant, &dir)) {
            Ok(report) => report,
            Err(error) => {
                eprintln!("loadgen sweep: {strategy}: {error:#}");
                return ExitCode::from(3);
            }
        };
        print!("{}", report.summary());
        passed &= report.passed();
        match write_outputs(&report, &dir) {
            Ok(path) => summaries.push(path),
            Err(error) => {
                eprintln!("loadgen sweep: {error}");
                return ExitCode::from(3);
            }
        }
    }
    let runs = match crate::compare::load_all(&summaries) {
        Ok(runs) => runs,
        Err(error) => {
            eprintln!("loadgen sweep: {error}");
            return ExitCode::from(3);
        }
    };
    let table = crate::compare::table(&runs);
    println!("\n== sweep: {} ==\n{table}", scenario.name);
    let written = std::fs::write(out.join("compare.txt"), &table)
        .and_then(|()| std::fs::write(out.join("compare.html"), crate::compare::render(&runs)));
    if let Err(error) = written {
        eprintln!("loadgen sweep: writing {}: {error}", out.display());
        return ExitCode::from(3);
    }
    println!(
        "sweep: {} and {}",
        out.join("compare.txt").display(),
        out.join("compare.html").display()
    );
    if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(99)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCENARIO: &str = "schema = 1\nname = \"s\"\nduration = \"10s\"\n[[mix]]\nname = \"m\"\n\
        kind = \"event\"\nweight = 1\n[load]\nconcurrent_sessions = 3\n";

    #[test]
    fn each_strategy_gets_its_variant() {
        let path = Path::new("dir/sweep.toml");
        let with_upgrade = format!(
            "{SCENARIO}[[event]]\nat = \"2s\"\naction = \"upgrade\"\nstrategy = \"restart\"\n\
             drain_timeout = \"1m\"\n"
        );
        let scenario = Scenario::parse(&with_upgrade, path).expect("valid");
        let drain = variant(&scenario, Strategy::Drain, path).expect("drain");
        assert_eq!(drain.name, "s-drain");
        let upgrade = drain.events[0].upgrade().expect("upgrade");
        assert_eq!(upgrade.strategy, Strategy::Drain);
        assert_eq!(upgrade.drain_timeout, std::time::Duration::from_secs(60));
        let hot = variant(&scenario, Strategy::Hot, path).expect("hot");
        assert_eq!(hot.name, "s-hot");
        assert_eq!(
            hot.events[0].upgrade().expect("upgrade").strategy,
            Strategy::Hot
        );
        let plain = Scenario::parse(SCENARIO, path).expect("valid");
        let error = variant(&plain, Strategy::Drain, path).expect_err("no upgrade");
        assert!(error.contains("no [[event]]"), "{error}");
    }

    #[test]
    fn the_strategy_list() {
        assert_eq!(
            default_strategies(),
            [
                Strategy::Restart,
                Strategy::Drain,
                Strategy::Hot,
                Strategy::Migrate
            ]
        );
        assert_eq!(
            parse_strategies("drain, restart,drain"),
            Ok(vec![Strategy::Drain, Strategy::Restart])
        );
        assert!(parse_strategies("blue-green")
            .expect_err("unknown")
            .contains("\"blue-green\""));
        assert!(parse_strategies(",").is_err());
    }
}
