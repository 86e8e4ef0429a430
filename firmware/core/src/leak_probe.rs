//! One-time leak-test probes: the answer only this lanveil can give.
//!
//! `lanveil-ctl leak-test` draws a random label `L` and a random nonce `N`, registers them over the
//! control socket, then sends `L.`[`ZONE`]` TXT` to public resolver addresses from the LAN. If force-DNS
//! hands that query to lanveil (directly or through dnsmasq), the answer is a TXT record carrying `N`;
//! a public resolver (or an ISP's resolver) never saw `N` and cannot produce it. That is the whole
//! proof: NXDOMAIN, or any answer without `N`, means something other than this lanveil answered.
//!
//! [`ZONE`] lies under `resolver.arpa` (RFC 9462 §6.4), which lanveil's policy always answers
//! itself and never forwards, whatever the configuration: a registered label is answered here
//! ([`Probes::answer`]), anything else under the zone gets the policy's NXDOMAIN. dnsmasq forwards
//! the name (it is neither `local=` nor single-label), and a TXT answer passes its rebind protection.
//!
//! Bounded: at most [`MAX_PROBES`] probes, each for [`LIFETIME`]; a new one replaces the one that
//! expires first. The nonce is never logged and never leaves except in the answer to its own name.

use alloc::vec::Vec;
use core::time::Duration;

use crate::time::Instant;
use crate::wire::header::{self, Header, rcode};
use crate::wire::message::Scan;
use crate::wire::respond;
use crate::wire::{CLASS_ANY, CLASS_IN, Error, TYPE_ANY, TYPE_TXT};

/// The probe names' zone: `L.lanveil-leak.resolver.arpa`.
pub const ZONE: &str = "lanveil-leak.resolver.arpa";
/// [`ZONE`] in wire form (lower case).
const ZONE_WIRE: &[u8] = b"\x0clanveil-leak\x08resolver\x04arpa\x00";
/// Probes held at once.
pub const MAX_PROBES: usize = 8;
/// How long a probe is answered after it was registered.
pub const LIFETIME: Duration = Duration::from_secs(300);
/// Length of a label, in characters (`a`–`z`, `0`–`9`).
pub const LABEL_LEN: core::ops::RangeInclusive<usize> = 16..=32;
/// Length of a nonce, in characters (`a`–`z`, `0`–`9`).
pub const NONCE_LEN: core::ops::RangeInclusive<usize> = 16..=64;

/// A probe that is not well-formed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeError {
    /// The label is not 16–32 characters `a`–`z`, `0`–`9`.
    Label,
    /// The nonce is not 16–64 characters `a`–`z`, `0`–`9`.
    Nonce,
}

impl core::fmt::Display for ProbeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Label => "leak-test label must be 16 to 32 characters a-z, 0-9",
            Self::Nonce => "leak-test nonce must be 16 to 64 characters a-z, 0-9",
        })
    }
}

impl core::error::Error for ProbeError {}

/// A validated label and nonce.
#[derive(Clone, PartialEq, Eq)]
pub struct Probe {
    label: Vec<u8>,
    nonce: Vec<u8>,
}

impl core::fmt::Debug for Probe {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // The nonce is the secret of one test run: never printed.
        f.debug_struct("Probe").finish_non_exhaustive()
    }
}

