//! The router behind someone else's captive portal (a hotel or train WAN): what lanveil knows about
//! it, and the one narrow plaintext exception an owner may allow.
//!
//! Sans-IO like the rest of the core. The shell feeds [`Tracker`] the WAN signals (the RFC 8910
//! captive-portal URI from the WAN's DHCP/RA, handed over by the OpenWrt hook), the results of the
//! RFC 8908 API requests it makes when [`Tracker::poll_due`] says so, and whether the encrypted
//! upstreams work; it reads back the [`Status`] for `lanveil-ctl status` and the [`Exception`] to give
//! the engine.
//!
//! # The plaintext exception
//! Strict by default: with `plaintext` off nothing ever leaves in plaintext, the portal is only
//! reported. With it on, the exception covers exactly the host names of the API URI and of the
//! `user-portal-url` the API returns (at most [`MAX_NAMES`], compared case-insensitively, no
//! subdomains), and ends at the first of: the API says `captive: false`; `plaintext_max` after the
//! portal was first signalled; the WAN signal is withdrawn. A renewed lease with the same URI does not
//! reopen it; only a different URI counts as a new portal. A reload that raises `plaintext_max` does
//! not reopen an exception that has ended.
//!
//! # A session that ends
//! A portal that said `captive: false` may capture the router again when the paid session ends
//! (RFC 8908 §5, `seconds-remaining`). The API cannot tell then (its host name needs the exception),
//! but the upstreams can: when every encrypted upstream has failed for [`SUSPECT_AFTER`] while the
//! portal is free, it counts as signalled anew (the API is asked again, and an allowed exception
//! opens for a fresh `plaintext_max`), at most once per `plaintext_max`.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;

use crate::capport::CaptivePortalUri;
use crate::time::Instant;

/// Most host names the plaintext exception covers.
pub const MAX_NAMES: usize = 4;
/// Largest API document read (RFC 8908 objects are a few hundred bytes).
pub const MAX_API_BODY: usize = 4096;
/// Retry interval after a failed API request.
const API_RETRY: Duration = Duration::from_secs(5);
/// Without any WAN signal, all upstreams failing this long makes the WAN "suspected" captive.
pub const SUSPECT_AFTER: Duration = Duration::from_secs(30);

/// The RFC 8908 §5 API state (the fields lanveil uses; unknown members are ignored).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ApiState {
    /// `captive` (required).
    pub captive: bool,
    /// `user-portal-url`: where the user logs in (HTTPS only, else dropped).
    pub user_portal_url: Option<String>,
    /// `venue-info-url`.
    pub venue_info_url: Option<String>,
    /// `seconds-remaining`.
    pub seconds_remaining: Option<u64>,
    /// `can-extend-session`.
    pub can_extend_session: Option<bool>,
}

/// Why an API document was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiError {
    /// Not a JSON object (or nested deeper than this parser allows).
    NotJson,
    /// The object has no boolean `captive` member (RFC 8908 §5: required).
    NoCaptive,
    /// Longer than [`MAX_API_BODY`].
    TooLong,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotJson => "not a JSON object",
            Self::NoCaptive => "no boolean \"captive\" member",
            Self::TooLong => "longer than 4096 bytes",
        })
    }
}

impl ApiState {
    /// Parses an `application/captive+json` document (RFC 8908 §5).
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        if body.len() > MAX_API_BODY {
            return Err(ApiError::TooLong);
        }
        let mut p = Json { s: body, i: 0 };
        let mut st = Self::default();
        let mut captive = None;
        p.ws();
        p.eat(b'{')?;
        p.ws();
        if p.peek() == Some(b'}') {
            p.i += 1;
        } else {
            loop {
                p.ws();
                let key = p.string()?;
                p.ws();
                p.eat(b':')?;
                p.ws();
                match (key.as_str(), p.value(0)?) {
                    ("captive", Val::Bool(b)) => captive = Some(b),
                    ("user-portal-url", Val::Str(s)) if is_https(&s) => {
                        st.user_portal_url = Some(s)
                    }
                    ("venue-info-url", Val::Str(s)) if is_https(&s) => st.venue_info_url = Some(s),
                    ("seconds-remaining", Val::Num(n)) => st.seconds_remaining = Some(n),
                    ("can-extend-session", Val::Bool(b)) => st.can_extend_session = Some(b),
                    _ => {}
                }
                p.ws();
                match p.next() {
                    Some(b',') => continue,
                    Some(b'}') => break,
                    _ => return Err(ApiError::NotJson),
                }
            }
        }
        p.ws();
        if p.i != body.len() {
            return Err(ApiError::NotJson);
        }
        st.captive = captive.ok_or(ApiError::NoCaptive)?;
        Ok(st)
    }
}

