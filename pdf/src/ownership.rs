//! Which accounts this node owns, and moving them to another node (the `migrate` upgrade
//! strategy), without IO.
//!
//! Every node knows the whole population (ids and MSISDNs resolve everywhere) but charges
//! only the accounts it owns. An account is, on each node:
//!
//! - [`Owner::Here`]: charged here (every account of a node started with `owns = "all"`);
//! - [`Owner::Elsewhere`]: never owned here (every account of a node started with
//!   `owns = "none"`, until it is imported). A CCR-INITIAL or EVENT for it is answered 3006
//!   REDIRECT_INDICATION naming the node migrating to us (the upstream: given at start-up
//!   with `--upstream`, or learnt from its introduction), else 3004 TOO_BUSY ("not owned by
//!   this node": the gateway tries another node). Never charged.
//! - [`Owner::Frozen`]: being moved in a batch. Requests for it wait (bounded) in the server
//!   until the batch is acknowledged or abandoned; its sessions do not expire meanwhile.
//! - [`Owner::Moved`]: moved to another node. A request of one of its moved sessions, or a
//!   new CCR-INITIAL/EVENT, is answered 3006 with Redirect-Host naming that node.
//!
//! The money: an account's opening on a node is what entered this node's books for it (the
//! population's opening balance if owned from the start, plus imports, minus exports), so
//! `initial == balance + reserved + debited` holds on every node. `debited` is what this
//! node charged; `debited_before` (carried in the batch) is what earlier owners charged. An
//! account's total charge is the sum of `debited` over all nodes, which equals the owner's
//! `debited + debited_before`.
//!
//! Epochs: each account carries an ownership epoch (0 on the node that owned it from the
//! start) that grows by one at each move. A node imports an account only at an epoch above
//! the one it knows, so a batch sent twice is acknowledged twice and applied once.

use std::collections::HashMap;
use std::sync::Arc;

use protocol::dictionary::CcRequestType;
use protocol::messages::Ccr;
use protocol::result_code::ResultCode;
use serde::Serialize;

use crate::charging::{Decision, Engine};
use crate::ledger::NO_SESSION;
use crate::sessions::{LastAnswer, SessionKey};
use crate::transfer::{AccountState, Batch, SessionState};

/// Redirect-Max-Cache-Time of a 3006 answer, in seconds: a session, once moved, stays moved.
pub const REDIRECT_CACHE_SECONDS: u32 = 86_400;

const HERE: u8 = 0;
const ELSEWHERE: u8 = 1;
const FROZEN: u8 = 2;
const MOVED: u8 = 3;

/// Where an account is charged, as this node sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Owner {
    /// Charged here.
    Here,
    /// Never owned here.
    Elsewhere,
    /// Being moved.
    Frozen,
    /// Moved to another node.
    Moved,
}

/// Which accounts a node starts with (`ownership.owns` in the configuration).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Owns {
    /// Every account of the population (the default).
    #[default]
    All,
    /// None: a node waiting for accounts to be migrated to it.
    None,
}

/// The ownership table.
#[derive(Debug, Default)]
pub struct Ownership {
    /// One byte per account; empty while every account is here and nothing ever moved (the
    /// common case costs no lookup).
    state: Vec<u8>,
    accounts: u32,
    owned: u32,
    frozen: u32,
    /// Epochs other than 0.
    epochs: HashMap<u32, u64>,
    /// Where moved accounts went (an index in `targets`).
    moved_to: HashMap<u32, u16>,
    targets: Vec<Arc<String>>,
    /// Moved sessions: where they went, and whether one of their requests was redirected.
    moved_sessions: HashMap<SessionKey, (u16, bool)>,
    waiting_redirect: usize,
    /// What earlier owners debited, per imported account.
    debited_before: HashMap<u32, i64>,
    /// Money imported and exported in all.
    imported: i64,
    exported: i64,
    /// Where the accounts this node does not own are served (the node migrating to us).
    upstream: Option<Arc<String>>,
}

/// Numbers for `/status` and `GET /migrate`.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct OwnershipNumbers {
    /// Accounts owned here.
    pub owned: u32,
    /// Accounts frozen in a batch being moved.
    pub frozen: u32,
    /// Moved sessions whose next request has not come yet.
    pub sessions_waiting_redirect: usize,
    /// Money taken in with imported accounts.
    pub imported_money: i64,
    /// Money handed over with exported accounts.
    pub exported_money: i64,
}

