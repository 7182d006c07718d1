//! The PDF: an online charging server (RFC 4006 Credit-Control, Auth-Application-Id 4) that
//! owns the subscribers' money.
//!
//! - [`population`] and [`tariff`]: who exists and what things cost (shared with the loadgen);
//! - [`ledger`], [`sessions`] and [`charging`]: the money, the live sessions and the
//!   decisions, without IO;
//! - the binary's glue (server, journal, admin port) comes on top.

pub mod charging;
pub mod ledger;
pub mod population;
pub mod sessions;
pub mod tariff;
