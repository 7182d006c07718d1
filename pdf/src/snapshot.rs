//! The state a hot upgrade carries from the old process to the new one (DESIGN.md section
//! 5): accounts, live sessions with their reservations, the last answers kept for
//! retransmissions (the engine's, and the Diameter duplicate cache's most recent), the
//! counters, the Origin-State-Id and the End-to-End id sequence.
//!
//! On the wire: the magic `PDFSNAP\0`, the schema version (u32, little-endian), then the
//! body of that version. A new binary lists the versions it reads ([`READABLE`]); the old
//! one refuses to hand over to a binary that cannot read its [`SCHEMA`], and keeps serving.
//! Reading an older version converts it explicitly to the current one (the `code_change`
//! of this world: [`SnapshotV1`] into [`Snapshot`]); `tests/fixtures/snapshot-v*.bin` holds
//! one snapshot of every released schema, and the tests load each.
//!
//! - Schema 1 (postcard): every live session as a record with its Session-Id text. Simple,
//!   and slow for a million sessions (a string each way, a re-hash and an insert each).
//! - Schema 2: the session table travels as it is in memory (`crate::sessions::SessionTable`:
//!   fixed 56-byte slot records, the interned hosts), and the accounts as fixed 36-byte
//!   records; the body is `[u64 length][postcard meta][u64 length][account records][slot
//!   records]`, all little-endian. The new process rebuilds the index from the keys and threads the
//!   accounts' session lists again. Services travel by index with the sender's Rating-Group
//!   table, so a new version with a different tariff still finds each session's service.
//!
//! Only accounts whose state differs from their opening travel; the new process opens the
//! others from the population and then checks the invariants: each account's books and
//! reservations, the session count, and the money totals.

use protocol::peer::CachedAnswer;
use serde::{Deserialize, Serialize};

use crate::charging::{Engine, EngineConfig, EngineStats};
use crate::ledger::NO_SESSION;
use crate::population::Population;
use crate::sessions::{LastAnswer, SessionKey, SessionTable, Sessions, RESULTS};
use crate::tariff::Tariff;

/// The schema this binary writes.
pub const SCHEMA: u32 = 2;
/// The schemas this binary reads (converting the older ones).
pub const READABLE: &[u32] = &[1, 2];
/// The first bytes of every snapshot.
pub const MAGIC: &[u8; 8] = b"PDFSNAP\0";
/// The size of one account record in a schema-2 body.
const ACCOUNT_RECORD: usize = 36;
/// How much a snapshot writer gathers before each write.
pub(crate) const CHUNK: usize = 1 << 20;
/// At most this many of the Diameter duplicate cache's answers travel, the most recent: a
/// retransmission of an older CCR is answered the same by the engine from the session's
/// memory (charged once), so the rest would only cost pause time.
pub const DUPLICATES_CARRIED: usize = 4096;

/// The current snapshot (schema 2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The Origin-State-Id: a hot upgrade keeps it (nothing was lost).
    pub origin_state_id: u32,
    /// The next End-to-End id, so the new process never reuses one a peer may remember.
    pub end_to_end_next: u32,
    /// The number of accounts of the population (a check that both sides agree).
    pub accounts: u32,
    /// Money over all accounts: free, held, charged (the invariant the new process checks).
    pub totals: (i64, i64, i64),
    /// Accounts whose state differs from their opening.
    pub money: Vec<AccountRecord>,
    /// The sender's tariff: the Rating-Group of each service index.
    pub services: Vec<u32>,
    /// Live sessions in `sessions`.
    pub live_sessions: u32,
    /// The session table.
    pub sessions: SessionTable,
    /// Last answers of recently ended sessions and events.
    pub ended: Vec<EndedRecord>,
    /// The engine's counters.
    pub stats: EngineStats,
    /// The Diameter layer's most recent answers, for retransmissions.
    pub duplicates: Vec<CachedAnswer>,
}

/// Schema 2's meta part, as written (borrowed) ...
#[derive(Serialize)]
struct MetaOut<'a> {
    origin_state_id: u32,
    end_to_end_next: u32,
    accounts: u32,
    totals: (i64, i64, i64),
    services: &'a [u32],
    live_sessions: u32,
    hosts: &'a [String],
    texts: &'a [(u32, String)],
    ended: &'a [EndedRecord],
    stats: EngineStats,
    duplicates: &'a [CachedAnswer],
}

