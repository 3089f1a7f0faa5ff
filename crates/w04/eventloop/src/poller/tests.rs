//! Unit tests of `poller`, in a file of their own so the course's starter code
//! can declare them and run these very tests against a student's code.

use super::*;

#[test]
fn sub_millisecond_timeouts_round_up() {
    assert_eq!(round_up_to_ms(Duration::ZERO), 0);
    assert_eq!(round_up_to_ms(Duration::from_nanos(1)), 1);
    assert_eq!(round_up_to_ms(Duration::from_micros(300)), 1);
    assert_eq!(round_up_to_ms(Duration::from_millis(2)), 2);
    assert_eq!(round_up_to_ms(Duration::from_micros(2001)), 3);
    assert_eq!(
        round_up_to_ms(Duration::from_secs(u64::MAX)),
        libc::c_int::MAX
    );
}

#[test]
fn short_timeout_sleeps_at_least_that_long() {
    let poller = Poller::new().unwrap();
    let mut events = Events::with_capacity(4);
    let start = Instant::now();
    assert_eq!(
        poller
            .wait(&mut events, Some(Duration::from_micros(300)))
            .unwrap(),
        0
    );
    assert!(start.elapsed() >= Duration::from_micros(300));
}

fn wait_once(poller: &Poller, events: &mut Events) -> Vec<Event> {
    poller.wait(events, Some(Duration::ZERO)).unwrap();
    events.iter().collect()
}

#[test]
fn level_triggered_reports_again_until_drained() {
    let poller = Poller::new().unwrap();
    let (a, b) = sys::socketpair().unwrap();
    poller.add(a.as_fd(), 1, Interest::READABLE).unwrap();
    let mut events = Events::with_capacity(4);
    sys::write(b.as_fd(), b"0123456789").unwrap();
    let mut buf = [0u8; 4];
    assert_eq!(wait_once(&poller, &mut events).len(), 1);
    sys::read(a.as_fd(), &mut buf).unwrap();
    assert_eq!(
        wait_once(&poller, &mut events).len(),
        1,
        "6 bytes left: still readable"
    );
    let mut rest = [0u8; 16];
    assert_eq!(sys::read(a.as_fd(), &mut rest).unwrap(), 6);
    assert!(
        wait_once(&poller, &mut events).is_empty(),
        "drained: no more events"
    );
}

#[test]
fn edge_triggered_reports_only_new_arrivals() {
    let poller = Poller::new().unwrap();
    let (a, b) = sys::socketpair().unwrap();
    poller.add(a.as_fd(), 1, Interest::READABLE.edge()).unwrap();
    let mut events = Events::with_capacity(4);
    sys::write(b.as_fd(), b"0123456789").unwrap();
    let mut buf = [0u8; 4];
    assert_eq!(wait_once(&poller, &mut events).len(), 1);
    sys::read(a.as_fd(), &mut buf).unwrap();
    assert!(
        wait_once(&poller, &mut events).is_empty(),
        "edge-triggered: the 6 bytes left are not reported again"
    );
    sys::write(b.as_fd(), b"x").unwrap();
    assert_eq!(
        wait_once(&poller, &mut events).len(),
        1,
        "a new arrival is a new edge"
    );
}

#[test]
fn oneshot_reports_once_until_rearmed() {
    let poller = Poller::new().unwrap();
    let (a, b) = sys::socketpair().unwrap();
    poller
        .add(a.as_fd(), 1, Interest::READABLE.oneshot())
        .unwrap();
    let mut events = Events::with_capacity(4);
    sys::write(b.as_fd(), b"x").unwrap();
    assert_eq!(wait_once(&poller, &mut events).len(), 1);
    assert!(
        wait_once(&poller, &mut events).is_empty(),
        "disabled after one event"
    );
    poller
        .modify(a.as_fd(), 2, Interest::READABLE.oneshot())
        .unwrap();
    let got = wait_once(&poller, &mut events);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].token, 2);
}

#[test]
fn peer_half_close_reports_read_closed() {
    let poller = Poller::new().unwrap();
    let (a, b) = sys::socketpair().unwrap();
    poller.add(a.as_fd(), 1, Interest::READABLE).unwrap();
    let mut events = Events::with_capacity(4);
    assert!(wait_once(&poller, &mut events).is_empty());
    sys::shutdown(b.as_fd(), libc::SHUT_WR).unwrap();
    let got = wait_once(&poller, &mut events);
    assert_eq!(got.len(), 1);
    assert!(got[0].readiness.is_read_closed(), "{:?}", got[0].readiness);
    assert!(got[0].readiness.is_readable(), "end of input is readable");
    assert!(
        !got[0].readiness.is_hang_up(),
        "our write side is still open"
    );
    drop(b);
    let got = wait_once(&poller, &mut events);
    assert!(
        got[0].readiness.is_hang_up(),
        "peer fully closed: {:?}",
        got[0].readiness
    );
}

#[test]
fn writable_and_none_interest() {
    let poller = Poller::new().unwrap();
    let (a, _b) = sys::socketpair().unwrap();
    poller.add(a.as_fd(), 1, Interest::NONE).unwrap();
    let mut events = Events::with_capacity(4);
    assert!(wait_once(&poller, &mut events).is_empty());
    poller.modify(a.as_fd(), 1, Interest::WRITABLE).unwrap();
    let got = wait_once(&poller, &mut events);
    assert!(got[0].readiness.is_writable());
    poller.delete(a.as_fd()).unwrap();
    assert!(wait_once(&poller, &mut events).is_empty());
}
