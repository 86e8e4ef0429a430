//! Upstream notation: `tls://IP[:PORT]#AUTHNAME` (unbound's `#name` notation; `quic://` the same for
//! DNS over QUIC), SPKI pins in the
//! RFC 7858 §4.2 form `sha256/BASE64`.
//!
//! The upstream is always an IP literal plus the name its certificate must carry, so lanveil never has
//! to look the upstream up in plaintext.

use alloc::string::{String, ToString};
use core::fmt;
use core::net::{IpAddr, SocketAddr};
use core::str::FromStr;

use base64::Engine as _;

use crate::error::Reason;

/// How lanveil talks to an upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Transport {
    /// DNS over TLS, RFC 7858.
    Tls,
    /// DNS over HTTPS (HTTP/2), RFC 8484.
    Https,
    /// DNS over dedicated QUIC connections, RFC 9250 (daemon builds with the `doq` feature).
    Quic,
}

/// A parsed upstream URL.
///
/// * `tls://IP[:PORT]#AUTHNAME` — DoT (port 853 by default).
/// * `quic://IP[:PORT]#AUTHNAME` — DoQ (UDP port 853 by default), authenticated like DoT.
/// * `https://IP[:PORT]/PATH#AUTHNAME` — DoH to that address, authenticated as AUTHNAME (also the
///   HTTP authority and SNI); port 443 and path `/dns-query` by default.
/// * `https://NAME[:PORT]/PATH` — DoH to NAME; its addresses come from the upstream's `bootstrap`
///   list (never from a plaintext lookup).
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct UpstreamUrl {
    /// Transport.
    pub transport: Transport,
    /// Where to connect, when the URL names an IP literal.
    #[serde(with = "crate::scoped::option")]
    pub addr: Option<SocketAddr>,
    /// The port (also in `addr` when that is set).
    pub port: u16,
    /// The name the certificate must be valid for; sent as SNI (and HTTP authority for DoH).
    pub auth_name: String,
    /// The HTTP path for DoH (starts with `/`), empty for DoT.
    pub path: String,
}

/// Default DoT port (RFC 7858 §3.1).
pub const DOT_PORT: u16 = 853;
/// Default DoQ port (RFC 9250 §4.1.1; UDP).
pub const DOQ_PORT: u16 = 853;
/// Default DoH port.
pub const HTTPS_PORT: u16 = 443;

impl FromStr for UpstreamUrl {
    type Err = Reason;

    fn from_str(s: &str) -> Result<Self, Reason> {
        let stream = match s.strip_prefix("tls://") {
            Some(rest) => Some((rest, Transport::Tls, DOT_PORT)),
            None => s
                .strip_prefix("quic://")
                .map(|rest| (rest, Transport::Quic, DOQ_PORT)),
        };
        if let Some((rest, transport, default_port)) = stream {
            let Some((host_port, auth)) = rest.split_once('#') else {
                return Err(Reason::Url(
                    "missing #AUTHNAME: the name the upstream's certificate must carry",
                ));
            };
            let auth_name = parse_auth_name(auth)?;
            let addr = parse_host_port(host_port, default_port)?;
            if transport == Transport::Quic && addr.port() == 53 {
                // RFC 9250 §4.1.1: DoQ MUST NOT use UDP port 53.
                return Err(Reason::Url("DNS over QUIC may not use port 53"));
            }
            return Ok(Self {
                transport,
                addr: Some(addr),
                port: addr.port(),
                auth_name,
                path: String::new(),
            });
        }
        if let Some(rest) = s.strip_prefix("https://") {
            let (rest, fragment) = match rest.split_once('#') {
                Some((r, f)) => (r, Some(f)),
                None => (rest, None),
            };
            let (host_port, path) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, "/dns-query"),
            };
            if path.contains(['?', ' ']) {
                return Err(Reason::Url("the path may not contain '?' or spaces"));
            }
            let path = if path == "/" { "/dns-query" } else { path };
            if let Ok(addr) = parse_host_port(host_port, HTTPS_PORT) {
                let Some(auth) = fragment else {
                    return Err(Reason::Url(
                        "an https:// URL with an IP address needs #AUTHNAME (the certificate's name)",
                    ));
                };
                return Ok(Self {
                    transport: Transport::Https,
                    addr: Some(addr),
                    port: addr.port(),
                    auth_name: parse_auth_name(auth)?,
                    path: path.to_string(),
                });
            }
            if fragment.is_some() {
                return Err(Reason::Url(
                    "#AUTHNAME goes with an IP address; with a host name the name itself is authenticated",
                ));
            }
            let (name, port) = match host_port.rsplit_once(':') {
                Some((n, p)) => (n, p.parse::<u16>().map_err(|_| Reason::Url("bad port"))?),
                None => (host_port, HTTPS_PORT),
            };
            return Ok(Self {
                transport: Transport::Https,
                addr: None,
                port,
                auth_name: parse_auth_name(name)?,
                path: path.to_string(),
            });
        }
        Err(Reason::Url(
            "must start with tls://, https:// or quic:// (e.g. tls://9.9.9.9:853#dns.quad9.net)",
        ))
    }
}