/// ... and as read (owned): the same fields in the same order.
#[derive(Deserialize)]
struct MetaIn {
    origin_state_id: u32,
    end_to_end_next: u32,
    accounts: u32,
    totals: (i64, i64, i64),
    services: Vec<u32>,
    live_sessions: u32,
    hosts: Vec<String>,
    texts: Vec<(u32, String)>,
    ended: Vec<EndedRecord>,
    stats: EngineStats,
    duplicates: Vec<CachedAnswer>,
}

/// Schema 1, kept to read (and convert) what a schema-1 binary sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotV1 {
    /// As in [`Snapshot`].
    pub origin_state_id: u32,
    /// As in [`Snapshot`].
    pub end_to_end_next: u32,
    /// As in [`Snapshot`].
    pub accounts: u32,
    /// As in [`Snapshot`].
    pub totals: (i64, i64, i64),
    /// As in [`Snapshot`].
    pub money: Vec<AccountRecord>,
    /// Live sessions, one record each.
    pub sessions: Vec<SessionRecord>,
    /// As in [`Snapshot`].
    pub ended: Vec<EndedRecord>,
    /// As in [`Snapshot`].
    pub stats: EngineStats,
    /// As in [`Snapshot`].
    pub duplicates: Vec<CachedAnswer>,
}

/// One account's money.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRecord {
    /// The account.
    pub id: u32,
    /// Its opening (after any migration in or out).
    pub initial: i64,
    /// Free money.
    pub balance: i64,
    /// Held by live sessions.
    pub reserved: i64,
    /// Charged.
    pub debited: i64,
}

/// One live session (schema 1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Its Session-Id.
    pub session_id: String,
    /// Its account.
    pub account: u32,
    /// The service's Rating-Group.
    pub rating_group: u32,
    /// Money it holds.
    pub reserved: i64,
    /// Seconds until it expires if silent.
    pub expires_in: u32,
    /// Whether its grant was the final one.
    pub final_units: bool,
    /// Whether an ASR was already decided for it.
    pub abort_sent: bool,
    /// How its last request was answered.
    pub last: LastAnswerRecord,
}

/// A last answer, as [`LastAnswer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastAnswerRecord {
    /// The CC-Request-Number answered.
    pub request_number: u32,
    /// The Result-Code's index in `crate::sessions::RESULTS`.
    pub result: u8,
    /// Units granted.
    pub granted: u32,
    /// Whether Final-Unit-Indication was sent.
    pub final_units: bool,
}

/// The last answer of an ended session or event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndedRecord {
    /// The Session-Id's 128-bit hash.
    pub key: [u64; 2],
    /// The answer.
    pub last: LastAnswerRecord,
    /// The service's Rating-Group.
    pub rating_group: u32,
    /// Seconds it is still remembered.
    pub remembered_for: u32,
}

impl From<LastAnswer> for LastAnswerRecord {
    fn from(last: LastAnswer) -> Self {
        Self {
            request_number: last.request_number,
            result: last.result,
            granted: last.granted,
            final_units: last.final_units,
        }
    }
}

impl From<LastAnswerRecord> for LastAnswer {
    fn from(last: LastAnswerRecord) -> Self {
        Self {
            request_number: last.request_number,
            result: last.result,
            granted: last.granted,
            final_units: last.final_units,
        }
    }
}

/// Why a snapshot cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnapshotError {
    /// Not a snapshot.
    #[error("not a pdf state snapshot (bad magic)")]
    NotASnapshot,
    /// A schema this binary cannot read.
    #[error("state schema {0} is not readable by this binary (it reads {READABLE:?})")]
    Unsupported(u32),
    /// The body does not decode.
    #[error("state schema {version}: unreadable body: {reason}")]
    Corrupt {
        /// The schema.
        version: u32,
        /// The decoder's message.
        reason: String,
    },
    /// The state decodes but breaks an invariant.
    #[error("state check failed: {0}")]
    Check(String),
}

/// Accounts whose state differs from their opening, as records.
fn changed_accounts(engine: &Engine) -> Vec<AccountRecord> {
    engine
        .ledger
        .iter()
        .filter(|(_, account)| {
            account.balance != account.initial || account.reserved != 0 || account.debited != 0
        })
        .map(|(id, account)| AccountRecord {
            id,
            initial: account.initial,
            balance: account.balance,
            reserved: account.reserved,
            debited: account.debited,
        })
        .collect()
}

