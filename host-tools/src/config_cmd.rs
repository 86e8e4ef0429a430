//! `lanveil-ctl config init/set/unset/check/show/pack/unpack`: the router's UCI file, validated with
//! the daemon's own schema (`lanveil_config::Config::from_uci`), so errors are the daemon's errors:
//! `FILE:LINE: section[name].key: reason`.

use std::path::Path;

use lanveil_config::keys::{self, Kind};
use lanveil_config::uci::{self, Document, Section, Value};
use lanveil_config::{Config, UpstreamUrl};

use crate::edit::{Edit, edit_text};
use crate::error::{Error, Result, io_ctx};
use crate::presets::Preset;

/// Reads and validates a configuration file: UCI text, or a packed (`LVCF`) blob.
pub fn load(path: &str) -> Result<Config> {
    let bytes = io_ctx(std::fs::read(path), format!("cannot read {path}"))?;
    parse_bytes(path, &bytes)
}

/// Validates UCI text or a packed blob; the error names the file, line, key and reason.
pub fn parse_bytes(path: &str, bytes: &[u8]) -> Result<Config> {
    if bytes.starts_with(b"LVCF") {
        return Config::unpack(bytes)
            .map_err(|e| Error::usage(e.display_with_file(path).to_string()));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| {
        Error::usage(format!(
            "{path}: not UTF-8 text (and not a packed configuration)"
        ))
    })?;
    Config::from_uci_text(text).map_err(|e| Error::usage(e.display_with_file(path).to_string()))
}

/// Where a `config set` key lands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPath {
    /// Section type (`lanveil`, `upstream`, `openwrt`).
    pub ty: String,
    /// Section name (`main` for the main section).
    pub name: String,
    /// Option key; `None` = the whole section (for `unset`).
    pub key: Option<String>,
}

/// Parses `KEY`, `main.KEY`, `upstream.NAME[.KEY]`, `openwrt.KEY`.
pub fn parse_key(s: &str) -> Result<KeyPath> {
    let bad = || {
        Error::usage(format!(
            "{s:?}: a key is KEY (main section), main.KEY, upstream.NAME.KEY or openwrt.KEY"
        ))
    };
    let parts: Vec<&str> = s.split('.').collect();
    // libuci's names (`uci_validate_name`): it refuses the whole file over one '-', so every `uci get`
    // of the init script would fail while lanveil ran.
    if let Some(p) = parts.iter().find(|p| !uci::is_valid_name(p)) {
        if p.is_empty() {
            return Err(bad());
        }
        return Err(Error::usage(format!(
            "{s:?}: {p:?} is not a UCI name: section and option names are letters, digits and '_' only (uci refuses the whole file otherwise){}",
            if p.contains('-') {
                format!("; try {:?}", p.replace('-', "_"))
            } else {
                String::new()
            }
        )));
    }
    Ok(match parts.as_slice() {
        [key] => KeyPath {
            ty: "lanveil".into(),
            name: "main".into(),
            key: Some((*key).into()),
        },
        ["main" | "lanveil", key] => KeyPath {
            ty: "lanveil".into(),
            name: "main".into(),
            key: Some((*key).into()),
        },
        ["openwrt", key] => KeyPath {
            ty: "openwrt".into(),
            name: "openwrt".into(),
            key: Some((*key).into()),
        },
        ["upstream", name] => KeyPath {
            ty: "upstream".into(),
            name: (*name).into(),
            key: None,
        },
        ["upstream", name, key] => KeyPath {
            ty: "upstream".into(),
            name: (*name).into(),
            key: Some((*key).into()),
        },
        _ => return Err(bad()),
    })
}

/// `enabled` of an upstream section, read as the daemon reads it (an invalid value fails validation
/// anyway).
fn is_enabled(s: &Section) -> bool {
    !s.values
        .iter()
        .rev()
        .find(|v| v.key == "enabled")
        .is_some_and(|v| matches!(v.value.as_str(), "0" | "no" | "off" | "false" | "disabled"))
}

