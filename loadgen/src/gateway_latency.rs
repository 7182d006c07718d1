//! The gateway's own latency, once a second: its `gateway_request_duration_seconds`
//! histograms (the access leg: an ACR received to its ACA; the charging leg: a CCR sent to
//! its CCA read off the socket), read from its admin port's `/metrics` with the live
//! sessions per node ([`crate::nodes`]) and kept as each second's answers per bucket.
//!
//! What it tells: a second whose loadgen p99 is high while the gateway's access leg is not
//! lost its time outside the gateway (the loadgen, the access sockets); a slow access leg
//! with a slow charging leg points past the gateway, at the pdf side. The buckets are the
//! gateway's (50 us to 1 s), so a percentile here is a bucket's upper bound.

use serde::{Deserialize, Serialize};

/// The metric read.
const METRIC: &str = "gateway_request_duration_seconds_bucket";

/// One reading of the gateway's histograms: per leg, the cumulative count at each finite
/// bucket bound (microseconds, ascending), and the total (`+Inf`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reading {
    /// The finite bucket bounds, microseconds.
    pub bounds_us: Vec<u64>,
    /// The access leg's cumulative counts, one per bound, then the total.
    pub access: Vec<u64>,
    /// The charging leg's, the same way.
    pub charging: Vec<u64>,
}

/// Reads the two legs' buckets out of the gateway's Prometheus text; None when either leg
/// is missing or the legs' bounds differ.
pub fn parse(metrics: &str) -> Option<Reading> {
    let mut legs: [Vec<(u64, u64)>; 2] = [Vec::new(), Vec::new()];
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix(METRIC) else {
            continue;
        };
        let (labels, value) = rest.rsplit_once(' ')?;
        let leg = if labels.contains("leg=\"access\"") {
            0
        } else if labels.contains("leg=\"charging\"") {
            1
        } else {
            continue;
        };
        let le = labels.split("le=\"").nth(1)?.split('"').next()?;
        let bound_us = if le == "+Inf" {
            u64::MAX
        } else {
            (le.parse::<f64>().ok()? * 1e6).round() as u64
        };
        legs[leg].push((bound_us, value.parse::<f64>().ok()? as u64));
    }
    for leg in &mut legs {
        leg.sort_unstable();
    }
    let bounds = |leg: &[(u64, u64)]| -> Vec<u64> {
        leg.iter()
            .map(|&(b, _)| b)
            .filter(|&b| b != u64::MAX)
            .collect()
    };
    let bounds_us = bounds(&legs[0]);
    if legs[0].last()?.0 != u64::MAX || bounds(&legs[1]) != bounds_us || legs[1].is_empty() {
        return None;
    }
    let counts = |leg: &[(u64, u64)]| leg.iter().map(|&(_, c)| c).collect();
    Some(Reading {
        access: counts(&legs[0]),
        charging: counts(&legs[1]),
        bounds_us,
    })
}

/// One second of the gateway's own latency: answers per bucket (not cumulative; the last
/// one is over the last bound), per leg.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GatewaySecond {
    /// The timeline row it belongs to (seconds since traffic started).
    pub second: u64,
    /// ACRs answered in this second, per bucket.
    pub access: Vec<u64>,
    /// CCAs received in this second, per bucket.
    pub charging: Vec<u64>,
}

/// One of the gateway's two legs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leg {
    /// An ACR received to its ACA.
    Access,
    /// A CCR sent to its CCA read off the socket.
    Charging,
}

impl GatewaySecond {
    /// The leg's counts.
    pub fn counts(&self, leg: Leg) -> &[u64] {
        match leg {
            Leg::Access => &self.access,
            Leg::Charging => &self.charging,
        }
    }

    fn counts_mut(&mut self, leg: Leg) -> &mut Vec<u64> {
        match leg {
            Leg::Access => &mut self.access,
            Leg::Charging => &mut self.charging,
        }
    }
}

