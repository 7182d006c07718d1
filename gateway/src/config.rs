//! The gateway's configuration: TOML (every key optional, unknown keys refused), command-line
//! overrides, validation with messages naming the key.

use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

/// What to do with the sessions of a lost PDF connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LossPolicy {
    /// End every session pinned to it, telling each access peer (ASR, LINK_BROKEN).
    #[default]
    Drop,
    /// Re-send pending requests with the T flag on another connection (RFC 6733 5.5.4) and
    /// re-pin the sessions there.
    Failover,
}

/// The whole file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The access side.
    #[serde(default)]
    pub access: AccessConfig,
    /// The admin HTTP port.
    #[serde(default)]
    pub admin: AdminConfig,
    /// The PDF side.
    #[serde(default)]
    pub charging: ChargingConfig,
    /// PDF nodes.
    #[serde(default = "default_nodes", rename = "pdf")]
    pub nodes: Vec<NodeConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            access: AccessConfig::default(),
            admin: AdminConfig::default(),
            charging: ChargingConfig::default(),
            nodes: default_nodes(),
        }
    }
}

/// `[access]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessConfig {
    /// Listening address for accounting clients.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Origin-Host (default `gateway.<hostname>`).
    #[serde(default)]
    pub origin_host: Option<String>,
    /// Origin-Realm.
    #[serde(default = "default_realm")]
    pub origin_realm: String,
    /// Sessions beyond this are refused (ACR START answered 5006 RESOURCES_EXCEEDED).
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
    /// Tw, seconds.
    #[serde(default = "default_watchdog")]
    pub watchdog_seconds: u64,
}

impl Default for AccessConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            origin_host: None,
            origin_realm: default_realm(),
            max_sessions: default_max_sessions(),
            watchdog_seconds: default_watchdog(),
        }
    }
}

/// `[admin]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Listening address.
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

/// `[charging]`: how the gateway talks to PDFs.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChargingConfig {
    /// Connections per PDF node, each its own Diameter peer (Origin-Host).
    #[serde(default = "default_pool")]
    pub pool_size: u8,
    /// `drop` or `failover`.
    #[serde(default)]
    pub policy: LossPolicy,
    /// Destination-Realm of CCRs.
    #[serde(default = "default_realm")]
    pub destination_realm: String,
    /// Time to wait for a CCA, milliseconds.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_ms: u64,
    /// CCRs in flight per PDF connection (backpressure beyond).
    #[serde(default = "default_pending")]
    pub max_pending_per_connection: usize,
    /// How long requests for a PDF that said DPR REBOOTING are held, milliseconds.
    #[serde(default = "default_reboot_hold")]
    pub reboot_hold_ms: u64,
    /// Tw towards PDFs, seconds.
    #[serde(default = "default_watchdog")]
    pub watchdog_seconds: u64,
    /// Reconnect backoff cap (Tc), milliseconds.
    #[serde(default = "default_tc")]
    pub reconnect_max_ms: u64,
    /// Service-Context-Id of CCRs.
    #[serde(default = "default_context")]
    pub service_context_id: String,
}

impl Default for ChargingConfig {
    fn default() -> Self {
        Self {
            pool_size: default_pool(),
            policy: LossPolicy::Drop,
            destination_realm: default_realm(),
            request_timeout_ms: default_request_timeout(),
            max_pending_per_connection: default_pending(),
            reboot_hold_ms: default_reboot_hold(),
            watchdog_seconds: default_watchdog(),
            reconnect_max_ms: default_tc(),
            service_context_id: default_context(),
        }
    }
}

/// `[[pdf]]`: one PDF node.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// A name for reports and the admin API.
    pub name: String,
    /// Its Diameter address.
    pub address: SocketAddr,
    /// Share of new sessions (0: none, but it keeps serving its own).
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 3869))
}
fn default_admin() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9869))
}
fn default_realm() -> String {
    "example.net".into()
}
fn default_max_sessions() -> usize {
    2_000_000
}
fn default_watchdog() -> u64 {
    30
}
fn default_pool() -> u8 {
    4
}
fn default_request_timeout() -> u64 {
    2_000
}
fn default_pending() -> usize {
    4_096
}
fn default_reboot_hold() -> u64 {
    10_000
}
fn default_tc() -> u64 {
    30_000
}
fn default_context() -> String {
    "32251@3gpp.org".into()
}
fn default_weight() -> u32 {
    1
}
fn default_nodes() -> Vec<NodeConfig> {
    vec![NodeConfig {
        name: "pdf0".into(),
        address: SocketAddr::from(([127, 0, 0, 1], 3868)),
        weight: 1,
    }]
}

impl Config {
    /// Reads a file; errors name the file (and toml's message the key and line).
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Checks what types cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.nodes.is_empty() {
            return Err("pdf: at least one [[pdf]] node is needed".into());
        }
        if self.nodes.len() > 200 {
            return Err("pdf: at most 200 nodes".into());
        }
        for (i, node) in self.nodes.iter().enumerate() {
            if self.nodes[..i].iter().any(|n| n.name == node.name) {
                return Err(format!("pdf[{i}].name: {:?} appears twice", node.name));
            }
        }
        if self.charging.pool_size == 0 || self.charging.pool_size > 64 {
            return Err("charging.pool_size: between 1 and 64".into());
        }
        for (key, value) in [
            ("access.watchdog_seconds", self.access.watchdog_seconds),
            ("charging.watchdog_seconds", self.charging.watchdog_seconds),
        ] {
            if value < 6 {
                return Err(format!("{key}: {value} is below 6 (RFC 3539's minimum)"));
            }
        }
        if self.charging.request_timeout_ms == 0 {
            return Err("charging.request_timeout_ms: at least 1".into());
        }
        if self.charging.max_pending_per_connection == 0 {
            return Err("charging.max_pending_per_connection: at least 1".into());
        }
        Ok(())
    }

    /// Origin-Host: configured, or `gateway.<hostname>`.
    pub fn origin_host(&self) -> String {
        self.access.origin_host.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
            let host = host.trim();
            format!(
                "gateway.{}",
                if host.is_empty() { "localhost" } else { host }
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_design_section_9() {
        let config: Config = toml::from_str("").expect("empty is valid");
        assert_eq!(
            Config::default().nodes.len(),
            1,
            "no file means the defaults too"
        );
        assert_eq!(config.access.listen.port(), 3869);
        assert_eq!(config.nodes[0].address.port(), 3868);
        assert_eq!(config.charging.pool_size, 4);
        assert!(config.validate().is_ok());
    }

    #[test]
    fn nodes_and_errors() {
        let config: Config = toml::from_str(
            "[[pdf]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\n[[pdf]]\nname = \"b\"\naddress = \"127.0.0.1:2\"\nweight = 0\n",
        )
        .expect("valid");
        assert_eq!(config.nodes.len(), 2);
        assert_eq!(config.nodes[1].weight, 0);
        let error =
            toml::from_str::<Config>("[charging]\npolicy = \"retry\"\n").expect_err("bad policy");
        assert!(error.to_string().contains("policy"), "{error}");
        let config: Config = toml::from_str("[charging]\npool_size = 0\n").expect("parses");
        assert!(config
            .validate()
            .expect_err("zero")
            .starts_with("charging.pool_size"));
    }
}
