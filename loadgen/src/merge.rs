//! `loadgen merge A.json B.json ...`: combines the reports of the shards of one run
//! (`loadgen run --shard i/N`, see [`crate::shard`]) into the report of the whole run, exactly
//! where it can be exact, and says where it cannot.
//!
//! Exact: request and answer counts, answers by Result-Code, failed requests, sessions by
//! outcome, the books (each shard compares only the accounts it owns, so the sums cover every
//! account once) and every latency percentile of the steps and of the loadgen's lag: each
//! report carries its whole HDR histograms, which are added and the percentiles read from the
//! sum (never averaged). The thresholds are judged again on the merged figures, against the
//! `[slo]` the reports carry.
//!
//! Not exact: the per-second timeline rows are aligned by each shard's own second count since
//! its traffic started; answered, failed, live and lost sessions are summed per second, `max_us`
//! is the largest of the shards' (exact), but `p50_us` and `p99_us` of a second are the
//! largest of the shards' figures: an upper bound of the true percentile of that second, as
//! the rows carry no histograms. `elapsed_seconds` is the longest shard's, and the rate is the
//! total answered over it (the shards are taken to have run at the same time).
//!
//! Refused (exit 2): reports of different scenarios, seeds or shard counts, a shard missing or
//! given twice, a report without histograms (an older loadgen's) or of another report version.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use base64::Engine;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::report::{judge, Outcomes, Report, StepReport, REPORT_VERSION};
use crate::run::{Books, Second, STEPS};

/// Examples of mismatched accounts kept in a merged report.
const EXAMPLES: usize = 10;

/// What a merged report says about itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Merged {
    /// Shard reports merged.
    pub shards: u32,
    /// What is not exact in the merged report.
    pub notes: Vec<String>,
}

/// The notes every merged report carries.
pub fn notes() -> Vec<String> {
    vec![
        "timeline: p50_us and p99_us of each second are the largest of the shards' figures (an \
         upper bound, not the exact percentile: timeline rows carry no histograms); answered, \
         failed, live and lost sessions are summed and max_us is exact"
            .into(),
        "timeline rows are aligned by each shard's own seconds since its traffic started; \
         elapsed_seconds is the longest shard's and the rate is the total over it"
            .into(),
    ]
}

/// A histogram as HdrHistogram's V2 format with deflate, in standard base64 (as in
/// HdrHistogram interval logs); empty if it cannot be serialized.
pub fn encode_histogram(histogram: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    match V2DeflateSerializer::new().serialize(histogram, &mut bytes) {
        Ok(_) => base64::engine::general_purpose::STANDARD.encode(bytes),
        Err(error) => {
            tracing::warn!(?error, "cannot serialize a histogram");
            String::new()
        }
    }
}

/// The histogram [`encode_histogram`] wrote.
pub fn decode_histogram(text: &str) -> Result<Histogram<u64>, String> {
    if text.is_empty() {
        return Err("no histogram".into());
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| format!("histogram: not base64 ({e})"))?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| format!("histogram: not an HdrHistogram V2 encoding ({e:?})"))
}

/// Reads a summary.json.
pub fn load(path: &Path) -> Result<Report, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text)
        .map_err(|e| format!("{}: not a loadgen summary.json ({e})", path.display()))
}

/// Adds up histograms (at least one).
fn add_up(name: &str, what: &str, encoded: &[(&str, &str)]) -> Result<Histogram<u64>, String> {
    let mut sum: Option<Histogram<u64>> = None;
    for (file, text) in encoded {
        let histogram = decode_histogram(text).map_err(|e| {
            format!("{file}: {name} {what}: {e} (a report of an older loadgen cannot be merged exactly)")
        })?;
        match &mut sum {
            None => {
                let mut first = histogram;
                first.auto(true);
                sum = Some(first);
            }
            Some(sum) => sum
                .add(&histogram)
                .map_err(|e| format!("{file}: {name} {what}: {e:?}"))?,
        }
    }
    sum.ok_or_else(|| format!("{name} {what}: no histogram"))
}

