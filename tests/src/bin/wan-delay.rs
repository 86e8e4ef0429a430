//! `wan-delay`: a userspace WAN emulator (issue 17) for a kernel without `netem`.
//!
//! It creates one TUN device in each of two existing network namespaces, gives each an address, and
//! forwards every IP packet between them, holding it for a fixed one-way delay (plus optional jitter)
//! and dropping a seeded random share of them. Both directions are emulated the same way, so the
//! round-trip time is twice `--delay-ms`.
//!
//! ```text
//!   netns A (clients, forwarders)  tun A ──> [queue: delay, jitter, loss] ──> tun B  netns B (upstreams)
//!                                  tun A <── [queue: delay, jitter, loss] <── tun B
//! ```
//!
//! Bounded: each direction holds at most `--queue` packets (tail drop beyond), the process exits by
//! itself after `--timeout` seconds or when its parent dies, and the devices vanish with it (they are
//! not persistent). Jitter never reorders: a packet is released no earlier than the one before it
//! (like a single link), so TCP sees delay variation, not reordering.
//!
//! With `--events FILE` it logs every IPv4 TCP packet carrying SYN, FIN or RST, and every TCP packet it
//! drops, as one JSON line (time, direction, flags, endpoints, payload length, sequence number, whether it
//! was dropped): the connection opens and closes of whoever talks across, and each emulated loss, as the
//! wire shows them, for tests and the benchmark. The first line gives the time base on CLOCK_MONOTONIC. `--stats FILE` is rewritten once a
//! second with the packet counters.
//!
//! Usage (as root; the namespaces must exist, e.g. from `ip netns add`):
//!
//! ```text
//! wan-delay --a-ns NS --a-dev NAME --a-addr CIDR --b-ns NS --b-dev NAME --b-addr CIDR
//!           [--delay-ms 15] [--jitter-ms 0] [--loss 0.0] [--seed 1] [--queue 1024]
//!           [--timeout 1200] [--events FILE] [--stats FILE]
//! ```
//!
//! It prints `ready` on stdout once both devices are up and addressed. Each SIGUSR1 makes it drop the
//! next TCP SYN (without ACK) from A to B: a lost connection attempt, on demand (tests).
// The TUN ioctl, setns and prctl have no safe wrapper in std or the libc crate.
#![allow(unsafe_code)]
#![allow(clippy::disallowed_types)]

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;

#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

struct Opts {
    a_ns: String,
    a_dev: String,
    a_addr: String,
    b_ns: String,
    b_dev: String,
    b_addr: String,
    delay: Duration,
    jitter: Duration,
    loss: f64,
    seed: u64,
    queue: usize,
    timeout: Duration,
    events: Option<String>,
    stats: Option<String>,
}

