//! The table of requests sent and not yet answered on one connection, keyed by hop-by-hop id
//! (RFC 6733 section 3: an answer carries its request's hop-by-hop id), with a deadline
//! each. Deadlines are kept in order so that the next timeout is found in O(log n).

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use crate::header::{CommandCode, EndToEndId, HopByHopId};

/// What is remembered of a request in flight.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PendingRequest {
    /// The request's command.
    pub command: CommandCode,
    /// Its end-to-end id (to re-send it elsewhere with the T flag).
    pub end_to_end: EndToEndId,
    /// When it times out.
    pub deadline: Instant,
}

/// Requests in flight on one connection.
#[derive(Debug, Default)]
pub struct PendingRequests {
    by_hop: HashMap<u32, PendingRequest>,
    deadlines: BTreeSet<(Instant, u32)>,
}

impl PendingRequests {
    /// How many requests are in flight.
    pub fn len(&self) -> usize {
        self.by_hop.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.by_hop.is_empty()
    }

    /// Records a request; returns false (and records nothing) if the id is already in use.
    pub fn insert(&mut self, hop: HopByHopId, request: PendingRequest) -> bool {
        if self.by_hop.contains_key(&hop.0) {
            return false;
        }
        self.deadlines.insert((request.deadline, hop.0));
        self.by_hop.insert(hop.0, request);
        true
    }

    /// Removes the request an answer belongs to.
    pub fn remove(&mut self, hop: HopByHopId) -> Option<PendingRequest> {
        let request = self.by_hop.remove(&hop.0)?;
        self.deadlines.remove(&(request.deadline, hop.0));
        Some(request)
    }

    /// The earliest deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(deadline, _)| *deadline)
    }

    /// Removes and returns one request whose deadline is at or before `now`.
    pub fn pop_expired(&mut self, now: Instant) -> Option<(HopByHopId, PendingRequest)> {
        let &(deadline, hop) = self.deadlines.first()?;
        if deadline > now {
            return None;
        }
        self.deadlines.pop_first();
        let request = self.by_hop.remove(&hop)?;
        Some((HopByHopId(hop), request))
    }

    /// Removes every request (the connection is gone).
    pub fn drain(&mut self) -> impl Iterator<Item = (HopByHopId, PendingRequest)> + '_ {
        self.deadlines.clear();
        self.by_hop
            .drain()
            .map(|(hop, request)| (HopByHopId(hop), request))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn matches_and_expires_in_deadline_order() {
        let t0 = Instant::now();
        let mut table = PendingRequests::default();
        let request = |s| PendingRequest {
            command: CommandCode::CREDIT_CONTROL,
            end_to_end: EndToEndId(s),
            deadline: t0 + Duration::from_secs(u64::from(s)),
        };
        assert!(table.insert(HopByHopId(1), request(3)));
        assert!(table.insert(HopByHopId(2), request(1)));
        assert!(table.insert(HopByHopId(3), request(2)));
        assert!(!table.insert(HopByHopId(3), request(9)), "ids are unique");
        assert_eq!(table.next_deadline(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(
            table.remove(HopByHopId(3)).map(|r| r.end_to_end),
            Some(EndToEndId(2))
        );
        assert_eq!(table.remove(HopByHopId(3)), None);
        let now = t0 + Duration::from_secs(2);
        assert_eq!(
            table.pop_expired(now).map(|(hop, _)| hop),
            Some(HopByHopId(2))
        );
        assert_eq!(table.pop_expired(now), None);
        assert_eq!(table.len(), 1);
        assert_eq!(table.drain().count(), 1);
        assert!(table.is_empty() && table.next_deadline().is_none());
    }
}
