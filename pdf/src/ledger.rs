//! Accounts and their books.
//!
//! Money only moves between three places per account: `balance` (free), `reserved` (held for
//! live sessions) and `debited` (charged). So the books balance when, for every account,
//! `initial == balance + reserved + debited`. A charge beyond what a session reserved is
//! taken from the balance, which may then go negative (the gateway used more than it was
//! granted): the money is still charged, exactly once, and the books still balance.

use serde::Serialize;

/// No session: the end of an account's session list.
pub const NO_SESSION: u32 = u32::MAX;

/// One account: 40 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Account {
    /// Opening balance (after recovery: opening balance as generated).
    pub initial: i64,
    /// Free money.
    pub balance: i64,
    /// Money held by live sessions.
    pub reserved: i64,
    /// Money charged.
    pub debited: i64,
    /// First live session (an index in the session table), or [`NO_SESSION`].
    #[serde(skip)]
    pub first_session: u32,
    /// Live sessions drawing on the account.
    pub sessions: u32,
}

/// A break in the books.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Imbalance {
    /// The account.
    pub account: u32,
    /// Its state.
    pub state: Account,
    /// What is wrong.
    pub problem: &'static str,
}

/// All accounts.
#[derive(Debug, Default)]
pub struct Ledger {
    accounts: Vec<Account>,
    /// Running (balance, reserved, debited) over all accounts, so that status and metrics
    /// need not walk a million accounts under the engine lock.
    totals: (i64, i64, i64),
}

impl Ledger {
    /// Opens `count` accounts with their initial balances.
    pub fn new(count: u32, initial: impl Fn(u32) -> i64) -> Self {
        let accounts = (0..count)
            .map(|id| {
                let initial = initial(id);
                Account {
                    initial,
                    balance: initial,
                    reserved: 0,
                    debited: 0,
                    first_session: NO_SESSION,
                    sessions: 0,
                }
            })
            .collect::<Vec<Account>>();
        let balance = accounts.iter().map(|a| a.balance).sum();
        Self {
            accounts,
            totals: (balance, 0, 0),
        }
    }

    /// Number of accounts.
    pub fn len(&self) -> usize {
        self.accounts.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }

    /// One account.
    pub fn get(&self, id: u32) -> Option<&Account> {
        self.accounts.get(id as usize)
    }

    pub(crate) fn get_mut(&mut self, id: u32) -> &mut Account {
        &mut self.accounts[id as usize]
    }

