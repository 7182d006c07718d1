//! Duplicate detection for retransmitted requests (RFC 6733 sections 5.5.4 and 6.2.1).
//!
//! A client that loses a connection re-sends its pending requests elsewhere with the T flag
//! and the same End-to-End id. Origin-Host plus End-to-End id identify a request; the cache
//! remembers each request received recently, and its answer once sent, so that a
//! retransmission of an answered request is answered from the cache instead of being
//! processed (charged) twice. A retransmission of a request not answered yet is handed to
//! the application: the original's answer may never leave (its connection is the one that
//! failed), so dropping the copy would leave the client without an answer.
//!
//! One cache serves a whole node (all its connections: the retransmission usually arrives on
//! another connection than the original). Entries live for a configured time and the cache
//! holds at most a configured number; the oldest go first.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::header::EndToEndId;

/// Identifies a request across connections: a hash of its Origin-Host, and its End-to-End id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct DuplicateKey {
    origin_host: u64,
    end_to_end: u32,
}

impl DuplicateKey {
    /// The key of a request from `origin_host` with `end_to_end`.
    pub fn new(origin_host: &[u8], end_to_end: EndToEndId) -> Self {
        // FNV-1a: fast for short host names; collisions also need equal End-to-End ids.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for &byte in origin_host {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        Self {
            origin_host: hash,
            end_to_end: end_to_end.0,
        }
    }
}

/// What the cache knows of a request.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Seen {
    /// Not seen recently: process it (it is now recorded as in progress).
    New,
    /// Being processed, not answered yet: the copy goes to the application, which must be
    /// idempotent for it (the original's answer may be lost with its connection).
    InProgress,
    /// Answered: re-send this answer (with the duplicate's hop-by-hop id).
    Answered(Bytes),
}

/// One answered request of a [`DuplicateCache`], as exported for a hot upgrade.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct CachedAnswer {
    /// The hash of the request's Origin-Host.
    pub origin_host_hash: u64,
    /// Its End-to-End id.
    pub end_to_end: u32,
    /// The answer sent.
    pub answer: Vec<u8>,
    /// Milliseconds it is still remembered.
    pub remaining_ms: u64,
}

#[derive(Debug)]
enum Entry {
    InProgress,
    Answered(Bytes),
    /// Forgotten before its answer (its slot waits in the queue, out of the index).
    Forgotten,
}

/// One remembered request, in arrival order.
#[derive(Debug)]
struct Slot {
    key: DuplicateKey,
    expires: Instant,
    entry: Entry,
}

/// The size at which a cache reserves its whole capacity (see [`Inner::grow`]).
const GROW_AT: usize = 4096;

/// An index position holding no entry.
const EMPTY: u64 = 0;
/// An index entry: this bit (never set in [`EMPTY`]), the low [`TAG_BITS`] bits of the
/// key's hash from bit [`SEQ_BITS`] up, and the slot's sequence number modulo 2^40 below.
/// The hash bits are the entry's home position in any index up to 2^23 long, and a filter:
/// a probe looks at the slot (a cache miss: the queue is megabytes) only for an entry whose
/// bits match, and a removal's backward shift not at all.
const OCCUPIED: u64 = 1 << 63;
const SEQ_BITS: u32 = 40;
const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;
const TAG_BITS: u32 = 23;

