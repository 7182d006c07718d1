//! Scenario files (DESIGN.md section 6): TOML, `schema = 1`, validated before anything
//! starts, unknown keys refused, errors naming the file, the key and what was expected.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
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
    /// Timeline events (`[[event]]`), at offsets from the start of traffic.
    #[serde(default, rename = "event")]
    pub events: Vec<Event>,
    /// The scenario file's directory: the files it names are relative to it, and event
    /// commands run in it.
    #[serde(skip)]
    pub base: PathBuf,
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
    /// The gateway's admin address, for `set_weight` events (spawn = false).
    #[serde(default)]
    pub gateway_admin: Option<std::net::SocketAddr>,
    /// Worker threads of a spawned gateway's runtime (`--workers`; default: one per core).
    #[serde(default)]
    pub gateway_workers: Option<u16>,
    /// Worker threads of each spawned pdf's runtime (`--workers`; default: one per core).
    #[serde(default)]
    pub pdf_workers: Option<u16>,
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
            gateway_admin: None,
            gateway_workers: None,
            pdf_workers: None,
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
    /// Time between INTERIM records: a duration (`"30s"`), or a distribution drawn again
    /// for every interval (`{ dist = "exponential", mean = "30s" }`).
    #[serde(default)]
    pub interval: Option<Interval>,
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

/// The time between a session's INTERIM records: one fixed duration, or a distribution of
/// seconds drawn again for each interval from the session's random stream.
#[derive(Clone, Debug)]
pub enum Interval {
    /// Always this long (`interval = "30s"`); draws nothing from the random stream.
    Fixed(Span),
    /// Drawn for every interval (`interval = { dist = "exponential", mean = "30s" }`).
    Drawn(Dist),
}

/// The shortest interval a draw gives (a draw of 0 would send records back to back).
pub const MIN_INTERVAL_SECONDS: f64 = 0.001;

impl Interval {
    /// The next interval, in nominal seconds (before `time_scale`); at least
    /// [`MIN_INTERVAL_SECONDS`].
    pub fn next(&self, rng: &mut fastrand::Rng) -> f64 {
        match self {
            Interval::Fixed(span) => span.0.as_secs_f64(),
            Interval::Drawn(dist) => dist.sample(rng).max(MIN_INTERVAL_SECONDS),
        }
    }

    /// The mean interval in nominal seconds.
    pub fn mean(&self) -> f64 {
        match self {
            Interval::Fixed(span) => span.0.as_secs_f64(),
            Interval::Drawn(dist) => dist.mean().max(MIN_INTERVAL_SECONDS),
        }
    }
}

impl<'de> Deserialize<'de> for Interval {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Read the value first, so that a table gets the distribution's own errors (unknown
        // `dist`, a misspelt key) rather than "did not match any variant".
        let value = serde_json::Value::deserialize(deserializer)?;
        match value {
            serde_json::Value::Object(_) => Dist::deserialize(value)
                .map(Interval::Drawn)
                .map_err(serde::de::Error::custom),
            serde_json::Value::String(_) | serde_json::Value::Number(_) => {
                Span::deserialize(value)
                    .map(Interval::Fixed)
                    .map_err(serde::de::Error::custom)
            }
            other => Err(serde::de::Error::custom(format!(
                "expected a duration (\"30s\") or a distribution table ({{ dist = ... }}), got {other}"
            ))),
        }
    }
}

/// A distribution of seconds or counts (durations may be written as strings), with optional
/// `min` and `max` clamps: a draw below `min` is `min`, above `max` is `max`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(tag = "dist", rename_all = "lowercase", deny_unknown_fields)]
pub enum Dist {
    /// Always `value`.
    Constant {
        /// The value.
        value: Number,
        /// Clamp: no draw below this.
        #[serde(default)]
        min: Option<Number>,
        /// Clamp: no draw above this.
        #[serde(default)]
        max: Option<Number>,
    },
    /// Uniform between `min` and `max` (its bounds are its clamps).
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
        /// Clamp: no draw below this.
        #[serde(default)]
        min: Option<Number>,
        /// Clamp: no draw above this.
        #[serde(default)]
        max: Option<Number>,
    },
    /// Normal with `mean` and `stddev`, truncated at 0 (negative draws are drawn again).
    Normal {
        /// Mean (before the truncation at 0).
        mean: Number,
        /// Standard deviation (before the truncation at 0).
        stddev: Number,
        /// Clamp: no draw below this.
        #[serde(default)]
        min: Option<Number>,
        /// Clamp: no draw above this.
        #[serde(default)]
        max: Option<Number>,
    },
    /// Log-normal from its `median` and either its `p99` or `sigma` (the standard deviation
    /// of its logarithm).
    #[schemars(extend("oneOf" = [{ "required": ["p99"] }, { "required": ["sigma"] }]))]
    Lognormal {
        /// Median.
        median: Number,
        /// 99th percentile (or give `sigma`).
        #[serde(default)]
        p99: Option<Number>,
        /// Standard deviation of ln X (or give `p99`).
        #[serde(default)]
        sigma: Option<f64>,
        /// Clamp: no draw below this.
        #[serde(default)]
        min: Option<Number>,
        /// Clamp: no draw above this.
        #[serde(default)]
        max: Option<Number>,
    },
    /// Pareto (type I): `scale` is the smallest value, `shape` the tail index (the mean is
    /// finite only for shape > 1; give `max` otherwise).
    Pareto {
        /// The smallest value (x_m).
        scale: Number,
        /// Tail index (alpha).
        shape: f64,
        /// Clamp: no draw below this.
        #[serde(default)]
        min: Option<Number>,
        /// Clamp: no draw above this.
        #[serde(default)]
        max: Option<Number>,
    },
    /// Weibull with `scale` (lambda) and `shape` (k; 1 is the exponential).
    Weibull {
        /// Scale (lambda).
        scale: Number,
        /// Shape (k).
        shape: f64,
        /// Clamp: no draw below this.
        #[serde(default)]
        min: Option<Number>,
        /// Clamp: no draw above this.
        #[serde(default)]
        max: Option<Number>,
    },
    /// Values from a CSV file (path relative to the scenario file), drawn uniformly with
    /// repetition: one value a line, numbers or duration strings; blank lines, `#` comments
    /// and one header line are skipped.
    Empirical {
        /// The CSV file, relative to the scenario file.
        file: PathBuf,
        /// The column holding the values, from 1 (default 1).
        #[serde(default)]
        column: Option<u32>,
        /// The values read from `file` (by [`Scenario::load`]).
        #[serde(skip)]
        values: Samples,
        /// Clamp: no draw below this.
        #[serde(default)]
        min: Option<Number>,
        /// Clamp: no draw above this.
        #[serde(default)]
        max: Option<Number>,
    },
}

/// The values of an empirical distribution. Its `Debug` form is its count and a hash of the
/// values (so that the scenario digest of shards tells different CSV contents apart, and
/// errors stay short).
#[derive(Clone, Default, PartialEq)]
pub struct Samples(pub Arc<Vec<f64>>);

impl std::fmt::Debug for Samples {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for value in self.0.iter() {
            for byte in value.to_bits().to_le_bytes() {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        }
        write!(f, "Samples({} values, fnv {hash:016x})", self.0.len())
    }
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

/// z(0.99): the standard normal's 99th percentile.
const Z99: f64 = 2.326_347_874_040_841;

/// A distribution's law with plain parameters (no clamps).
#[derive(Clone, Copy, Debug)]
enum Law<'a> {
    Constant(f64),
    Uniform(f64, f64),
    Exponential(f64),
    Normal { mean: f64, sd: f64 },
    Lognormal { mu: f64, sigma: f64 },
    Pareto { scale: f64, shape: f64 },
    Weibull { scale: f64, shape: f64 },
    Empirical(&'a [f64]),
}

impl Law<'_> {
    fn sample(self, rng: &mut fastrand::Rng) -> f64 {
        match self {
            Law::Constant(value) => value,
            Law::Uniform(min, max) => min + rng.f64() * (max - min),
            Law::Exponential(mean) => -mean * (1.0 - rng.f64()).ln(),
            Law::Normal { mean, sd } => {
                // Truncated at 0: draw again (mean >= 0, so at least half the draws land).
                for _ in 0..64 {
                    let x = mean + sd * standard_normal(rng);
                    if x >= 0.0 {
                        return x;
                    }
                }
                0.0
            }
            Law::Lognormal { mu, sigma } => (mu + sigma * standard_normal(rng)).exp(),
            Law::Pareto { scale, shape } => scale / (1.0 - rng.f64()).powf(1.0 / shape),
            Law::Weibull { scale, shape } => scale * (-(1.0 - rng.f64()).ln()).powf(1.0 / shape),
            Law::Empirical(values) => values[rng.usize(0..values.len())],
        }
    }