/// The engine's remembered ended answers, as records.
fn ended_records(engine: &Engine, now: u32) -> Vec<EndedRecord> {
    engine
        .ended_entries()
        .map(|(key, last, service, until)| EndedRecord {
            key: key.parts(),
            last: last.into(),
            rating_group: engine.tariff.service(service).rating_group,
            remembered_for: until.saturating_sub(now),
        })
        .collect()
}

impl SnapshotV1 {
    /// Takes a schema-1 snapshot (for the fixtures and the conversion tests: this binary
    /// sends schema 2).
    pub fn take(engine: &Engine, now: u32, origin_state_id: u32, end_to_end_next: u32) -> Self {
        let sessions = engine
            .sessions
            .live_slots()
            .map(|(index, slot)| SessionRecord {
                session_id: engine.sessions.session_id(index),
                account: slot.account,
                rating_group: engine.tariff.service(slot.service).rating_group,
                reserved: slot.reserved,
                expires_in: slot.expires.saturating_sub(now),
                final_units: slot.final_units(),
                abort_sent: slot.abort_sent(),
                last: slot.last().into(),
            })
            .collect();
        Self {
            origin_state_id,
            end_to_end_next,
            accounts: engine.ledger.len() as u32,
            totals: engine.ledger.totals(),
            money: changed_accounts(engine),
            sessions,
            ended: ended_records(engine, now),
            stats: engine.stats,
            duplicates: Vec::new(),
        }
    }

    /// The bytes of a schema-1 snapshot: magic, 1, postcard body.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&1u32.to_le_bytes());
        postcard::to_io(self, &mut out).expect("writing to a Vec cannot fail");
        out
    }
}

/// The conversion of schema 1 into schema 2: the sessions are inserted into a table one by
/// one (their services numbered by Rating-Group as they come), which then travels as schema
/// 2's does. Refuses what schema 1 could not hold either (a Session-Id twice).
impl TryFrom<SnapshotV1> for Snapshot {
    type Error = SnapshotError;

    fn try_from(old: SnapshotV1) -> Result<Self, SnapshotError> {
        let mut services: Vec<u32> = Vec::new();
        let mut table = Sessions::default();
        let mut heads: std::collections::HashMap<u32, u32> = std::collections::HashMap::new();
        for record in &old.sessions {
            let service = match services.iter().position(|&g| g == record.rating_group) {
                Some(i) => i,
                None => {
                    services.push(record.rating_group);
                    services.len() - 1
                }
            };
            let service = u8::try_from(service)
                .map_err(|_| SnapshotError::Check("more than 255 services".into()))?;
            let key = SessionKey::of(&record.session_id);
            if table.find(key).is_some() {
                return Err(SnapshotError::Check(format!(
                    "session {} twice",
                    record.session_id
                )));
            }
            let head = heads.get(&record.account).copied().unwrap_or(NO_SESSION);
            let slot = table.insert(&record.session_id, key, record.account, service, head);
            heads.insert(record.account, slot);
            let session = table.get_mut(slot);
            session.reserved = record.reserved;
            session.expires = record.expires_in;
            session.set_final_units(record.final_units);
            if record.abort_sent {
                session.mark_abort_sent();
            }
            session.set_last(record.last.into());
        }
        Ok(Self {
            origin_state_id: old.origin_state_id,
            end_to_end_next: old.end_to_end_next,
            accounts: old.accounts,
            totals: old.totals,
            money: old.money,
            services,
            live_sessions: table.len() as u32,
            sessions: table.export(0),
            ended: old.ended,
            stats: old.stats,
            duplicates: old.duplicates,
        })
    }
}

impl Snapshot {
    /// Takes the state of a quiescent engine (no request in progress) at engine time `now`.
    pub fn take(
        engine: &Engine,
        now: u32,
        origin_state_id: u32,
        end_to_end_next: u32,
        duplicates: Vec<CachedAnswer>,
    ) -> Self {
        Self {
            sessions: engine.sessions.export(now),
            ..Self::take_without_sessions(engine, now, origin_state_id, end_to_end_next, duplicates)
        }
    }