/// The name `config check` and `config show` (and the daemon's status) give each section of `doc`,
/// by index: an `upstream` section its own name or, unnamed, the name the daemon generates for it
/// (taken from the daemon's own reading of the file; `upstreamN`, N counting the enabled upstreams,
/// when the file does not validate); `None` for a disabled unnamed upstream and other types.
pub fn shown_names(doc: &Document) -> Vec<Option<String>> {
    let is_upstream = |s: &Section| s.ty == "upstream";
    let enabled = doc
        .sections
        .iter()
        .filter(|s| is_upstream(s) && is_enabled(s))
        .count();
    let servers: Option<Vec<String>> = Config::from_uci(doc)
        .ok()
        .map(|c| c.upstreams.servers.into_iter().map(|u| u.name).collect())
        .filter(|names: &Vec<String>| names.len() == enabled);
    let mut k = 0;
    doc.sections
        .iter()
        .map(|s| {
            if !is_upstream(s) {
                return None;
            }
            let on = is_enabled(s);
            let name = match (&s.name, &servers) {
                (Some(n), _) => Some(n.clone()),
                (None, _) if !on => None,
                (None, Some(names)) => names.get(k).cloned(),
                (None, None) => Some(format!("upstream{}", k + 1)),
            };
            if on {
                k += 1;
            }
            name
        })
        .collect()
}

/// The section `path` addresses, by index; `None` when there is none yet. `main` is the `lanveil`
/// section whatever its name; `openwrt` the `openwrt` section whatever its name (the init script
/// reads `@openwrt[0]`), and there must be only one; `upstream.NAME` the upstream `config check`
/// shows as NAME: named so, or unnamed and shown as NAME.
fn locate(doc: &Document, path: &KeyPath) -> Result<Option<usize>> {
    let of_type = |ty: &str| -> Vec<usize> {
        doc.sections
            .iter()
            .enumerate()
            .filter(|(_, s)| s.ty == ty)
            .map(|(i, _)| i)
            .collect()
    };
    match path.ty.as_str() {
        "lanveil" => Ok(of_type("lanveil").first().copied()),
        lanveil_config::INIT_ONLY_SECTION => {
            let all = of_type(lanveil_config::INIT_ONLY_SECTION);
            if all.len() > 1 {
                return Err(Error::usage(two_openwrt_sections(doc, &all)));
            }
            Ok(all.first().copied())
        }
        _ => {
            let shown = shown_names(doc);
            let hits: Vec<usize> = of_type(&path.ty)
                .into_iter()
                .filter(|&i| shown[i].as_deref() == Some(path.name.as_str()))
                .collect();
            match hits.as_slice() {
                [] => Ok(None),
                [one] => Ok(Some(*one)),
                [a, b, ..] => Err(Error::usage(format!(
                    "{}.{}: two sections are shown as {:?} ({} at line {} and {} at line {}); give the unnamed one a name of its own first",
                    path.ty,
                    path.name,
                    path.name,
                    doc.sections[*a].label(*a),
                    doc.sections[*a].line,
                    doc.sections[*b].label(*b),
                    doc.sections[*b].line,
                ))),
            }
        }
    }
}

/// The message for a file with several `openwrt` sections (indices `all`, two at least).
fn two_openwrt_sections(doc: &Document, all: &[usize]) -> String {
    let lines: Vec<String> = all
        .iter()
        .map(|&i| doc.sections[i].line.to_string())
        .collect();
    format!(
        "{} 'config openwrt' sections (lines {}): the init script reads only the first, the others are ignored; merge them into one",
        all.len(),
        lines.join(", ")
    )
}

/// Sets `path` to `values` (one value: `option`; several, or a list key: `list`), creating the
/// section if needed; says what changed.
pub fn set(doc: &mut Document, path: &KeyPath, values: &[String]) -> Result<Edit> {
    let Some(key) = &path.key else {
        return Err(Error::usage(format!(
            "{}.{}: give a key, e.g. {}.{}.url",
            path.ty, path.name, path.ty, path.name
        )));
    };
    if values.is_empty() {
        return Err(Error::usage(format!(
            "{key}: give a value (use `config unset` to remove it)"
        )));
    }
    let (at, edit) = match locate(doc, path)? {
        Some(at) => (
            at,
            Edit::Key {
                section: at,
                key: key.clone(),
            },
        ),
        None => {
            let s = Section {
                ty: path.ty.clone(),
                name: Some(path.name.clone()),
                line: 0,
                values: Vec::new(),
            };
            let at = if path.ty == "lanveil" {
                doc.sections.insert(0, s);
                0
            } else {
                doc.sections.push(s);
                doc.sections.len() - 1
            };
            (at, Edit::Added { section: at })
        }
    };
    let section = &mut doc.sections[at];
    let was_list = section.values.iter().any(|v| &v.key == key && v.is_list);
    let is_list = values.len() > 1 || was_list || keys::is_list(&path.ty, key);
    let at = section.values.iter().position(|v| &v.key == key);
    section.values.retain(|v| &v.key != key);
    let new: Vec<Value> = values
        .iter()
        .map(|v| Value {
            key: key.clone(),
            value: v.clone(),
            is_list,
            line: 0,
        })
        .collect();
    let at = at.unwrap_or(section.values.len()).min(section.values.len());
    section.values.splice(at..at, new);
    Ok(edit)
}

