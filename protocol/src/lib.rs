//! Zero-copy Diameter codec shared by the gateway, the PDF and the load generator.
//!
//! The protocol crate knows Diameter (RFC 6733) and Credit-Control (RFC 4006/8506), nothing
//! about gateways, PDFs or scenarios. Its core does no IO and never reads the clock:
//!
//! - [`header`] and [`avp`]: the wire layouts, parsed as views over borrowed bytes;
//! - [`message`]: a message as a view ([`message::MessageView`]) or owned frozen `Bytes`;
//! - [`encode`]: writing straight into a `BytesMut` with back-patched lengths;
//! - [`dictionary`] and [`result_code`]: the codes we use, checked against the RFCs;
//! - [`grammar`] and [`messages`]: typed commands (CER ... RAA) that decode without
//!   allocating and encode in grammar order;
//! - [`error`]: one error enum, each variant mapped to a Result-Code and Failed-AVP or to
//!   closing the connection;
//! - [`framing`]: finding message boundaries in a stream, with a tokio-util codec behind the
//!   `tokio` feature.
//!
//! ```
//! use protocol::grammar::Command;
//! use protocol::message::MessageView;
//! use protocol::messages::Ccr;
//!
//! let hex = include_str!("../../../shared/vectors/ccr-update.hex");
//! let bytes: Vec<u8> = (0..hex.trim().len())
//!     .step_by(2)
//!     .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
//!     .collect();
//! let ccr = Ccr::decode(&MessageView::parse(&bytes).unwrap()).unwrap();
//! assert_eq!(ccr.cc_request_number, 7);
//! assert_eq!(ccr.multiple_services_credit_control[0].rating_group, Some(10));
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod avp;
pub mod dictionary;
pub mod encode;
pub mod error;
pub mod framing;
pub mod grammar;
pub mod header;
pub mod message;
pub mod messages;
pub mod peer;
pub mod result_code;
pub mod session_id;
#[cfg(feature = "tokio")]
pub mod transport;

#[doc(hidden)]
pub mod __private {
    pub use bytes::BytesMut;
}
