//! Batched UDP I/O for the LAN listeners: `recvmmsg(2)` takes every datagram already waiting in one
//! system call, `sendmmsg(2)` writes a turn's answers in one. Both run non-blocking inside tokio's
//! `try_io`, so readiness is tracked as for any other socket operation. Linux only (so is lanveil).
//!
//! With `sys.rs`, the daemon's only `unsafe` code: C structs for the two system calls.
#![allow(unsafe_code)]

use std::io;
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Datagrams per `recvmmsg`.
pub(crate) const RECV_BATCH: usize = 16;
/// Bytes per receive slot. A DNS query longer than this is not legitimate (EDNS's usual largest
/// payload; padded queries are a few hundred octets): it arrives cut, wherever it lands in a batch,
/// and is answered FORMERR (its counts promise more than is there). So a batch is at most 64 KiB.
const SLOT: usize = 4096;
/// Datagrams per `sendmmsg`.
const SEND_BATCH: usize = 64;

/// Receive buffers, kept across calls (no allocation per batch).
pub(crate) struct RecvBufs {
    slots: Vec<u8>,
}

impl RecvBufs {
    pub(crate) fn new() -> Self {
        Self {
            slots: vec![0; SLOT * RECV_BATCH],
        }
    }
}

/// Receives up to `max` (≤ [`RECV_BATCH`]) datagrams that are already waiting, appending each payload to
/// `bytes` and `(peer, length)` to `datagrams`. `WouldBlock` when none is waiting.
pub(crate) fn recv_batch(
    sock: &UdpSocket,
    bufs: &mut RecvBufs,
    max: usize,
    bytes: &mut Vec<u8>,
    datagrams: &mut Vec<(SocketAddr, usize)>,
) -> io::Result<usize> {
    let max = max.clamp(1, RECV_BATCH);
    // SAFETY: sockaddr_storage, iovec and mmsghdr are plain C structs for which all-zero bytes are a
    // valid value.
    let mut addrs: [libc::sockaddr_storage; RECV_BATCH] =
        unsafe { MaybeUninit::zeroed().assume_init() };
    let mut iovs: [libc::iovec; RECV_BATCH] = unsafe { MaybeUninit::zeroed().assume_init() };
    let mut hdrs: [libc::mmsghdr; RECV_BATCH] = unsafe { MaybeUninit::zeroed().assume_init() };
    for (i, slot) in bufs.slots.chunks_exact_mut(SLOT).take(max).enumerate() {
        iovs[i] = libc::iovec {
            iov_base: slot.as_mut_ptr().cast(),
            iov_len: SLOT,
        };
        hdrs[i].msg_hdr.msg_name = (&raw mut addrs[i]).cast();
        hdrs[i].msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        hdrs[i].msg_hdr.msg_iov = &raw mut iovs[i];
        hdrs[i].msg_hdr.msg_iovlen = 1;
    }
    let fd = sock.as_raw_fd();
    let mut got = 0;
    let r = sock.try_io(Interest::READABLE, || {
        // SAFETY: `hdrs[..max]` are initialised headers whose name and iovec pointers point into
        // `addrs`, `iovs` and the buffers of `bufs`, all alive and unaliased for this call; the
        // kernel writes at most `msg_namelen` / `iov_len` bytes into each.
        let r = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                max as libc::c_uint,
                libc::MSG_DONTWAIT as _,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        got = r as usize;
        if got < max {
            // Fewer than asked for: the socket is drained (as tokio assumes after a short read),
            // so its readiness is cleared here and the next wait does not begin with a call that
            // only says EAGAIN. Edge-triggered epoll reports the next datagram.
            Err(io::ErrorKind::WouldBlock.into())
        } else {
            Ok(got)
        }
    });
    let n = match r {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => got,
        r => r?,
    };
    for i in 0..n {
        let len = hdrs[i].msg_len as usize;
        let Some(peer) = sockaddr_to_std(&addrs[i]) else {
            continue;
        };
        let payload = &bufs.slots[i * SLOT..i * SLOT + len.min(SLOT)];
        bytes.extend_from_slice(payload);
        datagrams.push((peer, payload.len()));
    }
    Ok(n)
}