/// The gateway's own latency over a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GatewayLatency {
    /// The finite bucket bounds, microseconds; each second has one count more (over the
    /// last bound).
    pub bounds_us: Vec<u64>,
    /// Every second sampled.
    pub seconds: Vec<GatewaySecond>,
}

/// Per-bucket counts between two cumulative readings of one leg; None if a count went
/// back (the gateway restarted).
fn between(before: &[u64], after: &[u64]) -> Option<Vec<u64>> {
    let cumulative = after
        .iter()
        .zip(before)
        .map(|(a, b)| a.checked_sub(*b))
        .collect::<Option<Vec<u64>>>()?;
    Some(
        cumulative
            .iter()
            .enumerate()
            .map(|(i, &c)| c - if i == 0 { 0 } else { cumulative[i - 1].min(c) })
            .collect(),
    )
}

impl GatewayLatency {
    /// Adds `second`: the answers between two readings. Skipped when the readings do not
    /// follow each other (other bounds, a count gone back).
    pub fn push(&mut self, second: u64, before: &Reading, after: &Reading) {
        if before.bounds_us != after.bounds_us
            || (!self.seconds.is_empty() && self.bounds_us != after.bounds_us)
        {
            return;
        }
        let (Some(access), Some(charging)) = (
            between(&before.access, &after.access),
            between(&before.charging, &after.charging),
        ) else {
            return;
        };
        self.bounds_us.clone_from(&after.bounds_us);
        self.seconds.push(GatewaySecond {
            second,
            access,
            charging,
        });
    }