/// Merges the reports of all the shards of one run; `inputs` are (file name, report).
pub fn merge(inputs: &[(String, Report)]) -> Result<Report, String> {
    let Some((first_file, first)) = inputs.first() else {
        return Err("no report to merge".into());
    };
    let mut by_index: BTreeMap<u32, &str> = BTreeMap::new();
    let mut count = None;
    for (file, report) in inputs {
        if report.report_version != REPORT_VERSION {
            return Err(format!(
                "{file}: report version {}, this loadgen merges version {REPORT_VERSION}",
                report.report_version
            ));
        }
        if report.scenario != first.scenario || report.seed != first.seed {
            return Err(format!(
                "{file} is scenario {:?} seed {}, but {first_file} is scenario {:?} seed {}: \
                 only the shards of one run merge",
                report.scenario, report.seed, first.scenario, first.seed
            ));
        }
        if report.scenario_digest.is_empty() {
            return Err(format!(
                "{file}: no scenario digest (a report of an older loadgen cannot be merged)"
            ));
        }
        if report.scenario_digest != first.scenario_digest || report.slo != first.slo {
            return Err(format!(
                "{file} and {first_file} ran different versions of scenario {:?} \
                 (digest {} and {}): the shards of one run use the same scenario file",
                report.scenario, report.scenario_digest, first.scenario_digest
            ));
        }
        let Some(shard) = report.shard else {
            return Err(format!(
                "{file}: not a shard report (an already merged report cannot be merged again)"
            ));
        };
        match count {
            None => count = Some(shard.count),
            Some(n) if n != shard.count => {
                return Err(format!(
                    "{file} is shard {shard}, but {first_file} is one of {n} shards"
                ))
            }
            Some(_) => {}
        }
        if let Some(other) = by_index.insert(shard.index, file) {
            return Err(format!("{other} and {file} are both shard {shard}"));
        }
    }
    let count = count.unwrap_or(1);
    let missing: Vec<String> = (0..count)
        .filter(|i| !by_index.contains_key(i))
        .map(|i| format!("{i}/{count}"))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "shard {} missing: merging needs all {count} shards of the run",
            missing.join(", ")
        ));
    }
    let reports: Vec<(&str, &Report)> = inputs.iter().map(|(f, r)| (f.as_str(), r)).collect();

    let mut steps = Vec::new();
    for name in STEPS {
        let parts: Vec<(&str, &StepReport)> = reports
            .iter()
            .flat_map(|(file, r)| {
                r.steps
                    .iter()
                    .filter(|s| s.step == name)
                    .map(|s| (*file, s))
            })
            .collect();
        if parts.is_empty() {
            continue;
        }
        let scheduled = add_up(
            name,
            "scheduled_hist",
            &parts
                .iter()
                .map(|(f, s)| (*f, s.scheduled_hist.as_str()))
                .collect::<Vec<_>>(),
        )?;
        let service = add_up(
            name,
            "service_hist",
            &parts
                .iter()
                .map(|(f, s)| (*f, s.service_hist.as_str()))
                .collect::<Vec<_>>(),
        )?;
        let mut results: BTreeMap<u32, u64> = BTreeMap::new();
        for (_, step) in &parts {
            for (code, n) in &step.results {
                *results.entry(*code).or_default() += n;
            }
        }
        steps.push(StepReport::new(
            name,
            parts.iter().map(|(_, s)| s.sent).sum(),
            parts.iter().map(|(_, s)| s.answered).sum(),
            parts.iter().map(|(_, s)| s.timeouts).sum(),
            results,
            &scheduled,
            &service,
        ));
    }

    let mut sessions = Outcomes::default();
    for (_, r) in &reports {
        sessions.completed += r.sessions.completed;
        sessions.charged_out += r.sessions.charged_out;
        sessions.refused += r.sessions.refused;
        for (why, n) in &r.sessions.lost {
            *sessions.lost.entry(why.clone()).or_default() += n;
        }
    }
    let failed: u64 = reports.iter().map(|(_, r)| r.failed_requests).sum();
    let behind = add_up(
        "loadgen",
        "loadgen_behind_hist",
        &reports
            .iter()
            .map(|(f, r)| (*f, r.loadgen_behind_hist.as_str()))
            .collect::<Vec<_>>(),
    )?;
    let books = merge_books(&reports);
    let elapsed = reports
        .iter()
        .map(|(_, r)| r.elapsed_seconds)
        .fold(0.0, f64::max);
    let answered: u64 = steps.iter().map(|s| s.answered).sum();
    let mut thresholds = judge(&first.slo, &steps, &sessions, failed, &books);
    let timeline = merge_timelines(&reports);
    // Windows are judged again over the merged timeline (its p99 per second is an upper
    // bound, so a window's p99 threshold is judged conservatively).
    let mut slo_windows = first.slo_windows.clone();
    thresholds.extend(crate::windows::judge(
        &first.slo.window,
        &mut slo_windows,
        &timeline,
    ));
    Ok(Report {
        report_version: REPORT_VERSION,
        scenario: first.scenario.clone(),
        seed: first.seed,
        elapsed_seconds: elapsed,
        rate: answered as f64 / elapsed.max(1e-9),
        steps,
        sessions,
        failed_requests: failed,
        loadgen_behind_us: (behind.value_at_quantile(0.99), behind.max()),
        books,
        thresholds,
        timeline,
        shard: None,
        merged: Some(Merged {
            shards: count,
            notes: notes(),
        }),
        scenario_digest: first.scenario_digest.clone(),
        slo: first.slo.clone(),
        loadgen_behind_hist: encode_histogram(&behind),
        events: merge_events(&reports),
        slo_windows,
        pdf_sessions: crate::nodes::merge(
            &reports
                .iter()
                .map(|(_, r)| r.pdf_sessions.as_slice())
                .collect::<Vec<_>>(),
        ),
        gateway_latency: crate::gateway_latency::GatewayLatency::merge(
            &reports
                .iter()
                .filter_map(|(_, r)| r.gateway_latency.as_ref())
                .collect::<Vec<_>>(),
        ),
        // An upgrade's figures are per run: each shard's summary.json keeps its own.
        upgrade: None,
    })
}

