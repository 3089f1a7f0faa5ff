//! Unit tests of `intake`, in a file of their own so the course's starter code
//! can declare them and run these very tests against a student's code.

use super::*;
use loom::sync::Arc;
use loom::thread;

/// A producer blocked on a full intake is woken by the worker that takes a task: two
/// reservations through a capacity-1 intake always complete.
#[test]
fn loom_intake_blocked_producer_is_woken_by_task_taken() {
    loom::model(|| {
        let intake = Arc::new(Intake::new(1));
        // Stands in for the deque: tasks whose reservation succeeded and which were pushed.
        let published = Arc::new(loom::sync::atomic::AtomicUsize::new(0));
        let producer = {
            let intake = Arc::clone(&intake);
            let published = Arc::clone(&published);
            thread::spawn(move || {
                for _ in 0..2 {
                    intake.reserve().unwrap();
                    published.fetch_add(1, Ordering::Release);
                }
            })
        };
        // The worker takes two tasks, each once it has been published.
        let mut taken = 0;
        while taken < 2 {
            if published.load(Ordering::Acquire) > taken {
                intake.task_taken();
                taken += 1;
            } else {
                thread::yield_now();
            }
        }
        producer.join().unwrap();
        assert_eq!(intake.pending(), 0);
    });
}

/// Shutdown releases a producer blocked on a full intake, and nothing reserved after the
/// shutdown: the intake drains once the reserved task is taken.
#[test]
fn loom_intake_shutdown_releases_blocked_producer() {
    loom::model(|| {
        let intake = Arc::new(Intake::new(1));
        intake.reserve().unwrap();
        let producer = {
            let intake = Arc::clone(&intake);
            thread::spawn(move || intake.reserve())
        };
        assert!(intake.shut_down());
        let outcome = producer.join().unwrap();
        assert_eq!(
            outcome.map_err(|refusal| refusal.reason),
            Err(Refused::ShutDown)
        );
        assert!(!intake.is_drained(), "one accepted task is still pending");
        assert!(intake.task_taken(), "the last pending task after shutdown");
        assert!(intake.is_drained());
    });
}

/// A reservation racing the shutdown is either refused or counted, so "drained" is only ever
/// reported once the accepted task was taken.
#[test]
fn loom_intake_reservation_racing_shutdown_is_never_lost() {
    loom::model(|| {
        let intake = Arc::new(Intake::new(4));
        let producer = {
            let intake = Arc::clone(&intake);
            thread::spawn(move || intake.try_reserve().is_ok())
        };
        intake.shut_down();
        let accepted = producer.join().unwrap();
        assert_eq!(intake.is_drained(), !accepted);
        if accepted {
            assert!(intake.task_taken());
            assert!(intake.is_drained());
        }
    });
}
