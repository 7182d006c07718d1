//! The PDF: an online charging server (RFC 4006 Credit-Control, Auth-Application-Id 4) that
//! owns the subscribers' money.
//!
//! - [`population`] and [`tariff`]: who exists and what things cost (shared with the loadgen);
//! - [`ledger`], [`sessions`] and [`charging`]: the money, the live sessions and the
//!   decisions, without IO;
//! - [`journal`]: debits on disk before answers (group commit), recovered after a crash;
//! - [`server`]: the Diameter handler (CCR in, CCA out, ASR to gateways);
//! - [`admin`] and [`metrics`]: the admin HTTP port (status, Prometheus metrics, accounts,
//!   the books check);
//! - [`config`] and [`app`]: the TOML configuration, the command line and `run()`.

pub mod admin;
pub mod app;
pub mod charging;
pub mod config;
pub mod hot;
pub mod journal;
pub mod ledger;
pub mod metrics;
pub mod migrate;
pub mod ownership;
pub mod population;
pub mod server;
pub mod sessions;
pub mod snapshot;
pub mod tariff;
pub mod transfer;