fn hash(key: DuplicateKey) -> u64 {
    // The host part is already an FNV hash: mixing in the id is enough.
    (key.origin_host ^ u64::from(key.end_to_end).wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .wrapping_mul(0xff51_afd7_ed55_8ccd)
        .rotate_left(29)
}

/// The remembered requests: a queue in arrival order (the oldest go first) and an index
/// from key to queue position, open addressing with linear probing, at most half full,
/// removals by backward shift.
///
/// Not a `HashMap` with a queue beside it: a map whose entries are all removed in the
/// order they came, at a steady size, fills with tombstones and rehashes itself (in place
/// or into twice the buckets) every so often, all 256 Ki entries at once under the lock
/// every request of the node waits on (`cargo bench -p benches --bench duplicate_cache`:
/// one 24.9 ms operation in 20 M requests). Backward-shift deletion leaves no tombstones:
/// every operation costs a few probes, always. An index entry carries hash bits beside the
/// sequence number ([`OCCUPIED`]): probes and shifts touch the queue only for a likely
/// match (135 against 200 ns a request in that bench). (The end-to-end knee's occasional bad
/// seconds did not go away with it: they have another cause, see BENCHMARKS.md.)
#[derive(Debug)]
struct Inner {
    queue: VecDeque<Slot>,
    /// Sequence number of the queue's front (the slots are numbered as they come).
    head: u64,
    /// The indexed slots ([`OCCUPIED`]: a hash tag and a sequence number), or [`EMPTY`]; a
    /// power of two long.
    index: Vec<u64>,
    /// The hash bits an entry keeps: `2^TAG_BITS - 1` (tests use fewer).
    tag_mask: u64,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            queue: VecDeque::new(),
            head: 0,
            index: Vec::new(),
            tag_mask: (1 << TAG_BITS) - 1,
        }
    }
}

impl Inner {
    fn mask(&self) -> usize {
        self.index.len() - 1
    }

    fn slot(&self, seq: u64) -> &Slot {
        &self.queue[(seq - self.head) as usize]
    }

    /// The index entry of the slot numbered `seq` whose key hashes to `hash`.
    fn entry(&self, hash: u64, seq: u64) -> u64 {
        OCCUPIED | (hash & self.tag_mask) << SEQ_BITS | (seq & SEQ_MASK)
    }

    /// The sequence number of an index entry: the live ones are `head..head + len`, far
    /// fewer than 2^40, so the low bits say which.
    fn seq(&self, entry: u64) -> u64 {
        self.head + ((entry & SEQ_MASK).wrapping_sub(self.head) & SEQ_MASK)
    }

    /// The home position of an index entry: from its hash bits, or (an index longer than
    /// they cover) from its slot's key.
    fn home(&self, entry: u64) -> usize {
        let mask = self.mask();
        if mask as u64 <= self.tag_mask {
            ((entry >> SEQ_BITS) & self.tag_mask) as usize & mask
        } else {
            hash(self.slot(self.seq(entry)).key) as usize & mask
        }
    }

    /// The index position and sequence number of `key`.
    fn find(&self, key: DuplicateKey) -> Option<(usize, u64)> {
        if self.index.is_empty() {
            return None;
        }
        let mask = self.mask();
        let hash = hash(key);
        let tag = (hash & self.tag_mask) << SEQ_BITS;
        let mut i = hash as usize & mask;
        loop {
            let entry = self.index[i];
            if entry == EMPTY {
                return None;
            }
            if entry & !OCCUPIED & !SEQ_MASK == tag {
                let seq = self.seq(entry);
                if self.slot(seq).key == key {
                    return Some((i, seq));
                }
            }
            i = (i + 1) & mask;
        }
    }

    fn index_insert(&mut self, key: DuplicateKey, seq: u64) {
        let mask = self.mask();
        let hash = hash(key);
        let mut i = hash as usize & mask;
        while self.index[i] != EMPTY {
            i = (i + 1) & mask;
        }
        self.index[i] = self.entry(hash, seq);
    }