/// Every shard's events, in the order they fired (with spawn = true each shard fires them on
/// its own processes; with spawn = false only shard 0 does).
fn merge_events(reports: &[(&str, &Report)]) -> Vec<crate::events::EventRecord> {
    let mut events: Vec<_> = reports
        .iter()
        .flat_map(|(_, r)| {
            let shard = r.shard.unwrap_or(crate::shard::Shard::WHOLE);
            r.events.iter().map(move |e| {
                let mut e = e.clone();
                if shard.is_partial() {
                    e.description = format!("{} (shard {shard})", e.description);
                }
                e
            })
        })
        .collect();
    events.sort_by(|a, b| a.fired_s.total_cmp(&b.fired_s));
    events
}

/// Each shard checked the accounts it owns: the sums cover each account once.
fn merge_books(reports: &[(&str, &Report)]) -> Books {
    let mut books = Books {
        checked: true,
        pdf_books_ok: true,
        ..Default::default()
    };
    let mut errors = Vec::new();
    for (_, r) in reports {
        let shard = r.shard.unwrap_or(crate::shard::Shard::WHOLE);
        books.checked &= r.books.checked;
        books.pdf_books_ok &= r.books.pdf_books_ok;
        books.accounts_compared += r.books.accounts_compared;
        books.accounts_uncertain += r.books.accounts_uncertain;
        books.mismatches += r.books.mismatches;
        books.overcharged += r.books.overcharged;
        books.overcharged_money += r.books.overcharged_money;
        books.undercharged += r.books.undercharged;
        books.undercharged_money += r.books.undercharged_money;
        for example in &r.books.examples {
            if books.examples.len() < EXAMPLES {
                books.examples.push(example.clone());
            }
        }
        if let Some(error) = &r.books.error {
            errors.push(format!("shard {shard}: {error}"));
        }
    }
    if !errors.is_empty() {
        books.error = Some(errors.join("; "));
    }
    books
}