fn is_https(s: &str) -> bool {
    CaptivePortalUri::parse(s.as_bytes()).is_ok_and(|u| !u.is_unrestricted())
}

enum Val {
    Bool(bool),
    Str(String),
    Num(u64),
    Other,
}

/// A strict little JSON reader: enough for RFC 8908's flat object; nested values are skipped (at
/// most 8 levels deep).
struct Json<'a> {
    s: &'a [u8],
    i: usize,
}

impl Json<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) -> Result<(), ApiError> {
        (self.next() == Some(c))
            .then_some(())
            .ok_or(ApiError::NotJson)
    }
    fn lit(&mut self, word: &[u8]) -> Result<(), ApiError> {
        let end = self.i + word.len();
        if self.s.get(self.i..end) != Some(word) {
            return Err(ApiError::NotJson);
        }
        self.i = end;
        Ok(())
    }
    fn string(&mut self) -> Result<String, ApiError> {
        self.eat(b'"')?;
        let mut out = Vec::new();
        loop {
            match self.next().ok_or(ApiError::NotJson)? {
                b'"' => break,
                b'\\' => match self.next().ok_or(ApiError::NotJson)? {
                    c @ (b'"' | b'\\' | b'/') => out.push(c),
                    b'b' | b'f' | b'n' | b'r' | b't' => out.push(b' '),
                    b'u' => {
                        let hex = self.s.get(self.i..self.i + 4).ok_or(ApiError::NotJson)?;
                        let v = core::str::from_utf8(hex)
                            .ok()
                            .and_then(|h| u16::from_str_radix(h, 16).ok())
                            .ok_or(ApiError::NotJson)?;
                        self.i += 4;
                        // URIs are ASCII; anything else is kept as a replacement character.
                        let c = char::from_u32(u32::from(v)).unwrap_or('\u{fffd}');
                        let mut b = [0; 4];
                        out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
                    }
                    _ => return Err(ApiError::NotJson),
                },
                c if c < 0x20 => return Err(ApiError::NotJson),
                c => out.push(c),
            }
        }
        String::from_utf8(out).map_err(|_| ApiError::NotJson)
    }
    fn value(&mut self, depth: u8) -> Result<Val, ApiError> {
        if depth > 8 {
            return Err(ApiError::NotJson);
        }
        match self.peek().ok_or(ApiError::NotJson)? {
            b't' => self.lit(b"true").map(|()| Val::Bool(true)),
            b'f' => self.lit(b"false").map(|()| Val::Bool(false)),
            b'n' => self.lit(b"null").map(|()| Val::Other),
            b'"' => self.string().map(Val::Str),
            open @ (b'{' | b'[') => {
                let close = if open == b'{' { b'}' } else { b']' };
                self.i += 1;
                self.ws();
                if self.peek() == Some(close) {
                    self.i += 1;
                    return Ok(Val::Other);
                }
                loop {
                    self.ws();
                    if open == b'{' {
                        self.string()?;
                        self.ws();
                        self.eat(b':')?;
                        self.ws();
                    }
                    self.value(depth + 1)?;
                    self.ws();
                    match self.next() {
                        Some(b',') => continue,
                        Some(c) if c == close => return Ok(Val::Other),
                        _ => return Err(ApiError::NotJson),
                    }
                }
            }
            b'-' | b'0'..=b'9' => {
                let start = self.i;
                self.i += 1;
                while matches!(
                    self.peek(),
                    Some(b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                ) {
                    self.i += 1;
                }
                let text = core::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
                Ok(text.parse::<u64>().map_or(Val::Other, Val::Num))
            }
            _ => Err(ApiError::NotJson),
        }
    }
}

/// What lanveil believes about the WAN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// No portal signalled and the upstreams work (or have not been tried).
    Open,
    /// No portal signalled, but every upstream has failed for [`SUSPECT_AFTER`]: perhaps a portal
    /// that does not announce itself.
    Suspected,
    /// The WAN's DHCP/RA announced a portal; the API has not answered (yet).
    Signalled,
    /// The API says `captive: true`.
    Captive,
    /// The API says `captive: false`.
    Free,
}

impl Phase {
    /// A stable lower-case name for status output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Suspected => "suspected",
            Self::Signalled => "signalled",
            Self::Captive => "captive",
            Self::Free => "free",
        }
    }
}

/// Settings of the [`Tracker`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The owner allowed plaintext resolution of the portal's names.
    pub plaintext: bool,
    /// Longest the exception stays open after the portal is first signalled.
    pub plaintext_max: Duration,
    /// API poll interval while captive or signalled.
    pub poll: Duration,
}

