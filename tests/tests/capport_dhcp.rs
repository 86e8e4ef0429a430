//! RFC 8910 / RFC 8925 signalling checked against independent implementations:
//!
//! * `tshark` (Wireshark's dissectors) decodes a pcap of lanveil-encoded DHCPv4 (114, 108), DHCPv6
//!   (103) and RA (37) packets;
//! * real `dnsmasq` in one network namespace serves options 114 and 108 built from lanveil's encoder
//!   output to busybox `udhcpc` in another, over a veth pair; the captured replies are decoded again
//!   with lanveil's own decoder.
//!
//! Needs root and: `apt-get install tshark busybox dnsmasq-base iproute2`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lanveil_core::capport::{
    CaptivePortalUri, DhcpMessageType, DhcpOption, DhcpPacket, DhcpRepr, Encoding, EthernetAddress,
    MIN_V6ONLY_WAIT, Nat64Prefix, Signals, V6OnlyWait, WanSignals,
};
use lanveil_tests::netns::VethPair;
use lanveil_tests::util::{TempDir, require_program};

const URI: &str = "https://portal.example/api";
const WAIT: u32 = 1800;
const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];

fn signals() -> Signals {
    let uri = CaptivePortalUri::parse(URI.as_bytes()).unwrap();
    let wait = V6OnlyWait::new(WAIT).unwrap();
    Signals::new(Some(uri), Some(wait), Some(Nat64Prefix::WELL_KNOWN)).unwrap()
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

fn dhcpv4_offer(extra: &[DhcpOption<'_>]) -> Vec<u8> {
    let repr = DhcpRepr {
        message_type: DhcpMessageType::Offer,
        transaction_id: 0x1234_5678,
        secs: 0,
        client_hardware_address: EthernetAddress(CLIENT_MAC),
        client_ip: [0, 0, 0, 0].into(),
        your_ip: [192, 0, 2, 10].into(),
        server_ip: [192, 0, 2, 1].into(),
        router: Some([192, 0, 2, 1].into()),
        subnet_mask: Some([255, 255, 255, 0].into()),
        relay_agent_ip: [0, 0, 0, 0].into(),
        broadcast: false,
        requested_ip: None,
        client_identifier: None,
        server_identifier: Some([192, 0, 2, 1].into()),
        parameter_request_list: None,
        dns_servers: None,
        max_size: None,
        lease_duration: Some(3600),
        renew_duration: None,
        rebind_duration: None,
        additional_options: extra,
    };
    let mut buf = vec![0u8; repr.buffer_len()];
    repr.emit(&mut DhcpPacket::new_unchecked(&mut buf[..]))
        .unwrap();
    buf
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
fn tshark_decodes_lanveil_encodings() {
    let dir = TempDir::new("lanveil-capport-pcap");
    let s = signals();
    let uri = s.captive_portal().unwrap();

    // 1. DHCPOFFER to a client that asked for 114 and 108 (smoltcp's DhcpRepr + lanveil's options).
    let offer = dhcpv4_offer(s.dhcpv4_options(&[1, 3, 114, 108]).as_slice());
    let f1 = ipv4_udp([192, 0, 2, 1], [255; 4], 67, 68, &offer);
    // 2. DHCPv6 Reply: Client ID, Server ID (DUID-LL), option 103.
    let mut reply = vec![7, 0xab, 0xcd, 0xef];
    reply.extend_from_slice(&[0, 1, 0, 10, 0, 3, 0, 1, 2, 0, 0, 0, 0, 2]);
    reply.extend_from_slice(&[0, 2, 0, 10, 0, 3, 0, 1, 2, 0, 0, 0, 0, 1]);
    let at = reply.len();
    reply.resize(at + uri.buffer_len(Encoding::Dhcpv6), 0);
    uri.emit(Encoding::Dhcpv6, &mut reply[at..]).unwrap();
    let f2 = ipv6(link_local(1), link_local(2), 17, udp(547, 546, &reply), 6);
    // 3. Router Advertisement: header, source link-layer address option, option 37.
    let mut ra = vec![134, 0, 0, 0, 64, 0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0];
    ra.extend_from_slice(&[1, 1, 2, 0, 0, 0, 0, 1]);
    let at = ra.len();
    ra.resize(at + uri.buffer_len(Encoding::Ra), 0xa5);
    uri.emit(Encoding::Ra, &mut ra[at..]).unwrap();
    let mut all_nodes = [0u8; 16];
    all_nodes[..2].copy_from_slice(&[0xff, 0x02]);
    all_nodes[15] = 1;
    let f3 = ipv6(link_local(1), all_nodes, 58, ra.clone(), 2);

    // Our own decoders agree before asking tshark.
    let wan = WanSignals::from_dhcpv4(&offer).unwrap();
    assert_eq!(
        (
            wan.captive_portal.as_ref(),
            wan.v6only_wait.map(|w| w.secs())
        ),
        (Some(uri), Some(WAIT))
    );
    assert_eq!(
        WanSignals::from_dhcpv6(&reply)
            .unwrap()
            .captive_portal
            .as_ref(),
        Some(uri)
    );
    assert_eq!(
        WanSignals::from_ra(&ra).unwrap().captive_portal.as_ref(),
        Some(uri)
    );

    let pcap = dir.join("capport.pcap");
    write_pcap(&pcap, &[f1, f2, f3]);
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
            "icmpv6.opt.captive_portal",
            "-e",
            "_ws.malformed",
        ],
    );
    let lines: Vec<&str> = fields.lines().collect();
    assert_eq!(
        lines,
        [
            format!("1|{URI}|||"),
            format!("2||{URI}||"),
            format!("3|||{URI}|")
        ],
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
    assert_eq!(verbose.matches("[correct]").count(), 4, "{verbose}");
    let length_line = verbose
        .lines()
        .find(|l| l.contains("Type: DHCP Captive-Portal (37)"));
    assert!(
        length_line.is_some(),
        "RA option 37 not named by tshark:\n{verbose}"
    );
    assert!(
        verbose.contains("Length: 4 (32 bytes)"),
        "RA option 37 length:\n{verbose}"
    );
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
    let has_ack = |replies: &[Vec<u8>]| {
        replies
            .iter()
            .any(|r| message_type(r) == Some(DhcpMessageType::Ack))
    };
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

fn message_type(dhcp: &[u8]) -> Option<DhcpMessageType> {
    let packet = DhcpPacket::new_checked(dhcp).ok()?;
    DhcpRepr::parse(&packet).ok().map(|r| r.message_type)
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
    let s = signals();

    // dnsmasq is configured with exactly the bytes lanveil's encoders produce (TLV minus code+length).
    let mut tlv = [0u8; 300];
    let n = s
        .captive_portal()
        .unwrap()
        .emit(Encoding::Dhcpv4, &mut tlv)
        .unwrap();
    let opt114 = format!("--dhcp-option=114,{}", hex(&tlv[2..n], ":"));
    let n = s.v6only_wait().unwrap().emit(&mut tlv).unwrap();
    let opt108 = format!("--dhcp-option=108,{}", hex(&tlv[2..n], ":"));
    assert_eq!(opt108, "--dhcp-option=108,00:00:07:08");

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
        assert_eq!(WanSignals::from_dhcpv4(r), Ok(WanSignals::default()));
    }

    // Requested: both arrive with exactly the configured values.
    let asked = udhcpc(&mut pair, &dir, "asked", &["114", "108"]);
    assert_eq!(
        asked.env.get("opt114").map(String::as_str),
        Some(hex(URI.as_bytes(), "").as_str()),
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
    assert!(wait == WAIT && wait >= MIN_V6ONLY_WAIT);
    let kinds: Vec<_> = asked
        .replies
        .iter()
        .filter_map(|r| message_type(r))
        .collect();
    let want = [DhcpMessageType::Offer, DhcpMessageType::Ack];
    assert!(
        want.iter().all(|k| kinds.contains(k)),
        "want OFFER and ACK, got {kinds:?}"
    );
    for r in &asked.replies {
        let got = WanSignals::from_dhcpv4(r).unwrap();
        assert_eq!(got.captive_portal.as_ref().map(|u| u.as_str()), Some(URI));
        assert_eq!(got.v6only_wait.map(|w| w.secs()), Some(WAIT));
    }
    // Only 108 requested: only 108 arrives.
    let v6only = udhcpc(&mut pair, &dir, "v6only", &["108"]);
    assert!(
        v6only.env.contains_key("opt108") && !v6only.env.contains_key("opt114"),
        "{:?}",
        v6only.env
    );
}