    /// All accounts.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &Account)> {
        self.accounts.iter().enumerate().map(|(i, a)| (i as u32, a))
    }

    /// Moves up to `amount` from the balance to the reservation; returns what was reserved.
    pub fn reserve(&mut self, id: u32, amount: i64) -> i64 {
        let account = self.get_mut(id);
        let granted = amount.min(account.balance).max(0);
        account.balance -= granted;
        account.reserved += granted;
        self.totals.0 -= granted;
        self.totals.1 += granted;
        granted
    }

    /// Charges `amount`: first from `held` (what this session reserved), then from the
    /// balance. Returns what is left of `held`.
    pub fn debit(&mut self, id: u32, held: i64, amount: i64) -> i64 {
        let account = self.get_mut(id);
        let from_held = amount.min(held);
        account.reserved -= from_held;
        account.balance -= amount - from_held;
        account.debited += amount;
        self.totals.0 -= amount - from_held;
        self.totals.1 -= from_held;
        self.totals.2 += amount;
        held - from_held
    }

    /// Returns a session's unused reservation to the balance.
    pub fn release(&mut self, id: u32, held: i64) {
        let account = self.get_mut(id);
        account.reserved -= held;
        account.balance += held;
        self.totals.0 += held;
        self.totals.1 -= held;
    }

    /// Charges an amount recovered from the journal (no session holds anything after a
    /// restart).
    pub fn recover_debit(&mut self, id: u32, debited: i64) {
        if let Some(account) = self.accounts.get_mut(id as usize) {
            account.debited += debited;
            account.balance -= debited;
            self.totals.0 -= debited;
            self.totals.2 += debited;
        }
    }

    /// Adds `amount` to an account's opening and its balance (negative: takes it away).
    /// Ownership uses it: an account this node does not own opens at zero, and an account
    /// moved in or out brings or takes its money (see `crate::ownership`).
    pub fn adjust_opening(&mut self, id: u32, amount: i64) {
        if let Some(account) = self.accounts.get_mut(id as usize) {
            account.initial += amount;
            account.balance += amount;
            self.totals.0 += amount;
        }
    }

    /// Moves an account's money out of this node (it now belongs to another one): returns
    /// (balance, reserved) and leaves both at zero, the opening lowered by their sum, so the
    /// books still balance with what this node debited.
    pub fn export(&mut self, id: u32) -> (i64, i64) {
        let account = self.get_mut(id);
        let (balance, reserved) = (account.balance, account.reserved);
        account.initial -= balance + reserved;
        account.balance = 0;
        account.reserved = 0;
        self.totals.0 -= balance;
        self.totals.1 -= reserved;
        (balance, reserved)
    }

    /// Takes in an account's money from the node that owned it: the opening grows by
    /// `balance + reserved` (the sessions bringing `reserved` are inserted by the caller).
    pub fn import(&mut self, id: u32, balance: i64, reserved: i64) {
        let account = self.get_mut(id);
        account.initial += balance + reserved;
        account.balance += balance;
        account.reserved += reserved;
        self.totals.0 += balance;
        self.totals.1 += reserved;
    }

    /// Sets an account's money as a snapshot describes it (a hot upgrade's new process),
    /// keeping the running totals right.
    pub fn restore(&mut self, id: u32, initial: i64, balance: i64, reserved: i64, debited: i64) {
        let account = self.get_mut(id);
        let before = (account.balance, account.reserved, account.debited);
        account.initial = initial;
        account.balance = balance;
        account.reserved = reserved;
        account.debited = debited;
        // Wrapping: a corrupt snapshot's absurd figures must fail the totals check, not panic.
        self.totals.0 = self.totals.0.wrapping_add(balance.wrapping_sub(before.0));
        self.totals.1 = self.totals.1.wrapping_add(reserved.wrapping_sub(before.1));
        self.totals.2 = self.totals.2.wrapping_add(debited.wrapping_sub(before.2));
    }

    /// Every account whose books do not balance (empty when all is well).
    pub fn check(&self) -> Vec<Imbalance> {
        self.iter()
            .filter_map(|(id, a)| {
                let problem = if a.initial != a.balance + a.reserved + a.debited {
                    "initial != balance + reserved + debited"
                } else if a.reserved < 0 || a.debited < 0 {
                    "negative reservation or debit"
                } else {
                    return None;
                };
                Some(Imbalance {
                    account: id,
                    state: *a,
                    problem,
                })
            })
            .collect()
    }

    /// Totals over all accounts: (balance, reserved, debited), kept as money moves.
    pub fn totals(&self) -> (i64, i64, i64) {
        self.totals
    }

    /// Whether the running totals equal the sums over the accounts (for the books check).
    pub fn totals_consistent(&self) -> bool {
        let summed = self.accounts.iter().fold((0, 0, 0), |(b, r, d), a| {
            (b + a.balance, r + a.reserved, d + a.debited)
        });
        summed == self.totals
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_moves_and_the_books_balance() {
        let mut ledger = Ledger::new(2, |id| 100 * (i64::from(id) + 1));
        assert_eq!(ledger.reserve(0, 60), 60);
        assert_eq!(ledger.reserve(0, 60), 40, "only what is left");
        assert_eq!(
            ledger.debit(0, 60, 70),
            0,
            "10 beyond the hold comes from the balance"
        );
        ledger.release(0, 40);
        let a = ledger.get(0).expect("account");
        assert_eq!((a.balance, a.reserved, a.debited), (30, 0, 70));
        assert!(ledger.check().is_empty());
        ledger.recover_debit(1, 250);
        assert_eq!(ledger.get(1).map(|a| a.balance), Some(-50));
        assert!(ledger.check().is_empty());
        assert!(ledger.totals_consistent());
        assert_eq!(ledger.totals(), (30 + -50, 0, 70 + 250));
        assert_eq!(std::mem::size_of::<Account>(), 40);
    }
}
