//! Integration tests of the protocol crate, in one binary: wire vectors, interop with an
//! independent decoder (tshark), and the tokio transport over loopback sockets.
mod transport;
mod vectors;