impl Ownership {
    /// The table of a node owning `owns` of `accounts` accounts.
    pub fn new(accounts: u32, owns: Owns) -> Self {
        match owns {
            Owns::All => Self {
                accounts,
                owned: accounts,
                ..Self::default()
            },
            Owns::None => Self {
                state: vec![ELSEWHERE; accounts as usize],
                accounts,
                ..Self::default()
            },
        }
    }

    /// Where an account is charged.
    pub fn owner(&self, account: u32) -> Owner {
        match self.state.get(account as usize).copied() {
            None | Some(HERE) => Owner::Here,
            Some(ELSEWHERE) => Owner::Elsewhere,
            Some(FROZEN) => Owner::Frozen,
            Some(_) => Owner::Moved,
        }
    }

    fn set(&mut self, account: u32, state: u8) {
        if self.state.is_empty() {
            self.state = vec![HERE; self.accounts as usize];
        }
        let old = std::mem::replace(&mut self.state[account as usize], state);
        self.owned = self.owned + u32::from(state == HERE) - u32::from(old == HERE);
        self.frozen = self.frozen + u32::from(state == FROZEN) - u32::from(old == FROZEN);
    }

    /// An account's ownership epoch.
    pub fn epoch(&self, account: u32) -> u64 {
        self.epochs.get(&account).copied().unwrap_or(0)
    }

    /// Where a moved account went.
    pub fn moved_to(&self, account: u32) -> Option<Arc<String>> {
        let target = *self.moved_to.get(&account)?;
        self.targets.get(usize::from(target)).cloned()
    }

    /// What earlier owners debited for an imported account.
    pub fn debited_before(&self, account: u32) -> i64 {
        self.debited_before.get(&account).copied().unwrap_or(0)
    }

    /// Accounts owned here.
    pub fn owned(&self) -> u32 {
        self.owned
    }

    /// Where unowned accounts are served, if known.
    pub fn upstream(&self) -> Option<Arc<String>> {
        self.upstream.clone()
    }

    /// Learns where unowned accounts are served (the node migrating to us).
    pub fn set_upstream(&mut self, uri: &str) {
        if self.upstream.as_deref().map(String::as_str) != Some(uri) {
            self.upstream = Some(Arc::new(uri.to_owned()));
        }
    }

    /// The counters.
    pub fn numbers(&self) -> OwnershipNumbers {
        OwnershipNumbers {
            owned: self.owned,
            frozen: self.frozen,
            sessions_waiting_redirect: self.waiting_redirect,
            imported_money: self.imported,
            exported_money: self.exported,
        }
    }

    fn target(&mut self, uri: &str) -> u16 {
        match self.targets.iter().position(|t| t.as_str() == uri) {
            Some(i) => i as u16,
            None => {
                self.targets.push(Arc::new(uri.to_owned()));
                (self.targets.len() - 1) as u16
            }
        }
    }

    /// A moved session's new node; counts its first redirect.
    fn redirect_session(&mut self, key: SessionKey) -> Option<Arc<String>> {
        let (target, redirected) = self.moved_sessions.get_mut(&key)?;
        if !*redirected {
            *redirected = true;
            self.waiting_redirect -= 1;
        }
        self.targets.get(usize::from(*target)).cloned()
    }

    /// Stops waiting for moved sessions' next requests (they expired on the new node, or the
    /// old node gave up lingering).
    pub fn forget_moved_sessions(&mut self) {
        self.moved_sessions.clear();
        self.waiting_redirect = 0;
    }
}

/// Why an import is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportConflict(pub String);

/// What an import did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Imported {
    /// Accounts taken in now.
    pub accounts: u32,
    /// Sessions taken in now.
    pub sessions: u32,
    /// Accounts already imported at this epoch (a batch sent again): nothing done.
    pub duplicates: u32,
}

impl Engine {
    /// The ownership check before a CCR is charged: `None` to go on, or the answer (3006 to
    /// the owner, 3004 when the owner is unknown, or a hold while the account moves).
    pub(crate) fn ownership_gate(&mut self, key: SessionKey, ccr: &Ccr<'_>) -> Option<Decision> {
        if self.ownership.state.is_empty() {
            return None;
        }
        if let Some(slot) = self.sessions.find(key) {
            let account = self.sessions.get(slot).account;
            return (self.ownership.owner(account) == Owner::Frozen).then(Decision::hold);
        }
        if let Some(target) = self.ownership.redirect_session(key) {
            return Some(Decision::redirect(
                target,
                format!("session {} moved to another node", ccr.session_id),
            ));
        }
        if !matches!(
            ccr.cc_request_type,
            CcRequestType::INITIAL_REQUEST | CcRequestType::EVENT_REQUEST
        ) || self.has_ended(key)
        {
            return None;
        }
        let account = self.account_of(ccr).ok()?;
        match self.ownership.owner(account) {
            Owner::Here => None,
            Owner::Frozen => Some(Decision::hold()),
            Owner::Moved => Some(match self.ownership.moved_to(account) {
                Some(target) => {
                    Decision::redirect(target, format!("account {account} moved to another node"))
                }
                None => Decision::refuse(
                    ResultCode::TOO_BUSY,
                    format!("account {account} moved to another node"),
                ),
            }),
            Owner::Elsewhere => Some(match self.ownership.upstream() {
                Some(upstream) => Decision::redirect(
                    upstream,
                    format!("account {account} is not owned by this node yet"),
                ),
                None => Decision::refuse(
                    ResultCode::TOO_BUSY,
                    format!(
                        "account {account} is not owned by this node (ownership.owns = \
                         \"none\"): another node serves it"
                    ),
                ),
            }),
        }
    }

