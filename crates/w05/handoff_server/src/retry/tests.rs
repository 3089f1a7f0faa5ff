//! Unit tests of `retry`, in a file of their own so the course's starter code can declare them
//! and run these very tests against a student's code.

use super::*;

#[test]
fn the_retry_mark_is_split_off_once() {
    assert_eq!(strip_retry(b"retry compute x"), (true, &b"compute x"[..]));
    assert_eq!(strip_retry(b"compute x"), (false, &b"compute x"[..]));
    assert_eq!(strip_retry(b"retry retry x"), (true, &b"retry x"[..]));
    assert_eq!(
        strip_retry(b"retry"),
        (false, &b"retry"[..]),
        "no mark without the space"
    );
    assert_eq!(strip_retry(b"retrying x"), (false, &b"retrying x"[..]));
}

#[test]
fn the_ratio_must_be_a_finite_non_negative_number() {
    assert_eq!(parse_ratio("0.25"), Ok(0.25));
    assert_eq!(parse_ratio("0"), Ok(0.0));
    assert!(parse_ratio("-1").is_err());
    assert!(parse_ratio("NaN").is_err());
    assert!(parse_ratio("inf").is_err());
    assert!(parse_ratio("lots").is_err());
}

#[test]
fn retries_are_at_most_the_ratio_of_first_tries() {
    let mut budget = RetryBudget::new(0.5);
    assert!(!budget.admit_retry(), "no first try yet: nothing to retry");
    for _ in 0..4 {
        budget.first_try();
    }
    assert!(budget.admit_retry());
    assert!(budget.admit_retry());
    assert!(
        !budget.admit_retry(),
        "two retries for four first tries is the budget"
    );
    budget.first_try();
    budget.first_try();
    assert!(budget.admit_retry());
    assert!(!budget.admit_retry());
    assert_eq!(budget.rejects(), 3);
}

#[test]
fn a_zero_ratio_rejects_every_retry() {
    let mut budget = RetryBudget::new(0.0);
    for _ in 0..10 {
        budget.first_try();
    }
    assert!(!budget.admit_retry());
    assert_eq!(budget.rejects(), 1);
}

#[test]
fn only_the_recent_first_tries_count() {
    let mut budget = RetryBudget::new(0.1);
    for _ in 0..10 * RECENT_FIRST_TRIES {
        budget.first_try();
    }
    let admitted = (0..RECENT_FIRST_TRIES)
        .filter(|_| budget.admit_retry())
        .count();
    assert_eq!(admitted as u64, RECENT_FIRST_TRIES / 10);
}
