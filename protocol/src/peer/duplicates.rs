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

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
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
}

/// The key is already a hash (FNV of the host) plus an id: mixing them is enough, SipHash
/// per request would cost more than the rest of the lookup.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u32(&mut self, value: u32) {
        self.0 = (self.0 ^ u64::from(value)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    fn write_u64(&mut self, value: u64) {
        self.0 = (self.0 ^ value).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// The size at which a cache reserves its whole capacity (see [`DuplicateCache::grow`]).
const GROW_AT: usize = 4096;

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<DuplicateKey, Entry, BuildHasherDefault<KeyHasher>>,
    order: VecDeque<(Instant, DuplicateKey)>,
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
        self.grow(&mut inner);
        // One probe of the map for the look-up and the insertion (a cold cache line each
        // in a full cache: one per request less).
        let seen = match inner.entries.entry(key) {
            std::collections::hash_map::Entry::Occupied(entry) => match entry.get() {
                Entry::InProgress => Seen::InProgress,
                Entry::Answered(answer) => Seen::Answered(answer.clone()),
            },
            std::collections::hash_map::Entry::Vacant(entry) => {
                entry.insert(Entry::InProgress);
                Seen::New
            }
        };
        if matches!(seen, Seen::New) {
            inner.order.push_back((now + self.lifetime, key));
        }
        seen
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
            if let Some(entry) = inner.entries.get_mut(&key) {
                *entry = Entry::Answered(answer);
            }
        }
    }

    /// Forgets a request that will not be answered (its connection went away), so that a
    /// retransmission is processed.
    pub fn forget(&self, key: DuplicateKey) {
        let mut inner = self.lock();
        if let Some(Entry::InProgress) = inner.entries.get(&key) {
            inner.entries.remove(&key);
        }
    }

    /// The `limit` most recent answered requests remembered, oldest first, for a hot upgrade
    /// to carry to the next process (requests in progress are not: every one is answered
    /// before a hand-over).
    pub fn export(&self, now: Instant, limit: usize) -> Vec<CachedAnswer> {
        let inner = self.lock();
        let mut answers: Vec<CachedAnswer> = inner
            .order
            .iter()
            .rev()
            .filter_map(|&(expires, key)| match inner.entries.get(&key) {
                Some(Entry::Answered(answer)) if expires > now => Some(CachedAnswer {
                    origin_host_hash: key.origin_host,
                    end_to_end: key.end_to_end,
                    answer: answer.to_vec(),
                    remaining_ms: expires.duration_since(now).as_millis() as u64,
                }),
                _ => None,
            })
            .take(limit)
            .collect();
        answers.reverse();
        answers
    }

    /// Remembers answers exported by another process's cache.
    pub fn import(&self, answers: Vec<CachedAnswer>, now: Instant) {
        if !self.is_enabled() {
            return;
        }
        let mut inner = self.lock();
        self.grow(&mut inner);
        for cached in answers {
            let key = DuplicateKey {
                origin_host: cached.origin_host_hash,
                end_to_end: cached.end_to_end,
            };
            let expires = now + Duration::from_millis(cached.remaining_ms).min(self.lifetime);
            if inner
                .entries
                .insert(key, Entry::Answered(Bytes::from(cached.answer)))
                .is_none()
            {
                inner.order.push_back((expires, key));
            }
        }
        inner
            .order
            .make_contiguous()
            .sort_by_key(|&(expires, _)| expires);
    }

    /// How many requests are remembered.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves the map consistent (single operations).
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Once a cache holds [`GROW_AT`] entries it takes its full capacity at once: growing by
    /// doubling rehashes the whole map (and moves the whole queue) under the lock, every
    /// request of the node waiting: at 229,377 entries of the default 256 Ki that stalled
    /// the gateway and the pdf for tens of milliseconds under load (BENCHMARKS.md, the
    /// knee). The memory is what the map reaches anyway once full; a node that sees few
    /// requests never reserves it.
    fn grow(&self, inner: &mut Inner) {
        let len = inner.entries.len();
        if len >= GROW_AT && inner.entries.capacity() < self.capacity {
            inner.entries.reserve(self.capacity - len);
            let queued = inner.order.len();
            inner.order.reserve(self.capacity.saturating_sub(queued));
        }
    }

    fn evict(&self, inner: &mut Inner, now: Instant) {
        while let Some(&(expiry, key)) = inner.order.front() {
            if expiry > now && inner.order.len() < self.capacity {
                break;
            }
            inner.order.pop_front();
            inner.entries.remove(&key);
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
        assert!(cache.lock().entries.capacity() < 3 * GROW_AT);
        cache.check(DuplicateKey::new(b"h", EndToEndId(u32::MAX)), t0);
        assert!(cache.lock().entries.capacity() >= 3 * GROW_AT);
        assert!(cache.lock().order.capacity() >= 3 * GROW_AT);
        for id in GROW_AT as u32..4 * GROW_AT as u32 {
            cache.check(DuplicateKey::new(b"h", EndToEndId(id)), t0);
        }
        // Full: the oldest go.
        assert_eq!(cache.len(), 3 * GROW_AT);
    }
}
