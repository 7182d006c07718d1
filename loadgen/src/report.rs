//! The report: a terminal summary a person reads in ten seconds, and `summary.json`
//! (versioned) for machines; thresholds decide the exit status.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::run::{Books, Stats};
use crate::scenario::Scenario;

/// The report format's version.
pub const REPORT_VERSION: u32 = 1;

/// How sessions ended.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Outcomes {
    /// Ran their course.
    pub completed: u64,
    /// Ended by a charging decision (4012, or ASR with Termination-Cause ADMINISTRATIVE).
    pub charged_out: u64,
    /// Refused at START (unknown subscriber and the like).
    pub refused: u64,
    /// Lost to the infrastructure, by reason (link_broken, session_timeout, no_pdf,
    /// unknown_session, timeout, error): what upgrade strategies are judged by.
    pub lost: BTreeMap<String, u64>,
}

impl Outcomes {
    /// Sessions lost to the infrastructure.
    pub fn dropped(&self) -> u64 {
        self.lost.values().sum()
    }
}

/// Latency percentiles in microseconds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Percentiles {
    /// Median.
    pub p50: u64,
    /// 90th.
    pub p90: u64,
    /// 99th.
    pub p99: u64,
    /// 99.9th.
    pub p999: u64,
    /// Largest.
    pub max: u64,
}

impl Percentiles {
    /// The percentiles of a histogram.
    pub fn of(h: &Histogram<u64>) -> Self {
        Self {
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// One step's figures.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StepReport {
    /// START, INTERIM, STOP or EVENT.
    pub step: String,
    /// Requests sent.
    pub sent: u64,
    /// Answers received.
    pub answered: u64,
    /// No answer (timeout or connection loss).
    pub timeouts: u64,
    /// Answers by Result-Code.
    pub results: BTreeMap<u32, u64>,
    /// Latency from the intended send time.
    pub scheduled_us: Percentiles,
    /// Latency from the actual send.
    pub service_us: Percentiles,
    /// The whole `scheduled_us` histogram (HdrHistogram V2 + deflate, base64): what
    /// `loadgen merge` adds up exactly.
    #[serde(default)]
    pub scheduled_hist: String,
    /// The whole `service_us` histogram, in the same encoding.
    #[serde(default)]
    pub service_hist: String,
}

impl StepReport {
    /// Builds a step's report.
    pub fn new(
        step: &str,
        sent: u64,
        answered: u64,
        timeouts: u64,
        results: BTreeMap<u32, u64>,
        scheduled: &Histogram<u64>,
        service: &Histogram<u64>,
    ) -> Self {
        Self {
            step: step.to_owned(),
            sent,
            answered,
            timeouts,
            results,
            scheduled_us: Percentiles::of(scheduled),
            service_us: Percentiles::of(service),
            scheduled_hist: crate::merge::encode_histogram(scheduled),
            service_hist: crate::merge::encode_histogram(service),
        }
    }
}

/// A threshold and whether it held.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Verdict {
    /// The `[slo]` key.
    pub threshold: String,
    /// Its limit.
    pub limit: String,
    /// What was measured.
    pub measured: String,
    /// Whether it held.
    pub passed: bool,
}

/// The whole report (summary.json).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    /// Format version.
    pub report_version: u32,
    /// Scenario name.
    pub scenario: String,
    /// Seed.
    pub seed: u64,
    /// Seconds the run took.
    pub elapsed_seconds: f64,
    /// Requests answered per second.
    pub rate: f64,
    /// Per step.
    pub steps: Vec<StepReport>,
    /// Sessions by outcome.
    pub sessions: Outcomes,
    /// Requests failed.
    pub failed_requests: u64,
    /// How far behind its schedule the loadgen sent: p99 and max, microseconds.
    pub loadgen_behind_us: (u64, u64),
    /// The books check.
    pub books: Books,
    /// The thresholds.
    pub thresholds: Vec<Verdict>,
    /// One row per second of traffic.
    pub timeline: Vec<crate::run::Second>,
    /// The shard of the population this run covered (`0/1`: all of it); absent in a
    /// merged report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<crate::shard::Shard>,
    /// A merged report: how many shard reports went into it, and what is not exact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged: Option<crate::merge::Merged>,
    /// The scenario's fingerprint ([`crate::shard::scenario_digest`]): shards of one run
    /// share it.
    #[serde(default)]
    pub scenario_digest: String,
    /// The scenario's thresholds, for `loadgen merge` to judge the merged figures.
    #[serde(default)]
    pub slo: crate::scenario::Slo,
    /// The `loadgen_behind_us` histogram (HdrHistogram V2 + deflate, base64).
    #[serde(default)]
    pub loadgen_behind_hist: String,
    /// The timeline events that fired: when and with what outcome (none in older reports).
    #[serde(default)]
    pub events: Vec<crate::events::EventRecord>,
    /// The `[[slo.window]]` windows resolved to offsets, with the seconds each was judged
    /// over (their verdicts are in `thresholds`, named `<window>.<threshold>`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slo_windows: Vec<crate::windows::WindowSpan>,
    /// Live sessions per PDF node, as the gateway counted them, once a second (absent
    /// without the gateway's admin address).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pdf_sessions: Vec<crate::nodes::NodeSample>,
    /// The gateway's own latency, once a second, from its `/metrics` (absent without the
    /// gateway's admin address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_latency: Option<crate::gateway_latency::GatewayLatency>,
    /// What the run's upgrades cost (absent without an `upgrade` event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<crate::upgrade::UpgradeReport>,
}

