//! Property tests: the store against a `std::collections::HashMap` model.
//!
//! proptest generates sequences of commands (over a small key alphabet, so keys collide, get
//! replaced, deleted and reinserted, and tombstones pile up), with time stepping forward and
//! sweeps of random budgets in between. Every reply must be the model's, under every lock
//! strategy; after a full sweep the `keys` and `bytes` counters must match the model's live
//! entries. A second property does the same for the bare [`HashTable`], and a third checks that
//! every line the parser accepts renders back to a line that parses to the same command.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use kv_store::{Command, HashTable, KvEngine, LockStrategy, Reply, parse};
use proptest::prelude::*;

/// One step of a generated history.
#[derive(Debug, Clone)]
enum Step {
    Set(Vec<u8>, Vec<u8>, Option<u64>),
    Get(Vec<u8>),
    Del(Vec<u8>),
    Keys(Vec<u8>),
    /// Move the clock forward this many seconds.
    Advance(u64),
    /// A sweep with this budget per shard; invisible to clients.
    Sweep(usize),
    /// A full sweep, after which `keys` and `bytes` are exact.
    CheckCounters,
}

fn small_key() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(b"ab\xff".to_vec()), 1..4)
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..12)
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (small_key(), value(), prop::option::of(1u64..5)).prop_map(|(k, v, e)| Step::Set(k, v, e)),
        4 => small_key().prop_map(Step::Get),
        2 => small_key().prop_map(Step::Del),
        1 => prop::collection::vec(prop::sample::select(b"ab".to_vec()), 0..3).prop_map(Step::Keys),
        2 => (0u64..3).prop_map(Step::Advance),
        1 => (0usize..20).prop_map(Step::Sweep),
        1 => Just(Step::CheckCounters),
    ]
}

/// The model: every entry with its deadline; expiry is judged on read, as the store does.
#[derive(Default)]
struct Model {
    entries: HashMap<Vec<u8>, (Vec<u8>, Option<Instant>)>,
    gets: u64,
    sets: u64,
    dels: u64,
}

impl Model {
    fn live(&self, key: &[u8], now: Instant) -> Option<&Vec<u8>> {
        match self.entries.get(key) {
            Some((value, deadline)) if deadline.is_none_or(|d| d > now) => Some(value),
            _ => None,
        }
    }
}

fn check_history(strategy: LockStrategy, steps: &[Step]) -> Result<(), TestCaseError> {
    let engine = KvEngine::new(strategy);
    let mut model = Model::default();
    let mut now = Instant::now();
    for step in steps {
        match step {
            Step::Set(key, value, expire_secs) => {
                let reply = engine.execute(
                    &Command::Set {
                        key,
                        value,
                        expire_secs: *expire_secs,
                    },
                    now,
                );
                prop_assert_eq!(reply, Reply::Ok);
                let deadline = expire_secs.map(|secs| now + Duration::from_secs(secs));
                model.entries.insert(key.clone(), (value.clone(), deadline));
                model.sets += 1;
            }
            Step::Get(key) => {
                let expected = match model.live(key, now) {
                    Some(value) => Reply::Value(value.clone()),
                    None => Reply::NotFound,
                };
                prop_assert_eq!(engine.execute(&Command::Get { key }, now), expected);
                model.gets += 1;
            }
            Step::Del(key) => {
                let expected = match model.live(key, now) {
                    Some(_) => Reply::Deleted,
                    None => Reply::NotFound,
                };
                prop_assert_eq!(engine.execute(&Command::Del { key }, now), expected);
                model.entries.remove(key);
                model.dels += 1;
            }
            Step::Keys(prefix) => {
                let mut expected: Vec<Vec<u8>> = model
                    .entries
                    .keys()
                    .filter(|key| key.starts_with(prefix) && model.live(key, now).is_some())
                    .cloned()
                    .collect();
                expected.sort();
                prop_assert_eq!(
                    engine.execute(&Command::Keys { prefix }, now),
                    Reply::Keys(expected)
                );
            }
            Step::Advance(secs) => now += Duration::from_secs(*secs),
            Step::Sweep(budget) => {
                engine.sweep(now, *budget);
            }
            Step::CheckCounters => {
                engine.sweep(now, usize::MAX);
                model
                    .entries
                    .retain(|_, (_, deadline)| deadline.is_none_or(|d| d > now));
                let stats = engine.stats();
                prop_assert_eq!(stats.keys, model.entries.len() as u64);
                let bytes: usize = model
                    .entries
                    .iter()
                    .map(|(k, (v, _))| k.len() + v.len())
                    .sum();
                prop_assert_eq!(stats.bytes, bytes as u64);
                prop_assert_eq!(
                    (stats.gets, stats.sets, stats.dels),
                    (model.gets, model.sets, model.dels)
                );
            }
        }
    }
    Ok(())
}

#[derive(Debug, Clone)]
enum TableStep {
    Insert(u8, u32),
    Remove(u8),
}

proptest! {
    // A failure prints its minimal input; nothing is written into the source tree.
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_store_behaves_like_a_hashmap(steps in prop::collection::vec(step(), 1..200)) {
        for strategy in [LockStrategy::Single, LockStrategy::Sharded(4)] {
            check_history(strategy, &steps)?;
        }
    }

    #[test]
    fn the_table_behaves_like_a_hashmap(
        steps in prop::collection::vec(
            prop_oneof![
                (0u8..48, any::<u32>()).prop_map(|(k, v)| TableStep::Insert(k, v)),
                (0u8..48).prop_map(TableStep::Remove),
            ],
            1..400,
        )
    ) {
        let mut table = HashTable::new();
        let mut model = HashMap::new();
        for step in &steps {
            match *step {
                TableStep::Insert(key, value) => {
                    prop_assert_eq!(table.insert(&[key], value), model.insert(key, value));
                }
                TableStep::Remove(key) => {
                    prop_assert_eq!(table.remove(&[key]), model.remove(&key));
                }
            }
            prop_assert_eq!(table.len(), model.len());
            prop_assert!(table.capacity() == 0 || table.len() + table.tombstones() < table.capacity());
        }
        for key in 0u8..48 {
            prop_assert_eq!(table.get(&[key]), model.get(&key));
        }
        let mut listed: Vec<(u8, u32)> = table.iter().map(|(k, v)| (k[0], *v)).collect();
        listed.sort();
        let mut expected: Vec<(u8, u32)> = model.into_iter().collect();
        expected.sort();
        prop_assert_eq!(listed, expected);
    }

    #[test]
    fn accepted_lines_render_back_to_the_same_command(
        line in prop::collection::vec(
            prop_oneof![
                prop::sample::select(b"GET SETDELKYS EX 0159 ".to_vec()),
                any::<u8>(),
            ],
            0..40,
        )
    ) {
        if let Ok(command) = parse(&line) {
            let rendered = command.to_owned_line();
            prop_assert_eq!(parse(&rendered[..rendered.len() - 1]), Ok(command));
        }
    }
}
