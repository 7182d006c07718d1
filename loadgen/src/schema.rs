//! `loadgen schema`: the JSON Schema (draft 2020-12) of the scenario format, derived from the
//! very types that read scenario files ([`crate::scenario`]), so that editors can validate
//! and complete TOML scenarios (for example with taplo or Even Better TOML, which read JSON
//! Schemas).
//!
//! Two kinds of value need a hand-written schema: durations ([`Span`]) and numbers that may be
//! written as durations ([`Number`]), which accept a string with a unit or a plain number;
//! and the population, whose type lives in the `pdf` crate: [`Population`] mirrors it here
//! (destructured field by field, so that a new field there fails to compile here).
//!
//! Two rules the loadgen checks after reading are written into the schema too: a lognormal
//! takes `p99` or `sigma` (exactly one), and an `upgrade` event takes only the strategies the
//! loadgen runs (`restart`, `drain`; `hot` and `migrate` are refused until they exist).

use std::borrow::Cow;

use pdf::population::{BalanceDistribution, PopulationSpec};
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

use crate::scenario::{Dist, Interval, Number, Scenario, Span};

/// The strings [`crate::scenario::parse_duration`] reads: a number, optionally a unit.
const DURATION_PATTERN: &str = r"^\s*\+?([0-9]+(\.[0-9]*)?|\.[0-9]+)\s*(ms|s|m|h|d)?\s*$";

impl JsonSchema for Span {
    fn schema_name() -> Cow<'static, str> {
        "Span".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A duration: a string with a unit (\"250ms\", \"90s\", \"2m\", \"1.5h\", \"3d\") or a number of seconds.",
            "anyOf": [
                { "type": "number", "minimum": 0 },
                { "type": "string", "pattern": DURATION_PATTERN }
            ]
        })
    }
}

impl JsonSchema for Interval {
    fn schema_name() -> Cow<'static, str> {
        "Interval".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let span = generator.subschema_for::<Span>();
        let dist = generator.subschema_for::<Dist>();
        json_schema!({
            "description": "Time between INTERIM records: a duration, or a distribution of seconds drawn again for every interval.",
            "anyOf": [span, dist]
        })
    }
}

impl JsonSchema for Number {
    fn schema_name() -> Cow<'static, str> {
        "Number".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A number, or a duration string with a unit (\"250ms\", \"90s\", \"2m\", \"1.5h\", \"3d\") read as seconds.",
            "anyOf": [
                { "type": "number" },
                { "type": "string", "pattern": DURATION_PATTERN }
            ]
        })
    }
}

/// `[population]`: the subscribers; the pdf builds the same accounts from the same keys
/// (the schema's mirror of `pdf::population::PopulationSpec`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
#[schemars(rename = "Population")]
pub struct Population {
    /// Seed of every draw.
    pub seed: u64,
    /// Number of subscribers.
    #[schemars(range(min = 1))]
    pub subscribers: u32,
    /// MSISDN of subscriber 0.
    pub first_msisdn: u64,
    /// Opening balances (integer minor units).
    pub balance: Balance,
    /// Share of subscribers (0 to 1) in multi-subscriber (family) accounts.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub shared_share: f64,
    /// Members of each family account.
    #[schemars(range(min = 2))]
    pub family_size: u32,
}

/// How opening balances are drawn (integer minor units).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "dist", rename_all = "lowercase", deny_unknown_fields)]
pub enum Balance {
    /// Every account gets `value`.
    Constant {
        /// The balance.
        value: i64,
    },
    /// Uniform over `min..=max`.
    Uniform {
        /// Smallest balance.
        min: i64,
        /// Largest balance.
        max: i64,
    },
}

impl From<&PopulationSpec> for Population {
    fn from(spec: &PopulationSpec) -> Self {
        // No `..`: a field added to the pdf's type must be added here.
        let PopulationSpec {
            seed,
            subscribers,
            first_msisdn,
            balance,
            shared_share,
            family_size,
        } = spec;
        Population {
            seed: *seed,
            subscribers: *subscribers,
            first_msisdn: *first_msisdn,
            balance: match *balance {
                BalanceDistribution::Constant { value } => Balance::Constant { value },
                BalanceDistribution::Uniform { min, max } => Balance::Uniform { min, max },
            },
            shared_share: *shared_share,
            family_size: *family_size,
        }
    }
}

impl Default for Population {
    fn default() -> Self {
        Population::from(&PopulationSpec::default())
    }
}

