//! `report_worker_panics_with`, in a test binary of its own because a panic hook is
//! process-wide: a worker's panic goes to the reporter, any other thread's does not.

use std::sync::{Arc, Mutex};

#[test]
fn a_worker_panic_goes_to_the_reporter_and_another_threads_does_not() {
    let reported: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = Arc::clone(&reported);
    thread_pool::report_worker_panics_with("hook-test-worker", move |info| {
        let message = info.payload().downcast_ref::<&str>().copied();
        sink.lock().unwrap().push(message.unwrap_or("?").to_owned());
    });
    let panic_on = |name: &str, message: &'static str| {
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || std::panic::panic_any(message))
            .unwrap()
            .join()
            .unwrap_err();
    };
    panic_on("hook-test-worker-0", "on a worker");
    panic_on("another-thread", "elsewhere");
    assert_eq!(*reported.lock().unwrap(), ["on a worker"]);
}
