//! The subscriber population: who exists, which account each subscriber draws on, and each
//! account's opening balance.
//!
//! One definition, used by the PDF to build its accounts and by the loadgen to know them
//! (DESIGN.md section 2): a [`PopulationSpec`] derives everything from a seed by pure
//! functions of the subscriber or account index, so both sides (and every loadgen shard)
//! compute the same numbers without talking. A CSV file can replace the generator.
//!
//! Layout of a generated population: subscribers `0..n` have MSISDNs `first_msisdn + i`.
//! The first `shared` subscribers (a share of `n`, rounded down to whole families) form
//! family accounts of `family_size` members each; every other subscriber has an account of
//! their own.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

/// How opening balances are drawn (integer minor units).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(tag = "dist", rename_all = "lowercase", deny_unknown_fields)]
pub enum BalanceDistribution {
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

/// A generated population.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PopulationSpec {
    /// Seed of every draw.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Number of subscribers.
    #[serde(default = "default_subscribers")]
    pub subscribers: u32,
    /// MSISDN of subscriber 0.
    #[serde(default = "default_first_msisdn")]
    pub first_msisdn: u64,
    /// Opening balances.
    #[serde(default = "default_balance")]
    pub balance: BalanceDistribution,
    /// Share of subscribers (0 to 1) in multi-subscriber (family) accounts.
    #[serde(default = "default_shared_share")]
    pub shared_share: f64,
    /// Members of each family account.
    #[serde(default = "default_family_size")]
    pub family_size: u32,
}

fn default_seed() -> u64 {
    42
}
fn default_subscribers() -> u32 {
    100_000
}
fn default_first_msisdn() -> u64 {
    491_700_000_000
}
fn default_balance() -> BalanceDistribution {
    BalanceDistribution::Uniform {
        min: 500,
        max: 50_000,
    }
}
fn default_family_size() -> u32 {
    4
}
fn default_shared_share() -> f64 {
    0.1
}

impl Default for PopulationSpec {
    fn default() -> Self {
        Self {
            seed: default_seed(),
            subscribers: default_subscribers(),
            first_msisdn: default_first_msisdn(),
            balance: default_balance(),
            shared_share: default_shared_share(),
            family_size: default_family_size(),
        }
    }
}

/// SplitMix64: a fast, well-mixed hash of (seed, index), so that any account's draw is a
/// pure function of its index.
fn mix(seed: u64, index: u64) -> u64 {
    let mut z = seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl PopulationSpec {
    /// Checks the parameters; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.subscribers == 0 {
            return Err("population.subscribers: must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.shared_share) {
            return Err(format!(
                "population.shared_share: {} is not between 0 and 1",
                self.shared_share
            ));
        }
        if self.family_size < 2 {
            return Err("population.family_size: a family has at least 2 members".into());
        }
        match self.balance {
            BalanceDistribution::Constant { value } if value < 0 => {
                Err("population.balance.value: must not be negative".into())
            }
            BalanceDistribution::Uniform { min, max } if min < 0 || max < min => Err(format!(
                "population.balance: need 0 <= min <= max, got min {min} max {max}"
            )),
            _ => Ok(()),
        }
    }

    /// Subscribers in family accounts (whole families only).
    pub fn shared_subscribers(&self) -> u32 {
        let shared = (f64::from(self.subscribers) * self.shared_share) as u32;
        shared - shared % self.family_size
    }

    /// Number of accounts.
    pub fn accounts(&self) -> u32 {
        let shared = self.shared_subscribers();
        shared / self.family_size + (self.subscribers - shared)
    }

    /// The account of subscriber `index`.
    pub fn account_of(&self, index: u32) -> u32 {
        let shared = self.shared_subscribers();
        if index < shared {
            index / self.family_size
        } else {
            shared / self.family_size + (index - shared)
        }
    }

    /// The subscribers drawing on `account`.
    pub fn members(&self, account: u32) -> std::ops::Range<u32> {
        let shared = self.shared_subscribers();
        let families = shared / self.family_size;
        if account < families {
            account * self.family_size..(account + 1) * self.family_size
        } else {
            let index = shared + (account - families);
            index..index + 1
        }
    }

    /// The MSISDN of subscriber `index`.
    pub fn msisdn(&self, index: u32) -> u64 {
        self.first_msisdn + u64::from(index)
    }

    /// The subscriber with this MSISDN, if any.
    pub fn subscriber(&self, msisdn: u64) -> Option<u32> {
        let index = msisdn.checked_sub(self.first_msisdn)?;
        (index < u64::from(self.subscribers)).then_some(index as u32)
    }

    /// The opening balance of `account`.
    pub fn initial_balance(&self, account: u32) -> i64 {
        match self.balance {
            BalanceDistribution::Constant { value } => value,
            BalanceDistribution::Uniform { min, max } => {
                let span = (max - min) as u64 + 1;
                min + (mix(self.seed, u64::from(account)) % span) as i64
            }
        }
    }
}

