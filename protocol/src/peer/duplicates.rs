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
//!
//! A busy cache touches no new memory on the request path: answers are copied into their
//! slots (no allocation each), and the full-size queue and index are allocated and written
//! once by a thread of their own (see [`Inner::grow`]). A page fault costs 4-28 us on the
//! virtual machines we measure on; filling 256 Ki entries' worth of fresh pages on the
//! request path gave a new pdf seconds of 5-30 ms p99s (BENCHMARKS.md, the warm-up).

use std::collections::VecDeque;
use std::sync::mpsc;
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

// Large on purpose: the slot is where the answer is kept (boxing it is the allocation a
// request no longer makes).
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Entry {
    InProgress,
    Answered(Answer),
    /// Forgotten before its answer (its slot waits in the queue, out of the index).
    Forgotten,
}

/// The longest answer kept in its slot (a Credit-Control answer of ours is about 200 bytes,
/// an accounting answer 150); a longer one is kept on the heap.
const INLINE_ANSWER: usize = 240;
const _: () = assert!(
    INLINE_ANSWER <= u8::MAX as usize,
    "an inline answer's length is a u8"
);

/// An answer as remembered: in the slot itself (memory the cache owns and has touched
/// already), or on the heap when it is longer than [`INLINE_ANSWER`].
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Answer {
    Inline { len: u8, bytes: [u8; INLINE_ANSWER] },
    Heap(Bytes),
}

impl Entry {
    /// Makes this the answered entry of `answer`, written into the slot in place (not
    /// built and then moved: a slot is 280 bytes).
    fn answer(&mut self, answer: &[u8]) {
        if answer.len() > INLINE_ANSWER {
            *self = Self::Answered(Answer::Heap(Bytes::copy_from_slice(answer)));
            return;
        }
        *self = Self::Answered(Answer::Inline {
            len: 0,
            bytes: [0; INLINE_ANSWER],
        });
        if let Self::Answered(Answer::Inline { len, bytes }) = self {
            bytes[..answer.len()].copy_from_slice(answer);
            *len = answer.len() as u8;
        }
    }
}

impl Answer {
    fn as_slice(&self) -> &[u8] {
        match self {
            Self::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Self::Heap(bytes) => bytes,
        }
    }
}

/// One remembered request, in arrival order.
#[derive(Debug)]
struct Slot {
    key: DuplicateKey,
    expires: Instant,
    entry: Entry,
}

/// The size at which a cache has its whole capacity prepared (see [`Inner::grow`]).
const GROW_AT: usize = 4096;

/// A queue and an index for a cache's whole capacity, every page of them written already.
#[derive(Debug)]
struct Prepared {
    queue: VecDeque<Slot>,
    index: Vec<u64>,
}

