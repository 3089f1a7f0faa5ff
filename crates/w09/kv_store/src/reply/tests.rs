//! Unit tests of the reply bytes.

use super::*;

#[test]
fn every_reply_renders() {
    let cases: [(Reply, &[u8]); 9] = [
        (Reply::Ok, b"OK\n"),
        (Reply::Value(b"a b\xff".to_vec()), b"VALUE a b\xff\n"),
        (Reply::Value(vec![]), b"VALUE \n"),
        (Reply::NotFound, b"NOT_FOUND\n"),
        (Reply::Deleted, b"DELETED\n"),
        (Reply::Keys(vec![]), b"KEYS 0\n"),
        (
            Reply::Keys(vec![b"k1".to_vec(), b"k2".to_vec()]),
            b"KEYS 2 k1 k2\n",
        ),
        (
            Reply::Error(ErrorReply::TooManyKeys),
            b"ERROR too many keys\n",
        ),
        (
            Reply::Error(ErrorReply::LineTooLong),
            b"ERROR line too long\n",
        ),
    ];
    for (reply, bytes) in cases {
        assert_eq!(reply.to_bytes(), bytes, "{reply:?}");
    }
    assert_eq!(
        Reply::Error(ParseError::MissingValue.into()).to_bytes(),
        b"ERROR missing value\n"
    );
}

#[test]
fn the_stats_line_has_every_field_in_order() {
    let stats = StatsSnapshot {
        gets: 1,
        sets: 2,
        dels: 3,
        scans: 4,
        errors: 5,
        keys: 6,
        bytes: 7,
        expired: 8,
        get_latency: LatencySummary {
            p50_ns: 64,
            p99_ns: 128,
            p999_ns: 256,
        },
        set_latency: LatencySummary::default(),
        del_latency: LatencySummary {
            p50_ns: 1,
            p99_ns: 2,
            p999_ns: 4,
        },
        log: None,
    };
    assert_eq!(
        String::from_utf8(Reply::Stats(Box::new(stats)).to_bytes()).unwrap(),
        "gets=1 sets=2 dels=3 scans=4 errors=5 keys=6 bytes=7 expired=8 \
         get_p50_ns=64 get_p99_ns=128 get_p999_ns=256 \
         set_p50_ns=0 set_p99_ns=0 set_p999_ns=0 \
         del_p50_ns=1 del_p99_ns=2 del_p999_ns=4\n"
    );
    // A durable server's log figures follow, in their documented order.
    let durable = StatsSnapshot {
        log: Some(LogFigures {
            records: 7,
            bytes: 210,
            fsyncs: 3,
            checkpoints: 2,
            last_checkpoint_ms: 1_700_000_000_000,
        }),
        ..stats
    };
    let line = String::from_utf8(Reply::Stats(Box::new(durable)).to_bytes()).unwrap();
    assert!(
        line.ends_with(
            " del_p999_ns=4 log_records=7 log_bytes=210 fsyncs=3 records_per_fsync=2.33 \
             checkpoints=2 last_checkpoint_ms=1700000000000\n"
        ),
        "{line}"
    );
    assert_eq!(LogFigures::default().records_per_fsync(), 0.0);
}