fn token(s: &str, len: core::ops::RangeInclusive<usize>) -> bool {
    len.contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

impl Probe {
    /// Checks `label` and `nonce` (see [`LABEL_LEN`], [`NONCE_LEN`]).
    pub fn new(label: &str, nonce: &str) -> Result<Self, ProbeError> {
        if !token(label, LABEL_LEN) {
            return Err(ProbeError::Label);
        }
        if !token(nonce, NONCE_LEN) {
            return Err(ProbeError::Nonce);
        }
        Ok(Self {
            label: label.as_bytes().to_vec(),
            nonce: nonce.as_bytes().to_vec(),
        })
    }

    /// Whether the wire QNAME `name` is this probe's name (ASCII case ignored, RFC 4343).
    fn names(&self, name: &[u8]) -> bool {
        let Some((&len, rest)) = name.split_first() else {
            return false;
        };
        let len = usize::from(len);
        len == self.label.len()
            && rest.len() == len + ZONE_WIRE.len()
            && rest[..len].eq_ignore_ascii_case(&self.label)
            && rest[len..].eq_ignore_ascii_case(ZONE_WIRE)
    }
}

/// The registered probes.
#[derive(Clone, Debug, Default)]
pub struct Probes {
    live: Vec<(Probe, Instant)>,
}

impl Probes {
    /// Registers `probe` until `now` + [`LIFETIME`]. Expired probes are dropped; when
    /// [`MAX_PROBES`] are live, the one that expires first makes room. Registering a label again
    /// replaces its nonce.
    pub fn insert(&mut self, now: Instant, probe: Probe) {
        self.live
            .retain(|(p, until)| *until > now && p.label != probe.label);
        if self.live.len() >= MAX_PROBES
            && let Some(first) = self
                .live
                .iter()
                .enumerate()
                .min_by_key(|(_, (_, until))| *until)
                .map(|(i, _)| i)
        {
            self.live.swap_remove(first);
        }
        self.live.push((probe, now + LIFETIME));
    }

    /// Probes registered and not expired at `now`.
    pub fn len(&self, now: Instant) -> usize {
        self.live.iter().filter(|(_, until)| *until > now).count()
    }

    /// `true` if no probe is live at `now`.
    pub fn is_empty(&self, now: Instant) -> bool {
        self.len(now) == 0
    }

    /// If `query` asks for the name of a probe live at `now`, writes the answer into `out` and
    /// returns its length: NOERROR, AA, the question echoed, for QTYPE TXT or ANY (class IN or ANY)
    /// one TXT record with the nonce (TTL 0, so nothing on the way caches it), otherwise no records;
    /// an OPT record (UDP size 1232, DO echoed) only if the query had one. `None`: not a probe name
    /// (the caller answers as it would have).
    pub fn answer(
        &self,
        now: Instant,
        query: &[u8],
        scan: &Scan,
        out: &mut [u8],
    ) -> Option<Result<usize, Error>> {
        if self.live.is_empty() {
            return None;
        }
        let q = scan.question?;
        let name = query.get(header::LEN..q.name_end)?;
        let (probe, _) = self
            .live
            .iter()
            .find(|(p, until)| *until > now && p.names(name))?;
        Some(write(query, scan, &probe.nonce, out))
    }
}

fn write(query: &[u8], scan: &Scan, nonce: &[u8], out: &mut [u8]) -> Result<usize, Error> {
    let q = scan.question.ok_or(Error::Truncated)?;
    let question = query
        .get(header::LEN..q.name_end + 4)
        .ok_or(Error::Truncated)?;
    let txt = matches!(q.qtype, TYPE_TXT | TYPE_ANY) && matches!(q.qclass, CLASS_IN | CLASS_ANY);
    let nonce_len = u8::try_from(nonce.len()).map_err(|_| Error::BufferTooSmall)?;
    let h = Header {
        id: scan.header.id,
        flags: Header::response_flags(scan.header.flags, rcode::NOERROR) | header::AA,
        qdcount: 1,
        ancount: u16::from(txt),
        nscount: 0,
        arcount: u16::from(scan.opt.is_some()),
    };
    let mut w = respond::start(out, &h, question)?;
    if txt {
        respond::record(&mut w, header::LEN as u16, TYPE_TXT, 0, 1 + nonce.len())?;
        w.put(&[nonce_len])?;
        w.put(nonce)?;
    }
    respond::finish(w, scan.opt, rcode::NOERROR, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::message::scan;
    use alloc::{
        format,
        string::{String, ToString},
    };
    use hickory_proto::op::{Message, ResponseCode};
    use hickory_proto::rr::RData;

    const LABEL: &str = "k3v9q2m7x1c8b4n6";
    const NONCE: &str = "0123456789abcdefghijklmnopqrstuv";
    const T0: Instant = Instant::from_millis(1_000);

    fn query(name: &str, qtype: u16, edns: bool) -> Vec<u8> {
        crate::wire::message::tests::query(0x1234, name, qtype, edns)
    }

    fn probes() -> Probes {
        let mut p = Probes::default();
        p.insert(T0, Probe::new(LABEL, NONCE).unwrap());
        p
    }

    fn ask(p: &Probes, now: Instant, name: &str, qtype: u16, edns: bool) -> Option<Message> {
        let q = query(name, qtype, edns);
        let s = scan(&q).unwrap();
        let mut out = [0u8; crate::policy::MAX_ANSWER_LEN];
        let n = p.answer(now, &q, &s, &mut out)?.unwrap();
        assert_eq!(scan(&out[..n]).unwrap().end, n);
        Some(Message::from_vec(&out[..n]).unwrap())
    }

    fn txt(m: &Message) -> Vec<String> {
        m.answers()
            .iter()
            .filter_map(|r| match r.data() {
                RData::TXT(t) => Some(t.to_string()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn the_probe_name_gets_its_nonce() {
        let p = probes();
        let name = format!("{LABEL}.{ZONE}");
        let m = ask(&p, T0, &name, TYPE_TXT, true).unwrap();
        assert_eq!(m.id(), 0x1234);
        assert_eq!(m.response_code(), ResponseCode::NoError);
        assert!(m.authoritative());
        assert_eq!(txt(&m), [NONCE]);
        assert_eq!(m.answers()[0].ttl(), 0);
        assert!(m.extensions().is_some());
        // Case is ignored (0x20 randomisation on the way); ANY gets it too; without EDNS no OPT.
        let upper = name.to_ascii_uppercase();
        let m = ask(&p, T0, &upper, TYPE_ANY, false).unwrap();
        assert_eq!(txt(&m), [NONCE]);
        assert!(m.extensions().is_none());
        // Other types: NODATA, still answered here.
        let m = ask(&p, T0, &name, 1, false).unwrap();
        assert_eq!(m.response_code(), ResponseCode::NoError);
        assert!(m.answers().is_empty());
    }

    #[test]
    fn other_names_and_expired_probes_are_not_answered() {
        let p = probes();
        for name in [
            format!("x{LABEL}.{ZONE}"),
            format!("{}.{ZONE}", &LABEL[1..]),
            format!("k3v9q2m7x1c8b4n7.{ZONE}"),
            format!("a.{LABEL}.{ZONE}"),
            format!("{LABEL}.resolver.arpa"),
            format!("{LABEL}.{ZONE}.example"),
            String::from(ZONE),
            format!("{LABEL}.example.com"),
        ] {
            assert!(ask(&p, T0, &name, TYPE_TXT, false).is_none(), "{name}");
        }
        let name = format!("{LABEL}.{ZONE}");
        let last = T0 + (LIFETIME - Duration::from_millis(1));
        assert!(ask(&p, last, &name, TYPE_TXT, false).is_some());
        assert!(ask(&p, T0 + LIFETIME, &name, TYPE_TXT, false).is_none());
        assert!(p.is_empty(T0 + LIFETIME));
    }

    #[test]
    fn labels_and_nonces_are_checked() {
        assert_eq!(Probe::new("short", NONCE), Err(ProbeError::Label));
        assert_eq!(Probe::new(&"a".repeat(33), NONCE), Err(ProbeError::Label));
        assert_eq!(
            Probe::new("K3V9Q2M7X1C8B4N6", NONCE),
            Err(ProbeError::Label)
        );
        assert_eq!(
            Probe::new("k3v9q2m7.1c8b4n6", NONCE),
            Err(ProbeError::Label)
        );
        assert_eq!(Probe::new(LABEL, "abc"), Err(ProbeError::Nonce));
        assert_eq!(Probe::new(LABEL, &"z".repeat(65)), Err(ProbeError::Nonce));
        assert_eq!(
            Probe::new(LABEL, "0123456789abcdef 123"),
            Err(ProbeError::Nonce)
        );
        assert!(Probe::new(&"a".repeat(32), &"9".repeat(64)).is_ok());
        // Debug never shows the nonce.
        let shown = format!("{:?}", Probe::new(LABEL, NONCE).unwrap());
        assert!(!shown.contains(NONCE), "{shown}");
    }

    #[test]
    fn bounded_oldest_goes_first_and_relabelling_replaces() {
        let mut p = Probes::default();
        let label = |i: usize| format!("label{i:011}");
        for i in 0..MAX_PROBES + 3 {
            let at = T0 + Duration::from_secs(i as u64);
            p.insert(at, Probe::new(&label(i), NONCE).unwrap());
            assert!(p.live.len() <= MAX_PROBES);
        }
        let now = T0 + Duration::from_secs((MAX_PROBES + 3) as u64);
        assert_eq!(p.len(now), MAX_PROBES);
        for i in 0..3 {
            let name = format!("{}.{ZONE}", label(i));
            assert!(ask(&p, now, &name, TYPE_TXT, false).is_none(), "{i}");
        }
        let name = format!("{}.{ZONE}", label(3));
        assert!(ask(&p, now, &name, TYPE_TXT, false).is_some());
        // The same label again: one entry, the new nonce.
        let other = "ffffffffffffffffffff";
        p.insert(now, Probe::new(&label(3), other).unwrap());
        assert_eq!(p.len(now), MAX_PROBES);
        assert_eq!(txt(&ask(&p, now, &name, TYPE_TXT, false).unwrap()), [other]);
    }

    /// Through the engine with the daemon's policy: the probe is answered locally, nothing goes
    /// upstream, unregistered labels get the policy's NXDOMAIN, a reload keeps the probe, and a
    /// client outside `allow` gets REFUSED, not the nonce.
    #[test]
    fn the_engine_answers_probes_itself_and_never_forwards_them() {
        use crate::engine::{
            ClientAddr, Engine, EngineConfig, Transport, UpstreamId, UpstreamSpec,
        };
        use crate::policy::{Policy, PolicyConfig};
        let ups = [UpstreamSpec {
            id: UpstreamId(1),
            transport: Transport::Stream,
            tcp: true,
        }];
        let mut e = Engine::new(EngineConfig::default(), &ups, crate::rng::TestRng::new(7));
        e.set_policy(Some(Policy::new(&PolicyConfig::default()).unwrap()));
        let lan = ClientAddr::Udp {
            listener: 0,
            peer: core::net::SocketAddr::from(([192, 168, 1, 10], 5000)),
        };
        let ask = |e: &mut Engine<_>, client, name: &str| {
            e.handle_query(T0, client, &query(name, TYPE_TXT, true));
            assert!(e.poll_action().is_none(), "{name} went upstream");
            Message::from_vec(&e.poll_transmit().unwrap().bytes).unwrap()
        };
        let name = format!("{LABEL}.{ZONE}");
        let m = ask(&mut e, lan, &name);
        assert_eq!(m.response_code(), ResponseCode::NXDomain, "not registered");
        e.add_leak_probe(T0, Probe::new(LABEL, NONCE).unwrap());
        assert_eq!(txt(&ask(&mut e, lan, &name)), [NONCE]);
        e.set_policy(Some(Policy::new(&PolicyConfig::default()).unwrap()));
        assert_eq!(
            txt(&ask(&mut e, lan, &name)),
            [NONCE],
            "kept across a reload"
        );
        let other = format!("aaaaaaaaaaaaaaaa.{ZONE}");
        assert_eq!(
            ask(&mut e, lan, &other).response_code(),
            ResponseCode::NXDomain
        );
        let outside = ClientAddr::Udp {
            listener: 0,
            peer: core::net::SocketAddr::from(([203, 0, 113, 9], 5000)),
        };
        let m = ask(&mut e, outside, &name);
        assert_eq!(m.response_code(), ResponseCode::Refused);
        assert!(txt(&m).is_empty());
    }
}
