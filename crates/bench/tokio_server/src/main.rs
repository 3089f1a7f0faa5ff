//! The Tokio comparison server (being written).
fn main() {
    eprintln!("tokio_server is not there yet");
    std::process::exit(2);
}