impl Prepared {
    /// Allocates and writes (faults in) memory for `capacity` slots and an index at most
    /// half full: 0.1-0.5 s for 256 Ki slots (73 MiB) on the virtual machines we measure
    /// on, so called on a thread of its own.
    fn new(capacity: usize, index_len: usize) -> Self {
        let key = DuplicateKey {
            origin_host: u64::MAX,
            end_to_end: u32::MAX,
        };
        let expires = Instant::now();
        // Every slot written, then dropped: the buffer keeps its capacity and its pages.
        // (black_box: zeros written into fresh memory may be compiled into an allocation
        // of zeroed memory, which touches nothing.)
        let mut queue = Vec::with_capacity(capacity);
        queue.resize_with(capacity, || Slot {
            key: std::hint::black_box(key),
            expires,
            entry: Entry::Forgotten,
        });
        let mut queue = VecDeque::from(queue);
        queue.clear();
        let index = (0..index_len)
            .map(|_| std::hint::black_box(EMPTY))
            .collect();
        Self { queue, index }
    }
}

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
/// match (135 against 200 ns a request in that bench, before answers were copied into
/// their slots: 205-210 ns since, 280-byte slots).
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
    /// The size at which the whole capacity is prepared: [`GROW_AT`] (tests use less).
    grow_at: usize,
    /// The whole capacity's queue and index, while a thread prepares them.
    preparing: Option<mpsc::Receiver<Prepared>>,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            queue: VecDeque::new(),
            head: 0,
            index: Vec::new(),
            tag_mask: (1 << TAG_BITS) - 1,
            grow_at: GROW_AT,
            preparing: None,
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
        let len = index_len(capacity);
        if self.index.len() >= len {
            return;
        }
        self.index = vec![EMPTY; len];
        self.index_all();
    }

    /// Indexes every slot not forgotten (into an empty index).
    fn index_all(&mut self) {
        for n in 0..self.queue.len() {
            let slot = &self.queue[n];
            if !matches!(slot.entry, Entry::Forgotten) {
                let key = slot.key;
                self.index_insert(key, self.head + n as u64);
            }
        }
    }

    /// Sizes the cache for one more slot. Small at first (a quiet node's cache stays
    /// small); at `grow_at` slots, a thread starts preparing the whole capacity
    /// ([`Prepared`]) and, until it is ready, the index doubles as needed (the queue does
    /// by itself). Once ready, the slots move into the prepared queue, under the lock: a
    /// copy of the few thousand slots that came meanwhile, not megabytes of page faults.
    fn grow(&mut self, capacity: usize) {
        let full = index_len(capacity);
        if self.index.len() >= full && self.preparing.is_none() {
            return;
        }
        let len = self.queue.len();
        let grow_at = self.grow_at.min(capacity);
        if len < grow_at {
            self.reindex(grow_at);
            return;
        }
        if self.preparing.is_none() {
            let (ready, preparing) = mpsc::sync_channel(1);
            let started = std::thread::Builder::new()
                .name("duplicates-grow".into())
                .spawn(move || {
                    let _ = ready.send(Prepared::new(capacity, full));
                });
            if started.is_err() {
                // No thread to be had: the whole capacity now, on this one.
                self.adopt(Prepared::new(capacity, full));
                return;
            }
            self.preparing = Some(preparing);
        }
        let prepared = match self.preparing.as_ref().map(mpsc::Receiver::try_recv) {
            Some(Ok(prepared)) => Some(prepared),
            Some(Err(mpsc::TryRecvError::Empty)) | None => None,
            // The thread died (it only allocates: out of memory): here, then.
            Some(Err(mpsc::TryRecvError::Disconnected)) => Some(Prepared::new(capacity, full)),
        };
        match prepared {
            Some(prepared) => self.adopt(prepared),
            None => self.reindex(len + 1),
        }
    }

    /// Moves the slots into a prepared queue and indexes them in its index.
    fn adopt(&mut self, prepared: Prepared) {
        let Prepared { mut queue, index } = prepared;
        queue.extend(self.queue.drain(..));
        self.queue = queue;
        self.index = index;
        self.index_all();
        self.preparing = None;
    }
}

