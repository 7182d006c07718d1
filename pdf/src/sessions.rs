//! The Credit-Control session table, compact enough for a million sessions in well under
//! 100 bytes each.
//!
//! Sessions live in a slab (`Vec<Slot>`, 56 bytes a slot) indexed by a `hashbrown`
//! `HashTable<u32>` (5 bytes a bucket). A Session-Id is looked up by its 128-bit XXH3 hash
//! (a collision among a million sessions has odds of about 10^-27). To send an ASR the PDF
//! needs the Session-Id text back: RFC 6733 section 8.8's `<DiameterIdentity>;<high
//! 32 bits>;<low 32 bits>` form is stored as an interned host and two integers; any other
//! form is kept as text in a side map. Each account threads its live sessions through the
//! slots (`next_in_account`) so that a shared account's sessions can be aborted together.

use hashbrown::HashTable;
use protocol::session_id::CompactIds;

use crate::ledger::NO_SESSION;

/// The 128-bit hash of a Session-Id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SessionKey([u64; 2]);

impl SessionKey {
    /// The key of a Session-Id.
    pub fn of(session_id: &str) -> Self {
        let hash = xxhash_rust::xxh3::xxh3_128(session_id.as_bytes());
        Self([hash as u64, (hash >> 64) as u64])
    }

    /// The hash's two halves (to carry a key in a snapshot).
    pub fn parts(self) -> [u64; 2] {
        self.0
    }

    /// A key from [`parts`](Self::parts).
    pub fn from_parts(parts: [u64; 2]) -> Self {
        Self(parts)
    }
}

/// How a session's last request was answered, for retransmissions: enough to rebuild the
/// same answer without storing it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct LastAnswer {
    /// The CC-Request-Number answered.
    pub request_number: u32,
    /// The Result-Code, as an index in [`RESULTS`].
    pub result: u8,
    /// Units granted (0: none).
    pub granted: u32,
    /// Whether Final-Unit-Indication was sent.
    pub final_units: bool,
}

/// The Result-Codes a session answer can carry, by index.
pub const RESULTS: [u32; 4] = [2001, 4012, 5002, 5030];

/// One live session. The layout is the memory budget: keep it at 56 bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    key: SessionKey,
    /// The account charged.
    pub account: u32,
    /// The next live session of the same account, or `NO_SESSION`.
    pub next_in_account: u32,
    /// Money reserved for this session.
    pub reserved: i64,
    /// When the session expires if silent (seconds since the engine started).
    pub expires: u32,
    /// Interned Session-Id host, or `u16::MAX` when the id is kept as text.
    host: u16,
    /// The service (an index in the tariff).
    pub service: u8,
    /// Bit 0: final units granted; bit 1: the last answer had them; bit 3: ASR decided;
    /// bits 4 to 7: the last answer's result index.
    flags: u8,
    /// The high and low parts of a canonical Session-Id.
    high: u32,
    low: u32,
    /// The last answer, packed: request number and granted units.
    last_number: u32,
    last_granted: u32,
}

/// The account of a free slot.
const FREE: u32 = u32::MAX;
const FINAL_UNITS: u8 = 1;
const LAST_FINAL: u8 = 2;
const ABORT_SENT: u8 = 8;
const LAST_RESULT_SHIFT: u8 = 4;

impl Slot {
    /// Whether the last grant was the final one.
    pub fn final_units(&self) -> bool {
        self.flags & FINAL_UNITS != 0
    }

    /// Marks the last grant final (or not).
    pub fn set_final_units(&mut self, final_units: bool) {
        self.flags = if final_units {
            self.flags | FINAL_UNITS
        } else {
            self.flags & !FINAL_UNITS
        };
    }

    /// Whether an ASR was already decided for this session.
    pub fn abort_sent(&self) -> bool {
        self.flags & ABORT_SENT != 0
    }

    /// Records that an ASR was decided.
    pub fn mark_abort_sent(&mut self) {
        self.flags |= ABORT_SENT;
    }

    /// The last answer sent.
    pub fn last(&self) -> LastAnswer {
        LastAnswer {
            request_number: self.last_number,
            result: self.flags >> LAST_RESULT_SHIFT,
            granted: self.last_granted,
            final_units: self.flags & LAST_FINAL != 0,
        }
    }

