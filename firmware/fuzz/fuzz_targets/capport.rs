//! The DHCPv4 / DHCPv6 / Router Advertisement codecs of `capport` (RFC 8910 captive-portal URI,
//! RFC 8925 IPv6-only preferred) on hostile WAN input: decoders never panic; what they accept is a
//! valid value (a URI that parses again, a V6ONLY_WAIT ≥ 300 s), and every accepted value survives
//! emit → parse in each encoding.
#![no_main]

use lanveil_core::capport::{
    CaptivePortalUri, Encoding, MIN_V6ONLY_WAIT, Nat64Prefix, V6OnlyWait, WanSignals,
};
use lanveil_fuzz::Take;
use libfuzzer_sys::fuzz_target;

const ENCODINGS: [Encoding; 3] = [Encoding::Dhcpv4, Encoding::Dhcpv6, Encoding::Ra];

fn check_uri(u: &CaptivePortalUri) {
    let again = CaptivePortalUri::parse(u.as_bytes()).expect("an accepted URI parses again");
    assert_eq!(&again, u);
    assert!(u.as_bytes().len() <= lanveil_core::capport::MAX_URI_LEN);
    for enc in ENCODINGS {
        let mut buf = vec![0xa5u8; u.buffer_len(enc) + 3];
        let n = u.emit(enc, &mut buf).expect("buffer_len is enough");
        assert_eq!(n, u.buffer_len(enc));
        assert!(
            u.emit(enc, &mut buf[..n - 1]).is_err(),
            "a short buffer is an error"
        );
        let (back, used) =
            CaptivePortalUri::parse_option(enc, &buf[..n]).expect("emitted option parses");
        assert_eq!((&back, used), (u, n));
    }
}

fn check_signals(s: &WanSignals) {
    if let Some(u) = &s.captive_portal {
        check_uri(u);
    }
    if let Some(w) = s.v6only_wait {
        assert!(w.secs() >= MIN_V6ONLY_WAIT);
    }
}

fuzz_target!(|data: &[u8]| {
    let mut t = Take(data);
    let mode = t.u8();
    let rest = t.rest();
    match mode % 7 {
        0 => {
            // A DHCPv4 message: the input after a fixed BOOTP header and magic cookie, or as is.
            let msg = if mode & 0x80 != 0 {
                let mut m = vec![0u8; 236];
                m[0] = 2; // BOOTREPLY
                m[1] = 1;
                m[2] = 6;
                m.extend_from_slice(&[0x63, 0x82, 0x53, 0x63]);
                m.extend_from_slice(rest);
                m
            } else {
                rest.to_vec()
            };
            if let Ok(s) = WanSignals::from_dhcpv4(&msg) {
                check_signals(&s);
            }
        }
        1 => {
            if let Ok(s) = WanSignals::from_dhcpv6(rest) {
                check_signals(&s);
            }
        }
        2 => {
            // An RA: the input after a fixed 16-octet RA header, or as is.
            let msg = if mode & 0x80 != 0 {
                let mut m = vec![134, 0, 0, 0, 64, 0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0];
                m.extend_from_slice(rest);
                m
            } else {
                rest.to_vec()
            };
            if let Ok(s) = WanSignals::from_ra(&msg) {
                check_signals(&s);
            }
        }
        3 => {
            let enc = ENCODINGS[usize::from(mode >> 3) % 3];
            if let Ok((u, used)) = CaptivePortalUri::parse_option(enc, rest) {
                assert!(used <= rest.len());
                check_uri(&u);
            }
        }
        4 => {
            if let Ok((w, used)) = V6OnlyWait::parse_option(rest) {
                assert_eq!(used, 6);
                assert!(w.secs() >= MIN_V6ONLY_WAIT);
                let mut buf = [0u8; V6OnlyWait::BUFFER_LEN];
                assert_eq!(w.emit(&mut buf), Ok(6));
                assert_eq!(V6OnlyWait::parse_option(&buf), Ok((w, 6)));
            }
        }
        5 => {
            if let Ok(u) = CaptivePortalUri::parse(rest) {
                check_uri(&u);
            }
        }
        _ => {
            if let Ok(s) = std::str::from_utf8(rest)
                && let Ok(p) = Nat64Prefix::parse(s)
            {
                assert_eq!(Nat64Prefix::new(p.addr(), p.prefix_len()), Ok(p));
            }
        }
    }
});
