//! `loadgen compare A.json B.json ...`: several runs' summary.json side by side (for example
//! one per upgrade strategy): a table on stdout, one column per run, and with `--out DIR` a
//! page, DIR/compare.html, with the table and the runs' timelines overlaid.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::html::{self, escape, line_chart, Scale, Series, PALETTE, STYLE};
use crate::report::{Report, REPORT_VERSION};

/// One run to compare.
#[derive(Clone, Debug)]
pub struct Run {
    /// The summary.json it came from.
    pub path: PathBuf,
    /// Its column header and legend entry: the scenario name, made unique with the run's
    /// position when two runs share it.
    pub label: String,
    /// The report.
    pub report: Report,
}

/// Reads one summary.json; the error names the file.
pub fn load(path: &Path) -> Result<Report, String> {
    let name = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: cannot read: {e}"))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("{name}: not a summary.json (not JSON: {e})"))?;
    let version = value
        .get("report_version")
        .ok_or_else(|| format!("{name}: not a summary.json (no report_version)"))?;
    if version.as_u64() != Some(u64::from(REPORT_VERSION)) {
        return Err(format!(
            "{name}: report_version {version}, this loadgen reads version {REPORT_VERSION}"
        ));
    }
    serde_json::from_value(value).map_err(|e| format!("{name}: not a summary.json ({e})"))
}

/// Reads every file, in order, and labels the runs.
pub fn load_all(paths: &[PathBuf]) -> Result<Vec<Run>, String> {
    let reports = paths
        .iter()
        .map(|path| load(path))
        .collect::<Result<Vec<_>, _>>()?;
    let runs = paths
        .iter()
        .zip(reports)
        .map(|(path, report)| Run {
            path: path.clone(),
            label: report.scenario.clone(),
            report,
        })
        .collect();
    Ok(unique_labels(runs))
}

/// Appends " #position" to labels that two runs share.
fn unique_labels(mut runs: Vec<Run>) -> Vec<Run> {
    let labels: Vec<String> = runs.iter().map(|r| r.label.clone()).collect();
    for (i, run) in runs.iter_mut().enumerate() {
        if labels.iter().filter(|l| **l == labels[i]).count() > 1 {
            run.label = format!("{} #{}", labels[i], i + 1);
        }
    }
    runs
}

/// One row of the table: a heading and one cell per run; `verdict` rows are coloured.
struct Row {
    heading: String,
    cells: Vec<String>,
    verdict: bool,
}

fn rows(runs: &[Run]) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut row = |heading: &str, cell: &dyn Fn(&Report) -> String| {
        rows.push(Row {
            heading: heading.to_owned(),
            cells: runs.iter().map(|r| cell(&r.report)).collect(),
            verdict: false,
        });
    };
    row("scenario", &|r| r.scenario.clone());
    row("seed", &|r| r.seed.to_string());
    row("elapsed s", &|r| format!("{:.1}", r.elapsed_seconds));
    row("rate req/s", &|r| format!("{:.0}", r.rate));
    let mut steps: Vec<&str> = Vec::new();
    for run in runs {
        for step in &run.report.steps {
            if !steps.contains(&step.step.as_str()) {
                steps.push(&step.step);
            }
        }
    }
    for step in steps {
        row(&format!("p99 {step} ms"), &|r| {
            r.steps
                .iter()
                .find(|s| s.step == step)
                .map_or_else(|| "-".to_owned(), |s| html::ms(s.scheduled_us.p99))
        });
    }
    row("sessions completed", &|r| r.sessions.completed.to_string());
    row("ended by charging", &|r| r.sessions.charged_out.to_string());
    row("refused", &|r| r.sessions.refused.to_string());
    row("lost (infrastructure)", &|r| {
        r.sessions.dropped().to_string()
    });
    let reasons: BTreeSet<&String> = runs
        .iter()
        .flat_map(|r| r.report.sessions.lost.keys())
        .collect();
    for reason in reasons {
        row(&format!("  lost: {reason}"), &|r| {
            r.sessions
                .lost
                .get(reason)
                .copied()
                .unwrap_or(0)
                .to_string()
        });
    }
    row("failed requests", &|r| r.failed_requests.to_string());
    row(
        "books mismatches",
        &|r| match (&r.books.error, r.books.pdf_books_ok) {
            (Some(_), _) => "unchecked".to_owned(),
            (None, true) => r.books.mismatches.to_string(),
            (None, false) => format!("{} (pdf check FAILED)", r.books.mismatches),
        },
    );
    if runs.iter().any(|r| r.report.upgrade.is_some()) {
        upgrade_rows(&mut row);
    }
    row("thresholds failed", &|r| {
        let failed: Vec<&str> = r
            .thresholds
            .iter()
            .filter(|t| !t.passed)
            .map(|t| t.threshold.as_str())
            .collect();
        if failed.is_empty() {
            "-".to_owned()
        } else {
            failed.join(",")
        }
    });
    row("result", &|r| {
        if r.passed() { "pass" } else { "FAIL" }.to_owned()
    });
    if let Some(last) = rows.last_mut() {
        last.verdict = true;
    }
    rows
}