fn sockaddr_to_std(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, which it is large and aligned
            // enough for.
            let a = unsafe { &*(std::ptr::from_ref(ss).cast::<libc::sockaddr_in>()) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let a = unsafe { &*(std::ptr::from_ref(ss).cast::<libc::sockaddr_in6>()) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                u32::from_be(a.sin6_flowinfo),
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Sends as many of `answers` as the socket takes now, in order, in batches of up to 64 per system
/// call; returns how many were sent (the rest stay for the caller to queue). Errors other than
/// `WouldBlock` skip the datagram that caused them (like a failed `send_to`).
pub(crate) fn send_batch(sock: &UdpSocket, answers: &[(Vec<u8>, SocketAddr)]) -> usize {
    let mut done = 0;
    while done < answers.len() {
        let chunk = &answers[done..(done + SEND_BATCH).min(answers.len())];
        let addrs: Vec<socket2::SockAddr> = chunk
            .iter()
            .map(|(_, peer)| socket2::SockAddr::from(*peer))
            .collect();
        let mut iovs: Vec<libc::iovec> = chunk
            .iter()
            .map(|(b, _)| libc::iovec {
                iov_base: b.as_ptr().cast_mut().cast(),
                iov_len: b.len(),
            })
            .collect();
        // SAFETY: an all-zero mmsghdr is a valid value (null pointers, zero lengths).
        let mut hdrs: Vec<libc::mmsghdr> = (0..chunk.len())
            .map(|_| unsafe { MaybeUninit::<libc::mmsghdr>::zeroed().assume_init() })
            .collect();
        for (i, h) in hdrs.iter_mut().enumerate() {
            h.msg_hdr.msg_name = addrs[i].as_ptr().cast_mut().cast();
            h.msg_hdr.msg_namelen = addrs[i].len();
            h.msg_hdr.msg_iov = &raw mut iovs[i];
            h.msg_hdr.msg_iovlen = 1;
        }
        let fd = sock.as_raw_fd();
        let r = sock.try_io(Interest::WRITABLE, || {
            // SAFETY: every header points at a live SockAddr and a live iovec over a live answer
            // buffer; sendmmsg only reads them.
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    hdrs.as_mut_ptr(),
                    hdrs.len() as libc::c_uint,
                    libc::MSG_DONTWAIT as _,
                )
            };
            if r < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(r as usize)
            }
        });
        match r {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => {
                log::debug!("UDP send error: {e}");
                done += 1;
            }
        }
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn batches_round_trip_in_order() {
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to = c.local_addr().unwrap();
        let answers: Vec<(Vec<u8>, SocketAddr)> = (0..100u8)
            .map(|i| (vec![i; usize::from(i) + 1], to))
            .collect();
        a.writable().await.unwrap();
        assert_eq!(send_batch(&a, &answers), 100);
        let mut bufs = RecvBufs::new();
        let (mut bytes, mut dgrams) = (Vec::new(), Vec::new());
        let mut got = 0;
        while got < 100 {
            c.readable().await.unwrap();
            match recv_batch(&c, &mut bufs, RECV_BATCH, &mut bytes, &mut dgrams) {
                Ok(n) => {
                    assert!(n <= RECV_BATCH);
                    got += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
        let mut pos = 0;
        for (i, (peer, len)) in dgrams.iter().enumerate() {
            assert_eq!(*peer, a.local_addr().unwrap());
            assert_eq!(*len, i + 1);
            assert!(bytes[pos..pos + len].iter().all(|&x| usize::from(x) == i));
            pos += len;
        }
        // Long datagrams are cut to the slot, the first as any other.
        let big = vec![7u8; 9000];
        a.writable().await.unwrap();
        assert_eq!(send_batch(&a, &[(big.clone(), to), (big.clone(), to)]), 2);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let (mut bytes, mut dgrams) = (Vec::new(), Vec::new());
        c.readable().await.unwrap();
        let n = recv_batch(&c, &mut bufs, RECV_BATCH, &mut bytes, &mut dgrams).unwrap();
        assert_eq!(n, 2);
        assert_eq!(dgrams[0].1, SLOT);
        assert_eq!(dgrams[1].1, SLOT);
    }
}
