//! Wake-ups at the plan's send times, to a tenth of a millisecond.
//!
//! Latency is measured from each message's intended send time (coordinated omission), so
//! the loadgen's own lateness counts against the system under test. tokio's timer rounds
//! every deadline up to its next millisecond tick: a session woke 0.5 ms late on average
//! and up to 1 ms, a quarter of a 2 ms budget spent before the request left.
//!
//! The pacer keeps a heap of (deadline, waker) and a Linux timerfd armed, with microsecond
//! precision, for the earliest deadline (at least [`QUANTUM`] after its last expiry, so it
//! costs at most 10,000 expiries a second however many sessions there are). The timerfd is
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

struct Queue {
    heap: BinaryHeap<Reverse<Entry>>,
    seq: u64,
    /// When the timer is set to expire (None: disarmed).
    armed: Option<Instant>,
    /// Its last expiry.
    last: Instant,
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
            queue: Mutex::new(Queue {
                heap: BinaryHeap::new(),
                seq: 0,
                armed: None,
                last: Instant::now(),
            }),
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
        queue.seq += 1;
        let seq = queue.seq;
        queue.heap.push(Reverse(Entry { at, seq, waker }));
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
        for Reverse(entry) in self.shared.lock().heap.drain() {
            entry.waker.wake();
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
            while queue.heap.peek().is_some_and(|Reverse(e)| e.at <= now) {
                let Some(Reverse(entry)) = queue.heap.pop() else {
                    break;
                };
                due.push(entry.waker);
            }
            if let Some(next) = queue.heap.peek().map(|Reverse(e)| e.at) {
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

    #[tokio::test]
    async fn a_passed_time_is_ready_at_once_and_a_later_one_after_it() {
        let pacer = Pacer::start().unwrap();
        pacer.until(Instant::now() - Duration::from_millis(1)).await;
        let at = Instant::now() + Duration::from_millis(3);
        pacer.until(at).await;
        assert!(Instant::now() >= at);
    }
}