impl fmt::Display for UpstreamUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.transport, self.addr) {
            (Transport::Tls, Some(a)) => write!(f, "tls://{a}#{}", self.auth_name),
            (Transport::Tls, None) => write!(f, "tls://{}:{}", self.auth_name, self.port),
            (Transport::Quic, Some(a)) => write!(f, "quic://{a}#{}", self.auth_name),
            (Transport::Quic, None) => write!(f, "quic://{}:{}", self.auth_name, self.port),
            (Transport::Https, Some(a)) => write!(f, "https://{a}{}#{}", self.path, self.auth_name),
            (Transport::Https, None) => {
                if self.port == HTTPS_PORT {
                    write!(f, "https://{}{}", self.auth_name, self.path)
                } else {
                    write!(f, "https://{}:{}{}", self.auth_name, self.port, self.path)
                }
            }
        }
    }
}

fn parse_host_port(s: &str, default_port: u16) -> Result<SocketAddr, Reason> {
    if let Ok(sa) = SocketAddr::from_str(s) {
        return Ok(sa);
    }
    let host = s
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(s);
    match IpAddr::from_str(host) {
        Ok(ip) => Ok(SocketAddr::new(ip, default_port)),
        Err(_) => Err(Reason::Url(
            "the address must be an IP literal (IPv6 in brackets), optionally with :PORT",
        )),
    }
}

/// Validates a TLS authentication name (a DNS host name, RFC 1123 labels), lower-casing it.
pub fn parse_auth_name(s: &str) -> Result<String, Reason> {
    let name = s.strip_suffix('.').unwrap_or(s);
    if name.is_empty() {
        return Err(Reason::AuthName("empty"));
    }
    if name.len() > 253 {
        return Err(Reason::AuthName("longer than 253 characters"));
    }
    if IpAddr::from_str(name).is_ok() {
        return Err(Reason::AuthName(
            "must be a host name, not an IP address (IP-only authentication is not supported)",
        ));
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(Reason::AuthName("each label must be 1 to 63 characters"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(Reason::AuthName(
                "only letters, digits, '-' and '_' are allowed",
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(Reason::AuthName("a label may not start or end with '-'"));
        }
    }
    Ok(name.to_ascii_lowercase())
}

/// A SHA-256 pin of a SubjectPublicKeyInfo (RFC 7858 §4.2, RFC 7469 form).
#[derive(Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct SpkiPin(pub [u8; 32]);

impl FromStr for SpkiPin {
    type Err = Reason;

    fn from_str(s: &str) -> Result<Self, Reason> {
        let Some(b64) = s
            .strip_prefix("sha256/")
            .or_else(|| s.strip_prefix("pin-sha256:"))
        else {
            return Err(Reason::Pin("must look like sha256/BASE64"));
        };
        let b64 = b64.trim_matches('"');
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| Reason::Pin("not valid base64"))?;
        let arr: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| Reason::Pin("a SHA-256 digest is 32 bytes (44 base64 characters)"))?;
        Ok(Self(arr))
    }
}

impl fmt::Display for SpkiPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sha256/{}",
            base64::engine::general_purpose::STANDARD.encode(self.0)
        )
    }
}