/// Removes a key, or a whole section when `path.key` is `None` (sections addressed as by [`set`]).
/// Says what changed; `None` when nothing was there.
pub fn unset(doc: &mut Document, path: &KeyPath) -> Result<Option<Edit>> {
    let Some(at) = locate(doc, path)? else {
        return Ok(None);
    };
    Ok(match &path.key {
        None => {
            doc.sections.remove(at);
            Some(Edit::Removed { section: at })
        }
        Some(key) => {
            let s = &mut doc.sections[at];
            let before = s.values.len();
            s.values.retain(|v| &v.key != key);
            (s.values.len() != before).then(|| Edit::Key {
                section: at,
                key: key.clone(),
            })
        }
    })
}

/// Validates `after` (the daemon's schema) and writes it to `path`,
/// which held `original` (read as `before`): edited in place when [`edit_text`] can (comments and
/// layout kept, `None` returned), else written anew after a copy of `original` was kept as
/// `PATH.bak` (the returned note says so). The file keeps its mode, owner and symlink.
pub fn save_edit(
    path: &str,
    original: &str,
    before: &Document,
    after: &Document,
    edit: &Edit,
) -> Result<Option<String>> {
    let (rendered, _) = render_checked(after, path)?;
    if let Some(text) = edit_text(original, before, after, edit) {
        write_atomic(path, text.as_bytes())?;
        return Ok(None);
    }
    let bak = format!("{path}.bak");
    let like = std::fs::metadata(path).ok();
    crate::edit::replace(Path::new(&bak), original.as_bytes(), like.as_ref())?;
    write_atomic(path, rendered.as_bytes())?;
    Ok(Some(format!(
        "its comments and layout could not be kept (rewritten as `uci export` writes it); the previous file is {bak}"
    )))
}

/// Renders a document and validates the result; the error is the daemon's, naming `path`.
pub fn render_checked(doc: &Document, path: &str) -> Result<(String, Config)> {
    let text = uci::write(doc);
    let cfg = Config::from_uci_text(&text).map_err(|e| {
        Error::usage(format!(
            "not written, the result would be invalid: {}",
            e.display_with_file(path)
        ))
    })?;
    Ok((text, cfg))
}

/// Writes `contents` to `path` atomically (temporary file + rename), through a symlink to its target,
/// keeping an existing file's permission bits and owner ([`crate::edit::write_file`]).
pub fn write_atomic(path: &str, contents: &[u8]) -> Result<()> {
    crate::edit::write_file(path, contents)
}

/// The OpenWrt package's shipped `/etc/config/lanveil`, built in so `config init --openwrt` and the
/// package can never disagree about the router's wiring.
pub const OPENWRT_PACKAGE_CONFIG: &str = include_str!("../../openwrt/lanveil/files/lanveil.config");

/// What `config init` should write.
#[derive(Debug, Clone, Default)]
pub struct InitSpec {
    /// Start from [`OPENWRT_PACKAGE_CONFIG`] (its listen, user, state file, control socket, log level
    /// and `openwrt` section) with its upstreams replaced, instead of from an empty file.
    pub openwrt: bool,
    /// Preset to take upstreams from.
    pub preset: Option<Preset>,
    /// DoH instead of DoT for the preset.
    pub doh: bool,
    /// DoQ instead of DoT for the preset.
    pub doq: bool,
    /// Include the preset's IPv6 addresses.
    pub ipv6: bool,
    /// Explicit upstream URLs (after the preset's).
    pub upstreams: Vec<String>,
    /// Pins for every upstream.
    pub pins: Vec<String>,
    /// CA bundle for every upstream (router path).
    pub ca_file: Option<String>,
    /// Listen addresses.
    pub listen: Vec<String>,
    /// Extra `KEY=VALUE` settings.
    pub set: Vec<(String, String)>,
}

