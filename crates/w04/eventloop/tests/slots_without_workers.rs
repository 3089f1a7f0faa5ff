//! Slots on the main thread and on plain threads, without a dispatcher: the part of `slot` that
//! Miri can run (no epoll), so CI checks it for undefined behaviour — the `thread_local!` table,
//! the `Rc` values, a freed index reused, values left behind at a thread's exit.
//!
//! Its own test binary, so its slot indices are the only ones in the process.

use std::cell::Cell;
use std::rc::Rc;

use eventloop::{Slot, ThreadLocal};

thread_local! {
    /// How many values of [`Counted`] were dropped on this thread.
    static DROPPED: Cell<usize> = const { Cell::new(0) };
}

/// A value that counts its drops.
#[derive(Debug)]
struct Counted(u32);

impl Drop for Counted {
    fn drop(&mut self) {
        // `try_with`: a value left at a thread's exit may be dropped while its locals are torn down.
        let _ = DROPPED.try_with(|dropped| dropped.set(dropped.get() + 1));
    }
}

#[test]
fn main_thread_values_are_set_replaced_reused_and_dropped() {
    let tls = ThreadLocal::new();
    let first: Slot<Counted> = tls.allocate_slot().expect("a slot");
    assert!(first.get().is_none(), "nothing before the first set");
    first.set(|| Counted(1)).expect("set on the main thread");
    let held: Rc<Counted> = first.get().expect("the value");
    assert_eq!(held.0, 1);
    first.set(|| Counted(2)).expect("a second set");
    assert_eq!(first.get().expect("the new value").0, 2);
    // The old value lives on while a reader holds it, and is dropped with the last `Rc`.
    assert_eq!(held.0, 1);
    let before = DROPPED.with(Cell::get);
    drop(held);
    assert_eq!(DROPPED.with(Cell::get), before + 1);

    // A dropped slot's value goes with it, and a slot that reuses its index sees nothing of it.
    drop(first);
    assert_eq!(DROPPED.with(Cell::get), before + 2);
    let second: Slot<String> = tls.allocate_slot().expect("a slot in the freed index");
    assert!(second.get().is_none(), "a reused index starts empty");
    second.set(|| "two".to_owned()).expect("set");
    assert_eq!(second.get().as_deref().map(String::as_str), Some("two"));

    tls.shutdown_global().expect("shutdown on the main thread");
    assert!(
        second.get().is_none(),
        "shutdown drops the main thread's values"
    );
    assert!(
        second.set(|| "late".to_owned()).is_err(),
        "no set after shutdown"
    );
}

#[test]
fn a_thread_that_exits_with_values_installed_drops_them() {
    let tls = ThreadLocal::new();
    let slot: Slot<Counted> = tls.allocate_slot().expect("a slot");
    slot.set(|| Counted(7)).expect("set");
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // A plain thread with an instance of its own (its main thread, for that instance).
                let other = ThreadLocal::new();
                let local: Slot<Counted> = other.allocate_slot().expect("its own slot");
                local
                    .set(|| Counted(8))
                    .expect("set on its own main thread");
                assert_eq!(local.get().expect("its value").0, 8);
                // The thread exits with the value still installed: it is dropped at exit.
            })
            .join()
            .expect("the thread ends cleanly");
    });
    assert_eq!(slot.get().expect("still here").0, 7);
    tls.shutdown_global().expect("shutdown");
}
