//! RFC 8910 / RFC 8925 signalling as the product ships it: the values the real `lanveil` binary
//! prints with `--check-config FILE --print-signals` (what the OpenWrt init script hands to dnsmasq
//! and odhcpd, verbatim), checked against independent implementations:
//!
//! * `tshark` (Wireshark's dissectors) decodes a pcap of a DHCPv4 OFFER carrying the printed 114 and
//!   108 values and a DHCPv6 Reply carrying the printed `dhcpv6_raw` (option 103);
//! * real `dnsmasq` in one network namespace, given the printed `dnsmasq_dhcp_option` values as its
//!   `--dhcp-option`s, serves them to busybox `udhcpc` in another, over a veth pair; udhcpc's
//!   `opt114` fed back to `--print-signals --wan-portal` (as the WAN hook does) gives the URI again.
//!
//! Needs root and: `apt-get install tshark busybox dnsmasq-base iproute2`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lanveil_tests::gateway;
use lanveil_tests::netns::VethPair;
use lanveil_tests::util::{TempDir, require_program};

const URI: &str = "https://portal.example/api";
/// A comma makes the binary hand dnsmasq colon-hex instead of text (dnsmasq splits at commas).
const URI_COMMA: &str = "https://portal.example/api?a=1,2";
const WAIT: u32 = 1800;
const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];