    /// Empties index position `hole`, moving back the entries after it that may live
    /// there (linear probing's deletion without tombstones).
    fn index_remove(&mut self, mut hole: usize) {
        let mask = self.mask();
        let mut j = (hole + 1) & mask;
        loop {
            let entry = self.index[j];
            if entry == EMPTY {
                break;
            }
            let home = self.home(entry);
            // The entry at j may move to the hole unless its home lies after the hole
            // (cyclically, in (hole, j]).
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.index[hole] = entry;
                hole = j;
            }
            j = (j + 1) & mask;
        }
        self.index[hole] = EMPTY;
    }

    /// Appends a slot and indexes it.
    fn push(&mut self, key: DuplicateKey, expires: Instant, entry: Entry) {
        let seq = self.head + self.queue.len() as u64;
        self.queue.push_back(Slot {
            key,
            expires,
            entry,
        });
        self.index_insert(key, seq);
    }

    /// Drops the oldest slot.
    fn pop(&mut self) {
        let Some(front) = self.queue.front() else {
            return;
        };
        if !matches!(front.entry, Entry::Forgotten) {
            let hash = hash(front.key);
            let entry = self.entry(hash, self.head);
            let mask = self.mask();
            let mut i = hash as usize & mask;
            while self.index[i] != entry {
                i = (i + 1) & mask;
            }
            self.index_remove(i);
        }
        self.queue.pop_front();
        self.head += 1;
    }

    /// An index of at least twice `capacity` positions (at most half full), rebuilt.
    fn reindex(&mut self, capacity: usize) {
        let len = (2 * capacity.max(1)).next_power_of_two();
        if self.index.len() >= len {
            return;
        }
        self.index = vec![EMPTY; len];
        for n in 0..self.queue.len() {
            let slot = &self.queue[n];
            if !matches!(slot.entry, Entry::Forgotten) {
                let key = slot.key;
                self.index_insert(key, self.head + n as u64);
            }
        }
    }

    /// Sizes the cache for one more slot: small at first; at [`GROW_AT`] slots, its whole
    /// capacity at once (one reallocation and re-index of 4,096 slots, not a doubling
    /// every so often under the lock).
    fn grow(&mut self, capacity: usize) {
        let len = self.queue.len();
        if len < GROW_AT.min(capacity) {
            self.reindex(GROW_AT.min(capacity));
        } else if self.index.len() < 2 * capacity {
            self.queue.reserve(capacity.saturating_sub(len));
            self.reindex(capacity);
        }
    }
}

/// The node-wide duplicate cache. Shared between connections behind an `Arc`.
#[derive(Debug)]
pub struct DuplicateCache {
    inner: Mutex<Inner>,
    lifetime: Duration,
    capacity: usize,
}

