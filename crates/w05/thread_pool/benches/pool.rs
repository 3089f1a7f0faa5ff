//! Pool benchmarks (being written).
fn main() {}