impl Report {
    /// Whether every threshold held.
    pub fn passed(&self) -> bool {
        self.thresholds.iter().all(|t| t.passed)
    }

    /// The terminal summary.
    pub fn summary(&self) -> String {
        let mut text = format!(
            "\n== {} (seed {}) ran {:.1} s, {:.0} requests/s ==\n",
            self.scenario, self.seed, self.elapsed_seconds, self.rate
        );
        if let Some(shard) = self.shard.filter(|s| s.is_partial()) {
            text += &format!(
                "shard {shard}: the accounts numbered {} mod {}\n",
                shard.index, shard.count
            );
        }
        if let Some(merged) = &self.merged {
            text += &format!("merged from {} shard reports\n", merged.shards);
        }
        text += &format!(
            "{:<8} {:>9} {:>9} {:>8}  {:>8} {:>8} {:>8} {:>8} {:>8}  results\n",
            "step", "sent", "answered", "timeout", "p50 ms", "p90", "p99", "p99.9", "max"
        );
        for step in &self.steps {
            let ms = |us: u64| us as f64 / 1000.0;
            let results: Vec<String> = step
                .results
                .iter()
                .map(|(code, n)| format!("{code}:{n}"))
                .collect();
            text += &format!(
                "{:<8} {:>9} {:>9} {:>8}  {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2}  {}\n",
                step.step,
                step.sent,
                step.answered,
                step.timeouts,
                ms(step.scheduled_us.p50),
                ms(step.scheduled_us.p90),
                ms(step.scheduled_us.p99),
                ms(step.scheduled_us.p999),
                ms(step.scheduled_us.max),
                results.join(" ")
            );
        }
        let lost: Vec<String> = self
            .sessions
            .lost
            .iter()
            .map(|(why, n)| format!("{why} {n}"))
            .collect();
        text += &format!(
            "sessions: {} completed, {} ended by charging, {} refused, {} lost to the infrastructure{}\n",
            self.sessions.completed,
            self.sessions.charged_out,
            self.sessions.refused,
            self.sessions.dropped(),
            if lost.is_empty() { String::new() } else { format!(" ({})", lost.join(", ")) }
        );
        text += &format!(
            "loadgen behind its schedule: p99 {:.2} ms, max {:.2} ms\n",
            self.loadgen_behind_us.0 as f64 / 1000.0,
            self.loadgen_behind_us.1 as f64 / 1000.0
        );
        if let Some(latency) = &self.gateway_latency {
            text += &latency.summary();
        }
        let books = &self.books;
        text += &match &books.error {
            Some(error) => format!("books: NOT CHECKED ({error})\n"),
            None => format!(
                "books: {} accounts compared, {} mismatched, {} left out (a request's outcome unknown); pdf's own check {}\n",
                books.accounts_compared,
                books.mismatches,
                books.accounts_uncertain,
                if books.pdf_books_ok { "ok" } else { "FAILED" }
            ),
        };
        if books.mismatches > 0 {
            text += &format!(
                "  of which {} charged too much (+{}), {} too little (-{})\n",
                books.overcharged,
                books.overcharged_money,
                books.undercharged,
                books.undercharged_money
            );
        }
        if books.nodes.len() > 1 {
            text += &format!(
                "  each account's debits on {} added up\n",
                books.nodes.join(" + ")
            );
        }
        for example in &books.examples {
            text += &format!("  {example}\n");
        }
        if !self.events.is_empty() {
            text += "events:\n";
            for event in &self.events {
                text += &format!(
                    "  at {:>6.1} s  {:<6}  {}: {}\n",
                    event.fired_s,
                    if event.ok() { "ok" } else { "FAILED" },
                    event.description,
                    event.detail
                );
            }
        }
        if let Some(upgrade) = &self.upgrade {
            text += &upgrade.summary();
        }
        for span in &self.slo_windows {
            let seconds = match (span.seconds.first(), span.seconds.last()) {
                (Some(first), Some(last)) => format!("seconds {first}-{last} of the timeline"),
                _ => "no second of the timeline (the run ended first)".into(),
            };
            text += &format!(
                "window {}: {:.1} s to {:.1} s after traffic started ({}), judged over {seconds}\n",
                span.name, span.from_s, span.to_s, span.anchor
            );
        }
        for verdict in &self.thresholds {
            text += &format!(
                "threshold {:<18} limit {:<10} measured {:<10} {}\n",
                verdict.threshold,
                verdict.limit,
                verdict.measured,
                if verdict.passed { "pass" } else { "FAIL" }
            );
        }
        text += if self.passed() {
            "RESULT: pass\n"
        } else {
            "RESULT: FAIL (thresholds breached)\n"
        };
        text
    }
}