/// `lanveil --check-config FILE --print-signals [--wan-portal VALUE]` of the real binary, as
/// (key, value) lines.
fn print_signals(dir: &TempDir, uri: &str, wan: Option<&str>) -> Vec<(String, String)> {
    let conf = dir.write(
        "lanveil.conf",
        format!(
            "config lanveil 'main'\n\tlist listen '127.0.0.1:5453'\n\toption captive_portal_uri '{uri}'\n\
             \toption v6only_wait '{WAIT}'\n\toption dns64_prefix '64:ff9b::/96'\n\n\
             config upstream 'q'\n\toption url 'tls://9.9.9.9:853#dns.quad9.net'\n"
        ),
    );
    let mut cmd = Command::new(gateway::binary());
    cmd.arg("--check-config").arg(&conf).arg("--print-signals");
    if let Some(w) = wan {
        cmd.args(["--wan-portal", w]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "--print-signals: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (k, v) = l.split_once(' ').expect("KEY VALUE");
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn value<'a>(lines: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    lines
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// The octets dnsmasq sends for a `dhcp_option` value of the form `CODE,TEXT` or `CODE,HH:HH:…`
/// (the two forms `--print-signals` uses): (code, octets).
fn dnsmasq_option_octets(v: &str) -> (u8, Vec<u8>) {
    let (code, data) = v.split_once(',').unwrap();
    let is_hex = data.len() % 3 == 2
        && data
            .split(':')
            .all(|h| h.len() == 2 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    let octets = if is_hex {
        data.split(':')
            .map(|h| u8::from_str_radix(h, 16).unwrap())
            .collect()
    } else {
        data.as_bytes().to_vec()
    };
    (code.parse().unwrap(), octets)
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

// ---- packet building (Ethernet / IPv4 / IPv6 / UDP / ICMPv6, by hand) ----

fn csum(parts: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    for part in parts {
        for pair in part.chunks(2) {
            sum += u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn ethernet(dst: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    [&dst[..], &SERVER_MAC, &ethertype.to_be_bytes(), payload].concat()
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = (8 + payload.len()) as u16;
    [
        &sport.to_be_bytes()[..],
        &dport.to_be_bytes(),
        &len.to_be_bytes(),
        &[0, 0],
        payload,
    ]
    .concat()
}

fn ipv4_udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = udp(sport, dport, payload);
    let pseudo = [&src[..], &dst, &[0, 17], &(u.len() as u16).to_be_bytes()].concat();
    let c = csum(&[&pseudo, &u]);
    u[6..8].copy_from_slice(&if c == 0 { 0xffff } else { c }.to_be_bytes());
    let total = (20 + u.len()) as u16;
    let mut ip = [
        &[0x45, 0][..],
        &total.to_be_bytes(),
        &[0, 0, 0, 0, 64, 17, 0, 0],
        &src,
        &dst,
    ]
    .concat();
    let c = csum(&[&ip]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ethernet([0xff; 6], 0x0800, &[ip, u].concat())
}

/// `upper` with its checksum field at `csum_at` still zero.
fn ipv6(src: [u8; 16], dst: [u8; 16], next: u8, mut upper: Vec<u8>, csum_at: usize) -> Vec<u8> {
    let len = (upper.len() as u32).to_be_bytes();
    let c = csum(&[&src, &dst, &len, &[0, 0, 0, next], &upper]);
    upper[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
    let hop_limit = if next == 58 { 255 } else { 64 };
    let plen = (upper.len() as u16).to_be_bytes();
    let hdr = [&[0x60, 0, 0, 0][..], &plen, &[next, hop_limit], &src, &dst].concat();
    let mut mac = [0x33, 0x33, 0, 0, 0, 0];
    mac[2..].copy_from_slice(&dst[12..]);
    ethernet(
        if dst[0] == 0xff { mac } else { CLIENT_MAC },
        0x86dd,
        &[hdr, upper].concat(),
    )
}

fn link_local(last: u8) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[..2].copy_from_slice(&[0xfe, 0x80]);
    a[15] = last;
    a
}

/// A DHCPOFFER (BOOTP header, magic cookie, message type, server id, lease, mask, router) with
/// `extra` options (code, octets) appended before the end option.
fn dhcpv4_offer(extra: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut m = vec![2, 1, 6, 0, 0x12, 0x34, 0x56, 0x78, 0, 0, 0, 0];
    m.extend_from_slice(&[0, 0, 0, 0]); // ciaddr
    m.extend_from_slice(&[192, 0, 2, 10]); // yiaddr
    m.extend_from_slice(&[192, 0, 2, 1]); // siaddr
    m.extend_from_slice(&[0, 0, 0, 0]); // giaddr
    m.extend_from_slice(&CLIENT_MAC);
    m.resize(236, 0); // chaddr padding, sname, file
    m.extend_from_slice(&[0x63, 0x82, 0x53, 0x63]);
    m.extend_from_slice(&[53, 1, 2, 54, 4, 192, 0, 2, 1, 51, 4, 0, 0, 0x0e, 0x10]);
    m.extend_from_slice(&[1, 4, 255, 255, 255, 0, 3, 4, 192, 0, 2, 1]);
    for (code, data) in extra {
        m.push(*code);
        m.push(data.len() as u8);
        m.extend_from_slice(data);
    }
    m.push(255);
    m
}

/// The options of a DHCPv4 message (after the magic cookie), repeated ones concatenated (RFC 3396).
fn dhcpv4_options(msg: &[u8]) -> BTreeMap<u8, Vec<u8>> {
    let mut out = BTreeMap::<u8, Vec<u8>>::new();
    assert_eq!(
        msg.get(236..240),
        Some(&[0x63, 0x82, 0x53, 0x63][..]),
        "magic"
    );
    let mut at = 240;
    while let Some(&code) = msg.get(at) {
        match code {
            0 => at += 1,
            255 => break,
            _ => {
                let len = usize::from(msg[at + 1]);
                out.entry(code)
                    .or_default()
                    .extend_from_slice(&msg[at + 2..at + 2 + len]);
                at += 2 + len;
            }
        }
    }
    out
}

fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    // Global header: magic, v2.4, tz 0, sigfigs 0, snaplen 65535, linktype 1 (Ethernet).
    let mut out = [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 65535, 1]
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .collect::<Vec<u8>>();
    for (i, f) in frames.iter().enumerate() {
        let len = f.len() as u32;
        for w in [1_700_000_000 + i as u32, 0, len, len] {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out.extend_from_slice(f);
    }
    std::fs::write(path, out).unwrap();
}

/// The UDP payloads of IPv4 frames from `sport` in a classic little-endian pcap file.
fn udp4_payloads(pcap: &[u8], sport: u16) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = 24;
    while let Some(hdr) = pcap.get(at..at + 16) {
        let incl = u32::from_le_bytes(hdr[8..12].try_into().unwrap()) as usize;
        let Some(frame) = pcap.get(at + 16..at + 16 + incl) else {
            break;
        };
        at += 16 + incl;
        if frame.len() < 14 + 20 + 8 || frame[12..14] != [0x08, 0x00] || frame[23] != 17 {
            continue;
        }
        let l4 = 14 + usize::from(frame[14] & 0x0f) * 4;
        if frame.get(l4..l4 + 2) == Some(&sport.to_be_bytes()[..]) {
            out.push(frame[l4 + 8..].to_vec());
        }
    }
    out
}

fn run_tshark(pcap: &Path, args: &[&str]) -> String {
    let out = Command::new(require_program("tshark", "tshark"))
        .arg("-r")
        .arg(pcap)
        .args([
            "-o",
            "ip.check_checksum:TRUE",
            "-o",
            "udp.check_checksum:TRUE",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn tshark_decodes_what_print_signals_ships() {
    let dir = TempDir::new("lanveil-capport-pcap");
    let lines = print_signals(&dir, URI, None);
    assert_eq!(value(&lines, "captive_portal_uri"), [URI]);
    assert_eq!(value(&lines, "v6only_wait"), [WAIT.to_string().as_str()]);
    let opts: Vec<(u8, Vec<u8>)> = value(&lines, "dnsmasq_dhcp_option")
        .into_iter()
        .map(dnsmasq_option_octets)
        .collect();
    assert_eq!(
        opts,
        [
            (114, URI.as_bytes().to_vec()),
            (108, WAIT.to_be_bytes().to_vec())
        ]
    );
    let raw = unhex(value(&lines, "dhcpv6_raw")[0]);

    // 1. DHCPOFFER with the printed 114 and 108.
    let offer = dhcpv4_offer(&opts);
    let f1 = ipv4_udp([192, 0, 2, 1], [255; 4], 67, 68, &offer);
    // 2. DHCPv6 Reply: Client ID, Server ID (DUID-LL), the printed option 103.
    let mut reply = vec![7, 0xab, 0xcd, 0xef];
    reply.extend_from_slice(&[0, 1, 0, 10, 0, 3, 0, 1, 2, 0, 0, 0, 0, 2]);
    reply.extend_from_slice(&[0, 2, 0, 10, 0, 3, 0, 1, 2, 0, 0, 0, 0, 1]);
    reply.extend_from_slice(&raw);
    let f2 = ipv6(link_local(1), link_local(2), 17, udp(547, 546, &reply), 6);

    let pcap = dir.join("capport.pcap");
    write_pcap(&pcap, &[f1, f2]);
    let fields = run_tshark(
        &pcap,
        &[
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-e",
            "frame.number",
            "-e",
            "dhcp.option.captive_portal",
            "-e",
            "dhcpv6.captive_portal",
            "-e",
            "_ws.malformed",
        ],
    );
    let lines: Vec<&str> = fields.lines().collect();
    assert_eq!(
        lines,
        [format!("1|{URI}||"), format!("2||{URI}|")],
        "tshark fields:\n{fields}"
    );
    // tshark 4.0 names option 108 but has no field for it and shows the value as raw hex.
    let verbose = run_tshark(&pcap, &["-V"]);
    let v108 = verbose
        .lines()
        .skip_while(|l| !l.contains("Option: (108)"))
        .take(4)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        v108.contains("IPv6-Only Preferred")
            && v108.contains("Length: 4")
            && v108.contains(&format!("Value: {WAIT:08x}")),
        "option 108 as tshark sees it:\n{v108}"
    );
    for bad in [
        "Malformed",
        "[Checksum Status: Bad]",
        "incorrect",
        "Expert Info (Error",
    ] {
        assert!(!verbose.contains(bad), "tshark reports {bad:?}:\n{verbose}");
    }
    // IPv4 header, UDP over IPv4, UDP over IPv6.
    assert_eq!(verbose.matches("[correct]").count(), 3, "{verbose}");
}

// ---- dnsmasq ⇄ udhcpc over a veth pair ----

struct Lease {
    env: BTreeMap<String, String>,
    replies: Vec<Vec<u8>>,
}

/// Runs udhcpc in the client namespace (with `-O` for each of `request`), capturing the exchange.
fn udhcpc(pair: &mut VethPair, dir: &TempDir, tag: &str, request: &[&str]) -> Lease {
    let busybox = require_program("busybox", "busybox");
    let dumpcap = require_program("dumpcap", "tshark");
    let script = dir.write(
        &format!("{tag}.sh"),
        format!("#!/bin/sh\nenv > {}/{tag}-$1.env\n", dir.path().display()),
    );
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();

    let pcap = dir.join(&format!("{tag}.pcap"));
    let (pcap_s, ifname) = (pcap.display().to_string(), pair.client.ifname.clone());
    let mut cap = pair.command(
        &pair.client,
        &dumpcap.display().to_string(),
        &[
            "-q",
            "-P",
            "-i",
            &ifname,
            "-w",
            &pcap_s,
            "-f",
            "udp port 67 or udp port 68",
        ],
    );
    cap.stderr(Stdio::null()).stdout(Stdio::null());
    let cap_idx = pair.spawn(cap);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::metadata(&pcap).map(|m| m.len()).unwrap_or(0) < 24 {
        assert!(Instant::now() < deadline, "dumpcap did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));

    let busybox = busybox.display().to_string();
    let script_s = script.display().to_string();
    let mut args = vec![
        "udhcpc", "-i", &ifname, "-f", "-q", "-n", "-t", "10", "-T", "1", "-s", &script_s,
    ];
    for o in request {
        args.extend(["-O", o]);
    }
    let out = pair
        .command(&pair.client, &busybox, &args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "udhcpc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // libpcap hands packets to dumpcap in blocks (up to ~1 s late): wait until the ACK is on disk.
    let has_ack = |replies: &[Vec<u8>]| replies.iter().any(|r| message_type(r) == Some(ACK));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !has_ack(&udp4_payloads(
        &std::fs::read(&pcap).unwrap_or_default(),
        67,
    )) && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    pair.stop(cap_idx);

    let bound =
        std::fs::read_to_string(dir.join(&format!("{tag}-bound.env"))).expect("udhcpc never bound");
    let env = bound
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.starts_with("opt") || ["ip", "serverid", "lease", "subnet"].contains(k))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let replies = udp4_payloads(&std::fs::read(&pcap).unwrap(), 67);
    Lease { env, replies }
}

const OFFER: u8 = 2;
const ACK: u8 = 5;

/// Option 53 of a DHCPv4 message.
fn message_type(dhcp: &[u8]) -> Option<u8> {
    if dhcp.len() < 240 || dhcp[236..240] != [0x63, 0x82, 0x53, 0x63] {
        return None;
    }
    dhcpv4_options(dhcp)
        .get(&53)
        .and_then(|v| v.first().copied())
}

fn hex(bytes: &[u8], sep: &str) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(sep)
}

#[test]
fn dnsmasq_sends_108_and_114_only_when_requested() {
    let dnsmasq = require_program("dnsmasq", "dnsmasq-base");
    require_program("busybox", "busybox");
    let dir = TempDir::new("lanveil-capport-netns");

    // dnsmasq gets exactly the dhcp_option values the binary prints (the init script writes them
    // to /etc/config/dhcp; OpenWrt's dnsmasq init turns each into one dhcp-option line).
    let lines = print_signals(&dir, URI_COMMA, None);
    let printed = value(&lines, "dnsmasq_dhcp_option");
    assert_eq!(printed.len(), 2, "{lines:?}");
    assert!(
        printed[0].starts_with("114,68:74:74:70:73:3a"),
        "a URI with a comma goes as colon-hex: {}",
        printed[0]
    );
    assert_eq!(printed[1], "108,00:00:07:08");
    let opt114 = format!("--dhcp-option={}", printed[0]);
    let opt108 = format!("--dhcp-option={}", printed[1]);

    let mut pair = VethPair::new("10.77.0.1/24");
    let log = dir.join("dnsmasq.log");
    let (lease_file, srv_if) = (dir.join("leases"), pair.server.ifname.clone());
    let mut cmd = pair.command(
        &pair.server,
        &dnsmasq.display().to_string(),
        &[
            "--no-daemon",
            "--conf-file=/dev/null",
            "--port=0",
            "--user=root",
            "--pid-file=",
            "--bind-interfaces",
            &format!("--interface={srv_if}"),
            "--dhcp-range=10.77.0.50,10.77.0.99,255.255.255.0,1h",
            &format!("--dhcp-leasefile={}", lease_file.display()),
            "--log-dhcp",
            "--no-ping",
            "--log-facility=-",
            &opt114,
            &opt108,
        ],
    );
    cmd.stderr(std::fs::File::create(&log).unwrap())
        .stdout(Stdio::null());
    pair.spawn(cmd);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("DHCP, IP range")
    {
        assert!(
            Instant::now() < deadline,
            "dnsmasq did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // Not requested: neither option arrives (dnsmasq sends non-default options only when asked), the
    // client still gets its lease.
    let plain = udhcpc(&mut pair, &dir, "plain", &[]);
    assert!(plain.env.contains_key("ip"), "{:?}", plain.env);
    assert!(
        !plain.env.contains_key("opt114") && !plain.env.contains_key("opt108"),
        "{:?}",
        plain.env
    );
    assert!(
        plain.replies.len() >= 2,
        "captured {} replies",
        plain.replies.len()
    );
    for r in &plain.replies {
        let o = dhcpv4_options(r);
        assert!(!o.contains_key(&114) && !o.contains_key(&108), "{o:?}");
    }

    // Requested: both arrive with exactly the configured values.
    let asked = udhcpc(&mut pair, &dir, "asked", &["114", "108"]);
    assert_eq!(
        asked.env.get("opt114").map(String::as_str),
        Some(hex(URI_COMMA.as_bytes(), "").as_str()),
        "{:?}",
        asked.env
    );
    assert_eq!(
        asked.env.get("opt108").map(String::as_str),
        Some("00000708")
    );
    // RFC 8925 flow: the client asked with 108 in its PRL; OFFER and ACK both carry V6ONLY_WAIT ≥
    // MIN_V6ONLY_WAIT. dnsmasq still offers an address (yiaddr); forgoing it is the client's decision.
    assert!(asked.env.contains_key("ip"), "{:?}", asked.env);
    let wait = u32::from_str_radix(&asked.env["opt108"], 16).unwrap();
    assert!(wait == WAIT && wait >= lanveil_core::capport::MIN_V6ONLY_WAIT);
    let kinds: Vec<_> = asked
        .replies
        .iter()
        .filter_map(|r| message_type(r))
        .collect();
    let want = [OFFER, ACK];
    assert!(
        want.iter().all(|k| kinds.contains(k)),
        "want OFFER and ACK, got {kinds:?}"
    );
    for r in &asked.replies {
        let o = dhcpv4_options(r);
        assert_eq!(o.get(&114).map(Vec::as_slice), Some(URI_COMMA.as_bytes()));
        assert_eq!(
            o.get(&108).map(Vec::as_slice),
            Some(&WAIT.to_be_bytes()[..])
        );
    }
    // The WAN hook hands udhcpc's opt114 to the same binary: it decodes to the URI again.
    let back = print_signals(&dir, URI, Some(&asked.env["opt114"]));
    assert_eq!(value(&back, "wan_portal_uri"), [URI_COMMA]);
    assert_eq!(value(&back, "wan_portal"), ["ok"]);
    // Only 108 requested: only 108 arrives.
    let v6only = udhcpc(&mut pair, &dir, "v6only", &["108"]);
    assert!(
        v6only.env.contains_key("opt108") && !v6only.env.contains_key("opt114"),
        "{:?}",
        v6only.env
    );
}
