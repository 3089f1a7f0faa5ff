//! Unit tests of the lock strategies and the engine's commands.

use super::*;
use std::time::Duration;

const STRATEGIES: [LockStrategy; 3] = [
    LockStrategy::Single,
    LockStrategy::Sharded(1),
    LockStrategy::Sharded(8),
];

fn run(engine: &KvEngine, line: &str, now: Instant) -> String {
    String::from_utf8(engine.execute_line(line.as_bytes(), now).to_bytes()).unwrap()
}

#[test]
fn every_transition_under_every_strategy() {
    for strategy in STRATEGIES {
        let engine = KvEngine::new(strategy);
        let now = Instant::now();
        assert_eq!(run(&engine, "GET k", now), "NOT_FOUND\n");
        assert_eq!(run(&engine, "SET k v 1", now), "OK\n");
        assert_eq!(run(&engine, "GET k", now), "VALUE v 1\n");
        assert_eq!(run(&engine, "SET k ", now), "OK\n");
        assert_eq!(run(&engine, "GET k", now), "VALUE \n");
        assert_eq!(run(&engine, "DEL k", now), "DELETED\n");
        assert_eq!(run(&engine, "DEL k", now), "NOT_FOUND\n");
        assert_eq!(run(&engine, "GET k", now), "NOT_FOUND\n");
        assert_eq!(run(&engine, "NOPE", now), "ERROR unknown command\n");
        let stats = engine.stats();
        assert_eq!(
            (stats.gets, stats.sets, stats.dels, stats.errors),
            (4, 2, 2, 1),
            "{strategy}"
        );
        assert_eq!((stats.keys, stats.bytes), (0, 0));
    }
}

#[test]
fn expiry_is_lazy_on_get_and_del_and_counted() {
    for strategy in STRATEGIES {
        let engine = KvEngine::new(strategy);
        let start = Instant::now();
        run(&engine, "SET a 1 EX 10", start);
        run(&engine, "SET b 2 EX 10", start);
        assert_eq!(
            run(&engine, "GET a", start + Duration::from_secs(9)),
            "VALUE 1\n"
        );
        let later = start + Duration::from_secs(10);
        assert_eq!(engine.stats().keys, 2);
        assert_eq!(run(&engine, "GET a", later), "NOT_FOUND\n");
        assert_eq!(run(&engine, "DEL b", later), "NOT_FOUND\n");
        let stats = engine.stats();
        assert_eq!(
            (stats.keys, stats.bytes, stats.expired),
            (0, 0, 2),
            "{strategy}"
        );
    }
}

#[test]
fn the_sweep_removes_what_nobody_asks_for() {
    for strategy in STRATEGIES {
        let engine = KvEngine::new(strategy);
        let start = Instant::now();
        for i in 0..200 {
            let ttl = if i % 4 == 0 { "" } else { " EX 5" };
            run(&engine, &format!("SET key{i} value{ttl}"), start);
        }
        assert_eq!(engine.sweep(start, usize::MAX), 0);
        assert_eq!(
            engine.sweep(start + Duration::from_secs(5), usize::MAX),
            150
        );
        let stats = engine.stats();
        assert_eq!((stats.keys, stats.expired), (50, 150), "{strategy}");
    }
}

#[test]
fn keys_lists_live_matches_sorted_across_shards() {
    for strategy in STRATEGIES {
        let engine = KvEngine::new(strategy);
        let start = Instant::now();
        for key in ["user:3", "user:1", "order:9", "user:2", "user"] {
            run(&engine, &format!("SET {key} x"), start);
        }
        run(&engine, "SET user:4 x EX 1", start);
        let later = start + Duration::from_secs(1);
        assert_eq!(
            run(&engine, "KEYS user:", later),
            "KEYS 3 user:1 user:2 user:3\n"
        );
        assert_eq!(
            run(&engine, "KEYS", later),
            "KEYS 5 order:9 user user:1 user:2 user:3\n"
        );
        assert_eq!(run(&engine, "KEYS zzz", later), "KEYS 0\n");
        assert_eq!(engine.stats().scans, 3);
    }
}

#[test]
fn keys_over_the_reply_limit_is_an_error() {
    let engine = KvEngine::new(LockStrategy::Sharded(4));
    let now = Instant::now();
    for i in 0..MAX_KEYS_REPLY {
        run(&engine, &format!("SET a{i} x"), now);
    }
    assert!(run(&engine, "KEYS a", now).starts_with(&format!("KEYS {MAX_KEYS_REPLY} ")));
    run(&engine, "SET a-one-more x", now);
    assert_eq!(run(&engine, "KEYS a", now), "ERROR too many keys\n");
    assert_eq!(engine.stats().errors, 1);
}

