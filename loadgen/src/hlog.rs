//! The HdrHistogram interval log (`--out DIR/latency.hlog`): for every step and both
//! latencies (scheduled: from the intended send time; service: from the actual send), one
//! histogram per second of traffic, written with the `hdrhistogram` crate's interval log
//! writer (the format of HdrHistogram's `HistogramLogWriter`: V2 + deflate, base64), so that
//! HdrHistogram's own tools (HistogramLogAnalyzer, `hdr-plot`) read it.
//!
//! Tags are `<STEP>.scheduled` and `<STEP>.service` (`INTERIM.scheduled`); values are
//! microseconds (the `max` column is divided by 1000: milliseconds); timestamps are seconds
//! since traffic started (the `#[BaseTime:` line), `#[StartTime:` is the wall clock then.
//! The last interval is the part-second from the last full second to the end of the run,
//! so that every answer is in the log exactly once.

use std::path::Path;
use std::time::{Duration, SystemTime};

use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;

/// One step's histograms of the current second, and the seconds already closed.
#[derive(Debug)]
pub struct PerSecond {
    scheduled: Histogram<u64>,
    service: Histogram<u64>,
    /// Where the current interval started, seconds since traffic started.
    start_s: f64,
    closed: Vec<Closed>,
}

/// A closed interval: both histograms encoded (a few hundred bytes, where a live
/// histogram of this range takes about 200 KB).
#[derive(Clone, Debug)]
pub struct Closed {
    /// Start, seconds since traffic started.
    pub start_s: f64,
    /// Length in seconds (1 but for the last).
    pub duration_s: f64,
    /// Answers in the interval.
    pub count: u64,
    /// The scheduled latency histogram ([`crate::merge::encode_histogram`]).
    pub scheduled: String,
    /// The service latency histogram.
    pub service: String,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static bounds are valid")
}

impl Default for PerSecond {
    fn default() -> Self {
        Self {
            scheduled: histogram(),
            service: histogram(),
            start_s: 0.0,
            closed: Vec::new(),
        }
    }
}

impl PerSecond {
    /// Records one answer's latencies, microseconds.
    pub fn record(&mut self, scheduled_us: u64, service_us: u64) {
        let _ = self.scheduled.record(scheduled_us.max(1));
        let _ = self.service.record(service_us.max(1));
    }

    /// Closes the current interval at `end_s` (seconds since traffic started) and starts the
    /// next one there; nothing if `end_s` is not after the current start.
    pub fn close(&mut self, end_s: f64) {
        self.close_with(end_s, |_, _| {});
    }

    /// Adds histograms of answers (scheduled, service) to the current interval.
    pub fn add(&mut self, scheduled: &Histogram<u64>, service: &Histogram<u64>) {
        let _ = self.scheduled.add(scheduled);
        let _ = self.service.add(service);
    }

    /// The current interval's histograms (scheduled, service): not closed yet.
    pub fn current(&self) -> (&Histogram<u64>, &Histogram<u64>) {
        (&self.scheduled, &self.service)
    }

    /// [`Self::close`], first handing the interval's histograms (scheduled, service) to
    /// `fold` (the whole run's histograms are the sum of the closed seconds); whether an
    /// interval was closed (`fold` is called only then).
    pub fn close_with(
        &mut self,
        end_s: f64,
        fold: impl FnOnce(&Histogram<u64>, &Histogram<u64>),
    ) -> bool {
        if end_s <= self.start_s {
            return false;
        }
        fold(&self.scheduled, &self.service);
        self.closed.push(Closed {
            start_s: self.start_s,
            duration_s: end_s - self.start_s,
            count: self.scheduled.len(),
            scheduled: crate::merge::encode_histogram(&self.scheduled),
            service: crate::merge::encode_histogram(&self.service),
        });
        self.scheduled.reset();
        self.service.reset();
        self.start_s = end_s;
        true
    }

    /// The closed intervals.
    pub fn closed(&self) -> &[Closed] {
        &self.closed
    }
}

