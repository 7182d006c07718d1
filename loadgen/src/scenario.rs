//! Scenario files (DESIGN.md section 6): TOML, `schema = 1`, validated before anything
//! starts, unknown keys refused, errors naming the file, the key and what was expected.

use std::path::Path;
use std::time::Duration;

use pdf::population::PopulationSpec;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A scenario.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Format version: 1.
    pub schema: u32,
    /// A name for reports.
    pub name: String,
    /// Seed of every random draw.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// How long traffic runs.
    pub duration: Span,
    /// Compresses time: sessions and intervals last `1 / time_scale` of their nominal time.
    #[serde(default = "one")]
    pub time_scale: f64,
    /// Processes.
    #[serde(default)]
    pub topology: Topology,
    /// The subscribers (the pdf builds the same accounts from the same keys).
    #[serde(default)]
    #[schemars(with = "crate::schema::Population")]
    pub population: PopulationSpec,
    /// Kinds of session.
    pub mix: Vec<Mix>,
    /// How much traffic.
    pub load: Load,
    /// Pass/fail thresholds.
    #[serde(default)]
    pub slo: Slo,
}

fn default_seed() -> u64 {
    42
}
fn one() -> f64 {
    1.0
}

/// A duration written `"90s"`, `"2m"`, `"1h"`, `"3d"`, `"250ms"`, or a number of seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Span(pub Duration);

impl Serialize for Span {
    /// As a number of seconds (which reads back as the same span).
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.0.as_secs_f64())
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(f64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Seconds(s) if s >= 0.0 && s.is_finite() => Ok(Span(Duration::from_secs_f64(s))),
            Raw::Seconds(s) => Err(serde::de::Error::custom(format!("{s} is not a duration"))),
            Raw::Text(text) => parse_duration(&text)
                .map(Span)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// Parses `"90s"`, `"2m"`, `"1.5h"`, `"3d"`, `"250ms"`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration: expected a number and a unit, like \"90s\", \"2m\", \"3d\""))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" | "" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86_400.0,
        other => return Err(format!("{text:?}: unknown unit {other:?} (ms, s, m, h, d)")),
    };
    if !(seconds >= 0.0 && seconds.is_finite()) {
        return Err(format!("{text:?} is not a duration"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// `[topology]`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// Start `pdf` and `gateway` from the loadgen's directory (true), or use running ones.
    #[serde(default = "yes")]
    pub spawn: bool,
    /// Connections per PDF in the gateway's pool.
    #[serde(default = "four")]
    pub pdf_connections: u8,
    /// The gateway's loss policy: `drop` or `failover`.
    #[serde(default = "drop_policy")]
    pub policy: String,
    /// Access connections from the loadgen to the gateway.
    #[serde(default = "four")]
    pub access_connections: u8,
    /// The gateway's access address (spawn = false).
    #[serde(default)]
    pub gateway: Option<std::net::SocketAddr>,
    /// The pdf's admin address, for the books check (spawn = false).
    #[serde(default)]
    pub pdf_admin: Option<std::net::SocketAddr>,
}

fn yes() -> bool {
    true
}
fn four() -> u8 {
    4
}
fn drop_policy() -> String {
    "drop".into()
}

impl Default for Topology {
    fn default() -> Self {
        Self {
            spawn: true,
            pdf_connections: 4,
            policy: drop_policy(),
            access_connections: 4,
            gateway: None,
            pdf_admin: None,
        }
    }
}

/// What a session is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A call: CC-Time.
    Voice,
    /// A data session: CC-Total-Octets.
    Data,
    /// A one-off event (a message): one ACR EVENT.
    Event,
}

/// `[[mix]]`: one kind of session and its share.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Mix {
    /// A name for reports.
    pub name: String,
    /// Share of sessions (relative to the other entries).
    pub weight: f64,
    /// Voice, data or event.
    pub kind: Kind,
    /// The Rating-Group (default: 1 voice, 10 data, 20 event).
    #[serde(default)]
    pub rating_group: Option<u32>,
    /// Session length (ignored for events).
    #[serde(default)]
    pub duration: Option<Dist>,
    /// Time between INTERIM records.
    #[serde(default)]
    pub interval: Option<Span>,
    /// Data: octets used per interval (voice uses the interval's seconds).
    #[serde(default)]
    pub usage: Option<Dist>,
}

impl Mix {
    /// The Rating-Group.
    pub fn rating_group(&self) -> u32 {
        self.rating_group.unwrap_or(match self.kind {
            Kind::Voice => 1,
            Kind::Data => 10,
            Kind::Event => 20,
        })
    }
}

