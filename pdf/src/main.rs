//! The `pdf` binary.
fn main() {}
