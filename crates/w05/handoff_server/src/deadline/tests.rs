//! Unit tests of `deadline`, in a file of their own so the course's starter code can declare
//! them and run these very tests against a student's code.

use super::*;

#[test]
fn without_a_timeout_nothing_is_queued() {
    let mut deadlines = Deadlines::<u32>::new(None);
    assert_eq!(deadlines.push(Instant::now(), 1, 0), None);
    assert_eq!(deadlines.len(), 0);
    assert_eq!(deadlines.timeout_ms(), None);
    assert_eq!(deadlines.next_deadline(), None);
}

#[test]
fn only_the_first_deadline_of_an_empty_queue_arms_the_timer() {
    let timeout = Duration::from_millis(300);
    let mut deadlines = Deadlines::new(Some(timeout));
    let start = Instant::now();
    assert_eq!(deadlines.push(start, 'a', 0), Some(start + timeout));
    assert_eq!(
        deadlines.push(start + Duration::from_millis(1), 'b', 0),
        None
    );
    assert_eq!(deadlines.timeout_ms(), Some(300));
    assert_eq!(deadlines.next_deadline(), Some(start + timeout));
}

#[test]
fn due_entries_come_out_in_read_order_and_only_once_due() {
    let timeout = Duration::from_millis(100);
    let mut deadlines = Deadlines::new(Some(timeout));
    let start = Instant::now();
    for (offset, key) in [(0, 'a'), (10, 'b'), (20, 'c')] {
        let _ = deadlines.push(start + Duration::from_millis(offset), key, offset);
    }
    assert_eq!(deadlines.pop_due(start + Duration::from_millis(99)), None);
    let now = start + Duration::from_millis(110);
    assert_eq!(deadlines.pop_due(now), Some(('a', 0)));
    assert_eq!(deadlines.pop_due(now), Some(('b', 10)));
    assert_eq!(deadlines.pop_due(now), None, "c is due at 120 ms");
    assert_eq!(
        deadlines.next_deadline(),
        Some(start + Duration::from_millis(120))
    );
    assert_eq!(
        deadlines.pop_due(start + Duration::from_secs(1)),
        Some(('c', 20))
    );
    assert_eq!(deadlines.len(), 0);
}
