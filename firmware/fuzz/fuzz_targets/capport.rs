//! The captive-portal URI and IPv6-only-preferred values of `capport` (RFC 8910, RFC 8925) on
//! hostile input, as the OpenWrt package's WAN hook hands them over (udhcpc's `opt114`: hex or
//! text) or as an owner configures them: parsers never panic; what they accept is a valid value (a
//! URI of at most 255 printable octets that parses again, a V6ONLY_WAIT ≥ 300 s), and every
//! accepted value is emitted exactly as the DHCPv4 / DHCPv6 option (code, length, octets).
#![no_main]

use lanveil_core::capport::{CaptivePortalUri, Encoding, MIN_V6ONLY_WAIT, V6OnlyWait};
use lanveil_fuzz::Take;
use libfuzzer_sys::fuzz_target;

fn check_uri(u: &CaptivePortalUri) {
    let again = CaptivePortalUri::parse(u.as_bytes()).expect("an accepted URI parses again");
    assert_eq!(&again, u);
    let uri = u.as_bytes();
    assert!(uri.len() <= lanveil_core::capport::MAX_URI_LEN);
    assert!(uri.iter().all(|b| b.is_ascii_graphic() && !b"\"'$\\<>`{}|^".contains(b)));
    for (enc, head) in [
        (Encoding::Dhcpv4, vec![114, uri.len() as u8]),
        (Encoding::Dhcpv6, vec![0, 103, 0, uri.len() as u8]),
    ] {
        let mut buf = vec![0xa5u8; u.buffer_len(enc) + 3];
        let n = u.emit(enc, &mut buf).expect("buffer_len is enough");
        assert_eq!(n, u.buffer_len(enc));
        assert_eq!(&buf[..n], [&head[..], uri].concat());
        assert!(buf[n..].iter().all(|&b| b == 0xa5), "nothing past the option");
        assert!(
            u.emit(enc, &mut buf[..n - 1]).is_err(),
            "a short buffer is an error"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let mut t = Take(data);
    let mode = t.u8();
    match mode % 3 {
        0 => {
            let rest = t.rest();
            if let Ok(u) = CaptivePortalUri::from_dhcp_value(rest) {
                check_uri(&u);
                // The hex form of an accepted value decodes to the same URI.
                let hex: String = u.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
                assert_eq!(CaptivePortalUri::from_dhcp_value(hex.as_bytes()).as_ref(), Ok(&u));
            }
        }
        1 => {
            if let Ok(u) = CaptivePortalUri::parse(t.rest()) {
                check_uri(&u);
            }
        }
        _ => {
            let secs = u32::from_be_bytes([t.u8(), t.u8(), t.u8(), t.u8()]);
            match V6OnlyWait::new(secs) {
                Ok(w) => {
                    assert!(w.secs() >= MIN_V6ONLY_WAIT && w.secs() == secs);
                    let mut buf = [0u8; V6OnlyWait::BUFFER_LEN];
                    assert_eq!(w.emit(&mut buf), Ok(6));
                    assert_eq!(buf[..2], [108, 4]);
                    assert_eq!(u32::from_be_bytes([buf[2], buf[3], buf[4], buf[5]]), secs);
                }
                Err(_) => assert!(secs < MIN_V6ONLY_WAIT),
            }
        }
    }
});
