//! The maintained resolver list (`host-tools/presets.json`, compiled into the binary; `--presets FILE`
//! reads another copy).

use std::fmt::Write as _;
use std::net::IpAddr;

use lanveil_config::UpstreamUrl;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The presets file shipped with this build.
pub const BUILTIN: &str = include_str!("../presets.json");

/// The whole file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Presets {
    /// Date the list was compiled.
    pub compiled: String,
    /// Whether the entries were checked live on that date.
    pub verified_live: bool,
    /// The resolvers.
    pub presets: Vec<Preset>,
}

/// One resolver variant.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Preset {
    /// Short name used on the command line.
    pub id: String,
    /// Who runs it.
    pub operator: String,
    /// Where the operator is established.
    pub jurisdiction: String,
    /// What this variant does.
    pub variant: String,
    /// none | malware | family | ads | family+ads.
    pub filtering: String,
    /// Validates DNSSEC.
    pub dnssec: bool,
    /// Sends EDNS Client Subnet upstream.
    pub ecs: bool,
    /// The name its certificates carry.
    pub auth_name: String,
    /// IPv4 addresses.
    pub ipv4: Vec<IpAddr>,
    /// IPv6 addresses.
    pub ipv6: Vec<IpAddr>,
    /// DoH path.
    pub doh_path: String,
    /// Also serves DNS over QUIC (RFC 9250) on UDP port 853 of the same addresses.
    #[serde(default)]
    pub doq: bool,
    /// The operator's privacy policy (RFC 8932 §6).
    pub privacy_policy: String,
    /// Remarks.
    pub notes: String,
}

impl Preset {
    /// DoT upstream URLs, IPv4 first (IPv6 only when asked).
    pub fn dot_urls(&self, ipv6: bool) -> Vec<String> {
        self.addrs(ipv6)
            .map(|ip| match ip {
                IpAddr::V4(a) => format!("tls://{a}:853#{}", self.auth_name),
                IpAddr::V6(a) => format!("tls://[{a}]:853#{}", self.auth_name),
            })
            .collect()
    }

    /// DoH upstream URLs.
    pub fn doh_urls(&self, ipv6: bool) -> Vec<String> {
        self.addrs(ipv6)
            .map(|ip| match ip {
                IpAddr::V4(a) => format!("https://{a}:443{}#{}", self.doh_path, self.auth_name),
                IpAddr::V6(a) => format!("https://[{a}]:443{}#{}", self.doh_path, self.auth_name),
            })
            .collect()
    }

    /// DoQ upstream URLs (none if the operator offers no DoQ).
    pub fn doq_urls(&self, ipv6: bool) -> Vec<String> {
        if !self.doq {
            return Vec::new();
        }
        self.addrs(ipv6)
            .map(|ip| match ip {
                IpAddr::V4(a) => format!("quic://{a}:853#{}", self.auth_name),
                IpAddr::V6(a) => format!("quic://[{a}]:853#{}", self.auth_name),
            })
            .collect()
    }

    /// The URLs of one transport: DoQ with `doq`, DoH with `doh`, else DoT.
    pub fn urls(&self, doh: bool, doq: bool, ipv6: bool) -> Result<Vec<String>> {
        if doq {
            let urls = self.doq_urls(ipv6);
            if urls.is_empty() {
                return Err(Error::usage(format!(
                    "preset {}: the operator offers no DNS over QUIC",
                    self.id
                )));
            }
            Ok(urls)
        } else if doh {
            Ok(self.doh_urls(ipv6))
        } else {
            Ok(self.dot_urls(ipv6))
        }
    }

    fn addrs(&self, ipv6: bool) -> impl Iterator<Item = &IpAddr> {
        self.ipv4
            .iter()
            .chain(self.ipv6.iter().filter(move |_| ipv6))
    }
}

impl Presets {
    /// The built-in list.
    pub fn builtin() -> Result<Self> {
        Self::parse(BUILTIN).map_err(|e| e.context("built-in presets"))
    }