/// Where the PDF's subscribers come from.
#[derive(Clone, Debug)]
pub enum Population {
    /// Generated from a spec.
    Generated(PopulationSpec),
    /// Read from a CSV file (`msisdn,account,balance` per line; a header line is allowed).
    Table(Table),
}

/// A population read from a file.
#[derive(Clone, Debug, Default)]
pub struct Table {
    accounts: Vec<i64>,
    subscribers: HashMap<u64, u32>,
}

impl Population {
    /// Reads a CSV population. Errors name the file and line.
    pub fn from_csv(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut table = Table::default();
        let mut ids: HashMap<String, u32> = HashMap::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty()
                || line.starts_with('#')
                || (number == 0 && line.starts_with("msisdn"))
            {
                continue;
            }
            let at = |what: &str| format!("{}:{}: {what}", path.display(), number + 1);
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let [msisdn, account, balance] = fields[..] else {
                return Err(at("expected 3 fields: msisdn,account,balance"));
            };
            let msisdn: u64 = msisdn
                .parse()
                .map_err(|_| at(&format!("msisdn {msisdn:?} is not a number")))?;
            let balance: i64 = balance
                .parse()
                .map_err(|_| at(&format!("balance {balance:?} is not an integer")))?;
            if balance < 0 {
                return Err(at("balance must not be negative"));
            }
            let next = table.accounts.len() as u32;
            let id = *ids.entry(account.to_owned()).or_insert_with(|| {
                table.accounts.push(balance);
                next
            });
            if table.accounts[id as usize] != balance {
                return Err(at(&format!(
                    "account {account} already has balance {}",
                    table.accounts[id as usize]
                )));
            }
            if table.subscribers.insert(msisdn, id).is_some() {
                return Err(at(&format!("msisdn {msisdn} appears twice")));
            }
        }
        if table.accounts.is_empty() {
            return Err(format!("{}: no subscribers", path.display()));
        }
        Ok(Self::Table(table))
    }

    /// Number of accounts.
    pub fn accounts(&self) -> u32 {
        match self {
            Self::Generated(spec) => spec.accounts(),
            Self::Table(table) => table.accounts.len() as u32,
        }
    }

    /// Number of subscribers.
    pub fn subscribers(&self) -> u32 {
        match self {
            Self::Generated(spec) => spec.subscribers,
            Self::Table(table) => table.subscribers.len() as u32,
        }
    }

    /// The account an MSISDN draws on.
    pub fn account_of_msisdn(&self, msisdn: u64) -> Option<u32> {
        match self {
            Self::Generated(spec) => spec.subscriber(msisdn).map(|s| spec.account_of(s)),
            Self::Table(table) => table.subscribers.get(&msisdn).copied(),
        }
    }

    /// An account's opening balance.
    pub fn initial_balance(&self, account: u32) -> i64 {
        match self {
            Self::Generated(spec) => spec.initial_balance(account),
            Self::Table(table) => table.accounts.get(account as usize).copied().unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_then_singles() {
        let spec = PopulationSpec {
            subscribers: 10,
            shared_share: 0.5,
            family_size: 2,
            ..Default::default()
        };
        assert_eq!(spec.shared_subscribers(), 4);
        assert_eq!(spec.accounts(), 2 + 6);
        let accounts: Vec<u32> = (0..10).map(|i| spec.account_of(i)).collect();
        assert_eq!(accounts, vec![0, 0, 1, 1, 2, 3, 4, 5, 6, 7]);
        for account in 0..spec.accounts() {
            for member in spec.members(account) {
                assert_eq!(spec.account_of(member), account);
            }
        }
        assert_eq!(spec.subscriber(491_700_000_003), Some(3));
        assert_eq!(spec.subscriber(491_700_000_010), None);
        assert_eq!(spec.subscriber(1), None);
    }

    #[test]
    fn balances_are_deterministic_and_in_range() {
        let spec = PopulationSpec::default();
        let other = PopulationSpec {
            seed: 7,
            ..PopulationSpec::default()
        };
        let a: Vec<i64> = (0..1000).map(|i| spec.initial_balance(i)).collect();
        assert_eq!(
            a,
            (0..1000)
                .map(|i| spec.initial_balance(i))
                .collect::<Vec<_>>()
        );
        assert!(a.iter().all(|b| (500..=50_000).contains(b)));
        assert_ne!(
            a,
            (0..1000)
                .map(|i| other.initial_balance(i))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn csv_errors_name_the_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pop.csv");
        std::fs::write(
            &path,
            "msisdn,account,balance\n491700000001,a,100\n491700000002,a,100\nx,b,1\n",
        )
        .expect("write");
        let error = Population::from_csv(&path).expect_err("bad msisdn");
        assert!(
            error.ends_with("pop.csv:4: msisdn \"x\" is not a number"),
            "{error}"
        );
        std::fs::write(
            &path,
            "491700000001,a,100\n491700000002,a,100\n491700000003,b,7\n",
        )
        .expect("write");
        let population = Population::from_csv(&path).expect("valid");
        assert_eq!(population.accounts(), 2);
        assert_eq!(population.account_of_msisdn(491_700_000_002), Some(0));
        assert_eq!(population.initial_balance(1), 7);
    }
}