/// Builds the document `config init` writes (validated).
pub fn init_document(spec: &InitSpec) -> Result<(String, Config)> {
    let mut doc = if spec.openwrt {
        let mut d = uci::parse(OPENWRT_PACKAGE_CONFIG).map_err(|e| {
            Error::usage(format!(
                "internal: the built-in package configuration does not parse: {}",
                e.display_with_file("lanveil.config")
            ))
        })?;
        d.sections.retain(|s| s.ty != "upstream");
        d
    } else {
        Document::default()
    };
    let main = KeyPath {
        ty: "lanveil".into(),
        name: "main".into(),
        key: Some("listen".into()),
    };
    if !spec.listen.is_empty() {
        set(&mut doc, &main, &spec.listen)?;
    } else if !spec.openwrt {
        set(&mut doc, &main, &["127.0.0.1:5353".to_string()])?;
    }
    let mut urls: Vec<(String, String)> = Vec::new();
    if let Some(p) = &spec.preset {
        let list = p.urls(spec.doh, spec.doq, spec.ipv6)?;
        let base = p.id.replace('-', "_");
        for (i, u) in list.into_iter().enumerate() {
            urls.push((format!("{base}_{}", i + 1), u));
        }
    }
    for (i, u) in spec.upstreams.iter().enumerate() {
        let parsed: UpstreamUrl = u
            .parse()
            .map_err(|r| Error::usage(format!("--upstream {u}: {r}")))?;
        let _ = parsed;
        urls.push((format!("custom_{}", i + 1), u.clone()));
    }
    if urls.is_empty() {
        return Err(Error::usage(
            "say which resolver: --preset ID (see `lanveil-ctl presets`) or --upstream URL",
        ));
    }
    for (name, url) in urls {
        let key = |k: &str| KeyPath {
            ty: "upstream".into(),
            name: name.clone(),
            key: Some(k.into()),
        };
        set(&mut doc, &key("url"), &[url])?;
        if !spec.pins.is_empty() {
            set(&mut doc, &key("pin"), &spec.pins)?;
        }
        if let Some(ca) = &spec.ca_file {
            set(&mut doc, &key("ca_file"), std::slice::from_ref(ca))?;
        }
    }
    for (k, v) in &spec.set {
        set(&mut doc, &parse_key(k)?, std::slice::from_ref(v))?;
    }
    if spec.openwrt {
        // As in the package file: main, upstreams, then the init script's section (stable sort).
        doc.sections
            .sort_by_key(|s| s.ty == lanveil_config::INIT_ONLY_SECTION);
    }
    let (text, cfg) = render_checked(&doc, "(new configuration)")?;
    let mut header = if spec.openwrt {
        String::from(
            "# lanveil configuration (UCI), written by `lanveil-ctl config init --openwrt`: the defaults of\n\
             # the lanveil OpenWrt package of this lanveil-ctl's source (openwrt/lanveil/files/lanveil.config,\n\
             # its /etc/config/lanveil) with the upstreams below; that file's comments are not kept. The daemon\n\
             # reads the 'lanveil' and 'upstream' sections, the package's init script the 'openwrt' section.\n",
        )
    } else {
        String::from("# lanveil configuration (UCI), written by `lanveil-ctl config init`.\n")
    };
    header.push_str(
        "# Check: lanveil-ctl config check --file FILE   Push: lanveil-ctl push ROUTER --file FILE\n",
    );
    if let Some(p) = &spec.preset {
        header.push_str(&format!(
            "# Resolver: {} — {} ({}); privacy policy: {}\n",
            p.id, p.operator, p.variant, p.privacy_policy
        ));
    }
    Ok((header + &text, cfg))
}