/// The plaintext exception for the engine: these names (lower-case wire form), until `until`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exception {
    /// Host names, lower-case uncompressed wire form.
    pub names: Vec<Vec<u8>>,
    /// When it ends (exclusive).
    pub until: Instant,
}

impl Exception {
    /// Whether the question name (wire form, any case) is covered at `now`.
    pub fn covers(&self, now: Instant, qname: &[u8]) -> bool {
        now < self.until
            && self
                .names
                .iter()
                .any(|n| crate::wire::name::eq_ignore_case(n, qname))
    }
}

/// A snapshot for status output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// The phase.
    pub phase: Phase,
    /// The API URI signalled on the WAN.
    pub api_uri: Option<String>,
    /// Where the user logs in, from the API.
    pub user_portal_url: Option<String>,
    /// Seconds of the session left, from the API.
    pub seconds_remaining: Option<u64>,
    /// Whether the plaintext exception is allowed by the owner.
    pub plaintext_allowed: bool,
    /// Seconds the exception stays open, if it is open.
    pub plaintext_left_s: Option<u64>,
    /// Host names under the exception (open or not), dotted.
    pub plaintext_names: Vec<String>,
    /// The last API error, if the last request failed.
    pub api_error: Option<String>,
}

/// Tracks the WAN's captive-portal state. See the module documentation.
#[derive(Clone, Debug)]
pub struct Tracker {
    settings: Settings,
    uri: Option<CaptivePortalUri>,
    signalled_at: Instant,
    api: Option<ApiState>,
    api_error: Option<String>,
    next_poll: Option<Instant>,
    closed: bool,
    upstreams_down_since: Option<Instant>,
    /// When a free portal was last taken as capturing again (see the module documentation).
    recaptured_at: Option<Instant>,
}

