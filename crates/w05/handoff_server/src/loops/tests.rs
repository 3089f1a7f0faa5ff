//! Unit tests of `loops`: the exact shares of budgets and limits.

use super::*;

#[test]
fn shares_add_up_to_the_total_and_differ_by_at_most_one() {
    for total in 2..50 {
        for parts in 2..=total.min(8) {
            let shares: Vec<usize> = (0..parts).map(|index| share(total, parts, index)).collect();
            assert_eq!(shares.iter().sum::<usize>(), total, "{total} over {parts}");
            assert!(shares.iter().all(|&share| share >= 1));
            assert!(shares.iter().max().unwrap() - shares.iter().min().unwrap() <= 1);
        }
    }
}

#[test]
fn a_limit_smaller_than_the_loop_count_is_refused_with_its_name() {
    let error = check_divisible(Some(1), 2, "--max-inflight").unwrap_err();
    assert!(error.to_string().contains("--max-inflight is 1"), "{error}");
    assert!(check_divisible(Some(2), 2, "--max-inflight").is_ok());
    assert!(check_divisible(None, 2, "--max-inflight").is_ok());
}
