//! The gateway's subscriber sessions, compact enough for a million in one process.
//!
//! Each entry ties an access session (the accounting client's Session-Id) to a
//! Credit-Control session on one PDF node, pinned to one connection of that node's pool.
//! Entries live in a slab of 48-byte slots with two `hashbrown` indexes: by the 128-bit hash
//! of the access Session-Id (ACRs) and by the CC session's number (the PDF's ASR). The access
//! Session-Id is kept as an interned host and two integers when canonical (to send ASR back),
//! as text otherwise; the CC Session-Id is `<connection's Origin-Host>;<start time>;<number>`
//! and is rebuilt from its parts.

use std::collections::HashMap;

use hashbrown::HashTable;
use protocol::session_id::CompactIds;

/// The 128-bit hash of an access Session-Id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AccessKey([u64; 2]);

impl AccessKey {
    /// The key of a Session-Id.
    pub fn of(session_id: &str) -> Self {
        let hash = xxhash_rust::xxh3::xxh3_128(session_id.as_bytes());
        Self([hash as u64, (hash >> 64) as u64])
    }
}

/// Where a session's Credit-Control traffic goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pin {
    /// PDF node index.
    pub node: u8,
    /// Connection index in the node's pool.
    pub connection: u8,
}

/// One session: 48 bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    key: AccessKey,
    /// Interned access host, or `u16::MAX` (text kept aside).
    access_host: u16,
    /// The access connection that owns the session (where ASRs go).
    pub access_peer: u16,
    access_high: u32,
    access_low: u32,
    /// The CC session's number (low part of its Session-Id).
    pub cc_number: u32,
    /// The CC-Request-Number of the last CCR sent.
    pub cc_request_number: u32,
    /// The Rating-Group of the service.
    pub rating_group: u32,
    /// The last Accounting-Record-Number answered, and (below) its result.
    pub record_number: u32,
    /// Where CCRs go now (changed only through [`Sessions::set_pin`], which keeps the
    /// count per node).
    pin: Pin,
    /// The connection whose Origin-Host names the CC Session-Id (it never changes).
    pub cc_connection: u8,
    flags: u8,
}

const FINAL_UNITS: u8 = 1;
const ABORTED: u8 = 2;
const IN_FLIGHT: u8 = 4;
const FREE: u8 = 0x80;

impl Session {
    /// Where CCRs go now.
    pub fn pin(&self) -> Pin {
        self.pin
    }

    /// Whether the PDF granted final units.
    pub fn final_units(&self) -> bool {
        self.flags & FINAL_UNITS != 0
    }

    /// Records whether the last grant was final.
    pub fn set_final_units(&mut self, value: bool) {
        self.flags = if value {
            self.flags | FINAL_UNITS
        } else {
            self.flags & !FINAL_UNITS
        };
    }

    /// Whether an ASR was sent to the access peer.
    pub fn aborted(&self) -> bool {
        self.flags & ABORTED != 0
    }

    /// Records that an ASR was sent.
    pub fn mark_aborted(&mut self) {
        self.flags |= ABORTED;
    }

    /// Whether one of its CCRs is out (its outcome, not the loss of the connection it
    /// was pinned to, decides what becomes of the session: it may have been redirected).
    pub fn in_flight(&self) -> bool {
        self.flags & IN_FLIGHT != 0
    }

    /// Records whether a CCR is out.
    pub fn set_in_flight(&mut self, value: bool) {
        self.flags = if value {
            self.flags | IN_FLIGHT
        } else {
            self.flags & !IN_FLIGHT
        };
    }
}

/// The table.
#[derive(Default)]
pub struct Sessions {
    slots: Vec<Session>,
    free: Vec<u32>,
    by_access: HashTable<u32>,
    by_cc: HashTable<u32>,
    ids: CompactIds,
    live: usize,
    /// Live sessions per PDF node index, kept as sessions come, go and move: the admin
    /// port's `/sessions/count` (sampled every second by the loadgen) used to walk every
    /// session under the table's lock, stalling every ACR for as long (estimated, not measured:
    /// about 10 ms at 500,000).
    per_node: Vec<usize>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sessions({} live)", self.live)
    }
}