/// A distribution of seconds or counts. Durations may be written as strings.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(tag = "dist", rename_all = "lowercase", deny_unknown_fields)]
pub enum Dist {
    /// Always `value`.
    Constant {
        /// The value.
        value: Number,
    },
    /// Uniform between `min` and `max`.
    Uniform {
        /// Lower bound.
        min: Number,
        /// Upper bound.
        max: Number,
    },
    /// Exponential with `mean`.
    Exponential {
        /// Mean.
        mean: Number,
    },
    /// Log-normal from its `median` and its `p99`.
    Lognormal {
        /// Median.
        median: Number,
        /// 99th percentile.
        p99: Number,
    },
}

/// A number, or a duration string read as seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Number(pub f64);

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Value(f64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Value(v) => Ok(Number(v)),
            Raw::Text(text) => parse_duration(&text)
                .map(|d| Number(d.as_secs_f64()))
                .map_err(serde::de::Error::custom),
        }
    }
}

impl Dist {
    /// A draw.
    pub fn sample(&self, rng: &mut fastrand::Rng) -> f64 {
        match *self {
            Dist::Constant { value } => value.0,
            Dist::Uniform { min, max } => min.0 + rng.f64() * (max.0 - min.0),
            Dist::Exponential { mean } => -mean.0 * (1.0 - rng.f64()).ln(),
            Dist::Lognormal { median, p99 } => {
                // ln X ~ N(mu, sigma): mu = ln median, sigma = ln(p99 / median) / z(0.99).
                let sigma = (p99.0 / median.0).ln() / 2.326_347_874;
                median.0 * (sigma * standard_normal(rng)).exp()
            }
        }
    }

    /// The mean (for the plan's expected concurrency).
    pub fn mean(&self) -> f64 {
        match *self {
            Dist::Constant { value } => value.0,
            Dist::Uniform { min, max } => (min.0 + max.0) / 2.0,
            Dist::Exponential { mean } => mean.0,
            Dist::Lognormal { median, p99 } => {
                let sigma = (p99.0 / median.0).ln() / 2.326_347_874;
                median.0 * (sigma * sigma / 2.0).exp()
            }
        }
    }

    fn validate(&self, key: &str) -> Result<(), String> {
        let ok = match *self {
            Dist::Constant { value } => value.0 >= 0.0,
            Dist::Uniform { min, max } => min.0 >= 0.0 && max.0 >= min.0,
            Dist::Exponential { mean } => mean.0 > 0.0,
            Dist::Lognormal { median, p99 } => median.0 > 0.0 && p99.0 > median.0,
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "{key}: the distribution's parameters are out of range ({self:?})"
            ))
        }
    }
}

fn standard_normal(rng: &mut fastrand::Rng) -> f64 {
    // Box-Muller.
    let (u, v) = (1.0 - rng.f64(), rng.f64());
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// `[load]`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Load {
    /// Closed model: keep this many sessions going.
    #[serde(default)]
    pub concurrent_sessions: Option<u32>,
    /// Open model: new sessions per second.
    #[serde(default)]
    pub arrival_rate: Option<f64>,
    /// Reach the load linearly over this time.
    #[serde(default)]
    pub ramp: Option<Span>,
    /// At most this many live sessions (open model).
    #[serde(default)]
    pub max_sessions: Option<u32>,
}

/// `[slo]`: thresholds; a breach makes the run exit 99.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    /// Most sessions lost to the infrastructure.
    #[serde(default)]
    pub dropped_sessions: Option<u64>,
    /// Most requests failed (timeouts, 3xxx, unexpected results).
    #[serde(default)]
    pub failed_requests: Option<u64>,
    /// Highest p99 latency of any step (measured from the intended send time).
    #[serde(default)]
    pub p99_latency: Option<Span>,
    /// Most accounts whose charge differs from usage x tariff.
    #[serde(default)]
    pub charging_mismatch: Option<u64>,
}

