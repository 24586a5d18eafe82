//! Placeholder while the benchmark is written.
mod baseline;
fn main() {}
