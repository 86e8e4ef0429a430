//! The `lanveil-ctl` binary's own command line: help, version and shell completions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

fn ctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lanveil-ctl"))
        .args(args)
        .output()
        .expect("lanveil-ctl runs")
}

const COMMANDS: &[&str] = &[
    "presets",
    "probe",
    "config",
    "push",
    "status",
    "leak-test",
    "completions",
];

#[test]
fn help_lists_every_command_and_exits_0() {
    let out = ctl(&["--help"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("lanveil-ctl"), "{text}");
    for c in COMMANDS {
        assert!(text.contains(&format!("\n  {c} ")), "{c} missing:\n{text}");
    }
    assert!(text.contains("Exit status: 0 ok, 1"), "{text}");
    // Every command has its own help.
    for c in COMMANDS {
        let out = ctl(&[c, "--help"]);
        assert_eq!(out.status.code(), Some(0), "{c}: {out:?}");
        assert!(
            String::from_utf8(out.stdout)
                .unwrap()
                .contains("Usage: lanveil-ctl ")
        );
    }
    let out = ctl(&["--version"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("lanveil-ctl {}\n", env!("CARGO_PKG_VERSION"))
    );
    // No command: the help, but a failing status (a script forgot its arguments).
    let out = ctl(&[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .contains("Usage: lanveil-ctl")
    );
    // Usage errors: status 2, message on stderr.
    let out = ctl(&["probe", "--no-such-option"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("--no-such-option"),
        "names the bad option"
    );
}

#[test]
fn bash_completion_is_valid_bash_and_knows_the_commands() {
    let out = ctl(&["completions", "bash"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let script = String::from_utf8(out.stdout).unwrap();
    assert!(script.contains("complete -F _lanveil__ctl"), "{script}");
    for word in COMMANDS
        .iter()
        .chain(&["--ssh-option", "--expect-egress", "--ca-file", "unpack"])
    {
        assert!(script.contains(word), "{word} missing from the completion");
    }
    // bash itself accepts it.
    let dir = std::env::temp_dir().join(format!("lanveil-ctl-completion-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("lanveil-ctl.bash");
    std::fs::write(&file, &script).unwrap();
    let check = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -e; . '{}'; complete -p lanveil-ctl",
            file.display()
        ))
        .output()
        .expect("bash runs");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(check.status.success(), "{check:?}");
    assert!(
        String::from_utf8(check.stdout)
            .unwrap()
            .contains("lanveil-ctl")
    );
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = ctl(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}: {out:?}");
        assert!(!out.stdout.is_empty(), "{shell}");
    }
    assert_eq!(ctl(&["completions", "tcsh"]).status.code(), Some(2));
}

#[test]
fn config_init_openwrt_writes_the_package_wiring() {
    let dir = std::env::temp_dir().join(format!("lanveil-ctl-init-openwrt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("x");
    let file = file.to_str().unwrap();
    let out = ctl(&[
        "config",
        "init",
        "--openwrt",
        "--preset",
        "quad9",
        "--file",
        file,
    ]);
    let text = std::fs::read_to_string(file);
    let check = ctl(&["config", "check", "--file", file]);
    let show = ctl(&["config", "show", "--json", "--file", file]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = text.unwrap();
    assert!(
        text.contains("`lanveil-ctl config init --openwrt`"),
        "{text}"
    );
    assert!(text.contains("\nconfig openwrt 'openwrt'\n"), "{text}");

    assert_eq!(check.status.code(), Some(0), "{check:?}");
    let check = String::from_utf8(check.stdout).unwrap();
    assert!(
        check.contains(": OK — listen 127.0.0.1:5453; 2 upstreams"),
        "{check}"
    );
    assert!(check.contains("tls://9.9.9.9:853#dns.quad9.net"), "{check}");
    let openwrt = check
        .lines()
        .find(|l| {
            l.trim_start()
                .starts_with("openwrt section (the init script's): ")
        })
        .unwrap_or_else(|| panic!("no openwrt line: {check}"));
    for key in [
        "dnsmasq '1'",
        "start_timeout '10'",
        "force_dns '1'",
        "force_dns_zone 'lan'",
        "block_dot '0'",
        "canary_domains '1'",
        "relay_wan_portal '1'",
    ] {
        assert!(openwrt.contains(key), "{key}: {check}");
    }

    assert_eq!(show.status.code(), Some(0), "{show:?}");
    let v: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(v["listen"], serde_json::json!(["127.0.0.1:5453"]));
    assert_eq!(v["user"], "lanveil");
    assert_eq!(v["state_file"], "/etc/lanveil/daemon/state");
    assert_eq!(v["control_socket"], "/var/run/lanveil/daemon/control.sock");
    assert_eq!(v["log_level"], "info");
    let ups = v["upstreams"].as_array().unwrap();
    assert_eq!(ups.len(), 2, "{v}");
    assert!(
        ups.iter()
            .all(|u| u["url"].as_str().unwrap().ends_with("#dns.quad9.net")),
        "{v}"
    );
}
