//! The gateway: hundreds of thousands of subscriber sessions on the access leg (Diameter base
//! accounting, Application-Id 3) relayed as Credit-Control (Application-Id 4) over a handful
//! of connections to each PDF node.
//!
//! - [`sessions`]: the compact session table;
//! - [`pool`]: PDF nodes, their connection pools, placement by weight;
//! - [`relay`]: ACR to CCR to CCA to ACA, ASR both ways, the loss policy;
//! - [`admin`] and [`metrics`]: the admin HTTP port;
//! - [`config`] and [`app`]: TOML configuration, the command line, `run()`.

pub mod admin;
pub mod app;
pub mod config;
pub mod metrics;
pub mod pool;
pub mod relay;
pub mod sessions;