#[test]
fn stats_replies_with_its_line_and_counts_latency_samples() {
    let engine = KvEngine::new(LockStrategy::Single);
    let now = Instant::now();
    run(&engine, "SET k abc", now);
    run(&engine, "GET k", now);
    let line = run(&engine, "STATS", now);
    assert!(
        line.starts_with("gets=1 sets=1 dels=0 scans=0 errors=0 keys=1 bytes=4 expired=0 "),
        "{line}"
    );
    let stats = engine.stats();
    assert!(stats.get_latency.p50_ns > 0 && stats.set_latency.p50_ns > 0);
    assert_eq!(stats.del_latency, LatencySummary::default(), "no DEL yet");
    assert_eq!(run(&engine, "STATS x", now), "ERROR too many arguments\n");
}

#[test]
fn server_side_errors_are_counted() {
    let engine = KvEngine::new(LockStrategy::Single);
    assert_eq!(
        engine.error(ErrorReply::LineTooLong).to_bytes(),
        b"ERROR line too long\n"
    );
    assert_eq!(engine.stats().errors, 1);
}

#[test]
fn shards_spread_keys_and_each_key_stays_in_one() {
    let engine = KvEngine::new(LockStrategy::Sharded(8));
    let now = Instant::now();
    for i in 0..800 {
        run(&engine, &format!("SET k{i} v"), now);
    }
    let Locks::Sharded(shards) = &engine.locks else {
        unreachable!()
    };
    for shard in shards.iter() {
        let len = shard.read().len();
        assert!((50..=150).contains(&len), "an uneven shard: {len} of 800");
    }
    assert_eq!(shards.iter().map(|s| s.read().len()).sum::<usize>(), 800);
    assert_eq!(shard_index(u64::MAX, 8), 7);
    assert_eq!(shard_index(0, 8), 0);
}

#[test]
fn gets_run_in_parallel_with_sets_from_many_threads() {
    for strategy in STRATEGIES {
        let engine = KvEngine::new(strategy);
        let now = Instant::now();
        std::thread::scope(|scope| {
            for thread in 0..4 {
                let engine = &engine;
                scope.spawn(move || {
                    for i in 0..500 {
                        let key = format!("t{thread}k{i}");
                        assert_eq!(run(engine, &format!("SET {key} {i}"), now), "OK\n");
                        assert_eq!(
                            run(engine, &format!("GET {key}"), now),
                            format!("VALUE {i}\n")
                        );
                    }
                });
            }
        });
        let stats = engine.stats();
        assert_eq!((stats.keys, stats.gets, stats.sets), (2000, 2000, 2000));
    }
}

/// Two readers are inside the store at the same moment: each, while it holds the read lock
/// (inside `for_each_live`'s visit), waits for the other to arrive. Under a `RwLock` both are
/// in at once and meet at once; under a `Mutex<Store>` the second cannot enter until the first
/// gives up waiting, so the first reports that it waited alone and the test fails (after the
/// hang guard's ten seconds, never by hanging).
#[test]
fn two_readers_hold_the_store_at_the_same_time() {
    use std::sync::{Condvar, Mutex};
    for strategy in STRATEGIES {
        let engine = KvEngine::new(strategy);
        let now = Instant::now();
        assert_eq!(run(&engine, "SET shared 1", now), "OK\n");
        let readers_inside = (Mutex::new(0_usize), Condvar::new());
        let met: Vec<bool> = std::thread::scope(|scope| {
            let readers: Vec<_> = (0..2)
                .map(|_| {
                    scope.spawn(|| {
                        let mut met_the_other = false;
                        engine.for_each_live(now, |_, _, _| {
                            let (count, arrived) = &readers_inside;
                            let mut count = count.lock().unwrap();
                            *count += 1;
                            arrived.notify_all();
                            let (count, _) = arrived
                                .wait_timeout_while(count, Duration::from_secs(10), |count| {
                                    *count < 2
                                })
                                .unwrap();
                            met_the_other = *count >= 2;
                        });
                        met_the_other
                    })
                })
                .collect();
            readers
                .into_iter()
                .map(|reader| reader.join().unwrap())
                .collect()
        });
        assert_eq!(
            met,
            [true, true],
            "{strategy}: a reader held the store alone; readers must share the lock"
        );
    }
}

#[test]
fn lock_strategies_parse_and_print() {
    for text in ["single", "sharded:1", "sharded:16", "sharded:1024"] {
        let strategy: LockStrategy = text.parse().unwrap();
        assert_eq!(strategy.to_string(), text);
    }
    assert_eq!("sharded".parse(), Ok(LockStrategy::Sharded(DEFAULT_SHARDS)));
    assert_eq!(LockStrategy::default(), LockStrategy::Single);
    for bad in [
        "",
        "Single",
        "sharded:",
        "sharded:0",
        "sharded:1025",
        "sharded:x",
        "rwlock",
    ] {
        let error = bad.parse::<LockStrategy>().unwrap_err();
        assert!(error.contains("expected `single`"), "{error}");
    }
}
