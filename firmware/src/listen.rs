//! LAN listeners: UDP sockets and TCP accept loops (RFC 7766: pipelining, answers in any order, idle
//! timeout, bounded number of clients, bounded queries per client).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

use crate::events::{ListenerEvent, ListenerSender, TcpOut, UdpAnswers};

/// The largest DNS message.
const MAX_MESSAGE: usize = 65_535;

static NEXT_CONN: crate::sync::Shared64 = crate::sync::Shared64::new(1);

/// TCP client limits.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TcpLimits {
    pub(crate) pipeline: usize,
    pub(crate) per_source: usize,
    pub(crate) idle: Duration,
    pub(crate) answer_wait: Duration,
}

/// One configured address: a UDP socket and a TCP listener on the same port.
pub(crate) struct Listener {
    pub(crate) configured: SocketAddr,
    pub(crate) udp_addr: SocketAddr,
    pub(crate) tcp_addr: SocketAddr,
    pub(crate) index: u16,
    receivers: Vec<JoinHandle<()>>,
    writer: JoinHandle<()>,
}

impl Listener {
    /// Stops taking new queries; answers still go out until the listener is dropped.
    pub(crate) fn stop_receiving(&self) {
        for t in &self.receivers {
            t.abort();
        }
    }

    /// [`Self::stop_receiving`], then waits until the receiving tasks are gone (their TCP clients
    /// then stop reading too).
    pub(crate) async fn stop(&mut self) {
        self.stop_receiving();
        for t in self.receivers.drain(..) {
            let _ = t.await;
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop_receiving();
        self.writer.abort();
    }
}

/// Binds UDP and TCP on `addr`. For port 0 both get the same (free) port.
pub(crate) async fn bind(addr: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener)> {
    let mut last_err = None;
    for _ in 0..16 {
        let udp = UdpSocket::bind(addr).await?;
        // Absorb bursts (a LAN waking up, a page with 100 names) instead of dropping in the kernel;
        // best effort, capped by net.core.rmem_max.
        if let Err(e) = socket2::SockRef::from(&udp).set_recv_buffer_size(UDP_RECV_BUFFER) {
            log::debug!("cannot enlarge UDP receive buffer: {e}");
        }
        let port = udp.local_addr()?.port();
        match TcpListener::bind(SocketAddr::new(addr.ip(), port)).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if addr.port() == 0 => last_err = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_err.unwrap_or_else(|| std::io::Error::other("no free port")))
}

impl Listener {
    /// Starts serving already-bound sockets.
    pub(crate) async fn start(
        configured: SocketAddr,
        index: u16,
        udp: UdpSocket,
        tcp: TcpListener,
        driver: ListenerSender,
        shared: TcpShared,
        limits: watch::Receiver<TcpLimits>,
    ) -> std::io::Result<Self> {
        let udp_addr = udp.local_addr()?;
        let tcp_addr = tcp.local_addr()?;
        let udp = Arc::new(udp);
        let (queue, rx) = mpsc::channel(UDP_ANSWER_QUEUE);
        let answers = UdpAnswers {
            sock: udp.clone(),
            queue,
        };
        let _ = driver
            .send(ListenerEvent::UdpSocket {
                listener: index,
                answers: Some(answers),
            })
            .await;
        let udp_task = crate::task::spawn(udp_loop(index, udp.clone(), driver.clone()));
        let udp_writer = crate::task::spawn(udp_writer(udp, rx));
        let tcp_task = crate::task::spawn(tcp_loop(tcp, driver, shared, limits));
        Ok(Self {
            configured,
            udp_addr,
            tcp_addr,
            index,
            receivers: vec![udp_task, tcp_task],
            writer: udp_writer,
        })
    }
}

/// Requested UDP receive buffer per listener.
const UDP_RECV_BUFFER: usize = 1 << 20;

/// UDP answers waiting for the socket (a burst larger than this is dropped and counted; clients retry).
pub(crate) const UDP_ANSWER_QUEUE: usize = 4096;

/// Writes queued answers in order, waiting for socket buffer space instead of dropping on
/// `WouldBlock`.
async fn udp_writer(sock: Arc<UdpSocket>, mut rx: mpsc::Receiver<(Vec<u8>, SocketAddr)>) {
    while let Some((bytes, peer)) = rx.recv().await {
        if let Err(e) = sock.send_to(&bytes, peer).await {
            log::debug!("UDP send error: {e}");
        }
    }
}

/// Most datagrams handed to the driver in one message (those already waiting in the socket).
const UDP_BATCH: usize = crate::mmsg::RECV_BATCH;
/// Initial capacity of one message's payload buffer.
const UDP_BATCH_BYTES: usize = 2 * 1024;

async fn udp_loop(listener: u16, sock: Arc<UdpSocket>, driver: ListenerSender) {
    let mut bufs = crate::mmsg::RecvBufs::new();
    loop {
        if let Err(e) = sock.readable().await {
            log::debug!("UDP receive error: {e}");
            tokio::task::yield_now().await;
            continue;
        }
        // Everything already waiting (up to UDP_BATCH datagrams) in one system call and one message
        // to the driver, instead of one of each per query.
        let mut bytes = Vec::with_capacity(UDP_BATCH_BYTES);
        let mut datagrams = Vec::with_capacity(UDP_BATCH);
        match crate::mmsg::recv_batch(&sock, &mut bufs, UDP_BATCH, &mut bytes, &mut datagrams) {
            Ok(_) if datagrams.is_empty() => continue,
            Ok(_) => {
                let event = ListenerEvent::Udp {
                    listener,
                    bytes,
                    datagrams,
                };
                if driver.send(event).await.is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => {
                log::debug!("UDP receive error: {e}");
                tokio::task::yield_now().await;
            }
        }
    }
}

/// The `max_tcp_clients` slots, shared by every listener, resized on reload while connections hold
/// some of them: slots held when the limit is lowered are taken back as their connections close.
/// The connections per source address (`tcp_clients_per_source`) are counted across every
/// listener too, so a client does not get the share once per listening address.
pub(crate) struct TcpSlots {
    sem: Arc<Semaphore>,
    per_source: PerSource,
    state: Arc<std::sync::Mutex<SlotState>>,
    shrink: Option<JoinHandle<()>>,
}

struct SlotState {
    /// The slots the semaphore stands for: free plus held.
    size: usize,
    /// Bumped by every resize: a take-back of an earlier one gives what it took back.
    generation: u64,
}

impl TcpSlots {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            sem: Arc::new(Semaphore::new(max)),
            per_source: PerSource::default(),
            state: Arc::new(std::sync::Mutex::new(SlotState {
                size: max,
                generation: 0,
            })),
            shrink: None,
        }
    }

