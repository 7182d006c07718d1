//! Credit control (RFC 4006 sections 5 and 6): the PDF's decisions, without IO.
//!
//! [`Engine::credit_control`] takes a decoded CCR and the time, moves money in the
//! [`Ledger`], and returns a [`Decision`]: what to answer, what to write to the journal
//! before answering, and which other sessions to abort. INITIAL reserves a grant; UPDATE
//! charges the reported usage and reserves again; TERMINATION charges and releases; EVENT
//! charges a one-off. When money runs short the last grant carries Final-Unit-Indication,
//! and the next request gets 4012. A retransmission (same Session-Id and CC-Request-Number)
//! is answered as before and charged once; a number out of order is refused and charges
//! nothing.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use protocol::avp::AvpCode;
use protocol::dictionary::{self, CcRequestType, SubscriptionIdType};
use protocol::messages::Ccr;
use protocol::result_code::ResultCode;
use serde::Serialize;

use crate::ledger::{Ledger, NO_SESSION};
use crate::ownership::{Owner, Ownership, Owns};
use crate::population::Population;
use crate::sessions::{unthread, LastAnswer, SessionKey, Sessions, RESULTS};
use crate::tariff::Tariff;

/// Engine settings.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Validity-Time sent with each grant, in seconds; a session silent for twice as long
    /// expires (RFC 4006 section 13).
    pub validity_time: u32,
    /// How long an ended session's last answer is kept for retransmissions, in seconds.
    pub ended_memory: u32,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            validity_time: 600,
            ended_memory: 120,
        }
    }
}

/// What to answer and what else to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The Result-Code (of the answer and, for 2001/4012, of the MSCC).
    pub result: ResultCode,
    /// The service the request was for (an index in the tariff).
    pub service: Option<u8>,
    /// Units granted.
    pub granted: Option<u64>,
    /// Whether these are the final units (Final-Unit-Indication TERMINATE).
    pub final_units: bool,
    /// Validity-Time of the grant.
    pub validity_time: Option<u32>,
    /// A readable reason for errors.
    pub error_message: Option<Box<str>>,
    /// An AVP to quote in Failed-AVP.
    pub failed_avp: Option<AvpCode>,
    /// Money charged by this request, to be on disk before the answer leaves.
    pub debit: Option<(u32, i64)>,
    /// Other sessions to abort (their account is empty): their Session-Ids.
    pub aborts: Vec<String>,
    /// Whether this was a retransmission answered from the session's memory.
    pub retransmission: bool,
    /// 3006 REDIRECT_INDICATION: the Diameter URI of the node that owns the account now.
    pub redirect: Option<Arc<String>>,
    /// The account is being moved to another node: decide again shortly (the server waits,
    /// bounded, then answers this decision's 3004).
    pub hold: bool,
}

impl Decision {
    fn result(result: ResultCode) -> Self {
        Self {
            result,
            service: None,
            granted: None,
            final_units: false,
            validity_time: None,
            error_message: None,
            failed_avp: None,
            debit: None,
            aborts: Vec::new(),
            retransmission: false,
            redirect: None,
            hold: false,
        }
    }

    /// The account moves to another node right now: wait and decide again.
    pub(crate) fn hold() -> Self {
        Self {
            hold: true,
            ..Self::error(
                ResultCode::TOO_BUSY,
                "the account is being moved to another node; try again".into(),
                None,
            )
        }
    }

    /// 3006 REDIRECT_INDICATION to `target` (RFC 6733 section 6.13).
    pub(crate) fn redirect(target: Arc<String>, message: String) -> Self {
        Self {
            redirect: Some(target),
            ..Self::error(ResultCode::REDIRECT_INDICATION, message, None)
        }
    }

    /// A refusal with a reason.
    pub(crate) fn refuse(result: ResultCode, message: String) -> Self {
        Self::error(result, message, None)
    }

