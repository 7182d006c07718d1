//! Counters and latency histograms for both legs, lock-free, rendered in Prometheus text.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use protocol::dictionary::{AccountingRecordType, TerminationCause};
use protocol::result_code::ResultCode;

/// Result-Codes counted separately; others count as "other".
const RESULTS: [u32; 10] = [2001, 3002, 3004, 4012, 5002, 5004, 5005, 5006, 5012, 5030];
/// Latency bucket bounds in microseconds.
const BUCKETS_US: [u64; 13] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
];
const LEGS: [&str; 2] = ["access", "charging"];
const TYPES: [&str; 5] = ["other", "START", "INTERIM", "STOP", "EVENT"];
const CAUSES: [(i32, &str); 3] = [
    (4, "ADMINISTRATIVE"),
    (5, "LINK_BROKEN"),
    (8, "SESSION_TIMEOUT"),
];

#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
}

impl Histogram {
    fn record(&self, latency: Duration) {
        let us = latency.as_micros() as u64;
        let index = BUCKETS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(BUCKETS_US.len());
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    fn render(&self, name: &str, labels: &str, out: &mut String) {
        use std::fmt::Write;
        let mut cumulative = 0;
        for (i, bucket) in self.buckets.iter().enumerate() {
            cumulative += bucket.load(Ordering::Relaxed);
            let le = BUCKETS_US
                .get(i)
                .map_or("+Inf".to_owned(), |b| format!("{}", *b as f64 / 1e6));
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        let _ = writeln!(
            out,
            "{name}_sum{{{labels}}} {}",
            self.sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
    }
}

/// The gateway's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Answers by record type, then by Result-Code.
    acr: [[AtomicU64; RESULTS.len() + 1]; 5],
    /// Answers by CC-Request-Type (0 for any other), then by Result-Code.
    ccr: [[AtomicU64; RESULTS.len() + 1]; 5],
    ccr_failures: [AtomicU64; 3],
    latency: [Histogram; 2],
    cuts: [AtomicU64; CAUSES.len()],
    asr_from_pdf: AtomicU64,
    redirects: AtomicU64,
    retransmissions: AtomicU64,
    /// PDF connections closed after they were up: by the PDF's DPR, by our DPR, lost.
    pdf_connections_closed: [AtomicU64; 3],
}

fn result_index(result: ResultCode) -> usize {
    RESULTS
        .iter()
        .position(|&r| r == result.0)
        .unwrap_or(RESULTS.len())
}

impl Metrics {
    /// An ACR answered.
    pub fn record_acr(
        &self,
        record_type: AccountingRecordType,
        result: ResultCode,
        latency: Duration,
    ) {
        let kind = usize::try_from(record_type.0)
            .ok()
            .filter(|k| (1..=4).contains(k))
            .map_or(0, |k| [0, 4, 1, 2, 3][k]);
        self.acr[kind][result_index(result)].fetch_add(1, Ordering::Relaxed);
        self.latency[0].record(latency);
    }

    /// A CCA received (request type 1 to 4).
    pub fn record_ccr(&self, request_type: i32, result: ResultCode, latency: Duration) {
        let kind = usize::try_from(request_type)
            .ok()
            .filter(|k| (1..=4).contains(k))
            .unwrap_or(0);
        self.ccr[kind][result_index(result)].fetch_add(1, Ordering::Relaxed);
        self.latency[1].record(latency);
    }

    /// A CCR with no answer: 0 timeout, 1 connection lost, 2 no connection.
    pub fn record_ccr_failure(&self, kind: usize) {
        self.ccr_failures[kind.min(2)].fetch_add(1, Ordering::Relaxed);
    }

    /// A session cut, by Termination-Cause.
    pub fn record_cut(&self, cause: TerminationCause) {
        if let Some(i) = CAUSES.iter().position(|(c, _)| *c == cause.0) {
            self.cuts[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// An ASR received from a PDF.
    pub fn record_asr_from_pdf(&self) {
        self.asr_from_pdf.fetch_add(1, Ordering::Relaxed);
    }

    /// A 3006 redirect followed.
    pub fn record_redirect(&self) {
        self.redirects.fetch_add(1, Ordering::Relaxed);
    }

    /// A CCR re-sent with the T flag after a connection loss.
    pub fn record_retransmission(&self) {
        self.retransmissions.fetch_add(1, Ordering::Relaxed);
    }

    /// A PDF connection that was up is gone.
    pub fn record_pdf_connection_closed(&self, reason: &protocol::peer::DownReason) {
        use protocol::peer::DownReason;
        let index = match reason {
            DownReason::PeerDisconnected(_) => 0,
            DownReason::LocalDisconnect(_) => 1,
            _ => 2,
        };
        self.pdf_connections_closed[index].fetch_add(1, Ordering::Relaxed);
    }

    /// Prometheus text.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let result_label = |i: usize| RESULTS.get(i).map_or("other".to_owned(), |r| r.to_string());
        let _ = writeln!(out, "# HELP gateway_acr_total Accounting requests answered on the access leg, by record type and Result-Code.");
        let _ = writeln!(out, "# TYPE gateway_acr_total counter");
        for (k, row) in self.acr.iter().enumerate() {
            for (r, count) in row.iter().enumerate() {
                let n = count.load(Ordering::Relaxed);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "gateway_acr_total{{record_type=\"{}\",result=\"{}\"}} {n}",
                        TYPES[k],
                        result_label(r)
                    );
                }
            }
        }
        let _ = writeln!(out, "# HELP gateway_ccr_total Credit-Control answers received on the charging leg, by request type and Result-Code.");
        let _ = writeln!(out, "# TYPE gateway_ccr_total counter");
        let ccr_types = ["other", "INITIAL", "UPDATE", "TERMINATION", "EVENT"];
        for (k, row) in self.ccr.iter().enumerate() {
            for (r, count) in row.iter().enumerate() {
                let n = count.load(Ordering::Relaxed);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "gateway_ccr_total{{request_type=\"{}\",result=\"{}\"}} {n}",
                        ccr_types[k],
                        result_label(r)
                    );
                }
            }
        }
        let _ = writeln!(
            out,
            "# HELP gateway_ccr_failures_total CCRs that got no answer, by reason."
        );
        let _ = writeln!(out, "# TYPE gateway_ccr_failures_total counter");
        for (i, reason) in ["timeout", "connection_lost", "no_connection"]
            .iter()
            .enumerate()
        {
            let _ = writeln!(
                out,
                "gateway_ccr_failures_total{{reason=\"{reason}\"}} {}",
                self.ccr_failures[i].load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(out, "# HELP gateway_request_duration_seconds Time to answer, per leg (access: ACR to ACA; charging: CCR sent to the CCA read off the socket).");
        let _ = writeln!(out, "# TYPE gateway_request_duration_seconds histogram");
        for (i, leg) in LEGS.iter().enumerate() {
            self.latency[i].render(
                "gateway_request_duration_seconds",
                &format!("leg=\"{leg}\""),
                out,
            );
        }
        let _ = writeln!(out, "# HELP gateway_sessions_cut_total Sessions ended by the gateway with an ASR, by Termination-Cause.");
        let _ = writeln!(out, "# TYPE gateway_sessions_cut_total counter");
        for (i, (_, cause)) in CAUSES.iter().enumerate() {
            let _ = writeln!(
                out,
                "gateway_sessions_cut_total{{cause=\"{cause}\"}} {}",
                self.cuts[i].load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(out, "# HELP gateway_pdf_connections_closed_total PDF connections closed after they were up, by who closed them (pdf_dpr: the PDF sent DPR; gateway_dpr: the gateway did; lost: no DPR).");
        let _ = writeln!(out, "# TYPE gateway_pdf_connections_closed_total counter");
        for (i, reason) in ["pdf_dpr", "gateway_dpr", "lost"].iter().enumerate() {
            let _ = writeln!(
                out,
                "gateway_pdf_connections_closed_total{{reason=\"{reason}\"}} {}",
                self.pdf_connections_closed[i].load(Ordering::Relaxed)
            );
        }
        for (name, help, value) in [
            (
                "gateway_pdf_asr_total",
                "ASRs received from PDFs.",
                &self.asr_from_pdf,
            ),
            (
                "gateway_redirects_total",
                "3006 redirects followed.",
                &self.redirects,
            ),
            (
                "gateway_retransmissions_total",
                "CCRs re-sent with the T flag after a connection loss.",
                &self.retransmissions,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
    }
}