    /// What a new listener shares with the others.
    pub(crate) fn shared(&self) -> TcpShared {
        TcpShared {
            slots: self.sem.clone(),
            per_source: self.per_source.clone(),
        }
    }

    /// Makes the limit `max`: at once as far as free slots allow, the rest as connections close.
    pub(crate) fn resize(&mut self, max: usize) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.generation += 1;
        if let Some(t) = self.shrink.take() {
            t.abort();
        }
        if max >= st.size {
            self.sem.add_permits(max - st.size);
            st.size = max;
            return;
        }
        st.size -= self.sem.forget_permits(st.size - max);
        let rest = st.size - max;
        if rest == 0 {
            return;
        }
        let (sem, state, generation) = (self.sem.clone(), self.state.clone(), st.generation);
        self.shrink = Some(crate::task::spawn(async move {
            let Ok(n) = u32::try_from(rest) else { return };
            if let Ok(taken) = sem.acquire_many_owned(n).await {
                let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
                // A later resize counted without these: they go back (`taken` dropped).
                if st.generation == generation {
                    taken.forget();
                    st.size -= rest;
                }
            }
        }));
    }
}

impl Drop for TcpSlots {
    fn drop(&mut self) {
        if let Some(t) = &self.shrink {
            t.abort();
        }
    }
}

/// What every listener's TCP side shares: the `max_tcp_clients` slots and the connections per
/// source address.
#[derive(Clone)]
pub(crate) struct TcpShared {
    slots: Arc<Semaphore>,
    per_source: PerSource,
}

