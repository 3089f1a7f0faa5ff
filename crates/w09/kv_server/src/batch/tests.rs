//! The batch on its own: replies in request order, one per request even when it never ran.

use super::*;
use eventloop::slab::Slab;

#[test]
fn a_batch_runs_its_lines_in_order_and_returns_each_reply_with_its_seq() {
    let mut slab = Slab::new();
    let key = slab.insert(());
    let engine = KvEngine::new(Default::default());
    let mut batch = Batch::default();
    batch.start(key);
    batch.push(7, 1, b"SET a 1");
    batch.push(8, 2, b"GET a");
    batch.push(9, 3, b"BADCMD");
    assert_eq!((batch.len(), batch.key()), (3, Some(key)));
    batch.run(&engine, false, None);
    let replies: Vec<(u64, Vec<u8>)> = batch
        .take_replies()
        .map(|(seq, reply)| (seq, reply.unwrap().to_bytes()))
        .collect();
    assert_eq!(
        replies,
        [
            (7, b"OK\n".to_vec()),
            (8, b"VALUE 1\n".to_vec()),
            (9, b"ERROR unknown command\n".to_vec())
        ]
    );
    assert!(batch.is_empty());
}

#[test]
fn a_batch_that_never_ran_still_answers_every_request() {
    let mut slab = Slab::new();
    let key = slab.insert(());
    let mut batch = Batch::default();
    batch.start(key);
    batch.push(0, 1, b"GET a");
    batch.push(1, 2, b"GET b");
    let replies: Vec<_> = batch.take_replies().collect();
    assert_eq!(replies, [(0, None), (1, None)]);
}

#[test]
fn only_writes_become_log_records_in_request_order_with_absolute_deadlines() {
    let mut slab = Slab::new();
    let key = slab.insert(());
    let mut batch = Batch::default();
    batch.start(key);
    for (seq, line) in [
        &b"GET a"[..],
        b"SET a 1",
        b"SET t 2 EX 5",
        b"BADCMD",
        b"DEL a",
        b"KEYS",
        b"STATS",
    ]
    .into_iter()
    .enumerate()
    {
        batch.push(seq as u64, seq as u64, line);
    }
    let mut out = Vec::new();
    assert_eq!(batch.encode_records(1_000, &mut out), 3);
    let records = [
        wal::Record::Set {
            key: b"a",
            value: b"1",
        },
        wal::Record::SetUntil {
            key: b"t",
            value: b"2",
            deadline_unix_ms: 6_000,
        },
        wal::Record::Del { key: b"a" },
    ];
    // Compared as records first, so a wrong one is named by its fields, not by its bytes.
    assert_eq!(decoded(&out), records);
    let mut expected = Vec::new();
    for record in &records {
        wal::encode(record, &mut expected);
    }
    assert_eq!(out, expected);

    let mut reads = Batch::default();
    reads.start(key);
    reads.push(0, 0, b"GET a");
    reads.push(1, 1, b"SET"); // does not parse: no record
    assert_eq!(reads.encode_records(1_000, &mut out), 0);
    assert_eq!(out, expected, "nothing appended");
}

/// The records `bytes` holds, in order; bytes that do not decode fail the test.
fn decoded(bytes: &[u8]) -> Vec<wal::Record<'_>> {
    let mut records = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        match wal::decode(&bytes[at..]) {
            wal::Decoded::Record { record, len } => {
                records.push(record);
                at += len;
            }
            damaged => panic!("the bytes at {at} are not a record: {damaged:?}"),
        }
    }
    records
}
