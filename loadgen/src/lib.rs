//! The load generator: reads a scenario, starts (or finds) the gateway and the pdf, drives
//! accounting sessions through the gateway, measures honestly, checks the charging books,
//! and reports.
//!
//! - [`scenario`]: the file format and its validation;
//! - [`run`]: processes, sessions, measurements, the books check;
//! - [`events`]: timeline events (kill a node, set a weight, run a command), fired and recorded;
//! - [`progress`]: the live progress bar (or plain lines) on stderr;
//! - [`report`]: the terminal summary, summary.json and the thresholds;
//! - [`html`]: report.html, the page with tables and plots;
//! - [`hlog`]: latency.hlog, the HdrHistogram interval log (per second, step and latency);
//! - [`compare`]: `loadgen compare`, several runs side by side;
//! - [`shard`]: `--shard i/N`, one N-th of the population and of the load;
//! - [`merge`]: `loadgen merge`, shard reports combined exactly;
//! - [`nodes`]: live sessions per PDF node, sampled from the gateway's admin port;
//! - [`pacer`]: wake-ups at the plan's send times, finer than tokio's millisecond timer;
//! - [`windows`]: thresholds scoped to a window of the timeline (`[[slo.window]]`);
//! - [`schema`]: `loadgen schema`, the JSON Schema of the scenario format;
//! - [`windows`]: thresholds scoped to a window of the timeline (`[[slo.window]]`);
//! - [`upgrade`]: upgrade strategies (restart, drain) and what an upgrade run reports;
//! - [`sweep`]: `loadgen sweep`, one scenario run once per upgrade strategy, compared.

pub mod compare;
pub mod events;
pub mod gateway_latency;
pub mod hlog;
pub mod html;
pub mod merge;
pub mod migrate;
pub mod nodes;
pub mod pacer;
pub mod progress;
pub mod report;
pub mod run;
pub mod scenario;
pub mod schema;
pub mod shard;
pub mod sweep;
pub mod upgrade;
pub mod windows;
