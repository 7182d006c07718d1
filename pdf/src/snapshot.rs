//! The state a hot upgrade carries from the old process to the new one (DESIGN.md section
//! 5): accounts, live sessions with their reservations, the last answers kept for
//! retransmissions (the engine's and the Diameter duplicate cache's), the counters, the
//! Origin-State-Id and the End-to-End id sequence.
//!
//! On the wire: the magic `PDFSNAP\0`, the schema version (u32, little-endian), then the
//! body of that version (postcard). A new binary lists the versions it reads
//! ([`READABLE`]); the old one refuses to hand over to a binary that cannot read its
//! [`SCHEMA`], and keeps serving. Reading an older version converts it explicitly to the
//! current one (the `code_change` of this world); `tests/fixtures/snapshot-v*.bin` holds
//! one snapshot of every released schema, and the tests load each.
//!
//! Sessions name their service by Rating-Group, not by tariff index, so a new version with
//! a different tariff still finds each session's service. Only accounts whose state differs
//! from their opening travel; the new process opens the others from the population and
//! then checks the invariants: the session count, and the money totals.

use protocol::peer::CachedAnswer;
use serde::{Deserialize, Serialize};

use crate::charging::{Engine, EngineConfig, EngineStats};
use crate::ledger::NO_SESSION;
use crate::population::Population;
use crate::sessions::{LastAnswer, SessionKey};
use crate::tariff::Tariff;

/// The schema this binary writes.
pub const SCHEMA: u32 = 1;
/// The schemas this binary reads (converting the older ones).
pub const READABLE: &[u32] = &[1];
/// The first bytes of every snapshot.
pub const MAGIC: &[u8; 8] = b"PDFSNAP\0";

/// The current snapshot (schema 1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Live sessions.
    pub sessions: Vec<SessionRecord>,
    /// Last answers of recently ended sessions and events.
    pub ended: Vec<EndedRecord>,
    /// The engine's counters.
    pub stats: EngineStats,
    /// Answers the Diameter layer remembers for retransmissions.
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

/// One live session.
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

impl Snapshot {
    /// Takes the state of a quiescent engine (no request in progress) at engine time `now`.
    pub fn take(
        engine: &Engine,
        now: u32,
        origin_state_id: u32,
        end_to_end_next: u32,
        duplicates: Vec<CachedAnswer>,
    ) -> Self {
        let population = &engine.population;
        let money = engine
            .ledger
            .iter()
            .filter(|(id, account)| {
                let opening = population.initial_balance(*id);
                account.initial != opening
                    || account.balance != opening
                    || account.reserved != 0
                    || account.debited != 0
            })
            .map(|(id, account)| AccountRecord {
                id,
                initial: account.initial,
                balance: account.balance,
                reserved: account.reserved,
                debited: account.debited,
            })
            .collect();
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
        let ended = engine
            .ended_entries()
            .map(|(key, last, service, until)| EndedRecord {
                key: key.parts(),
                last: last.into(),
                rating_group: engine.tariff.service(service).rating_group,
                remembered_for: until.saturating_sub(now),
            })
            .collect();
        Self {
            origin_state_id,
            end_to_end_next,
            accounts: engine.ledger.len() as u32,
            totals: engine.ledger.totals(),
            money,
            sessions,
            ended,
            stats: engine.stats,
            duplicates,
        }
    }