/// Connections per source address (exact: on a LAN every host shares the /64, so a prefix would
/// count them all as one). An entry goes when its last connection closes.
pub(crate) type PerSource =
    Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>;

/// One TCP connection counted against its source address; released on drop.
struct SourceSlot {
    table: PerSource,
    ip: std::net::IpAddr,
}

impl SourceSlot {
    fn take(table: &PerSource, ip: std::net::IpAddr, max: usize) -> Option<Self> {
        let mut t = table.lock().ok()?;
        let n = t.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Self {
            table: table.clone(),
            ip,
        })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        if let Ok(mut t) = self.table.lock()
            && let Some(n) = t.get_mut(&self.ip)
        {
            *n -= 1;
            if *n == 0 {
                t.remove(&self.ip);
            }
        }
    }
}

async fn tcp_loop(
    listener: TcpListener,
    driver: ListenerSender,
    shared: TcpShared,
    limits: watch::Receiver<TcpLimits>,
) {
    let TcpShared { slots, per_source } = shared;
    // Dropped with this task (the listener stops receiving, or is removed by a reload): its clients
    // then stop reading queries, and close once their answers are out.
    let (_stop, stop) = watch::channel(());
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                log::debug!("TCP accept error: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            // Over the client limit: close at once rather than queue without bound.
            drop(stream);
            continue;
        };
        let limits_now = *limits.borrow();
        let Some(source_slot) = SourceSlot::take(&per_source, peer.ip(), limits_now.per_source)
        else {
            // One source may not hold every slot (idle or slow-loris connections).
            drop(stream);
            continue;
        };
        let conn = NEXT_CONN.fetch_add(1);
        let driver = driver.clone();
        let limits = *limits.borrow();
        let stop = stop.clone();
        crate::task::spawn(async move {
            tcp_client(stream, conn, peer, driver.clone(), limits, stop).await;
            let _ = driver.send(ListenerEvent::TcpClosed { conn }).await;
            drop(source_slot);
            drop(permit);
        });
    }
}

/// Why a client's read loop ended.
enum Ended {
    /// The client closed, went quiet, broke the framing, or its listener stopped.
    Reading,
    /// Its answers could not be written (the client does not read them, or the connection broke).
    Writing,
}

async fn tcp_client(
    stream: TcpStream,
    conn: u64,
    peer: SocketAddr,
    driver: ListenerSender,
    limits: TcpLimits,
    mut stop: watch::Receiver<()>,
) {
    let _ = stream.set_nodelay(true);
    // A fixed send buffer instead of the kernel's autotuning (up to `tcp_wmem`'s 4 MiB): room for
    // the largest answer, and a client that does not read holds no more in the kernel either.
    let _ = socket2::SockRef::from(&stream).set_send_buffer_size(TCP_SEND_BUFFER);
    let (mut rd, wr) = stream.into_split();
    // At most `pipeline` frames are outstanding and each yields exactly one `TcpOut`, so this
    // channel never fills (the driver closes the connection if it ever does).
    let (tx, rx) = mpsc::channel::<TcpOut>(limits.pipeline);
    if driver
        .send(ListenerEvent::TcpOpened { conn, tx })
        .await
        .is_err()
    {
        return;
    }
    let outstanding = Arc::new(Semaphore::new(limits.pipeline));
    let mut writer = crate::task::spawn(tcp_writer(rx, wr, outstanding.clone(), limits.idle));
    let ended = loop {
        // The length prefix, read so that a timeout loses none of it (`read` is cancel-safe,
        // `read_exact` is not).
        let mut len = [0u8; 2];
        let mut have = 0;
        while have < len.len() {
            // Biased: once the listener has stopped, nothing more is read, even if a query
            // is waiting too.
            let read = tokio::select! {
                biased;
                _ = stop.changed() => break,
                _ = &mut writer => break,
                r = tokio::time::timeout(limits.idle, rd.read(&mut len[have..])) => r,
            };
            match read {
                Ok(Ok(0) | Err(_)) => break,
                Ok(Ok(k)) => have += k,
                // Idle: close when no answer is still owed, or in the middle of a prefix
                // (slow-loris guard).
                Err(_) if have > 0 || outstanding.available_permits() == limits.pipeline => break,
                Err(_) => {}
            }
        }
        if have < len.len() {
            break Ended::Reading;
        }
        let n = usize::from(u16::from_be_bytes(len));
        if n == 0 {
            break Ended::Reading;
        }
        // A client that starts a message must finish it promptly (slow-loris guard).
        // Sized to the message: no idle connection holds a largest-message buffer.
        let mut body = vec![0u8; n];
        let read = tokio::select! {
            biased;
            _ = stop.changed() => break Ended::Reading,
            r = tokio::time::timeout(limits.idle, rd.read_exact(&mut body)) => r,
        };
        if !matches!(read, Ok(Ok(_))) {
            break Ended::Reading;
        }
        // Back-pressure: at most `pipeline` queries outstanding per client.
        let permit = tokio::select! {
            biased;
            _ = stop.changed() => break Ended::Reading,
            _ = &mut writer => break Ended::Writing,
            p = outstanding.acquire() => p,
        };
        let Ok(permit) = permit else {
            break Ended::Reading;
        };
        permit.forget();
        if driver
            .send(ListenerEvent::TcpFrame {
                conn,
                peer,
                bytes: body,
            })
            .await
            .is_err()
        {
            break Ended::Reading;
        }
    };
    // The client stopped sending: give outstanding answers a bounded time to go out (none can, once
    // the writer has ended).
    if matches!(ended, Ended::Reading) && !writer.is_finished() {
        let all = u32::try_from(limits.pipeline).unwrap_or(u32::MAX);
        tokio::select! {
            _ = tokio::time::timeout(limits.answer_wait, outstanding.acquire_many(all)) => {}
            _ = &mut writer => {}
        }
    }
    writer.abort();
}

