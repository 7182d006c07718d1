//! The transport failure algorithm of RFC 3539 section 3.4.1, as RFC 6733 section 5.5 uses
//! it: DWR after Tw of silence, SUSPECT when the DWA does not come within another Tw, DOWN
//! after one more.
//!
//! Tw is jittered by up to +/- 2 s around its configured value, which is never below 6 s
//! (RFC 3539 section 3.4.1), so that many connections opened together do not probe in step.

use std::time::{Duration, Instant};

/// The smallest Tw RFC 3539 allows.
pub const MIN_WATCHDOG_INTERVAL: Duration = Duration::from_secs(6);
/// The jitter applied to each Tw.
const JITTER: Duration = Duration::from_secs(2);

/// The watchdog's view of the connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum WatchdogState {
    /// Answers arrive.
    Okay,
    /// A DWR went unanswered for Tw: stop sending new requests here (fail over).
    Suspect,
    /// A second Tw passed: the connection is dead.
    Down,
}

/// What the watchdog wants done when its timer fires.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum WatchdogAction {
    /// Nothing.
    None,
    /// Send a DWR.
    SendDwr,
    /// The connection became suspect.
    Suspect,
    /// Close the connection.
    Close,
}

/// RFC 3539 watchdog for one connection.
#[derive(Debug)]
pub struct Watchdog {
    interval: Duration,
    state: WatchdogState,
    dwr_pending: bool,
    deadline: Instant,
    rng: fastrand::Rng,
}

impl Watchdog {
    /// A watchdog with Tw = `interval` (raised to 6 s if lower), armed at `now`.
    pub fn new(interval: Duration, now: Instant, seed: u64) -> Self {
        let mut watchdog = Self {
            interval: interval.max(MIN_WATCHDOG_INTERVAL),
            state: WatchdogState::Okay,
            dwr_pending: false,
            deadline: now,
            rng: fastrand::Rng::with_seed(seed),
        };
        watchdog.rearm(now);
        watchdog
    }

    /// The current state.
    pub fn state(&self) -> WatchdogState {
        self.state
    }

    /// When the timer fires next.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Whether a DWR is outstanding.
    pub fn dwr_pending(&self) -> bool {
        self.dwr_pending
    }

    fn rearm(&mut self, now: Instant) {
        // Tw - 2 s + uniform [0, 4 s): never below Tw's floor minus the jitter.
        let jitter_ms = self.rng.u64(0..(2 * JITTER.as_millis() as u64));
        self.deadline = now + self.interval - JITTER + Duration::from_millis(jitter_ms);
    }

    /// Any message other than a DWA arrived. Returns true if this brought the connection
    /// back from SUSPECT.
    pub fn on_receive(&mut self, now: Instant) -> bool {
        self.rearm(now);
        self.recover()
    }

    /// A DWA arrived. Returns true if this brought the connection back from SUSPECT.
    pub fn on_dwa(&mut self, now: Instant) -> bool {
        self.dwr_pending = false;
        self.rearm(now);
        self.recover()
    }

    fn recover(&mut self) -> bool {
        if self.state == WatchdogState::Suspect {
            self.state = WatchdogState::Okay;
            return true;
        }
        false
    }

    /// Called at or after [`deadline`](Self::deadline).
    pub fn on_timeout(&mut self, now: Instant) -> WatchdogAction {
        if now < self.deadline {
            return WatchdogAction::None;
        }
        self.rearm(now);
        match (self.state, self.dwr_pending) {
            (WatchdogState::Okay, false) => {
                self.dwr_pending = true;
                WatchdogAction::SendDwr
            }
            (WatchdogState::Okay, true) => {
                self.state = WatchdogState::Suspect;
                WatchdogAction::Suspect
            }
            (WatchdogState::Suspect, _) | (WatchdogState::Down, _) => {
                self.state = WatchdogState::Down;
                WatchdogAction::Close
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn okay_suspect_down() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(Duration::from_secs(30), t0, 1);
        let tw = w.deadline() - t0;
        assert!(
            tw >= Duration::from_secs(28) && tw < Duration::from_secs(32),
            "{tw:?}"
        );
        assert_eq!(
            w.on_timeout(t0 + Duration::from_secs(1)),
            WatchdogAction::None
        );
        let t1 = w.deadline();
        assert_eq!(w.on_timeout(t1), WatchdogAction::SendDwr);
        let t2 = w.deadline();
        assert_eq!(w.on_timeout(t2), WatchdogAction::Suspect);
        assert_eq!(w.state(), WatchdogState::Suspect);
        assert!(w.on_dwa(t2), "a DWA recovers a suspect connection");
        let t3 = w.deadline();
        assert_eq!(w.on_timeout(t3), WatchdogAction::SendDwr);
        let t4 = w.deadline();
        assert_eq!(w.on_timeout(t4), WatchdogAction::Suspect);
        let t5 = w.deadline();
        assert_eq!(w.on_timeout(t5), WatchdogAction::Close);
        assert_eq!(w.state(), WatchdogState::Down);
    }

    #[test]
    fn traffic_postpones_the_dwr_and_tw_has_a_floor() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(Duration::from_secs(1), t0, 7);
        assert!(
            w.deadline() - t0 >= Duration::from_secs(4),
            "Tw is at least 6 s - 2 s jitter"
        );
        let before = w.deadline();
        w.on_receive(before - Duration::from_millis(1));
        assert!(w.deadline() > before);
        assert_eq!(w.on_timeout(before), WatchdogAction::None);
    }
}
