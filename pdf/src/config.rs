//! The PDF's configuration: a TOML file (every key optional, unknown keys refused), then
//! command-line overrides, then validation with messages that name the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::charging::EngineConfig;
use crate::journal::{Durability, JournalConfig};
use crate::population::{Population, PopulationSpec};
use crate::tariff::Tariff;

/// The whole configuration file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The Diameter side.
    #[serde(default)]
    pub diameter: DiameterConfig,
    /// The admin HTTP port.
    #[serde(default)]
    pub admin: AdminConfig,
    /// Who the subscribers are.
    #[serde(default)]
    pub population: PopulationConfig,
    /// Prices per service.
    #[serde(default)]
    pub tariff: Tariff,
    /// Credit-control behaviour.
    #[serde(default)]
    pub charging: ChargingConfig,
    /// Durability.
    #[serde(default)]
    pub journal: JournalSection,
    /// Which accounts this node charges.
    #[serde(default)]
    pub ownership: OwnershipConfig,
}

/// `[ownership]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnershipConfig {
    /// `all` (default): every account of the population is charged here. `none`: the same
    /// population (ids and MSISDNs resolve) but nothing is charged until accounts are
    /// migrated here (`POST /import` from the old node): a CCR-INITIAL for an account not
    /// owned is answered 3006 naming the node migrating to us (`upstream`, or the node that
    /// introduced itself), or 3004 while none is known.
    #[serde(default)]
    pub owns: crate::ownership::Owns,
    /// The Diameter URI where the accounts this node does not own are served
    /// (`aaa://host:port;transport=tcp`): the node that will migrate to us. With it, a node
    /// started with `owns = "none"` redirects from its first request on, before the old node
    /// introduces itself.
    #[serde(default)]
    pub upstream: Option<String>,
}

/// `[diameter]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiameterConfig {
    /// Listening address (port 0 picks a free port).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Origin-Host (default `pdf.<hostname>`).
    #[serde(default)]
    pub origin_host: Option<String>,
    /// Origin-Realm.
    #[serde(default = "default_realm")]
    pub origin_realm: String,
    /// Tw in seconds (at least 6).
    #[serde(default = "default_watchdog")]
    pub watchdog_seconds: u64,
    /// Origin-Hosts allowed to connect (absent: anyone).
    #[serde(default)]
    pub allowed_peers: Option<Vec<String>>,
    /// Largest message accepted, in bytes.
    #[serde(default = "default_max_message")]
    pub max_message_bytes: u32,
    /// Requests one peer may have in flight before getting 3004.
    #[serde(default = "default_max_incoming")]
    pub max_requests_in_flight: usize,
}

impl Default for DiameterConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            origin_host: None,
            origin_realm: default_realm(),
            watchdog_seconds: default_watchdog(),
            allowed_peers: None,
            max_message_bytes: default_max_message(),
            max_requests_in_flight: default_max_incoming(),
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 3868))
}
fn default_realm() -> String {
    "example.net".into()
}
fn default_watchdog() -> u64 {
    30
}
fn default_max_message() -> u32 {
    65_536
}
fn default_max_incoming() -> usize {
    65_536
}

/// `[admin]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Listening address of the admin HTTP port.
    #[serde(default = "default_admin")]
    pub listen: SocketAddr,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: default_admin(),
        }
    }
}

fn default_admin() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9868))
}

/// `[population]`: a generated population (the spec's keys) or a CSV file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PopulationConfig {
    /// A CSV file (`msisdn,account,balance`) instead of the generator.
    #[serde(default)]
    pub csv: Option<PathBuf>,
    /// The generator's parameters.
    #[serde(flatten)]
    pub spec: PopulationSpec,
}

/// `[charging]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChargingConfig {
    /// Validity-Time of grants, in seconds; silent sessions expire after twice this.
    #[serde(default = "default_validity")]
    pub validity_seconds: u32,
    /// How long ended sessions' answers are kept for retransmissions, in seconds.
    #[serde(default = "default_ended_memory")]
    pub ended_memory_seconds: u32,
    /// How often to look for expired sessions, in seconds.
    #[serde(default = "default_expiry_scan")]
    pub expiry_scan_seconds: u64,
}

impl Default for ChargingConfig {
    fn default() -> Self {
        Self {
            validity_seconds: default_validity(),
            ended_memory_seconds: default_ended_memory(),
            expiry_scan_seconds: default_expiry_scan(),
        }
    }
}

fn default_validity() -> u32 {
    600
}
fn default_ended_memory() -> u32 {
    120
}
fn default_expiry_scan() -> u64 {
    5
}

