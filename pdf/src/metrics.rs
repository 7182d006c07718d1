//! Request metrics: lock-free counters and a latency histogram, rendered in the Prometheus
//! text exposition format (version 0.0.4).
//!
//! Recording a request is a few relaxed atomic increments into fixed arrays: no lock, no
//! allocation, no map lookup. Result-Codes are folded into a fixed set of columns (the codes
//! a PDF answers with, `3xxx` for protocol errors and `other` for the rest), so the set of
//! series is bounded whatever a peer sends.
//!
//! Families rendered by [`Metrics::render_prometheus`]:
//!
//! - `pdf_requests_total{command,request_type,result}`: CCRs answered, by CC-Request-Type and
//!   Result-Code; other requests (CER, DWR, DPR, ...) by `command` and `result` only;
//! - `pdf_request_duration_seconds{request_type}`: a histogram of the time from a CCR's
//!   receipt to its answer;
//! - `pdf_asr_total{result}`: ASRs the PDF sent, by the answer's Result-Code (`no_answer`
//!   when none came).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use protocol::dictionary::CcRequestType;
use protocol::header::CommandCode;
use protocol::result_code::ResultCode;

/// Result-Code columns: the label of each, in order.
const RESULTS: [&str; RESULT_COLUMNS] = [
    "2001", "3xxx", "4012", "5002", "5004", "5005", "5012", "5030", "5031", "other",
];
const RESULT_COLUMNS: usize = 10;

/// CC-Request-Type rows: INITIAL, UPDATE, TERMINATION, EVENT, anything else.
const REQUEST_TYPES: [&str; REQUEST_TYPE_ROWS] =
    ["INITIAL", "UPDATE", "TERMINATION", "EVENT", "other"];
const REQUEST_TYPE_ROWS: usize = 5;

/// Rows for requests other than CCR: the command's request abbreviation.
const COMMANDS: [&str; COMMAND_ROWS] = ["CER", "DWR", "DPR", "STR", "RAR", "ACR", "ASR", "other"];
const COMMAND_ROWS: usize = 8;

/// Upper bounds of the latency buckets, in nanoseconds; the last bucket is `+Inf`.
const BOUNDS_NANOS: [u64; BUCKETS - 1] = [
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
];
/// The same bounds as `le` label values, in seconds.
const BOUNDS_LABELS: [&str; BUCKETS] = [
    "0.00005", "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05",
    "0.1", "0.25", "0.5", "1", "+Inf",
];
const BUCKETS: usize = 15;

/// A latency histogram: per-bucket (not cumulative) counts and the sum.
#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn record(&self, latency: Duration) {
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        let bucket = BOUNDS_NANOS.partition_point(|&bound| bound < nanos);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Cumulative counts (the last is the total) and the sum in seconds. The total is the
    /// sum of the buckets, so `+Inf` always equals `_count` even while requests are recorded.
    fn snapshot(&self) -> ([u64; BUCKETS], f64) {
        let mut cumulative = [0; BUCKETS];
        let mut total = 0u64;
        for (out, bucket) in cumulative.iter_mut().zip(&self.buckets) {
            total += bucket.load(Ordering::Relaxed);
            *out = total;
        }
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        (cumulative, sum)
    }
}

/// Request metrics for `/metrics`. Shared by every connection task (`Arc<Metrics>`);
/// all updates are relaxed atomic increments.
#[derive(Debug, Default)]
pub struct Metrics {
    ccr: [[AtomicU64; RESULT_COLUMNS]; REQUEST_TYPE_ROWS],
    latency: [Histogram; REQUEST_TYPE_ROWS],
    other: [[AtomicU64; RESULT_COLUMNS]; COMMAND_ROWS],
    asr: [AtomicU64; RESULT_COLUMNS + 1],
}

fn result_column(result: ResultCode) -> usize {
    match result.0 {
        2001 => 0,
        3000..=3999 => 1,
        4012 => 2,
        5002 => 3,
        5004 => 4,
        5005 => 5,
        5012 => 6,
        5030 => 7,
        5031 => 8,
        _ => 9,
    }
}

fn request_type_row(request_type: CcRequestType) -> usize {
    match request_type.0 {
        1..=4 => (request_type.0 - 1) as usize,
        _ => 4,
    }
}

impl Metrics {
    /// One CCR answered: its CC-Request-Type (1..=4; anything else counted as "other"), its
    /// Result-Code, and the time from receipt to answer.
    pub fn record_ccr(&self, request_type: CcRequestType, result: ResultCode, latency: Duration) {
        let row = request_type_row(request_type);
        self.ccr[row][result_column(result)].fetch_add(1, Ordering::Relaxed);
        self.latency[row].record(latency);
    }