/// Rows summed per second; cumulative lost sessions carried past a shard's last row.
fn merge_timelines(reports: &[(&str, &Report)]) -> Vec<Second> {
    let last = reports
        .iter()
        .filter_map(|(_, r)| r.timeline.iter().map(|s| s.second).max())
        .max()
        .unwrap_or(0);
    let mut rows: BTreeMap<u64, Second> = BTreeMap::new();
    for (_, report) in reports {
        let by_second: HashMap<u64, &Second> =
            report.timeline.iter().map(|s| (s.second, s)).collect();
        let mut lost_so_far = 0;
        for second in 1..=last {
            let row = rows.entry(second).or_insert_with(|| Second {
                second,
                answered: 0,
                failed: 0,
                live_sessions: 0,
                lost_sessions: 0,
                p50_us: 0,
                p99_us: 0,
                max_us: 0,
            });
            match by_second.get(&second) {
                Some(s) => {
                    row.answered += s.answered;
                    row.failed += s.failed;
                    row.live_sessions += s.live_sessions;
                    lost_so_far = s.lost_sessions;
                    row.lost_sessions += s.lost_sessions;
                    row.p50_us = row.p50_us.max(s.p50_us);
                    row.p99_us = row.p99_us.max(s.p99_us);
                    row.max_us = row.max_us.max(s.max_us);
                }
                None => row.lost_sessions += lost_so_far,
            }
        }
    }
    rows.into_values().collect()
}

