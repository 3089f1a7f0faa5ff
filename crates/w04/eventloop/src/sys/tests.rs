//! Unit tests of `sys`, in a file of their own so the course's starter code
//! can declare them and run these very tests against a student's code.

use super::*;
use std::os::fd::AsFd;

#[test]
fn errors_carry_errno() {
    let (a, _b) = socketpair().unwrap();
    let mut buf = [0u8; 4];
    let error = read(a.as_fd(), &mut buf).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::WouldBlock);
}

#[test]
fn eventfd_counts_and_resets() {
    let fd = eventfd().unwrap();
    assert_eq!(eventfd_read(fd.as_fd()).unwrap(), 0);
    eventfd_write(fd.as_fd(), 1).unwrap();
    eventfd_write(fd.as_fd(), 1).unwrap();
    assert_eq!(eventfd_read(fd.as_fd()).unwrap(), 2);
    assert_eq!(eventfd_read(fd.as_fd()).unwrap(), 0);
}

#[test]
fn socket_addresses_round_trip() {
    for addr in ["127.0.0.1:4242", "[::1]:4242"] {
        let addr: SocketAddr = addr.parse().unwrap();
        assert_eq!(RawAddr::from_std(addr).to_std().unwrap(), addr);
    }
}

#[test]
fn a_blocked_signal_waits_for_its_signalfd() {
    // A thread of its own, so the blocked mask and the raised signal stay there.
    std::thread::spawn(|| {
        block_signals(&[libc::SIGUSR2]).unwrap();
        let fd = signalfd(&[libc::SIGUSR2]).unwrap();
        assert_eq!(read_signal(fd.as_fd()).unwrap(), None);
        raise_signal(libc::SIGUSR2).unwrap();
        assert_eq!(read_signal(fd.as_fd()).unwrap(), Some(libc::SIGUSR2));
        assert_eq!(read_signal(fd.as_fd()).unwrap(), None);
    })
    .join()
    .unwrap();
}

#[test]
fn a_bad_signal_number_is_an_error_from_either_convention() {
    // sigaddset reports it as `-1` and errno, through `check`.
    assert_eq!(
        block_signals(&[-1]).unwrap_err().raw_os_error(),
        Some(libc::EINVAL)
    );
    // pthread_sigmask returns the error number, through `check_errno`.
    assert_eq!(
        check_errno(libc::EINVAL).unwrap_err().raw_os_error(),
        Some(libc::EINVAL)
    );
    assert!(check_errno(0).is_ok());
}

#[test]
fn kill_refuses_our_own_group_and_everyone() {
    assert_eq!(kill(0, 0).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    assert_eq!(kill(-1, 0).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    // Signal 0 checks that the process exists without signalling it.
    kill(std::process::id() as i32, 0).unwrap();
}

#[test]
fn gettid_differs_between_threads() {
    let here = gettid();
    let there = std::thread::spawn(gettid).join().unwrap();
    assert!(here > 0 && there > 0);
    assert_ne!(here, there);
}