/// The rows of an upgrade comparison (issue 7): what each strategy cost.
/// A cell of the table, from a run's report.
type Cell<'a> = &'a dyn Fn(&Report) -> String;

fn upgrade_rows(row: &mut dyn FnMut(&str, Cell<'_>)) {
    use crate::upgrade::UpgradeReport;
    fn cell<'a>(f: &'a dyn Fn(&UpgradeReport) -> String) -> impl Fn(&Report) -> String + 'a {
        move |r: &Report| r.upgrade.as_ref().map_or_else(|| "-".to_owned(), f)
    }
    let seconds = |s: Option<f64>| s.map_or_else(|| "-".to_owned(), |s| format!("{s:.2}"));
    row("upgrade", &cell(&|u| u.strategies.join("+")));
    row(
        "  time to complete s",
        &cell(&|u| u.completed_s.map_or("FAILED".into(), |s| format!("{s:.2}"))),
    );
    row(
        "  drain s",
        &cell(&|u| seconds(u.upgrades.iter().filter_map(|x| x.drain_s).reduce(f64::max))),
    );
    row(
        "  both versions live s",
        &cell(&|u| {
            seconds(
                u.upgrades
                    .iter()
                    .filter_map(|x| x.side_by_side_s)
                    .reduce(f64::max),
            )
        }),
    );
    row("  sessions cut", &cell(&|u| u.sessions_cut.to_string()));
    row(
        "  requests failed/timed out",
        &cell(&|u| format!("{}/{}", u.failed_requests, u.timeouts)),
    );
    row(
        "  pause ms",
        &cell(&|u| u.pause.map_or("-".into(), |g| g.ms.to_string())),
    );
    row(
        "  gap before ms",
        &cell(&|u| u.gap_before.map_or("-".into(), |g| g.ms.to_string())),
    );
    row(
        "  p99 before/during ms",
        &cell(&|u| {
            format!(
                "{}/{}",
                html::ms(u.latency_before.p99_us),
                html::ms(u.latency_during.p99_us)
            )
        }),
    );
    row(
        "  max before/during ms",
        &cell(&|u| {
            format!(
                "{}/{}",
                html::ms(u.latency_before.max_us),
                html::ms(u.latency_during.max_us)
            )
        }),
    );
    row(
        "  connections closed",
        &cell(&|u| u.connections_closed.map_or("?".into(), |c| c.to_string())),
    );
    row(
        "  charged twice (accounts/money)",
        &cell(&|u| format!("{}/{}", u.overcharged_accounts, u.overcharged_money)),
    );
    row(
        "  lost (accounts/money)",
        &cell(&|u| format!("{}/{}", u.undercharged_accounts, u.undercharged_money)),
    );
    row(
        "  longest s below SLO",
        &cell(&|u| u.longest_below_slo_s.to_string()),
    );
    row(
        "  split-brain accounts",
        &cell(&|u| {
            u.split_brain.as_ref().map_or("-".into(), |s| {
                format!(
                    "{} ({} overdrawn)",
                    s.accounts_on_both, s.overdrawn_accounts
                )
            })
        }),
    );
}

