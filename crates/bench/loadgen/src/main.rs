//! The load generator (being written).
fn main() {
    eprintln!("loadgen is not there yet");
    std::process::exit(2);
}
