//! Thread-local slots: one value per dispatcher thread, read without a lock.
//!
//! Envoy's answer to shared mutable state is not to share it: configuration, caches and stats
//! that every worker reads all the time are kept as *one copy per thread*. A [`Slot`] names such
//! a value. The main thread [`set`](Slot::set)s it with an *initialiser*, and the initialiser is
//! posted to every registered dispatcher thread, so each thread builds its own value on its own
//! thread. [`get`](Slot::get) then reads the calling thread's copy from a `thread_local!` table:
//! no lock, no atomic read-modify-write, no cache line bouncing between cores. An update is a
//! new `set`: the threads switch to the new value one by one, each at a point where it is
//! between callbacks, which is what makes the scheme safe without locks.
//!
//! The pieces:
//!
//! - [`ThreadLocal`] (Envoy's `ThreadLocal::Instance`) is created on the main thread. Dispatcher
//!   threads are registered with it ([`register_thread`](ThreadLocal::register_thread)) before
//!   any slot is allocated, and it allocates slots
//!   ([`allocate_slot`](ThreadLocal::allocate_slot)).
//! - Each thread's values live in a `thread_local!` vector indexed by slot. Every value records
//!   the unique id of the slot that installed it, so a slot index that is freed and reused can
//!   never hand out the old slot's value, not even on a thread whose cleanup has not run yet.
//! - Dropping a [`Slot`] while its updates are still queued on other threads is safe: the queued
//!   initialisers hold the slot's shared state alive (no use after free), check that the slot is
//!   still alive before installing anything (no stale value), and a cleanup posted behind them
//!   removes whatever the slot had installed.
//! - Shutdown: [`shutdown_global`](ThreadLocal::shutdown_global) stops all further `set`s and
//!   posts to every registered thread a callback that drops that thread's values of the
//!   instance's slots (Envoy's `shutdownThread`), then drops the main thread's.
//!
//! # Failure modes it is safe against
//!
//! - **A panicking initialiser.** An initialiser that panics on a dispatcher thread is caught
//!   there: the thread keeps running, the slot has no value on it (an older value is removed, so
//!   nothing stale is served), the failure is written to stderr and counted in
//!   [`Slot::failed_initialisations`]. On the main thread the panic reaches the caller of `set`.
//! - **A thread that exits with values still installed** (a pool stopped before
//!   `shutdown_global`). A [`Worker`](crate::Worker) tears its thread's values down when its loop
//!   has returned, while the thread's locals are all still alive, in *reverse* slot order (as
//!   Envoy does), so a value whose drop reads an earlier slot still finds it. On any other
//!   thread, values left at thread exit are dropped, in reverse order too, while the table itself
//!   is being destroyed; a [`Slot::get`] from such a drop returns `None` instead of panicking on a
//!   destroyed thread-local (which would abort the process).

use std::any::Any;
use std::cell::RefCell;
use std::marker::PhantomData;
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, ThreadId};

use crate::dispatcher::DispatcherHandle;
use crate::slab::{Key, Slab};

/// Why a thread-local operation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SlotError {
    /// The operation belongs to the main thread (the one that created the [`ThreadLocal`]).
    NotMainThread,
    /// [`ThreadLocal::shutdown_global`] has run.
    ShutDown,
    /// Threads must be registered before the first slot is allocated, so that every slot's
    /// value reaches every thread.
    SlotsAlreadyAllocated,
}

impl std::fmt::Display for SlotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SlotError::NotMainThread => write!(f, "only the main thread may do this"),
            SlotError::ShutDown => write!(f, "thread-local storage has been shut down"),
            SlotError::SlotsAlreadyAllocated => {
                write!(f, "threads must be registered before slots are allocated")
            }
        }
    }
}

impl std::error::Error for SlotError {}

/// One thread's value for one slot.
struct Value {
    /// The unique id of the slot that installed it.
    slot_id: u64,
    /// The id of the `ThreadLocal` the slot belongs to, for `shutdown_global`.
    instance_id: u64,
    value: Rc<dyn Any>,
}

/// One thread's values, indexed by slot index (indices are unique across all instances).
struct Values(RefCell<Vec<Option<Value>>>);

impl Drop for Values {
    /// Runs at thread exit for values nobody tore down: drops them in reverse slot order. The
    /// table is being destroyed meanwhile, so a `get` from one of these drops returns `None`.
    fn drop(&mut self) {
        let values = self.0.get_mut();
        while let Some(value) = values.pop() {
            drop(value);
        }
    }
}