/// Builds the report and judges the thresholds.
pub fn build(scenario: &Scenario, stats: &Stats, elapsed: Duration, books: Books) -> Report {
    let steps = stats.step_reports();
    let answered: u64 = steps.iter().map(|s| s.answered).sum();
    let sessions = stats.outcomes();
    let mut thresholds = judge(&scenario.slo, &steps, &sessions, stats.failed(), &books);
    let timeline = stats.timeline();
    let mut slo_windows = crate::windows::spans(scenario).unwrap_or_default();
    thresholds.extend(crate::windows::judge(
        &scenario.slo.window,
        &mut slo_windows,
        &timeline,
    ));
    Report {
        report_version: REPORT_VERSION,
        scenario: scenario.name.clone(),
        seed: scenario.seed,
        elapsed_seconds: elapsed.as_secs_f64(),
        rate: answered as f64 / elapsed.as_secs_f64().max(1e-9),
        steps,
        sessions,
        failed_requests: stats.failed(),
        loadgen_behind_us: stats.behind(),
        books,
        thresholds,
        timeline,
        shard: None,
        merged: None,
        scenario_digest: crate::shard::scenario_digest(scenario),
        slo: scenario.slo.clone(),
        loadgen_behind_hist: crate::merge::encode_histogram(&stats.behind_histogram()),
        events: Vec::new(),
        slo_windows,
        pdf_sessions: Vec::new(),
        gateway_latency: None,
        upgrade: None,
    }
}