/// The index length for `capacity` slots: a power of two, at most half full.
fn index_len(capacity: usize) -> usize {
    (2 * capacity.max(1)).next_power_of_two()
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
                Entry::Answered(answer) => {
                    Seen::Answered(Bytes::copy_from_slice(answer.as_slice()))
                }
                Entry::InProgress | Entry::Forgotten => Seen::InProgress,
            };
        }
        inner.grow(self.capacity);
        inner.push(key, now + self.lifetime, Entry::InProgress);
        Seen::New
    }

    /// Records the answer sent to a request (a copy of it).
    pub fn complete(&self, key: DuplicateKey, answer: &[u8]) {
        if !self.is_enabled() {
            return;
        }
        let mut inner = self.lock();
        if let Some((_, seq)) = inner.find(key) {
            let at = (seq - inner.head) as usize;
            inner.queue[at].entry.answer(answer);
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
                    answer: answer.as_slice().to_vec(),
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
            let mut entry = Entry::InProgress;
            entry.answer(&cached.answer);
            inner.push(key, expires, entry);
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
        cache.complete(key, b"answer");
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
    fn a_busy_cache_gets_its_whole_capacity_prepared_off_the_lock_and_a_quiet_one_stays_small() {
        let t0 = Instant::now();
        let capacity = 3 * GROW_AT;
        let key = |id: u32| DuplicateKey::new(b"h", EndToEndId(id));
        let cache = DuplicateCache::new(Duration::from_secs(60), capacity);
        for id in 0..GROW_AT as u32 {
            cache.check(key(id), t0);
        }
        {
            let inner = cache.lock();
            assert!(inner.index.len() < index_len(capacity));
            assert!(inner.preparing.is_none(), "a quiet cache prepares nothing");
        }
        for id in 0..10 {
            cache.complete(key(id), format!("answer {id}").as_bytes());
        }
        // Past GROW_AT: a thread prepares the whole capacity while the cache goes on.
        let mut id = GROW_AT as u32;
        let waited = Instant::now();
        loop {
            assert_eq!(cache.check(key(id), t0), Seen::New);
            id += 1;
            let inner = cache.lock();
            assert!(inner.index.iter().filter(|&&e| e != EMPTY).count() * 2 <= inner.index.len());
            if inner.preparing.is_none() {
                break;
            }
            drop(inner);
            assert!(waited.elapsed() < Duration::from_secs(30), "never adopted");
            std::thread::sleep(Duration::from_micros(200));
        }
        let reserved = {
            let inner = cache.lock();
            assert_eq!(inner.index.len(), index_len(capacity));
            assert!(inner.queue.capacity() >= capacity);
            inner.queue.capacity()
        };
        // Every slot moved: answers and requests in progress alike.
        for id in 0..10 {
            assert_eq!(
                cache.check(key(id), t0),
                Seen::Answered(Bytes::from(format!("answer {id}"))),
            );
        }
        assert_eq!(cache.check(key(id - 1), t0), Seen::InProgress);
        for id in id..4 * GROW_AT as u32 {
            cache.check(key(id), t0);
        }
        // Full: the oldest go, and the queue stays in its prepared memory.
        assert_eq!(cache.len(), capacity);
        assert_eq!(cache.lock().queue.capacity(), reserved, "reallocated");
        assert_eq!(cache.check(key(0), t0), Seen::New, "the oldest went");
        assert_eq!(
            cache.check(key(4 * GROW_AT as u32 - 1), t0),
            Seen::InProgress,
            "the newest stayed"
        );
    }

    #[test]
    fn an_answer_longer_than_a_slot_holds_is_remembered_too() {
        let t0 = Instant::now();
        let cache = DuplicateCache::new(Duration::from_secs(60), 10);
        let answers: Vec<Vec<u8>> = [0, 1, INLINE_ANSWER, INLINE_ANSWER + 1, 4000]
            .iter()
            .map(|&len| (0..len).map(|i| (i % 251) as u8).collect())
            .collect();
        for (id, answer) in answers.iter().enumerate() {
            let key = DuplicateKey::new(b"h", EndToEndId(id as u32));
            cache.check(key, t0);
            cache.complete(key, answer);
        }
        // Carried to another cache as a hot upgrade does, and back from both.
        let other = DuplicateCache::new(Duration::from_secs(60), 10);
        other.import(cache.export(t0, 10), t0);
        for (id, answer) in answers.iter().enumerate() {
            let key = DuplicateKey::new(b"h", EndToEndId(id as u32));
            let expected = Seen::Answered(Bytes::from(answer.clone()));
            assert_eq!(cache.check(key, t0), expected, "{} bytes", answer.len());
            assert_eq!(
                other.check(key, t0),
                expected,
                "{} bytes, imported",
                answer.len()
            );
        }
    }

    /// The cache against a model (a plain queue searched from end to end) through a long
    /// random run at a steady size: every answer agrees, and the index never gets more than
    /// half full (no tombstones, no rehash).
    #[test]
    fn agrees_with_a_model_through_a_long_random_run() {
        agrees_with_a_model(None, 0, None);
    }

    /// The same with the whole capacity prepared from 32 slots on: the thread's queue and
    /// index are adopted whenever they are ready, at some random step of the run.
    #[test]
    fn agrees_with_a_model_across_the_adoption_of_a_prepared_capacity() {
        for _ in 0..5 {
            agrees_with_a_model(None, 0, Some(32));
        }
    }

    /// The same with sequence numbers passing 2^40 (an entry keeps their low 40 bits).
    #[test]
    fn agrees_with_a_model_across_the_sequence_numbers_wrap() {
        agrees_with_a_model(None, SEQ_MASK - 5_000, None);
    }

    /// The same with 4 hash bits per entry: most probes meet entries with the same bits
    /// (the key decides), and the index is longer than the bits cover (an entry's home
    /// position comes from its slot's key).
    #[test]
    fn agrees_with_a_model_with_few_hash_bits() {
        agrees_with_a_model(Some(0xF), 0, None);
    }

    fn agrees_with_a_model(tag_mask: Option<u64>, first_seq: u64, grow_at: Option<usize>) {
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
            if let Some(grow_at) = grow_at {
                inner.grow_at = grow_at;
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
                    cache.complete(key, &answer);
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
        if grow_at.is_some() {
            let inner = cache.lock();
            assert!(inner.preparing.is_none(), "never adopted");
            assert_eq!(inner.index.len(), index_len(capacity));
        }
    }
}
