//! Typed messages: one struct per command that is both the zero-copy view (decoded from a
//! [`MessageView`](crate::message::MessageView), borrowing its strings) and the builder
//! (encoded with [`Command::encode`](crate::grammar::Command::encode)).
//!
//! ```
//! use bytes::BytesMut;
//! use protocol::grammar::{Command, Envelope};
//! use protocol::header::{ApplicationId, EndToEndId, HopByHopId};
//! use protocol::message::MessageView;
//! use protocol::messages::Dwr;
//!
//! let dwr = Dwr { origin_host: "gw.example.net", origin_realm: "example.net", origin_state_id: Some(7) };
//! let mut buf = BytesMut::new();
//! dwr.encode(Envelope::request(ApplicationId::COMMON, HopByHopId(1), EndToEndId(2)), &mut buf);
//! let view = MessageView::parse(&buf).unwrap();
//! assert_eq!(Dwr::decode(&view).unwrap(), dwr);
//! ```

mod accounting;
mod base;
mod credit_control;
mod error_answer;
mod session;

pub use accounting::{Aca, Acr};
pub use base::{Cea, Cer, Dpa, Dpr, Dwa, Dwr, VendorSpecificApplicationId};
pub use credit_control::{
    Cca, Ccr, FinalUnitIndication, MultipleServicesCreditControl, ServiceUnit, SubscriptionId,
};
pub use error_answer::{encode_error_answer, ErrorAnswer};
pub use session::{Asa, Asr, Raa, Rar};

#[cfg(test)]
mod tests;