    /// Freezes up to `max` accounts owned here (from the lowest id) and copies them and their
    /// sessions into a batch; `None` when nothing is owned here.
    /// `cursor` is where the scan starts, and where the next one will.
    pub fn freeze_batch(
        &mut self,
        now: u32,
        max: usize,
        from: &str,
        seq: u64,
        cursor: &mut u32,
    ) -> Option<Batch> {
        let mut batch = Batch {
            from: from.to_owned(),
            seq,
            accounts: Vec::new(),
            sessions: Vec::new(),
        };
        let mut id = *cursor;
        while batch.accounts.len() < max && id < self.ownership.accounts {
            if self.ownership.owner(id) == Owner::Here {
                self.ownership.set(id, FROZEN);
                let account = *self.ledger.get(id).expect("in range");
                batch.accounts.push(AccountState {
                    id,
                    epoch: self.ownership.epoch(id) + 1,
                    balance: account.balance,
                    reserved: account.reserved,
                    debited_before: account.debited + self.ownership.debited_before(id),
                });
                let mut at = account.first_session;
                while at != NO_SESSION {
                    let slot = self.sessions.get(at);
                    let last = slot.last();
                    batch.sessions.push(SessionState {
                        session_id: self.sessions.session_id(at),
                        account: id,
                        rating_group: self.tariff.service(slot.service).rating_group,
                        reserved: slot.reserved,
                        expires_in: slot.expires.saturating_sub(now),
                        final_units: slot.final_units(),
                        abort_sent: slot.abort_sent(),
                        last_number: last.request_number,
                        last_result: last.result,
                        last_granted: last.granted,
                        last_final: last.final_units,
                    });
                    at = slot.next_in_account;
                }
            }
            id += 1;
        }
        *cursor = id;
        (!batch.accounts.is_empty()).then_some(batch)
    }

    /// The batch was not taken: its accounts are owned here again.
    pub fn unfreeze(&mut self, batch: &Batch) {
        for account in &batch.accounts {
            if self.ownership.owner(account.id) == Owner::Frozen {
                self.ownership.set(account.id, HERE);
            }
        }
    }

    /// The new node acknowledged the batch: its accounts and sessions leave this node (no
    /// money released: it moved), and their next requests are redirected to `target`.
    pub fn finish_export(&mut self, batch: &Batch, target: &str) {
        let target = self.ownership.target(target);
        for account in &batch.accounts {
            let id = account.id;
            let mut at = self.ledger.get(id).map_or(NO_SESSION, |a| a.first_session);
            while at != NO_SESSION {
                let next = self.sessions.get(at).next_in_account;
                let key = self.sessions.key(at);
                if self
                    .ownership
                    .moved_sessions
                    .insert(key, (target, false))
                    .is_none()
                {
                    self.ownership.waiting_redirect += 1;
                }
                self.sessions.remove(at);
                at = next;
            }
            let entry = self.ledger.get_mut(id);
            entry.first_session = NO_SESSION;
            entry.sessions = 0;
            let (balance, reserved) = self.ledger.export(id);
            self.ownership.exported += balance + reserved;
            self.mark_moved(id, account.epoch, target);
        }
    }

    fn mark_moved(&mut self, id: u32, epoch: u64, target: u16) {
        self.ownership.set(id, MOVED);
        self.ownership.epochs.insert(id, epoch);
        self.ownership.moved_to.insert(id, target);
    }