    fn error(result: ResultCode, message: String, failed: Option<AvpCode>) -> Self {
        Self {
            error_message: Some(message.into()),
            failed_avp: failed,
            ..Self::result(result)
        }
    }
}

/// Counters for `/status` and `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct EngineStats {
    /// Sessions opened.
    pub sessions_started: u64,
    /// Sessions ended by TERMINATION.
    pub sessions_terminated: u64,
    /// Sessions ended because the money ran out (4012).
    pub sessions_exhausted: u64,
    /// Sessions expired after silence.
    pub sessions_expired: u64,
    /// Retransmissions answered from memory.
    pub retransmissions: u64,
    /// Requests refused for an out-of-order CC-Request-Number.
    pub out_of_order: u64,
    /// ASRs decided because a shared account ran dry.
    pub aborts: u64,
}

/// The charging state: accounts, sessions, the tariff.
#[derive(Debug)]
pub struct Engine {
    /// Who exists.
    pub population: Population,
    /// Prices.
    pub tariff: Tariff,
    /// The money.
    pub ledger: Ledger,
    /// Live sessions.
    pub sessions: Sessions,
    /// Counters.
    pub stats: EngineStats,
    /// Which accounts are charged here (the `migrate` strategy moves them).
    pub ownership: Ownership,
    config: EngineConfig,
    ended: Ended,
}

/// Last answers of recently ended sessions (and events), for retransmissions.
#[derive(Debug, Default)]
struct Ended {
    answers: HashMap<SessionKey, (LastAnswer, u8)>,
    order: VecDeque<(u32, SessionKey)>,
}

impl Engine {
    /// An engine with every account at its opening balance.
    pub fn new(population: Population, tariff: Tariff, config: EngineConfig) -> Self {
        let ledger = Ledger::new(population.accounts(), |id| population.initial_balance(id));
        Self {
            ownership: Ownership::new(population.accounts(), Owns::All),
            population,
            tariff,
            ledger,
            sessions: Sessions::default(),
            stats: EngineStats::default(),
            config,
            ended: Ended::default(),
        }
    }

    /// Gives up every account before serving (`ownership.owns = "none"`): the same
    /// population, every opening at zero, nothing charged until accounts are imported.
    pub fn own_none(&mut self) {
        let accounts = self.population.accounts();
        for id in 0..accounts {
            let initial = self.population.initial_balance(id);
            self.ledger.adjust_opening(id, -initial);
        }
        self.ownership = Ownership::new(accounts, Owns::None);
    }