impl Tracker {
    /// A tracker with nothing signalled.
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            uri: None,
            signalled_at: Instant::default(),
            api: None,
            api_error: None,
            next_poll: None,
            closed: false,
            upstreams_down_since: None,
            recaptured_at: None,
        }
    }

    /// New settings (configuration reload) at `now`; the state is kept. An exception that has
    /// ended stays ended whatever the new `plaintext_max`; one still open ends by the new one.
    pub fn set_settings(&mut self, now: Instant, settings: Settings) {
        if self.exception_end().is_some_and(|end| end <= now) {
            self.closed = true;
        }
        self.settings = settings;
    }

    /// The WAN's DHCP/RA announced `uri` (`None`: withdrawn, or a lease without the option). The
    /// unrestricted URN counts as no portal. Returns whether this is a different portal (the shell
    /// then abandons an API request still out for the old one).
    pub fn signal(&mut self, now: Instant, uri: Option<CaptivePortalUri>) -> bool {
        let uri = uri.filter(|u| !u.is_unrestricted());
        let same = match (&uri, &self.uri) {
            (Some(a), Some(b)) => a.as_str().eq_ignore_ascii_case(b.as_str()),
            (None, None) => true,
            _ => false,
        };
        if same {
            // A renewed lease: the portal (and a closed or expired exception) stays as it is.
            return false;
        }
        self.uri = uri;
        self.recaptured_at = None;
        self.signalled_again(now);
        true
    }

    /// The current portal as if just signalled: the API is asked now, an allowed exception opens.
    fn signalled_again(&mut self, now: Instant) {
        self.api = None;
        self.api_error = None;
        self.closed = false;
        self.signalled_at = now;
        self.next_poll = self.uri.as_ref().map(|_| now);
    }

    /// The API URI to request now, if a request is due. The shell makes one request and reports it
    /// with [`Tracker::api_result`].
    pub fn poll_due(&mut self, now: Instant) -> Option<CaptivePortalUri> {
        match self.next_poll {
            Some(t) if t <= now => {
                self.next_poll = None;
                self.uri.clone()
            }
            _ => None,
        }
    }

    /// When [`Tracker::poll_due`] should be asked next.
    /// (The exception's end needs no wake-up: the engine compares it with `now` on every query.)
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_poll
    }

    /// The result of the API request for `uri` (ignored if the signal changed meanwhile).
    pub fn api_result(
        &mut self,
        now: Instant,
        uri: &CaptivePortalUri,
        result: Result<ApiState, String>,
    ) {
        if self.uri.as_ref() != Some(uri) {
            return;
        }
        match result {
            Ok(st) => {
                self.api_error = None;
                if st.captive {
                    self.next_poll = Some(now + self.settings.poll);
                } else {
                    // Free: the exception ends for good for this portal; the encrypted path takes over.
                    self.closed = true;
                    self.next_poll = None;
                }
                self.api = Some(st);
            }
            Err(e) => {
                self.api_error = Some(e);
                // A host name without the exception cannot be looked up (the request failed for
                // that): asking every few seconds would only fail again, until a new signal.
                let stuck = self.exception(now).is_none()
                    && host_of(uri.as_str()).and_then(host_wire).is_some();
                self.next_poll = (!stuck).then(|| now + API_RETRY.min(self.settings.poll));
            }
        }
    }

    /// Whether every encrypted upstream is failing (for the "suspected" heuristic, and for a free
    /// portal that captures again: see the module documentation).
    pub fn upstreams_down(&mut self, now: Instant, down: bool) {
        match (down, self.upstreams_down_since) {
            (true, None) => self.upstreams_down_since = Some(now),
            (false, _) => self.upstreams_down_since = None,
            _ => {}
        }
        let free = self.uri.is_some() && self.api.as_ref().is_some_and(|a| !a.captive);
        let failing = self
            .upstreams_down_since
            .is_some_and(|t| now.saturating_since(t) >= SUSPECT_AFTER);
        let rested = self
            .recaptured_at
            .is_none_or(|t| now.saturating_since(t) >= self.settings.plaintext_max);
        if free && failing && rested {
            self.recaptured_at = Some(now);
            self.signalled_again(now);
        }
    }

    /// The phase at `now`.
    pub fn phase(&self, now: Instant) -> Phase {
        match (&self.uri, &self.api) {
            (Some(_), Some(st)) if st.captive => Phase::Captive,
            (Some(_), Some(_)) => Phase::Free,
            (Some(_), None) => Phase::Signalled,
            (None, _)
                if self
                    .upstreams_down_since
                    .is_some_and(|t| now.saturating_since(t) >= SUSPECT_AFTER) =>
            {
                Phase::Suspected
            }
            (None, _) => Phase::Open,
        }
    }

    fn names(&self) -> Vec<Vec<u8>> {
        let mut names: Vec<Vec<u8>> = Vec::new();
        let uris = self
            .uri
            .iter()
            .map(CaptivePortalUri::as_str)
            .chain(self.api.iter().filter_map(|a| a.user_portal_url.as_deref()));
        for uri in uris {
            if let Some(w) = host_of(uri).and_then(host_wire)
                && !names.contains(&w)
                && names.len() < MAX_NAMES
            {
                names.push(w);
            }
        }
        names
    }

    /// When the plaintext exception for the current portal ends (or ended), if there is one at all.
    fn exception_end(&self) -> Option<Instant> {
        (self.settings.plaintext && !self.closed && self.uri.is_some())
            .then(|| self.signalled_at + self.settings.plaintext_max)
    }

    /// The plaintext exception in force at `now`, if any (see the module documentation).
    pub fn exception(&self, now: Instant) -> Option<Exception> {
        let until = self.exception_end().filter(|&u| now < u)?;
        let names = self.names();
        (!names.is_empty()).then_some(Exception { names, until })
    }

    /// A snapshot for status output.
    pub fn status(&self, now: Instant) -> Status {
        let ex = self.exception(now);
        Status {
            phase: self.phase(now),
            api_uri: self.uri.as_ref().map(|u| String::from(u.as_str())),
            user_portal_url: self.api.as_ref().and_then(|a| a.user_portal_url.clone()),
            seconds_remaining: self.api.as_ref().and_then(|a| a.seconds_remaining),
            plaintext_allowed: self.settings.plaintext,
            plaintext_left_s: ex.as_ref().map(|e| e.until.saturating_since(now).as_secs()),
            plaintext_names: self
                .names()
                .iter()
                .map(|w| crate::wire::name::to_text(w, 0, w.len()))
                .collect(),
            api_error: self.api_error.clone(),
        }
    }
}

/// The host of an `https://` URI (no port, no brackets; IP literals included).
pub fn host_of(uri: &str) -> Option<&str> {
    crate::capport::https_parts(uri).map(|p| p.host)
}

/// A host name (from a portal URI) in lower-case wire form: `None` for IP literals and for anything
/// but letters, digits, `-`, `_` and dots.
pub fn host_wire(host: &str) -> Option<Vec<u8>> {
    let hostname = host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !hostname || host.parse::<core::net::IpAddr>().is_ok() {
        return None;
    }
    let mut buf = [0u8; crate::wire::name::MAX_NAME_LEN];
    let len = crate::wire::name::encode(host, &mut buf)
        .ok()
        .filter(|&len| len > 1)?;
    let mut wire = buf.get(..len)?.to_vec();
    wire.make_ascii_lowercase(); // length octets are below b'A'
    Some(wire)
}

#[cfg(test)]
mod tests;