    /// Any other request answered (by command code) or rejected by decoding. A CCR rejected
    /// before its CC-Request-Type was known counts as a CCR of request type `other` (with no
    /// latency sample).
    pub fn record_other(&self, command: CommandCode, result: ResultCode) {
        let column = result_column(result);
        let row = match command {
            CommandCode::CREDIT_CONTROL => {
                self.ccr[REQUEST_TYPE_ROWS - 1][column].fetch_add(1, Ordering::Relaxed);
                return;
            }
            CommandCode::CAPABILITIES_EXCHANGE => 0,
            CommandCode::DEVICE_WATCHDOG => 1,
            CommandCode::DISCONNECT_PEER => 2,
            CommandCode::SESSION_TERMINATION => 3,
            CommandCode::RE_AUTH => 4,
            CommandCode::ACCOUNTING => 5,
            CommandCode::ABORT_SESSION => 6,
            _ => 7,
        };
        self.other[row][column].fetch_add(1, Ordering::Relaxed);
    }

    /// An ASR we sent, and its outcome (answered `Ok(result code)`, or `Err(())` for no
    /// answer).
    pub fn record_asr(&self, outcome: Result<ResultCode, ()>) {
        let column = match outcome {
            Ok(result) => result_column(result),
            Err(()) => RESULT_COLUMNS,
        };
        self.asr[column].fetch_add(1, Ordering::Relaxed);
    }