/// The side-by-side table as text, one column per run.
pub fn table(runs: &[Run]) -> String {
    let rows = rows(runs);
    let first = rows
        .iter()
        .map(|r| r.heading.chars().count())
        .max()
        .unwrap_or(0);
    let widths: Vec<usize> = runs
        .iter()
        .enumerate()
        .map(|(i, run)| {
            rows.iter()
                .map(|r| r.cells[i].chars().count())
                .chain([run.label.chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut text = String::new();
    for (i, run) in runs.iter().enumerate() {
        let _ = writeln!(
            text,
            "run {}: {} ({})",
            i + 1,
            run.label,
            run.path.display()
        );
    }
    let _ = write!(text, "{:<first$}", "");
    for (run, width) in runs.iter().zip(&widths) {
        let _ = write!(text, "  {:>width$}", run.label);
    }
    text.push('\n');
    for row in &rows {
        let _ = write!(text, "{:<first$}", row.heading);
        for (cell, width) in row.cells.iter().zip(&widths) {
            let _ = write!(text, "  {cell:>width$}");
        }
        text.push('\n');
    }
    text
}

/// The compare page: the table and the runs' timelines overlaid.
pub fn render(runs: &[Run]) -> String {
    let names: Vec<String> = runs.iter().map(|r| escape(&r.label)).collect();
    let mut page = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>loadgen compare: {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>loadgen compare: {} runs</h1>\n<ul>\n",
        names.join(", "),
        runs.len()
    );
    for (run, name) in runs.iter().zip(&names) {
        let _ = writeln!(
            page,
            "<li><b>{name}</b>: <code>{}</code></li>",
            escape(&run.path.display().to_string())
        );
    }
    page += "</ul>\n<table>\n<tr><th></th>";
    for name in &names {
        let _ = write!(page, "<th>{name}</th>");
    }
    page += "</tr>\n";
    for row in rows(runs) {
        let _ = write!(page, "<tr><th>{}</th>", escape(&row.heading));
        for cell in &row.cells {
            let class = match (row.verdict, cell.as_str()) {
                (true, "pass") => "n pass",
                (true, _) => "n fail",
                _ => "n",
            };
            let _ = write!(page, "<td class=\"{class}\">{}</td>", escape(cell));
        }
        page += "</tr>\n";
    }
    page += "</table>\n<h2>Timelines</h2>\n";
    let series = |value: &dyn Fn(&crate::run::Second) -> f64| -> Vec<Series> {
        runs.iter()
            .enumerate()
            .map(|(i, run)| Series {
                name: run.label.clone(),
                color: PALETTE[i % PALETTE.len()],
                points: html::timeline_points(&run.report.timeline, value),
            })
            .collect()
    };
    page += &line_chart(
        "Throughput per second (answered)",
        "requests/s",
        &series(&|r| r.answered as f64),
        Scale::Count,
    );
    let p99 = series(&|r| html::latency_ms(r, r.p99_us));
    let scale = html::latency_scale(p99.iter().flat_map(|s| s.points.iter().map(|p| p.1)));
    page += &line_chart(
        "p99 latency per second (scheduled, from the intended send time)",
        "ms",
        &p99,
        scale,
    );
    page += &line_chart(
        "Sessions lost to the infrastructure (cut), cumulative",
        "sessions",
        &series(&|r| r.lost_sessions as f64),
        Scale::Count,
    );
    let _ = write!(
        page,
        "<footer>\n<p>Written by loadgen {} compare. Lines are aligned on the second since \
         each run's traffic started.</p>\n{}</footer>\n</body>\n</html>\n",
        env!("CARGO_PKG_VERSION"),
        html::NOT_PLOTTED
    );
    page
}

/// `loadgen compare FILES [--out DIR]`: 0 when every file was read, 2 when one is missing
/// or not a summary.json (the message names it), 3 when the page cannot be written.
pub fn main(files: &[PathBuf], out: Option<&Path>) -> ExitCode {
    let runs = match load_all(files) {
        Ok(runs) => runs,
        Err(error) => {
            eprintln!("loadgen compare: {error}");
            return ExitCode::from(2);
        }
    };
    print!("{}", table(&runs));
    if let Some(dir) = out {
        let path = dir.join("compare.html");
        if let Err(error) =
            std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&path, render(&runs)))
        {
            eprintln!("loadgen compare: writing {}: {error}", path.display());
            return ExitCode::from(3);
        }
        println!("report: {}", path.display());
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::html::sample_report;

    fn write(dir: &Path, file: &str, report: &Report) -> PathBuf {
        let path = dir.join(file);
        std::fs::write(&path, serde_json::to_string_pretty(report).expect("json")).expect("write");
        path
    }

    #[test]
    fn two_runs_side_by_side() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = write(dir.path(), "a.json", &sample_report("rolling", 1500, 0));
        let b = write(
            dir.path(),
            "b.json",
            &sample_report("blue<green>", 90_000, 12),
        );
        let runs = load_all(&[a, b]).expect("load");
        assert_eq!(runs[0].report.steps[0].results.get(&2001), Some(&298));
        let text = table(&runs);
        let lines: Vec<&str> = text.lines().collect();
        let row = |heading: &str| {
            lines
                .iter()
                .find(|l| l.starts_with(heading))
                .unwrap_or_else(|| panic!("{heading} in\n{text}"))
                .split_whitespace()
                .collect::<Vec<_>>()
        };
        assert!(lines[2].contains("rolling") && lines[2].contains("blue<green>"));
        assert_eq!(row("p99 START ms")[3..], ["1.50", "90.00"]);
        assert_eq!(row("p99 STOP ms")[3..], ["1.50", "90.00"]);
        assert_eq!(row("lost (infrastructure)")[2..], ["0", "12"]);
        assert_eq!(row("  lost: link_broken")[2..], ["0", "12"]);
        assert_eq!(row("failed requests")[2..], ["3", "3"]);
        assert_eq!(row("books mismatches")[2..], ["0", "0"]);
        assert_eq!(row("rate req/s")[2..], ["1234", "1234"]);
        assert_eq!(row("result")[1..], ["pass", "FAIL"]);
        assert_eq!(row("thresholds failed")[2..], ["-", "dropped_sessions"]);

        let page = render(&runs);
        assert!(page.contains("blue&lt;green&gt;"));
        assert!(!page.contains("blue<green>"));
        assert_eq!(page.matches("<svg").count(), 3);
        assert!(page.contains("<td class=\"n fail\">FAIL</td>"));
        assert!(page.contains("p99 latency per second"));
    }

    #[test]
    fn upgrade_runs_show_what_each_strategy_cost() {
        use crate::upgrade::{Gap, SplitBrain, UpgradeRecord, UpgradeReport, WindowLatency};
        let dir = tempfile::tempdir().expect("tempdir");
        let mut restart = sample_report("sweep-restart", 1500, 299);
        restart.upgrade = Some(UpgradeReport {
            strategies: vec!["restart".into()],
            upgrades: vec![UpgradeRecord {
                strategy: "restart".into(),
                ok: true,
                took_s: 0.04,
                ..Default::default()
            }],
            completed_s: Some(0.04),
            sessions_cut: 299,
            failed_requests: 300,
            timeouts: 1,
            pause: Some(Gap { ms: 58, at_s: 2.0 }),
            latency_before: WindowLatency {
                p99_us: 13_710,
                max_us: 24_980,
                ..Default::default()
            },
            latency_during: WindowLatency {
                p99_us: 45_630,
                max_us: 69_890,
                ..Default::default()
            },
            connections_closed: Some(2),
            longest_below_slo_s: 2,
            ..Default::default()
        });
        let mut drain = sample_report("sweep-drain", 1500, 0);
        drain.upgrade = Some(UpgradeReport {
            strategies: vec!["drain".into()],
            upgrades: vec![UpgradeRecord {
                strategy: "drain".into(),
                ok: true,
                drain_s: Some(3.67),
                side_by_side_s: Some(3.73),
                ..Default::default()
            }],
            completed_s: Some(3.75),
            connections_closed: Some(2),
            split_brain: Some(SplitBrain {
                accounts_on_both: 483,
                overdrawn_accounts: 6,
                ..Default::default()
            }),
            ..Default::default()
        });
        let plain = sample_report("smoke", 1000, 0);
        let paths = [
            write(dir.path(), "r.json", &restart),
            write(dir.path(), "d.json", &drain),
            write(dir.path(), "p.json", &plain),
        ];
        let text = table(&load_all(&paths).expect("load"));
        let row = |heading: &str| {
            text.lines()
                .find(|l| l.starts_with(heading))
                .unwrap_or_else(|| panic!("{heading} in\n{text}"))
                .split_whitespace()
                .rev()
                .take(3)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
        };
        assert_eq!(row("upgrade"), ["restart", "drain", "-"]);
        assert_eq!(row("  time to complete s"), ["0.04", "3.75", "-"]);
        assert_eq!(row("  drain s"), ["-", "3.67", "-"]);
        assert_eq!(row("  both versions live s"), ["-", "3.73", "-"]);
        assert_eq!(row("  sessions cut"), ["299", "0", "-"]);
        assert_eq!(row("  requests failed/timed out"), ["300/1", "0/0", "-"]);
        assert_eq!(row("  pause ms"), ["58", "-", "-"]);
        assert_eq!(
            row("  p99 before/during ms"),
            ["13.71/45.63", "0.00/0.00", "-"]
        );
        assert_eq!(row("  connections closed"), ["2", "2", "-"]);
        assert_eq!(row("  longest s below SLO"), ["2", "0", "-"]);
        assert!(text.contains("483 (6 overdrawn)"), "{text}");
        // Without an upgrade, no upgrade rows.
        let text = table(&load_all(&paths[2..]).expect("load"));
        assert!(!text.contains("pause ms"), "{text}");
    }

    #[test]
    fn the_same_run_twice_gets_two_labels() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = write(dir.path(), "a.json", &sample_report("smoke", 1000, 0));
        let runs = load_all(&[a.clone(), a]).expect("load");
        assert_eq!(runs[0].label, "smoke #1");
        assert_eq!(runs[1].label, "smoke #2");
    }

    #[test]
    fn bad_files_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = write(dir.path(), "good.json", &sample_report("x", 1000, 0));
        let missing = dir.path().join("missing.json");
        let not_json = dir.path().join("notes.txt");
        std::fs::write(&not_json, "hello").expect("write");
        let other = dir.path().join("other.json");
        std::fs::write(&other, "{\"name\": 1}").expect("write");
        let future = dir.path().join("future.json");
        std::fs::write(&future, "{\"report_version\": 99}").expect("write");
        let broken = dir.path().join("broken.json");
        std::fs::write(&broken, "{\"report_version\": 1, \"scenario\": \"x\"}").expect("write");
        for (path, expected) in [
            (&missing, "cannot read"),
            (&not_json, "not JSON"),
            (&other, "no report_version"),
            (&future, "report_version 99"),
            (&broken, "missing field"),
        ] {
            let error = load_all(&[good.clone(), path.clone()]).expect_err("error");
            assert!(
                error.contains(&path.display().to_string()) && error.contains(expected),
                "{error}"
            );
        }
    }
}
