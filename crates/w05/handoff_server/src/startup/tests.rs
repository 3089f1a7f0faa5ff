//! Unit tests of the process set-up: the choice `--loops auto` makes.

use super::*;

#[test]
fn auto_never_gives_a_loop_a_core_the_workers_or_clients_need() {
    // Too few cores for loops + workers + clients: one loop, whatever the numbers.
    for (cores, workers) in [
        (1, 1),
        (2, 1),
        (2, 2),
        (3, 2),
        (4, 4),
        (4, 8),
        (8, 8),
        (64, 64),
    ] {
        assert_eq!(
            auto_loops(cores, workers),
            1,
            "{cores} cores, {workers} workers"
        );
    }
    // Room to spare: half of what the workers leave, so every loop has a core and as many
    // are left for the clients.
    assert_eq!(auto_loops(4, 0), 2);
    assert_eq!(auto_loops(6, 2), 2);
    assert_eq!(auto_loops(8, 2), 3);
    assert_eq!(auto_loops(16, 4), 6);
    // Never more than the cap, however large the machine.
    assert_eq!(auto_loops(256, 8), MAX_AUTO_LOOPS);
    for cores in 1..300 {
        for workers in 1..=cores {
            let loops = auto_loops(cores, workers);
            assert!((1..=MAX_AUTO_LOOPS).contains(&loops));
            assert!(
                loops == 1 || 2 * loops + workers <= cores,
                "{cores} {workers}"
            );
        }
    }
}

#[test]
fn loops_resolve_to_the_count_given_or_to_the_choice_within_the_limit() {
    assert_eq!(Loops::Count(3).resolve(2, usize::MAX), 3);
    assert_eq!(Loops::Auto.resolve(usize::MAX, usize::MAX), 1);
    assert!(Loops::Auto.resolve(1, usize::MAX) >= 1);
    assert_eq!(Loops::Auto.resolve(0, 1), 1, "never above the limit");
    assert_eq!(Loops::parse("auto"), Ok(Loops::Auto));
    assert_eq!(Loops::parse("1"), Ok(Loops::Count(1)));
    let error = Loops::parse("zero").unwrap_err();
    assert!(error.contains("auto"), "{error}");
}