    /// The mean (infinite for a Pareto of shape <= 1).
    fn mean(self) -> f64 {
        match self {
            Law::Constant(value) => value,
            Law::Uniform(min, max) => (min + max) / 2.0,
            Law::Exponential(mean) => mean,
            Law::Normal { mean, sd } if sd > 0.0 => {
                // E[X | X >= 0] = mu + sd * phi(mu/sd) / Phi(mu/sd).
                let a = mean / sd;
                mean + sd * normal_pdf(a) / normal_cdf(a)
            }
            Law::Normal { mean, .. } => mean,
            Law::Lognormal { mu, sigma } => (mu + sigma * sigma / 2.0).exp(),
            Law::Pareto { scale, shape } if shape > 1.0 => shape * scale / (shape - 1.0),
            Law::Pareto { .. } => f64::INFINITY,
            Law::Weibull { scale, shape } => scale * gamma(1.0 + 1.0 / shape),
            Law::Empirical(values) => values.iter().sum::<f64>() / values.len() as f64,
        }
    }

    /// A value of the law's own scale (for integration tolerances).
    fn typical(self) -> f64 {
        match self {
            Law::Constant(value) | Law::Exponential(value) => value,
            Law::Uniform(_, max) => max,
            Law::Normal { mean, sd } => mean + sd,
            Law::Lognormal { mu, .. } => mu.exp(),
            Law::Pareto { scale, .. } | Law::Weibull { scale, .. } => scale,
            Law::Empirical(values) => values.iter().copied().fold(0.0, f64::max),
        }
    }

    /// P(X <= x).
    fn cdf(self, x: f64) -> f64 {
        let p = match self {
            Law::Constant(value) => f64::from(u8::from(x >= value)),
            Law::Uniform(min, max) if max > min => (x - min) / (max - min),
            Law::Uniform(min, _) => f64::from(u8::from(x >= min)),
            Law::Exponential(mean) => 1.0 - (-x / mean).exp(),
            Law::Normal { mean, sd } if sd > 0.0 => {
                let below_zero = normal_cdf(-mean / sd);
                (normal_cdf((x - mean) / sd) - below_zero) / (1.0 - below_zero)
            }
            Law::Normal { mean, .. } => f64::from(u8::from(x >= mean)),
            Law::Lognormal { mu, sigma } if x > 0.0 => normal_cdf((x.ln() - mu) / sigma),
            Law::Lognormal { .. } => 0.0,
            Law::Pareto { scale, shape } if x > scale => 1.0 - (scale / x).powf(shape),
            Law::Pareto { .. } => 0.0,
            Law::Weibull { scale, shape } => 1.0 - (-(x / scale).powf(shape)).exp(),
            Law::Empirical(values) => {
                values.iter().filter(|&&v| v <= x).count() as f64 / values.len() as f64
            }
        };
        if x < 0.0 {
            0.0
        } else {
            p.clamp(0.0, 1.0)
        }
    }
}

impl Dist {
    /// The law and the clamps.
    fn law(&self) -> (Law<'_>, Option<f64>, Option<f64>) {
        let clamps =
            |min: &Option<Number>, max: &Option<Number>| (min.map(|n| n.0), max.map(|n| n.0));
        match self {
            Dist::Constant { value, min, max } => {
                let (lo, hi) = clamps(min, max);
                (Law::Constant(value.0), lo, hi)
            }
            Dist::Uniform { min, max } => (Law::Uniform(min.0, max.0), None, None),
            Dist::Exponential { mean, min, max } => {
                let (lo, hi) = clamps(min, max);
                (Law::Exponential(mean.0), lo, hi)
            }
            Dist::Normal {
                mean,
                stddev,
                min,
                max,
            } => {
                let (lo, hi) = clamps(min, max);
                (
                    Law::Normal {
                        mean: mean.0,
                        sd: stddev.0,
                    },
                    lo,
                    hi,
                )
            }
            Dist::Lognormal {
                median,
                p99,
                sigma,
                min,
                max,
            } => {
                let (lo, hi) = clamps(min, max);
                // ln X ~ N(mu, sigma): mu = ln median, sigma = ln(p99 / median) / z(0.99).
                let sigma = match (sigma, p99) {
                    (Some(sigma), _) => *sigma,
                    (None, Some(p99)) => (p99.0 / median.0).ln() / Z99,
                    (None, None) => 0.0,
                };
                (
                    Law::Lognormal {
                        mu: median.0.ln(),
                        sigma,
                    },
                    lo,
                    hi,
                )
            }
            Dist::Pareto {
                scale,
                shape,
                min,
                max,
            } => {
                let (lo, hi) = clamps(min, max);
                (
                    Law::Pareto {
                        scale: scale.0,
                        shape: *shape,
                    },
                    lo,
                    hi,
                )
            }
            Dist::Weibull {
                scale,
                shape,
                min,
                max,
            } => {
                let (lo, hi) = clamps(min, max);
                (
                    Law::Weibull {
                        scale: scale.0,
                        shape: *shape,
                    },
                    lo,
                    hi,
                )
            }
            Dist::Empirical {
                values, min, max, ..
            } => {
                let (lo, hi) = clamps(min, max);
                (Law::Empirical(&values.0), lo, hi)
            }
        }
    }

    /// A draw.
    pub fn sample(&self, rng: &mut fastrand::Rng) -> f64 {
        let (law, min, max) = self.law();
        let x = law.sample(rng);
        x.max(min.unwrap_or(f64::NEG_INFINITY))
            .min(max.unwrap_or(f64::INFINITY))
    }

    /// The mean of the draws, clamps included (for the plan's expected concurrency);
    /// infinite for a Pareto of shape <= 1 without `max`.
    pub fn mean(&self) -> f64 {
        let (law, min, max) = self.law();
        if let Law::Empirical(values) = law {
            // Exactly: the mean of the clamped values.
            let clamp = |v: f64| {
                v.max(min.unwrap_or(f64::NEG_INFINITY))
                    .min(max.unwrap_or(f64::INFINITY))
            };
            return values.iter().map(|&v| clamp(v)).sum::<f64>() / values.len().max(1) as f64;
        }
        if let Law::Constant(value) = law {
            return value
                .max(min.unwrap_or(f64::NEG_INFINITY))
                .min(max.unwrap_or(f64::INFINITY));
        }
        // Every law here draws x >= 0, so for 0 <= a <= b:
        //   E[clamp(X, a, b)] = a + integral from a to b of P(X > x) dx, and
        //   E[max(X, a)]      = E[X] + integral from 0 to a of P(X <= x) dx.
        let a = min.unwrap_or(0.0).max(0.0);
        let tol = 1e-7 * (a + law.typical());
        match max {
            Some(b) if b <= a => b,
            Some(b) => a + integrate(&|x| 1.0 - law.cdf(x), a, b, tol),
            None if a > 0.0 => law.mean() + integrate(&|x| law.cdf(x), 0.0, a, tol),
            None => law.mean(),
        }
    }