    /// Checks a batch against what this node knows: every account either new at a higher
    /// epoch (imported) or here at the same epoch (a batch sent again).
    pub fn check_import(&self, batch: &Batch) -> Result<(), ImportConflict> {
        for account in &batch.accounts {
            let id = account.id;
            if id >= self.ownership.accounts {
                return Err(ImportConflict(format!(
                    "account {id} is not in this node's population of {} accounts",
                    self.ownership.accounts
                )));
            }
            let (owner, epoch) = (self.ownership.owner(id), self.ownership.epoch(id));
            let fine = match owner {
                Owner::Here => epoch == account.epoch,
                Owner::Elsewhere | Owner::Moved => epoch < account.epoch,
                Owner::Frozen => false,
            };
            if !fine {
                return Err(ImportConflict(format!(
                    "account {id} is {owner:?} here at epoch {epoch}; the batch brings epoch {}",
                    account.epoch
                )));
            }
        }
        for session in &batch.sessions {
            if self.tariff.service_index(session.rating_group).is_none() {
                return Err(ImportConflict(format!(
                    "session {}: no tariff here for Rating-Group {}",
                    session.session_id, session.rating_group
                )));
            }
        }
        Ok(())
    }

    /// Whether a checked batch brings anything not here yet (else it is a copy of one taken).
    pub fn is_new_import(&self, batch: &Batch) -> bool {
        batch.accounts.iter().any(|a| {
            self.ownership.owner(a.id) != Owner::Here || self.ownership.epoch(a.id) != a.epoch
        })
    }

    /// Takes in a checked batch at `now`: accounts not already here at the batch's epoch get
    /// their money and sessions. `with_sessions: false` (recovery after a restart: sessions
    /// are lost, their holds go back to the balance).
    pub fn apply_import(&mut self, now: u32, batch: &Batch, with_sessions: bool) -> Imported {
        let mut done = Imported::default();
        let mut new_accounts = Vec::new();
        for account in &batch.accounts {
            let id = account.id;
            if self.ownership.owner(id) == Owner::Here && self.ownership.epoch(id) == account.epoch
            {
                done.duplicates += 1;
                continue;
            }
            if with_sessions {
                self.ledger.import(id, account.balance, account.reserved);
            } else {
                self.ledger
                    .import(id, account.balance + account.reserved, 0);
            }
            self.ownership.imported += account.balance + account.reserved;
            self.ownership.set(id, HERE);
            self.ownership.epochs.insert(id, account.epoch);
            self.ownership.moved_to.remove(&id);
            self.ownership
                .debited_before
                .insert(id, account.debited_before);
            new_accounts.push(id);
            done.accounts += 1;
        }
        if with_sessions {
            for session in &batch.sessions {
                if !new_accounts.contains(&session.account) {
                    continue;
                }
                let key = SessionKey::of(&session.session_id);
                if self.sessions.find(key).is_some() {
                    continue;
                }
                let service = self
                    .tariff
                    .service_index(session.rating_group)
                    .expect("checked");
                let head = self
                    .ledger
                    .get(session.account)
                    .map_or(NO_SESSION, |a| a.first_session);
                let slot =
                    self.sessions
                        .insert(&session.session_id, key, session.account, service, head);
                let entry = self.ledger.get_mut(session.account);
                entry.first_session = slot;
                entry.sessions += 1;
                let slot = self.sessions.get_mut(slot);
                slot.reserved = session.reserved;
                slot.expires = now + session.expires_in;
                slot.set_final_units(session.final_units);
                if session.abort_sent {
                    slot.mark_abort_sent();
                }
                slot.set_last(LastAnswer {
                    request_number: session.last_number,
                    result: session.last_result,
                    granted: session.last_granted,
                    final_units: session.last_final,
                });
                done.sessions += 1;
            }
        }
        self.ownership.set_upstream(&batch.from);
        done
    }

    /// Recovery: an export the journal says happened (the money left with the batch).
    pub fn recover_export(&mut self, batch: &Batch, target: &str) {
        let target = self.ownership.target(target);
        for account in &batch.accounts {
            let moved = account.balance + account.reserved;
            self.ledger.adjust_opening(account.id, -moved);
            self.ownership.exported += moved;
            self.mark_moved(account.id, account.epoch, target);
        }
    }

    /// Recovery: an export the new node never took; the accounts are ours again.
    pub fn recover_abandoned(&mut self, batch: &Batch) {
        for account in &batch.accounts {
            let moved = account.balance + account.reserved;
            self.ledger.adjust_opening(account.id, moved);
            self.ownership.exported -= moved;
            self.ownership.set(account.id, HERE);
            self.ownership.moved_to.remove(&account.id);
            let previous = account.epoch - 1;
            if previous == 0 {
                self.ownership.epochs.remove(&account.id);
            } else {
                self.ownership.epochs.insert(account.id, previous);
            }
        }
    }
}
