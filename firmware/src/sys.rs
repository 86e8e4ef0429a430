//! `unsafe` code (with `mmsg.rs`, the daemon's only): switching to an unprivileged user after the
//! listeners are bound, and the upstream connections' retransmission-timeout floor.
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
}

impl std::fmt::Display for PrivError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoSuchUser(u) => write!(f, "no such user: {u}"),
            Self::Call(c, e) => write!(f, "{c} failed: {e}"),
            Self::StillPrivileged => {
                f.write_str("privileges could be regained after switching user")
            }
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
    if uid != 0 && unsafe { libc::setuid(0) } == 0 {
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