    /// The bytes: magic, schema, body.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.sessions.len() * 64);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&SCHEMA.to_le_bytes());
        postcard::to_io(self, &mut out).expect("writing to a Vec cannot fail");
        out
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
        let version = Self::version_of(bytes)?;
        let body = &bytes[12..];
        let corrupt = |error: postcard::Error| SnapshotError::Corrupt {
            version,
            reason: error.to_string(),
        };
        match version {
            1 => postcard::from_bytes::<Snapshot>(body).map_err(corrupt),
            // A future schema 2 reads `1` as `SnapshotV1` and converts it here, field by
            // field: never by reinterpreting bytes.
            other => Err(SnapshotError::Unsupported(other)),
        }
    }

    /// Builds the engine this snapshot describes over `population` and `tariff` (the new
    /// version's), at engine time `now`, and checks it: the same number of accounts, every
    /// session's service known, every account's reservations equal to its sessions', the
    /// session count and the money totals as the old process reported them, and the books.
    pub fn restore(
        &self,
        population: Population,
        tariff: Tariff,
        config: EngineConfig,
        now: u32,
    ) -> Result<Engine, SnapshotError> {
        let check = |message: String| SnapshotError::Check(message);
        if population.accounts() != self.accounts {
            return Err(check(format!(
                "the snapshot has {} accounts, this population {}",
                self.accounts,
                population.accounts()
            )));
        }
        let mut engine = Engine::new(population, tariff, config);
        let mut sums = (0i64, 0i64, 0i64);
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
            sums = match (
                sums.0.checked_add(record.balance),
                sums.1.checked_add(record.reserved),
                sums.2.checked_add(record.debited),
            ) {
                (Some(b), Some(r), Some(d)) => (b, r, d),
                _ => return Err(check("money totals overflow".to_owned())),
            };
            engine.ledger.restore(
                record.id,
                record.initial,
                record.balance,
                record.reserved,
                record.debited,
            );
        }
        let mut held = vec![0i64; 0];
        held.resize(self.accounts as usize, 0);
        engine.sessions.reserve(self.sessions.len());
        for record in &self.sessions {
            let Some(service) = engine.tariff.service_index(record.rating_group) else {
                return Err(check(format!(
                    "session {} uses Rating-Group {}, which this tariff does not price",
                    record.session_id, record.rating_group
                )));
            };
            let key = SessionKey::of(&record.session_id);
            if engine.sessions.find(key).is_some() {
                return Err(check(format!("session {} twice", record.session_id)));
            }
            let Some(account) = engine.ledger.get(record.account) else {
                return Err(check(format!("account {} out of range", record.account)));
            };
            let head = account.first_session;
            let slot =
                engine
                    .sessions
                    .insert(&record.session_id, key, record.account, service, head);
            let entry = engine.ledger.get_mut(record.account);
            entry.first_session = slot;
            entry.sessions += 1;
            let session = engine.sessions.get_mut(slot);
            session.reserved = record.reserved;
            session.expires = now.saturating_add(record.expires_in);
            session.set_final_units(record.final_units);
            if record.abort_sent {
                session.mark_abort_sent();
            }
            session.set_last(record.last.into());
            let total = &mut held[record.account as usize];
            *total = total.checked_add(record.reserved).ok_or_else(|| {
                check(format!("account {}: reservations overflow", record.account))
            })?;
        }
        for record in &self.ended {
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

        if engine.sessions.len() != self.sessions.len() {
            return Err(check(format!(
                "{} sessions restored of {}",
                engine.sessions.len(),
                self.sessions.len()
            )));
        }
        for (id, account) in engine.ledger.iter() {
            if account.reserved != held[id as usize] {
                return Err(check(format!(
                    "account {id} holds {} but its sessions hold {}",
                    account.reserved, held[id as usize]
                )));
            }
            if account.first_session == NO_SESSION && account.sessions != 0 {
                return Err(check(format!("account {id} lost its sessions")));
            }
        }
        if engine.ledger.totals() != self.totals {
            return Err(check(format!(
                "money totals (free, held, charged) {:?} after restoring, {:?} before",
                engine.ledger.totals(),
                self.totals
            )));
        }
        let broken = engine.check_books();
        if !broken.is_empty() {
            return Err(check(format!(
                "books do not balance: {}",
                broken.join("; ")
            )));
        }
        Ok(engine)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    use protocol::dictionary::{CcRequestType, SubscriptionIdType};
    use protocol::messages::{Ccr, MultipleServicesCreditControl, ServiceUnit, SubscriptionId};
    use smallvec::smallvec;

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
        let ccr =
            |session: &'static str, msisdn: &'static str, kind, number, used: Option<u32>| Ccr {
                session_id: session,
                origin_host: "gw.example.net",
                origin_realm: "example.net",
                destination_realm: "example.net",
                auth_application_id: 4,
                service_context_id: "32260@3gpp.org",
                cc_request_type: kind,
                cc_request_number: number,
                subscription_ids: smallvec![SubscriptionId {
                    subscription_id_type: SubscriptionIdType::END_USER_E164,
                    subscription_id_data: msisdn,
                }],
                multiple_services_credit_control: smallvec![MultipleServicesCreditControl {
                    used_service_units: used
                        .map(|s| smallvec![ServiceUnit {
                            cc_time: Some(s),
                            ..Default::default()
                        }])
                        .unwrap_or_default(),
                    rating_group: Some(1),
                    ..Default::default()
                }],
                ..Default::default()
            };
        for (i, msisdn) in msisdns.into_iter().enumerate() {
            // Leaked: a test's handful of short strings, to borrow them as the codec does.
            let msisdn: &'static str = Box::leak(msisdn.into_boxed_str());
            let session: &'static str = Box::leak(format!("gw.example.net;1;{i}").into_boxed_str());
            engine.credit_control(
                1,
                &ccr(session, msisdn, CcRequestType::INITIAL_REQUEST, 0, None),
            );
            engine.credit_control(
                2,
                &ccr(
                    session,
                    msisdn,
                    CcRequestType::UPDATE_REQUEST,
                    1,
                    Some(10 + i as u32),
                ),
            );
            if i % 4 == 0 {
                engine.credit_control(
                    3,
                    &ccr(
                        session,
                        msisdn,
                        CcRequestType::TERMINATION_REQUEST,
                        2,
                        Some(5),
                    ),
                );
            }
        }
        assert!(engine.check_books().is_empty());
        engine
    }

    #[test]
    fn a_snapshot_round_trips_and_restores_the_same_money_and_sessions() {
        let engine = engine_with_sessions();
        let snapshot = Snapshot::take(&engine, 100, 42, 7, Vec::new());
        assert!(!snapshot.sessions.is_empty());
        let bytes = snapshot.encode();
        assert_eq!(Snapshot::version_of(&bytes), Ok(SCHEMA));
        let decoded = Snapshot::decode(&bytes).expect("decodes");
        assert_eq!(decoded, snapshot);
        let config = config();
        let restored = decoded
            .restore(
                config.population().expect("population"),
                config.tariff.clone(),
                config.engine(),
                5,
            )
            .expect("restores");
        assert_eq!(restored.sessions.len(), engine.sessions.len());
        assert_eq!(restored.ledger.totals(), engine.ledger.totals());
        for (id, account) in engine.ledger.iter() {
            let other = restored.ledger.get(id).expect("account");
            assert_eq!(
                (account.balance, account.reserved, account.debited),
                (other.balance, other.reserved, other.debited),
                "account {id}"
            );
        }
        // Taking it again from the restored engine gives the same snapshot, clock aside.
        let again = Snapshot::take(&restored, 5, 42, 7, Vec::new());
        let sorted = |mut s: Snapshot| {
            s.sessions.sort_by(|a, b| a.session_id.cmp(&b.session_id));
            s.ended.sort_by_key(|e| e.key);
            s
        };
        assert_eq!(sorted(again), sorted(snapshot));
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
        bytes[8] = 1;
        bytes.truncate(20);
        assert!(matches!(
            Snapshot::decode(&bytes),
            Err(SnapshotError::Corrupt { version: 1, .. })
        ));
    }

    #[test]
    fn a_snapshot_that_breaks_an_invariant_is_refused() {
        let mut snapshot = Snapshot::take(&engine_with_sessions(), 0, 1, 1, Vec::new());
        snapshot.totals.2 += 1;
        let config = config();
        let error = snapshot
            .restore(
                config.population().expect("population"),
                config.tariff.clone(),
                config.engine(),
                0,
            )
            .expect_err("the totals differ");
        assert!(error.to_string().contains("money totals"), "{error}");
    }

    /// Every released schema's fixture loads and restores with this binary.
    #[test]
    fn every_released_schema_fixture_loads() {
        let config = config();
        for version in READABLE {
            let path = format!(
                "{}/tests/fixtures/snapshot-v{version}.bin",
                env!("CARGO_MANIFEST_DIR")
            );
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert_eq!(Snapshot::version_of(&bytes), Ok(*version), "{path}");
            let snapshot = Snapshot::decode(&bytes).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert!(!snapshot.sessions.is_empty(), "{path} has sessions");
            snapshot
                .restore(
                    config.population().expect("population"),
                    config.tariff.clone(),
                    config.engine(),
                    0,
                )
                .unwrap_or_else(|e| panic!("{path}: {e}"));
        }
    }

    /// Writes the current schema's fixture: `PDF_WRITE_SNAPSHOT_FIXTURE=1 cargo test -p pdf
    /// write_fixture`. Run it once per released schema, never to overwrite an old one.
    #[test]
    fn write_fixture() {
        if std::env::var_os("PDF_WRITE_SNAPSHOT_FIXTURE").is_none() {
            return;
        }
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
