//! Thresholds scoped to a window of the timeline (`[[slo.window]]`): from an event's offset
//! for a while, or between two offsets. Judged over the per-second timeline rows that overlap
//! the window, so a run can demand, say, no lost session in the five seconds after an upgrade
//! while tolerating a slow start elsewhere.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::report::Verdict;
use crate::run::Second;
use crate::scenario::{Scenario, Span};

/// `[[slo.window]]`: thresholds over part of the run.
///
/// Either `after_event = i` (the window opens at `event[i]`'s `at`) and `for`, or `from` and
/// one of `to` and `for` (offsets after traffic started, wall clock).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SloWindow {
    /// A name for the report (default `window[i]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The window opens at this event's `at`: its index among the `[[event]]` entries, from
    /// 0 (as in `event[0]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_event: Option<usize>,
    /// The window opens at this offset after traffic started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Span>,
    /// The window closes at this offset after traffic started (with `from`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Span>,
    /// How long the window stays open.
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    pub length: Option<Span>,
    /// Most sessions lost to the infrastructure during the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped_sessions: Option<u64>,
    /// Most requests failed during the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_requests: Option<u64>,
    /// Highest p99 latency (from the intended send time) of any second in the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_latency: Option<Span>,
    /// Fewest requests answered in any second of the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_answered_per_second: Option<u64>,
}

/// A window resolved to offsets (summary.json's `slo_windows`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WindowSpan {
    /// The window's name (`name`, or `window[i]`).
    pub name: String,
    /// Opens, seconds after traffic started.
    pub from_s: f64,
    /// Closes, seconds after traffic started.
    pub to_s: f64,
    /// What it is anchored to, in words (`event[0] upgrade pdf (restart) + 3 s`).
    pub anchor: String,
    /// The timeline rows (`second`) it was judged over: the seconds that overlap it.
    #[serde(default)]
    pub seconds: Vec<u64>,
}

impl SloWindow {
    /// The window's `[from, to)` in seconds after traffic started, and its anchor in words.
    fn resolve(&self, key: &str, scenario: &Scenario) -> Result<(f64, f64, String), String> {
        let secs = |s: Span| s.0.as_secs_f64();
        match (self.after_event, self.from, self.to, self.length) {
            (Some(i), None, None, Some(length)) => {
                let event = scenario.events.get(i).ok_or(format!(
                    "{key}.after_event: there is no event[{i}] (the scenario has {} [[event]] \
                     entries, numbered from 0)",
                    scenario.events.len()
                ))?;
                let at = event
                    .at()
                    .ok_or(format!("{key}.after_event: event[{i}] has no time"))?
                    .as_secs_f64();
                Ok((
                    at,
                    at + secs(length),
                    format!("event[{i}] {} + {} s", event.describe(), trim(secs(length))),
                ))
            }
            (Some(_), None, None, None) => Err(format!(
                "{key}: after_event needs `for` (how long the window stays open)"
            )),
            (Some(_), _, _, _) => Err(format!(
                "{key}: after_event takes `for`, not `from` or `to` (use from/to for offsets \
                 after traffic started)"
            )),
            (None, Some(from), Some(to), None) => Ok((
                secs(from),
                secs(to),
                format!("{} s to {} s", trim(secs(from)), trim(secs(to))),
            )),
            (None, Some(from), None, Some(length)) => Ok((
                secs(from),
                secs(from) + secs(length),
                format!("{} s + {} s", trim(secs(from)), trim(secs(length))),
            )),
            (None, Some(_), Some(_), Some(_)) => {
                Err(format!("{key}: give `to` or `for`, not both"))
            }
            (None, Some(_), None, None) => Err(format!(
                "{key}: from needs `to` or `for` (where the window closes)"
            )),
            (None, None, _, _) => Err(format!(
                "{key}: give after_event = <event index> and `for`, or `from` and `to`/`for`"
            )),
        }
    }