/// The `openwrt` section of UCI text as one line for `config check` (`key 'value'`, in file order);
/// `None` without one, or for a packed blob (which keeps only what the daemon reads).
pub fn openwrt_summary(bytes: &[u8]) -> Option<String> {
    let doc = uci::parse(std::str::from_utf8(bytes).ok()?).ok()?;
    let sections: Vec<&Section> = doc
        .sections
        .iter()
        .filter(|s| s.ty == lanveil_config::INIT_ONLY_SECTION)
        .collect();
    if sections.is_empty() {
        return None;
    }
    let values: Vec<String> = sections
        .iter()
        .flat_map(|s| s.values.iter())
        .map(|v| format!("{} '{}'", v.key, v.value))
        .collect();
    Some(format!(
        "openwrt section (the init script's): {}",
        if values.is_empty() {
            "empty".to_string()
        } else {
            values.join(", ")
        }
    ))
}

/// One-paragraph summary of a valid configuration.
pub fn summary(cfg: &Config) -> String {
    let mut o = format!(
        "listen {}; {} upstream{} ({}):",
        cfg.listen
            .addrs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        cfg.upstreams.servers.len(),
        if cfg.upstreams.servers.len() == 1 {
            ""
        } else {
            "s"
        },
        keys::policy_word(cfg.upstreams.policy)
    );
    for u in &cfg.upstreams.servers {
        o.push_str(&format!(
            "\n  {:<16} {}{}",
            u.name,
            u.url,
            if u.pins.is_empty() {
                String::new()
            } else {
                format!(
                    " ({} pin{})",
                    u.pins.len(),
                    if u.pins.len() == 1 { "" } else { "s" }
                )
            }
        ));
    }
    o
}

