//! Wake-ups at the plan's send times, to a tenth of a millisecond.
//!
//! Latency is measured from each message's intended send time (coordinated omission), so
//! the loadgen's own lateness counts against the system under test. tokio's timer rounds
//! every deadline up to its next millisecond tick: a session woke 0.5 ms late on average
//! and up to 1 ms, a quarter of a 2 ms budget spent before the request left.
//!
//! The pacer keeps its (deadline, waker) pairs in a timing wheel (below) and a Linux timerfd
//! armed, with microsecond precision, for the earliest deadline (at least [`QUANTUM`] after
//! its last expiry, so it costs at most 10,000 expiries a second however many sessions
//! there are). The timerfd is
//! registered with tokio's reactor, so an expiry arrives with the runtime's other I/O
//! events: no thread of its own. (A first version with a sleeping thread measured the
//! same CPU per transaction at 40,000/s, 35.7 against 36.2 us; both cost about 7 us more
//! than tokio's timer, because requests no longer leave in millisecond bursts that every
//! process batches.) The task that reads it wakes every session that is due, from inside
//! the runtime.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use rustix::time::{Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec};
use tokio::io::unix::AsyncFd;

/// The shortest time between two expiries of the timer.
pub const QUANTUM: Duration = Duration::from_micros(100);

/// Buckets of the wheel: [`QUANTUM`]s ahead it covers (409.6 ms).
const WHEEL_SLOTS: usize = 4096;

struct Entry {
    at: Instant,
    seq: u64,
    waker: Waker,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// The deadlines: a timing wheel of [`WHEEL_SLOTS`] buckets, one per [`QUANTUM`] from the
/// current one, and a heap for those further ahead. Not a heap alone: every session sleeps
/// in it between its requests, and at 60,000 requests a second over 12,000 sessions the
/// heap's pops (a dozen levels of a 480 KB heap each) were 2% of the machine's CPU.
/// Pushing into a bucket and emptying one cost the same however many wait. Deadlines are
/// kept exactly: a bucket is a quantum wide, and an expiry wakes only what is due.
struct Queue {
    /// Bucket `tick % WHEEL_SLOTS` holds the deadlines of that tick (`tick` quanta after
    /// `origin`), for ticks `current..current + WHEEL_SLOTS`.
    wheel: Vec<Vec<(Instant, Waker)>>,
    /// A bit per bucket: not empty.
    occupied: Vec<u64>,
    /// The first tick not yet emptied (earlier deadlines have been woken).
    current: u64,
    origin: Instant,
    /// Deadlines beyond the wheel, moved into it as it turns.
    far: BinaryHeap<Reverse<Entry>>,
    seq: u64,
    /// When the timer is set to expire (None: disarmed).
    armed: Option<Instant>,
    /// Its last expiry.
    last: Instant,
}

impl Queue {
    fn new(now: Instant) -> Self {
        Self {
            wheel: (0..WHEEL_SLOTS).map(|_| Vec::new()).collect(),
            occupied: vec![0; WHEEL_SLOTS / 64],
            current: 0,
            origin: now,
            far: BinaryHeap::new(),
            seq: 0,
            armed: None,
            last: now,
        }
    }

    /// The tick of `at` (a deadline already passed: the current one).
    fn tick(&self, at: Instant) -> u64 {
        let tick = at.saturating_duration_since(self.origin).as_nanos() / QUANTUM.as_nanos();
        (tick as u64).max(self.current)
    }

    fn bucket(&mut self, tick: u64) -> &mut Vec<(Instant, Waker)> {
        let slot = (tick % WHEEL_SLOTS as u64) as usize;
        self.occupied[slot / 64] |= 1 << (slot % 64);
        &mut self.wheel[slot]
    }

    fn push(&mut self, at: Instant, waker: Waker) {
        let tick = self.tick(at);
        if tick < self.current + WHEEL_SLOTS as u64 {
            self.bucket(tick).push((at, waker));
        } else {
            self.seq += 1;
            let seq = self.seq;
            self.far.push(Reverse(Entry { at, seq, waker }));
        }
    }

    /// Moves the wakers of every deadline up to `now` into `due`.
    fn expire(&mut self, now: Instant, due: &mut Vec<Waker>) {
        let now_tick = self.tick(now);
        // Every bucket before now's is due whole (at most one turn of the wheel), now's in part.
        let first = self
            .current
            .max(now_tick.saturating_sub(WHEEL_SLOTS as u64 - 1));
        for tick in first..=now_tick {
            let slot = (tick % WHEEL_SLOTS as u64) as usize;
            if self.occupied[slot / 64] & (1 << (slot % 64)) == 0 {
                continue;
            }
            let bucket = &mut self.wheel[slot];
            if tick < now_tick {
                due.extend(bucket.drain(..).map(|(_, waker)| waker));
            } else {
                let mut i = 0;
                while i < bucket.len() {
                    if bucket[i].0 <= now {
                        due.push(bucket.swap_remove(i).1);
                    } else {
                        i += 1;
                    }
                }
            }
            if bucket.is_empty() {
                self.occupied[slot / 64] &= !(1 << (slot % 64));
            }
        }
        self.current = now_tick;
        // The wheel turned: the far deadlines it now covers move in (or are due).
        while let Some(Reverse(entry)) = self.far.peek() {
            let tick = self.tick(entry.at);
            if tick >= self.current + WHEEL_SLOTS as u64 {
                break;
            }
            let Some(Reverse(entry)) = self.far.pop() else {
                break;
            };
            if entry.at <= now {
                due.push(entry.waker);
            } else {
                self.bucket(tick).push((entry.at, entry.waker));
            }
        }
    }