    /// Records the answer sent.
    pub fn set_last(&mut self, last: LastAnswer) {
        self.last_number = last.request_number;
        self.last_granted = last.granted;
        let keep = self.flags & (FINAL_UNITS | ABORT_SENT);
        self.flags = keep
            | if last.final_units { LAST_FINAL } else { 0 }
            | (last.result << LAST_RESULT_SHIFT);
    }
}

/// The session table.
#[derive(Default)]
pub struct Sessions {
    slots: Vec<Slot>,
    free: Vec<u32>,
    index: HashTable<u32>,
    ids: CompactIds,
    live: usize,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sessions({} live)", self.live)
    }
}

fn hash(key: &SessionKey) -> u64 {
    key.0[0]
}

impl Sessions {
    /// Live sessions.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// The slot of a session.
    pub fn find(&self, key: SessionKey) -> Option<u32> {
        let slots = &self.slots;
        self.index
            .find(hash(&key), |&i| slots[i as usize].key == key)
            .copied()
    }

    /// A slot.
    pub fn get(&self, slot: u32) -> &Slot {
        &self.slots[slot as usize]
    }

    /// A slot, mutably.
    pub fn get_mut(&mut self, slot: u32) -> &mut Slot {
        &mut self.slots[slot as usize]
    }

    /// Adds a session (the caller checked it is absent) and threads it on its account's
    /// list, whose head is `first_in_account`; returns its slot.
    pub fn insert(
        &mut self,
        session_id: &str,
        key: SessionKey,
        account: u32,
        service: u8,
        first_in_account: u32,
    ) -> u32 {
        let index = self.free.last().copied().unwrap_or(self.slots.len() as u32);
        let (host, high, low) = self.ids.store(index, session_id);
        let slot = Slot {
            key,
            account,
            next_in_account: first_in_account,
            reserved: 0,
            expires: 0,
            host,
            service,
            flags: 0,
            high,
            low,
            last_number: 0,
            last_granted: 0,
        };
        match self.free.pop() {
            Some(free) => self.slots[free as usize] = slot,
            None => self.slots.push(slot),
        }
        let slots = &self.slots;
        self.index
            .insert_unique(hash(&key), index, |&i| hash(&slots[i as usize].key));
        self.live += 1;
        index
    }

    /// Removes a session; the caller unthreads it from its account first.
    pub fn remove(&mut self, index: u32) {
        let key = self.slots[index as usize].key;
        let slots = &self.slots;
        if let Ok(entry) = self
            .index
            .find_entry(hash(&key), |&i| slots[i as usize].key == key)
        {
            entry.remove();
            self.slots[index as usize].account = FREE;
            self.ids.forget(index);
            self.free.push(index);
            self.live -= 1;
        }
    }

    /// Slots in the table, live and free (live ones are below this).
    pub fn slot_count(&self) -> u32 {
        self.slots.len() as u32
    }

    /// Whether a slot holds a live session.
    pub fn is_live(&self, slot: u32) -> bool {
        self.slots
            .get(slot as usize)
            .is_some_and(|s| s.account != FREE)
    }

    /// The key of a live session.
    pub fn key(&self, slot: u32) -> SessionKey {
        self.slots[slot as usize].key
    }

    /// The Session-Id text of a session.
    pub fn session_id(&self, index: u32) -> String {
        let slot = &self.slots[index as usize];
        self.ids.text(index, slot.host, slot.high, slot.low)
    }

    /// Iterates the live slots among slots `from..to` (clamped to the table).
    pub fn live_slots_in(&self, from: u32, to: u32) -> impl Iterator<Item = (u32, &Slot)> {
        let end = (to as usize).min(self.slots.len());
        let start = (from as usize).min(end);
        self.slots[start..end]
            .iter()
            .enumerate()
            .map(move |(i, s)| ((start + i) as u32, s))
            .filter(|(_, s)| s.account != FREE)
    }

    /// Iterates live slots (for expiry and snapshots).
    pub fn live_slots(&self) -> impl Iterator<Item = (u32, &Slot)> {
        self.slots
            .iter()
            .enumerate()
            .map(|(i, s)| (i as u32, s))
            .filter(|(_, s)| s.account != FREE)
    }

    /// Heap bytes held by the table (slots, index, free list), for the memory figure.
    pub fn heap_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot>()
            + self.index.capacity() * (std::mem::size_of::<u32>() + 1)
            + self.free.capacity() * 4
    }

    /// Makes room for `additional` more sessions.
    pub fn reserve(&mut self, additional: usize) {
        self.slots.reserve(additional);
        let slots = &self.slots;
        self.index
            .reserve(additional, |&i| hash(&slots[i as usize].key));
    }
}

