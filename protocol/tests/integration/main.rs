//! Integration tests of the protocol crate, in one binary: wire vectors, interop with an
//! independent decoder (tshark) and an independent stack (Erlang/OTP's diameter), and the
//! tokio transport over loopback sockets.
mod handover;
mod otp;
mod transport;
mod tshark;
mod vectors;