    /// Whether an ended session's (or event's) last answer is remembered.
    pub(crate) fn has_ended(&self, key: SessionKey) -> bool {
        self.ended.answers.contains_key(&key)
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Decides a CCR received at `now` (seconds since the engine started).
    pub fn credit_control(&mut self, now: u32, ccr: &Ccr<'_>) -> Decision {
        self.forget_ended(now);
        let key = SessionKey::of(ccr.session_id);
        if let Some(decision) = self.ownership_gate(key, ccr) {
            return decision;
        }
        match ccr.cc_request_type {
            CcRequestType::INITIAL_REQUEST => self.initial(now, key, ccr),
            CcRequestType::UPDATE_REQUEST => self.update(now, key, ccr, false),
            CcRequestType::TERMINATION_REQUEST => self.update(now, key, ccr, true),
            CcRequestType::EVENT_REQUEST => self.event(now, key, ccr),
            other => Decision::error(
                ResultCode::INVALID_AVP_VALUE,
                format!("CC-Request-Type {} is not 1 to 4", other.0),
                Some(dictionary::CC_REQUEST_TYPE.code),
            ),
        }
    }

    fn service_of(&self, ccr: &Ccr<'_>) -> Result<u8, Decision> {
        let rating_group = ccr
            .multiple_services_credit_control
            .first()
            .and_then(|m| m.rating_group)
            .or(ccr.service_identifier);
        let Some(rating_group) = rating_group else {
            return Err(Decision::error(
                ResultCode::MISSING_AVP,
                "no Rating-Group in Multiple-Services-Credit-Control".into(),
                Some(dictionary::RATING_GROUP.code),
            ));
        };
        self.tariff.service_index(rating_group).ok_or_else(|| {
            Decision::error(
                ResultCode::RATING_FAILED,
                format!("no tariff for Rating-Group {rating_group}"),
                None,
            )
        })
    }

    pub(crate) fn account_of(&self, ccr: &Ccr<'_>) -> Result<u32, Decision> {
        let Some(id) = ccr
            .subscription_ids
            .iter()
            .find(|s| s.subscription_id_type == SubscriptionIdType::END_USER_E164)
        else {
            return Err(Decision::error(
                ResultCode::MISSING_AVP,
                "no Subscription-Id of type END_USER_E164".into(),
                Some(dictionary::SUBSCRIPTION_ID.code),
            ));
        };
        id.subscription_id_data
            .parse::<u64>()
            .ok()
            .and_then(|msisdn| self.population.account_of_msisdn(msisdn))
            .ok_or_else(|| {
                Decision::error(
                    ResultCode::USER_UNKNOWN,
                    format!("unknown subscriber {}", id.subscription_id_data),
                    None,
                )
            })
    }

    /// Usage reported for the service, in counted units.
    fn used(&self, service: u8, ccr: &Ccr<'_>) -> u64 {
        let service = self.tariff.service(service);
        let in_mscc = ccr
            .multiple_services_credit_control
            .iter()
            .flat_map(|m| m.used_service_units.iter());
        in_mscc
            .chain(ccr.used_service_units.iter())
            .map(|u| service.units_of(u))
            .fold(0u64, u64::saturating_add)
    }

    /// Reserves one grant (or what is left) for a session; returns (money, units, final).
    fn reserve_grant(&mut self, account: u32, service: u8) -> (i64, u64, bool) {
        let service = self.tariff.service(service).clone();
        let want = service.cost(service.grant);
        let got = self.ledger.reserve(account, want);
        let units = service.units_for(got).min(service.grant);
        let needed = service.cost(units);
        self.ledger.release(account, got - needed);
        if units == 0 {
            return (0, 0, true);
        }
        (needed, units, units < service.grant)
    }

    fn granted(&self, service: u8, units: u64, final_units: bool) -> Decision {
        Decision {
            service: Some(service),
            granted: Some(units),
            final_units,
            validity_time: Some(self.config.validity_time),
            ..Decision::result(ResultCode::SUCCESS)
        }
    }

    fn initial(&mut self, now: u32, key: SessionKey, ccr: &Ccr<'_>) -> Decision {
        if let Some(slot) = self.sessions.find(key) {
            let last = self.sessions.get(slot).last();
            let service = self.sessions.get(slot).service;
            if last.request_number == ccr.cc_request_number {
                return self.replay(last, service);
            }
            return Decision::error(
                ResultCode::INVALID_AVP_VALUE,
                format!("session {} already exists", ccr.session_id),
                Some(dictionary::CC_REQUEST_TYPE.code),
            );
        }
        if let Some(decision) = self.replay_ended(key, ccr.cc_request_number) {
            return decision;
        }
        let service = match self.service_of(ccr) {
            Ok(service) => service,
            Err(decision) => return decision,
        };
        let account = match self.account_of(ccr) {
            Ok(account) => account,
            Err(decision) => return decision,
        };
        let (money, units, final_units) = self.reserve_grant(account, service);
        if units == 0 {
            let decision = Decision {
                service: Some(service),
                ..Decision::result(ResultCode::CREDIT_LIMIT_REACHED)
            };
            self.remember_ended(now, key, ccr.cc_request_number, &decision);
            return decision;
        }
        let head = self
            .ledger
            .get(account)
            .map_or(NO_SESSION, |a| a.first_session);
        let slot = self
            .sessions
            .insert(ccr.session_id, key, account, service, head);
        let entry = self.ledger.get_mut(account);
        entry.first_session = slot;
        entry.sessions += 1;
        let session = self.sessions.get_mut(slot);
        session.reserved = money;
        session.expires = now + 2 * self.config.validity_time;
        session.set_final_units(final_units);
        session.set_last(LastAnswer {
            request_number: ccr.cc_request_number,
            result: 0,
            granted: units as u32,
            final_units,
        });
        self.stats.sessions_started += 1;
        self.granted(service, units, final_units)
    }

    fn update(&mut self, now: u32, key: SessionKey, ccr: &Ccr<'_>, terminate: bool) -> Decision {
        let Some(slot) = self.sessions.find(key) else {
            return self
                .replay_ended(key, ccr.cc_request_number)
                .unwrap_or_else(|| {
                    Decision::error(
                        ResultCode::UNKNOWN_SESSION_ID,
                        format!("no session {}", ccr.session_id),
                        None,
                    )
                });
        };
        let session = self.sessions.get(slot);
        let (account, service, last) = (session.account, session.service, session.last());
        if ccr.cc_request_number == last.request_number {
            return self.replay(last, service);
        }
        if ccr.cc_request_number != last.request_number.wrapping_add(1) {
            self.stats.out_of_order += 1;
            return Decision::error(
                ResultCode::INVALID_AVP_VALUE,
                format!(
                    "CC-Request-Number {} out of order: expected {}",
                    ccr.cc_request_number,
                    last.request_number.wrapping_add(1)
                ),
                Some(dictionary::CC_REQUEST_NUMBER.code),
            );
        }
        // Charge the usage, release what is left of the old grant.
        let cost = self.tariff.service(service).cost(self.used(service, ccr));
        let held = self.sessions.get(slot).reserved;
        let left = self.ledger.debit(account, held, cost);
        self.ledger.release(account, left);
        self.sessions.get_mut(slot).reserved = 0;
        let debit = (cost > 0).then_some((account, cost));

        let was_final = self.sessions.get(slot).final_units();
        let mut decision = if terminate {
            self.stats.sessions_terminated += 1;
            Decision {
                service: Some(service),
                ..Decision::result(ResultCode::SUCCESS)
            }
        } else if was_final {
            self.stats.sessions_exhausted += 1;
            Decision {
                service: Some(service),
                ..Decision::result(ResultCode::CREDIT_LIMIT_REACHED)
            }
        } else {
            let (money, units, final_units) = self.reserve_grant(account, service);
            if units == 0 {
                self.stats.sessions_exhausted += 1;
                Decision {
                    service: Some(service),
                    ..Decision::result(ResultCode::CREDIT_LIMIT_REACHED)
                }
            } else {
                let session = self.sessions.get_mut(slot);
                session.reserved = money;
                session.expires = now + 2 * self.config.validity_time;
                session.set_final_units(final_units);
                self.granted(service, units, final_units)
            }
        };
        decision.debit = debit;
        if decision.result == ResultCode::SUCCESS && !terminate {
            let granted = decision.granted.unwrap_or(0) as u32;
            let last = LastAnswer {
                request_number: ccr.cc_request_number,
                result: 0,
                granted,
                final_units: decision.final_units,
            };
            self.sessions.get_mut(slot).set_last(last);
        } else {
            self.end(now, slot, key, ccr.cc_request_number, &decision);
        }
        if self.ledger.get(account).is_some_and(|a| a.balance <= 0) {
            decision.aborts = self.abort_others(account, slot);
        }
        decision
    }

    fn event(&mut self, now: u32, key: SessionKey, ccr: &Ccr<'_>) -> Decision {
        if let Some(decision) = self.replay_ended(key, ccr.cc_request_number) {
            return decision;
        }
        let service = match self.service_of(ccr) {
            Ok(service) => service,
            Err(decision) => return decision,
        };
        let account = match self.account_of(ccr) {
            Ok(account) => account,
            Err(decision) => return decision,
        };
        let tariff = self.tariff.service(service);
        let requested = ccr
            .multiple_services_credit_control
            .first()
            .and_then(|m| m.requested_service_unit.as_ref())
            .or(ccr.requested_service_unit.as_ref())
            .map(|u| tariff.units_of(u))
            .filter(|&u| u > 0);
        let units = requested.unwrap_or_else(|| self.used(service, ccr).max(1));
        let cost = tariff.cost(units);
        let decision = if self.ledger.get(account).is_some_and(|a| a.balance >= cost) {
            self.ledger.debit(account, 0, cost);
            Decision {
                debit: (cost > 0).then_some((account, cost)),
                ..self.granted(service, units, false)
            }
        } else {
            Decision {
                service: Some(service),
                ..Decision::result(ResultCode::CREDIT_LIMIT_REACHED)
            }
        };
        self.remember_ended(now, key, ccr.cc_request_number, &decision);
        decision
    }

    /// Ends a session: releases its hold, unthreads and removes it, remembers its answer.
    fn end(&mut self, now: u32, slot: u32, key: SessionKey, number: u32, decision: &Decision) {
        self.drop_session(slot);
        self.remember_ended(now, key, number, decision);
    }

    /// Releases a session's hold, unthreads it from its account and frees its slot.
    fn drop_session(&mut self, slot: u32) {
        let (account, held) = {
            let session = self.sessions.get(slot);
            (session.account, session.reserved)
        };
        self.ledger.release(account, held);
        let mut head = self
            .ledger
            .get(account)
            .map_or(NO_SESSION, |a| a.first_session);
        unthread(&mut self.sessions, &mut head, slot);
        let entry = self.ledger.get_mut(account);
        entry.first_session = head;
        entry.sessions -= 1;
        self.sessions.remove(slot);
    }

    /// The other live sessions of an empty account, each aborted once.
    fn abort_others(&mut self, account: u32, except: u32) -> Vec<String> {
        let mut aborts = Vec::new();
        let mut at = self
            .ledger
            .get(account)
            .map_or(NO_SESSION, |a| a.first_session);
        while at != NO_SESSION {
            let session = self.sessions.get(at);
            let next = session.next_in_account;
            if at != except && !session.abort_sent() {
                self.sessions.get_mut(at).mark_abort_sent();
                aborts.push(self.sessions.session_id(at));
                self.stats.aborts += 1;
            }
            at = next;
        }
        aborts
    }

    fn replay(&mut self, last: LastAnswer, service: u8) -> Decision {
        self.stats.retransmissions += 1;
        let result = ResultCode(RESULTS[usize::from(last.result)]);
        let mut decision = Decision {
            service: Some(service),
            retransmission: true,
            ..Decision::result(result)
        };
        if last.granted > 0 {
            decision.granted = Some(u64::from(last.granted));
            decision.final_units = last.final_units;
            decision.validity_time = Some(self.config.validity_time);
        }
        decision
    }

    fn replay_ended(&mut self, key: SessionKey, number: u32) -> Option<Decision> {
        let (last, service) = *self.ended.answers.get(&key)?;
        (last.request_number == number).then(|| self.replay(last, service))
    }

    fn remember_ended(&mut self, now: u32, key: SessionKey, number: u32, decision: &Decision) {
        let result = RESULTS
            .iter()
            .position(|&r| r == decision.result.0)
            .unwrap_or(0) as u8;
        let last = LastAnswer {
            request_number: number,
            result,
            granted: decision.granted.unwrap_or(0) as u32,
            final_units: decision.final_units,
        };
        self.ended
            .answers
            .insert(key, (last, decision.service.unwrap_or(0)));
        self.ended
            .order
            .push_back((now + self.config.ended_memory, key));
    }

    /// The remembered last answers of ended sessions: key, answer, service, and until when
    /// (for the hot upgrade's snapshot).
    pub(crate) fn ended_entries(
        &self,
    ) -> impl Iterator<Item = (SessionKey, LastAnswer, u8, u32)> + '_ {
        let mut seen = std::collections::HashSet::new();
        self.ended
            .order
            .iter()
            .rev()
            .filter_map(move |&(until, key)| {
                let &(last, service) = self.ended.answers.get(&key)?;
                seen.insert(key).then_some((key, last, service, until))
            })
    }

