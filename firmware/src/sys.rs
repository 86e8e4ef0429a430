//! `unsafe` code (with `mmsg.rs`, the daemon's only): switching to an unprivileged user after the
//! listeners are bound, the upstream connections' retransmission-timeout floor, and the daemon's
//! signals read from a signalfd.
#![allow(unsafe_code)]

use std::ffi::CString;

/// Why the user switch failed.
#[derive(Debug)]
pub enum PrivError {
    /// No such user.
    NoSuchUser(String),
    /// A system call failed.
    Call(&'static str, std::io::Error),
    /// Root could be regained after the switch.
    StillPrivileged,
    /// The user is root by another name (uid 0).
    Root(String),
}

impl std::fmt::Display for PrivError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoSuchUser(u) => write!(f, "no such user: {u}"),
            Self::Call(c, e) => write!(f, "{c} failed: {e}"),
            Self::StillPrivileged => {
                f.write_str("privileges could be regained after switching user")
            }
            Self::Root(u) => write!(f, "user {u} is root (uid 0): it would keep every privilege"),
        }
    }
}

impl std::error::Error for PrivError {}

/// Is the process running as root?
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Switches to `user` (its uid, its primary gid, no supplementary groups). Switching from root to a
/// non-root uid clears the permitted and effective capability sets, so nothing privileged is left.
pub fn drop_privileges(user: &str) -> Result<(u32, u32), PrivError> {
    let name = CString::new(user).map_err(|_| PrivError::NoSuchUser(user.into()))?;
    // SAFETY: passwd is plain old data; zeroed is a valid (empty) value that getpwnam_r overwrites.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the duration of the call; buf's length is passed with it.
    let rc = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return Err(PrivError::NoSuchUser(user.into()));
    }
    let (uid, gid) = (pwd.pw_uid, pwd.pw_gid);
    if uid == 0 {
        // Another name for root (`toor`): switching to it drops nothing.
        return Err(PrivError::Root(user.into()));
    }
    // SAFETY: setgroups with a zero length never reads the (null) list.
    if unsafe { libc::setgroups(0, std::ptr::null()) } != 0 {
        return Err(PrivError::Call(
            "setgroups",
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: plain system calls on integers.
    if unsafe { libc::setgid(gid) } != 0 {
        return Err(PrivError::Call("setgid", std::io::Error::last_os_error()));
    }
    // SAFETY: as above.
    if unsafe { libc::setuid(uid) } != 0 {
        return Err(PrivError::Call("setuid", std::io::Error::last_os_error()));
    }
    // SAFETY: as above; succeeding here would mean root can be regained.
    if unsafe { libc::setuid(0) } == 0 {
        return Err(PrivError::StillPrivileged);
    }
    Ok((uid, gid))
}

/// Linux `TCP_RTO_MIN_US` (6.15+): the connection's lowest retransmission timeout.
const TCP_RTO_MIN_US: libc::c_int = 45;

/// Sets `TCP_RTO_MIN_US` on the TCP socket `fd` to `us` microseconds. An error from an older kernel
/// means it lacks the option.
pub fn set_tcp_rto_min_us(fd: std::os::fd::RawFd, us: u32) -> std::io::Result<()> {
    let value = libc::c_int::try_from(us).unwrap_or(libc::c_int::MAX);
    // SAFETY: setsockopt on a socket the caller holds open, reading one c_int that lives across
    // the call.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            TCP_RTO_MIN_US,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// SIGHUP, SIGTERM and SIGINT, blocked and read from a signalfd (the daemon's event loop waits for
/// it with the sockets). No signal handlers: tokio's `signal` feature (its handler registry and
/// driver, 21 KB of the mipsel binary) is not needed.
pub struct Signals(std::os::fd::OwnedFd);

impl Signals {
    /// The signals this reads.
    pub const SIGNALS: [libc::c_int; 3] = [libc::SIGHUP, libc::SIGTERM, libc::SIGINT];

    /// Blocks [`Signals::SIGNALS`] in the calling thread and opens a signalfd for them. Call it
    /// before any other thread starts: threads inherit the mask, so a signal sent to the process
    /// stays pending until read here, whichever thread the kernel picks. The daemon never forks or
    /// executes anything, so no child inherits the mask.
    pub fn block() -> std::io::Result<Self> {
        use std::os::fd::FromRawFd;
        // SAFETY: sigset_t is plain data; sigemptyset initializes it before it is read.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: set is a valid sigset_t for the duration of the calls.
        unsafe {
            libc::sigemptyset(&mut set);
            for sig in Self::SIGNALS {
                libc::sigaddset(&mut set, sig);
            }
        }
        // SAFETY: set is valid; the old mask is not asked for (null).
        let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        // SAFETY: -1 asks for a new descriptor; set is valid for the call.
        let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd is a new descriptor that nothing else owns.
        Ok(Self(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }))
    }

    /// Hands the signalfd to the runtime's reactor (call inside the runtime).
    pub fn register(self) -> std::io::Result<tokio::io::unix::AsyncFd<Self>> {
        // SAFETY: the descriptor is the OwnedFd's, open until the Signals is dropped, and
        // `as_raw_fd` always returns that same descriptor.
        unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(self, tokio::io::Interest::READABLE)
        }
        .map_err(std::io::Error::from)
    }

    /// The next pending signal's number; `None` when none is pending.
    pub fn read(&self) -> std::io::Result<Option<libc::c_int>> {
        use std::os::fd::AsRawFd;
        // SAFETY: signalfd_siginfo is plain data, fully written by a successful read.
        let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        let len = size_of::<libc::signalfd_siginfo>();
        let n = loop {
            // SAFETY: reads at most len bytes into info, which lives across the call.
            let n = unsafe { libc::read(self.0.as_raw_fd(), (&raw mut info).cast(), len) };
            if n >= 0 {
                break n;
            }
            let e = std::io::Error::last_os_error();
            match e.kind() {
                std::io::ErrorKind::Interrupted => continue,
                std::io::ErrorKind::WouldBlock => return Ok(None),
                _ => return Err(e),
            }
        };
        if n as usize != len {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(Some(info.ssi_signo as libc::c_int))
    }
}

impl std::os::fd::AsRawFd for Signals {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `user` that is uid 0 under any name is refused before anything changes (so this runs
    /// safely as root too); one that does not exist is named.
    #[test]
    fn a_user_with_uid_0_is_refused() {
        assert!(matches!(drop_privileges("root"), Err(PrivError::Root(u)) if u == "root"));
        assert!(matches!(
            drop_privileges("no-such-user-lanveil"),
            Err(PrivError::NoSuchUser(_))
        ));
    }

    #[test]
    fn blocked_signals_are_read_from_the_signalfd() {
        // On a thread of its own, with signals sent to that thread only: the test harness's other
        // threads keep their masks.
        std::thread::spawn(|| {
            let signals = Signals::block().unwrap();
            assert_eq!(signals.read().unwrap(), None);
            for sig in [libc::SIGTERM, libc::SIGHUP, libc::SIGINT] {
                // SAFETY: a signal to this very thread, which blocks it: no handler runs.
                assert_eq!(unsafe { libc::pthread_kill(libc::pthread_self(), sig) }, 0);
                assert_eq!(signals.read().unwrap(), Some(sig));
            }
            assert_eq!(signals.read().unwrap(), None);
        })
        .join()
        .unwrap();
    }
}