/// The session table as a hot upgrade carries it (schema 2 of `crate::snapshot`): every
/// slot, live or free, as a fixed little-endian record ([`SLOT_RECORD`] bytes), so that slot
/// numbers, and the accounts' session lists threaded through them, stay valid as they are;
/// the interned Session-Id hosts; and the Session-Ids kept as text. The index is rebuilt
/// from the keys on arrival. Expiry times travel relative to the sender's clock.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionTable {
    /// The slot records (a slice of the received snapshot, not a copy).
    pub slots: bytes::Bytes,
    /// Interned hosts, by index.
    pub hosts: Vec<String>,
    /// Session-Ids kept as text, by slot.
    pub texts: Vec<(u32, String)>,
}

/// The size of one slot record in a [`SessionTable`].
pub const SLOT_RECORD: usize = 56;

impl Sessions {
    /// The table, for a hot upgrade; `now` is the engine's clock (expiry becomes relative).
    pub fn export(&self, now: u32) -> SessionTable {
        let mut slots = Vec::with_capacity(self.slots.len() * SLOT_RECORD);
        self.export_slots(now, &mut slots);
        let (hosts, texts) = self.ids.parts();
        SessionTable {
            slots: slots.into(),
            hosts,
            texts,
        }
    }

    /// The interned hosts and the Session-Ids kept as text (the rest of a [`SessionTable`]).
    pub fn export_ids(&self) -> (Vec<String>, Vec<(u32, String)>) {
        self.ids.parts()
    }

    /// Writes the slot records of [`export`](Self::export), a megabyte at a time (a snapshot
    /// writes them straight into its memfd); returns the bytes written.
    pub fn write_slots(&self, now: u32, out: &mut impl std::io::Write) -> std::io::Result<u64> {
        let mut chunk = Vec::with_capacity(crate::snapshot::CHUNK + SLOT_RECORD);
        for slots in self.slots.chunks(crate::snapshot::CHUNK / SLOT_RECORD) {
            chunk.clear();
            Self::records(slots, now, &mut chunk);
            out.write_all(&chunk)?;
        }
        Ok((self.slots.len() * SLOT_RECORD) as u64)
    }

    /// Appends the slot records of [`export`](Self::export) to `slots`.
    pub fn export_slots(&self, now: u32, slots: &mut Vec<u8>) {
        slots.reserve(self.slots.len() * SLOT_RECORD);
        Self::records(&self.slots, now, slots);
    }

    fn records(from: &[Slot], now: u32, slots: &mut Vec<u8>) {
        for slot in from {
            // One record on the stack, then one copy: a million of them are the pause.
            let mut record = [0u8; SLOT_RECORD];
            record[0..8].copy_from_slice(&slot.key.0[0].to_le_bytes());
            record[8..16].copy_from_slice(&slot.key.0[1].to_le_bytes());
            record[16..20].copy_from_slice(&slot.account.to_le_bytes());
            record[20..24].copy_from_slice(&slot.next_in_account.to_le_bytes());
            record[24..32].copy_from_slice(&slot.reserved.to_le_bytes());
            record[32..36].copy_from_slice(&slot.expires.saturating_sub(now).to_le_bytes());
            record[36..38].copy_from_slice(&slot.host.to_le_bytes());
            record[38] = slot.service;
            record[39] = slot.flags;
            record[40..44].copy_from_slice(&slot.high.to_le_bytes());
            record[44..48].copy_from_slice(&slot.low.to_le_bytes());
            record[48..52].copy_from_slice(&slot.last_number.to_le_bytes());
            record[52..56].copy_from_slice(&slot.last_granted.to_le_bytes());
            slots.extend_from_slice(&record);
        }
    }

    /// Rebuilds the table `export` described, at engine time `now`. `service` maps the
    /// sender's service index to this tariff's (None: not priced here). Refuses a table
    /// whose length is not whole records, a key given twice, a host index out of range, a
    /// text Session-Id missing, or an unknown service; the caller checks the accounts.
    pub fn import(
        table: SessionTable,
        now: u32,
        service: impl Fn(u8) -> Option<u8>,
    ) -> Result<Self, String> {
        Self::import_into(Self::default(), table, now, service)
    }

