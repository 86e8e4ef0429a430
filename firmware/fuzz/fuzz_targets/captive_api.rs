//! The RFC 8908 captive-portal API document (`captive::ApiState::parse`) on hostile WAN input: the
//! parser never panics, and whatever it accepts keeps the tracker's plaintext exception bounded
//! (at most `MAX_NAMES` names, each a valid wire name, the portal URLs HTTPS only).
#![no_main]

use core::time::Duration;

use lanveil_core::capport::CaptivePortalUri;
use lanveil_core::captive::{ApiState, MAX_NAMES, Settings, Tracker};
use lanveil_core::time::Instant;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(st) = ApiState::parse(data) else {
        return;
    };
    for url in [&st.user_portal_url, &st.venue_info_url]
        .into_iter()
        .flatten()
    {
        let u = CaptivePortalUri::parse(url.as_bytes()).expect("only https URLs are kept");
        assert!(!u.is_unrestricted());
    }
    let mut t = Tracker::new(Settings {
        plaintext: true,
        plaintext_max: Duration::from_secs(300),
        poll: Duration::from_secs(10),
    });
    let now = Instant::from_millis(1_000);
    let uri = CaptivePortalUri::parse(b"https://portal.example/api").unwrap();
    t.signal(now, Some(uri.clone()));
    let due = t.poll_due(now).expect("a request is due after a signal");
    t.api_result(now, &due, Ok(st.clone()));
    match t.exception(now) {
        Some(e) => {
            assert!(st.captive);
            assert!(!e.names.is_empty() && e.names.len() <= MAX_NAMES);
            for n in &e.names {
                assert_eq!(lanveil_core::wire::name::skip(n, 0), Ok(n.len()));
            }
        }
        None => assert!(!st.captive),
    }
    let _ = t.status(now);
});