thread_local! {
    /// This thread's values.
    static VALUES: Values = const { Values(RefCell::new(Vec::new())) };
}

/// Slot indices in use across every `ThreadLocal`; freed indices are reused, and the slab's key
/// says which allocation an index belongs to.
static INDICES: Mutex<Slab<()>> = Mutex::new(Slab::new());
/// Unique ids for slots and instances.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The index table cannot be left inconsistent by a panic while it is locked (its operations do
/// not call out), so a poisoned lock is simply taken over.
fn indices() -> MutexGuard<'static, Slab<()>> {
    INDICES.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// Drops every value of the calling thread, last slot first, each outside the table's borrow (a
/// value's drop may read other slots: the earlier ones are still there).
///
/// A [`Worker`](crate::Worker) calls it when its loop has returned, before the thread's locals
/// are destroyed. On any other thread the values are dropped at thread exit, in the same order,
/// but a `get` from their drops finds nothing.
pub(crate) fn teardown_thread() {
    loop {
        let last = VALUES.try_with(|values| {
            let mut values = values.0.borrow_mut();
            while let Some(entry) = values.pop() {
                if entry.is_some() {
                    return entry;
                }
            }
            None
        });
        match last {
            Ok(Some(value)) => drop(value),
            // Nothing left, or the table is already gone (its own drop tears down).
            Ok(None) | Err(_) => return,
        }
    }
}

