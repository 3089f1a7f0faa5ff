//! The few system calls the test suites and the tooling need that the course's syscall layer
//! does not teach: a socket reset (`SO_LINGER` of 0 s), signals taken synchronously, a child's
//! clean signal mask and inherited fds, and the kernel's clock tick (the unit of the CPU times in
//! `/proc`).
//!
//! They are tooling, not course code, so they live here rather than in `eventloop::sys`, whose
//! public face is what the W04 lesson asks a student to write. The runner (`xtask/src/sys.rs`)
//! and the benchmark harness use these rather than calls of their own. Like `eventloop::sys`,
//! this module is the one place in its crate that calls libc, and every call goes through
//! `check` or `check_errno`, so no caller reads `errno` by hand. The tidy test
//! `only_eventloop_sys_calls_libc_functions` names it as the one tooling module it allows.

use std::io;
use std::mem::{self, MaybeUninit};
use std::os::fd::{AsFd, AsRawFd as _};

/// Turns libc's `-1` error return into `io::Error::last_os_error()`.
fn check<T: Copy + PartialEq + From<i8>>(result: T) -> io::Result<T> {
    if result == T::from(-1) {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

/// Turns the error number that the pthread and `sig*wait` calls return (0 for success) into an
/// `io::Result`; these calls leave `errno` alone.
fn check_errno(error: libc::c_int) -> io::Result<()> {
    if error == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(error))
    }
}

/// A signal set holding `signals`.
fn signal_set(signals: &[libc::c_int]) -> io::Result<libc::sigset_t> {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: `set` points to writable memory of the right type; sigemptyset initialises it.
    check(unsafe { libc::sigemptyset(set.as_mut_ptr()) })?;
    for &signal in signals {
        // SAFETY: `set` was initialised by sigemptyset; a bad signal number is EINVAL.
        check(unsafe { libc::sigaddset(set.as_mut_ptr(), signal) })?;
    }
    // SAFETY: sigemptyset initialised the set.
    Ok(unsafe { set.assume_init() })
}

/// Makes the next close of `socket` send a TCP reset instead of a FIN (`SO_LINGER` of 0 s), as
/// a client that vanishes does.
pub fn set_linger_zero(socket: &impl AsFd) -> io::Result<()> {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `linger` is a readable linger struct and its size is passed with it; the fd is
    // open for as long as `socket` is borrowed.
    check(unsafe {
        libc::setsockopt(
            socket.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// Blocks `signals` in the calling thread, so they stay pending until taken.
pub fn block_signals(signals: &[libc::c_int]) -> io::Result<()> {
    let set = signal_set(signals)?;
    // SAFETY: `set` is an initialised signal set; the old mask is not requested (null).
    check_errno(unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) })
}

/// Unblocks every signal in the calling thread. Async-signal-safe (it allocates nothing), so it
/// may run in a `pre_exec` hook: a child inherits its parent's mask across `exec`, and a server
/// must see SIGTERM even if its launcher blocks it.
pub fn unblock_all_signals() -> io::Result<()> {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: `set` is writable memory of the right type; sigemptyset initialises it.
    check(unsafe { libc::sigemptyset(set.as_mut_ptr()) })?;
    // SAFETY: sigemptyset initialised the set; the old mask is not requested (null).
    check_errno(unsafe {
        libc::pthread_sigmask(libc::SIG_SETMASK, set.as_ptr(), std::ptr::null_mut())
    })
}

/// Waits until one of `signals` (which the caller blocked) is pending, takes it and returns it.
pub fn wait_for_signal(signals: &[libc::c_int]) -> io::Result<libc::c_int> {
    let set = signal_set(signals)?;
    let mut received: libc::c_int = 0;
    // SAFETY: both pointers are to live, initialised values for the duration of the call.
    check_errno(unsafe { libc::sigwait(&set, &mut received) })?;
    Ok(received)
}

/// Marks every fd from `first` up close-on-exec, so a child about to `exec` inherits only the
/// descriptors below `first` (its standard streams, for `first = 3`), whatever its parent
/// inherited. Async-signal-safe, for a `pre_exec` hook. Kernels before 5.11 lack the flag and
/// answer `EINVAL`, which a caller may treat as "nothing to do".
pub fn cloexec_fds_from(first: u32) -> io::Result<()> {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets a flag on this process's
    // descriptors; it closes nothing and touches no memory.
    check(unsafe {
        libc::close_range(
            first,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC as libc::c_int,
        )
    })?;
    Ok(())
}

/// Takes one of `signals` (which the caller blocked) if it is pending, without waiting.
pub fn take_pending_signal(signals: &[libc::c_int]) -> io::Result<Option<libc::c_int>> {
    let set = signal_set(signals)?;
    let zero = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: the set and the timeout are live, initialised values; a null siginfo is allowed.
    match check(unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &zero) }) {
        Ok(signal) => Ok(Some(signal)),
        Err(error) if error.raw_os_error() == Some(libc::EAGAIN) => Ok(None),
        Err(error) if error.kind() == io::ErrorKind::Interrupted => Ok(None),
        Err(error) => Err(error),
    }
}