    /// The distribution's name, as written after `dist =`.
    pub fn name(&self) -> &'static str {
        match self {
            Dist::Constant { .. } => "constant",
            Dist::Uniform { .. } => "uniform",
            Dist::Exponential { .. } => "exponential",
            Dist::Normal { .. } => "normal",
            Dist::Lognormal { .. } => "lognormal",
            Dist::Pareto { .. } => "pareto",
            Dist::Weibull { .. } => "weibull",
            Dist::Empirical { .. } => "empirical",
        }
    }

    /// Reads the values of an empirical distribution from its CSV file (relative to `base`,
    /// the scenario file's directory); errors name the CSV file and the line.
    pub fn read_file(&mut self, base: &Path) -> Result<(), String> {
        let Dist::Empirical {
            file,
            column,
            values,
            ..
        } = self
        else {
            return Ok(());
        };
        let path = base.join(&*file);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("file: cannot read {}: {e}", path.display()))?;
        let column = column.unwrap_or(1);
        if column == 0 {
            return Err("column: columns count from 1".into());
        }
        let mut read = Vec::new();
        let mut header_allowed = true;
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let at = || format!("{} line {}", path.display(), i + 1);
            let field = line
                .split(',')
                .nth(column as usize - 1)
                .ok_or_else(|| format!("{}: no column {column} in {line:?}", at()))?
                .trim()
                .trim_matches('"')
                .trim();
            let value = field
                .parse::<f64>()
                .ok()
                .or_else(|| parse_duration(field).ok().map(|d| d.as_secs_f64()));
            let first = std::mem::replace(&mut header_allowed, false);
            match value {
                Some(v) if v.is_finite() && v >= 0.0 => read.push(v),
                Some(v) => {
                    return Err(format!(
                        "{}: {v} is not a value a distribution can draw (negative or not finite)",
                        at()
                    ))
                }
                // The first line may be a header.
                None if first => {}
                None => return Err(format!("{}: {field:?} is not a number or a duration", at())),
            }
        }
        if read.is_empty() {
            return Err(format!("{}: no values", path.display()));
        }
        *values = Samples(Arc::new(read));
        Ok(())
    }

    fn validate(&self, key: &str) -> Result<(), String> {
        let bad = |what: &str| Err(format!("{key}: {} {what}", self.name()));
        let finite_non_negative = |n: Number| n.0.is_finite() && n.0 >= 0.0;
        let positive = |v: f64| v.is_finite() && v > 0.0;
        match self {
            Dist::Constant { value, .. } if !finite_non_negative(*value) => {
                return bad("needs value >= 0")
            }
            Dist::Uniform { min, max }
                if !(finite_non_negative(*min) && max.0.is_finite() && max.0 >= min.0) =>
            {
                return bad("needs 0 <= min <= max")
            }
            Dist::Exponential { mean, .. } if !positive(mean.0) => return bad("needs mean > 0"),
            Dist::Normal { mean, stddev, .. }
                if !(finite_non_negative(*mean) && finite_non_negative(*stddev)) =>
            {
                return bad("needs mean >= 0 and stddev >= 0 (it is truncated at 0)")
            }
            Dist::Lognormal {
                median, p99, sigma, ..
            } => {
                if !positive(median.0) {
                    return bad("needs median > 0");
                }
                match (p99, sigma) {
                    (Some(_), Some(_)) | (None, None) => {
                        return bad("needs either p99 or sigma (one of them)")
                    }
                    (Some(p99), None) if !(p99.0.is_finite() && p99.0 > median.0) => {
                        return bad("needs p99 > median")
                    }
                    (None, Some(sigma)) if !(sigma.is_finite() && *sigma >= 0.0) => {
                        return bad("needs sigma >= 0")
                    }
                    _ => {}
                }
            }
            Dist::Pareto { scale, shape, .. } | Dist::Weibull { scale, shape, .. }
                if !(positive(scale.0) && positive(*shape)) =>
            {
                return bad("needs scale > 0 and shape > 0")
            }
            Dist::Empirical { values, file, .. } if values.0.is_empty() => {
                return Err(format!(
                    "{key}: empirical: the values of {} were not read (Scenario::load reads them)",
                    file.display()
                ))
            }
            _ => {}
        }
        let (_, min, max) = self.law();
        if min.is_some_and(|m| !(m.is_finite() && m >= 0.0)) {
            return Err(format!("{key}.min: must be a number >= 0"));
        }
        if max.is_some_and(|m| !(m.is_finite() && m >= min.unwrap_or(0.0))) {
            return Err(format!("{key}.max: must be a number >= min (and >= 0)"));
        }
        Ok(())
    }
}

fn standard_normal(rng: &mut fastrand::Rng) -> f64 {
    // Box-Muller.
    let (u, v) = (1.0 - rng.f64(), rng.f64());
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

fn normal_pdf(x: f64) -> f64 {
    (-x * x / 2.0).exp() / (std::f64::consts::TAU).sqrt()
}

/// The standard normal CDF, from erfc (Numerical Recipes' Chebyshev fit, relative error
/// below 1.2e-7: plenty for a plan).
fn normal_cdf(x: f64) -> f64 {
    let z = (x / std::f64::consts::SQRT_2).abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let erfc = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 {
        1.0 - erfc / 2.0
    } else {
        erfc / 2.0
    }
}

/// The gamma function (Lanczos, g = 7, n = 9; about 15 significant digits for x > 0).
fn gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        return std::f64::consts::PI / ((std::f64::consts::PI * x).sin() * gamma(1.0 - x));
    }
    let x = x - 1.0;
    let mut sum = G[0];
    for (i, g) in G.iter().enumerate().skip(1) {
        sum += g / (x + i as f64);
    }
    let t = x + 7.5;
    (std::f64::consts::TAU).sqrt() * t.powf(x + 0.5) * (-t).exp() * sum
}

/// The integral of `f` over `a..b` within about `tol` (adaptive Simpson; the functions
/// integrated here are monotone, so a feature cannot hide between the sample points).
fn integrate(f: &dyn Fn(f64) -> f64, a: f64, b: f64, tol: f64) -> f64 {
    fn refine(
        f: &dyn Fn(f64) -> f64,
        (a, fa): (f64, f64),
        (m, fm): (f64, f64),
        (b, fb): (f64, f64),
        whole: f64,
        tol: f64,
        depth: u32,
    ) -> f64 {
        let (l, r) = ((a + m) / 2.0, (m + b) / 2.0);
        let (fl, fr) = (f(l), f(r));
        let left = (m - a) / 6.0 * (fa + 4.0 * fl + fm);
        let right = (b - m) / 6.0 * (fm + 4.0 * fr + fb);
        let delta = left + right - whole;
        if depth == 0 || delta.abs() <= 15.0 * tol {
            return left + right + delta / 15.0;
        }
        refine(f, (a, fa), (l, fl), (m, fm), left, tol / 2.0, depth - 1)
            + refine(f, (m, fm), (r, fr), (b, fb), right, tol / 2.0, depth - 1)
    }
    if b <= a {
        return 0.0;
    }
    let m = (a + b) / 2.0;
    let (fa, fm, fb) = (f(a), f(m), f(b));
    let whole = (b - a) / 6.0 * (fa + 4.0 * fm + fb);
    refine(
        f,
        (a, fa),
        (m, fm),
        (b, fb),
        whole,
        tol.max(f64::MIN_POSITIVE),
        48,
    )
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

/// `[[event]]`: something done to the system at `at` after traffic started (wall clock, not
/// scaled by `time_scale`), marked on the report's timeline.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum Event {
    /// SIGKILL a process the loadgen spawned (topology.spawn = true): `node = "pdf"`.
    KillNode {
        /// When, after traffic started.
        at: Span,
        /// The process: `"pdf"`.
        node: String,
    },
    /// Set a PDF node's weight in the gateway (its admin `POST /nodes/{node}/weight`): a
    /// node of weight 0 gets no new sessions but keeps serving its own.
    SetWeight {
        /// When, after traffic started.
        at: Span,
        /// The gateway's name of the node (the spawned gateway's one node is `pdf0`).
        node: String,
        /// The new weight.
        weight: u32,
    },
    /// Run an external command (no shell unless you name one); its exit status is recorded.
    Command {
        /// When, after traffic started.
        at: Span,
        /// The program and its arguments, like `["sh", "-c", "..."]`.
        run: Vec<String>,
    },
    /// Upgrade the PDF with a strategy (see [`Upgrade`]): `restart` (stop the pdf with
    /// SIGTERM: DPR REBOOTING; start the new version on the same addresses and data
    /// directory) and `drain` (start the new version beside it, move new sessions to it, wait
    /// for the old one's last session, stop it) and `migrate` (start the new version owning
    /// nothing; the old one moves accounts and sessions to it, redirects them with 3006, and
    /// stops) and `hot` (the pdf's `POST /upgrade` hands its sockets, connections and state
    /// to the new binary in place).
    #[schemars(extend("properties" = {
        "action": {"const": "upgrade", "type": "string"},
        "strategy": {"enum": ["restart", "drain", "hot", "migrate"]},
        "at": {"type": ["string", "number"]},
        "binary": {"type": "string"},
        "args": {"type": "array", "items": {"type": "string"}},
        "weight": {"type": "integer", "minimum": 1},
        "drain_timeout": {"type": ["string", "number"]},
        "batch": {"type": "integer", "minimum": 1}
    }, "required" = ["action", "strategy", "at"], "additionalProperties" = false))]
    Upgrade(BTreeMap<String, serde_json::Value>),
}