    /// The earliest deadline: in the first bucket not empty from the current one (its
    /// smallest), or the heap's.
    fn next(&self) -> Option<Instant> {
        let start = (self.current % WHEEL_SLOTS as u64) as usize;
        let words = self.occupied.len();
        let in_wheel = (0..=words).find_map(|i| {
            // Words from the current bucket's on, around the wheel: the first word twice,
            // from the current bucket first, whole last (its lower buckets, the wheel's
            // far end: the rest was empty).
            let word = (start / 64 + i) % words;
            let mut bits = self.occupied[word];
            if i == 0 {
                bits &= u64::MAX << (start % 64);
            }
            (bits != 0).then(|| word * 64 + bits.trailing_zeros() as usize)
        });
        let wheel_min = in_wheel.and_then(|slot| self.wheel[slot].iter().map(|(at, _)| *at).min());
        let far_min = self.far.peek().map(|Reverse(e)| e.at);
        match (wheel_min, far_min) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn drain(&mut self) -> Vec<Waker> {
        let mut wakers: Vec<Waker> = self
            .wheel
            .iter_mut()
            .flat_map(|bucket| bucket.drain(..).map(|(_, waker)| waker))
            .collect();
        wakers.extend(self.far.drain().map(|Reverse(e)| e.waker));
        self.occupied.fill(0);
        wakers
    }
}

/// A monotonic instant as the timerfd's absolute time: `Instant` reads CLOCK_MONOTONIC.
struct Clock {
    origin: Instant,
    origin_ns: u128,
}

impl Clock {
    fn new() -> Self {
        let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        Self {
            origin: Instant::now(),
            origin_ns: ts.tv_sec as u128 * 1_000_000_000 + ts.tv_nsec as u128,
        }
    }

    fn timespec(&self, at: Instant) -> Timespec {
        let ns = self.origin_ns + at.saturating_duration_since(self.origin).as_nanos();
        Timespec {
            tv_sec: (ns / 1_000_000_000) as _,
            tv_nsec: (ns % 1_000_000_000) as _,
        }
    }
}

struct Shared {
    queue: Mutex<Queue>,
    timer: AsyncFd<OwnedFd>,
    clock: Clock,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the timer to expire at `at` (never sooner than [`QUANTUM`] after the last).
    fn arm(&self, queue: &mut Queue, at: Instant) {
        let at = at.max(queue.last + QUANTUM);
        let spec = Itimerspec {
            it_interval: Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: self.clock.timespec(at),
        };
        // Cannot fail for a valid timerfd and a normalised time.
        let _ =
            rustix::time::timerfd_settime(self.timer.get_ref(), TimerfdTimerFlags::ABSTIME, &spec);
        queue.armed = Some(at);
    }
}

/// The pacer: a timer and its queue of deadlines. Its task ends when the pacer is dropped.
pub struct Pacer {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Pacer {
    /// Creates the timer and starts its task on the current runtime.
    pub fn start() -> std::io::Result<Self> {
        let fd = rustix::time::timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        // `AsyncFd::new` is deprecated for types whose descriptor could change or close
        // under it (tokio#8587); an `OwnedFd` kept inside the `AsyncFd` for its whole life
        // is the case it is sound for, and `register` would need `unsafe` (forbidden here).
        #[allow(deprecated)]
        let timer = AsyncFd::new(fd)?;
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::new(Instant::now())),
            timer,
            clock: Clock::new(),
        });
        let task = tokio::spawn(expire(shared.clone()));
        Ok(Self { shared, task })
    }

    /// Completes at `at` (at once if it has passed).
    pub fn until(&self, at: Instant) -> Until<'_> {
        Until { pacer: self, at }
    }

    fn push(&self, at: Instant, waker: Waker) {
        let mut queue = self.shared.lock();
        queue.push(at, waker);
        // A new earliest deadline: the timer may be set for a later one.
        if queue.armed.is_none_or(|armed| at < armed) {
            self.shared.arm(&mut queue, at);
        }
    }
}

impl Drop for Pacer {
    fn drop(&mut self) {
        self.task.abort();
        // Nobody may be left waiting for ever.
        let wakers = self.shared.lock().drain();
        for waker in wakers {
            waker.wake();
        }
    }
}