    /// Remembers an ended session's last answer until `until` (restoring a snapshot).
    pub(crate) fn restore_ended(
        &mut self,
        key: SessionKey,
        last: LastAnswer,
        service: u8,
        until: u32,
    ) {
        self.ended.answers.insert(key, (last, service));
        let at = self
            .ended
            .order
            .partition_point(|&(other, _)| other <= until);
        self.ended.order.insert(at, (until, key));
    }

    fn forget_ended(&mut self, now: u32) {
        while let Some(&(until, key)) = self.ended.order.front() {
            if until > now {
                break;
            }
            self.ended.order.pop_front();
            self.ended.answers.remove(&key);
        }
    }

    /// Expires sessions silent past their deadline: their holds go back to the balance.
    /// Returns how many expired.
    pub fn expire(&mut self, now: u32) -> usize {
        let mut expired = 0;
        let mut from = 0;
        loop {
            let (count, next) = self.expire_slots(now, from, u32::MAX);
            expired += count;
            match next {
                Some(next) => from = next,
                None => return expired,
            }
        }
    }

    /// Expires the sessions silent past their deadline among at most `count` slots from
    /// slot `from`; returns how many expired and where the next part starts (None: the
    /// table is done). The pdf's expiry task scans the table in parts, taking the engine
    /// lock for each: the whole table at once (56 MB at 1,000,000 sessions) held every
    /// request for as long, every few seconds.
    pub fn expire_slots(&mut self, now: u32, from: u32, count: u32) -> (usize, Option<u32>) {
        let to = from.saturating_add(count);
        let expired: Vec<u32> = self
            .sessions
            .live_slots_in(from, to)
            .filter(|(_, s)| s.expires <= now && self.ownership.owner(s.account) != Owner::Frozen)
            .map(|(i, _)| i)
            .collect();
        for &slot in &expired {
            self.drop_session(slot);
        }
        self.stats.sessions_expired += expired.len() as u64;
        let next = (to < self.sessions.slot_count()).then_some(to);
        (expired.len(), next)
    }

