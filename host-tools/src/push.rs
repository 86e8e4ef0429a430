//! `lanveil-ctl push ROUTER`: a confirmed configuration switch with rollback.
//!
//! 1. validate the file locally (the daemon's schema);
//! 2. upload it next to the live file (`CFG.lanveil-ctl-new`) and have the router's lanveil check it
//!    (`lanveil --check-config`), so a version skew is caught before anything changes;
//! 3. switch: copy the live file to `CFG.bak`, `mv` the new one into place (atomic), write a pending
//!    token and start a router-side watchdog that restores `CFG.bak` and reloads after
//!    deadline + grace unless the token is cleared — the safety net if this machine vanishes;
//! 4. reload over the control socket; the daemon answers whether it applied the file;
//! 5. verify until the deadline: a fresh (cache-busting) query to the router's DNS listener is answered
//!    NOERROR/NXDOMAIN, and the status report lists exactly the new upstreams with one of them up;
//! 6. confirm (clear the token) — or roll back: restore `CFG.bak` (keeping the rejected file as
//!    `CFG.rejected`), reload, and exit 1 naming the reason;
//! 7. when the file changes what the OpenWrt init script wires ([`wiring_changes`]: the `openwrt`
//!    section, `listen`, the LAN signals), run its reload (`/etc/init.d/lanveil reload`), which the
//!    daemon's reload does not do; unchanged wiring runs nothing.
//!
//! Before 2, [`wiring_drift`] refuses (unless `--replace-wiring`) a file that would lose the router's
//! wiring.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use lanveil_config::Config;
use lanveil_config::control::{Request, Response};

use crate::dns::{self, QueryOpts};
use crate::error::{Error, Result};
use crate::remote::{Control, SshTarget, sh_quote};

/// Push settings.
#[derive(Debug, Clone)]
pub struct PushOpts {
    /// The router.
    pub target: SshTarget,
    /// The configuration file path on the router.
    pub remote_config: String,
    /// The daemon binary on the router.
    pub lanveil: String,
    /// The control socket on the router.
    pub control: String,
    /// Where to send the verification query (default: the router's host, port 53).
    pub verify_addr: Option<SocketAddr>,
    /// The name under which a random label is asked.
    pub verify_name: String,
    /// How long the new configuration has to prove itself.
    pub deadline: Duration,
    /// Extra time the router-side watchdog waits beyond the deadline.
    pub watchdog_grace: Duration,
    /// Only upload, check and switch the file (no reload, no verification).
    pub no_reload: bool,
    /// Push even when [`wiring_drift`] finds the router's wiring would be lost.
    pub replace_wiring: bool,
    /// The OpenWrt init script on the router, reloaded after a confirmed push that changes the
    /// wiring ([`wiring_changes`]); skipped when it is not there.
    pub init_script: String,
}