    /// An empty table with room for `slots` sessions whose memory is already written, so
    /// that filling it later costs no page faults: a hot upgrade's new process prepares it
    /// while the old one still serves.
    pub fn preallocated(slots: usize) -> Self {
        let blank = Slot {
            key: SessionKey([0, 0]),
            account: FREE,
            next_in_account: NO_SESSION,
            reserved: 0,
            expires: 0,
            host: 0,
            service: 0,
            flags: 0,
            high: 0,
            low: 0,
            last_number: 0,
            last_granted: 0,
        };
        let mut table = Self::default();
        table.slots.resize(slots, blank);
        table.slots.clear();
        table.index = HashTable::with_capacity(slots);
        table
    }

    /// [`import`](Self::import) into `shell`'s memory (from [`preallocated`](Self::preallocated)).
    pub fn import_into(
        mut shell: Self,
        table: SessionTable,
        now: u32,
        service: impl Fn(u8) -> Option<u8>,
    ) -> Result<Self, String> {
        if !table.slots.len().is_multiple_of(SLOT_RECORD) {
            return Err(format!(
                "{} bytes of slots: not whole {SLOT_RECORD}-byte records",
                table.slots.len()
            ));
        }
        let count = table.slots.len() / SLOT_RECORD;
        if count > u32::MAX as usize - 1 {
            return Err(format!("{count} slots: too many"));
        }
        shell.ids = CompactIds::from_parts(table.hosts, table.texts)?;
        shell.slots.clear();
        shell.slots.reserve(count);
        shell.free.clear();
        shell.index.clear();
        shell.index.reserve(count, |_| 0);
        shell.live = 0;
        let mut sessions = shell;
        for (i, record) in table.slots.chunks_exact(SLOT_RECORD).enumerate() {
            let u32_at =
                |at: usize| u32::from_le_bytes(record[at..at + 4].try_into().expect("4 bytes"));
            let u64_at =
                |at: usize| u64::from_le_bytes(record[at..at + 8].try_into().expect("8 bytes"));
            let mut slot = Slot {
                key: SessionKey([u64_at(0), u64_at(8)]),
                account: u32_at(16),
                next_in_account: u32_at(20),
                reserved: u64_at(24) as i64,
                expires: now.saturating_add(u32_at(32)),
                host: u16::from_le_bytes([record[36], record[37]]),
                service: record[38],
                flags: record[39],
                high: u32_at(40),
                low: u32_at(44),
                last_number: u32_at(48),
                last_granted: u32_at(52),
            };
            let index = i as u32;
            if slot.account == FREE {
                sessions.free.push(index);
                sessions.slots.push(slot);
                continue;
            }
            slot.service = service(slot.service)
                .ok_or_else(|| format!("slot {i}: service {} is not priced here", slot.service))?;
            if usize::from(slot.flags >> LAST_RESULT_SHIFT) >= RESULTS.len() {
                return Err(format!(
                    "slot {i}: its last answer's result index is out of range"
                ));
            }
            if slot.host == protocol::session_id::TEXT {
                if sessions.ids.text(index, slot.host, 0, 0).is_empty() {
                    return Err(format!("slot {i}: its Session-Id text is missing"));
                }
            } else if usize::from(slot.host) >= sessions.ids.host_count() {
                return Err(format!("slot {i}: host {} out of range", slot.host));
            }
            let key = slot.key;
            sessions.slots.push(slot);
            let slots = &sessions.slots;
            // One probe finds a duplicate or the place to insert.
            match sessions.index.entry(
                hash(&key),
                |&j| slots[j as usize].key == key,
                |&j| hash(&slots[j as usize].key),
            ) {
                hashbrown::hash_table::Entry::Occupied(_) => {
                    return Err(format!("slot {i}: a Session-Id given twice"));
                }
                hashbrown::hash_table::Entry::Vacant(vacant) => {
                    vacant.insert(index);
                }
            }
            sessions.live += 1;
        }
        // Slots are reused from the end of the free list: lowest first, as before.
        sessions.free.reverse();
        Ok(sessions)
    }
}