    fn take_without_sessions(
        engine: &Engine,
        now: u32,
        origin_state_id: u32,
        end_to_end_next: u32,
        duplicates: Vec<CachedAnswer>,
    ) -> Self {
        Self {
            origin_state_id,
            end_to_end_next,
            accounts: engine.ledger.len() as u32,
            totals: engine.ledger.totals(),
            money: changed_accounts(engine),
            services: engine
                .tariff
                .services
                .iter()
                .map(|s| s.rating_group)
                .collect(),
            live_sessions: engine.sessions.len() as u32,
            sessions: SessionTable::default(),
            ended: ended_records(engine, now),
            stats: engine.stats,
            duplicates,
        }
    }

    /// The bytes: magic, schema, `[u64 length][postcard meta][u64 length][account
    /// records][slot records]`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_head(&self.sessions.hosts, &self.sessions.texts, &mut out)
            .expect("writing to a Vec cannot fail");
        out.extend_from_slice(&self.sessions.slots);
        out
    }

    /// Encodes the state of a quiescent engine straight into the snapshot's bytes, without
    /// the intermediate [`Snapshot`] (the same bytes as `take(..).encode()`, one copy fewer
    /// of the session table, during the pause).
    pub fn encode_engine(
        engine: &Engine,
        now: u32,
        origin_state_id: u32,
        end_to_end_next: u32,
        duplicates: Vec<CachedAnswer>,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        Self::write_engine(
            engine,
            now,
            origin_state_id,
            end_to_end_next,
            duplicates,
            &mut out,
        )
        .expect("writing to a Vec cannot fail");
        out
    }

    /// [`encode_engine`](Self::encode_engine) into a writer, a megabyte at a time (the hot
    /// upgrade writes into its memfd: no buffer the size of the state). Returns the bytes
    /// written.
    pub fn write_engine(
        engine: &Engine,
        now: u32,
        origin_state_id: u32,
        end_to_end_next: u32,
        duplicates: Vec<CachedAnswer>,
        out: &mut impl std::io::Write,
    ) -> std::io::Result<u64> {
        let head = Self {
            sessions: SessionTable::default(),
            ..Self::take_without_sessions(engine, now, origin_state_id, end_to_end_next, duplicates)
        };
        let (hosts, texts) = engine.sessions.export_ids();
        let written = head.write_head(&hosts, &texts, out)?;
        Ok(written + engine.sessions.write_slots(now, out)?)
    }

    /// Everything but the slot records; returns the bytes written.
    fn write_head(
        &self,
        hosts: &[String],
        texts: &[(u32, String)],
        out: &mut impl std::io::Write,
    ) -> std::io::Result<u64> {
        let meta = MetaOut {
            origin_state_id: self.origin_state_id,
            end_to_end_next: self.end_to_end_next,
            accounts: self.accounts,
            totals: self.totals,
            services: &self.services,
            live_sessions: self.live_sessions,
            hosts,
            texts,
            ended: &self.ended,
            stats: self.stats,
            duplicates: &self.duplicates,
        };
        let meta = postcard::to_stdvec(&meta).expect("a snapshot always serialises");
        let money = self.money.len() * ACCOUNT_RECORD;
        let mut chunk = Vec::with_capacity(CHUNK.min(28 + meta.len() + money));
        chunk.extend_from_slice(MAGIC);
        chunk.extend_from_slice(&SCHEMA.to_le_bytes());
        chunk.extend_from_slice(&(meta.len() as u64).to_le_bytes());
        chunk.extend_from_slice(&meta);
        chunk.extend_from_slice(&(money as u64).to_le_bytes());
        for account in &self.money {
            let mut record = [0u8; ACCOUNT_RECORD];
            record[..4].copy_from_slice(&account.id.to_le_bytes());
            for (i, value) in [
                account.initial,
                account.balance,
                account.reserved,
                account.debited,
            ]
            .into_iter()
            .enumerate()
            {
                record[4 + 8 * i..12 + 8 * i].copy_from_slice(&value.to_le_bytes());
            }
            chunk.extend_from_slice(&record);
            if chunk.len() >= CHUNK {
                out.write_all(&chunk)?;
                chunk.clear();
            }
        }
        out.write_all(&chunk)?;
        Ok((28 + meta.len() + money) as u64)
    }

    /// The schema version of encoded bytes.
    pub fn version_of(bytes: &[u8]) -> Result<u32, SnapshotError> {
        if bytes.len() < 12 || &bytes[..8] != MAGIC {
            return Err(SnapshotError::NotASnapshot);
        }
        Ok(u32::from_le_bytes([
            bytes[8], bytes[9], bytes[10], bytes[11],
        ]))
    }

    /// Reads a snapshot of any readable schema, converting it to the current one.
    pub fn decode(bytes: &[u8]) -> Result<Self, SnapshotError> {
        Self::decode_bytes(bytes::Bytes::copy_from_slice(bytes))
    }

    /// [`decode`](Self::decode) without copying the session table: it stays a slice of
    /// `bytes`.
    pub fn decode_bytes(bytes: bytes::Bytes) -> Result<Self, SnapshotError> {
        let version = Self::version_of(&bytes)?;
        let body = &bytes[12..];
        let corrupt = |reason: String| SnapshotError::Corrupt { version, reason };
        match version {
            1 => {
                let old =
                    postcard::from_bytes::<SnapshotV1>(body).map_err(|e| corrupt(e.to_string()))?;
                Snapshot::try_from(old)
            }
            2 => {
                // `[u64 length][part]`, twice: the meta, then the account records.
                let part = |rest: &'_ [u8], what: &str| -> Result<(usize, usize), SnapshotError> {
                    let length = rest
                        .get(..8)
                        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
                        .ok_or_else(|| corrupt(format!("no {what} length")))?;
                    usize::try_from(length)
                        .ok()
                        .filter(|&l| l <= rest.len() - 8)
                        .map(|l| (8, 8 + l))
                        .ok_or_else(|| corrupt(format!("{what} length {length} beyond the end")))
                };
                let (from, to) = part(body, "meta")?;
                let meta: MetaIn =
                    postcard::from_bytes(&body[from..to]).map_err(|e| corrupt(e.to_string()))?;
                let rest = &body[to..];
                let (from, to) = part(rest, "accounts")?;
                let accounts = &rest[from..to];
                if !accounts.len().is_multiple_of(ACCOUNT_RECORD) {
                    return Err(corrupt(format!(
                        "{} bytes of accounts: not whole {ACCOUNT_RECORD}-byte records",
                        accounts.len()
                    )));
                }
                let money = accounts
                    .chunks_exact(ACCOUNT_RECORD)
                    .map(|r| {
                        let i64_at =
                            |at: usize| i64::from_le_bytes(r[at..at + 8].try_into().expect("8"));
                        AccountRecord {
                            id: u32::from_le_bytes(r[..4].try_into().expect("4")),
                            initial: i64_at(4),
                            balance: i64_at(12),
                            reserved: i64_at(20),
                            debited: i64_at(28),
                        }
                    })
                    .collect();
                let slots_at = bytes.len() - (rest.len() - to);
                Ok(Self {
                    origin_state_id: meta.origin_state_id,
                    end_to_end_next: meta.end_to_end_next,
                    accounts: meta.accounts,
                    totals: meta.totals,
                    money,
                    services: meta.services,
                    live_sessions: meta.live_sessions,
                    sessions: SessionTable {
                        slots: bytes.slice(slots_at..),
                        hosts: meta.hosts,
                        texts: meta.texts,
                    },
                    ended: meta.ended,
                    stats: meta.stats,
                    duplicates: meta.duplicates,
                })
            }
            other => Err(SnapshotError::Unsupported(other)),
        }
    }

    /// Builds the engine this snapshot describes over `population` and `tariff` (the new
    /// version's), at engine time `now`, and checks it: the same number of accounts, every
    /// session's service priced here, each account's books and reservations (equal to its
    /// sessions'), the session count, and the money totals as the old process reported them.
    pub fn restore(
        self,
        population: Population,
        tariff: Tariff,
        config: EngineConfig,
        now: u32,
    ) -> Result<Engine, SnapshotError> {
        self.restore_into(Engine::new(population, tariff, config), now)
    }

    /// [`restore`](Self::restore) into a fresh engine built beforehand (`Engine::new`: the
    /// new process builds it before the pause, from its own configuration).
    pub fn restore_into(self, fresh: Engine, now: u32) -> Result<Engine, SnapshotError> {
        let check = SnapshotError::Check;
        if fresh.ledger.len() != self.accounts as usize || !fresh.sessions.is_empty() {
            return Err(check(format!(
                "the snapshot has {} accounts, this population {}",
                self.accounts,
                fresh.ledger.len()
            )));
        }
        let mut engine = fresh;
        for record in &self.money {
            if record.id >= self.accounts {
                return Err(check(format!("account {} out of range", record.id)));
            }
            // Checked here, so that no later sum can overflow on a corrupt snapshot.
            let whole = record
                .balance
                .checked_add(record.reserved)
                .and_then(|sum| sum.checked_add(record.debited));
            if whole != Some(record.initial) || record.reserved < 0 || record.debited < 0 {
                return Err(check(format!(
                    "account {}: books do not balance",
                    record.id
                )));
            }
            engine.ledger.restore(
                record.id,
                record.initial,
                record.balance,
                record.reserved,
                record.debited,
            );
        }
        let services: Vec<Option<u8>> = self
            .services
            .iter()
            .map(|&group| engine.tariff.service_index(group))
            .collect();
        let shell = std::mem::take(&mut engine.sessions);
        let sessions = Sessions::import_into(shell, self.sessions, now, |index| {
            services.get(usize::from(index)).copied().flatten()
        })
        .map_err(|e| check(format!("sessions: {e}")))?;
        if sessions.len() != self.live_sessions as usize {
            return Err(check(format!(
                "{} sessions restored of {}",
                sessions.len(),
                self.live_sessions
            )));
        }
        engine.sessions = sessions;
        // Thread each account's sessions again, and add up what they hold.
        let mut held = vec![0i64; self.accounts as usize];
        for index in 0..engine.sessions.slot_count() {
            if !engine.sessions.is_live(index) {
                continue;
            }
            let (account, reserved) = {
                let slot = engine.sessions.get(index);
                (slot.account, slot.reserved)
            };
            let Some(total) = held.get_mut(account as usize) else {
                return Err(check(format!(
                    "a session of account {account}, out of range"
                )));
            };
            *total = total
                .checked_add(reserved)
                .ok_or_else(|| check(format!("account {account}: reservations overflow")))?;
            let entry = engine.ledger.get_mut(account);
            let head = entry.first_session;
            entry.first_session = index;
            entry.sessions += 1;
            engine.sessions.get_mut(index).next_in_account = head;
        }
        for (id, account) in engine.ledger.iter() {
            if account.reserved != held[id as usize] {
                return Err(check(format!(
                    "account {id} holds {} but its sessions hold {}",
                    account.reserved, held[id as usize]
                )));
            }
        }
        for record in &self.ended {
            if usize::from(record.last.result) >= RESULTS.len() {
                return Err(check(format!(
                    "an ended session's answer has result index {}",
                    record.last.result
                )));
            }
            let service = engine
                .tariff
                .service_index(record.rating_group)
                .unwrap_or(0);
            engine.restore_ended(
                SessionKey::from_parts(record.key),
                record.last.into(),
                service,
                now.saturating_add(record.remembered_for),
            );
        }
        engine.stats = self.stats;
        if engine.ledger.totals() != self.totals {
            return Err(check(format!(
                "money totals (free, held, charged) {:?} after restoring, {:?} before",
                engine.ledger.totals(),
                self.totals
            )));
        }
        Ok(engine)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    use crate::charging::tests::ccr;
    use protocol::dictionary::CcRequestType;
    const INITIAL_REQUEST: CcRequestType = CcRequestType::INITIAL_REQUEST;
    const UPDATE_REQUEST: CcRequestType = CcRequestType::UPDATE_REQUEST;
    const TERMINATION_REQUEST: CcRequestType = CcRequestType::TERMINATION_REQUEST;

    fn config() -> Config {
        Config::default()
    }

    /// An engine of the default configuration with sessions, some charged, some ended, by
    /// running real CCRs through it.
    fn engine_with_sessions() -> Engine {
        let config = config();
        let population = config.population().expect("population");
        let crate::population::Population::Generated(spec) = &population else {
            panic!("the default population is generated");
        };
        let msisdns: Vec<String> = (0..40).map(|i| spec.msisdn(i).to_string()).collect();
        let mut engine = Engine::new(population, config.tariff.clone(), config.engine());
        for (i, msisdn) in msisdns.iter().enumerate() {
            let session = format!("gw.example.net;1;{i}");
            engine.credit_control(1, &ccr(&session, msisdn, INITIAL_REQUEST, 0, None));
            let used = Some(10 + i as u32);
            engine.credit_control(2, &ccr(&session, msisdn, UPDATE_REQUEST, 1, used));
            if i % 4 == 0 {
                engine.credit_control(3, &ccr(&session, msisdn, TERMINATION_REQUEST, 2, Some(5)));
            }
        }
        assert!(engine.check_books().is_empty());
        engine
    }

    fn restore(snapshot: Snapshot, now: u32) -> Result<Engine, SnapshotError> {
        let config = config();
        snapshot.restore(
            config.population().expect("population"),
            config.tariff.clone(),
            config.engine(),
            now,
        )
    }

    /// The same money, the same sessions (each with its account, reservation, expiry and
    /// last answer), the same remembered answers.
    fn same_state(a: &Engine, b: &Engine, expiry_shift: i64) {
        assert_eq!(a.ledger.totals(), b.ledger.totals());
        for (id, account) in a.ledger.iter() {
            let other = b.ledger.get(id).expect("account");
            assert_eq!(
                (
                    account.balance,
                    account.reserved,
                    account.debited,
                    account.sessions
                ),
                (other.balance, other.reserved, other.debited, other.sessions),
                "account {id}"
            );
        }
        assert_eq!(a.sessions.len(), b.sessions.len());
        for (index, slot) in a.sessions.live_slots() {
            let id = a.sessions.session_id(index);
            let there = b.sessions.find(SessionKey::of(&id)).expect("session");
            let other = b.sessions.get(there);
            assert_eq!(b.sessions.session_id(there), id);
            assert_eq!(
                (slot.account, slot.reserved, slot.last(), slot.final_units()),
                (
                    other.account,
                    other.reserved,
                    other.last(),
                    other.final_units()
                ),
                "{id}"
            );
            assert_eq!(
                i64::from(other.expires) - i64::from(slot.expires),
                expiry_shift
            );
        }
        let ended = |e: &Engine| {
            let mut all: Vec<_> = e
                .ended_entries()
                .map(|(k, l, s, _)| (k.parts(), l, s))
                .collect();
            all.sort_by_key(|&(k, ..)| k);
            all
        };
        assert_eq!(ended(a), ended(b));
        assert!(b.check_books().is_empty(), "{:?}", b.check_books());
    }

    #[test]
    fn a_snapshot_round_trips_and_restores_the_same_money_and_sessions() {
        let engine = engine_with_sessions();
        let snapshot = Snapshot::take(&engine, 100, 42, 7, Vec::new());
        assert_eq!(snapshot.live_sessions as usize, engine.sessions.len());
        let bytes = snapshot.encode();
        assert_eq!(
            bytes,
            Snapshot::encode_engine(&engine, 100, 42, 7, Vec::new())
        );
        assert_eq!(Snapshot::version_of(&bytes), Ok(SCHEMA));
        let decoded = Snapshot::decode(&bytes).expect("decodes");
        assert_eq!(decoded, snapshot);
        let restored = restore(decoded, 5).expect("restores");
        same_state(&engine, &restored, 5 - 100);
    }

    /// Schema 1 (a record per session) converts to schema 2 and restores the same state.
    #[test]
    fn a_schema_1_snapshot_converts_to_the_current_schema() {
        let engine = engine_with_sessions();
        let old = SnapshotV1::take(&engine, 100, 42, 7);
        let bytes = old.encode();
        assert_eq!(Snapshot::version_of(&bytes), Ok(1));
        let converted = Snapshot::decode(&bytes).expect("converts");
        assert_eq!(converted.origin_state_id, 42);
        assert_eq!(converted.live_sessions as usize, engine.sessions.len());
        let restored = restore(converted, 5).expect("restores");
        same_state(&engine, &restored, 5 - 100);
    }

    #[test]
    fn unreadable_snapshots_are_refused_with_the_reason() {
        assert_eq!(
            Snapshot::decode(b"nonsense"),
            Err(SnapshotError::NotASnapshot)
        );
        let mut bytes = Snapshot::take(&engine_with_sessions(), 0, 1, 1, Vec::new()).encode();
        bytes[8] = 9;
        assert_eq!(Snapshot::decode(&bytes), Err(SnapshotError::Unsupported(9)));
        for version in [1u8, 2] {
            let mut cut = bytes.clone();
            cut[8] = version;
            cut.truncate(20);
            assert!(
                matches!(
                    Snapshot::decode(&cut),
                    Err(SnapshotError::Corrupt { version: v, .. }) if v == u32::from(version)
                ),
                "{:?}",
                Snapshot::decode(&cut)
            );
        }
        // Slot records cut short: refused when restoring, with the reason.
        let mut short = Snapshot::take(&engine_with_sessions(), 0, 1, 1, Vec::new());
        short.sessions.slots = short.sessions.slots.slice(..short.sessions.slots.len() - 1);
        let error = restore(short, 0).expect_err("not whole records");
        assert!(error.to_string().contains("whole"), "{error}");
    }

    #[test]
    fn a_snapshot_that_breaks_an_invariant_is_refused() {
        let mut snapshot = Snapshot::take(&engine_with_sessions(), 0, 1, 1, Vec::new());
        snapshot.totals.2 += 1;
        let error = restore(snapshot, 0).expect_err("the totals differ");
        assert!(error.to_string().contains("money totals"), "{error}");
        let mut snapshot = Snapshot::take(&engine_with_sessions(), 0, 1, 1, Vec::new());
        let held = snapshot
            .money
            .iter_mut()
            .find(|a| a.reserved > 0)
            .expect("held");
        held.reserved += 1;
        held.balance -= 1;
        let error = restore(snapshot, 0).expect_err("reservations differ");
        assert!(error.to_string().contains("its sessions hold"), "{error}");
    }

    /// Every released schema's fixture loads, converts and restores with this binary.
    #[test]
    fn every_released_schema_fixture_loads() {
        for version in READABLE {
            let path = format!(
                "{}/tests/fixtures/snapshot-v{version}.bin",
                env!("CARGO_MANIFEST_DIR")
            );
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert_eq!(Snapshot::version_of(&bytes), Ok(*version), "{path}");
            let snapshot = Snapshot::decode(&bytes).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert!(snapshot.live_sessions > 0, "{path} has sessions");
            restore(snapshot, 0).unwrap_or_else(|e| panic!("{path}: {e}"));
        }
    }

    /// Writes the current schema's fixture. Run it once per released schema, never to
    /// overwrite an old one (it refuses).
    #[test]
    #[ignore = "writes the fixture: cargo test -p pdf --lib write_fixture -- --ignored"]
    fn write_fixture() {
        let path = format!(
            "{}/tests/fixtures/snapshot-v{SCHEMA}.bin",
            env!("CARGO_MANIFEST_DIR")
        );
        assert!(
            !std::path::Path::new(&path).exists(),
            "{path} exists: a released schema's fixture is never rewritten"
        );
        let snapshot = Snapshot::take(&engine_with_sessions(), 0, 1, 1, Vec::new());
        std::fs::write(&path, snapshot.encode()).expect("write the fixture");
    }
}

