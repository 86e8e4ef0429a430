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
        max_tcp_clients: Arc<Semaphore>,
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
        let udp_task = tokio::spawn(udp_loop(index, udp.clone(), driver.clone()));
        let udp_writer = tokio::spawn(udp_writer(udp, rx));
        let tcp_task = tokio::spawn(tcp_loop(tcp, driver, max_tcp_clients, limits));
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
    let mut bufs = crate::mmsg::RecvBufs::new(MAX_MESSAGE);
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
pub(crate) struct TcpSlots {
    sem: Arc<Semaphore>,
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
            state: Arc::new(std::sync::Mutex::new(SlotState {
                size: max,
                generation: 0,
            })),
            shrink: None,
        }
    }

    pub(crate) fn semaphore(&self) -> Arc<Semaphore> {
        self.sem.clone()
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
        self.shrink = Some(tokio::spawn(async move {
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

type PerSource = Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>;

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
    slots: Arc<Semaphore>,
    limits: watch::Receiver<TcpLimits>,
) {
    let per_source: PerSource = Arc::default();
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
        tokio::spawn(async move {
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
    let (mut rd, mut wr) = stream.into_split();
    // At most `pipeline` frames are outstanding and each yields exactly one `TcpOut`, so this
    // channel never fills (the driver closes the connection if it ever does).
    let (tx, mut rx) = mpsc::channel::<TcpOut>(limits.pipeline);
    if driver
        .send(ListenerEvent::TcpOpened { conn, tx })
        .await
        .is_err()
    {
        return;
    }
    let outstanding = Arc::new(Semaphore::new(limits.pipeline));
    let writer_outstanding = outstanding.clone();
    let mut writer = tokio::spawn(async move {
        while let Some(out) = rx.recv().await {
            // Every frame's permit comes back: answered, dropped, or (never expected) too long.
            if let TcpOut::Answer(answer) = out
                && let Ok(len) = u16::try_from(answer.len())
            {
                let mut framed = Vec::with_capacity(2 + answer.len());
                framed.extend_from_slice(&len.to_be_bytes());
                framed.extend_from_slice(&answer);
                // A client that does not read its answers (a zero window keeps TCP alive) loses
                // the connection after the idle time instead of holding its slot for ever.
                match tokio::time::timeout(limits.idle, wr.write_all(&framed)).await {
                    Ok(Ok(())) => {}
                    _ => return,
                }
            }
            writer_outstanding.add_permits(1);
        }
    });
    let mut body = vec![0u8; MAX_MESSAGE];
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
        let read = tokio::select! {
            biased;
            _ = stop.changed() => break Ended::Reading,
            r = tokio::time::timeout(limits.idle, rd.read_exact(&mut body[..n])) => r,
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
                bytes: body[..n].to_vec(),
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
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = TcpLimits {
            pipeline: 4,
            per_source: 4,
            idle: IDLE,
            answer_wait: Duration::from_secs(5),
        };
        let (_limits, limits_rx) = watch::channel(limits);
        let server = tokio::spawn(tcp_loop(
            listener,
            tx.narrow(),
            Arc::new(Semaphore::new(4)),
            limits_rx,
        ));
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
}