    /// Reads a presets file (JSON).
    pub fn parse(text: &str) -> Result<Self> {
        let p: Self =
            serde_json::from_str(text).map_err(|e| Error::usage(format!("presets file: {e}")))?;
        for preset in &p.presets {
            for url in preset
                .dot_urls(true)
                .iter()
                .chain(&preset.doh_urls(true))
                .chain(&preset.doq_urls(true))
            {
                url.parse::<UpstreamUrl>().map_err(|r| {
                    Error::usage(format!("presets file: {}: {url}: {r}", preset.id))
                })?;
            }
        }
        Ok(p)
    }

    /// Loads `path`, or the built-in list.
    pub fn load(path: Option<&str>) -> Result<Self> {
        match path {
            Some(p) => {
                let text = crate::error::io_ctx(std::fs::read_to_string(p), p)?;
                Self::parse(&text).map_err(|e| e.context(p))
            }
            None => Self::builtin(),
        }
    }

    /// The preset called `id`.
    pub fn get(&self, id: &str) -> Result<&Preset> {
        self.presets.iter().find(|p| p.id == id).ok_or_else(|| {
            Error::usage(format!(
                "no preset {id:?}; known: {}",
                self.presets
                    .iter()
                    .map(|p| p.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
    }

    /// A table for people.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "Encrypted DNS resolvers (list compiled {}{}).",
            self.compiled,
            if self.verified_live {
                ""
            } else {
                ", not re-checked live: probe before you rely on one"
            }
        );
        let _ = writeln!(
            o,
            "Compare the operators' privacy policies (RFC 8932 §6) before choosing.\n"
        );
        for p in &self.presets {
            let _ = writeln!(o, "{:<22} {} — {}", p.id, p.operator, p.variant);
            if p.id == "custom" {
                let _ = writeln!(o, "{:<22} {}", "", p.notes);
                continue;
            }
            let _ = writeln!(
                o,
                "{:<22} jurisdiction {}; filtering {}; DNSSEC {}; ECS {}",
                "",
                p.jurisdiction,
                p.filtering,
                if p.dnssec { "yes" } else { "no" },
                if p.ecs { "yes" } else { "no" }
            );
            let _ = writeln!(o, "{:<22} DoT {}", "", p.dot_urls(true).join("  "));
            let _ = writeln!(o, "{:<22} DoH {}", "", p.doh_urls(false).join("  "));
            if p.doq {
                let _ = writeln!(o, "{:<22} DoQ {}", "", p.doq_urls(false).join("  "));
            }
            let _ = writeln!(o, "{:<22} privacy policy {}", "", p.privacy_policy);
            if !p.notes.is_empty() {
                let _ = writeln!(o, "{:<22} {}", "", p.notes);
            }
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doq_presets_expand_to_quic_urls() {
        let p = Presets::builtin().unwrap();
        let a = p.get("adguard").unwrap();
        let urls = a.urls(false, true, false).unwrap();
        assert!(!urls.is_empty());
        for u in &urls {
            let url: UpstreamUrl = u.parse().unwrap();
            assert_eq!(url.transport, lanveil_config::Transport::Quic);
            assert_eq!(url.port, 853);
            assert_eq!(url.auth_name, a.auth_name);
        }
        assert_eq!(a.urls(false, false, false).unwrap(), a.dot_urls(false));
        // No DoQ offered: asking for it is an error, never a silent DoT.
        let q = p.get("quad9").unwrap();
        assert!(q.doq_urls(true).is_empty());
        assert!(q.urls(false, true, false).is_err());
    }

    #[test]
    fn builtin_presets_parse_and_expand() {
        let p = Presets::builtin().unwrap();
        assert!(p.presets.len() >= 10);
        let q = p.get("quad9").unwrap();
        assert_eq!(
            q.dot_urls(false),
            [
                "tls://9.9.9.9:853#dns.quad9.net",
                "tls://149.112.112.112:853#dns.quad9.net"
            ]
        );
        assert!(p.get("nope").is_err());
        for id in [
            "cloudflare",
            "google",
            "mullvad",
            "adguard",
            "dns4eu-protective",
            "custom",
        ] {
            p.get(id).unwrap();
        }
        for preset in p.presets.iter().filter(|p| p.id != "custom") {
            assert!(
                preset.privacy_policy.starts_with("https://"),
                "{}",
                preset.id
            );
            assert!(!preset.ipv4.is_empty(), "{}", preset.id);
        }
    }
}