    fn has_threshold(&self) -> bool {
        self.dropped_sessions.is_some()
            || self.failed_requests.is_some()
            || self.p99_latency.is_some()
            || self.min_answered_per_second.is_some()
    }
}

fn trim(seconds: f64) -> String {
    let text = format!("{seconds:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Checks every `[[slo.window]]` of the scenario (called by [`Scenario::validate`]).
pub fn validate(scenario: &Scenario) -> Result<(), String> {
    spans(scenario).map(|_| ())
}

/// The scenario's windows resolved to offsets; errors name the key.
pub fn spans(scenario: &Scenario) -> Result<Vec<WindowSpan>, String> {
    let duration = scenario.duration.0.as_secs_f64();
    let mut spans = Vec::new();
    for (i, window) in scenario.slo.window.iter().enumerate() {
        let key = format!("slo.window[{i}]");
        let (from, to, anchor) = window.resolve(&key, scenario)?;
        if !window.has_threshold() {
            return Err(format!(
                "{key}: no threshold: give dropped_sessions, failed_requests, p99_latency or \
                 min_answered_per_second"
            ));
        }
        if to <= from {
            return Err(format!(
                "{key}: the window closes ({} s) before it opens ({} s)",
                trim(to),
                trim(from)
            ));
        }
        if from >= duration {
            return Err(format!(
                "{key}: the window opens at {} s, not before the end of traffic ({} s)",
                trim(from),
                trim(duration)
            ));
        }
        if window.name.as_ref().is_some_and(String::is_empty) {
            return Err(format!("{key}.name: empty"));
        }
        spans.push(WindowSpan {
            name: window
                .name
                .clone()
                .unwrap_or_else(|| format!("window[{i}]")),
            from_s: from,
            to_s: to,
            anchor,
            seconds: Vec::new(),
        });
    }
    Ok(spans)
}

/// Row `second = s` covers `[s - 1, s)` after traffic started: the rows that overlap
/// `[from, to)`.
fn overlaps(row: &Second, from: f64, to: f64) -> bool {
    let (start, end) = (row.second as f64 - 1.0, row.second as f64);
    start < to && end > from
}

/// Judges the windows' thresholds over the timeline rows that overlap each window; fills in
/// each span's `seconds`. A window without any row (the run ended first) fails every
/// threshold with "no data".
pub fn judge(windows: &[SloWindow], spans: &mut [WindowSpan], timeline: &[Second]) -> Vec<Verdict> {
    let mut verdicts = Vec::new();
    for (window, span) in windows.iter().zip(spans.iter_mut()) {
        let rows: Vec<&Second> = timeline
            .iter()
            .filter(|r| overlaps(r, span.from_s, span.to_s))
            .collect();
        span.seconds = rows.iter().map(|r| r.second).collect();
        let first = rows.first().map_or(0, |r| r.second);
        // Lost sessions are cumulative in the timeline: the count before the window's first
        // second is the row before it (0 at the start).
        let lost_before = timeline
            .iter()
            .filter(|r| r.second < first)
            .map(|r| r.lost_sessions)
            .max()
            .unwrap_or(0);
        let empty = rows.is_empty();
        let mut push = |what: &str, limit: String, measured: Option<(String, bool)>| {
            let (measured, passed) = measured.unwrap_or(("no data".into(), false));
            verdicts.push(Verdict {
                threshold: format!("{}.{what}", span.name),
                limit,
                measured,
                passed,
            });
        };
        if let Some(limit) = window.dropped_sessions {
            let lost = rows.iter().map(|r| r.lost_sessions).max().unwrap_or(0);
            let measured = lost.saturating_sub(lost_before);
            push(
                "dropped_sessions",
                limit.to_string(),
                (!empty).then(|| (measured.to_string(), measured <= limit)),
            );
        }
        if let Some(limit) = window.failed_requests {
            let measured: u64 = rows.iter().map(|r| r.failed).sum();
            push(
                "failed_requests",
                limit.to_string(),
                (!empty).then(|| (measured.to_string(), measured <= limit)),
            );
        }
        if let Some(limit) = window.p99_latency {
            let worst = rows.iter().map(|r| r.p99_us).max().unwrap_or(0);
            push(
                "p99_latency",
                format!("{:.2}ms", limit.0.as_secs_f64() * 1000.0),
                (!empty).then(|| {
                    (
                        format!("{:.2}ms", worst as f64 / 1000.0),
                        u128::from(worst) <= limit.0.as_micros(),
                    )
                }),
            );
        }
        if let Some(limit) = window.min_answered_per_second {
            let least = rows.iter().map(|r| r.answered).min().unwrap_or(0);
            push(
                "min_answered_per_second",
                limit.to_string(),
                (!empty).then(|| (least.to_string(), least >= limit)),
            );
        }
    }
    verdicts
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const BASE: &str =
        "schema = 1\nname = \"w\"\nduration = \"10s\"\n[load]\nconcurrent_sessions = 1\n\
        [[mix]]\nname = \"v\"\nkind = \"voice\"\nweight = 1\ninterval = \"30s\"\n\
        duration = { dist = \"constant\", value = 60 }\n\
        [[event]]\nat = \"4s\"\naction = \"set_weight\"\nnode = \"pdf0\"\nweight = 0\n";

    fn parse(windows: &str) -> Result<Scenario, String> {
        Scenario::parse(&format!("{BASE}{windows}"), Path::new("windows.toml"))
    }

    fn row(second: u64, answered: u64, failed: u64, lost: u64, p99_us: u64) -> Second {
        serde_json::from_value(serde_json::json!({
            "second": second, "answered": answered, "failed": failed, "live_sessions": 10,
            "lost_sessions": lost, "p50_us": 100, "p99_us": p99_us, "max_us": p99_us
        }))
        .expect("a row")
    }

    #[test]
    fn windows_resolve_from_an_event_or_offsets() {
        let scenario = parse(
            "[[slo.window]]\nafter_event = 0\nfor = \"3s\"\nfailed_requests = 0\n\
             [[slo.window]]\nname = \"warm-up\"\nfrom = 0\nto = \"2s\"\np99_latency = \"5ms\"\n\
             [[slo.window]]\nfrom = \"7.5s\"\nfor = \"10s\"\ndropped_sessions = 1\n",
        )
        .expect("valid");
        let spans = spans(&scenario).expect("spans");
        let got: Vec<(&str, f64, f64)> = spans
            .iter()
            .map(|s| (s.name.as_str(), s.from_s, s.to_s))
            .collect();
        assert_eq!(
            got,
            [
                ("window[0]", 4.0, 7.0),
                ("warm-up", 0.0, 2.0),
                ("window[2]", 7.5, 17.5)
            ]
        );
        assert_eq!(spans[0].anchor, "event[0] set_weight pdf0 = 0 + 3 s");
        assert!(scenario.plan().contains("window[0]"), "{}", scenario.plan());
    }

    #[test]
    fn bad_windows_are_refused_naming_file_and_key() {
        for (window, want) in [
            (
                "after_event = 0\nfor = \"3s\"\nfailed_request = 0\n",
                "unknown field `failed_request`",
            ),
            (
                "after_event = 0\nfor = \"3s\"\n",
                "slo.window[0]: no threshold",
            ),
            (
                "after_event = 3\nfor = \"3s\"\nfailed_requests = 0\n",
                "slo.window[0].after_event: there is no event[3]",
            ),
            (
                "after_event = 0\nfailed_requests = 0\n",
                "after_event needs `for`",
            ),
            (
                "after_event = 0\nfrom = 1\nfor = 1\nfailed_requests = 0\n",
                "after_event takes `for`, not `from` or `to`",
            ),
            (
                "from = 1\nfailed_requests = 0\n",
                "from needs `to` or `for`",
            ),
            (
                "from = 3\nto = 2\nfailed_requests = 0\n",
                "closes (2 s) before it opens (3 s)",
            ),
            (
                "from = \"12s\"\nfor = 2\nfailed_requests = 0\n",
                "opens at 12 s, not before the end of traffic (10 s)",
            ),
            ("failed_requests = 0\n", "give after_event"),
            (
                "from = 1\nto = 2\np99_latency = \"5 parsecs\"\n",
                "unknown unit",
            ),
        ] {
            let error = parse(&format!("[[slo.window]]\n{window}")).expect_err(window);
            assert!(
                error.contains("windows.toml") && error.contains(want),
                "{window}: {error}"
            );
        }
        // A misspelt key in the window's table is shown on its line, with the table's name.
        let error = parse("[slo]\ndropped_sessions = 0\n[[slo.window]]\nafter_event = 0\nfor = 1\np99_latncy = \"1ms\"\n")
            .expect_err("typo");
        assert!(
            error.contains("p99_latncy") && error.contains("windows.toml"),
            "{error}"
        );
    }

    #[test]
    fn the_schema_knows_windows() {
        let validator = jsonschema::draft202012::new(&crate::schema::scenario_schema())
            .expect("a valid schema");
        let mut value: serde_json::Value = toml::from_str(BASE).expect("TOML");
        for (window, valid) in [
            (
                serde_json::json!({ "after_event": 0, "for": "3s", "failed_requests": 0 }),
                true,
            ),
            (
                serde_json::json!({ "from": 0, "to": 2, "p99_latency": "5ms", "name": "w" }),
                true,
            ),
            (
                serde_json::json!({ "after_event": 0, "for": "3s", "failed_request": 0 }),
                false,
            ),
            (
                serde_json::json!({ "after_event": 0, "for": "3 fortnights", "failed_requests": 0 }),
                false,
            ),
        ] {
            value["slo"] = serde_json::json!({ "window": [window.clone()] });
            assert_eq!(validator.is_valid(&value), valid, "{window}");
        }
    }

    #[test]
    fn thresholds_are_judged_over_the_seconds_the_window_overlaps() {
        let scenario = parse(
            "[[slo.window]]\nname = \"after\"\nafter_event = 0\nfor = \"2.5s\"\n\
             failed_requests = 5\ndropped_sessions = 2\np99_latency = \"10ms\"\n\
             min_answered_per_second = 100\n\
             [[slo.window]]\nfrom = 0\nto = \"4s\"\nfailed_requests = 0\np99_latency = \"2ms\"\n",
        )
        .expect("valid");
        // The event is at 4 s: [4, 6.5) overlaps rows 5, 6 and 7.
        let timeline = vec![
            row(1, 500, 0, 0, 1_000),
            row(2, 500, 0, 0, 1_500),
            row(3, 500, 0, 1, 1_900),
            row(4, 500, 0, 1, 1_800),
            row(5, 300, 4, 2, 9_000),
            row(6, 120, 1, 3, 12_000),
            row(7, 400, 0, 3, 3_000),
            row(8, 500, 9, 9, 50_000),
        ];
        let mut spans = spans(&scenario).expect("spans");
        let verdicts = judge(&scenario.slo.window, &mut spans, &timeline);
        assert_eq!(spans[0].seconds, [5, 6, 7]);
        assert_eq!(spans[1].seconds, [1, 2, 3, 4]);
        let got: Vec<(&str, &str, bool)> = verdicts
            .iter()
            .map(|v| (v.threshold.as_str(), v.measured.as_str(), v.passed))
            .collect();
        assert_eq!(
            got,
            [
                ("after.dropped_sessions", "2", true),
                ("after.failed_requests", "5", true),
                ("after.p99_latency", "12.00ms", false),
                ("after.min_answered_per_second", "120", true),
                ("window[1].failed_requests", "0", true),
                ("window[1].p99_latency", "1.90ms", true),
            ]
        );
        // A window the run never reached fails with "no data".
        let verdicts = judge(&scenario.slo.window, &mut spans, &timeline[..3]);
        assert!(verdicts
            .iter()
            .filter(|v| v.threshold.starts_with("after."))
            .all(|v| v.measured == "no data" && !v.passed));
    }
}