/// `SO_SNDBUF` of a LAN TCP connection (Linux doubles it for its bookkeeping).
const TCP_SEND_BUFFER: usize = 64 * 1024;

/// A TCP client's answers are taken from the driver while fewer than this many octets of them wait
/// to be written (one largest answer with its length prefix); the rest wait in the client's queue.
const TCP_UNWRITTEN: usize = 2 + MAX_MESSAGE;
/// How long answers may keep waiting in the queue behind [`TCP_UNWRITTEN`] octets. A client that
/// reads its answers empties that backlog in milliseconds, even after a burst of large ones; one that
/// asks for large answers and reads them slowly would otherwise make the daemon hold `tcp_pipeline`
/// largest answers (2 MiB by default) for as long as it took a little within every idle time. Past it,
/// the connection is closed (RFC 7766 §6.2.3 lets a server close; the client asks again). So a client
/// holds at most about twice [`TCP_UNWRITTEN`] octets for longer than this.
const TCP_BACKLOG_TIME: Duration = Duration::from_secs(2);

/// Framed answers not yet written to one TCP client.
#[derive(Default)]
struct Unwritten {
    /// The unwritten octets are `out[sent..]`.
    out: Vec<u8>,
    sent: usize,
    /// Where each frame in `out` ends.
    ends: std::collections::VecDeque<usize>,
}

impl Unwritten {
    fn len(&self) -> usize {
        self.out.len() - self.sent
    }

    fn push(&mut self, len: u16, answer: &[u8]) {
        // What was written goes (fewer than `TCP_UNWRITTEN` octets move).
        let sent = std::mem::take(&mut self.sent);
        self.out.drain(..sent);
        self.ends.iter_mut().for_each(|e| *e -= sent);
        self.out.extend_from_slice(&len.to_be_bytes());
        self.out.extend_from_slice(answer);
        self.ends.push_back(self.out.len());
    }

    /// Takes what the driver handed over; `open` turns false when it let go of the client. True when
    /// answers start waiting.
    fn take(&mut self, msg: Option<TcpOut>, outstanding: &Semaphore, open: &mut bool) -> bool {
        let had = self.len();
        match msg {
            Some(TcpOut::Answer(answer)) => match u16::try_from(answer.len()) {
                Ok(len) => self.push(len, &answer),
                // Longer than a message: never made by the engine; its slot comes back.
                Err(_) => outstanding.add_permits(1),
            },
            Some(TcpOut::NoAnswer) => outstanding.add_permits(1),
            None => *open = false,
        }
        had == 0 && self.len() > 0
    }