fn parse() -> Result<Opts, String> {
    let mut o = Opts {
        a_ns: String::new(),
        a_dev: String::new(),
        a_addr: String::new(),
        b_ns: String::new(),
        b_dev: String::new(),
        b_addr: String::new(),
        delay: Duration::from_millis(15),
        jitter: Duration::ZERO,
        loss: 0.0,
        seed: 1,
        queue: 1024,
        timeout: Duration::from_secs(1200),
        events: None,
        stats: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(k) = args.next() {
        let v = args.next().ok_or_else(|| format!("{k} needs a value"))?;
        let num = |v: &str| v.parse::<f64>().map_err(|e| format!("{k}: {e}"));
        match k.as_str() {
            "--a-ns" => o.a_ns = v,
            "--a-dev" => o.a_dev = v,
            "--a-addr" => o.a_addr = v,
            "--b-ns" => o.b_ns = v,
            "--b-dev" => o.b_dev = v,
            "--b-addr" => o.b_addr = v,
            "--delay-ms" => o.delay = Duration::from_secs_f64(num(&v)? / 1000.0),
            "--jitter-ms" => o.jitter = Duration::from_secs_f64(num(&v)? / 1000.0),
            "--loss" => o.loss = num(&v)?,
            "--seed" => o.seed = v.parse().map_err(|e| format!("{k}: {e}"))?,
            "--queue" => o.queue = v.parse().map_err(|e| format!("{k}: {e}"))?,
            "--timeout" => o.timeout = Duration::from_secs_f64(num(&v)?),
            "--events" => o.events = Some(v),
            "--stats" => o.stats = Some(v),
            _ => return Err(format!("unknown option {k}")),
        }
    }
    for (name, v) in [
        ("--a-ns", &o.a_ns),
        ("--a-dev", &o.a_dev),
        ("--a-addr", &o.a_addr),
        ("--b-ns", &o.b_ns),
        ("--b-dev", &o.b_dev),
        ("--b-addr", &o.b_addr),
    ] {
        if v.is_empty() {
            return Err(format!("{name} is required"));
        }
    }
    if !(0.0..=1.0).contains(&o.loss) || o.queue == 0 || o.a_dev.len() >= libc::IFNAMSIZ {
        return Err("--loss must be in 0..1, --queue > 0, device names < 16 bytes".into());
    }
    Ok(o)
}

fn enter_netns(ns: &str) -> io::Result<()> {
    let f = File::open(format!("/var/run/netns/{ns}"))?;
    // SAFETY: `f` is an open namespace file descriptor for the duration of the call; setns only
    // changes the calling thread's network namespace.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A non-persistent TUN device `name` in the calling thread's network namespace.
fn open_tun(name: &str) -> io::Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")?;
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: IFF_TUN | IFF_NO_PI,
        _pad: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: TUNSETIFF reads and writes a `struct ifreq`; `req` has its layout (16-byte name, then
    // the flags in a 24-byte union) and lives across the call; the fd is open.
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), TUNSETIFF, &mut req) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(f)
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// splitmix64: small, seeded, reproducible.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Default)]
struct Counters {
    packets: AtomicU64,
    bytes: AtomicU64,
    lost: AtomicU64,
    queue_drops: AtomicU64,
    forwarded: AtomicU64,
}

struct Shared {
    start: Instant,
    events: Option<Mutex<File>>,
    dirs: [Counters; 2],
}

const DIR_NAMES: [&str; 2] = ["a>b", "b>a"];

/// IPv4 TCP packets carrying SYN, FIN or RST, and every dropped IPv4 TCP packet, as a JSON line (with
/// the payload length and sequence number); `None` for anything else.
fn tcp_event(pkt: &[u8], t_ms: f64, dir: usize, dropped: bool) -> Option<String> {
    let v_ihl = *pkt.first()?;
    if v_ihl >> 4 != 4 || *pkt.get(9)? != 6 {
        return None;
    }
    let ihl = usize::from(v_ihl & 0x0f) * 4;
    let tcp = pkt.get(ihl..)?;
    let flags = *tcp.get(13)?;
    if flags & 0x07 == 0 && !dropped {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([*pkt.get(2)?, *pkt.get(3)?]));
    let payload = total.saturating_sub(ihl + usize::from(*tcp.get(12)? >> 4) * 4);
    let seq = u32::from_be_bytes([*tcp.get(4)?, *tcp.get(5)?, *tcp.get(6)?, *tcp.get(7)?]);
    let mut f = String::new();
    for (bit, c) in [
        (0x02, 'S'),
        (0x01, 'F'),
        (0x04, 'R'),
        (0x08, 'P'),
        (0x10, 'A'),
    ] {
        if flags & bit != 0 {
            f.push(c);
        }
    }
    let ipa = |o: usize| -> Option<String> {
        let b = pkt.get(o..o + 4)?;
        Some(format!("{}.{}.{}.{}", b[0], b[1], b[2], b[3]))
    };
    let port =
        |o: usize| -> Option<u16> { Some(u16::from_be_bytes([*tcp.get(o)?, *tcp.get(o + 1)?])) };
    Some(format!(
        "{{\"t_ms\":{t_ms:.3},\"dir\":\"{}\",\"flags\":\"{f}\",\"src\":\"{}:{}\",\"dst\":\"{}:{}\",\"len\":{payload},\"seq\":{seq},\"dropped\":{dropped}}}\n",
        DIR_NAMES[dir],
        ipa(12)?,
        port(0)?,
        ipa(16)?,
        port(2)?,
    ))
}

/// SYNs from A to B still to drop (one more per SIGUSR1).
static DROP_SYNS: AtomicU32 = AtomicU32::new(0);

extern "C" fn on_sigusr1(_: libc::c_int) {
    // Async-signal-safe: one atomic add.
    DROP_SYNS.fetch_add(1, Ordering::SeqCst);
}

/// Whether `pkt` is an IPv4 TCP SYN without ACK (a connection attempt).
fn is_syn(pkt: &[u8]) -> bool {
    let Some(&v_ihl) = pkt.first() else {
        return false;
    };
    let ihl = usize::from(v_ihl & 0x0f) * 4;
    v_ihl >> 4 == 4 && pkt.get(9) == Some(&6) && pkt.get(ihl + 13).is_some_and(|f| f & 0x12 == 0x02)
}

/// Takes one of the SYN drops SIGUSR1 asked for, if any.
fn take_syn_drop() -> bool {
    DROP_SYNS
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

fn reader(mut from: File, to: SyncSender<(Instant, Vec<u8>)>, dir: usize, o: &Opts, sh: &Shared) {
    let mut rng = Rng(o.seed ^ (0x5151_5151 * (dir as u64 + 1)));
    let mut buf = vec![0u8; 65_536];
    let mut last_release = Instant::now();
    let c = &sh.dirs[dir];
    loop {
        let n = match from.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("wan-delay: read {}: {e}", DIR_NAMES[dir]);
                std::process::exit(1);
            }
        };
        let now = Instant::now();
        let pkt = &buf[..n];
        c.packets.fetch_add(1, Ordering::Relaxed);
        c.bytes.fetch_add(n as u64, Ordering::Relaxed);
        let lost =
            (o.loss > 0.0 && rng.unit() < o.loss) || (dir == 0 && is_syn(pkt) && take_syn_drop());
        if let Some(ev) = &sh.events
            && let Some(line) = tcp_event(
                pkt,
                now.duration_since(sh.start).as_secs_f64() * 1e3,
                dir,
                lost,
            )
            && let Ok(mut f) = ev.lock()
        {
            let _ = f.write_all(line.as_bytes());
        }
        if lost {
            c.lost.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let mut hold = o.delay;
        if !o.jitter.is_zero() {
            // Uniform in [delay - jitter, delay + jitter], never below zero.
            let j = o.jitter.as_secs_f64() * (2.0 * rng.unit() - 1.0);
            hold = Duration::from_secs_f64((o.delay.as_secs_f64() + j).max(0.0));
        }
        let release = (now + hold).max(last_release);
        match to.try_send((release, pkt.to_vec())) {
            Ok(()) => last_release = release,
            Err(TrySendError::Full(_)) => {
                c.queue_drops.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => return,
        }
    }
}

fn writer(mut to: File, rx: Receiver<(Instant, Vec<u8>)>, dir: usize, sh: &Shared) {
    while let Ok((release, pkt)) = rx.recv() {
        let now = Instant::now();
        if release > now {
            std::thread::sleep(release - now);
        }
        // A packet the kernel refuses (e.g. the device went down) is a loss, not a failure.
        if to.write(&pkt).is_ok() {
            sh.dirs[dir].forwarded.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn stats_json(sh: &Shared) -> String {
    let d = |c: &Counters| {
        format!(
            "{{\"packets\":{},\"bytes\":{},\"lost\":{},\"queue_drops\":{},\"forwarded\":{}}}",
            c.packets.load(Ordering::Relaxed),
            c.bytes.load(Ordering::Relaxed),
            c.lost.load(Ordering::Relaxed),
            c.queue_drops.load(Ordering::Relaxed),
            c.forwarded.load(Ordering::Relaxed)
        )
    };
    format!(
        "{{\"uptime_s\":{:.1},\"a>b\":{},\"b>a\":{}}}\n",
        sh.start.elapsed().as_secs_f64(),
        d(&sh.dirs[0]),
        d(&sh.dirs[1])
    )
}

fn write_stats(path: &str, sh: &Shared) {
    let tmp = format!("{path}.tmp");
    if std::fs::write(&tmp, stats_json(sh)).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}

fn run() -> Result<(), String> {
    let o = parse()?;
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number and has no memory effects.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) };
    let parent = std::os::unix::process::parent_id();
    // SAFETY: the handler only does an atomic add, which is async-signal-safe.
    unsafe { libc::signal(libc::SIGUSR1, on_sigusr1 as *const () as libc::sighandler_t) };
    enter_netns(&o.a_ns).map_err(|e| format!("netns {}: {e}", o.a_ns))?;
    let tun_a = open_tun(&o.a_dev).map_err(|e| format!("tun {}: {e}", o.a_dev))?;
    enter_netns(&o.b_ns).map_err(|e| format!("netns {}: {e}", o.b_ns))?;
    let tun_b = open_tun(&o.b_dev).map_err(|e| format!("tun {}: {e}", o.b_dev))?;
    for (ns, dev, addr) in [
        (&o.a_ns, &o.a_dev, &o.a_addr),
        (&o.b_ns, &o.b_dev, &o.b_addr),
    ] {
        ip(&["-n", ns, "addr", "add", addr, "dev", dev])?;
        ip(&["-n", ns, "link", "set", dev, "up"])?;
    }
    let events = match &o.events {
        Some(p) => Some(Mutex::new(
            File::create(p).map_err(|e| format!("{p}: {e}"))?,
        )),
        None => None,
    };
    let start = Instant::now();
    if let Some(ev) = &events
        && let Ok(mut f) = ev.lock()
    {
        // The events' time base on CLOCK_MONOTONIC (what `Instant` reads, and the load generator's
        // `time.monotonic()`), so they line up with query send times and stamped logs.
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        if rc == 0 {
            let mono = ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9;
            let _ = writeln!(f, "{{\"start_monotonic_s\":{mono:.6}}}");
        }
    }
    let sh = Arc::new(Shared {
        start,
        events,
        dirs: [Counters::default(), Counters::default()],
    });
    let o = Arc::new(o);
    let clone = |f: &File| f.try_clone().map_err(|e| format!("dup: {e}"));
    let pairs = [
        (clone(&tun_a)?, clone(&tun_b)?),
        (clone(&tun_b)?, clone(&tun_a)?),
    ];
    for (dir, (from, to)) in pairs.into_iter().enumerate() {
        let (tx, rx) = sync_channel(o.queue);
        let (o2, sh2, sh3) = (o.clone(), sh.clone(), sh.clone());
        std::thread::spawn(move || reader(from, tx, dir, &o2, &sh2));
        std::thread::spawn(move || writer(to, rx, dir, &sh3));
    }
    println!("ready");
    let _ = io::stdout().flush();
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let orphaned = std::os::unix::process::parent_id() != parent;
        if let Some(p) = &o.stats
            && (sh.start.elapsed().as_millis() % 1000 < 200 || orphaned)
        {
            write_stats(p, &sh);
        }
        if orphaned || sh.start.elapsed() >= o.timeout {
            if let Some(p) = &o.stats {
                write_stats(p, &sh);
            }
            eprint!("wan-delay: exiting: {}", stats_json(&sh));
            return Ok(());
        }
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("wan-delay: {e}");
        std::process::exit(2);
    }
}