/// Writes the interval log of `steps` (name, closed intervals) to `path`; a step without
/// any answer is left out. `started` is the wall-clock time traffic started.
pub fn write(
    path: &Path,
    started: SystemTime,
    scenario: &str,
    steps: &[(&str, Vec<Closed>)],
) -> anyhow::Result<()> {
    let mut intervals: Vec<(f64, usize, &Closed)> = steps
        .iter()
        .enumerate()
        .filter(|(_, (_, closed))| closed.iter().any(|c| c.count > 0))
        .flat_map(|(i, (_, closed))| closed.iter().map(move |c| (c.start_s, i, c)))
        .collect();
    intervals.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut decoded = Vec::with_capacity(2 * intervals.len());
    for (_, i, closed) in intervals {
        let step = steps[i].0;
        for (kind, encoded) in [
            ("scheduled", &closed.scheduled),
            ("service", &closed.service),
        ] {
            let histogram = crate::merge::decode_histogram(encoded).map_err(anyhow::Error::msg)?;
            decoded.push(Interval {
                start_s: closed.start_s,
                duration_s: closed.duration_s,
                tag: format!("{step}.{kind}"),
                histogram,
            });
        }
    }
    write_intervals(path, started, scenario, &decoded)
}

/// One interval of a log: a tag's histogram over `duration_s` from `start_s`.
struct Interval {
    start_s: f64,
    duration_s: f64,
    tag: String,
    histogram: Histogram<u64>,
}

/// Writes `intervals` (in time order) as an interval log.
fn write_intervals(
    path: &Path,
    started: SystemTime,
    scenario: &str,
    intervals: &[Interval],
) -> anyhow::Result<()> {
    let mut bytes = Vec::new();
    let mut serializer = V2DeflateSerializer::new();
    let mut builder = IntervalLogWriterBuilder::new();
    builder
        .add_comment(&format!(
            "loadgen {}: scenario {scenario}; latency in microseconds per step, one interval per \
             second; tags <STEP>.scheduled (from the intended send time) and <STEP>.service \
             (from the actual send)",
            env!("CARGO_PKG_VERSION")
        ))
        .with_start_time(started)
        .with_base_time(started)
        .with_max_value_divisor(1000.0);
    let mut writer = builder.begin_log_with(&mut bytes, &mut serializer)?;
    for interval in intervals {
        writer
            .write_histogram(
                &interval.histogram,
                Duration::from_secs_f64(interval.start_s),
                Duration::from_secs_f64(interval.duration_s),
                Tag::new(&interval.tag),
            )
            .map_err(|e| anyhow::anyhow!("writing {}: {e:?}", interval.tag))?;
    }
    std::fs::write(path, bytes)?;
    Ok(())
}

/// Every interval of the log at `path`, and the log's start time.
fn read(path: &Path) -> anyhow::Result<(Option<SystemTime>, Vec<Interval>)> {
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    let bytes = std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut started = None;
    let mut intervals = Vec::new();
    for entry in IntervalLogIterator::new(&bytes) {
        match entry
            .map_err(|e| anyhow::anyhow!("{}: not an interval log ({e:?})", path.display()))?
        {
            LogEntry::StartTime(since_epoch) => {
                started = Some(SystemTime::UNIX_EPOCH + since_epoch);
            }
            LogEntry::Interval(interval) => {
                let tag = interval
                    .tag()
                    .map(|t| t.as_str().to_owned())
                    .unwrap_or_default();
                let start = interval.start_timestamp().as_secs_f64();
                let histogram = crate::merge::decode_histogram(interval.encoded_histogram())
                    .map_err(|e| anyhow::anyhow!("{}: {tag} at {start} s: {e}", path.display()))?;
                intervals.push(Interval {
                    start_s: start,
                    duration_s: interval.duration().as_secs_f64(),
                    tag,
                    histogram,
                });
            }
            _ => {}
        }
    }
    Ok((started, intervals))
}