/// Clock ticks per second, the unit of the CPU times in `/proc/<pid>/stat` (100 if unknown).
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let ticks = check(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100);
    u64::try_from(ticks)
        .ok()
        .filter(|&ticks| ticks > 0)
        .unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{FromRawFd as _, OwnedFd};

    #[test]
    fn a_blocked_signal_is_taken_once_without_waiting() {
        // A thread of its own, so the blocked mask and the raised signal stay there.
        std::thread::spawn(|| {
            block_signals(&[libc::SIGUSR2]).unwrap();
            assert_eq!(take_pending_signal(&[libc::SIGUSR2]).unwrap(), None);
            raise(libc::SIGUSR2);
            assert_eq!(
                take_pending_signal(&[libc::SIGUSR2]).unwrap(),
                Some(libc::SIGUSR2)
            );
            assert_eq!(take_pending_signal(&[libc::SIGUSR2]).unwrap(), None);
            raise(libc::SIGUSR2);
            assert_eq!(wait_for_signal(&[libc::SIGUSR2]).unwrap(), libc::SIGUSR2);
            unblock_all_signals().unwrap();
        })
        .join()
        .unwrap();
    }

    /// The close-on-exec flag of `fd`.
    fn cloexec(fd: &impl AsFd) -> bool {
        // SAFETY: the fd is open while borrowed; F_GETFD only reads its flags.
        let flags = check(unsafe { libc::fcntl(fd.as_fd().as_raw_fd(), libc::F_GETFD) }).unwrap();
        flags & libc::FD_CLOEXEC != 0
    }

    #[test]
    fn cloexec_fds_from_marks_an_inheritable_fd_close_on_exec() {
        let file = std::fs::File::open("/dev/null").unwrap();
        // SAFETY: the fd is open while `file` lives; F_DUPFD makes a new fd without the flag.
        let raw = check(unsafe { libc::fcntl(file.as_raw_fd(), libc::F_DUPFD, 3) }).unwrap();
        // SAFETY: fcntl just returned this fd and nothing else owns it.
        let inheritable = unsafe { OwnedFd::from_raw_fd(raw) };
        assert!(!cloexec(&inheritable));
        cloexec_fds_from(3).unwrap();
        assert!(cloexec(&inheritable));
    }

    /// Sends `signal` to the calling thread.
    fn raise(signal: libc::c_int) {
        // SAFETY: raise takes a signal number and reports a bad one as an error.
        check(unsafe { libc::raise(signal) }).unwrap();
    }

    #[test]
    fn the_clock_ticks() {
        assert!(clock_ticks_per_second() > 0);
    }

    #[test]
    fn a_socket_with_linger_zero_resets_the_peer() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        set_linger_zero(&client).unwrap();
        drop(client);
        let mut buffer = [0u8; 1];
        let error = std::io::Read::read(&mut server, &mut buffer).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::ConnectionReset);
    }
}