/// The JSON Schema of the scenario format (draft 2020-12).
pub fn scenario_schema() -> serde_json::Value {
    let mut schema = schemars::schema_for!(Scenario);
    schema.insert(
        "title".into(),
        "loadgen scenario (schema = 1; see docs/scenarios.md)".into(),
    );
    schema.to_value()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenarios() -> Vec<(String, serde_json::Value)> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios");
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .expect("scenarios/")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        files.sort();
        assert!(files.len() >= 2, "{files:?}");
        files
            .into_iter()
            .map(|path| {
                let text = std::fs::read_to_string(&path).expect("read");
                let value: serde_json::Value = toml::from_str(&text).expect("TOML");
                (path.display().to_string(), value)
            })
            .collect()
    }

    fn validator() -> jsonschema::Validator {
        jsonschema::draft202012::new(&scenario_schema()).expect("a valid draft 2020-12 schema")
    }

    #[test]
    fn is_draft_2020_12_and_lists_every_top_level_key() {
        let schema = scenario_schema();
        assert_eq!(
            schema["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        assert_eq!(schema["additionalProperties"], false);
        let keys: Vec<&str> = schema["properties"]
            .as_object()
            .expect("properties")
            .keys()
            .map(String::as_str)
            .collect();
        for key in [
            "schema",
            "name",
            "seed",
            "duration",
            "time_scale",
            "topology",
            "population",
            "mix",
            "load",
            "slo",
            "event",
        ] {
            assert!(keys.contains(&key), "{key} missing from {keys:?}");
        }
    }

    #[test]
    fn the_shipped_scenarios_validate() {
        let validator = validator();
        for (file, value) in scenarios() {
            let errors: Vec<String> = validator
                .iter_errors(&value)
                .map(|e| format!("{} at {}", e, e.instance_path()))
                .collect();
            assert!(errors.is_empty(), "{file}: {errors:#?}");
        }
    }

    #[test]
    fn an_interval_is_a_duration_or_a_distribution_in_the_schema_too() {
        use serde_json::json;
        let validator = validator();
        let (_, good) = scenarios()
            .into_iter()
            .find(|(file, _)| file.ends_with("ci-smoke.toml"))
            .expect("ci-smoke.toml");
        for (interval, valid) in [
            (json!("30s"), true),
            (json!(30), true),
            (
                json!({ "dist": "exponential", "mean": "30s", "max": "2m" }),
                true,
            ),
            (
                json!({ "dist": "uniform", "min": "10s", "max": "50s" }),
                true,
            ),
            (json!({ "dist": "exponential", "men": "30s" }), false),
            (json!({ "dist": "gamma", "mean": 3 }), false),
            (json!("30 fortnights"), false),
            (json!(true), false),
        ] {
            let mut value = good.clone();
            value["mix"][0]["interval"] = interval.clone();
            assert_eq!(validator.is_valid(&value), valid, "{interval}");
            // The loadgen agrees (on what it can read without files).
            let text = toml::to_string(&value).expect("TOML");
            let read = Scenario::parse(&text, std::path::Path::new("x.toml"));
            assert_eq!(read.is_ok(), valid, "{interval}: {read:?}");
        }
    }

    #[test]
    fn typos_and_bad_durations_do_not_validate() {
        let validator = validator();
        let (_, good) = scenarios().remove(0);
        let mut typo = good.clone();
        typo["load"]["concurent_sessions"] = 3.into();
        assert!(!validator.is_valid(&typo));
        let mut typo = good.clone();
        typo["population"]["subscriber"] = 3.into();
        assert!(!validator.is_valid(&typo));
        let mut duration = good.clone();
        duration["duration"] = "2 fortnights".into();
        assert!(!validator.is_valid(&duration));
        let mut seconds = good.clone();
        seconds["duration"] = 90.5.into();
        assert!(validator.is_valid(&seconds));
        let mut dist = good;
        dist["mix"][0]["duration"] = serde_json::json!({ "dist": "gamma", "value": 1 });
        assert!(!validator.is_valid(&dist));
    }

    #[test]
    fn every_distribution_and_event_agrees_with_the_loadgen() {
        use serde_json::json;
        let validator = validator();
        let (_, good) = scenarios()
            .into_iter()
            .find(|(file, _)| file.ends_with("ci-smoke.toml"))
            .expect("ci-smoke.toml");
        let dists = [
            (
                json!({ "dist": "normal", "mean": "3m", "stddev": 40, "max": "10m" }),
                true,
            ),
            (json!({ "dist": "normal", "mean": 3 }), false),
            (
                json!({ "dist": "lognormal", "median": "2m", "sigma": 1.1 }),
                true,
            ),
            (
                json!({ "dist": "lognormal", "median": "2m", "p99": "20m", "min": "5s" }),
                true,
            ),
            (
                json!({ "dist": "lognormal", "median": "2m", "p99": "20m", "sigma": 1.1 }),
                false,
            ),
            (json!({ "dist": "lognormal", "median": "2m" }), false),
            (
                json!({ "dist": "pareto", "scale": "30s", "shape": 1.2, "max": "1h" }),
                true,
            ),
            (
                json!({ "dist": "pareto", "scale": "30s", "shape": "fat" }),
                false,
            ),
            (
                json!({ "dist": "weibull", "scale": "2m", "shape": 0.8 }),
                true,
            ),
            (
                json!({ "dist": "weibull", "scale": "2m", "shape": 0.8, "mean": 3 }),
                false,
            ),
            (
                json!({ "dist": "empirical", "file": "data/calls.csv", "column": 2 }),
                true,
            ),
            (
                json!({ "dist": "empirical", "file": "x.csv", "values": [1, 2] }),
                false,
            ),
            (
                json!({ "dist": "exponential", "mean": "3m", "min": "1s", "max": "1h" }),
                true,
            ),
            (json!({ "dist": "constant", "value": 3, "min": 1 }), true),
        ];
        for (dist, valid) in dists {
            let mut value = good.clone();
            value["mix"][0]["duration"] = dist.clone();
            assert_eq!(validator.is_valid(&value), valid, "{dist}");
        }
        let events = [
            (
                json!({ "at": "2s", "action": "set_weight", "node": "pdf0", "weight": 0 }),
                true,
            ),
            (
                json!({ "at": "2s", "action": "set_weight", "node": "pdf0" }),
                false,
            ),
            (
                json!({ "at": "2s", "action": "kill_node", "node": "pdf" }),
                true,
            ),
            (
                json!({ "at": 2, "action": "command", "run": ["sh", "-c", "true"] }),
                true,
            ),
            (
                json!({ "at": "2s", "action": "command", "run": "true" }),
                false,
            ),
            (
                json!({ "at": "2s", "action": "upgrade", "strategy": "drain" }),
                true,
            ),
            (
                json!({ "at": "2s", "action": "upgrade", "strategy": "drain", "binary": "pdf",
                        "args": ["--durability", "group"], "weight": 2, "drain_timeout": "1m" }),
                true,
            ),
            (
                json!({ "at": "2s", "action": "upgrade", "strategy": "drain", "timeout": "1m" }),
                false,
            ),
            (
                json!({ "at": "2s", "action": "upgrade", "strategy": "hot" }),
                true,
            ),
            (
                json!({ "at": "2s", "action": "upgrade", "strategy": "blue-green" }),
                false,
            ),
            (json!({ "at": "2s", "action": "reboot" }), false),
            (
                json!({ "at": "2s", "action": "kill_node", "node": "pdf", "signal": 9 }),
                false,
            ),
        ];
        for (event, valid) in events {
            let mut value = good.clone();
            value["event"] = json!([event.clone()]);
            assert_eq!(validator.is_valid(&value), valid, "{event}");
        }
    }

    #[test]
    fn the_duration_pattern_agrees_with_the_parser() {
        let validator = validator();
        for text in [
            "90s",
            "2m",
            "1.5h",
            "3d",
            "250ms",
            "10",
            " 5 s ",
            ".5s",
            "+2m",
            "2 fortnights",
            "1e3s",
            "-1s",
            "s",
            "",
            "1.2.3s",
            "5 min",
        ] {
            let mut value = scenarios().remove(0).1;
            value["duration"] = text.into();
            assert_eq!(
                validator.is_valid(&value),
                crate::scenario::parse_duration(text).is_ok(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn the_population_mirror_reads_what_the_pdf_reads() {
        assert_eq!(
            Population::default(),
            Population::from(&PopulationSpec::default())
        );
        let text = "seed = 3\nsubscribers = 10\nfirst_msisdn = 5\nbalance = { dist = \"constant\", value = 7 }\nshared_share = 0.5\nfamily_size = 2\n";
        let spec: PopulationSpec = toml::from_str(text).expect("pdf reads it");
        let mirror: Population = toml::from_str(text).expect("the mirror reads it");
        assert_eq!(Population::from(&spec), mirror);
    }
}