/// `[journal]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalSection {
    /// Data directory (absent: memory only).
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// `none` or `group` (default: `group` when a directory is set, else `none`).
    #[serde(default)]
    pub durability: Option<Durability>,
    /// Records between snapshots.
    #[serde(default = "default_snapshot_every")]
    pub snapshot_every: u64,
    /// How long the writer may wait to gather a batch, in microseconds.
    #[serde(default)]
    pub max_batch_delay_us: u64,
}

impl Default for JournalSection {
    fn default() -> Self {
        Self {
            dir: None,
            durability: None,
            snapshot_every: default_snapshot_every(),
            max_batch_delay_us: 0,
        }
    }
}

fn default_snapshot_every() -> u64 {
    1_000_000
}

impl Config {
    /// Reads a configuration file; errors name the file, and toml's message names the key
    /// and line.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Checks values the types cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.diameter.watchdog_seconds < 6 {
            return Err(format!(
                "diameter.watchdog_seconds: {} is below 6 (RFC 3539's minimum)",
                self.diameter.watchdog_seconds
            ));
        }
        if self.diameter.max_message_bytes < 1024 {
            return Err("diameter.max_message_bytes: at least 1024".into());
        }
        if self.charging.validity_seconds == 0 {
            return Err("charging.validity_seconds: at least 1".into());
        }
        if self.charging.expiry_scan_seconds == 0 {
            return Err("charging.expiry_scan_seconds: at least 1".into());
        }
        if self.population.csv.is_none() {
            self.population.spec.validate()?;
        }
        self.tariff.validate()?;
        if self
            .ownership
            .upstream
            .as_deref()
            .is_some_and(|u| u.trim().is_empty())
        {
            return Err("ownership.upstream: empty (a Diameter URI such as \
                        aaa://127.0.0.1:3868;transport=tcp)"
                .into());
        }
        if self.journal.durability == Some(Durability::Group) && self.journal.dir.is_none() {
            return Err("journal.durability: `group` needs journal.dir".into());
        }
        Ok(())
    }

    /// The population this configuration describes.
    pub fn population(&self) -> Result<Population, String> {
        match &self.population.csv {
            Some(path) => Population::from_csv(path),
            None => Ok(Population::Generated(self.population.spec.clone())),
        }
    }

    /// The engine settings.
    pub fn engine(&self) -> EngineConfig {
        EngineConfig {
            validity_time: self.charging.validity_seconds,
            ended_memory: self.charging.ended_memory_seconds,
        }
    }

    /// The journal settings.
    pub fn journal(&self) -> JournalConfig {
        let durability = self
            .journal
            .durability
            .unwrap_or(if self.journal.dir.is_some() {
                Durability::Group
            } else {
                Durability::None
            });
        JournalConfig {
            dir: self.journal.dir.clone(),
            durability,
            snapshot_every: self.journal.snapshot_every,
            max_batch_delay: Duration::from_micros(self.journal.max_batch_delay_us),
        }
    }

    /// Origin-Host: configured, or `pdf.<hostname>`.
    pub fn origin_host(&self) -> String {
        self.diameter.origin_host.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
            let host = host.trim();
            let host = if host.is_empty() { "localhost" } else { host };
            format!("pdf.{host}")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let config: Config = toml::from_str("").expect("empty is valid");
        assert_eq!(config.diameter.listen.port(), 3868);
        assert_eq!(config.admin.listen.port(), 9868);
        assert!(config.validate().is_ok());
        let config: Config = toml::from_str(
            "[population]\nsubscribers = 10\nbalance = { dist = \"constant\", value = 5 }\n\
             [[tariff.service]]\nrating_group = 1\nname = \"voice\"\nunit = \"second\"\nprice = 1\ngrant = 30\n",
        )
        .expect("valid");
        assert_eq!(config.population.spec.subscribers, 10);
        assert_eq!(config.tariff.services.len(), 1);
    }

    #[test]
    fn errors_name_the_key() {
        let error =
            toml::from_str::<Config>("[diameter]\nlisen = \"127.0.0.1:1\"\n").expect_err("typo");
        assert!(error.to_string().contains("lisen"), "{error}");
        let config: Config = toml::from_str("[diameter]\nwatchdog_seconds = 2\n").expect("parses");
        assert!(config
            .validate()
            .expect_err("too short")
            .starts_with("diameter.watchdog_seconds"));
        let config: Config = toml::from_str("[journal]\ndurability = \"group\"\n").expect("parses");
        assert!(config
            .validate()
            .expect_err("no dir")
            .starts_with("journal.durability"));
    }
}