impl Event {
    /// When the event fires, after traffic started (None for a refused `upgrade`).
    pub fn at(&self) -> Option<Duration> {
        match self {
            Event::KillNode { at, .. }
            | Event::SetWeight { at, .. }
            | Event::Command { at, .. } => Some(at.0),
            Event::Upgrade(_) => self.upgrade().map(|u| u.at),
        }
    }

    /// An `upgrade` event's keys, if it is one and they read well.
    pub fn upgrade(&self) -> Option<Upgrade> {
        match self {
            Event::Upgrade(fields) => Upgrade::read(fields).ok(),
            _ => None,
        }
    }

    /// Whether this is an upgrade with `strategy = "restart"`.
    pub fn is_restart(&self) -> bool {
        self.upgrade()
            .is_some_and(|u| u.strategy == Strategy::Restart)
    }

    /// The `action` key's value.
    pub fn action(&self) -> &'static str {
        match self {
            Event::KillNode { .. } => "kill_node",
            Event::SetWeight { .. } => "set_weight",
            Event::Command { .. } => "command",
            Event::Upgrade(_) => "upgrade",
        }
    }

    /// What the event does, in a few words (for the plan, the report and the plots).
    pub fn describe(&self) -> String {
        match self {
            Event::KillNode { node, .. } => format!("kill_node {node} (SIGKILL)"),
            Event::SetWeight { node, weight, .. } => format!("set_weight {node} = {weight}"),
            Event::Command { run, .. } => format!("command {}", shell_words(run)),
            Event::Upgrade(fields) => match fields.get("strategy").and_then(|s| s.as_str()) {
                Some(strategy) => format!("upgrade pdf ({strategy})"),
                None => "upgrade".into(),
            },
        }
    }
}

/// An upgrade strategy (issue 7; DESIGN.md section 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Stop the pdf, start the new version on the same addresses and data directory.
    Restart,
    /// Start the new version beside the old one, send new sessions to it, stop the old one
    /// when its last session has ended.
    Drain,
    /// In place: the pdf's admin `POST /upgrade` hands its sockets, connections and state
    /// to the new binary, which takes over without closing a connection.
    Hot,
    /// Start the new version owning no account; the old pdf moves its accounts and live
    /// sessions to it in batches and redirects each session's next request there (3006).
    Migrate,
}

impl Strategy {
    /// Every strategy, in the order reports list them.
    pub const ALL: [Strategy; 4] = [
        Strategy::Restart,
        Strategy::Drain,
        Strategy::Hot,
        Strategy::Migrate,
    ];

    /// The name scenario files use.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Restart => "restart",
            Strategy::Drain => "drain",
            Strategy::Hot => "hot",
            Strategy::Migrate => "migrate",
        }
    }

    /// The strategy named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Whether the loadgen can run it today.
    pub fn implemented(self) -> bool {
        matches!(
            self,
            Strategy::Restart | Strategy::Drain | Strategy::Hot | Strategy::Migrate
        )
    }
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The default `drain_timeout`: how long a drain may wait for the old node's last session.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(300);

/// An `upgrade` event's keys.
#[derive(Clone, Debug, PartialEq)]
pub struct Upgrade {
    /// When, after traffic started.
    pub at: Duration,
    /// How.
    pub strategy: Strategy,
    /// The new version's pdf binary (relative to the scenario file's directory); default:
    /// the pdf beside the loadgen.
    pub binary: Option<PathBuf>,
    /// Arguments for the new pdf after the loadgen's own (`--config`, `--listen`, `--admin`,
    /// `--data-dir`).
    pub args: Vec<String>,
    /// `drain`: the new node's weight in the gateway (the old one's goes to 0).
    pub weight: u32,
    /// `drain`: how long to wait for the old node's last session (wall clock) before giving
    /// up and leaving both running; `migrate`: for the old node to move everything and exit.
    pub drain_timeout: Duration,
    /// `migrate`: accounts per batch (default: the pdf's, 500).
    pub batch: Option<u32>,
}

impl Upgrade {
    /// The keys an upgrade event takes.
    pub const KEYS: [&'static str; 8] = [
        "action",
        "at",
        "strategy",
        "binary",
        "args",
        "weight",
        "drain_timeout",
        "batch",
    ];

    /// Reads an `upgrade` event's table; an error starts with the key it is about
    /// (`strategy: ...`).
    pub fn read(fields: &BTreeMap<String, serde_json::Value>) -> Result<Self, String> {
        if let Some(key) = fields.keys().find(|k| !Self::KEYS.contains(&k.as_str())) {
            return Err(format!(
                "{key}: unknown key; an upgrade takes at, strategy, binary, args, weight, \
                 drain_timeout and batch"
            ));
        }
        let span = |key: &str| -> Result<Option<Duration>, String> {
            match fields.get(key) {
                None => Ok(None),
                Some(serde_json::Value::String(text)) => parse_duration(text)
                    .map(Some)
                    .map_err(|e| format!("{key}: {e}")),
                Some(serde_json::Value::Number(n)) => n
                    .as_f64()
                    .filter(|s| *s >= 0.0 && s.is_finite())
                    .map(|s| Some(Duration::from_secs_f64(s)))
                    .ok_or(format!("{key}: {n} is not a number of seconds >= 0")),
                Some(other) => Err(format!(
                    "{key}: expected a duration (\"5s\") or a number of seconds, got {other}"
                )),
            }
        };
        let at = span("at")?.ok_or("at: when the upgrade starts, after traffic started")?;
        let strategy = match fields.get("strategy") {
            None => {
                return Err(
                    "strategy: missing (\"restart\", \"drain\", \"hot\" or \"migrate\")".into(),
                )
            }
            Some(serde_json::Value::String(name)) => Strategy::from_name(name).ok_or(format!(
                "strategy: {name:?} is not a strategy: expected \"restart\", \"drain\", \"hot\" \
                 or \"migrate\""
            ))?,
            Some(other) => return Err(format!("strategy: expected a string, got {other}")),
        };
        let binary = match fields.get("binary") {
            None => None,
            Some(serde_json::Value::String(path)) if !path.is_empty() => Some(PathBuf::from(path)),
            Some(other) => return Err(format!("binary: expected a path, got {other}")),
        };
        let args = match fields.get("args") {
            None => Vec::new(),
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|a| a.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or("args: expected a list of strings, like [\"--durability\", \"group\"]")?,
            Some(other) => return Err(format!("args: expected a list of strings, got {other}")),
        };
        let weight = match fields.get("weight") {
            None => 1,
            Some(value) => value
                .as_u64()
                .and_then(|w| u32::try_from(w).ok())
                .filter(|w| *w > 0)
                .ok_or(format!("weight: expected a whole number >= 1, got {value}"))?,
        };
        let batch = match fields.get("batch") {
            None => None,
            Some(value) => Some(
                value
                    .as_u64()
                    .and_then(|b| u32::try_from(b).ok())
                    .filter(|b| *b > 0)
                    .ok_or(format!("batch: expected a whole number >= 1, got {value}"))?,
            ),
        };
        let drain_timeout = span("drain_timeout")?.unwrap_or(DEFAULT_DRAIN_TIMEOUT);
        if drain_timeout.is_zero() {
            return Err("drain_timeout: must be longer than 0".into());
        }
        Ok(Self {
            at,
            strategy,
            binary,
            args,
            weight,
            drain_timeout,
            batch,
        })
    }
}