impl DuplicateCache {
    /// A cache keeping entries for `lifetime`, at most `capacity` of them. A capacity of 0
    /// disables duplicate detection.
    pub fn new(lifetime: Duration, capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            lifetime,
            capacity,
        }
    }

    /// Whether detection is enabled.
    pub fn is_enabled(&self) -> bool {
        self.capacity > 0
    }

    /// Looks a request up, recording it as in progress if it is new.
    pub fn check(&self, key: DuplicateKey, now: Instant) -> Seen {
        if !self.is_enabled() {
            return Seen::New;
        }
        let mut inner = self.lock();
        self.evict(&mut inner, now);
        if let Some((_, seq)) = inner.find(key) {
            return match &inner.slot(seq).entry {
                Entry::Answered(answer) => Seen::Answered(answer.clone()),
                Entry::InProgress | Entry::Forgotten => Seen::InProgress,
            };
        }
        inner.grow(self.capacity);
        inner.push(key, now + self.lifetime, Entry::InProgress);
        Seen::New
    }

    /// Records the answer sent to a request.
    pub fn complete(&self, key: DuplicateKey, answer: Bytes) {
        self.complete_all([(key, answer)]);
    }

    /// Records many answers under one lock (a connection's write batch).
    pub fn complete_all(&self, answers: impl IntoIterator<Item = (DuplicateKey, Bytes)>) {
        if !self.is_enabled() {
            return;
        }
        let mut inner = self.lock();
        for (key, answer) in answers {
            if let Some((_, seq)) = inner.find(key) {
                let at = (seq - inner.head) as usize;
                inner.queue[at].entry = Entry::Answered(answer);
            }
        }
    }

    /// Forgets a request that will not be answered (its connection went away), so that a
    /// retransmission is processed.
    pub fn forget(&self, key: DuplicateKey) {
        let mut inner = self.lock();
        if let Some((i, seq)) = inner.find(key) {
            let at = (seq - inner.head) as usize;
            if matches!(inner.queue[at].entry, Entry::InProgress) {
                inner.queue[at].entry = Entry::Forgotten;
                inner.index_remove(i);
            }
        }
    }

    /// The `limit` most recent answered requests remembered, oldest first, for a hot upgrade
    /// to carry to the next process (requests in progress are not: every one is answered
    /// before a hand-over).
    pub fn export(&self, now: Instant, limit: usize) -> Vec<CachedAnswer> {
        let inner = self.lock();
        let mut answers: Vec<CachedAnswer> = inner
            .queue
            .iter()
            .rev()
            .filter_map(|slot| match &slot.entry {
                Entry::Answered(answer) if slot.expires > now => Some(CachedAnswer {
                    origin_host_hash: slot.key.origin_host,
                    end_to_end: slot.key.end_to_end,
                    answer: answer.to_vec(),
                    remaining_ms: slot.expires.duration_since(now).as_millis() as u64,
                }),
                _ => None,
            })
            .take(limit)
            .collect();
        answers.reverse();
        answers
    }

    /// Remembers answers exported by another process's cache (those it knows already are
    /// left as they are; the oldest go first when it is full).
    pub fn import(&self, mut answers: Vec<CachedAnswer>, now: Instant) {
        if !self.is_enabled() {
            return;
        }
        answers.sort_by_key(|cached| cached.remaining_ms);
        let mut inner = self.lock();
        for cached in answers {
            let key = DuplicateKey {
                origin_host: cached.origin_host_hash,
                end_to_end: cached.end_to_end,
            };
            if inner.find(key).is_some() {
                continue;
            }
            if inner.queue.len() >= self.capacity {
                inner.pop();
            }
            inner.grow(self.capacity);
            let expires = now + Duration::from_millis(cached.remaining_ms).min(self.lifetime);
            inner.push(key, expires, Entry::Answered(Bytes::from(cached.answer)));
        }
    }

    /// How many requests are remembered.
    pub fn len(&self) -> usize {
        let inner = self.lock();
        inner
            .queue
            .iter()
            .filter(|slot| !matches!(slot.entry, Entry::Forgotten))
            .count()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves the cache consistent (single operations).
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn evict(&self, inner: &mut Inner, now: Instant) {
        while let Some(front) = inner.queue.front() {
            if front.expires > now && inner.queue.len() < self.capacity {
                break;
            }
            inner.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_requests_and_answers_until_they_expire() {
        let cache = DuplicateCache::new(Duration::from_secs(10), 100);
        let t0 = Instant::now();
        let key = DuplicateKey::new(b"gw1.example.net", EndToEndId(7));
        let other = DuplicateKey::new(b"gw2.example.net", EndToEndId(7));
        assert_eq!(cache.check(key, t0), Seen::New);
        assert_eq!(cache.check(key, t0), Seen::InProgress);
        assert_eq!(cache.check(other, t0), Seen::New);
        cache.complete(key, Bytes::from_static(b"answer"));
        assert_eq!(
            cache.check(key, t0),
            Seen::Answered(Bytes::from_static(b"answer"))
        );
        cache.forget(other);
        assert_eq!(cache.check(other, t0), Seen::New);
        assert_eq!(
            cache.check(key, t0 + Duration::from_secs(11)),
            Seen::New,
            "expired"
        );
    }

    #[test]
    fn capacity_bounds_the_cache() {
        let cache = DuplicateCache::new(Duration::from_secs(60), 3);
        let t0 = Instant::now();
        for id in 0..10 {
            cache.check(DuplicateKey::new(b"h", EndToEndId(id)), t0);
        }
        assert!(cache.len() <= 3);
        let off = DuplicateCache::new(Duration::from_secs(60), 0);
        let key = DuplicateKey::new(b"h", EndToEndId(1));
        assert_eq!(off.check(key, t0), Seen::New);
        assert_eq!(off.check(key, t0), Seen::New);
    }

    #[test]
    fn a_busy_cache_takes_its_whole_capacity_once_and_a_quiet_one_stays_small() {
        let t0 = Instant::now();
        let cache = DuplicateCache::new(Duration::from_secs(60), 3 * GROW_AT);
        for id in 0..GROW_AT as u32 {
            cache.check(DuplicateKey::new(b"h", EndToEndId(id)), t0);
        }
        assert!(cache.lock().index.len() < 2 * 3 * GROW_AT);
        cache.check(DuplicateKey::new(b"h", EndToEndId(u32::MAX)), t0);
        assert!(cache.lock().index.len() >= 2 * 3 * GROW_AT);
        assert!(cache.lock().queue.capacity() >= 3 * GROW_AT);
        for id in GROW_AT as u32..4 * GROW_AT as u32 {
            cache.check(DuplicateKey::new(b"h", EndToEndId(id)), t0);
        }
        // Full: the oldest go.
        assert_eq!(cache.len(), 3 * GROW_AT);
        assert_eq!(
            cache.check(DuplicateKey::new(b"h", EndToEndId(0)), t0),
            Seen::New,
            "the oldest went"
        );
        assert_eq!(
            cache.check(
                DuplicateKey::new(b"h", EndToEndId(4 * GROW_AT as u32 - 1)),
                t0
            ),
            Seen::InProgress,
            "the newest stayed"
        );
    }

    /// The cache against a model (a plain queue searched from end to end) through a long
    /// random run at a steady size: every answer agrees, and the index never gets more than
    /// half full (no tombstones, no rehash).
    #[test]
    fn agrees_with_a_model_through_a_long_random_run() {
        agrees_with_a_model(None, 0);
    }

    /// The same with sequence numbers passing 2^40 (an entry keeps their low 40 bits).
    #[test]
    fn agrees_with_a_model_across_the_sequence_numbers_wrap() {
        agrees_with_a_model(None, SEQ_MASK - 5_000);
    }

    /// The same with 4 hash bits per entry: most probes meet entries with the same bits
    /// (the key decides), and the index is longer than the bits cover (an entry's home
    /// position comes from its slot's key).
    #[test]
    fn agrees_with_a_model_with_few_hash_bits() {
        agrees_with_a_model(Some(0xF), 0);
    }

    fn agrees_with_a_model(tag_mask: Option<u64>, first_seq: u64) {
        #[derive(Clone, PartialEq, Debug)]
        enum State {
            InProgress,
            Answered(Bytes),
            Forgotten,
        }
        let capacity = 300;
        let cache = DuplicateCache::new(Duration::from_secs(3600), capacity);
        {
            let mut inner = cache.lock();
            inner.head = first_seq;
            if let Some(tag_mask) = tag_mask {
                inner.tag_mask = tag_mask;
            }
        }
        let t0 = Instant::now();
        let mut model: VecDeque<(DuplicateKey, State)> = VecDeque::new();
        let live = |model: &VecDeque<(DuplicateKey, State)>, key: DuplicateKey| {
            model
                .iter()
                .position(|(k, state)| *k == key && *state != State::Forgotten)
        };
        let mut rng = fastrand::Rng::with_seed(7);
        for step in 0..60_000u32 {
            // Ids from a sliding window a little wider than the capacity: repeats (hits)
            // and keys that left (misses).
            let key = DuplicateKey::new(b"gw", EndToEndId(rng.u32(..400) + step / 20));
            match rng.u8(..10) {
                0 => {
                    cache.forget(key);
                    if let Some(at) = live(&model, key) {
                        if model[at].1 == State::InProgress {
                            model[at].1 = State::Forgotten;
                        }
                    }
                }
                1..=3 => {
                    let answer = Bytes::from(step.to_be_bytes().to_vec());
                    cache.complete(key, answer.clone());
                    if let Some(at) = live(&model, key) {
                        model[at].1 = State::Answered(answer);
                    }
                }
                _ => {
                    while model.len() >= capacity {
                        model.pop_front();
                    }
                    let expected = match live(&model, key).map(|at| model[at].1.clone()) {
                        Some(State::Answered(answer)) => Seen::Answered(answer),
                        Some(_) => Seen::InProgress,
                        None => {
                            model.push_back((key, State::InProgress));
                            Seen::New
                        }
                    };
                    assert_eq!(cache.check(key, t0), expected, "step {step}");
                }
            }
            let remembered = model.iter().filter(|(_, s)| *s != State::Forgotten).count();
            assert_eq!(cache.len(), remembered, "step {step}");
            let inner = cache.lock();
            assert_eq!(inner.queue.len(), model.len(), "step {step}");
            let used = inner.index.iter().filter(|&&s| s != EMPTY).count();
            assert_eq!(used, remembered, "step {step}");
            assert!(used * 2 <= inner.index.len(), "step {step}");
        }
    }
}
