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

/// A duplicate of `fd` without the close-on-exec flag: the one kind of fd this crate never
/// creates on purpose, made here to watch `cloexec_fds_from` set the flag.
fn dup_without_cloexec(fd: BorrowedFd<'_>) -> OwnedFd {
    // SAFETY: `fd` is open (it is borrowed).
    let fd = syscall!(fcntl(fd.as_raw_fd(), libc::F_DUPFD, 0)).unwrap();
    // SAFETY: fcntl(F_DUPFD) just returned this new fd and nothing else owns it.
    unsafe { owned(fd) }
}

fn fd_flags(fd: BorrowedFd<'_>) -> c_int {
    // SAFETY: `fd` is open (it is borrowed); F_GETFD reads its flags.
    syscall!(fcntl(fd.as_raw_fd(), libc::F_GETFD)).unwrap()
}

#[test]
fn cloexec_fds_from_marks_descriptors_close_on_exec() {
    let (a, _b) = socketpair().unwrap();
    let cleared = dup_without_cloexec(a.as_fd());
    assert_eq!(fd_flags(cleared.as_fd()) & libc::FD_CLOEXEC, 0);
    cloexec_fds_from(3).unwrap();
    assert_eq!(
        fd_flags(cleared.as_fd()) & libc::FD_CLOEXEC,
        libc::FD_CLOEXEC
    );
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
fn signals_can_be_taken_synchronously() {
    // A thread of its own, so the blocked mask and the raised signal stay there.
    std::thread::spawn(|| {
        block_signals(&[libc::SIGUSR2]).unwrap();
        assert_eq!(take_pending_signal(&[libc::SIGUSR2]).unwrap(), None);
        raise_signal(libc::SIGUSR2).unwrap();
        assert_eq!(wait_for_signal(&[libc::SIGUSR2]).unwrap(), libc::SIGUSR2);
        raise_signal(libc::SIGUSR2).unwrap();
        assert_eq!(
            take_pending_signal(&[libc::SIGUSR2]).unwrap(),
            Some(libc::SIGUSR2)
        );
        unblock_all_signals().unwrap();
    })
    .join()
    .unwrap();
}

#[test]
fn kill_refuses_our_own_group_and_everyone() {
    assert_eq!(kill(0, 0).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    assert_eq!(kill(-1, 0).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    // Signal 0 checks that the process exists without signalling it.
    kill(std::process::id() as i32, 0).unwrap();
    assert!(clock_ticks_per_second() > 0);
}

#[test]
fn gettid_differs_between_threads() {
    let here = gettid();
    let there = std::thread::spawn(gettid).join().unwrap();
    assert!(here > 0 && there > 0);
    assert_ne!(here, there);
}