#[cfg(test)]
mod timing {
    use super::*;
    use crate::charging::tests::ccr;
    use crate::config::Config;
    use protocol::dictionary::CcRequestType;
    use std::time::Instant;
    const INITIAL_REQUEST: CcRequestType = CcRequestType::INITIAL_REQUEST;

    #[test]
    #[ignore = "a timing probe: cargo test --release -p pdf --lib timing -- --ignored --nocapture"]
    fn phases_at_a_million() {
        let n = 1_000_000u32;
        let text = format!("[population]\nsubscribers = {n}\nshared_share = 0.0\nbalance = {{ dist = \"constant\", value = 1000000000 }}\n");
        let dir = std::env::temp_dir().join("pdf-timing.toml");
        std::fs::write(&dir, text).unwrap();
        let config = Config::load(&dir).unwrap();
        let population = config.population().unwrap();
        let mut engine = Engine::new(population, config.tariff.clone(), config.engine());
        for i in 0..n {
            let msisdn = (491_700_000_000u64 + u64::from(i)).to_string();
            let session = format!("gw.example.net;1700000000;{i}");
            engine.credit_control(1, &ccr(&session, &msisdn, INITIAL_REQUEST, 0, None));
        }
        let t = Instant::now();
        let bytes = Snapshot::encode_engine(&engine, 1, 1, 1, Vec::new());
        eprintln!("take and encode {:?} ({} bytes)", t.elapsed(), bytes.len());
        let bytes = bytes::Bytes::from(bytes);
        let t = Instant::now();
        let decoded = Snapshot::decode_bytes(bytes).unwrap();
        eprintln!("decode {:?}", t.elapsed());
        let t = Instant::now();
        let population = config.population().unwrap();
        let restored = decoded
            .restore(population, config.tariff.clone(), config.engine(), 0)
            .unwrap();
        eprintln!("restore {:?}", t.elapsed());
        assert_eq!(restored.sessions.len(), n as usize);
    }
}
