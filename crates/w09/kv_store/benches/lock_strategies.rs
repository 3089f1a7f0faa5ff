//! The lock-strategy benchmark: one `RwLock<Store>` against sharded `RwLock`s, under a mix of
//! 90 % `GET` and 10 % `SET` over 10,000 keys with 64-byte values.
//!
//! Each measured iteration is one command on each of the worker threads, all started together
//! behind a barrier, so criterion's time per iteration is the wall time for `threads` commands
//! run side by side, and its throughput line is commands per second over all threads. The keys
//! are drawn from a fixed xorshift sequence per thread, so every run does the same work; commands
//! are built in advance and executed with `KvEngine::execute`, so parsing is not measured.
//!
//! ```sh
//! cargo bench -p kv_store --bench lock_strategies
//! ```
//!
//! The crate README publishes the medians and explains the choice they led to.

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use kv_store::{Command, KvEngine, LockStrategy};

/// Keys in the store, all present before measuring.
const KEYS: usize = 10_000;
/// Bytes per value.
const VALUE_LEN: usize = 64;
/// One `SET` in this many commands; the rest are `GET`s.
const SET_EVERY: u64 = 10;

fn key(index: usize) -> Vec<u8> {
    format!("key:{index:05}").into_bytes()
}

/// An engine holding every key.
fn filled(strategy: LockStrategy, keys: &[Vec<u8>]) -> KvEngine {
    let engine = KvEngine::new(strategy);
    let value = [b'v'; VALUE_LEN];
    let now = Instant::now();
    for key in keys {
        engine.execute(
            &Command::Set {
                key,
                value: &value,
                expire_secs: None,
            },
            now,
        );
    }
    engine
}

/// One thread's share of an iteration batch: `ops` commands from its own key sequence.
fn run_ops(engine: &KvEngine, keys: &[Vec<u8>], seed: u64, ops: u64, now: Instant) {
    let value = [b'w'; VALUE_LEN];
    let mut state = seed | 1;
    for _ in 0..ops {
        // xorshift64: cheap, and the same sequence on every run.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let key = &keys[(state % KEYS as u64) as usize];
        let command = if (state >> 32).is_multiple_of(SET_EVERY) {
            Command::Set {
                key,
                value: &value,
                expire_secs: None,
            }
        } else {
            Command::Get { key }
        };
        black_box(engine.execute(&command, now));
    }
}

fn lock_strategies(c: &mut Criterion) {
    let keys: Vec<Vec<u8>> = (0..KEYS).map(key).collect();
    let mut group = c.benchmark_group("get90_set10");
    group.measurement_time(Duration::from_secs(5));
    for threads in [1usize, 2] {
        group.throughput(Throughput::Elements(threads as u64));
        for strategy in [LockStrategy::Single, LockStrategy::Sharded(16)] {
            let engine = filled(strategy, &keys);
            let id = BenchmarkId::new(strategy.to_string(), format!("{threads}threads"));
            group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    let barrier = Barrier::new(threads + 1);
                    let now = Instant::now();
                    std::thread::scope(|scope| {
                        for thread in 0..threads {
                            let (engine, keys, barrier) = (&engine, &keys, &barrier);
                            scope.spawn(move || {
                                barrier.wait();
                                run_ops(
                                    engine,
                                    keys,
                                    0x9e37_79b9 * (thread as u64 + 1),
                                    iters,
                                    now,
                                );
                            });
                        }
                        barrier.wait();
                        let started = Instant::now();
                        // Leaving the scope joins both threads; the time includes the slower.
                        started
                    })
                    .elapsed()
                });
            });
        }
    }
    group.finish();
}

criterion::criterion_group!(benches, lock_strategies);
criterion::criterion_main!(benches);