/// `loadgen merge FILES [--out DIR]`: prints the merged summary, writes DIR/summary.json,
/// DIR/timeline.csv, DIR/report.html and DIR/latency.hlog (the shards' interval logs, found
/// beside their summary.json, added up); exits 0 (thresholds held), 2 (unreadable or unmergeable reports),
/// 3 (cannot write) or 99 (thresholds breached).
pub fn main(files: &[PathBuf], out: Option<&Path>) -> ExitCode {
    let mut inputs = Vec::new();
    for file in files {
        match load(file) {
            Ok(report) => inputs.push((file.display().to_string(), report)),
            Err(error) => {
                eprintln!("loadgen merge: {error}");
                return ExitCode::from(2);
            }
        }
    }
    let report = match merge(&inputs) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("loadgen merge: {error}");
            return ExitCode::from(2);
        }
    };
    print!("{}", report.summary());
    for note in report.merged.iter().flat_map(|m| &m.notes) {
        println!("note: {note}");
    }
    let out = out.map_or_else(
        || crate::run::default_out(&format!("{}-merged", report.scenario)),
        Path::to_path_buf,
    );
    let written = std::fs::create_dir_all(&out)
        .and_then(|()| {
            let json = serde_json::to_string_pretty(&report).map_err(std::io::Error::other)?;
            std::fs::write(out.join("summary.json"), json)
        })
        .and_then(|()| std::fs::write(out.join("timeline.csv"), report.timeline_csv()))
        .and_then(|()| std::fs::write(out.join("report.html"), crate::html::render(&report)));
    if let Err(error) = written {
        eprintln!("loadgen merge: writing to {}: {error}", out.display());
        return ExitCode::from(3);
    }
    // The interval logs beside the shards' summary.json files, added up second by second.
    let logs: Vec<PathBuf> = files
        .iter()
        .map(|f| f.with_file_name("latency.hlog"))
        .collect();
    let hlog = out.join("latency.hlog");
    let hlog_note = if let Some(missing) = logs.iter().find(|l| !l.exists()) {
        let _ = std::fs::remove_file(&hlog);
        format!("no interval log: {} is missing", missing.display())
    } else if let Err(error) = crate::hlog::merge(&logs, &hlog, &report.scenario) {
        eprintln!("loadgen merge: the interval logs: {error:#}");
        return ExitCode::from(2);
    } else {
        hlog.display().to_string()
    };
    println!(
        "report: {}, {}, {}; {hlog_note}",
        out.join("summary.json").display(),
        out.join("timeline.csv").display(),
        out.join("report.html").display(),
    );
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(99)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Percentiles;
    use crate::scenario::{Slo, Span};
    use crate::shard::Shard;
    use std::time::Duration;

    fn histogram(values: impl IntoIterator<Item = u64>) -> Histogram<u64> {
        let mut h = Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("bounds");
        for v in values {
            h.record(v).expect("in range");
        }
        h
    }

    fn report(index: u32, count: u32, values: &[u64], seconds: &[(u64, u64)]) -> Report {
        let h = histogram(values.iter().copied());
        let step = StepReport::new(
            "START",
            values.len() as u64 + 1,
            values.len() as u64,
            1,
            BTreeMap::from([(2001, values.len() as u64)]),
            &h,
            &h,
        );
        Report {
            report_version: REPORT_VERSION,
            scenario: "synthetic".into(),
            seed: 7,
            elapsed_seconds: 5.0 + f64::from(index),
            rate: 0.0,
            steps: vec![step],
            sessions: Outcomes {
                completed: 10,
                charged_out: 1,
                refused: 0,
                lost: BTreeMap::from([("timeout".to_owned(), 1)]),
            },
            failed_requests: 1,
            loadgen_behind_us: (0, 0),
            books: Books {
                checked: true,
                accounts_compared: 100 + u64::from(index),
                accounts_uncertain: 1,
                mismatches: 0,
                examples: vec![],
                pdf_books_ok: true,
                error: None,
                ..Default::default()
            },
            thresholds: vec![],
            timeline: seconds
                .iter()
                .map(|&(second, answered)| Second {
                    second,
                    answered,
                    failed: 0,
                    live_sessions: 10,
                    lost_sessions: second,
                    p50_us: 100 * u64::from(index + 1),
                    p99_us: 1000 * u64::from(index + 1),
                    max_us: 2000 * u64::from(index + 1),
                })
                .collect(),
            shard: Some(Shard { index, count }),
            merged: None,
            scenario_digest: "0123456789abcdef".into(),
            slo: Slo {
                dropped_sessions: Some(2),
                p99_latency: Some(Span(Duration::from_millis(40))),
                ..Default::default()
            },
            loadgen_behind_hist: encode_histogram(&histogram([5, 10])),
            events: vec![crate::events::EventRecord {
                at_s: 2.0,
                fired_s: 2.0 + f64::from(count - index) / 100.0,
                action: "set_weight".into(),
                description: "set_weight pdf0 = 0".into(),
                outcome: "ok".into(),
                detail: "HTTP 200".into(),
                exit_status: None,
                took_s: 0.001,
            }],
            slo_windows: Vec::new(),
            pdf_sessions: Vec::new(),
            gateway_latency: None,
            upgrade: None,
        }
    }

    fn values(seed: u64, n: usize, scale: u64) -> Vec<u64> {
        let mut rng = fastrand::Rng::with_seed(seed);
        (0..n).map(|_| 1 + rng.u64(0..scale)).collect()
    }

    #[test]
    fn histograms_round_trip() {
        let h = histogram(values(1, 10_000, 1_000_000));
        let back = decode_histogram(&encode_histogram(&h)).expect("decode");
        assert_eq!(back, h);
        assert!(decode_histogram("").is_err());
        assert!(decode_histogram("not base64!").is_err());
    }

    #[test]
    fn merged_percentiles_are_those_of_one_histogram_fed_all_values() {
        // Two shards with different latencies: averaging their percentiles would be wrong.
        let fast = values(1, 20_000, 2_000);
        let slow = values(2, 5_000, 60_000);
        let a = report(0, 2, &fast, &[(1, 10), (2, 20), (3, 30)]);
        let b = report(1, 2, &slow, &[(1, 1), (2, 2)]);
        let merged =
            merge(&[("b.json".into(), b.clone()), ("a.json".into(), a.clone())]).expect("merge");
        let all = histogram(fast.iter().chain(&slow).copied());
        let want = Percentiles::of(&all);
        let start = &merged.steps[0];
        assert_eq!(start.step, "START");
        for (got, want) in [
            (start.scheduled_us.p50, want.p50),
            (start.scheduled_us.p90, want.p90),
            (start.scheduled_us.p99, want.p99),
            (start.scheduled_us.p999, want.p999),
            (start.scheduled_us.max, want.max),
            (start.service_us.p99, want.p99),
        ] {
            assert_eq!(got, want);
        }
        assert_eq!(decode_histogram(&start.scheduled_hist).expect("hist"), all);
        let averaged = (a.steps[0].scheduled_us.p99 + b.steps[0].scheduled_us.p99) / 2;
        assert_ne!(start.scheduled_us.p99, averaged);

        // Counts are sums.
        assert_eq!(start.sent, (fast.len() + slow.len()) as u64 + 2);
        assert_eq!(start.answered, (fast.len() + slow.len()) as u64);
        assert_eq!(start.timeouts, 2);
        assert_eq!(start.results[&2001], (fast.len() + slow.len()) as u64);
        assert_eq!(merged.sessions.completed, 20);
        assert_eq!(merged.sessions.dropped(), 2);
        assert_eq!(merged.failed_requests, 2);
        assert_eq!(merged.books.accounts_compared, 201);
        assert_eq!(merged.books.accounts_uncertain, 2);
        assert!(merged.books.pdf_books_ok && merged.books.error.is_none());
        assert_eq!(merged.elapsed_seconds, 6.0);
        assert_eq!(merged.loadgen_behind_us.1, histogram([5, 10, 5, 10]).max());
        assert_eq!(merged.merged.as_ref().map(|m| m.shards), Some(2));
        assert!(merged.shard.is_none());
        // Each shard's events, in the order they fired, named by shard.
        let events: Vec<&str> = merged
            .events
            .iter()
            .map(|e| e.description.as_str())
            .collect();
        assert_eq!(
            events,
            [
                "set_weight pdf0 = 0 (shard 1/2)",
                "set_weight pdf0 = 0 (shard 0/2)"
            ]
        );

        // Thresholds judged again on the merged figures: 2 dropped <= 2, but the slow
        // shard's latency breaks the 40 ms p99 the fast one alone would pass.
        let verdicts: BTreeMap<&str, bool> = merged
            .thresholds
            .iter()
            .map(|v| (v.threshold.as_str(), v.passed))
            .collect();
        assert!(verdicts["dropped_sessions"]);
        assert_eq!(verdicts["p99_latency"], want.p99 <= 40_000);

        // Timeline: summed per second, cumulative losses carried, percentiles the max.
        let rows: Vec<(u64, u64, u64, u64)> = merged
            .timeline
            .iter()
            .map(|r| (r.second, r.answered, r.live_sessions, r.lost_sessions))
            .collect();
        assert_eq!(rows, vec![(1, 11, 20, 2), (2, 22, 20, 4), (3, 30, 10, 5)]);
        assert_eq!(merged.timeline[0].p99_us, 2000);
        assert_eq!(merged.timeline[2].p99_us, 1000);

        // The merged report survives its own JSON.
        let json = serde_json::to_string(&merged).expect("json");
        let back: Report = serde_json::from_str(&json).expect("read back");
        assert_eq!(back.steps[0].scheduled_us.p99, want.p99);
        assert_eq!(back.merged, merged.merged);
    }

    #[test]
    fn refuses_what_is_not_one_whole_run() {
        let values = [100, 200, 300];
        let a = report(0, 2, &values, &[]);
        let b = report(1, 2, &values, &[]);
        let refuse = |inputs: Vec<(&str, Report)>, needle: &str| {
            let inputs: Vec<(String, Report)> =
                inputs.into_iter().map(|(f, r)| (f.to_owned(), r)).collect();
            let error = merge(&inputs).expect_err("refused");
            assert!(error.contains(needle), "{error:?} lacks {needle:?}");
        };
        let mut other = b.clone();
        other.scenario = "busy-hour".into();
        refuse(vec![("a", a.clone()), ("other", other)], "busy-hour");
        let mut seed = b.clone();
        seed.seed = 8;
        refuse(vec![("a", a.clone()), ("seed", seed)], "seed 8");
        let mut edited = b.clone();
        edited.scenario_digest = "fedcba9876543210".into();
        refuse(
            vec![("a", a.clone()), ("edited", edited)],
            "different versions",
        );
        refuse(vec![("a", a.clone()), ("a2", a.clone())], "both shard 0/2");
        refuse(vec![("a", a.clone())], "shard 1/2 missing");
        let three = report(1, 3, &values, &[]);
        refuse(vec![("a", a.clone()), ("three", three)], "one of 2 shards");
        let mut old = b.clone();
        old.steps[0].scheduled_hist.clear();
        refuse(
            vec![("a", a.clone()), ("old", old)],
            "old: START scheduled_hist",
        );
        let merged = merge(&[("a".into(), a.clone()), ("b".into(), b.clone())]).expect("ok");
        refuse(vec![("m", merged)], "already merged");
        refuse(vec![], "no report");
        // And a lone whole run merges to itself.
        let whole = report(0, 1, &values, &[(1, 3)]);
        let same = merge(&[("w".into(), whole.clone())]).expect("0/1 alone");
        assert_eq!(
            same.steps[0].scheduled_us.p99,
            whole.steps[0].scheduled_us.p99
        );
    }
}
