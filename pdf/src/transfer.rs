//! The `migrate` strategy's unit of transfer: a batch of accounts and their live sessions,
//! as one node hands them to another (`POST /import` on the new node's admin port).
//!
//! Everything a moved session needs to carry on where it was: the account's money (free
//! and held), what earlier owners debited (so the books can be summed), each session's
//! reservation, grant state, expiry and last answer (CC-Request-Number, Result-Code, units:
//! a retransmission of the request answered last is answered the same, and charged once).
//! Each account travels with its ownership epoch: the receiving node imports an epoch once,
//! so a batch sent twice moves no money twice.
//!
//! The encoding lives here alone (JSON today) so that it can switch to the hot upgrade's
//! versioned binary snapshot records without touching the rest.

use serde::{Deserialize, Serialize};

/// One batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// The sending node's Diameter URI (`aaa://host:port;transport=tcp`): where accounts
    /// the receiver does not own yet are served until they move.
    pub from: String,
    /// The batch's number in its migration (for logs).
    pub seq: u64,
    /// The accounts.
    pub accounts: Vec<AccountState>,
    /// Their live sessions.
    pub sessions: Vec<SessionState>,
}

/// An account as it moves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountState {
    /// The account id (the same population on both nodes).
    pub id: u32,
    /// The ownership epoch the receiver takes it with (the sender's plus one).
    pub epoch: u64,
    /// Free money.
    pub balance: i64,
    /// Money held by the sessions below.
    pub reserved: i64,
    /// What every earlier owner debited, this sender included.
    pub debited_before: i64,
}

/// A live Credit-Control session as it moves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionState {
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
    /// The last CC-Request-Number answered.
    pub last_number: u32,
    /// The last answer's Result-Code index (`crate::sessions::RESULTS`).
    pub last_result: u8,
    /// Units the last answer granted.
    pub last_granted: u32,
    /// Whether the last answer carried Final-Unit-Indication.
    pub last_final: bool,
}

impl Batch {
    /// The bytes sent to the receiving node.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a batch always serialises")
    }

    /// Reads a batch.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("unreadable batch: {e}"))
    }

    /// Money the batch carries: free plus held.
    pub fn money(&self) -> i64 {
        self.accounts.iter().map(|a| a.balance + a.reserved).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_survives_its_encoding() {
        let batch = Batch {
            from: "aaa://127.0.0.1:3868;transport=tcp".into(),
            seq: 3,
            accounts: vec![AccountState {
                id: 7,
                epoch: 1,
                balance: 90,
                reserved: 10,
                debited_before: 20,
            }],
            sessions: vec![SessionState {
                session_id: "gw;1;2".into(),
                account: 7,
                rating_group: 1,
                reserved: 10,
                expires_in: 1200,
                final_units: false,
                abort_sent: false,
                last_number: 4,
                last_result: 0,
                last_granted: 30,
                last_final: false,
            }],
        };
        assert_eq!(Batch::decode(&batch.encode()), Ok(batch.clone()));
        assert_eq!(batch.money(), 100);
        assert!(Batch::decode(b"{").is_err());
    }
}
