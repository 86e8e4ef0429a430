//! The captive-portal state machine's tests: the RFC 8908 API parser, the plaintext exception's
//! names and bounds, and the phases.

use super::*;

fn t(s: u64) -> Instant {
    Instant::from_millis(s * 1000)
}
fn uri(s: &str) -> CaptivePortalUri {
    CaptivePortalUri::parse(s.as_bytes()).unwrap()
}
fn wire(s: &str) -> Vec<u8> {
    host_wire(s).unwrap()
}
const ON: Settings = Settings {
    plaintext: true,
    plaintext_max: Duration::from_secs(300),
    poll: Duration::from_secs(10),
};

#[test]
fn parses_rfc8908_examples() {
    // RFC 8908 §5.2 example, and unknown members of every JSON kind.
    let st = ApiState::parse(
        br#"{
           "captive": true,
           "user-portal-url": "https://example.org/portal.html",
           "venue-info-url": "https://flight.example.com/entertainment",
           "seconds-remaining": 326,
           "can-extend-session": true,
           "x": [1, {"y": null}, -2.5e3, "a\"b\u0041"], "z": {}
        }"#,
    )
    .unwrap();
    assert!(st.captive);
    assert_eq!(
        st.user_portal_url.as_deref(),
        Some("https://example.org/portal.html")
    );
    assert_eq!(st.seconds_remaining, Some(326));
    assert_eq!(st.can_extend_session, Some(true));
    assert_eq!(
        ApiState::parse(br#"{"captive":false}"#).unwrap(),
        ApiState::default()
    );
    // A plain-http portal URL is not trusted (RFC 8908 §5: it must be HTTPS).
    let st = ApiState::parse(br#"{"captive":true,"user-portal-url":"http://x.example/"}"#).unwrap();
    assert_eq!(st.user_portal_url, None);
    for bad in [
        &b""[..],
        b"[]",
        b"{",
        b"{\"captive\":true",
        b"{\"captive\":true}x",
        b"{\"captive\":tru}",
        b"{captive:true}",
        b"{\"captive\":\"\x01\"}",
    ] {
        assert_eq!(ApiState::parse(bad), Err(ApiError::NotJson), "{bad:?}");
    }
    assert_eq!(ApiState::parse(b"{}"), Err(ApiError::NoCaptive));
    assert_eq!(
        ApiState::parse(br#"{"captive":"yes"}"#),
        Err(ApiError::NoCaptive)
    );
    let deep = [&[b'['; 20][..], &[b']'; 20][..]].concat();
    let doc = [&b"{\"a\":"[..], &deep, b",\"captive\":true}"].concat();
    assert_eq!(ApiState::parse(&doc), Err(ApiError::NotJson));
    assert_eq!(ApiState::parse(&[b' '; 5000]), Err(ApiError::TooLong));
}

#[test]
fn exception_covers_only_portal_names_until_free() {
    let mut tr = Tracker::new(ON);
    assert_eq!(tr.phase(t(0)), Phase::Open);
    assert!(tr.exception(t(0)).is_none());
    tr.signal(t(1), Some(uri("https://Portal.Hotel.example:8443/api")));
    assert_eq!(tr.phase(t(1)), Phase::Signalled);
    let u = tr.poll_due(t(1)).unwrap();
    assert!(tr.poll_due(t(1)).is_none(), "one request at a time");
    let ex = tr.exception(t(1)).unwrap();
    assert!(ex.covers(t(1), &wire("portal.hotel.example")));
    assert!(ex.covers(t(1), &wire("PORTAL.hotel.EXAMPLE")));
    assert!(!ex.covers(t(1), &wire("x.portal.hotel.example")));
    assert!(!ex.covers(t(1), &wire("hotel.example")));
    assert!(!ex.covers(t(1), &wire("example.com")));
    tr.api_result(
        t(2),
        &u,
        Ok(ApiState::parse(
            br#"{"captive":true,"user-portal-url":"https://login.hotel.example/"}"#,
        )
        .unwrap()),
    );
    assert_eq!(tr.phase(t(2)), Phase::Captive);
    let ex = tr.exception(t(2)).unwrap();
    assert!(ex.covers(t(2), &wire("login.hotel.example")));
    assert_eq!(ex.until, t(301));
    assert_eq!(tr.poll_timeout(), Some(t(12)));
    assert!(tr.poll_due(t(11)).is_none());
    let u = tr.poll_due(t(12)).unwrap();
    // The same lease renewed: nothing changes.
    assert!(!tr.signal(t(13), Some(uri("https://portal.hotel.example:8443/api"))));
    assert!(!tr.signal(t(13), Some(uri("https://Portal.Hotel.example:8443/api"))));
    assert_eq!(tr.phase(t(13)), Phase::Captive);
    tr.api_result(
        t(14),
        &u,
        Ok(ApiState::parse(br#"{"captive":false}"#).unwrap()),
    );
    assert_eq!(tr.phase(t(14)), Phase::Free);
    assert!(tr.exception(t(14)).is_none(), "free: the exception ends");
    assert!(tr.poll_due(t(100)).is_none());
    let st = tr.status(t(14));
    assert_eq!(st.phase.as_str(), "free");
    assert_eq!(st.plaintext_left_s, None);
    assert_eq!(st.plaintext_names, ["portal.hotel.example."]);
    // A different portal is a new one.
    assert!(tr.signal(t(20), Some(uri("https://other.example/api"))));
    assert_eq!(tr.phase(t(20)), Phase::Signalled);
    assert!(
        tr.exception(t(20))
            .unwrap()
            .covers(t(20), &wire("other.example"))
    );
    tr.signal(t(21), None);
    assert_eq!(tr.phase(t(21)), Phase::Open);
    assert!(tr.exception(t(21)).is_none());
}

#[test]
fn exception_is_bounded_and_opt_in() {
    let mut tr = Tracker::new(ON);
    tr.signal(t(0), Some(uri("https://portal.example/api")));
    assert!(tr.exception(t(299)).is_some());
    assert!(tr.exception(t(300)).is_none(), "ends after plaintext_max");
    let u = tr.poll_due(t(0)).unwrap();
    // While the request is out nothing is due: no wake-up at all (in particular not at the
    // exception's end, which would be in the past once it is over and make the driver spin).
    assert_eq!(tr.poll_timeout(), None);
    tr.api_result(t(1), &u, Err("connection refused".into()));
    assert_eq!(
        tr.status(t(1)).api_error.as_deref(),
        Some("connection refused")
    );
    assert_eq!(tr.poll_timeout(), Some(t(6)));
    let mut off = Tracker::new(Settings {
        plaintext: false,
        ..ON
    });
    off.signal(t(0), Some(uri("https://portal.example/api")));
    assert_eq!(off.phase(t(0)), Phase::Signalled);
    assert!(off.exception(t(0)).is_none());
    assert!(!off.status(t(0)).plaintext_allowed);
    // IP-literal portals need no name resolution at all.
    let mut ip = Tracker::new(ON);
    ip.signal(t(0), Some(uri("https://192.0.2.1/api")));
    assert!(ip.exception(t(0)).is_none());
    assert_eq!(host_of("https://[2001:db8::1]:8443/x"), Some("2001:db8::1"));
    // The unrestricted URN is "no portal".
    let mut un = Tracker::new(ON);
    un.signal(t(0), Some(CaptivePortalUri::unrestricted()));
    assert_eq!(un.phase(t(0)), Phase::Open);
}

#[test]
fn suspected_when_upstreams_fail_without_signal() {
    let mut tr = Tracker::new(ON);
    tr.upstreams_down(t(0), true);
    assert_eq!(tr.phase(t(29)), Phase::Open);
    assert_eq!(tr.phase(t(30)), Phase::Suspected);
    tr.upstreams_down(t(31), true);
    assert_eq!(tr.phase(t(31)), Phase::Suspected);
    tr.upstreams_down(t(32), false);
    assert_eq!(tr.phase(t(40)), Phase::Open);
}

#[test]
fn host_names_encode_lower_case_and_refuse_what_is_no_host_name() {
    assert_eq!(
        wire("Portal.Hotel.EXAMPLE."),
        b"\x06portal\x05hotel\x07example\x00"
    );
    assert_eq!(wire("a_b-c"), b"\x05a_b-c\x00");
    for bad in [
        "",
        ".",
        "a..b",
        "192.0.2.1",
        "2001:db8::1",
        "a b",
        "é.example",
    ] {
        assert_eq!(host_wire(bad), None, "{bad:?}");
    }
    assert_eq!(host_wire(&"x".repeat(64)), None);
    assert!(host_wire(&"x".repeat(63)).is_some());
}

/// A portal that said "free" captures the router again when its session ends: the API cannot be
/// asked (its name needs the exception), but every upstream failing for `SUSPECT_AFTER` makes the
/// portal count as signalled anew, at most once per `plaintext_max`.
#[test]
fn a_free_portal_whose_upstreams_fail_is_signalled_anew() {
    let mut tr = Tracker::new(ON);
    tr.signal(t(0), Some(uri("https://portal.example/api")));
    let u = tr.poll_due(t(0)).unwrap();
    let free = || Ok(ApiState::parse(br#"{"captive":false,"seconds-remaining":60}"#).unwrap());
    tr.api_result(t(10), &u, free());
    assert_eq!(tr.phase(t(10)), Phase::Free);
    assert!(tr.exception(t(10)).is_none());
    assert_eq!(tr.poll_timeout(), None);
    // The paid hour is over: the upstreams fail.
    tr.upstreams_down(t(20), true);
    tr.upstreams_down(t(49), true);
    assert_eq!(tr.phase(t(49)), Phase::Free, "not before SUSPECT_AFTER");
    tr.upstreams_down(t(50), true);
    assert_eq!(tr.phase(t(50)), Phase::Signalled);
    let ex = tr.exception(t(50)).expect("a fresh exception");
    assert_eq!(ex.until, t(350));
    let u = tr.poll_due(t(50)).expect("the API is asked again");
    tr.api_result(
        t(51),
        &u,
        Ok(ApiState::parse(br#"{"captive":true}"#).unwrap()),
    );
    assert_eq!(tr.phase(t(51)), Phase::Captive);
    // Logged in again; then an upstream outage within plaintext_max of the last time: no new
    // exception (it would open once per outage check otherwise).
    let u = tr.poll_due(t(61)).unwrap();
    tr.api_result(t(62), &u, free());
    tr.upstreams_down(t(63), false);
    tr.upstreams_down(t(70), true);
    tr.upstreams_down(t(100), true);
    assert_eq!(tr.phase(t(100)), Phase::Free);
    assert!(tr.exception(t(100)).is_none());
    // Past plaintext_max since the last one: again.
    tr.upstreams_down(t(350), true);
    assert_eq!(tr.phase(t(350)), Phase::Signalled);
    assert!(tr.exception(t(350)).is_some());
    // Working upstreams never do it, nor failing ones without a portal ("suspected" instead).
    let mut ok = Tracker::new(ON);
    ok.signal(t(0), Some(uri("https://portal.example/api")));
    let u = ok.poll_due(t(0)).unwrap();
    ok.api_result(t(1), &u, free());
    ok.upstreams_down(t(2), false);
    ok.upstreams_down(t(500), false);
    assert_eq!(ok.phase(t(500)), Phase::Free);
}

/// A failed API request whose host name cannot be looked up (no exception: not allowed, or over)
/// is not retried every few seconds; an IP-literal host, or an open exception, is.
#[test]
fn api_retries_stop_when_the_name_cannot_be_looked_up() {
    let off = Settings {
        plaintext: false,
        ..ON
    };
    let mut tr = Tracker::new(off);
    tr.signal(t(0), Some(uri("https://portal.example/api")));
    let u = tr.poll_due(t(0)).unwrap();
    tr.api_result(t(0), &u, Err("would need a plaintext lookup".into()));
    assert_eq!(tr.poll_timeout(), None);
    assert!(tr.status(t(0)).api_error.is_some());
    let mut ip = Tracker::new(off);
    ip.signal(t(0), Some(uri("https://192.0.2.1/api")));
    let u = ip.poll_due(t(0)).unwrap();
    ip.api_result(t(0), &u, Err("connection refused".into()));
    assert_eq!(ip.poll_timeout(), Some(t(5)));
    // Allowed, but its time is over.
    let mut over = Tracker::new(ON);
    over.signal(t(0), Some(uri("https://portal.example/api")));
    let u = over.poll_due(t(0)).unwrap();
    over.api_result(t(1), &u, Err("timed out".into()));
    assert_eq!(over.poll_timeout(), Some(t(6)), "open: retried");
    let u = over.poll_due(t(299)).unwrap();
    over.api_result(t(301), &u, Err("would need a plaintext lookup".into()));
    assert_eq!(over.poll_timeout(), None);
}

/// A reload never reopens an exception that has ended; one still open ends by the new maximum.
#[test]
fn a_reload_does_not_reopen_an_ended_exception() {
    let mut tr = Tracker::new(ON);
    tr.signal(t(0), Some(uri("https://portal.example/api")));
    assert!(tr.exception(t(400)).is_none());
    let long = Settings {
        plaintext_max: Duration::from_secs(3600),
        ..ON
    };
    tr.set_settings(t(400), long);
    assert!(tr.exception(t(400)).is_none(), "ended stays ended");
    let mut open = Tracker::new(ON);
    open.signal(t(0), Some(uri("https://portal.example/api")));
    open.set_settings(t(100), long);
    assert_eq!(open.exception(t(100)).unwrap().until, t(3600));
    let short = Settings {
        plaintext_max: Duration::from_secs(50),
        ..ON
    };
    open.set_settings(t(101), short);
    assert!(
        open.exception(t(101)).is_none(),
        "lowered below the time already open"
    );
}