/// What pushing `new` over the router's `live` file would lose or change that the router's wiring
/// depends on: a different `listen` (dnsmasq forwards to the old address), a dropped or changed
/// `control_socket` (reload, status, the udhcpc hook), `state_file` (the clock floor after a reboot)
/// or `user`; a changed LAN signal or `captive_plaintext` (see [`signal_diff`]); and a dropped
/// `openwrt` section or any difference in it, option by option and list value by list value (dnsmasq
/// wiring, force-DNS and its zones, DoT blocking: the init script's alone). `push` replaces the file
/// wholesale, so a file from `config init` (which writes none of these) or `config init --openwrt`
/// (the package's default `openwrt` section) would silently reset them. An `openwrt` section the
/// live file lacks is no loss (see [`wiring_changes`]). Empty when nothing is lost, or when the live
/// file does not parse (nothing to keep).
pub fn wiring_drift(live: &[u8], new: &[u8]) -> Vec<String> {
    let parse = |b: &[u8]| crate::config_cmd::parse_bytes("", b).ok();
    let (Some(old), Some(cfg)) = (parse(live), parse(new)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if old.listen.addrs != cfg.listen.addrs {
        out.push(format!(
            "changes listen from '{}' to '{}' (dnsmasq forwards to the old address)",
            addrs(&old),
            addrs(&cfg)
        ));
    }
    for (key, was, now) in [
        (
            "control_socket",
            &old.daemon.control_socket,
            &cfg.daemon.control_socket,
        ),
        ("state_file", &old.daemon.state_file, &cfg.daemon.state_file),
        ("user", &old.daemon.user, &cfg.daemon.user),
    ] {
        if let Some(w) = was
            && now.as_ref() != Some(w)
        {
            out.push(match now {
                None => format!("drops option {key} '{w}'"),
                Some(n) => format!("changes option {key} from '{w}' to '{n}'"),
            });
        }
    }
    out.extend(signal_diff(&old, &cfg));
    match (openwrt_section(live), openwrt_section(new)) {
        (Some(_), None) => {
            out.push("drops the 'openwrt' section (dnsmasq wiring, force-DNS, LAN capture)".into());
        }
        (Some(was), Some(now)) => out.extend(openwrt_diff(&was, &now)),
        (None, _) => {}
    }
    out
}

/// What the init script would do differently with `new` than with the router's `live` file: its
/// `openwrt` section (added, dropped, or option by option), `listen` (dnsmasq's target), the LAN
/// signals and `captive_plaintext`. The daemon's reload does not apply these; `push` runs the init
/// script's reload when this is not empty. `live` is `None` when the router's file could not be read
/// or does not parse: then the wiring is taken as changed (reloading it is harmless).
pub fn wiring_changes(live: Option<&[u8]>, new: &[u8]) -> Vec<String> {
    let parse = |b: &[u8]| crate::config_cmd::parse_bytes("", b).ok();
    let (Some(live), Some(cfg)) = (live, parse(new)) else {
        return vec!["the router's previous file could not be read".into()];
    };
    let Some(old) = parse(live) else {
        return vec!["the router's previous file does not parse".into()];
    };
    let mut out = Vec::new();
    if old.listen.addrs != cfg.listen.addrs {
        out.push(format!(
            "changes listen from '{}' to '{}'",
            addrs(&old),
            addrs(&cfg)
        ));
    }
    out.extend(signal_diff(&old, &cfg));
    match (openwrt_section(live), openwrt_section(new)) {
        (Some(_), None) => out.push("drops the 'openwrt' section".into()),
        (None, Some(_)) => out.push("adds an 'openwrt' section".into()),
        (Some(was), Some(now)) => out.extend(openwrt_diff(&was, &now)),
        (None, None) => {}
    }
    out
}

fn addrs(c: &Config) -> String {
    c.listen
        .addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The init script's `openwrt` settings of a UCI file, as `lanveil_opt` reads them: the first
/// `openwrt` section (`lanveil.@openwrt[0]`), each option's last value, and each list key's values as
/// a set of words (the script loops over `$(lanveil_opt force_dns_zone lan)`, so order, repeats and
/// the split between `list` entries and spaces inside one do not matter). `None` without a section
/// (or for a packed blob, which keeps none).
type OpenwrtSection = BTreeMap<String, OpenwrtValue>;

#[derive(Debug, Clone, PartialEq, Eq)]
enum OpenwrtValue {
    Option(String),
    List(BTreeSet<String>),
}

fn openwrt_section(bytes: &[u8]) -> Option<OpenwrtSection> {
    let doc = lanveil_config::uci::parse(std::str::from_utf8(bytes).ok()?).ok()?;
    let section = doc
        .sections
        .iter()
        .find(|s| s.ty == lanveil_config::INIT_ONLY_SECTION)?;
    let mut out = OpenwrtSection::new();
    for v in &section.values {
        let list = lanveil_config::INIT_ONLY_KEYS
            .iter()
            .any(|&(k, list)| k == v.key && list);
        if list {
            let entry = out
                .entry(v.key.clone())
                .or_insert_with(|| OpenwrtValue::List(BTreeSet::new()));
            if let OpenwrtValue::List(set) = entry {
                set.extend(v.value.split_whitespace().map(String::from));
            }
        } else {
            out.insert(v.key.clone(), OpenwrtValue::Option(v.value.clone()));
        }
    }
    Some(out)
}

/// One line per difference between two `openwrt` sections ("changes openwrt option block_dot from
/// '1' to '0'", "drops openwrt list force_dns_zone 'guest'", "adds …").
fn openwrt_diff(old: &OpenwrtSection, new: &OpenwrtSection) -> Vec<String> {
    let empty = BTreeSet::new();
    let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    let mut out = Vec::new();
    for key in keys {
        match (old.get(key), new.get(key)) {
            (Some(OpenwrtValue::List(_)), _) | (_, Some(OpenwrtValue::List(_))) => {
                let set = |v: Option<&OpenwrtValue>| match v {
                    Some(OpenwrtValue::List(s)) => s.clone(),
                    _ => empty.clone(),
                };
                let (was, now) = (set(old.get(key)), set(new.get(key)));
                for w in was.difference(&now) {
                    out.push(format!("drops openwrt list {key} '{w}'"));
                }
                for n in now.difference(&was) {
                    out.push(format!("adds openwrt list {key} '{n}'"));
                }
            }
            (Some(OpenwrtValue::Option(w)), Some(OpenwrtValue::Option(n))) if w != n => {
                out.push(format!("changes openwrt option {key} from '{w}' to '{n}'"));
            }
            (Some(OpenwrtValue::Option(w)), None) => {
                out.push(format!("drops openwrt option {key} '{w}'"));
            }
            (None, Some(OpenwrtValue::Option(n))) => {
                out.push(format!("adds openwrt option {key} '{n}'"));
            }
            _ => {}
        }
    }
    out
}

/// The `lanveil` section's keys the init script reads besides the daemon's wiring: the LAN signals
/// (`captive_portal_uri`, `v6only_wait`, applied to dnsmasq/odhcpd through `lanveil --print-signals`)
/// and `captive_plaintext` (asks the WAN for DHCP option 114). One line per difference.
fn signal_diff(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    match (
        &old.signals.captive_portal_uri,
        &new.signals.captive_portal_uri,
    ) {
        (Some(w), None) => out.push(format!("drops option captive_portal_uri '{w}'")),
        (None, Some(n)) => out.push(format!("adds option captive_portal_uri '{n}'")),
        (Some(w), Some(n)) if w != n => out.push(format!(
            "changes option captive_portal_uri from '{w}' to '{n}'"
        )),
        _ => {}
    }
    if old.signals.v6only_wait != new.signals.v6only_wait {
        out.push(format!(
            "changes option v6only_wait from '{}' to '{}'",
            old.signals.v6only_wait, new.signals.v6only_wait
        ));
    }
    if old.captive.plaintext != new.captive.plaintext {
        out.push(format!(
            "changes option captive_plaintext from '{}' to '{}'",
            u8::from(old.captive.plaintext),
            u8::from(new.captive.plaintext)
        ));
    }
    out
}

/// Why `push` refused a file that [`wiring_drift`] found would lose the router's wiring, and the ways
/// out: a file with the package's wiring from `config init --openwrt`, copying the router's settings
/// (the only way to keep an `openwrt` section that differs from the package's default), or
/// `--replace-wiring`.
fn refusal(host: &str, live: &str, local_path: &str, drift: &[String]) -> String {
    let is_setting = |d: &String| {
        d.contains(" openwrt option ")
            || d.contains(" openwrt list ")
            || d.contains("captive_portal_uri")
            || d.contains("v6only_wait")
            || d.contains("captive_plaintext")
    };
    let settings = drift.iter().any(is_setting);
    let mut msg = format!(
        "not pushed (nothing was changed): compared with {host}:{live}, {local_path}\n  - {}\n\
         push replaces the whole file.",
        drift.join("\n  - ")
    );
    if drift.iter().any(|d| !is_setting(d)) {
        msg.push_str(&format!(
            " For a router running the lanveil package, write a file with its wiring (listen \
             127.0.0.1:5453, user, state_file, control_socket and the 'openwrt' section) and your \
             resolver: lanveil-ctl config init --openwrt --preset ID (or --upstream URL) --file \
             {local_path} --force{}. Or copy those settings into {local_path} (lanveil-ctl config set \
             --file {local_path} KEY VALUE; the package's defaults: listen 127.0.0.1:5453, \
             control_socket /var/run/lanveil/daemon/control.sock, state_file \
             /etc/lanveil/daemon/state, user lanveil, and its 'openwrt' section).",
            if settings {
                " (it has the package's defaults, not the router's values, for the settings \
                 listed below: copy those into it as below)"
            } else {
                ""
            }
        ));
    }
    if settings {
        msg.push_str(&format!(
            " To keep the router's settings, copy each one listed from its file (ssh {host} cat \
             {live}) into {local_path}: lanveil-ctl config set --file {local_path} openwrt.KEY \
             VALUE... (a list with all its values; captive_portal_uri, v6only_wait and \
             captive_plaintext without 'openwrt.'), and lanveil-ctl config unset --file {local_path} \
             KEY for one the router does not have."
        ));
    }
    msg.push_str(
        " Or pass --replace-wiring to push it as it is (then the router's init script is reloaded \
         after the daemon, so the new wiring takes effect at once).",
    );
    msg
}

/// What happened.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PushOutcome {
    /// Steps, in order, for the transcript.
    pub steps: Vec<String>,
}

fn step(out: &mut Vec<String>, s: String) {
    eprintln!("  {s}");
    out.push(s);
}

fn random_token() -> String {
    dns::random_label(16)
}

/// Runs the push. `local_path` is only used in messages.
pub fn push(cfg_text: &[u8], local_path: &str, opts: &PushOpts) -> Result<PushOutcome> {
    let mut steps = Vec::new();
    let cfg = crate::config_cmd::parse_bytes(local_path, cfg_text)?;
    step(
        &mut steps,
        format!(
            "{local_path}: valid ({} upstreams)",
            cfg.upstreams.servers.len()
        ),
    );
    let t = &opts.target;
    let live = &opts.remote_config;
    let q = |s: &str| sh_quote(s);

    // 1b. Keep the router's wiring: the file replaces the live one wholesale.
    let (code, current, _) = t.run(&format!("cat {}", q(live)), None)?;
    let current = (code == 0).then_some(current);
    if !opts.replace_wiring {
        let drift = current
            .as_deref()
            .map(|c| wiring_drift(c, cfg_text))
            .unwrap_or_default();
        if !drift.is_empty() {
            return Err(Error::usage(refusal(&t.host, live, local_path, &drift)));
        }
        step(
            &mut steps,
            "keeps the router's listen, control socket, state file, user, LAN signals and openwrt \
             section settings"
                .into(),
        );
    }
    let changes = wiring_changes(current.as_deref(), cfg_text);
    if opts.replace_wiring && !changes.is_empty() {
        step(
            &mut steps,
            format!(
                "replaces the router's wiring (--replace-wiring): {}",
                changes.join("; ")
            ),
        );
    }
    let new = format!("{live}.lanveil-ctl-new");
    let bak = format!("{live}.bak");
    let pending = format!("{live}.lanveil-ctl-pending");
    let tmp = format!("{live}.lanveil-ctl-tmp");
    let rejected = format!("{live}.rejected");

    // 2. Upload and check on the router.
    t.run_ok(
        &format!("umask 022 && cat > {}", q(&new)),
        Some(cfg_text),
        "uploading the configuration",
    )?;
    step(&mut steps, format!("uploaded to {}:{new}", t.host));
    let (code, out, err) = t.run(
        &format!("{} --check-config {}", q(&opts.lanveil), q(&new)),
        None,
    )?;
    if code != 0 {
        let _ = t.run(&format!("rm -f {}", q(&new)), None);
        let detail = if err.is_empty() {
            String::from_utf8_lossy(&out).trim().to_string()
        } else {
            err
        };
        return Err(Error::usage(format!(
            "the router's lanveil rejected the configuration (nothing was changed): {}",
            detail.replace(&new, live)
        )));
    }
    step(
        &mut steps,
        "the router's lanveil accepts it (--check-config)".into(),
    );
    if opts.no_reload {
        t.run_ok(
            &format!(
                "if [ -f {l} ]; then cp -p {l} {b}; fi && mv -f {n} {l}",
                l = q(live),
                b = q(&bak),
                n = q(&new)
            ),
            None,
            "switching the configuration",
        )?;
        step(
            &mut steps,
            format!("installed as {live} (previous kept as {bak}); not reloaded (--no-reload)"),
        );
        if !changes.is_empty() {
            step(
                &mut steps,
                format!(
                    "the wiring changes ({}) take effect when the service starts or reloads ({} reload)",
                    changes.join("; "),
                    opts.init_script
                ),
            );
        }
        return Ok(PushOutcome { steps });
    }

    // 3. Switch, with a router-side watchdog.
    let token = random_token();
    let watchdog_s = (opts.deadline + opts.watchdog_grace).as_secs().max(1);
    let restore = format!(
        "if [ -f {b} ]; then cp -p {l} {r}; cp -p {b} {t} && mv -f {t} {l}; echo restored; else echo no-backup; fi",
        b = q(&bak),
        l = q(live),
        r = q(&rejected),
        t = q(&tmp)
    );
    let reload_cmd = format!("{} --control {} reload", q(&opts.lanveil), q(&opts.control));
    let switch = format!(
        "set -e\n\
         if [ -f {l} ]; then cp -p {l} {b}; echo had-previous; else rm -f {b}; fi\n\
         mv -f {n} {l}\n\
         echo {tok} > {p}\n\
         ( trap '' HUP; sleep {w}; if [ \"$(cat {p} 2>/dev/null)\" = {tok} ]; then rm -f {p}; {restore} >/dev/null; {reload} >/dev/null 2>&1; fi ) </dev/null >/dev/null 2>&1 &\n",
        l = q(live),
        b = q(&bak),
        n = q(&new),
        p = q(&pending),
        tok = token,
        w = watchdog_s,
        restore = restore,
        reload = reload_cmd,
    );
    let out = t.run_ok(&switch, None, "switching the configuration")?;
    let had_previous = String::from_utf8_lossy(&out).contains("had-previous");
    step(
        &mut steps,
        format!(
            "switched {live} (previous kept as {bak}{}); router-side watchdog restores it in {watchdog_s} s unless confirmed",
            if had_previous { "" } else { ": there was none" }
        ),
    );

    let control = Control::Ssh {
        target: t.clone(),
        lanveil: opts.lanveil.clone(),
        socket: opts.control.clone(),
    };
    let started = Instant::now();
    let result = reload_and_verify(&control, &cfg, opts, started, &mut steps);
    match result {
        Ok(()) => {
            t.run_ok(
                &format!(
                    "if [ \"$(cat {p} 2>/dev/null)\" = {token} ]; then rm -f {p}; else echo expired; fi",
                    p = q(&pending)
                ),
                None,
                "confirming",
            )
            .and_then(|o| {
                if String::from_utf8_lossy(&o).contains("expired") {
                    Err(Error::failed(
                        "the router-side watchdog already restored the previous configuration (confirmation came too late)",
                    ))
                } else {
                    Ok(())
                }
            })?;
            step(&mut steps, "confirmed; the watchdog stands down".into());
            reload_wiring(opts, &changes, &bak, &mut steps)?;
            Ok(PushOutcome { steps })
        }
        Err(why) => {
            step(&mut steps, format!("FAILED: {why}"));
            let rb = format!(
                "if [ \"$(cat {p} 2>/dev/null)\" = {token} ]; then rm -f {p}; fi; {restore}",
                p = q(&pending)
            );
            let restored = t.run_ok(&rb, None, "restoring the previous configuration");
            let restored = match restored {
                Ok(o) => String::from_utf8_lossy(&o).contains("restored"),
                Err(e) => {
                    return Err(Error::failed(format!(
                        "push failed ({why}) and restoring over ssh failed too ({e}); the router-side watchdog will restore {bak} within {watchdog_s} s"
                    )));
                }
            };
            if !restored {
                return Err(Error::failed(format!(
                    "push failed: {why}. There was no previous configuration to restore; {live} holds the new (failing) one"
                )));
            }
            step(
                &mut steps,
                format!("restored {bak} → {live} (the failing one is kept as {rejected})"),
            );
            let reload = match control.request(&Request::Reload) {
                Ok(Response::Reloaded(Ok(()))) => {
                    "lanveil reloaded the previous configuration".to_string()
                }
                Ok(Response::Reloaded(Err(e))) => {
                    format!("reloading the previous configuration failed: {e}")
                }
                Ok(other) => format!("unexpected answer to reload: {other:?}"),
                Err(e) => format!("reload after restore failed: {e}"),
            };
            step(&mut steps, reload.clone());
            Err(Error::failed(format!(
                "push failed: {why}\nthe previous configuration was restored and {reload}; the rejected file is {}:{rejected}",
                t.host
            )))
        }
    }
}

/// After a confirmed push: the init script's reload when [`wiring_changes`] found any (dnsmasq,
/// the firewall capture, the LAN signals follow the file now, not at the next reboot), else nothing.
/// The least wall-clock limit of the init script's reload over ssh.
const INIT_RELOAD_TIMEOUT: Duration = Duration::from_secs(300);

/// The daemon already runs the new file and it stays: a failing reload is an error that says so.
fn reload_wiring(
    opts: &PushOpts,
    changes: &[String],
    bak: &str,
    steps: &mut Vec<String>,
) -> Result<()> {
    // The init script's reload waits for the daemon (its start_timeout), for the service lock and
    // restarts dnsmasq: more than one command is given, and killing it half-way leaves the wiring
    // half done.
    let mut t = opts.target.clone();
    t.command_timeout = t.command_timeout.max(INIT_RELOAD_TIMEOUT);
    let t = &t;
    let init = &opts.init_script;
    if changes.is_empty() {
        step(
            steps,
            format!(
                "wiring kept (openwrt section, listen and LAN signals unchanged): {init} not run"
            ),
        );
        return Ok(());
    }
    let what = changes.join("; ");
    let cmd = format!(
        "if [ -f {i} ] && [ -x {i} ]; then {i} reload </dev/null; else echo {NO_INIT}; fi",
        i = sh_quote(init)
    );
    let failed = |detail: String| {
        Error::failed(format!(
            "the daemon runs the new configuration (verified and confirmed; {live} is the new file, the \
             previous one is {bak}), but {init} reload on {host} failed ({detail}): the wiring changes \
             ({what}) are not in effect yet. Run `{init} reload` on the router (see `logread -e lanveil`, \
             `{init} status`)",
            live = opts.remote_config,
            host = t.host,
        ))
    };
    let (code, out, err) = t.run(&cmd, None).map_err(|e| failed(e.message))?;
    if code != 0 {
        let out = String::from_utf8_lossy(&out);
        let detail = [err.trim(), out.trim()]
            .into_iter()
            .find(|s| !s.is_empty())
            .map_or_else(|| format!("exit {code}"), |d| format!("exit {code}: {d}"));
        return Err(failed(detail));
    }
    if String::from_utf8_lossy(&out).contains(NO_INIT) {
        step(
            steps,
            format!(
                "the wiring changed ({what}), but {host} has no executable {init}: nothing else to reload",
                host = t.host
            ),
        );
    } else {
        step(
            steps,
            format!(
                "the wiring changed ({what}): ran {init} reload on {host}, so dnsmasq, the capture and \
                 the LAN signals follow the new file now",
                host = t.host
            ),
        );
    }
    Ok(())
}

/// Printed by the init-reload command when the router has no init script.
const NO_INIT: &str = "lanveil-ctl:no-init-script";

fn reload_and_verify(
    control: &Control,
    cfg: &Config,
    opts: &PushOpts,
    started: Instant,
    steps: &mut Vec<String>,
) -> std::result::Result<(), String> {
    match control.request(&Request::Reload) {
        Ok(Response::Reloaded(Ok(()))) => {
            step(steps, "lanveil reloaded the new configuration".into())
        }
        Ok(Response::Reloaded(Err(e))) => return Err(format!("lanveil refused to reload: {e}")),
        Ok(Response::Error(e)) => return Err(format!("lanveil refused to reload: {e}")),
        Ok(other) => return Err(format!("unexpected answer to reload: {other:?}")),
        Err(e) => return Err(e.message),
    }
    let verify_addr = match opts.verify_addr {
        Some(a) => a,
        None => (opts.target.hostname(), 53)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| {
                format!(
                    "cannot resolve {} to send a test query; give --verify-addr IP:PORT",
                    opts.target.hostname()
                )
            })?,
    };
    let want: Vec<String> = cfg
        .upstreams
        .servers
        .iter()
        .map(|u| u.url.to_string())
        .collect();
    let mut last = String::from("no verification attempt finished");
    while started.elapsed() < opts.deadline {
        // Each attempt may take the daemon's own query deadline (2.5 s by default) to answer, even
        // when it starts just before our deadline: a SERVFAIL with its EDE says more than a time-out.
        let wait = opts
            .deadline
            .saturating_sub(started.elapsed())
            .max(Duration::from_secs(3));
        match verify_once(control, verify_addr, &opts.verify_name, &want, wait) {
            Ok(msg) => {
                step(steps, msg);
                return Ok(());
            }
            Err(e) => {
                // Keep an informative answer (SERVFAIL + EDE) over a later bare time-out.
                if !(e.contains("no answer") && last.contains("answered")) {
                    last = e;
                }
            }
        }
        std::thread::sleep(
            Duration::from_millis(300).min(opts.deadline.saturating_sub(started.elapsed())),
        );
    }
    Err(format!(
        "no good answer through the new upstream within {} s: {last}",
        opts.deadline.as_secs()
    ))
}