    /// The bound of the bucket holding the `quantile` of `counts` (None: no answers;
    /// `u64::MAX`: over the last bound).
    pub fn quantile_us(&self, counts: &[u64], quantile: f64) -> Option<u64> {
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = (quantile * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, &count) in counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(self.bounds_us.get(i).copied().unwrap_or(u64::MAX));
            }
        }
        Some(u64::MAX)
    }

    /// A second's p99 on a leg, as a bucket bound (see [`Self::quantile_us`]).
    pub fn p99_us(&self, second: &GatewaySecond, leg: Leg) -> Option<u64> {
        self.quantile_us(second.counts(leg), 0.99)
    }

    /// Each second with answers on `leg`: (second, p99 bound).
    pub fn p99s(&self, leg: Leg) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.seconds
            .iter()
            .filter_map(move |s| self.p99_us(s, leg).map(|p99| (s.second, p99)))
    }

    /// The terminal summary's line: each leg's worst second by p99.
    pub fn summary(&self) -> String {
        let worst = |leg| self.p99s(leg).map(|(second, p99)| (p99, second)).max();
        let describe = |worst: Option<(u64, u64)>| match worst {
            None => "no answers".to_owned(),
            Some((u64::MAX, second)) => format!(
                "over {:.1} ms (second {second})",
                self.bounds_us.last().copied().unwrap_or(0) as f64 / 1000.0
            ),
            Some((bound, second)) => {
                format!("<= {:.2} ms (second {second})", bound as f64 / 1000.0)
            }
        };
        format!(
            "gateway's own p99, worst second of {}: access leg {}, charging leg {}\n",
            self.seconds.len(),
            describe(worst(Leg::Access)),
            describe(worst(Leg::Charging))
        )
    }

    /// Shards' seconds added up, second by second (shards sharing one gateway: only shard
    /// 0 samples it). None when none sampled or their bounds differ.
    pub fn merge(all: &[&GatewayLatency]) -> Option<GatewayLatency> {
        let sampled: Vec<&GatewayLatency> = all
            .iter()
            .copied()
            .filter(|l| !l.seconds.is_empty())
            .collect();
        let bounds_us = sampled.first()?.bounds_us.clone();
        if sampled.iter().any(|l| l.bounds_us != bounds_us) {
            return None;
        }
        let mut by_second: std::collections::BTreeMap<u64, GatewaySecond> = Default::default();
        for latency in sampled {
            for s in &latency.seconds {
                let row = by_second.entry(s.second).or_insert_with(|| GatewaySecond {
                    second: s.second,
                    access: vec![0; s.access.len()],
                    charging: vec![0; s.charging.len()],
                });
                for leg in [Leg::Access, Leg::Charging] {
                    for (sum, n) in row.counts_mut(leg).iter_mut().zip(s.counts(leg)) {
                        *sum += n;
                    }
                }
            }
        }
        Some(GatewayLatency {
            bounds_us,
            seconds: by_second.into_values().collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(access: [u64; 4], charging: [u64; 4]) -> String {
        let mut text = String::from(
            "# TYPE gateway_request_duration_seconds histogram\ngateway_acr_total{type=\"INTERIM\",result=\"2001\"} 9\n",
        );
        for (leg, counts) in [("access", access), ("charging", charging)] {
            for (le, count) in ["0.0005", "0.001", "0.0025", "+Inf"].iter().zip(counts) {
                text += &format!("{METRIC}{{leg=\"{leg}\",le=\"{le}\"}} {count}\n");
            }
            text += &format!(
                "gateway_request_duration_seconds_count{{leg=\"{leg}\"}} {}\n",
                counts[3]
            );
        }
        text
    }

    #[test]
    fn readings_become_seconds_and_percentiles() {
        let first = parse(&metrics([10, 10, 10, 10], [5, 5, 5, 5])).expect("parsed");
        assert_eq!(first.bounds_us, [500, 1000, 2500]);
        assert_eq!(first.access, [10, 10, 10, 10]);
        // In the next second: 90 access answers under 0.5 ms, 8 under 1 ms, 2 over 2.5 ms.
        let second = parse(&metrics([100, 108, 108, 110], [5, 5, 105, 105])).expect("parsed");
        let mut latency = GatewayLatency::default();
        latency.push(1, &first, &second);
        assert_eq!(
            latency.seconds,
            [GatewaySecond {
                second: 1,
                access: vec![90, 8, 0, 2],
                charging: vec![0, 0, 100, 0],
            }]
        );
        let s = &latency.seconds[0];
        assert_eq!(latency.quantile_us(&s.access, 0.5), Some(500));
        assert_eq!(latency.quantile_us(&s.access, 0.95), Some(1000));
        assert_eq!(latency.quantile_us(&s.access, 0.99), Some(u64::MAX));
        assert_eq!(latency.quantile_us(&s.charging, 0.99), Some(2500));
        assert_eq!(latency.quantile_us(&[0, 0, 0, 0], 0.99), None);
        assert_eq!(latency.p99_us(s, Leg::Access), Some(u64::MAX));
        assert_eq!(latency.p99_us(s, Leg::Charging), Some(2500));
        assert_eq!(
            latency.summary(),
            "gateway's own p99, worst second of 1: access leg over 2.5 ms (second 1), \
             charging leg <= 2.50 ms (second 1)\n"
        );

        // A gateway that restarted (counts went back): that second is skipped.
        latency.push(2, &second, &first);
        assert_eq!(latency.seconds.len(), 1);
        // Text without both legs is not a reading.
        assert_eq!(parse("gateway_acr_total 3\n"), None);
    }

    #[test]
    fn shards_seconds_add_up() {
        let row = |second, access: &[u64]| GatewaySecond {
            second,
            access: access.to_vec(),
            charging: vec![0; access.len()],
        };
        let a = GatewayLatency {
            bounds_us: vec![500],
            seconds: vec![row(1, &[3, 1]), row(2, &[4, 0])],
        };
        let b = GatewayLatency {
            bounds_us: vec![500],
            seconds: vec![row(2, &[1, 1])],
        };
        let merged = GatewayLatency::merge(&[&a, &GatewayLatency::default(), &b]).expect("merged");
        assert_eq!(merged.seconds, [row(1, &[3, 1]), row(2, &[5, 1])]);
        let other = GatewayLatency {
            bounds_us: vec![1000],
            seconds: vec![row(1, &[1, 0])],
        };
        assert_eq!(GatewayLatency::merge(&[&a, &other]), None);
        assert_eq!(GatewayLatency::merge(&[]), None);
    }
}