/// The configuration as JSON: every key of the main section under its own name, from the key table
/// (numbers and flags typed, lists as arrays, unset keys `null`), and `upstreams` (pins and URLs as
/// text).
pub fn to_json(cfg: &Config) -> serde_json::Value {
    let mut v = serde_json::Map::new();
    for k in keys::MAIN {
        let typed = |t: &String| match k.kind {
            Kind::Number { .. } => t
                .parse::<u64>()
                .map_or_else(|_| serde_json::json!(t), |n| serde_json::json!(n)),
            Kind::Bool => serde_json::json!(t == "1"),
            Kind::Text { .. } => serde_json::json!(t),
        };
        let values = k.values(cfg);
        let value = match (k.list, values.as_slice()) {
            (true, vs) => serde_json::Value::Array(vs.iter().map(typed).collect()),
            (false, [one]) => typed(one),
            (false, _) => serde_json::Value::Null,
        };
        v.insert(k.name.to_string(), value);
    }
    let mut ups = serde_json::to_value(&cfg.upstreams.servers).unwrap_or(serde_json::Value::Null);
    if let Some(list) = ups.as_array_mut() {
        for (j, u) in list.iter_mut().enumerate() {
            if let Some(src) = cfg.upstreams.servers.get(j) {
                u["pins"] =
                    serde_json::json!(src.pins.iter().map(|p| p.to_text()).collect::<Vec<_>>());
                u["url"] = serde_json::json!(src.url.to_string());
            }
        }
    }
    v.insert("upstreams".into(), ups);
    serde_json::Value::Object(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{set_key, unset_key};

    #[test]
    fn init_and_set_doq_upstreams() {
        let presets = crate::presets::Presets::builtin().unwrap();
        let spec = InitSpec {
            preset: Some(presets.get("adguard").unwrap().clone()),
            doq: true,
            upstreams: vec!["quic://[2001:db8::53]:8853#doq.example".into()],
            ..InitSpec::default()
        };
        let (text, cfg) = init_document(&spec).unwrap();
        assert!(
            text.contains("option url 'quic://94.140.14.14:853#dns.adguard-dns.com'"),
            "{text}"
        );
        assert!(
            text.contains("option url 'quic://[2001:db8::53]:8853#doq.example'"),
            "{text}"
        );
        assert!(
            cfg.upstreams
                .servers
                .iter()
                .all(|u| u.url.transport == lanveil_config::Transport::Quic)
        );
        let mut doc = uci::parse(&text).unwrap();
        set_key(
            &mut doc,
            "upstream.mine.url",
            &["quic://192.0.2.53#dns.example"],
        )
        .unwrap();
        let (out, _) = render_checked(&doc, "x").unwrap();
        assert!(out.contains("quic://192.0.2.53#dns.example"), "{out}");
        assert!(
            set_key(
                &mut doc,
                "upstream.mine.url",
                &["quic://192.0.2.53:53#dns.example"]
            )
            .and_then(|_| render_checked(&doc, "x").map(|_| ()))
            .is_err(),
            "DoQ on port 53 refused"
        );
    }

    /// `(key, value, is_list)` of the sections of type `ty`, in order (lines ignored).
    fn section_values(doc: &Document, ty: &str) -> Vec<(String, String, bool)> {
        doc.sections
            .iter()
            .filter(|s| s.ty == ty)
            .flat_map(|s| s.values.iter())
            .map(|v| (v.key.clone(), v.value.clone(), v.is_list))
            .collect()
    }

    #[test]
    fn init_openwrt_keeps_the_package_wiring_with_the_preset_upstreams() {
        let presets = crate::presets::Presets::builtin().unwrap();
        let quad9 = presets.get("quad9").unwrap().clone();
        let want_urls = quad9.urls(false, false, false).unwrap();
        let spec = InitSpec {
            openwrt: true,
            preset: Some(quad9),
            ..InitSpec::default()
        };
        let (text, cfg) = init_document(&spec).unwrap();
        let package = Config::from_uci_text(OPENWRT_PACKAGE_CONFIG).unwrap();

        // Pushing it over a router running the package loses none of its wiring.
        assert_eq!(
            crate::push::wiring_drift(OPENWRT_PACKAGE_CONFIG.as_bytes(), text.as_bytes()),
            Vec::<String>::new(),
            "{text}"
        );
        assert_eq!(cfg.listen.addrs, package.listen.addrs);
        assert_eq!(cfg.listen.addrs[0].to_string(), "127.0.0.1:5453");
        assert_eq!(cfg.daemon.user, package.daemon.user);
        assert_eq!(cfg.daemon.state_file, package.daemon.state_file);
        assert_eq!(cfg.daemon.control_socket, package.daemon.control_socket);
        assert_eq!(cfg.daemon.user.as_deref(), Some("lanveil"));

        // Exactly the preset's upstreams (the package's own are gone).
        let urls: Vec<String> = cfg
            .upstreams
            .servers
            .iter()
            .map(|u| u.url.to_string())
            .collect();
        let want: Vec<String> = want_urls
            .iter()
            .map(|u| u.parse::<UpstreamUrl>().unwrap().to_string())
            .collect();
        assert_eq!(urls, want);

        // The main and openwrt sections are the package's, key for key.
        let doc = uci::parse(&text).unwrap();
        let pkg = uci::parse(OPENWRT_PACKAGE_CONFIG).unwrap();
        let openwrt = section_values(&doc, lanveil_config::INIT_ONLY_SECTION);
        assert!(!openwrt.is_empty());
        assert_eq!(
            openwrt,
            section_values(&pkg, lanveil_config::INIT_ONLY_SECTION)
        );
        assert_eq!(
            section_values(&doc, "lanveil"),
            section_values(&pkg, "lanveil")
        );
        assert_eq!(
            doc.sections.last().map(|s| s.ty.as_str()),
            Some(lanveil_config::INIT_ONLY_SECTION)
        );
        assert!(
            text.starts_with("# lanveil configuration (UCI), written by `lanveil-ctl config init --openwrt`: the defaults of\n# the lanveil "),
            "{text}"
        );
        assert!(
            text.contains("openwrt/lanveil/files/lanveil.config"),
            "{text}"
        );
        assert!(
            openwrt_summary(text.as_bytes())
                .unwrap()
                .contains("dnsmasq '1', start_timeout '10', force_dns '1', force_dns_zone 'lan'"),
        );

        // --listen still wins, --set lands on top (also in the openwrt section), pins and CA apply.
        let spec = InitSpec {
            openwrt: true,
            upstreams: vec!["tls://192.0.2.1:853#dns.example".into()],
            pins: vec!["sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=".into()],
            ca_file: Some("/etc/ssl/mine.pem".into()),
            listen: vec!["127.0.0.1:5454".into()],
            set: vec![
                ("log_level".into(), "debug".into()),
                ("openwrt.block_dot".into(), "1".into()),
            ],
            ..InitSpec::default()
        };
        let (text, cfg) = init_document(&spec).unwrap();
        assert_eq!(cfg.listen.addrs[0].to_string(), "127.0.0.1:5454");
        assert_eq!(cfg.upstreams.servers.len(), 1);
        assert_eq!(cfg.upstreams.servers[0].pins.len(), 1);
        assert!(
            text.contains("option ca_file '/etc/ssl/mine.pem'"),
            "{text}"
        );
        assert!(text.contains("option log_level 'debug'"), "{text}");
        assert!(text.contains("option block_dot '1'"), "{text}");
        assert_eq!(
            uci::parse(&text)
                .unwrap()
                .sections
                .iter()
                .filter(|s| s.ty == lanveil_config::INIT_ONLY_SECTION)
                .count(),
            1
        );
        assert_eq!(
            crate::push::wiring_drift(OPENWRT_PACKAGE_CONFIG.as_bytes(), text.as_bytes()),
            vec![
                "changes listen from '127.0.0.1:5453' to '127.0.0.1:5454' (dnsmasq forwards to the old address)"
                    .to_string(),
                "changes openwrt option block_dot from '0' to '1'".to_string()
            ]
        );
        // Still refuses to write without a resolver, or with an invalid result.
        assert!(
            init_document(&InitSpec {
                openwrt: true,
                ..InitSpec::default()
            })
            .is_err()
        );
        let e = init_document(&InitSpec {
            openwrt: true,
            upstreams: vec!["tls://192.0.2.1:853#dns.example".into()],
            set: vec![("openwrt.force_dsn".into(), "1".into())],
            ..InitSpec::default()
        })
        .unwrap_err();
        assert!(
            e.message
                .contains("openwrt[openwrt].force_dsn: unknown option"),
            "{e}"
        );
    }

    #[test]
    fn init_without_openwrt_is_the_generic_file() {
        let presets = crate::presets::Presets::builtin().unwrap();
        let (text, cfg) = init_document(&InitSpec {
            preset: Some(presets.get("quad9").unwrap().clone()),
            ..InitSpec::default()
        })
        .unwrap();
        assert_eq!(cfg.listen.addrs[0].to_string(), "127.0.0.1:5353");
        assert_eq!(cfg.daemon.user, None);
        assert_eq!(cfg.daemon.control_socket, None);
        assert!(!text.contains("config openwrt"), "{text}");
        assert!(openwrt_summary(text.as_bytes()).is_none());
        assert!(
            text.starts_with(
                "# lanveil configuration (UCI), written by `lanveil-ctl config init`.\n# Check: "
            ),
            "{text}"
        );
    }

    #[test]
    fn set_and_unset_keys() {
        let mut doc = uci::parse("config lanveil 'main'\n\toption log_level 'info'\n").unwrap();
        set_key(&mut doc, "upstream.q.url", &["tls://9.9.9.9#dns.quad9.net"]).unwrap();
        set_key(&mut doc, "listen", &["127.0.0.1:53", "[::1]:53"]).unwrap();
        set_key(&mut doc, "main.query_timeout_ms", &["1500"]).unwrap();
        let (_, cfg) = render_checked(&doc, "x").unwrap();
        assert_eq!(cfg.listen.addrs.len(), 2);
        assert_eq!(cfg.limits.query_timeout_ms, 1500);
        set_key(&mut doc, "query_timeout_ms", &["5"]).unwrap();
        let e = render_checked(&doc, "x").unwrap_err();
        assert!(
            e.message.contains(
                "lanveil[main].query_timeout_ms: must be a whole number from 100 to 30000"
            ),
            "{e}"
        );
        assert!(unset_key(&mut doc, "query_timeout_ms").unwrap().is_some());
        assert!(unset_key(&mut doc, "upstream.q").unwrap().is_some());
        assert!(
            render_checked(&doc, "x")
                .unwrap_err()
                .message
                .contains("upstream")
        );
        assert!(parse_key("a.b.c.d").is_err());
        assert!(parse_key("up stream").is_err());
    }

    #[test]
    fn set_and_unset_address_unnamed_sections_by_their_shown_name() {
        let text = "config lanveil 'main'\n\tlist listen '127.0.0.1:5353'\n\n\
                    config upstream\n\toption url 'tls://9.9.9.9:853#dns.quad9.net'\n\n\
                    config openwrt\n\toption force_dns '0'\n";
        let mut doc = uci::parse(text).unwrap();
        let shown = Config::from_uci(&doc).unwrap().upstreams.servers[0]
            .name
            .clone();
        assert_eq!(shown_names(&doc)[1].as_deref(), Some(shown.as_str()));
        let one: UpstreamUrl = "tls://1.1.1.1:853#one.one.one.one".parse().unwrap();
        set_key(
            &mut doc,
            &format!("upstream.{shown}.url"),
            &[&one.to_string()],
        )
        .unwrap();
        set_key(&mut doc, "openwrt.force_dns", &["1"]).unwrap();
        let (out, cfg) = render_checked(&doc, "x").unwrap();
        assert_eq!(doc.sections.len(), 3, "{out}");
        assert_eq!(cfg.upstreams.servers.len(), 1, "{out}");
        assert_eq!(cfg.upstreams.servers[0].url, one);
        assert_eq!(
            openwrt_summary(out.as_bytes()).unwrap(),
            "openwrt section (the init script's): force_dns '1'"
        );
        // A new upstream is still a new, named section; the unnamed one goes by its shown name.
        set_key(&mut doc, "upstream.q.url", &["tls://9.9.9.9#dns.quad9.net"]).unwrap();
        assert_eq!(doc.sections.len(), 4);
        assert!(
            unset_key(&mut doc, &format!("upstream.{shown}"))
                .unwrap()
                .is_some()
        );
        assert!(
            unset_key(&mut doc, &format!("upstream.{shown}"))
                .unwrap()
                .is_none()
        );
        let (_, cfg) = render_checked(&doc, "x").unwrap();
        assert_eq!(cfg.upstreams.servers.len(), 1);
        assert_eq!(cfg.upstreams.servers[0].name, "q");

        // A second openwrt section: set refuses to pick one, check and every write refuse it.
        let two = format!("{text}\nconfig openwrt 'openwrt'\n\toption force_dns '0'\n");
        let mut doc = uci::parse(&two).unwrap();
        let e = set_key(&mut doc, "openwrt.force_dns", &["1"]).unwrap_err();
        assert_eq!(
            e.message,
            "2 'config openwrt' sections (lines 7, 10): the init script reads only the first, the others are ignored; merge them into one"
        );
        set_key(&mut doc, "log_level", &["debug"]).unwrap();
        assert!(
            render_checked(&doc, "f")
                .unwrap_err()
                .message
                .contains("openwrt[openwrt]: only one 'config openwrt' section is allowed")
        );
    }

    #[test]
    fn set_refuses_names_uci_refuses() {
        let e = parse_key("upstream.my-dns.url").unwrap_err();
        assert!(
            e.message
                .contains("\"my-dns\" is not a UCI name: section and option names are letters, digits and '_' only")
                && e.message.contains("try \"my_dns\""),
            "{e}"
        );
        assert!(parse_key("openwrt.force-dns").is_err());
        assert!(parse_key("query-timeout_ms").is_err());
        assert!(parse_key("upstream..url").is_err());
        assert_eq!(parse_key("upstream.my_dns.url").unwrap().name, "my_dns");
    }

    #[test]
    fn written_values_read_back_as_uci_reads_them() {
        // An unquoted '#' starts a comment for libuci; the writer quotes every value.
        let mut doc = Document::default();
        set_key(&mut doc, "upstream.q.url", &["tls://9.9.9.9#dns.quad9.net"]).unwrap();
        let (text, cfg) = render_checked(&doc, "x").unwrap();
        assert!(
            text.contains("option url 'tls://9.9.9.9#dns.quad9.net'"),
            "{text}"
        );
        assert_eq!(cfg.upstreams.servers[0].url.auth_name, "dns.quad9.net");
        // Unknown keys of the openwrt section are refused like elsewhere.
        set_key(&mut doc, "openwrt.force_dsn", &["1"]).unwrap();
        let e = render_checked(&doc, "lanveil").unwrap_err();
        assert!(
            e.message
                .contains("openwrt[openwrt].force_dsn: unknown option"),
            "{e}"
        );
    }
}
