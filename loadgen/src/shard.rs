//! Shards (DESIGN.md section 8): `--shard i/N` runs one N-th of a scenario, so that several
//! loadgens (one per machine, or an indexed Kubernetes Job) together run the whole of it and
//! `loadgen merge` combines their reports exactly.
//!
//! Shard `i` of `N` (0-based):
//! - runs the sessions whose index is `i mod N` (session `k` draws from the same per-session
//!   RNG stream in every layout, so the shards together run the whole scenario's sessions);
//! - owns the ACCOUNTS `a` with `a mod N = i` and draws its subscribers only from their
//!   members: a family account's members share money, so one account is never charged by two
//!   shards, and each shard's books check compares exactly the accounts it owns;
//! - carries `1 / N` of the load: `concurrent_sessions` and `max_sessions` split into integer
//!   shares that sum to the total, `arrival_rate` divided by N.
//!
//! `0/1` is the whole scenario and behaves exactly as a run without `--shard`.

use std::fmt;
use std::str::FromStr;

use pdf::population::PopulationSpec;
use serde::{Deserialize, Serialize};

use crate::scenario::{Load, Scenario};

/// One shard of a run: `index` of `count`, 0-based.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// This shard, `0..count`.
    pub index: u32,
    /// How many shards the run has.
    pub count: u32,
}

impl Shard {
    /// The whole run: shard 0 of 1.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// Whether this is one shard of several.
    pub fn is_partial(self) -> bool {
        self.count > 1
    }

    /// This shard's integer share of `total`: the N shares differ by at most one and sum to
    /// `total`.
    pub fn share(self, total: u32) -> u32 {
        let (i, n, t) = (
            u64::from(self.index),
            u64::from(self.count),
            u64::from(total),
        );
        (t * (i + 1) / n - t * i / n) as u32
    }

    /// Whether this shard owns `account`.
    pub fn owns_account(self, account: u32) -> bool {
        account % self.count == self.index
    }

    /// The global index of this shard's `local`-th session.
    pub fn session_index(self, local: u64) -> u64 {
        u64::from(self.index) + local * u64::from(self.count)
    }

    /// This shard's part of the load.
    pub fn load(self, load: &Load) -> Load {
        Load {
            concurrent_sessions: load.concurrent_sessions.map(|n| self.share(n)),
            arrival_rate: load.arrival_rate.map(|r| r / f64::from(self.count)),
            ramp: load.ramp,
            max_sessions: load.max_sessions.map(|n| self.share(n)),
        }
    }

    /// Whether this shard can run `scenario`: it needs some load and some accounts.
    pub fn check(self, scenario: &Scenario) -> Result<(), String> {
        let load = self.load(&scenario.load);
        if load.concurrent_sessions == Some(0) {
            return Err(format!(
                "--shard {self}: load.concurrent_sessions = {} leaves this shard no session (fewer sessions than shards)",
                scenario.load.concurrent_sessions.unwrap_or(0)
            ));
        }
        if load.max_sessions == Some(0) {
            return Err(format!(
                "--shard {self}: load.max_sessions = {} leaves this shard no session (fewer sessions than shards)",
                scenario.load.max_sessions.unwrap_or(0)
            ));
        }
        let accounts = scenario.population.accounts();
        if accounts < self.count {
            return Err(format!(
                "--shard {self}: the population has {accounts} accounts, fewer than {} shards",
                self.count
            ));
        }
        Ok(())
    }

    /// Subscribers in the accounts this shard owns.
    pub fn subscribers(self, spec: &PopulationSpec) -> u32 {
        let (families, singles) = self.owned(spec);
        families * spec.family_size + singles
    }

    /// Owned family accounts and owned single accounts.
    fn owned(self, spec: &PopulationSpec) -> (u32, u32) {
        let families = spec.shared_subscribers() / spec.family_size;
        let accounts = spec.accounts();
        // Accounts a in from..to with a = index (mod count).
        let count_in = |from: u32, to: u32| {
            let first = from + (self.index + self.count - from % self.count) % self.count;
            if first >= to {
                0
            } else {
                (to - 1 - first) / self.count + 1
            }
        };
        (count_in(0, families), count_in(families, accounts))
    }