impl Scenario {
    /// Reads and validates a scenario; every message names the file.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let scenario: Scenario =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        scenario
            .validate()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(scenario)
    }

    /// Checks what the types cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.schema != 1 {
            return Err(format!(
                "schema: this loadgen reads schema 1, the file says {}",
                self.schema
            ));
        }
        if !(self.time_scale > 0.0 && self.time_scale.is_finite()) {
            return Err("time_scale: must be a positive number".into());
        }
        self.population.validate()?;
        if self.mix.is_empty() {
            return Err("mix: at least one [[mix]] entry is needed".into());
        }
        for (i, mix) in self.mix.iter().enumerate() {
            let key = format!("mix[{i}] ({})", mix.name);
            if mix.weight.is_nan() || mix.weight <= 0.0 {
                return Err(format!("{key}.weight: must be positive"));
            }
            if mix.kind != Kind::Event {
                let duration = mix.duration.as_ref().ok_or(format!(
                    "{key}.duration: a {:?} session needs a duration distribution",
                    mix.kind
                ))?;
                duration.validate(&format!("{key}.duration"))?;
                let interval = mix.interval.ok_or(format!(
                    "{key}.interval: a {:?} session needs an INTERIM interval",
                    mix.kind
                ))?;
                if interval.0.is_zero() {
                    return Err(format!("{key}.interval: must be longer than 0"));
                }
            }
            if mix.kind == Kind::Data {
                let usage = mix.usage.as_ref().ok_or(format!(
                    "{key}.usage: a data session needs octets per interval"
                ))?;
                usage.validate(&format!("{key}.usage"))?;
            }
        }
        match (self.load.concurrent_sessions, self.load.arrival_rate) {
            (Some(0), _) => return Err("load.concurrent_sessions: at least 1".into()),
            (Some(_), Some(_)) => {
                return Err(
                    "load: give concurrent_sessions (closed) or arrival_rate (open), not both"
                        .into(),
                )
            }
            (None, None) => {
                return Err(
                    "load: give concurrent_sessions (closed model) or arrival_rate (open model)"
                        .into(),
                )
            }
            (None, Some(rate)) if rate.is_nan() || rate <= 0.0 => {
                return Err("load.arrival_rate: must be positive".into())
            }
            _ => {}
        }
        if self.topology.policy != "drop" && self.topology.policy != "failover" {
            return Err(format!(
                "topology.policy: expected \"drop\" or \"failover\", got {:?}",
                self.topology.policy
            ));
        }
        if !self.topology.spawn
            && (self.topology.gateway.is_none() || self.topology.pdf_admin.is_none())
        {
            return Err("topology: spawn = false needs gateway and pdf_admin addresses".into());
        }
        if self.topology.access_connections == 0 {
            return Err("topology.access_connections: at least 1".into());
        }
        Ok(())
    }

    /// The mix entry a uniform draw in 0..1 falls on.
    pub fn pick(&self, draw: f64) -> usize {
        let total: f64 = self.mix.iter().map(|m| m.weight).sum();
        let mut at = draw * total;
        for (i, mix) in self.mix.iter().enumerate() {
            if at < mix.weight {
                return i;
            }
            at -= mix.weight;
        }
        self.mix.len() - 1
    }

    /// The plan, for `loadgen check`: sessions, expected concurrency, memory estimate.
    pub fn plan(&self) -> String {
        let total: f64 = self.mix.iter().map(|m| m.weight).sum();
        let mean_length: f64 = self
            .mix
            .iter()
            .map(|m| {
                m.weight / total * m.duration.as_ref().map_or(0.0, Dist::mean) / self.time_scale
            })
            .sum();
        let concurrency = match (self.load.concurrent_sessions, self.load.arrival_rate) {
            (Some(n), _) => f64::from(n),
            (_, Some(rate)) => rate * mean_length,
            _ => 0.0,
        };
        let seconds = self.duration.0.as_secs_f64();
        let mut text = format!(
            "scenario {:?}: {} s of traffic (time scale {}), {} subscribers in {} accounts\n",
            self.name,
            seconds,
            self.time_scale,
            self.population.subscribers,
            self.population.accounts()
        );
        for mix in &self.mix {
            text += &format!(
                "  {:>5.1}% {:<10} {:?}, Rating-Group {}, mean length {:.1} s, interval {}\n",
                100.0 * mix.weight / total,
                mix.name,
                mix.kind,
                mix.rating_group(),
                mix.duration.as_ref().map_or(0.0, Dist::mean) / self.time_scale,
                mix.interval.map_or("-".to_owned(), |i| format!(
                    "{:.1} s",
                    i.0.as_secs_f64() / self.time_scale
                )),
            );
        }
        text += &format!(
            "  load: {} ; expected concurrency {concurrency:.0} sessions (arrival rate x mean length); \
             memory estimate {:.1} MB in the gateway and as much in the pdf (about 65 bytes a session)\n",
            match (self.load.concurrent_sessions, self.load.arrival_rate) {
                (Some(n), _) => format!("closed, {n} sessions"),
                (_, Some(r)) => format!("open, {r} sessions/s"),
                _ => String::new(),
            },
            concurrency * 65.0 / 1e6
        );
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3d"), Ok(Duration::from_secs(259_200)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("2 fortnights").is_err());
    }

    #[test]
    fn lognormal_matches_its_median() {
        let dist = Dist::Lognormal {
            median: Number(120.0),
            p99: Number(2700.0),
        };
        let mut rng = fastrand::Rng::with_seed(1);
        let mut draws: Vec<f64> = (0..20_001).map(|_| dist.sample(&mut rng)).collect();
        draws.sort_by(f64::total_cmp);
        let median = draws[10_000];
        assert!((100.0..140.0).contains(&median), "{median}");
    }
}
