//! Unit tests of the durable path's pieces that need no disk: failpoint names and replay.

use super::*;

#[test]
fn failpoints_parse_by_name_and_an_unknown_one_lists_the_names() {
    for (point, name) in Failpoint::ALL {
        assert_eq!(Failpoint::parse(name), Ok(point));
    }
    let error = Failpoint::parse("nope").unwrap_err();
    assert!(error.contains("checkpoint-before-rename"), "{error}");
}

#[test]
fn a_replayed_deadline_in_the_past_removes_the_key_and_a_future_one_keeps_its_time() {
    let engine = KvEngine::new(kv_store::LockStrategy::Single);
    let now = Instant::now();
    engine.restore(b"old", b"1", None);
    apply_record(
        &engine,
        Record::SetUntil {
            key: b"old",
            value: b"2",
            deadline_unix_ms: 999,
        },
        now,
        1_000,
    );
    apply_record(
        &engine,
        Record::SetUntil {
            key: b"new",
            value: b"3",
            deadline_unix_ms: 61_000,
        },
        now,
        1_000,
    );
    let mut live = Vec::new();
    engine.for_each_live(now, |key, value, expires_at| {
        live.push((key.to_vec(), value.to_vec(), expires_at));
    });
    assert_eq!(
        live,
        [(
            b"new".to_vec(),
            b"3".to_vec(),
            now.checked_add(Duration::from_secs(60))
        )]
    );
    assert!(
        engine
            .execute_line(b"GET new", now + Duration::from_secs(60))
            .to_bytes()
            .starts_with(b"NOT_FOUND")
    );
}