    /// Counts `n` more octets as written; returns how many frames that completed.
    fn written(&mut self, n: usize) -> usize {
        self.sent += n;
        let mut done = 0;
        while self.ends.front().is_some_and(|&e| e <= self.sent) {
            self.ends.pop_front();
            done += 1;
        }
        if self.sent == self.out.len() {
            // All out: an idle connection keeps no large buffer.
            if self.out.capacity() > 4096 {
                self.out = Vec::new();
            } else {
                self.out.clear();
            }
            self.sent = 0;
        }
        done
    }
}

/// Writes one TCP client's answers as the driver hands them over. Every frame's pipeline slot comes
/// back once its answer is written (or at once when there is none). Ends, closing the connection,
/// when the driver lets go of the client and all is written, when the client takes nothing for
/// `idle` while answers wait (a zero window keeps TCP alive for ever), when answers wait behind a
/// full [`TCP_UNWRITTEN`] for [`TCP_BACKLOG_TIME`], or when a write fails.
async fn tcp_writer(
    mut rx: mpsc::Receiver<TcpOut>,
    mut wr: tokio::net::tcp::OwnedWriteHalf,
    outstanding: Arc<Semaphore>,
    idle: Duration,
) {
    let mut un = Unwritten::default();
    let mut open = true;
    // Restarted by every write that makes progress, and when answers start waiting.
    let stall = tokio::time::sleep(idle);
    tokio::pin!(stall);
    // Armed when answers start waiting in the queue (behind a full `un`), not restarted while they do.
    let backlog = tokio::time::sleep(TCP_BACKLOG_TIME);
    tokio::pin!(backlog);
    let mut backlogged = false;
    let now = crate::clock::mono_now;
    loop {
        // Everything the driver has handed over, while there is room: the queue is empty unless
        // `un` is full.
        while open && un.len() < TCP_UNWRITTEN {
            match rx.try_recv() {
                Ok(msg) => {
                    if un.take(Some(msg), &outstanding, &mut open) {
                        stall.as_mut().reset(now() + idle);
                    }
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => open = false,
            }
        }
        let waiting = un.len() > 0;
        if !open && !waiting {
            return;
        }
        let room = open && un.len() < TCP_UNWRITTEN;
        let behind = open && !room && !rx.is_empty();
        if behind && !backlogged {
            backlog.as_mut().reset(now() + TCP_BACKLOG_TIME);
        }
        backlogged = behind;
        tokio::select! {
            // The queue was empty: this is the next message.
            msg = rx.recv(), if room => {
                if un.take(msg, &outstanding, &mut open) {
                    stall.as_mut().reset(now() + idle);
                }
            }
            r = wr.write(&un.out[un.sent..]), if waiting => match r {
                Ok(n) if n > 0 => {
                    stall.as_mut().reset(now() + idle);
                    let done = un.written(n);
                    outstanding.add_permits(done);
                }
                _ => return,
            },
            () = &mut stall, if waiting => return,
            () = &mut backlog, if behind => {
                log::debug!("TCP client does not take its answers; closing the connection");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Input;

    /// The next event of the one TCP client, from the driver's end of the channel.
    async fn next(rx: &mut mpsc::Receiver<Input>) -> ListenerEvent {
        match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            Ok(Some(Input::Listener(e))) => e,
            _ => panic!("no listener event"),
        }
    }

    /// A TCP listener on a loopback port of its own, its limits fixed at `limits`, with `shared`'s
    /// slots and per-source table, handing its clients to `driver`: its address and its task.
    async fn serve(
        driver: ListenerSender,
        shared: TcpShared,
        limits: TcpLimits,
    ) -> (SocketAddr, JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (limits_tx, limits_rx) = watch::channel(limits);
        let server = tokio::spawn(async move {
            let _limits = limits_tx;
            tcp_loop(listener, driver, shared, limits_rx).await;
        });
        (addr, server)
    }

    /// The length prefix is read octet by octet as they come, each read with its own idle
    /// timeout, and what was read is kept across reads: here its first octet comes halfway through
    /// the idle time and the second a little after the idle time has passed since the prefix's
    /// read began (but within the idle time of the read that waits for it). One timeout over a
    /// `read_exact` of the whole prefix would fire in between (an answer is owed, so the connection
    /// stays open) and drop the octet it had read with its future: the query would be misframed.
    #[tokio::test]
    async fn a_length_prefix_split_across_an_idle_timeout_is_not_lost() {
        const IDLE: Duration = Duration::from_millis(1_200);
        let (tx, mut rx) = crate::events::channel(16);
        let limits = TcpLimits {
            pipeline: 4,
            per_source: 4,
            idle: IDLE,
            answer_wait: Duration::from_secs(5),
        };
        let (addr, server) = serve(tx.narrow(), TcpSlots::new(4).shared(), limits).await;
        let mut client = TcpStream::connect(addr).await.unwrap();
        client.set_nodelay(true).unwrap();
        let ListenerEvent::TcpOpened { tx: answers, .. } = next(&mut rx).await else {
            panic!("not TcpOpened")
        };

        // A first query, left unanswered: the connection is not idle while it is owed.
        client.write_all(&[0, 3, b'o', b'n', b'e']).await.unwrap();
        let ListenerEvent::TcpFrame { bytes, .. } = next(&mut rx).await else {
            panic!("not TcpFrame")
        };
        assert_eq!(bytes, b"one");
        // The server's read of the next prefix (and its idle timeout) starts about now.
        let second = b"second";
        tokio::time::sleep(IDLE / 2).await;
        client.write_all(&[0]).await.unwrap();
        // Past the idle timeout of that first read, within one of the read that got the octet.
        tokio::time::sleep(IDLE * 3 / 4).await;
        let mut rest = vec![u8::try_from(second.len()).unwrap()];
        rest.extend_from_slice(second);
        client.write_all(&rest).await.unwrap();
        let ListenerEvent::TcpFrame { bytes, .. } = next(&mut rx).await else {
            panic!("not TcpFrame")
        };
        assert_eq!(bytes, second, "the query was misframed");

        // Both answers go out.
        answers.try_send(TcpOut::Answer(b"1".to_vec())).unwrap();
        answers.try_send(TcpOut::Answer(b"22".to_vec())).unwrap();
        let mut got = [0u8; 7];
        tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&got, b"\0\x011\0\x0222");
        server.abort();
    }

    /// Every listener the daemon starts gets its TCP share from the one `TcpSlots`: the same slots
    /// and the same per-source table (what the test below relies on for the whole daemon).
    #[tokio::test]
    async fn every_listener_shares_the_slots_and_the_per_source_table() {
        let slots = TcpSlots::new(8);
        let (a, b) = (slots.shared(), slots.shared());
        assert!(Arc::ptr_eq(&a.slots, &b.slots));
        assert!(Arc::ptr_eq(&a.per_source, &b.per_source));
    }

    /// `tcp_clients_per_source` counts a source's connections to every listener together: with a
    /// share of 2, two connections to one listener leave none for the other (closed at once, never
    /// handed to the driver); once one closes, the other listener takes the next.
    #[tokio::test]
    async fn the_per_source_share_spans_every_listener() {
        let (tx, mut rx) = crate::events::channel(16);
        let limits = TcpLimits {
            pipeline: 4,
            per_source: 2,
            idle: Duration::from_secs(30),
            answer_wait: Duration::from_secs(5),
        };
        let shared = TcpSlots::new(16).shared();
        let mut addrs = Vec::new();
        let mut servers = Vec::new();
        for _ in 0..2 {
            let (addr, server) = serve(tx.narrow(), shared.clone(), limits).await;
            addrs.push(addr);
            servers.push(server);
        }
        // The driver's ends of the connections (a connection whose end is dropped closes).
        let mut opened = Vec::new();
        let mut first = Vec::new();
        for _ in 0..2 {
            first.push(TcpStream::connect(addrs[0]).await.unwrap());
            let e = next(&mut rx).await;
            assert!(matches!(e, ListenerEvent::TcpOpened { .. }));
            opened.push(e);
        }
        let mut over = TcpStream::connect(addrs[1]).await.unwrap();
        let mut buf = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(5), over.read(&mut buf))
            .await
            .expect("the connection over the share is closed at once");
        assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
        drop(first.pop());
        assert!(matches!(
            next(&mut rx).await,
            ListenerEvent::TcpClosed { .. }
        ));
        let _again = TcpStream::connect(addrs[1]).await.unwrap();
        let e = next(&mut rx).await;
        assert!(matches!(e, ListenerEvent::TcpOpened { .. }));
        for s in servers {
            s.abort();
        }
    }

    /// A TCP listener with `pipeline` and `idle`, one client connected to it (its receive buffer
    /// small, so the kernel holds little of what the daemon writes), the client's 32 queries read,
    /// and the driver's end of that client.
    async fn client_with_32_queries(
        idle: Duration,
    ) -> (
        TcpStream,
        mpsc::Receiver<Input>,
        mpsc::Sender<TcpOut>,
        JoinHandle<()>,
    ) {
        let (tx, mut rx) = crate::events::channel(64);
        let limits = TcpLimits {
            pipeline: 32,
            per_source: 4,
            idle,
            answer_wait: Duration::from_secs(5),
        };
        let (addr, server) = serve(tx.narrow(), TcpSlots::new(4).shared(), limits).await;
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut client = socket.connect(addr).await.unwrap();
        let ListenerEvent::TcpOpened { tx: answers, .. } = next(&mut rx).await else {
            panic!("not TcpOpened")
        };
        for _ in 0..32 {
            client.write_all(&[0, 1, b'q']).await.unwrap();
        }
        for _ in 0..32 {
            assert!(matches!(
                next(&mut rx).await,
                ListenerEvent::TcpFrame { .. }
            ));
        }
        (client, rx, answers, server)
    }

    /// A client that asks for large answers and reads them slowly, each read within the idle time,
    /// loses its connection once answers have waited behind a full write buffer
    /// for `TCP_BACKLOG_TIME`: the daemon does not hold its 32 largest answers (2 MiB) for as
    /// long as it likes.
    #[tokio::test]
    async fn a_client_that_reads_its_large_answers_slowly_loses_the_connection() {
        // The idle time is not what closes it here.
        let (mut client, mut rx, answers, server) =
            client_with_32_queries(Duration::from_secs(10)).await;
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            let mut total = 0;
            // 40 KB/s: a read every 200 ms.
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                match client.read(&mut buf).await {
                    Ok(0) | Err(_) => return total,
                    Ok(n) => total += n,
                }
            }
        });
        let mut queued = 0;
        for _ in 0..32 {
            if answers.try_send(TcpOut::Answer(vec![7; 65_000])).is_ok() {
                queued += 1;
            }
        }
        assert_eq!(queued, 32, "the queue holds one answer per pipelined query");
        let started = crate::clock::mono_now();
        let closed = tokio::time::timeout(Duration::from_secs(8), async {
            loop {
                if let ListenerEvent::TcpClosed { .. } = next(&mut rx).await {
                    return;
                }
            }
        })
        .await;
        assert!(
            closed.is_ok(),
            "a slow reader kept its connection (and its answers queued) for 8 s"
        );
        let took = crate::clock::mono_now().saturating_duration_since(started);
        assert!(took >= TCP_BACKLOG_TIME, "closed after {took:?}");
        // It had read only a small part of what it asked for.
        let read = tokio::time::timeout(Duration::from_secs(5), reader)
            .await
            .unwrap()
            .unwrap();
        assert!(read < 32 * 65_002, "{read}");
        server.abort();
    }

    /// A client that reads gets all of a burst of large answers (32 at once, 2 MiB): the backlog
    /// rule does not close it.
    #[tokio::test]
    async fn a_client_that_reads_gets_a_burst_of_large_answers() {
        let (mut client, _rx, answers, server) =
            client_with_32_queries(Duration::from_secs(1)).await;
        for i in 0..32u8 {
            answers.try_send(TcpOut::Answer(vec![i; 65_000])).unwrap();
        }
        let mut frame = vec![0u8; 65_002];
        for i in 0..32u8 {
            tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut frame))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(frame[..2], 65_000u16.to_be_bytes());
            assert!(
                frame[2..].iter().all(|&b| b == i),
                "answer {i} out of order"
            );
        }
        server.abort();
    }
}