/// The future of [`Pacer::until`].
pub struct Until<'a> {
    pacer: &'a Pacer,
    at: Instant,
}

impl Future for Until<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.at {
            return Poll::Ready(());
        }
        // Polled again before its time (a spurious wake-up): registered again; an extra
        // entry only wakes this task once more, which futures must tolerate.
        self.pacer.push(self.at, cx.waker().clone());
        Poll::Pending
    }
}

/// The timer's task: at each expiry, wakes every session that is due and sets the timer
/// for the next deadline.
async fn expire(shared: Arc<Shared>) {
    let mut due = Vec::new();
    loop {
        match shared.timer.readable().await {
            Ok(mut guard) => {
                let mut expirations = [0u8; 8];
                if let Err(rustix::io::Errno::AGAIN) =
                    rustix::io::read(shared.timer.get_ref(), &mut expirations)
                {
                    guard.clear_ready();
                    continue;
                }
            }
            Err(error) => {
                tracing::error!(%error, "the pacer's timer failed");
                return;
            }
        }
        let now = Instant::now();
        {
            let mut queue = shared.lock();
            queue.last = now;
            queue.armed = None;
            queue.expire(now, &mut due);
            if let Some(next) = queue.next() {
                shared.arm(&mut queue, next);
            }
        }
        for waker in due.drain(..) {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wakes_every_waiter_at_or_after_its_time() {
        let pacer = Arc::new(Pacer::start().unwrap());
        let origin = Instant::now() + Duration::from_millis(5);
        let mut tasks = Vec::new();
        for i in (0..200u64).rev() {
            let pacer = pacer.clone();
            let at = origin + Duration::from_micros(137 * i);
            tasks.push(tokio::spawn(async move {
                pacer.until(at).await;
                (at, Instant::now())
            }));
        }
        for task in tasks {
            let (at, woke) = task.await.unwrap();
            assert!(woke >= at, "woke {:?} before its time", at - woke);
        }
    }

    /// A waker that records its id when woken.
    struct Recorder {
        id: u64,
        woken: Arc<Mutex<Vec<u64>>>,
    }

    impl std::task::Wake for Recorder {
        fn wake(self: Arc<Self>) {
            self.woken.lock().unwrap().push(self.id);
        }
    }

    /// The queue against a model (a list searched whole) through random pushes and
    /// expiries: deadlines passed, within the wheel and beyond it, expiries a fraction of a
    /// quantum apart and whole turns of the wheel apart. Every expiry wakes exactly the
    /// deadlines passed, and the next deadline is the model's earliest.
    #[test]
    fn the_wheel_agrees_with_a_model() {
        let t0 = Instant::now();
        let mut queue = Queue::new(t0);
        let mut model: Vec<(Instant, u64)> = Vec::new();
        let woken = Arc::new(Mutex::new(Vec::new()));
        let mut rng = fastrand::Rng::with_seed(11);
        let mut now = t0;
        let mut id = 0;
        for step in 0..20_000 {
            if rng.u8(..3) > 0 {
                // Mostly within the next 0.5 s (the wheel covers 0.41), some passed already.
                let horizon_us = if rng.u8(..10) == 0 {
                    3_000_000
                } else {
                    500_000
                };
                let offset_us = rng.i64(-2_000..horizon_us);
                let at = if offset_us < 0 {
                    now - Duration::from_micros(offset_us.unsigned_abs())
                } else {
                    now + Duration::from_micros(offset_us as u64)
                };
                id += 1;
                let waker = Waker::from(Arc::new(Recorder {
                    id,
                    woken: woken.clone(),
                }));
                queue.push(at, waker);
                model.push((at, id));
            } else {
                now += match rng.u8(..20) {
                    0 => Duration::from_millis(rng.u64(300..1_500)),
                    _ => Duration::from_micros(rng.u64(0..400)),
                };
                let mut due = Vec::new();
                queue.expire(now, &mut due);
                due.into_iter().for_each(Waker::wake);
                let mut got = std::mem::take(&mut *woken.lock().unwrap());
                got.sort_unstable();
                let mut expected: Vec<u64> = model
                    .iter()
                    .filter(|(at, _)| *at <= now)
                    .map(|(_, id)| *id)
                    .collect();
                expected.sort_unstable();
                model.retain(|(at, _)| *at > now);
                assert_eq!(got, expected, "step {step}");
            }
            assert_eq!(
                queue.next(),
                model.iter().map(|(at, _)| *at).min(),
                "step {step}"
            );
        }
        let left = queue.drain().len();
        assert_eq!(left, model.len());
    }

    #[tokio::test]
    async fn a_passed_time_is_ready_at_once_and_a_later_one_after_it() {
        let pacer = Pacer::start().unwrap();
        pacer.until(Instant::now() - Duration::from_millis(1)).await;
        let at = Instant::now() + Duration::from_millis(3);
        pacer.until(at).await;
        assert!(Instant::now() >= at);
    }
}