fn cc_hash(number: u32) -> u64 {
    u64::from(number).wrapping_mul(0x9e37_79b9_7f4a_7c15)
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

    /// The slot of an access session.
    pub fn find(&self, key: AccessKey) -> Option<u32> {
        let slots = &self.slots;
        self.by_access
            .find(key.0[0], |&i| slots[i as usize].key == key)
            .copied()
    }

    /// The slot of a CC session.
    pub fn find_cc(&self, number: u32) -> Option<u32> {
        let slots = &self.slots;
        self.by_cc
            .find(cc_hash(number), |&i| slots[i as usize].cc_number == number)
            .copied()
    }

    /// A session.
    pub fn get(&self, slot: u32) -> &Session {
        &self.slots[slot as usize]
    }

    /// A session, mutably.
    pub fn get_mut(&mut self, slot: u32) -> &mut Session {
        &mut self.slots[slot as usize]
    }

    /// Adds a session; returns its slot.
    #[allow(clippy::too_many_arguments)]
    pub fn insert(
        &mut self,
        access_session_id: &str,
        access_peer: u16,
        cc_number: u32,
        rating_group: u32,
        record_number: u32,
        pin: Pin,
    ) -> u32 {
        let key = AccessKey::of(access_session_id);
        let next = self.free.last().copied().unwrap_or(self.slots.len() as u32);
        let (access_host, access_high, access_low) = self.ids.store(next, access_session_id);
        let session = Session {
            key,
            access_host,
            access_peer,
            access_high,
            access_low,
            cc_number,
            cc_request_number: 0,
            rating_group,
            record_number,
            pin,
            cc_connection: pin.connection,
            flags: 0,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = session;
                slot
            }
            None => {
                self.slots.push(session);
                (self.slots.len() - 1) as u32
            }
        };
        let slots = &self.slots;
        self.by_access
            .insert_unique(key.0[0], slot, |&i| slots[i as usize].key.0[0]);
        self.by_cc.insert_unique(cc_hash(cc_number), slot, |&i| {
            cc_hash(slots[i as usize].cc_number)
        });
        self.live += 1;
        self.count(pin.node, 1);
        slot
    }

    /// Moves a session to another node or connection.
    pub fn set_pin(&mut self, slot: u32, pin: Pin) {
        let old = std::mem::replace(&mut self.slots[slot as usize].pin, pin);
        if old.node != pin.node {
            self.count(old.node, -1);
            self.count(pin.node, 1);
        }
    }

    fn count(&mut self, node: u8, delta: isize) {
        let node = usize::from(node);
        if self.per_node.len() <= node {
            self.per_node.resize(node + 1, 0);
        }
        self.per_node[node] = self.per_node[node].saturating_add_signed(delta);
    }

    /// Removes a session.
    pub fn remove(&mut self, slot: u32) {
        let (key, cc_number, node) = {
            let s = &self.slots[slot as usize];
            if s.flags & FREE != 0 {
                return;
            }
            (s.key, s.cc_number, s.pin.node)
        };
        self.count(node, -1);
        let slots = &self.slots;
        if let Ok(entry) = self
            .by_access
            .find_entry(key.0[0], |&i| slots[i as usize].key == key)
        {
            entry.remove();
        }
        let slots = &self.slots;
        if let Ok(entry) = self.by_cc.find_entry(cc_hash(cc_number), |&i| {
            slots[i as usize].cc_number == cc_number
        }) {
            entry.remove();
        }
        self.slots[slot as usize].flags = FREE;
        self.ids.forget(slot);
        self.free.push(slot);
        self.live -= 1;
    }

    /// The access Session-Id of a session.
    pub fn access_session_id(&self, slot: u32) -> String {
        let s = &self.slots[slot as usize];
        self.ids
            .text(slot, s.access_host, s.access_high, s.access_low)
    }

    /// Live sessions.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &Session)> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.flags & FREE == 0)
            .map(|(i, s)| (i as u32, s))
    }

    /// Live sessions per PDF node (nodes with none left out).
    pub fn count_by_node(&self) -> HashMap<u8, usize> {
        self.per_node
            .iter()
            .enumerate()
            .filter(|&(_, &n)| n > 0)
            .map(|(node, &n)| (node as u8, n))
            .collect()
    }

    /// Heap bytes of the slab and indexes (for the memory figure).
    pub fn heap_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Session>()
            + (self.by_access.capacity() + self.by_cc.capacity()) * (std::mem::size_of::<u32>() + 1)
            + self.free.capacity() * 4
    }

    /// Makes room for `additional` sessions.
    pub fn reserve(&mut self, additional: usize) {
        self.slots.reserve(additional);
        let slots = &self.slots;
        self.by_access
            .reserve(additional, |&i| slots[i as usize].key.0[0]);
        self.by_cc
            .reserve(additional, |&i| cc_hash(slots[i as usize].cc_number));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_is_48_bytes_and_round_trips() {
        assert_eq!(std::mem::size_of::<Session>(), 48);
        let mut sessions = Sessions::default();
        let pin = Pin {
            node: 1,
            connection: 2,
        };
        let a = sessions.insert("lg1.example.net;1700000000;42", 3, 7, 10, 0, pin);
        let b = sessions.insert("odd;id", 3, 8, 1, 0, pin);
        assert_eq!(
            sessions.find(AccessKey::of("lg1.example.net;1700000000;42")),
            Some(a)
        );
        assert_eq!(sessions.find_cc(8), Some(b));
        assert_eq!(
            sessions.access_session_id(a),
            "lg1.example.net;1700000000;42"
        );
        assert_eq!(sessions.access_session_id(b), "odd;id");
        assert_eq!(sessions.count_by_node().get(&1), Some(&2));
        sessions.remove(a);
        sessions.remove(a);
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions.find_cc(7), None);
        let c = sessions.insert("lg1.example.net;1700000000;43", 0, 9, 1, 0, pin);
        assert_eq!(c, a, "slot reused");
        assert!(!sessions.get(c).final_units());
    }

    #[test]
    fn the_count_per_node_follows_inserts_moves_and_removals() {
        let mut sessions = Sessions::default();
        let on = |node| Pin {
            node,
            connection: 0,
        };
        let slots: Vec<u32> = (0..10)
            .map(|i| sessions.insert(&format!("s;{i}"), 0, i, 1, 0, on((i % 2) as u8)))
            .collect();
        let walked = |sessions: &Sessions| {
            let mut counts = HashMap::new();
            for (_, s) in sessions.iter() {
                *counts.entry(s.pin().node).or_insert(0usize) += 1;
            }
            counts
        };
        assert_eq!(sessions.count_by_node(), walked(&sessions));
        sessions.set_pin(slots[0], on(3));
        sessions.set_pin(
            slots[1],
            Pin {
                node: 1,
                connection: 2,
            },
        );
        sessions.remove(slots[2]);
        sessions.remove(slots[2]);
        sessions.remove(slots[1]);
        assert_eq!(sessions.count_by_node(), walked(&sessions));
        assert_eq!(sessions.count_by_node()[&3], 1);
        assert_eq!(sessions.count_by_node()[&0], 3);
        assert_eq!(sessions.count_by_node()[&1], 4);
        for &slot in &slots {
            sessions.remove(slot);
        }
        assert!(sessions.count_by_node().is_empty());
    }
}