/// A command line as one would type it (arguments with spaces or quotes quoted).
pub fn shell_words(words: &[String]) -> String {
    words
        .iter()
        .map(|w| {
            if !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
            {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
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
    /// Thresholds over a window of the run (`[[slo.window]]`): after an event, or between
    /// two offsets; judged over the per-second timeline.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub window: Vec<crate::windows::SloWindow>,
}

impl Scenario {
    /// Reads and validates a scenario; every message names the file.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text, path)
    }

    /// Reads and validates the text of the scenario file `path` (the files it names, such as
    /// an empirical distribution's CSV, are relative to its directory).
    pub fn parse(text: &str, path: &Path) -> Result<Self, String> {
        let mut scenario: Scenario =
            toml::from_str(text).map_err(|e| format!("{}: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new(""));
        scenario.base = base.to_path_buf();
        scenario
            .read_files(base)
            .and_then(|()| scenario.validate())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(scenario)
    }

    /// Reads the files the scenario names, relative to `base` (its directory).
    pub fn read_files(&mut self, base: &Path) -> Result<(), String> {
        for (i, mix) in self.mix.iter_mut().enumerate() {
            let key = format!("mix[{i}] ({})", mix.name);
            let interval = match &mut mix.interval {
                Some(Interval::Drawn(dist)) => Some(dist),
                _ => None,
            };
            for (what, dist) in [
                ("duration", mix.duration.as_mut()),
                ("usage", mix.usage.as_mut()),
                ("interval", interval),
            ] {
                if let Some(dist) = dist {
                    dist.read_file(base)
                        .map_err(|e| format!("{key}.{what}: empirical: {e}"))?;
                }
            }
        }
        Ok(())
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
                let interval = mix.interval.as_ref().ok_or(format!(
                    "{key}.interval: a {:?} session needs an INTERIM interval",
                    mix.kind
                ))?;
                match interval {
                    Interval::Fixed(span) if span.0.is_zero() => {
                        return Err(format!("{key}.interval: must be longer than 0"));
                    }
                    Interval::Fixed(_) => {}
                    Interval::Drawn(dist) => {
                        dist.validate(&format!("{key}.interval"))?;
                        if dist.mean().is_nan() || dist.mean() <= 0.0 {
                            return Err(format!(
                                "{key}.interval: {} must have a mean longer than 0",
                                dist.name()
                            ));
                        }
                        if dist.mean().is_infinite() {
                            return Err(format!(
                                "{key}.interval: {} has no finite mean: give it a max",
                                dist.name()
                            ));
                        }
                    }
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
        for (key, workers) in [
            ("gateway_workers", self.topology.gateway_workers),
            ("pdf_workers", self.topology.pdf_workers),
        ] {
            match workers {
                Some(0) => return Err(format!("topology.{key}: at least 1")),
                Some(_) if !self.topology.spawn => {
                    return Err(format!(
                        "topology.{key}: only for processes the loadgen starts (spawn = true)"
                    ))
                }
                _ => {}
            }
        }
        for (i, event) in self.events.iter().enumerate() {
            self.validate_event(i, event)?;
        }
        crate::windows::validate(self)?;
        Ok(())
    }

    fn validate_event(&self, i: usize, event: &Event) -> Result<(), String> {
        let key = format!("event[{i}] ({})", event.action());
        if let Event::Upgrade(fields) = event {
            let upgrade = Upgrade::read(fields).map_err(|e| format!("{key}.{e}"))?;
            let strategy = upgrade.strategy;
            if !strategy.implemented() {
                return Err(format!(
                    "{key}.strategy: \"{strategy}\" is not implemented yet (issue 7); \
                     the loadgen runs \"restart\", \"drain\", \"hot\" and \"migrate\""
                ));
            }
            if !self.topology.spawn {
                return Err(format!("{key}: strategy = \"{strategy}\" needs topology.spawn = true (the loadgen upgrades the pdf it started)"));
            }
        }
        let Some(at) = event.at() else {
            return Err(format!("{key}.at: missing"));
        };
        if at >= self.duration.0 {
            return Err(format!(
                "{key}.at: {} s is not before the end of traffic (duration {} s): the event \
                 would never fire",
                at.as_secs_f64(),
                self.duration.0.as_secs_f64()
            ));
        }
        match event {
            Event::KillNode { node, .. } => {
                if !self.topology.spawn {
                    return Err(format!(
                        "{key}: kill_node kills a process the loadgen started: it needs \
                         topology.spawn = true"
                    ));
                }
                if node != "pdf" {
                    return Err(format!(
                        "{key}.node: expected \"pdf\" (the one node the loadgen starts), got {node:?}"
                    ));
                }
            }
            Event::SetWeight { node, .. } => {
                if self.topology.spawn && node != "pdf0" {
                    return Err(format!(
                        "{key}.node: the spawned gateway has one PDF node, \"pdf0\"; got {node:?}"
                    ));
                }
                if node.is_empty() {
                    return Err(format!("{key}.node: a node name is needed"));
                }
                if !self.topology.spawn && self.topology.gateway_admin.is_none() {
                    return Err(format!(
                        "{key}: set_weight with spawn = false needs topology.gateway_admin \
                         (the gateway's admin address)"
                    ));
                }
            }
            Event::Command { run, .. } => {
                if run.first().is_none_or(String::is_empty) {
                    return Err(format!(
                        "{key}.run: the program and its arguments, like [\"sh\", \"-c\", \"...\"]"
                    ));
                }
            }
            Event::Upgrade(_) => {}
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

    /// The plan, for `loadgen check`: sessions, the rate timeline, expected concurrency,
    /// memory estimate, events.
    pub fn plan(&self) -> String {
        let total: f64 = self.mix.iter().map(|m| m.weight).sum();
        let length = |m: &Mix| m.duration.as_ref().map_or(0.0, Dist::mean) / self.time_scale;
        let mean_length: f64 = self.mix.iter().map(|m| m.weight / total * length(m)).sum();
        let cap = self.load.max_sessions.map(f64::from);
        let concurrency = match (self.load.concurrent_sessions, self.load.arrival_rate) {
            (Some(n), _) => f64::from(n),
            (_, Some(rate)) => (rate * mean_length).min(cap.unwrap_or(f64::INFINITY)),
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
            let mean = length(mix);
            if mix.kind == Kind::Event {
                text += &format!(
                    "  {:>5.1}% {:<10} Event, Rating-Group {}, one ACR EVENT\n",
                    100.0 * mix.weight / total,
                    mix.name,
                    mix.rating_group(),
                );
                continue;
            }
            text += &format!(
                "  {:>5.1}% {:<10} {:?}, Rating-Group {}, {}, interval {}{}\n",
                100.0 * mix.weight / total,
                mix.name,
                mix.kind,
                mix.rating_group(),
                match &mix.duration {
                    None => "no duration".to_owned(),
                    Some(d) if mean.is_finite() => format!("{} length, mean {mean:.1} s", d.name()),
                    Some(d) => format!(
                        "{} length, mean unbounded (a heavy tail: give it a max)",
                        d.name()
                    ),
                },
                mix.interval.as_ref().map_or("-".to_owned(), |i| match i {
                    Interval::Fixed(span) =>
                        format!("{:.1} s", span.0.as_secs_f64() / self.time_scale),
                    Interval::Drawn(dist) =>
                        format!("{}, mean {:.1} s", dist.name(), i.mean() / self.time_scale),
                }),
                mix.usage.as_ref().map_or(String::new(), |u| format!(
                    ", usage {} with mean {:.0} octets",
                    u.name(),
                    u.mean()
                )),
            );
        }
        let ramp = self.load.ramp.map_or(0.0, |r| r.0.as_secs_f64());
        let mut timeline = if ramp > 0.0 {
            format!(
                "from 0 to it over {ramp} s, then steady for {} s",
                (seconds - ramp).max(0.0)
            )
        } else {
            format!("steady for {seconds} s")
        };
        if let Some(rate) = self.load.arrival_rate {
            timeline += &format!(
                "; about {:.0} new sessions in all",
                rate * (seconds - ramp.min(seconds) / 2.0)
            );
        }
        text += &format!(
            "  load: {}, {timeline}\n",
            match (self.load.concurrent_sessions, self.load.arrival_rate) {
                (Some(n), _) => format!("closed, {n} sessions"),
                (_, Some(r)) => format!(
                    "open, {r} new sessions/s (Poisson){}",
                    self.load
                        .max_sessions
                        .map_or(String::new(), |m| format!(", at most {m} live"))
                ),
                _ => String::new(),
            },
        );
        if concurrency.is_finite() {
            text += &format!(
                "  expected concurrency {concurrency:.0} sessions{}; memory estimate {:.1} MB in \
                 the gateway and as much in the pdf (about 65 bytes a session)\n",
                if self.load.arrival_rate.is_some() {
                    if cap.is_some_and(|c| c <= concurrency) {
                        " (the max_sessions cap: arrival rate x mean length is more)"
                    } else {
                        " (arrival rate x mean length)"
                    }
                } else {
                    ""
                },
                concurrency * 65.0 / 1e6
            );
        } else {
            text += "  expected concurrency unbounded (a mean length is): set max_sessions or a max on the duration\n";
        }
        let mut events: Vec<&Event> = self.events.iter().collect();
        events.sort_by_key(|e| e.at());
        for event in events {
            text += &format!(
                "  event at {:.1} s: {}\n",
                event.at().unwrap_or_default().as_secs_f64(),
                event.describe()
            );
        }
        for span in crate::windows::spans(self).unwrap_or_default() {
            text += &format!(
                "  thresholds in {}: {:.1} s to {:.1} s ({})\n",
                span.name, span.from_s, span.to_s, span.anchor
            );
        }
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

    /// A distribution written as in a scenario file.
    fn dist(text: &str) -> Dist {
        #[derive(Deserialize)]
        struct Holder {
            d: Dist,
        }
        let holder: Holder = toml::from_str(&format!("d = {text}")).expect(text);
        holder.d.validate("d").expect(text);
        holder.d
    }

    fn draws(dist: &Dist, n: usize) -> Vec<f64> {
        let mut rng = fastrand::Rng::with_seed(11);
        let mut draws: Vec<f64> = (0..n).map(|_| dist.sample(&mut rng)).collect();
        draws.sort_by(f64::total_cmp);
        draws
    }

    #[test]
    fn lognormal_matches_its_median() {
        let dist = dist("{ dist = \"lognormal\", median = 120, p99 = 2700 }");
        let draws = draws(&dist, 20_001);
        let median = draws[10_000];
        assert!((100.0..140.0).contains(&median), "{median}");
    }

    #[test]
    fn every_distribution_s_mean_is_the_mean_of_its_draws() {
        // (the distribution, the mean it must have when known in closed form)
        let cases = [
            ("{ dist = \"constant\", value = 5, max = 3 }", Some(3.0)),
            ("{ dist = \"uniform\", min = 2, max = 4 }", Some(3.0)),
            ("{ dist = \"exponential\", mean = \"2m\" }", Some(120.0)),
            // E[min(X, 60)] = 60 (1 - e^-1) for an exponential of mean 60.
            (
                "{ dist = \"exponential\", mean = 60, max = 60 }",
                Some(60.0 * (1.0 - (-1.0f64).exp())),
            ),
            // E[max(X, 60)] = 60 + 60 e^-1.
            (
                "{ dist = \"exponential\", mean = 60, min = 60 }",
                Some(60.0 + 60.0 * (-1.0f64).exp()),
            ),
            (
                "{ dist = \"exponential\", mean = 60, min = 10, max = 100 }",
                None,
            ),
            // Truncated at 0: a half-normal's mean is sd * sqrt(2 / pi).
            (
                "{ dist = \"normal\", mean = 0, stddev = 10 }",
                Some(10.0 * (2.0 / std::f64::consts::PI).sqrt()),
            ),
            (
                "{ dist = \"normal\", mean = \"3m\", stddev = \"1m\" }",
                None,
            ),
            (
                "{ dist = \"normal\", mean = 30, stddev = 40, max = 60 }",
                None,
            ),
            ("{ dist = \"normal\", mean = 30, stddev = 0 }", Some(30.0)),
            (
                "{ dist = \"lognormal\", median = 100, sigma = 0.5 }",
                Some(100.0 * (0.125f64).exp()),
            ),
            (
                "{ dist = \"lognormal\", median = 100, p99 = 2000, max = 1000 }",
                None,
            ),
            (
                "{ dist = \"lognormal\", median = 100, sigma = 1, min = 50 }",
                None,
            ),
            // alpha x_m / (alpha - 1).
            ("{ dist = \"pareto\", scale = 10, shape = 3 }", Some(15.0)),
            (
                "{ dist = \"pareto\", scale = 10, shape = 0.8, max = 1000 }",
                None,
            ),
            (
                "{ dist = \"pareto\", scale = 10, shape = 2.5, min = 12, max = 40 }",
                None,
            ),
            // Shape 1 is the exponential; shape 2: lambda * sqrt(pi) / 2.
            ("{ dist = \"weibull\", scale = 50, shape = 1 }", Some(50.0)),
            (
                "{ dist = \"weibull\", scale = 50, shape = 2 }",
                Some(25.0 * std::f64::consts::PI.sqrt()),
            ),
            (
                "{ dist = \"weibull\", scale = 50, shape = 0.6, max = 500 }",
                None,
            ),
        ];
        for (text, closed_form) in cases {
            let dist = dist(text);
            let mean = dist.mean();
            if let Some(want) = closed_form {
                assert!(
                    (mean - want).abs() <= 1e-6 * want.max(1.0),
                    "{text}: mean() {mean}, closed form {want}"
                );
            }
            let draws = draws(&dist, 200_000);
            let sampled = draws.iter().sum::<f64>() / draws.len() as f64;
            assert!(
                (sampled - mean).abs() <= 0.01 * mean,
                "{text}: mean() {mean}, mean of draws {sampled}"
            );
            let (_, min, max) = dist.law();
            assert!(draws[0] >= min.unwrap_or(0.0), "{text}: {}", draws[0]);
            let top = draws[draws.len() - 1];
            assert!(top <= max.unwrap_or(f64::INFINITY), "{text}: {top}");
        }
    }

    #[test]
    fn shapes_are_right() {
        // Pareto: nothing below the scale; P(X > 2 x_m) = 2^-alpha.
        let pareto = draws(
            &dist("{ dist = \"pareto\", scale = 10, shape = 2 }"),
            100_000,
        );
        assert!(pareto[0] >= 10.0);
        let above = pareto.iter().filter(|&&x| x > 20.0).count() as f64 / 1e5;
        assert!((above - 0.25).abs() < 0.01, "{above}");
        // Weibull: the median is lambda (ln 2)^(1/k).
        let weibull = draws(
            &dist("{ dist = \"weibull\", scale = 100, shape = 1.5 }"),
            100_001,
        );
        let want = 100.0 * 2f64.ln().powf(1.0 / 1.5);
        assert!(
            (weibull[50_000] - want).abs() < 0.02 * want,
            "{}",
            weibull[50_000]
        );
        // Lognormal by sigma: P(X > median e^sigma) = 1 - Phi(1).
        let lognormal = draws(
            &dist("{ dist = \"lognormal\", median = 100, sigma = 0.7 }"),
            100_000,
        );
        let above = lognormal
            .iter()
            .filter(|&&x| x > 100.0 * 0.7f64.exp())
            .count() as f64
            / 1e5;
        assert!((above - 0.1587).abs() < 0.01, "{above}");
        // Normal truncated at 0: never negative, and the clamps hold.
        let normal = draws(
            &dist("{ dist = \"normal\", mean = 5, stddev = 10, min = 1, max = 20 }"),
            100_000,
        );
        assert!(normal[0] >= 1.0 && normal[normal.len() - 1] <= 20.0);
        assert!(
            normal.iter().filter(|&&x| x == 1.0).count() > 1000,
            "min clamp"
        );
        // The heavy tail's mean is unbounded without max.
        assert!(dist("{ dist = \"pareto\", scale = 1, shape = 1 }")
            .mean()
            .is_infinite());
        // A few helpers against known values.
        assert!((normal_cdf(1.0) - 0.841_344_746).abs() < 1e-6);
        assert!((normal_cdf(-2.326_347_874) - 0.01).abs() < 1e-6);
        assert!((gamma(5.0) - 24.0).abs() < 1e-9);
        assert!((gamma(0.5) - std::f64::consts::PI.sqrt()).abs() < 1e-9);
    }

    #[test]
    fn bad_parameters_are_refused_by_name() {
        let refuse = |text: &str, want: &str| {
            #[derive(Deserialize)]
            struct Holder {
                d: Dist,
            }
            let error = match toml::from_str::<Holder>(&format!("d = {text}")) {
                Err(error) => error.to_string(),
                Ok(holder) => holder.d.validate("mix[0] (v).duration").expect_err(text),
            };
            assert!(error.contains(want), "{text}: {error}");
        };
        refuse(
            "{ dist = \"lognormal\", median = 1, p99 = 5, sigma = 1 }",
            "either p99 or sigma",
        );
        refuse(
            "{ dist = \"lognormal\", median = 1 }",
            "either p99 or sigma",
        );
        refuse(
            "{ dist = \"lognormal\", median = 10, p99 = 5 }",
            "p99 > median",
        );
        refuse(
            "{ dist = \"pareto\", scale = 10, shape = 0 }",
            "mix[0] (v).duration: pareto needs scale > 0 and shape > 0",
        );
        refuse(
            "{ dist = \"weibull\", scale = -1, shape = 2 }",
            "weibull needs scale > 0",
        );
        refuse(
            "{ dist = \"normal\", mean = -5, stddev = 1 }",
            "normal needs mean >= 0",
        );
        refuse(
            "{ dist = \"normal\", mean = 5, sd = 1 }",
            "unknown field `sd`",
        );
        refuse(
            "{ dist = \"pareto\", scale = 1, shape = 2, min = 5, max = 4 }",
            "duration.max: must be a number >= min",
        );
        refuse(
            "{ dist = \"exponential\", mean = 1, min = -1 }",
            "duration.min: must be a number >= 0",
        );
        refuse(
            "{ dist = \"uniform\", min = 3, max = 2 }",
            "uniform needs 0 <= min <= max",
        );
        refuse("{ dist = \"gamma\", shape = 2 }", "unknown variant `gamma`");
        refuse(
            "{ dist = \"empirical\", file = \"x.csv\" }",
            "were not read",
        );
    }

    const VOICE: &str =
        "schema = 1\nname = \"e\"\nduration = \"10s\"\n[load]\nconcurrent_sessions = 1\n\
                         [[mix]]\nname = \"v\"\nkind = \"voice\"\nweight = 1\ninterval = \"30s\"\n";

    #[test]
    fn empirical_values_come_from_a_csv_beside_the_scenario() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("data")).expect("mkdir");
        std::fs::write(
            dir.path().join("data/calls.csv"),
            "call,seconds\n# a comment\n\na,30\nb,\"2m\"\nc,90 # trailing comment\n",
        )
        .expect("write");
        let scenario_path = dir.path().join("s.toml");
        let text = format!(
            "{VOICE}duration = {{ dist = \"empirical\", file = \"data/calls.csv\", column = 2, max = 100 }}\n"
        );
        let scenario = Scenario::parse(&text, &scenario_path).expect("valid");
        let dist = scenario.mix[0].duration.as_ref().expect("duration");
        let Dist::Empirical { values, .. } = dist else {
            panic!("{dist:?}")
        };
        assert_eq!(*values.0, vec![30.0, 120.0, 90.0]);
        // The mean of the clamped values, exactly.
        assert!((dist.mean() - (30.0 + 100.0 + 90.0) / 3.0).abs() < 1e-9);
        let draws = draws(dist, 3000);
        assert!(draws.iter().all(|d| [30.0, 90.0, 100.0].contains(d)));
        assert!(draws.contains(&30.0) && draws.contains(&100.0));

        // Errors name the scenario, the key, the CSV file and the line.
        std::fs::write(dir.path().join("data/bad.csv"), "seconds\n30\n40\nforty\n").expect("write");
        let text =
            format!("{VOICE}duration = {{ dist = \"empirical\", file = \"data/bad.csv\" }}\n");
        let error = Scenario::parse(&text, &scenario_path).expect_err("bad value");
        for part in [
            "s.toml",
            "mix[0] (v).duration",
            "bad.csv line 4",
            "\"forty\"",
        ] {
            assert!(error.contains(part), "{part}: {error}");
        }
        std::fs::write(dir.path().join("data/neg.csv"), "30\n-4\n").expect("write");
        let text =
            format!("{VOICE}duration = {{ dist = \"empirical\", file = \"data/neg.csv\" }}\n");
        let error = Scenario::parse(&text, &scenario_path).expect_err("negative");
        assert!(
            error.contains("neg.csv line 2") && error.contains("negative"),
            "{error}"
        );
        let text =
            format!("{VOICE}duration = {{ dist = \"empirical\", file = \"missing.csv\" }}\n");
        let error = Scenario::parse(&text, &scenario_path).expect_err("missing");
        assert!(error.contains("missing.csv"), "{error}");
        std::fs::write(dir.path().join("data/empty.csv"), "seconds\n").expect("write");
        let text =
            format!("{VOICE}duration = {{ dist = \"empirical\", file = \"data/empty.csv\" }}\n");
        let error = Scenario::parse(&text, &scenario_path).expect_err("empty");
        assert!(error.contains("empty.csv: no values"), "{error}");
    }

    #[test]
    fn an_interval_is_a_duration_or_a_distribution() {
        let path = Path::new("interval.toml");
        let voice = VOICE.replace("interval = \"30s\"\n", "");
        let with = |interval: &str| {
            Scenario::parse(
                &format!(
                    "{voice}duration = {{ dist = \"constant\", value = 600 }}\ninterval = {interval}\n"
                ),
                path,
            )
        };
        // The fixed form: always the same, and no draw from the session's stream.
        for fixed in ["\"30s\"", "30", "\"0.5m\""] {
            let scenario = with(fixed).expect(fixed);
            let interval = scenario.mix[0].interval.as_ref().expect("interval");
            assert!(matches!(interval, Interval::Fixed(_)), "{interval:?}");
            let mut rng = fastrand::Rng::with_seed(3);
            let before = rng.clone().u64(..);
            assert_eq!(interval.next(&mut rng), 30.0);
            assert_eq!(rng.u64(..), before, "a fixed interval draws nothing");
            assert!(
                scenario.plan().contains("interval 30.0 s"),
                "{}",
                scenario.plan()
            );
        }
        // A distribution: drawn afresh each time, reproducibly from the stream.
        let scenario =
            with("{ dist = \"exponential\", mean = \"30s\", min = \"5s\", max = \"2m\" }")
                .expect("valid");
        let interval = scenario.mix[0].interval.as_ref().expect("interval");
        let draws = |seed| {
            let mut rng = fastrand::Rng::with_seed(seed);
            (0..2000)
                .map(|_| interval.next(&mut rng))
                .collect::<Vec<f64>>()
        };
        let (a, b) = (draws(5), draws(5));
        assert_eq!(a, b, "the same stream draws the same intervals");
        assert!(a.iter().all(|d| (5.0..=120.0).contains(d)));
        let mean = a.iter().sum::<f64>() / a.len() as f64;
        assert!(
            (mean - interval.mean()).abs() < 0.06 * interval.mean(),
            "{mean} vs {}",
            interval.mean()
        );
        assert!(a.iter().any(|&d| d < 10.0) && a.iter().any(|&d| d > 60.0));
        let plan = scenario.plan();
        assert!(plan.contains("interval exponential, mean"), "{plan}");
        // A draw of 0 is taken as the shortest interval, not a busy loop.
        let scenario = with("{ dist = \"uniform\", min = 0, max = 2 }").expect("valid");
        let mut rng = fastrand::Rng::with_seed(1);
        let interval = scenario.mix[0].interval.as_ref().expect("interval");
        assert!((0..1000).all(|_| interval.next(&mut rng) >= MIN_INTERVAL_SECONDS));

        // Errors name the file and the key.
        for (interval, want) in [
            ("\"0s\"", "mix[0] (v).interval: must be longer than 0"),
            (
                "{ dist = \"constant\", value = 0 }",
                "mix[0] (v).interval: constant must have a mean longer than 0",
            ),
            ("{ dist = \"exponential\", men = 3 }", "unknown field `men`"),
            ("{ dist = \"gamma\", mean = 3 }", "unknown variant `gamma`"),
            (
                "{ dist = \"pareto\", scale = 1, shape = 0.5 }",
                "mix[0] (v).interval: pareto has no finite mean",
            ),
            ("\"3 fortnights\"", "unknown unit"),
            ("true", "expected a duration"),
        ] {
            let error = with(interval).expect_err(interval);
            assert!(
                error.contains("interval.toml") && error.contains(want),
                "{interval}: {error}"
            );
        }
        // A misspelt key inside the table: the TOML error shows the `interval = ` line.
        let error = with("{ dist = \"exponential\", men = 3 }").expect_err("typo");
        assert!(
            error.contains("line 11") && error.contains("interval ="),
            "{error}"
        );
    }

    #[test]
    fn worker_threads_are_checked() {
        let path = Path::new("workers.toml");
        let with = |topology: &str| {
            Scenario::parse(
                &format!(
                    "{VOICE}duration = {{ dist = \"constant\", value = 60 }}\n[topology]\n{topology}"
                ),
                path,
            )
        };
        let scenario = with("gateway_workers = 2\npdf_workers = 1\n").expect("valid");
        assert_eq!(scenario.topology.gateway_workers, Some(2));
        assert_eq!(scenario.topology.pdf_workers, Some(1));
        assert_eq!(with("").expect("valid").topology.pdf_workers, None);
        let error = with("pdf_workers = 0\n").expect_err("zero");
        assert!(
            error.contains("workers.toml") && error.contains("topology.pdf_workers: at least 1"),
            "{error}"
        );
        let error = with(
            "spawn = false\ngateway = \"127.0.0.1:3868\"\npdf_admin = \"127.0.0.1:9868\"\ngateway_workers = 1\n",
        )
        .expect_err("not spawned");
        assert!(
            error.contains("topology.gateway_workers: only for processes the loadgen starts"),
            "{error}"
        );
        let error = with("pdf_worker = 1\n").expect_err("misspelt");
        assert!(error.contains("pdf_worker"), "{error}");
    }

    #[test]
    fn events_are_read_and_checked() {
        let path = Path::new("events.toml");
        let with = |events: &str| {
            Scenario::parse(
                &format!("{VOICE}duration = {{ dist = \"constant\", value = 60 }}\n{events}"),
                path,
            )
        };
        let scenario = with(
            "[[event]]\nat = \"5s\"\naction = \"set_weight\"\nnode = \"pdf0\"\nweight = 0\n\
             [[event]]\nat = 2\naction = \"command\"\nrun = [\"sh\", \"-c\", \"echo it's me\"]\n\
             [[event]]\nat = \"8s\"\naction = \"kill_node\"\nnode = \"pdf\"\n",
        )
        .expect("valid");
        assert_eq!(scenario.events.len(), 3);
        assert_eq!(scenario.events[0].at(), Some(Duration::from_secs(5)));
        assert_eq!(
            scenario.events[1].describe(),
            "command sh -c 'echo it'\\''s me'"
        );
        let plan = scenario.plan();
        assert!(plan.contains("event at 2.0 s: command"), "{plan}");
        assert!(
            plan.find("at 2.0 s") < plan.find("at 5.0 s"),
            "sorted: {plan}"
        );

        let refuse = |events: &str, want: &[&str]| {
            let error = with(events).expect_err(events);
            for part in want {
                assert!(error.contains(part), "{part}: {error}");
            }
        };
        refuse(
            "[[event]]\nat = \"5s\"\naction = \"upgrade\"\nstrategy = \"blue-green\"\nbinary = \"target/release/pdf\"\n",
            &["events.toml", "event[0] (upgrade).strategy", "\"blue-green\" is not a strategy"],
        );
        refuse(
            "[[event]]\nat = \"5s\"\naction = \"upgrade\"\nstrategy = \"migrate\"\nbatch = 0\n",
            &[
                "events.toml",
                "event[0] (upgrade).batch: expected a whole number >= 1",
            ],
        );
        refuse(
            "[[event]]\nat = \"5s\"\naction = \"upgrade\"\nstrategy = \"drain\"\ndrain_timout = \"1m\"\n",
            &["event[0] (upgrade).drain_timout: unknown key"],
        );
        refuse(
            "[[event]]\nat = \"5s\"\naction = \"upgrade\"\nstrategy = \"drain\"\nweight = 0\n",
            &["event[0] (upgrade).weight", ">= 1"],
        );
        refuse(
            "[[event]]\nat = \"5s\"\naction = \"upgrade\"\nstrategy = \"drain\"\nargs = \"--x\"\n",
            &["event[0] (upgrade).args", "list of strings"],
        );
        refuse(
            "[[event]]\naction = \"upgrade\"\nstrategy = \"drain\"\n",
            &["event[0] (upgrade).at"],
        );
        refuse(
            "[[event]]\nat = \"12s\"\naction = \"upgrade\"\nstrategy = \"drain\"\n",
            &["event[0] (upgrade).at", "never fire"],
        );
        let drain = with(
            "[[event]]\nat = \"5s\"\naction = \"upgrade\"\nstrategy = \"drain\"\n\
             binary = \"bin/pdf-next\"\nargs = [\"--durability\", \"group\"]\nweight = 3\n\
             drain_timeout = \"90s\"\n",
        )
        .expect("a drain");
        assert_eq!(
            drain.events[0].upgrade(),
            Some(Upgrade {
                at: Duration::from_secs(5),
                strategy: Strategy::Drain,
                binary: Some(PathBuf::from("bin/pdf-next")),
                args: vec!["--durability".into(), "group".into()],
                weight: 3,
                drain_timeout: Duration::from_secs(90),
                batch: None,
            })
        );
        assert_eq!(drain.events[0].describe(), "upgrade pdf (drain)");
        assert!(!drain.events[0].is_restart());
        let restart = with("[[event]]\nat = 3\naction = \"upgrade\"\nstrategy = \"restart\"\n")
            .expect("a restart");
        assert!(restart.events[0].is_restart());
        assert_eq!(
            restart.events[0]
                .upgrade()
                .map(|u| (u.weight, u.drain_timeout)),
            Some((1, DEFAULT_DRAIN_TIMEOUT))
        );
        refuse(
            "[[event]]\nat = \"10s\"\naction = \"command\"\nrun = [\"true\"]\n",
            &["event[0] (command).at", "never fire"],
        );
        refuse(
            "[[event]]\nat = \"1s\"\naction = \"command\"\nrun = []\n",
            &["event[0] (command).run"],
        );
        refuse(
            "[[event]]\nat = \"1s\"\naction = \"set_weight\"\nnode = \"pdf1\"\nweight = 0\n",
            &["event[0] (set_weight).node", "pdf0"],
        );
        refuse(
            "[[event]]\nat = \"1s\"\naction = \"kill_node\"\nnode = \"gateway\"\n",
            &["event[0] (kill_node).node", "\"pdf\""],
        );
        refuse(
            "[[event]]\nat = \"1s\"\naction = \"reboot\"\n",
            &["unknown variant `reboot`"],
        );
        refuse(
            "[[event]]\nat = \"1s\"\naction = \"set_weight\"\nnode = \"pdf0\"\nweigth = 0\n",
            &["weigth"],
        );
        refuse(
            "[topology]\nspawn = false\ngateway = \"127.0.0.1:1\"\npdf_admin = \"127.0.0.1:2\"\n\
             [[event]]\nat = \"1s\"\naction = \"kill_node\"\nnode = \"pdf\"\n",
            &["kill_node", "spawn = true"],
        );
        refuse(
            "[topology]\nspawn = false\ngateway = \"127.0.0.1:1\"\npdf_admin = \"127.0.0.1:2\"\n\
             [[event]]\nat = \"1s\"\naction = \"set_weight\"\nnode = \"a\"\nweight = 2\n",
            &["gateway_admin"],
        );
    }
}