    /// The Session-Ids of an account's live sessions.
    pub fn account_sessions(&self, account: u32) -> Vec<String> {
        let mut ids = Vec::new();
        let mut at = self
            .ledger
            .get(account)
            .map_or(NO_SESSION, |a| a.first_session);
        while at != NO_SESSION {
            ids.push(self.sessions.session_id(at));
            at = self.sessions.get(at).next_in_account;
        }
        ids
    }

    /// Checks the books, and that each account's reservation is what its sessions hold.
    pub fn check_books(&self) -> Vec<String> {
        let mut problems: Vec<String> = self
            .ledger
            .check()
            .into_iter()
            .map(|i| format!("account {}: {} ({:?})", i.account, i.problem, i.state))
            .collect();
        if !self.ledger.totals_consistent() {
            problems.push("the running totals differ from the sums over the accounts".to_owned());
        }
        let mut held: HashMap<u32, i64> = HashMap::new();
        for (_, session) in self.sessions.live_slots() {
            *held.entry(session.account).or_default() += session.reserved;
        }
        for (id, account) in self.ledger.iter() {
            let sessions = held.get(&id).copied().unwrap_or(0);
            if account.reserved != sessions {
                problems.push(format!(
                    "account {id}: reserved {} but its sessions hold {sessions}",
                    account.reserved
                ));
            }
        }
        problems
    }
}

#[cfg(test)]
pub(crate) mod tests;