fn verify_once(
    control: &Control,
    addr: SocketAddr,
    base: &str,
    want: &[String],
    left: Duration,
) -> std::result::Result<String, String> {
    let name = format!(
        "lanveil-ctl-{}.{}",
        dns::random_label(10),
        base.trim_end_matches('.')
    );
    let q = dns::build_query(
        &name,
        dns::qtype::A,
        QueryOpts {
            id: dns::random_id(),
            ..QueryOpts::default()
        },
    )
    .map_err(|e| e.to_string())?;
    let (reply, rtt) = dns::udp_exchange(addr, &q, left.min(Duration::from_secs(3)))
        .map_err(|e| format!("test query to {addr}: {e}"))?;
    if reply.rcode != 0 && reply.rcode != 3 {
        let ede = reply
            .ede
            .iter()
            .map(|(c, t)| format!(" (EDE {c} {}: {t})", dns::ede_name(*c)))
            .collect::<String>();
        return Err(format!("test query answered {}{ede}", reply.rcode_name()));
    }
    let report = match control.request(&Request::Status) {
        Ok(Response::Status(r)) => *r,
        Ok(other) => return Err(format!("unexpected answer to status: {other:?}")),
        Err(e) => return Err(e.message),
    };
    let have: Vec<String> = report.upstreams.iter().map(|u| u.url.clone()).collect();
    if have != want {
        return Err(format!(
            "the daemon reports upstreams {have:?}, not the pushed {want:?}"
        ));
    }
    let Some(up) = report.upstreams.iter().find(|u| u.up) else {
        return Err("the test query was answered, but no upstream reports up".into());
    };
    Ok(format!(
        "verified: {name} answered {} in {:.1} ms via {addr}; upstream {} ({}) is up",
        reply.rcode_name(),
        rtt.as_secs_f64() * 1000.0,
        up.name,
        up.url
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The init script's reload may take longer than one ssh command's limit (it waits for the
    /// daemon's start): it gets at least [`INIT_RELOAD_TIMEOUT`], and is not killed half-way.
    #[test]
    fn the_init_scripts_reload_outlasts_the_command_limit() {
        let dir = std::env::temp_dir().join(format!("lanveil-push-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fake = dir.join("fake-ssh");
        std::fs::write(&fake, "#!/bin/sh\nsleep 2\necho reloaded\n").unwrap();
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let mut target = SshTarget::new("r");
        target.program = fake.display().to_string();
        target.command_timeout = Duration::from_secs(1);
        let opts = PushOpts {
            target,
            remote_config: "/etc/config/lanveil".into(),
            lanveil: "/usr/sbin/lanveil".into(),
            control: "/var/run/lanveil/daemon/control.sock".into(),
            verify_addr: None,
            verify_name: "x.test".into(),
            deadline: Duration::from_secs(30),
            watchdog_grace: Duration::from_secs(30),
            no_reload: false,
            replace_wiring: false,
            init_script: "/etc/init.d/lanveil".into(),
        };
        let mut steps = Vec::new();
        let r = reload_wiring(
            &opts,
            &["listen".to_string()],
            "/etc/config/lanveil.bak",
            &mut steps,
        );
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(r.is_ok(), "{r:?}");
    }

    /// The package's shipped configuration (openwrt/lanveil/files/lanveil.config), abridged.
    const ROUTER: &str = "config lanveil 'main'\n\tlist listen '127.0.0.1:5453'\n\toption user 'lanveil'\n\toption state_file '/etc/lanveil/daemon/state'\n\toption control_socket '/var/run/lanveil/daemon/control.sock'\n\nconfig upstream 'quad9'\n\toption url 'tls://9.9.9.9:853#dns.quad9.net'\n\nconfig openwrt 'openwrt'\n\toption dnsmasq '1'\n";

    #[test]
    fn push_refuses_a_config_init_file_over_the_package_config() {
        let presets = crate::presets::Presets::builtin().unwrap();
        let spec = crate::config_cmd::InitSpec {
            preset: Some(presets.get("adguard").unwrap().clone()),
            ..Default::default()
        };
        let (fresh, _) = crate::config_cmd::init_document(&spec).unwrap();
        let drift = wiring_drift(ROUTER.as_bytes(), fresh.as_bytes());
        let all = drift.join("\n");
        for want in [
            "changes listen from '127.0.0.1:5453' to '127.0.0.1:5353'",
            "drops option control_socket '/var/run/lanveil/daemon/control.sock'",
            "drops option state_file '/etc/lanveil/daemon/state'",
            "drops option user 'lanveil'",
            "drops the 'openwrt' section",
        ] {
            assert!(all.contains(want), "{want}: {all}");
        }
        // The router's own file, with another upstream: nothing lost.
        let edited = ROUTER.replace(
            "tls://9.9.9.9:853#dns.quad9.net",
            "tls://1.1.1.1#one.one.one.one",
        );
        assert_eq!(
            wiring_drift(ROUTER.as_bytes(), edited.as_bytes()),
            Vec::<String>::new()
        );
        let moved = ROUTER.replace("/var/run/lanveil/daemon/control.sock", "/tmp/c.sock");
        assert_eq!(
            wiring_drift(ROUTER.as_bytes(), moved.as_bytes()),
            vec!["changes option control_socket from '/var/run/lanveil/daemon/control.sock' to '/tmp/c.sock'".to_string()]
        );
        // Adding wiring the router lacks is no loss; an unreadable live file has nothing to keep.
        assert_eq!(
            wiring_drift(fresh.as_bytes(), ROUTER.as_bytes()),
            vec![
                "changes listen from '127.0.0.1:5353' to '127.0.0.1:5453' (dnsmasq forwards to the old address)"
                    .to_string()
            ]
        );
        assert!(wiring_drift(b"garbage", fresh.as_bytes()).is_empty());
        // The refusal points at the file with the router's wiring.
        let msg = refusal("router", "/etc/config/lanveil", "lanveil.conf", &drift);
        assert!(
            msg.starts_with(
                "not pushed (nothing was changed): compared with router:/etc/config/lanveil, lanveil.conf\n  - changes listen"
            ),
            "{msg}"
        );
        assert!(
            msg.contains("lanveil-ctl config init --openwrt --preset ID (or --upstream URL) --file lanveil.conf --force. Or copy"),
            "{msg}"
        );
        assert!(msg.contains("--replace-wiring"), "{msg}");
        assert!(!msg.contains("openwrt.KEY"), "{msg}");
    }

    /// The package's file as an owner tuned it on the router: a guest zone captured, DoT blocked.
    fn tuned_router() -> String {
        let package = crate::config_cmd::OPENWRT_PACKAGE_CONFIG;
        let tuned = package
            .replace(
                "\tlist force_dns_zone 'lan'\n",
                "\tlist force_dns_zone 'lan'\n\tlist force_dns_zone 'guest'\n",
            )
            .replace("option block_dot '0'", "option block_dot '1'");
        assert_ne!(tuned, package);
        tuned
    }

    fn init_openwrt(set: &[(&str, &str)]) -> String {
        let presets = crate::presets::Presets::builtin().unwrap();
        crate::config_cmd::init_document(&crate::config_cmd::InitSpec {
            openwrt: true,
            preset: Some(presets.get("quad9").unwrap().clone()),
            set: set
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
            ..Default::default()
        })
        .unwrap()
        .0
    }

    #[test]
    fn wiring_drift_compares_the_openwrt_section_option_by_option() {
        let router = tuned_router();
        // The README recipe: `config init --openwrt` has the package's default openwrt section.
        let fresh = init_openwrt(&[]);
        let drift = wiring_drift(router.as_bytes(), fresh.as_bytes());
        assert_eq!(
            drift,
            vec![
                "changes openwrt option block_dot from '1' to '0'".to_string(),
                "drops openwrt list force_dns_zone 'guest'".to_string(),
            ],
            "{fresh}"
        );
        let msg = refusal("router", "/etc/config/lanveil", "lanveil.conf", &drift);
        assert!(
            msg.contains("  - drops openwrt list force_dns_zone 'guest'\npush replaces the whole file. To keep the router's settings, copy each one listed from its file (ssh router cat /etc/config/lanveil) into lanveil.conf: lanveil-ctl config set --file lanveil.conf openwrt.KEY VALUE..."),
            "{msg}"
        );
        // `config init --openwrt` cannot help with these: it is not suggested.
        assert!(!msg.contains("config init"), "{msg}");
        assert!(msg.ends_with("pass --replace-wiring to push it as it is (then the router's init script is reloaded after the daemon, so the new wiring takes effect at once)."), "{msg}");

        // Equal sections: no drift, whatever the order of options and of list values.
        let same = init_openwrt(&[("openwrt.block_dot", "1")]).replace(
            "\tlist force_dns_zone 'lan'\n",
            "\tlist force_dns_zone 'guest'\n\tlist force_dns_zone 'lan'\n",
        );
        assert!(same.contains("'guest'"), "{same}");
        assert_eq!(
            wiring_drift(router.as_bytes(), same.as_bytes()),
            Vec::<String>::new()
        );
        assert_eq!(
            wiring_changes(Some(router.as_bytes()), same.as_bytes()),
            Vec::<String>::new()
        );
        // One option changed: one line; an added option or list value is reported too.
        let changed = router.replace("option start_timeout '10'", "option start_timeout '20'");
        assert_eq!(
            wiring_drift(router.as_bytes(), changed.as_bytes()),
            vec!["changes openwrt option start_timeout from '10' to '20'".to_string()]
        );
        let fewer = router.replace("\toption canary_domains '1'\n", "");
        assert_eq!(
            wiring_drift(router.as_bytes(), fewer.as_bytes()),
            vec!["drops openwrt option canary_domains '1'".to_string()]
        );
        assert_eq!(
            wiring_drift(fewer.as_bytes(), router.as_bytes()),
            vec!["adds openwrt option canary_domains '1'".to_string()]
        );
        let more = router.replace(
            "\tlist force_dns_zone 'guest'\n",
            "\tlist force_dns_zone 'guest iot'\n",
        );
        assert_eq!(
            wiring_drift(router.as_bytes(), more.as_bytes()),
            vec!["adds openwrt list force_dns_zone 'iot'".to_string()]
        );
    }

    #[test]
    fn wiring_drift_covers_the_init_scripts_keys_of_the_main_section() {
        let router = tuned_router().replace(
            "#option captive_portal_uri 'https://router.lan/capport'",
            "option captive_portal_uri 'https://router.lan/capport'",
        );
        let fresh = init_openwrt(&[("openwrt.block_dot", "1")]).replace(
            "\tlist force_dns_zone 'lan'\n",
            "\tlist force_dns_zone 'lan'\n\tlist force_dns_zone 'guest'\n",
        );
        let drift = wiring_drift(router.as_bytes(), fresh.as_bytes());
        assert_eq!(
            drift,
            vec!["drops option captive_portal_uri 'https://router.lan/capport'".to_string()]
        );
        assert_eq!(
            wiring_changes(Some(router.as_bytes()), fresh.as_bytes()),
            drift
        );
    }

    #[test]
    fn wiring_changes_name_what_the_init_script_must_apply() {
        let router = tuned_router();
        // A router file without an openwrt section: adding one loses nothing, but is a change.
        let bare: String = router[..router.find("config openwrt").unwrap()].to_string();
        assert_eq!(
            wiring_drift(bare.as_bytes(), router.as_bytes()),
            Vec::<String>::new()
        );
        assert_eq!(
            wiring_changes(Some(bare.as_bytes()), router.as_bytes()),
            vec!["adds an 'openwrt' section".to_string()]
        );
        assert_eq!(
            wiring_changes(Some(router.as_bytes()), bare.as_bytes()),
            vec!["drops the 'openwrt' section".to_string()]
        );
        assert_eq!(
            wiring_changes(Some(bare.as_bytes()), bare.as_bytes()),
            Vec::<String>::new()
        );
        let fresh = init_openwrt(&[]);
        assert_eq!(
            wiring_changes(Some(router.as_bytes()), fresh.as_bytes()),
            wiring_drift(router.as_bytes(), fresh.as_bytes())
        );
        // Nothing known about the router's file: reload to be sure.
        assert_eq!(wiring_changes(None, router.as_bytes()).len(), 1);
        assert_eq!(wiring_changes(Some(b"garbage"), router.as_bytes()).len(), 1);
    }

    #[test]
    fn config_init_openwrt_pushes_over_the_real_package_config() {
        let package = crate::config_cmd::OPENWRT_PACKAGE_CONFIG;
        let presets = crate::presets::Presets::builtin().unwrap();
        let (fresh, _) = crate::config_cmd::init_document(&crate::config_cmd::InitSpec {
            openwrt: true,
            preset: Some(presets.get("adguard").unwrap().clone()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            wiring_drift(package.as_bytes(), fresh.as_bytes()),
            Vec::<String>::new(),
            "{fresh}"
        );
        // While the generic file is refused over it, as over the abridged copy.
        let (generic, _) = crate::config_cmd::init_document(&crate::config_cmd::InitSpec {
            preset: Some(presets.get("adguard").unwrap().clone()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            wiring_drift(package.as_bytes(), generic.as_bytes()).len(),
            5
        );
    }
}