/// Removes `slot` from the list starting at `*head`, following `next_in_account`.
pub fn unthread(sessions: &mut Sessions, head: &mut u32, slot: u32) {
    let next = sessions.get(slot).next_in_account;
    if *head == slot {
        *head = next;
        return;
    }
    let mut at = *head;
    while at != NO_SESSION {
        let following = sessions.get(at).next_in_account;
        if following == slot {
            sessions.get_mut(at).next_in_account = next;
            return;
        }
        at = following;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_exported_and_imported_is_the_same_table() {
        let mut sessions = Sessions::default();
        let ids = [
            "gw1.example.net;1700000000;1",
            "gw1.example.net;1700000000;2",
            "odd;one",
            "gw2.example.net;5;6",
        ];
        let mut slots = Vec::new();
        for (n, id) in ids.iter().enumerate() {
            let head = slots.last().copied().unwrap_or(NO_SESSION);
            let slot = sessions.insert(id, SessionKey::of(id), 3, (n % 2) as u8, head);
            sessions.get_mut(slot).reserved = 10 * n as i64;
            sessions.get_mut(slot).expires = 100 + n as u32;
            slots.push(slot);
        }
        sessions.remove(slots[1]);
        let table = sessions.export(90);
        assert_eq!(table.slots.len(), 4 * SLOT_RECORD);
        let copy = Sessions::import(table.clone(), 1000, Some).expect("import");
        assert_eq!(copy.len(), 3);
        for (n, id) in ids.iter().enumerate() {
            let found = copy.find(SessionKey::of(id));
            if n == 1 {
                assert_eq!(found, None);
                continue;
            }
            let slot = found.expect("found");
            assert_eq!(slot, slots[n], "the same slot number");
            assert_eq!(copy.session_id(slot), *id);
            assert_eq!(copy.get(slot).reserved, 10 * n as i64);
            assert_eq!(copy.get(slot).expires, 1000 + 10 + n as u32);
            assert_eq!(
                copy.get(slot).next_in_account,
                sessions.get(slot).next_in_account
            );
        }
        // The freed slot is reused first, as it would have been.
        let mut copy = copy;
        let again = copy.insert("new;1;1", SessionKey::of("new;1;1"), 1, 0, NO_SESSION);
        assert_eq!(again, slots[1]);
        // Broken tables are refused with the reason.
        let mut short = table.clone();
        short.slots = short.slots.slice(..short.slots.len() - 1);
        assert!(Sessions::import(short, 0, Some).is_err());
        assert!(Sessions::import(table.clone(), 0, |_| None)
            .expect_err("no service")
            .contains("not priced"));
        let mut no_text = table;
        no_text.texts.clear();
        assert!(Sessions::import(no_text, 0, Some)
            .expect_err("text")
            .contains("text is missing"));
    }

    #[test]
    fn slot_is_56_bytes() {
        assert_eq!(std::mem::size_of::<Slot>(), 56);
    }

    #[test]
    fn insert_find_remove_and_rebuild_ids() {
        let mut sessions = Sessions::default();
        let canonical = "gw1.example.net;1700000000;42";
        let odd = "gw1.example.net;1700000000;042;extra";
        let a = sessions.insert(canonical, SessionKey::of(canonical), 7, 0, NO_SESSION);
        let b = sessions.insert(odd, SessionKey::of(odd), 7, 1, a);
        assert_eq!(sessions.find(SessionKey::of(canonical)), Some(a));
        assert_eq!(sessions.find(SessionKey::of(odd)), Some(b));
        assert_eq!(sessions.session_id(a), canonical);
        assert_eq!(sessions.session_id(b), odd);
        assert_eq!(sessions.get(b).next_in_account, a);
        let mut head = b;
        unthread(&mut sessions, &mut head, a);
        assert_eq!(sessions.get(b).next_in_account, NO_SESSION);
        sessions.remove(a);
        assert_eq!(sessions.find(SessionKey::of(canonical)), None);
        assert_eq!(sessions.len(), 1);
        let c = sessions.insert(canonical, SessionKey::of(canonical), 1, 0, NO_SESSION);
        assert_eq!(c, a, "slots are reused");
        let mut last = LastAnswer {
            request_number: 9,
            result: 1,
            granted: 60,
            final_units: true,
        };
        sessions.get_mut(c).set_last(last);
        sessions.get_mut(c).set_final_units(true);
        assert_eq!(sessions.get(c).last(), last);
        assert!(sessions.get(c).final_units());
        last.final_units = false;
        sessions.get_mut(c).set_last(last);
        assert!(
            sessions.get(c).final_units(),
            "the grant flag is kept apart"
        );
    }
}