/// Judges the thresholds of `slo` against a run's figures (also a merged run's).
pub fn judge(
    slo: &crate::scenario::Slo,
    steps: &[StepReport],
    sessions: &Outcomes,
    failed: u64,
    books: &Books,
) -> Vec<Verdict> {
    let mut thresholds = Vec::new();
    if let Some(limit) = slo.dropped_sessions {
        let measured = sessions.dropped();
        thresholds.push(Verdict {
            threshold: "dropped_sessions".into(),
            limit: limit.to_string(),
            measured: measured.to_string(),
            passed: measured <= limit,
        });
    }
    if let Some(limit) = slo.failed_requests {
        let measured = failed;
        thresholds.push(Verdict {
            threshold: "failed_requests".into(),
            limit: limit.to_string(),
            measured: measured.to_string(),
            passed: measured <= limit,
        });
    }
    if let Some(limit) = slo.p99_latency {
        let worst = steps.iter().map(|s| s.scheduled_us.p99).max().unwrap_or(0);
        thresholds.push(Verdict {
            threshold: "p99_latency".into(),
            limit: format!("{:.2}ms", limit.0.as_secs_f64() * 1000.0),
            measured: format!("{:.2}ms", worst as f64 / 1000.0),
            passed: u128::from(worst) <= limit.0.as_micros(),
        });
    }
    if let Some(limit) = slo.charging_mismatch {
        let measured = if books.error.is_some() || !books.pdf_books_ok {
            u64::MAX
        } else {
            books.mismatches
        };
        thresholds.push(Verdict {
            threshold: "charging_mismatch".into(),
            limit: limit.to_string(),
            measured: if measured == u64::MAX {
                "unchecked".into()
            } else {
                measured.to_string()
            },
            passed: measured <= limit,
        });
    }
    thresholds
}

impl Report {
    /// The timeline as CSV (one row per second).
    pub fn timeline_csv(&self) -> String {
        // Then one column per PDF node: its live sessions (empty where not sampled).
        let nodes = crate::nodes::node_names(&self.pdf_sessions);
        let by_second: BTreeMap<u64, &BTreeMap<String, u64>> = self
            .pdf_sessions
            .iter()
            .map(|s| (s.second, &s.sessions))
            .collect();
        let mut csv =
            String::from("second,answered,failed,live_sessions,lost_sessions,p50_us,p99_us,max_us");
        for node in &nodes {
            csv += &format!(",sessions_{}", node.replace([',', '"', '\n', '\r'], "_"));
        }
        // Then the gateway's own p99 per leg (bucket bounds, `inf` over the last one).
        use crate::gateway_latency::Leg;
        let gateway: BTreeMap<u64, [Option<u64>; 2]> = self
            .gateway_latency
            .iter()
            .flat_map(|l| {
                l.seconds.iter().map(move |s| {
                    let p99 = |leg| l.p99_us(s, leg);
                    (s.second, [p99(Leg::Access), p99(Leg::Charging)])
                })
            })
            .collect();
        if self.gateway_latency.is_some() {
            csv += ",gateway_access_p99_us,gateway_charging_p99_us";
        }
        csv += "\n";
        for r in &self.timeline {
            csv += &format!(
                "{},{},{},{},{},{},{},{}",
                r.second,
                r.answered,
                r.failed,
                r.live_sessions,
                r.lost_sessions,
                r.p50_us,
                r.p99_us,
                r.max_us
            );
            for node in &nodes {
                csv += ",";
                if let Some(n) = by_second.get(&r.second).and_then(|s| s.get(node)) {
                    csv += &n.to_string();
                }
            }
            if self.gateway_latency.is_some() {
                for p99 in gateway.get(&r.second).copied().unwrap_or_default() {
                    csv += ",";
                    match p99 {
                        Some(u64::MAX) => csv += "inf",
                        Some(us) => csv += &us.to_string(),
                        None => {}
                    }
                }
            }
            csv += "\n";
        }
        csv
    }
}