/// `loadgen merge`'s interval log: the shards' logs (`paths`) added up second by second
/// and tag by tag (each shard's seconds count from its own start; shards run together),
/// written to `out`. Exact: histograms added, never percentiles averaged.
pub fn merge(paths: &[std::path::PathBuf], out: &Path, scenario: &str) -> anyhow::Result<()> {
    // Keyed by (start in ms, the tag's place in order of first appearance): time order,
    // and within a second the order the shards wrote their tags in.
    let mut tags: Vec<String> = Vec::new();
    let mut seconds: std::collections::BTreeMap<(u64, usize), Interval> = Default::default();
    let mut started: Option<SystemTime> = None;
    for path in paths {
        let (start, intervals) = read(path)?;
        started = match (started, start) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        for interval in intervals {
            let place = match tags.iter().position(|t| *t == interval.tag) {
                Some(place) => place,
                None => {
                    tags.push(interval.tag.clone());
                    tags.len() - 1
                }
            };
            let key = ((interval.start_s * 1000.0).round() as u64, place);
            match seconds.entry(key) {
                std::collections::btree_map::Entry::Vacant(entry) => {
                    entry.insert(interval);
                }
                std::collections::btree_map::Entry::Occupied(mut entry) => {
                    let sum = entry.get_mut();
                    sum.duration_s = sum.duration_s.max(interval.duration_s);
                    sum.histogram.add(&interval.histogram).map_err(|e| {
                        anyhow::anyhow!("{}: {}: {e:?}", path.display(), interval.tag)
                    })?;
                }
            }
        }
    }
    let intervals: Vec<Interval> = seconds.into_values().collect();
    write_intervals(
        out,
        started.unwrap_or(SystemTime::UNIX_EPOCH),
        scenario,
        &intervals,
    )
}

/// One tag's latency over a window of the log.
#[derive(Clone, Debug, serde::Serialize)]
pub struct WindowLatency {
    /// The tag (`INTERIM.scheduled`).
    pub tag: String,
    /// Answers in the window.
    pub count: u64,
    /// Percentiles and the largest, microseconds.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest.
    pub max_us: u64,
}

/// The latency of every tag over the intervals of the log at `path` that lie wholly within
/// `from_s..to_s` (seconds since traffic started): each tag's histograms added, so the
/// percentiles are exact (never averaged). Tags in their order of first appearance.
pub fn window(path: &Path, from_s: f64, to_s: f64) -> anyhow::Result<Vec<WindowLatency>> {
    let (_, intervals) = read(path)?;
    let mut sums: Vec<(String, Histogram<u64>)> = Vec::new();
    for Interval {
        start_s: start,
        duration_s: duration,
        tag,
        histogram,
    } in intervals
    {
        // A millisecond of slack: interval bounds are written to the millisecond.
        if start < from_s - 1e-3 || start + duration > to_s + 1e-3 {
            continue;
        }
        match sums.iter_mut().find(|(t, _)| *t == tag) {
            Some((_, sum)) => sum
                .add(&histogram)
                .map_err(|e| anyhow::anyhow!("{}: {tag}: {e:?}", path.display()))?,
            None => sums.push((tag, histogram)),
        }
    }
    Ok(sums
        .into_iter()
        .filter(|(_, h)| !h.is_empty())
        .map(|(tag, h)| WindowLatency {
            tag,
            count: h.len(),
            p50_us: h.value_at_quantile(0.5),
            p90_us: h.value_at_quantile(0.9),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        })
        .collect())
}

