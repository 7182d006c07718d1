//! Integration tests of the protocol crate, one binary: wire vectors, interop with an
//! independent decoder.
mod vectors;