fn unique_id() -> u64 {
    // Relaxed: only uniqueness matters, which the atomic increment gives on its own.
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

fn install(index: usize, slot_id: u64, instance_id: u64, value: Rc<dyn Any>) {
    let previous = VALUES.try_with(|values| {
        let mut values = values.0.borrow_mut();
        if values.len() <= index {
            values.resize_with(index + 1, || None);
        }
        values[index].replace(Value {
            slot_id,
            instance_id,
            value,
        })
    });
    // Dropped outside the borrow: a value's drop may itself use slots. (If the table is already
    // destroyed, the new value is dropped as `try_with` returns: nothing is installed.)
    drop(previous);
}

/// Removes this thread's value of slot `slot_id` at `index`, if it is that slot's.
fn clear(index: usize, slot_id: u64) {
    let removed = VALUES.try_with(|values| {
        let mut values = values.0.borrow_mut();
        match values.get_mut(index) {
            Some(entry) if entry.as_ref().is_some_and(|value| value.slot_id == slot_id) => {
                entry.take()
            }
            _ => None,
        }
    });
    // Dropped outside the borrow: a value's drop may itself use slots.
    drop(removed);
}

/// Drops the calling thread's values of instance `instance_id`'s slots, last slot first.
fn clear_instance(instance_id: u64) {
    let removed: Result<Vec<Value>, _> = VALUES.try_with(|values| {
        let mut values = values.0.borrow_mut();
        values
            .iter_mut()
            .rev()
            .filter(|entry| {
                entry
                    .as_ref()
                    .is_some_and(|value| value.instance_id == instance_id)
            })
            .filter_map(Option::take)
            .collect()
    });
    drop(removed);
}

/// The state a `ThreadLocal` shares with its slots and with the callbacks it posts.
#[derive(Debug)]
struct Instance {
    id: u64,
    main_thread: ThreadId,
    registered: Mutex<Vec<DispatcherHandle>>,
    /// How many slots are alive; registration is refused once one has been allocated.
    live_slots: AtomicU64,
    shut_down: AtomicBool,
}

impl Instance {
    fn registered(&self) -> MutexGuard<'_, Vec<DispatcherHandle>> {
        self.registered
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn check_main_thread(&self) -> Result<(), SlotError> {
        if thread::current().id() == self.main_thread {
            Ok(())
        } else {
            Err(SlotError::NotMainThread)
        }
    }

    fn is_shut_down(&self) -> bool {
        // Acquire pairs with the Release in `shutdown_global`.
        self.shut_down.load(Ordering::Acquire)
    }
}

/// Thread-local storage for a set of dispatcher threads (Envoy's `ThreadLocal::Instance`).
///
/// ```
/// use eventloop::WorkerPool;
/// use eventloop::slot::ThreadLocal;
///
/// let mut pool = WorkerPool::new(2);
/// pool.start().unwrap();
/// let tls = ThreadLocal::new();
/// for dispatcher in pool.dispatchers() {
///     tls.register_thread(dispatcher).unwrap();
/// }
/// let slot = std::sync::Arc::new(tls.allocate_slot::<String>().unwrap());
/// // Each thread builds its own value, on its own thread.
/// slot.set(|| std::thread::current().name().unwrap_or("main").to_owned()).unwrap();
/// let (sender, receiver) = std::sync::mpsc::channel();
/// for index in 0..2 {
///     let (slot, sender) = (slot.clone(), sender.clone());
///     pool.post_to_with(index, move |_| sender.send(slot.get().unwrap().to_string()).unwrap())
///         .unwrap();
/// }
/// let mut seen: Vec<String> = receiver.iter().take(2).collect();
/// seen.sort();
/// assert_eq!(seen, ["worker_0", "worker_1"]);
/// tls.shutdown_global().unwrap();
/// pool.stop();
/// ```
#[derive(Debug)]
pub struct ThreadLocal {
    instance: Arc<Instance>,
}

impl ThreadLocal {
    /// Creates the instance; the calling thread becomes its main thread.
    pub fn new() -> ThreadLocal {
        ThreadLocal {
            instance: Arc::new(Instance {
                id: unique_id(),
                main_thread: thread::current().id(),
                registered: Mutex::new(Vec::new()),
                live_slots: AtomicU64::new(0),
                shut_down: AtomicBool::new(false),
            }),
        }
    }

    /// Registers a dispatcher thread: every slot's value will be built on it. Main thread only,
    /// and only before the first slot is allocated.
    pub fn register_thread(&self, dispatcher: DispatcherHandle) -> Result<(), SlotError> {
        self.instance.check_main_thread()?;
        if self.instance.is_shut_down() {
            return Err(SlotError::ShutDown);
        }
        if self.instance.live_slots.load(Ordering::Relaxed) > 0 {
            return Err(SlotError::SlotsAlreadyAllocated);
        }
        self.instance.registered().push(dispatcher);
        Ok(())
    }

    /// Allocates a slot for values of type `T`. Main thread only.
    pub fn allocate_slot<T: 'static>(&self) -> Result<Slot<T>, SlotError> {
        self.instance.check_main_thread()?;
        if self.instance.is_shut_down() {
            return Err(SlotError::ShutDown);
        }
        let index_key = indices().insert(());
        self.instance.live_slots.fetch_add(1, Ordering::Relaxed);
        Ok(Slot {
            shared: Arc::new(SlotShared {
                instance: Arc::clone(&self.instance),
                index: index_key.index(),
                index_key,
                id: unique_id(),
                alive: AtomicBool::new(true),
                failed_initialisations: AtomicU64::new(0),
            }),
            _values: PhantomData,
        })
    }

    /// Stops all further `set`s, posts to every registered thread a callback that drops that
    /// thread's values of this instance's slots (Envoy's `shutdownThread`), and drops the main
    /// thread's. Main thread only; afterwards `set` and `allocate_slot` return
    /// [`SlotError::ShutDown`].
    ///
    /// A dispatcher that has already stopped never runs its posted shutdown; its thread's values
    /// are dropped when that thread exits, as every thread-local is.
    pub fn shutdown_global(&self) -> Result<(), SlotError> {
        self.instance.check_main_thread()?;
        // Release: a thread that sees the flag also sees everything the main thread did before.
        self.instance.shut_down.store(true, Ordering::Release);
        let instance_id = self.instance.id;
        for dispatcher in self.instance.registered().iter() {
            dispatcher.post(move || clear_instance(instance_id));
        }
        clear_instance(instance_id);
        Ok(())
    }
}

impl Default for ThreadLocal {
    /// The same as [`ThreadLocal::new`]: the calling thread becomes the main thread.
    fn default() -> ThreadLocal {
        ThreadLocal::new()
    }
}

/// A slot's shared state: what queued initialisers and cleanups hold on to.
#[derive(Debug)]
struct SlotShared {
    instance: Arc<Instance>,
    index: usize,
    /// The allocation of `index` in the index table, freed when the slot is dropped.
    index_key: Key,
    /// Unique across all slots ever allocated, unlike `index`.
    id: u64,
    /// Cleared when the `Slot` is dropped; initialisers still in flight check it.
    alive: AtomicBool,
    /// Initialisers that panicked on a dispatcher thread.
    failed_initialisations: AtomicU64,
}