/// `loadgen latency`: prints [`window`] as a table, or as JSON.
pub fn main(path: &Path, from_s: f64, to_s: Option<f64>, json: bool) -> std::process::ExitCode {
    let rows = match window(path, from_s, to_s.unwrap_or(f64::INFINITY)) {
        Ok(rows) => rows,
        Err(error) => {
            eprintln!("loadgen: {error:#}");
            return std::process::ExitCode::from(2);
        }
    };
    let text = if json {
        serde_json::to_string_pretty(&rows).unwrap_or_default() + "\n"
    } else {
        let ms = |us: u64| format!("{:.2}", us as f64 / 1000.0);
        let mut text = format!(
            "{:<20} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8}\n",
            "tag", "count", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"
        );
        for r in &rows {
            text += &format!(
                "{:<20} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8}\n",
                r.tag,
                r.count,
                ms(r.p50_us),
                ms(r.p90_us),
                ms(r.p99_us),
                ms(r.p999_us),
                ms(r.max_us)
            );
        }
        text
    };
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes());
    std::process::ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};

    #[test]
    fn intervals_are_written_and_read_back() {
        let mut start = PerSecond::default();
        let mut interim = PerSecond::default();
        let unused = PerSecond::default();
        for second in 1..=3u64 {
            for i in 0..(10 * second) {
                start.record(1000 + i, 900);
                interim.record(200 * second, 150);
            }
            start.close(second as f64);
            interim.close(second as f64);
        }
        interim.record(5000, 4000);
        interim.close(3.4);
        interim.close(3.4); // nothing more
        assert_eq!(interim.closed().len(), 4);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("latency.hlog");
        let started = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        write(
            &path,
            started,
            "unit",
            &[
                ("START", start.closed().to_vec()),
                ("INTERIM", interim.closed().to_vec()),
                ("STOP", unused.closed().to_vec()),
            ],
        )
        .expect("write");
        let bytes = std::fs::read(&path).expect("read");
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.starts_with("#loadgen "), "{text}");
        assert!(text.contains("#[StartTime: 1700000000.000"), "{text}");
        let mut seen = Vec::new();
        for entry in IntervalLogIterator::new(&bytes) {
            if let LogEntry::Interval(interval) = entry.expect("a log entry") {
                let histogram = crate::merge::decode_histogram(interval.encoded_histogram())
                    .expect("a histogram");
                seen.push((
                    interval
                        .tag()
                        .map(|t| t.as_str().to_owned())
                        .unwrap_or_default(),
                    interval.start_timestamp().as_secs_f64(),
                    interval.duration().as_secs_f64(),
                    histogram.len(),
                    interval.max(),
                ));
            }
        }
        // In time order, START before INTERIM within a second, both kinds for each.
        let tags: Vec<&str> = seen.iter().take(4).map(|s| s.0.as_str()).collect();
        assert_eq!(
            tags,
            [
                "START.scheduled",
                "START.service",
                "INTERIM.scheduled",
                "INTERIM.service"
            ]
        );
        assert_eq!(seen.len(), 2 * 3 + 2 * 4, "{seen:?}");
        let count = |tag: &str| -> u64 { seen.iter().filter(|s| s.0 == tag).map(|s| s.3).sum() };
        assert_eq!(count("START.scheduled"), 60);
        assert_eq!(count("START.service"), 60);
        assert_eq!(count("INTERIM.scheduled"), 61);
        let last = seen.last().expect("last");
        assert_eq!(last.0, "INTERIM.service");
        assert!(
            (last.1 - 3.0).abs() < 1e-3 && (last.2 - 0.4).abs() < 1e-3,
            "{last:?}"
        );
        // The max column in milliseconds (divisor 1000).
        assert!((last.4 - 4.0).abs() < 0.01, "{last:?}");
        assert!(!seen.iter().any(|s| s.0.starts_with("STOP")));

        let row = |rows: &[WindowLatency], tag: &str| -> WindowLatency {
            let found = rows.iter().find(|r| r.tag == tag).cloned();
            found.unwrap_or_else(|| panic!("no {tag} in {rows:?}"))
        };
        // A window: seconds 1 to 3 only (20 + 30 STARTs at 1000 + i us; the part-second
        // after 3 s is not wholly inside).
        let rows = window(&path, 1.0, 3.0).expect("window");
        let start = row(&rows, "START.scheduled");
        assert_eq!(start.count, 50);
        assert_eq!(start.max_us, 1029);
        let interim = row(&rows, "INTERIM.scheduled");
        assert_eq!(interim.count, 50);
        assert!(interim.max_us >= 600 && interim.max_us < 601, "{interim:?}");
        let all = window(&path, 0.0, 10.0).expect("all");
        let interim = row(&all, "INTERIM.scheduled");
        assert_eq!(interim.count, 61);
        assert!(window(&dir.path().join("missing"), 0.0, 1.0).is_err());

        // Merged with itself: every second's histograms added, so twice the answers and
        // the same percentiles; the start time kept.
        let merged = dir.path().join("merged.hlog");
        merge(&[path.clone(), path.clone()], &merged, "unit").expect("merge");
        let doubled = window(&merged, 0.0, 10.0).expect("merged");
        let twice = row(&doubled, "INTERIM.scheduled");
        assert_eq!(twice.count, 122);
        assert_eq!(
            (twice.p50_us, twice.p99_us),
            (interim.p50_us, interim.p99_us)
        );
        let text = std::fs::read_to_string(&merged).expect("merged log");
        assert!(text.contains("#[StartTime: 1700000000.000"), "{text}");
        assert!(merge(&[dir.path().join("missing")], &merged, "unit").is_err());
    }
}