    /// CCRs answered so far (every request type and result).
    pub fn ccr_total(&self) -> u64 {
        self.ccr
            .iter()
            .flatten()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// Appends the metrics' own families. Counters that are still zero are left out, except
    /// the success series of the four CC-Request-Types and their latency histograms, which
    /// are always present so that `rate()` sees them from the start.
    pub fn render_prometheus(&self, out: &mut String) {
        out.push_str(
            "# HELP pdf_requests_total Requests answered, by command, CC-Request-Type (CCR only) \
             and Result-Code (3xxx: any protocol error; other: any code without its own series).\n\
             # TYPE pdf_requests_total counter\n",
        );
        for (row, request_type) in REQUEST_TYPES.iter().enumerate() {
            for (column, result) in RESULTS.iter().enumerate() {
                let value = self.ccr[row][column].load(Ordering::Relaxed);
                let always = column == 0 && row < REQUEST_TYPE_ROWS - 1;
                if value != 0 || always {
                    let _ = writeln!(
                        out,
                        "pdf_requests_total{{command=\"CCR\",request_type=\"{request_type}\",\
                         result=\"{result}\"}} {value}"
                    );
                }
            }
        }
        for (row, command) in COMMANDS.iter().enumerate() {
            for (column, result) in RESULTS.iter().enumerate() {
                let value = self.other[row][column].load(Ordering::Relaxed);
                if value != 0 {
                    let _ = writeln!(
                        out,
                        "pdf_requests_total{{command=\"{command}\",result=\"{result}\"}} {value}"
                    );
                }
            }
        }

        out.push_str(
            "# HELP pdf_request_duration_seconds Time from a CCR's receipt to its answer, \
             by CC-Request-Type.\n\
             # TYPE pdf_request_duration_seconds histogram\n",
        );
        for (row, request_type) in REQUEST_TYPES.iter().enumerate() {
            let (cumulative, sum) = self.latency[row].snapshot();
            let count = cumulative[BUCKETS - 1];
            if count == 0 && row == REQUEST_TYPE_ROWS - 1 {
                continue;
            }
            for (le, value) in BOUNDS_LABELS.iter().zip(cumulative) {
                let _ = writeln!(
                    out,
                    "pdf_request_duration_seconds_bucket{{request_type=\"{request_type}\",\
                     le=\"{le}\"}} {value}"
                );
            }
            let _ = writeln!(
                out,
                "pdf_request_duration_seconds_sum{{request_type=\"{request_type}\"}} {sum}"
            );
            let _ = writeln!(
                out,
                "pdf_request_duration_seconds_count{{request_type=\"{request_type}\"}} {count}"
            );
        }

        out.push_str(
            "# HELP pdf_asr_total Abort-Session-Requests sent, by the answer's Result-Code \
             (no_answer: none came).\n\
             # TYPE pdf_asr_total counter\n",
        );
        for (column, counter) in self.asr.iter().enumerate() {
            let value = counter.load(Ordering::Relaxed);
            if value != 0 {
                let result = RESULTS.get(column).copied().unwrap_or("no_answer");
                let _ = writeln!(out, "pdf_asr_total{{result=\"{result}\"}} {value}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(metrics: &Metrics) -> String {
        let mut out = String::new();
        metrics.render_prometheus(&mut out);
        out
    }

    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map(|v| v.parse().expect("numeric value"))
    }

    #[test]
    fn metrics_count_by_type_and_result() {
        let m = Metrics::default();
        let ms = Duration::from_millis(1);
        m.record_ccr(CcRequestType::UPDATE_REQUEST, ResultCode::SUCCESS, ms);
        m.record_ccr(CcRequestType::UPDATE_REQUEST, ResultCode::SUCCESS, ms);
        m.record_ccr(CcRequestType::INITIAL_REQUEST, ResultCode(5030), ms);
        m.record_ccr(CcRequestType::TERMINATION_REQUEST, ResultCode(4012), ms);
        m.record_ccr(CcRequestType(9), ResultCode(5004), ms);
        m.record_ccr(CcRequestType::EVENT_REQUEST, ResultCode(3004), ms);
        m.record_ccr(CcRequestType::EVENT_REQUEST, ResultCode(4010), ms);
        m.record_other(CommandCode::DEVICE_WATCHDOG, ResultCode::SUCCESS);
        m.record_other(CommandCode(999), ResultCode(3001));
        m.record_other(CommandCode::CREDIT_CONTROL, ResultCode(5005));
        m.record_asr(Ok(ResultCode::SUCCESS));
        m.record_asr(Err(()));
        m.record_asr(Err(()));
        let text = render(&m);
        let expect = [
            (
                r#"pdf_requests_total{command="CCR",request_type="UPDATE",result="2001"}"#,
                2.0,
            ),
            (
                r#"pdf_requests_total{command="CCR",request_type="INITIAL",result="2001"}"#,
                0.0,
            ),
            (
                r#"pdf_requests_total{command="CCR",request_type="INITIAL",result="5030"}"#,
                1.0,
            ),
            (
                r#"pdf_requests_total{command="CCR",request_type="TERMINATION",result="4012"}"#,
                1.0,
            ),
            (
                r#"pdf_requests_total{command="CCR",request_type="other",result="5004"}"#,
                1.0,
            ),
            (
                r#"pdf_requests_total{command="CCR",request_type="other",result="5005"}"#,
                1.0,
            ),
            (
                r#"pdf_requests_total{command="CCR",request_type="EVENT",result="3xxx"}"#,
                1.0,
            ),
            (
                r#"pdf_requests_total{command="CCR",request_type="EVENT",result="other"}"#,
                1.0,
            ),
            (r#"pdf_requests_total{command="DWR",result="2001"}"#, 1.0),
            (r#"pdf_requests_total{command="other",result="3xxx"}"#, 1.0),
            (r#"pdf_asr_total{result="2001"}"#, 1.0),
            (r#"pdf_asr_total{result="no_answer"}"#, 2.0),
            (
                r#"pdf_request_duration_seconds_count{request_type="UPDATE"}"#,
                2.0,
            ),
            (
                r#"pdf_request_duration_seconds_count{request_type="other"}"#,
                1.0,
            ),
        ];
        for (series, value) in expect {
            assert_eq!(sample(&text, series), Some(value), "{series} in\n{text}");
        }
        assert_eq!(
            sample(
                &text,
                r#"pdf_requests_total{command="CCR",request_type="UPDATE",result="5002"}"#
            ),
            None,
            "zero series other than success are left out"
        );
        assert_eq!(m.ccr_total(), 8);
    }

    #[test]
    fn metrics_histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        let t = CcRequestType::INITIAL_REQUEST;
        for micros in [10, 50, 51, 700, 3_000, 2_000_000] {
            m.record_ccr(t, ResultCode::SUCCESS, Duration::from_micros(micros));
        }
        let text = render(&m);
        let bucket = |le: &str| {
            sample(
                &text,
                &format!(
                    r#"pdf_request_duration_seconds_bucket{{request_type="INITIAL",le="{le}"}}"#
                ),
            )
        };
        assert_eq!(bucket("0.00005"), Some(2.0), "a bound is inclusive (le)");
        assert_eq!(bucket("0.0001"), Some(3.0));
        assert_eq!(bucket("0.001"), Some(4.0));
        assert_eq!(bucket("0.005"), Some(5.0));
        assert_eq!(bucket("1"), Some(5.0));
        assert_eq!(bucket("+Inf"), Some(6.0));
        let sum = sample(
            &text,
            r#"pdf_request_duration_seconds_sum{request_type="INITIAL"}"#,
        )
        .expect("sum");
        assert!((sum - 2.003_811).abs() < 1e-9, "sum {sum}");
        // An idle type still has its histogram, all zero.
        assert_eq!(
            sample(
                &text,
                r#"pdf_request_duration_seconds_count{request_type="EVENT"}"#
            ),
            Some(0.0)
        );
    }

    #[test]
    fn metrics_are_shared_across_threads() {
        let m = std::sync::Arc::new(Metrics::default());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        m.record_ccr(
                            CcRequestType::UPDATE_REQUEST,
                            ResultCode::SUCCESS,
                            Duration::from_micros(200),
                        );
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        assert_eq!(m.ccr_total(), 4000);
    }
}