    /// The `k`-th subscriber (`k < self.subscribers(spec)`) of this shard's accounts: a
    /// bijection onto the members of the owned accounts (the identity for `0/1`).
    pub fn subscriber(self, spec: &PopulationSpec, k: u32) -> u32 {
        let (owned_families, _) = self.owned(spec);
        let family_members = owned_families * spec.family_size;
        if k < family_members {
            let account = self.index + (k / spec.family_size) * self.count;
            spec.members(account).start + k % spec.family_size
        } else {
            let families = spec.shared_subscribers() / spec.family_size;
            let first = families + (self.index + self.count - families % self.count) % self.count;
            let account = first + (k - family_members) * self.count;
            spec.members(account).start
        }
    }

    /// A subscriber drawn uniformly from this shard's accounts.
    pub fn draw_subscriber(self, spec: &PopulationSpec, rng: &mut fastrand::Rng) -> u32 {
        self.subscriber(spec, rng.u32(0..self.subscribers(spec)))
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = String;

    /// `i/N`, 0-based: `0/4` .. `3/4`.
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?}: expected i/N with 0 <= i < N, like 0/4");
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let index: u32 = i.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

/// A fingerprint of what the shards of one run must share: everything in the scenario but
/// its topology (shards may reach different gateways), as 16 hex digits (FNV-1a 64 of its
/// `Debug` form, so stable for one loadgen version).
pub fn scenario_digest(scenario: &Scenario) -> String {
    let mut text = format!(
        "{:?}|{}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
        scenario.schema,
        scenario.name,
        scenario.seed,
        scenario.duration,
        scenario.time_scale,
        scenario.population,
        scenario.mix,
        scenario.load,
        scenario.slo
    );
    // Events only when there are some: the digests of scenarios without events stay as
    // they were.
    if !scenario.events.is_empty() {
        text += &format!("|{:?}", scenario.events);
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn parses_and_refuses() {
        assert_eq!("1/4".parse(), Ok(Shard { index: 1, count: 4 }));
        assert!("4/4".parse::<Shard>().is_err());
        assert!("0/0".parse::<Shard>().is_err());
        assert!("1".parse::<Shard>().is_err());
        assert!("a/2".parse::<Shard>().is_err());
    }

    #[test]
    fn shares_sum_to_the_total() {
        for total in [0, 1, 7, 300, 1001] {
            for count in 1..9 {
                let sum: u32 = (0..count)
                    .map(|index| Shard { index, count }.share(total))
                    .sum();
                assert_eq!(sum, total, "{total} in {count}");
            }
        }
    }

    #[test]
    fn each_shard_draws_exactly_the_members_of_its_accounts() {
        for (subscribers, shared_share, family_size) in
            [(2000, 0.2, 2), (103, 0.5, 4), (10, 0.0, 2), (9, 1.0, 3)]
        {
            let spec = PopulationSpec {
                subscribers,
                shared_share,
                family_size,
                ..Default::default()
            };
            let whole = Shard::WHOLE;
            assert_eq!(whole.subscribers(&spec), subscribers);
            for k in 0..subscribers {
                assert_eq!(whole.subscriber(&spec, k), k, "0/1 is the identity");
            }
            for count in 1..6 {
                let mut seen = HashSet::new();
                for index in 0..count {
                    let shard = Shard { index, count };
                    for k in 0..shard.subscribers(&spec) {
                        let subscriber = shard.subscriber(&spec, k);
                        assert!(subscriber < subscribers);
                        assert!(shard.owns_account(spec.account_of(subscriber)));
                        assert!(seen.insert(subscriber), "{subscriber} drawn twice");
                    }
                }
                assert_eq!(seen.len() as u32, subscribers, "{count} shards cover all");
            }
        }
    }
}