/// A thread-local slot holding one `T` per thread, built on each thread by [`set`](Self::set).
///
/// `Slot` is `Send + Sync` whatever `T` is, because values never move between threads: each
/// thread builds its own and [`get`](Self::get) returns the calling thread's.
#[derive(Debug)]
pub struct Slot<T> {
    shared: Arc<SlotShared>,
    _values: PhantomData<fn() -> T>,
}

impl<T: 'static> Slot<T> {
    /// Sets the slot: `init` runs on every registered dispatcher thread (posted, so each builds
    /// its own value between callbacks) and, right now, on the main thread. Main thread only.
    ///
    /// An `init` that panics on a dispatcher thread is caught there: that thread keeps running
    /// and has no value for the slot (see the module docs). On the main thread its panic
    /// reaches the caller, after the posts to the other threads have been made.
    pub fn set(&self, init: impl Fn() -> T + Send + Sync + 'static) -> Result<(), SlotError> {
        let shared = &self.shared;
        shared.instance.check_main_thread()?;
        if shared.instance.is_shut_down() {
            return Err(SlotError::ShutDown);
        }
        let init = Arc::new(init);
        for dispatcher in shared.instance.registered().iter() {
            let (init, shared) = (Arc::clone(&init), Arc::clone(shared));
            dispatcher.post(move || {
                // Acquire pairs with the Release in `Drop`: a dropped slot installs nothing.
                if !shared.alive.load(Ordering::Acquire) || shared.instance.is_shut_down() {
                    return;
                }
                match panic::catch_unwind(AssertUnwindSafe(|| init())) {
                    Ok(value) => {
                        let value: Rc<dyn Any> = Rc::new(value);
                        install(shared.index, shared.id, shared.instance.id, value);
                    }
                    Err(_payload) => {
                        // The panic hook has printed the message; say what it means here.
                        shared
                            .failed_initialisations
                            .fetch_add(1, Ordering::Relaxed);
                        clear(shared.index, shared.id);
                        eprintln!(
                            "slot {}: its initialiser panicked on thread {}; the slot has no \
                             value there",
                            shared.index,
                            thread::current().name().unwrap_or("(unnamed)")
                        );
                    }
                }
            });
        }
        let value: Rc<dyn Any> = Rc::new(init());
        install(shared.index, shared.id, shared.instance.id, value);
        Ok(())
    }

    /// The calling thread's value, if this slot has set one on this thread. Lock-free: a
    /// `thread_local!` lookup and a reference-count increment.
    ///
    /// `None` also while the thread's values are being torn down at thread exit, so a value's
    /// drop may call it safely.
    pub fn get(&self) -> Option<Rc<T>> {
        let value = VALUES
            .try_with(|values| {
                // A drop running inside `install` or `clear` holds no borrow (they drop outside
                // it), so this borrow cannot conflict.
                let values = values.0.try_borrow().ok()?;
                let entry = values.get(self.shared.index)?.as_ref()?;
                (entry.slot_id == self.shared.id).then(|| Rc::clone(&entry.value))
            })
            .ok()??;
        value.downcast::<T>().ok()
    }

    /// How many times `init` has panicked on a dispatcher thread (over every `set`).
    pub fn failed_initialisations(&self) -> u64 {
        self.shared.failed_initialisations.load(Ordering::Relaxed)
    }
}

impl<T> Drop for Slot<T> {
    fn drop(&mut self) {
        let shared = &self.shared;
        // Release pairs with the Acquire in the posted initialisers.
        shared.alive.store(false, Ordering::Release);
        let (index, id) = (shared.index, shared.id);
        if !shared.instance.is_shut_down() {
            // Posted behind any initialiser still queued, so it removes what they installed.
            for dispatcher in shared.instance.registered().iter() {
                dispatcher.post(move || clear(index, id));
            }
        }
        clear(index, id);
        shared.instance.live_slots.fetch_sub(1, Ordering::Relaxed);
        // The index may be reused at once: values carry the slot id, so the new slot can never
        // see this one's values, and this one's cleanups never remove the new slot's.
        indices().remove(shared.index_key);
    }
}

#[cfg(test)]
mod tests;