impl fmt::Debug for SpkiPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl SpkiPin {
    /// The pin as text (`sha256/BASE64`).
    pub fn to_text(&self) -> String {
        self.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_upstream_urls() {
        let u: UpstreamUrl = "tls://9.9.9.9#dns.quad9.net".parse().unwrap();
        assert_eq!(u.addr, Some("9.9.9.9:853".parse().unwrap()));
        assert_eq!(u.auth_name, "dns.quad9.net");
        let u: UpstreamUrl = "tls://[2620:fe::fe]:8853#DNS.Quad9.net.".parse().unwrap();
        assert_eq!(u.addr, Some("[2620:fe::fe]:8853".parse().unwrap()));
        assert_eq!(u.auth_name, "dns.quad9.net");
        let u: UpstreamUrl = "tls://2620:fe::fe#dns.quad9.net".parse().unwrap();
        assert_eq!(u.port, 853);
        assert_eq!(u.to_string(), "tls://[2620:fe::fe]:853#dns.quad9.net");
    }

    #[test]
    fn parse_quic_urls() {
        let u: UpstreamUrl = "quic://94.140.14.140#dns.adguard-dns.com".parse().unwrap();
        assert_eq!(
            (u.transport, u.addr, u.auth_name.as_str(), u.path.as_str()),
            (
                Transport::Quic,
                Some("94.140.14.140:853".parse().unwrap()),
                "dns.adguard-dns.com",
                ""
            )
        );
        assert_eq!(
            u.to_string(),
            "quic://94.140.14.140:853#dns.adguard-dns.com"
        );
        assert_eq!(u.to_string().parse::<UpstreamUrl>().unwrap(), u);
        let u: UpstreamUrl = "quic://[2a10:50c0::ad1:ff]:8853#Dns.Example."
            .parse()
            .unwrap();
        assert_eq!(u.addr, Some("[2a10:50c0::ad1:ff]:8853".parse().unwrap()));
        assert_eq!(u.auth_name, "dns.example");
        for bad in [
            "quic://9.9.9.9",
            "quic://dns.example#dns.example",
            "quic://9.9.9.9:53#dns.example",
            "quic://9.9.9.9#",
            "quic://9.9.9.9/dns-query#dns.example",
            "doq://9.9.9.9#dns.example",
        ] {
            assert!(bad.parse::<UpstreamUrl>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn parse_https_urls() {
        let u: UpstreamUrl = "https://9.9.9.9/dns-query#dns.quad9.net".parse().unwrap();
        assert_eq!(
            (u.transport, u.addr, u.path.as_str()),
            (
                Transport::Https,
                Some("9.9.9.9:443".parse().unwrap()),
                "/dns-query"
            )
        );
        assert_eq!(u.to_string(), "https://9.9.9.9:443/dns-query#dns.quad9.net");
        let u: UpstreamUrl = "https://[2620:fe::fe]:8443#dns.quad9.net".parse().unwrap();
        assert_eq!((u.port, u.path.as_str()), (8443, "/dns-query"));
        let u: UpstreamUrl = "https://dns.quad9.net/dns-query".parse().unwrap();
        assert_eq!(
            (u.addr, u.port, u.auth_name.as_str()),
            (None, 443, "dns.quad9.net")
        );
        assert_eq!(u.to_string(), "https://dns.quad9.net/dns-query");
        let u: UpstreamUrl = "https://doh.example:8443/q".parse().unwrap();
        assert_eq!(u.to_string(), "https://doh.example:8443/q");
        for bad in [
            "https://9.9.9.9/dns-query",
            "https://dns.quad9.net/q#x.y",
            "https://a/q?dns=1",
            "https://-x/q",
        ] {
            assert!(bad.parse::<UpstreamUrl>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn reject_bad_upstream_urls() {
        for bad in [
            "9.9.9.9#dns.quad9.net",
            "udp://9.9.9.9#x",
            "tls://9.9.9.9",
            "tls://dns.quad9.net#dns.quad9.net",
            "tls://9.9.9.9:99999#x",
            "tls://9.9.9.9#",
            "tls://9.9.9.9#bad..name",
            "tls://9.9.9.9#-bad.name",
            "tls://9.9.9.9#1.2.3.4",
        ] {
            assert!(bad.parse::<UpstreamUrl>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn parse_pins() {
        let text = "sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
        let pin: SpkiPin = text.parse().unwrap();
        assert_eq!(pin.to_text(), text);
        assert!("sha1/abc".parse::<SpkiPin>().is_err());
        assert!("sha256/!!!".parse::<SpkiPin>().is_err());
        assert!("sha256/AAAA".parse::<SpkiPin>().is_err());
    }
}
