//! An OpenWrt `.ipk` without the SDK, for opkg-based releases (23.05, 24.10).
//!
//! Format (OpenWrt `scripts/ipkg-build`, opkg `libbb/unarchive.c`): a gzip'd tar holding
//! `./debian-binary` (`2.0`), `./data.tar.gz` and `./control.tar.gz`, in that order. Not an `ar`
//! archive: OpenWrt's opkg rejects Debian-style packages.
//!
//! Inputs, so the SDK build and this builder cannot drift apart:
//! - `openwrt/lanveil/Makefile`: version, release, license, maintainer, section, URL, depends,
//!   `Require-User` (from `USERID`), description and the `postinst`/`prerm` bodies;
//! - `openwrt/lanveil/layout.txt`: which file goes where, with which mode, and which are conffiles;
//! - `target/board/<profile>/lanveil`: the binary, whose ELF machine must match the profile.
//!
//! Reproducibility: entries sorted by path, uid/gid 0 with no user/group names, one mtime for
//! everything (`SOURCE_DATE_EPOCH`, else the last commit's time, else 0), gzip without a name or
//! timestamp. The same inputs give the same bytes.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use flate2::{Compression, GzBuilder};

use crate::cross;
use crate::error::Error;
use crate::profile::Profile;

/// The package directory inside the repository.
pub fn pkg_dir(root: &Path) -> PathBuf {
    root.join("openwrt").join("lanveil")
}

/// `KEY:=VALUE` assignments (first one wins, inside `define` blocks too) and
/// `define NAME … endef` bodies of a Makefile.
#[derive(Debug, Default)]
pub struct Makefile {
    pub vars: BTreeMap<String, String>,
    pub defines: BTreeMap<String, String>,
}

impl Makefile {
    pub fn parse(text: &str) -> Self {
        let mut mk = Self::default();
        let mut current: Option<(String, String)> = None;
        for line in text.lines() {
            if let Some((name, body)) = current.as_mut() {
                if line.trim() == "endef" {
                    mk.defines
                        .entry(std::mem::take(name))
                        .or_insert_with(|| std::mem::take(body));
                    current = None;
                    continue;
                }
                body.push_str(line);
                body.push('\n');
            }
            // Assignments count inside defines too (`Package/<name>` holds SECTION, DEPENDS, …).
            if let Some(name) = line.strip_prefix("define ") {
                current = Some((name.trim().to_owned(), String::new()));
            } else if let Some((k, v)) = line.split_once(":=") {
                let k = k.trim();
                if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    mk.vars
                        .entry(k.to_owned())
                        .or_insert_with(|| v.trim().to_owned());
                }
            }
        }
        mk
    }

    fn var(&self, path: &Path, key: &str) -> Result<&str, Error> {
        self.vars
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| Error::package(path, format!("{key}:= missing")))
    }

    fn define(&self, path: &Path, name: &str) -> Result<&str, Error> {
        self.defines
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| Error::package(path, format!("define {name} missing")))
    }
}

/// One line of `layout.txt`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Source relative to the package dir, or `@binary`.
    pub source: String,
    /// Absolute install path.
    pub dest: String,
    /// Permission bits.
    pub mode: u32,
    /// Listed in `conffiles`.
    pub conffile: bool,
}

/// Parses `layout.txt`: `SOURCE DEST MODE [conffile]` per line, `#` comments.
pub fn parse_layout(path: &Path, text: &str) -> Result<Vec<Entry>, Error> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let err = |m: &str| Error::package(path, format!("line {}: {m}", i + 1));
        let f: Vec<&str> = line.split_whitespace().collect();
        let (source, dest, mode, conffile) = match f.as_slice() {
            [s, d, m] => (s, d, m, false),
            [s, d, m, "conffile"] => (s, d, m, true),
            _ => return Err(err("expected SOURCE DEST MODE [conffile]")),
        };
        if !dest.starts_with('/')
            || dest.ends_with('/')
            || dest.contains("//")
            || dest.contains("/../")
        {
            return Err(err("DEST must be an absolute file path"));
        }
        let mode = u32::from_str_radix(mode, 8)
            .ok()
            .filter(|m| *m <= 0o7777)
            .ok_or_else(|| err("MODE must be octal"))?;
        out.push(Entry {
            source: (*source).to_owned(),
            dest: (*dest).to_owned(),
            mode,
            conffile,
        });
    }
    if out.is_empty() {
        return Err(Error::package(path, "no entries"));
    }
    Ok(out)
}

/// A minimal ustar writer: regular files and directories, numeric owner 0:0.
struct Tar {
    buf: Vec<u8>,
    mtime: u64,
}

impl Tar {
    fn new(mtime: u64) -> Self {
        Self {
            buf: Vec::new(),
            mtime,
        }
    }

    fn header(&mut self, name: &str, mode: u32, size: u64, dir: bool) -> Result<(), String> {
        let mut h = [0u8; 512];
        if name.len() > 99 {
            return Err(format!("{name}: path too long for ustar"));
        }
        h[..name.len()].copy_from_slice(name.as_bytes());
        put_octal(&mut h[100..108], u64::from(mode));
        put_octal(&mut h[108..116], 0);
        put_octal(&mut h[116..124], 0);
        put_octal(&mut h[124..136], size);
        put_octal(&mut h[136..148], self.mtime);
        h[156] = if dir { b'5' } else { b'0' };
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].fill(b' ');
        let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
        put_octal(&mut h[148..155], sum);
        h[155] = b' ';
        self.buf.extend_from_slice(&h);
        Ok(())
    }

    fn dir(&mut self, name: &str) -> Result<(), String> {
        self.header(name, 0o755, 0, true)
    }

    fn file(&mut self, name: &str, mode: u32, data: &[u8]) -> Result<(), String> {
        self.header(name, mode, data.len() as u64, false)?;
        self.buf.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.buf.resize(self.buf.len() + pad, 0);
        Ok(())
    }

    fn finish(mut self) -> Vec<u8> {
        self.buf.resize(self.buf.len() + 1024, 0);
        self.buf
    }
}

/// Writes `value` as zero-padded octal filling `field` except a trailing NUL.
fn put_octal(field: &mut [u8], value: u64) {
    let width = field.len() - 1;
    let s = format!("{value:0width$o}");
    let s = &s.as_bytes()[s.len().saturating_sub(width)..];
    field[..width].copy_from_slice(s);
    field[width] = 0;
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = GzBuilder::new()
        .mtime(0)
        .operating_system(3)
        .write(Vec::new(), Compression::best());
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}

/// Builds a tar of `files` (path → (mode, bytes)) including every parent directory.
fn tar_tree(files: &BTreeMap<String, (u32, Vec<u8>)>, mtime: u64) -> Result<Vec<u8>, String> {
    let mut entries: BTreeMap<String, Option<&(u32, Vec<u8>)>> = BTreeMap::new();
    entries.insert("./".to_owned(), None);
    for (path, f) in files {
        let rel = path.trim_start_matches('/');
        let mut acc = String::from("./");
        let parts: Vec<&str> = rel.split('/').collect();
        for d in &parts[..parts.len() - 1] {
            acc.push_str(d);
            acc.push('/');
            entries.entry(acc.clone()).or_insert(None);
        }
        entries.insert(format!("./{rel}"), Some(f));
    }
    let mut tar = Tar::new(mtime);
    for (name, f) in entries {
        match f {
            None => tar.dir(&name)?,
            Some((mode, data)) => tar.file(&name, *mode, data)?,
        }
    }
    Ok(tar.finish())
}

/// ELF `e_machine` (and little-endianness) expected for a triple.
fn expected_machine(triple: &str) -> Option<u16> {
    let arch = triple.split('-').next()?;
    Some(match arch {
        "aarch64" => 183,
        a if a.starts_with("arm") => 40,
        "mipsel" | "mips" => 8,
        "x86_64" => 62,
        _ => return None,
    })
}

fn check_elf(path: &Path, data: &[u8], triple: &str) -> Result<(), Error> {
    if data.len() < 20 || &data[..4] != b"\x7fELF" {
        return Err(Error::package(path, "not an ELF file"));
    }
    let machine = if data[5] == 1 {
        u16::from_le_bytes([data[18], data[19]])
    } else {
        u16::from_be_bytes([data[18], data[19]])
    };
    match expected_machine(triple) {
        Some(m) if m == machine => Ok(()),
        Some(m) => Err(Error::package(
            path,
            format!("ELF machine {machine}, expected {m} for {triple} (stale build?)"),
        )),
        None => Ok(()),
    }
}

fn source_date_epoch(root: &Path) -> u64 {
    if let Some(v) = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse().ok())
    {
        return v;
    }
    Command::new("git")
        .args(["log", "-1", "--format=%ct"])
        .current_dir(root)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(0)
}

/// `[workspace.package] version` of the root Cargo.toml.
fn workspace_version(root: &Path) -> Result<String, Error> {
    let path = root.join("Cargo.toml");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let mut in_pkg = false;
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with('[') {
            in_pkg = l == "[workspace.package]";
        } else if in_pkg
            && let Some(v) = l
                .strip_prefix("version")
                .map(str::trim_start)
                .and_then(|r| r.strip_prefix('='))
        {
            return Ok(v.trim().trim_matches('"').to_owned());
        }
    }
    Err(Error::package(&path, "[workspace.package] version missing"))
}

/// `Depends:` from the Makefile's `DEPENDS:=`: `$(…)` and `@…` conditions dropped, `+` stripped,
/// and `libc` first as the SDK adds it.
fn depends(mk_depends: &str) -> String {
    let mut out = vec!["libc".to_owned()];
    for tok in mk_depends.split_whitespace() {
        if tok.starts_with('$') || tok.starts_with('@') {
            continue;
        }
        let t = tok.trim_start_matches('+');
        if !t.is_empty() && !out.iter().any(|o| o == t) {
            out.push(t.to_owned());
        }
    }
    out.join(", ")
}

/// Writes `target/board/<profile>/lanveil_<version>_<arch>.ipk`; returns its path.
pub fn build(root: &Path, profile: &Profile) -> Result<PathBuf, Error> {
    let dir = pkg_dir(root);
    let mk_path = dir.join("Makefile");
    let mk_text = std::fs::read_to_string(&mk_path).map_err(|e| Error::io(&mk_path, e))?;
    let mk = Makefile::parse(&mk_text);
    let name = mk.var(&mk_path, "PKG_NAME")?;
    let pkg_version = mk.var(&mk_path, "PKG_VERSION")?;
    let ws_version = workspace_version(root)?;
    if pkg_version != ws_version {
        return Err(Error::package(
            &mk_path,
            format!("PKG_VERSION {pkg_version} differs from the workspace version {ws_version}"),
        ));
    }
    let version = format!("{pkg_version}-r{}", mk.var(&mk_path, "PKG_RELEASE")?);

    let layout_path = dir.join("layout.txt");
    let layout_text =
        std::fs::read_to_string(&layout_path).map_err(|e| Error::io(&layout_path, e))?;
    let layout = parse_layout(&layout_path, &layout_text)?;

    let mut files: BTreeMap<String, (u32, Vec<u8>)> = BTreeMap::new();
    for e in &layout {
        let src = if e.source == "@binary" {
            cross::binary(root, profile)
        } else {
            dir.join(&e.source)
        };
        let data = std::fs::read(&src).map_err(|err| match err.kind() {
            std::io::ErrorKind::NotFound if e.source == "@binary" => Error::Usage(format!(
                "{} not built yet; run `cargo board build {}`",
                src.display(),
                profile.name
            )),
            _ => Error::io(&src, err),
        })?;
        if e.source == "@binary" {
            check_elf(&src, &data, &profile.triple)?;
        }
        if files.insert(e.dest.clone(), (e.mode, data)).is_some() {
            return Err(Error::package(
                &layout_path,
                format!("{} installed twice", e.dest),
            ));
        }
    }
    let mtime = source_date_epoch(root);
    let data_tar = tar_tree(&files, mtime).map_err(|m| Error::package(&layout_path, m))?;

    let description = mk.define(&mk_path, &format!("Package/{name}/description"))?;
    let description: Vec<&str> = description
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let userid = mk.var(&mk_path, "USERID").unwrap_or("");
    let mut control = String::new();
    let mut field = |k: &str, v: &str| {
        if !v.is_empty() {
            control.push_str(k);
            control.push_str(": ");
            control.push_str(v);
            control.push('\n');
        }
    };
    field("Package", name);
    field("Version", &version);
    field("Depends", &depends(mk.var(&mk_path, "DEPENDS")?));
    field("Source", &format!("feeds/lanveil/{name}"));
    field("SourceName", name);
    field("License", mk.var(&mk_path, "PKG_LICENSE")?);
    field(
        "LicenseFiles",
        mk.vars.get("PKG_LICENSE_FILES").map_or("", String::as_str),
    );
    field("Section", mk.var(&mk_path, "SECTION")?);
    field("Require-User", userid);
    field("SourceDateEpoch", &mtime.to_string());
    field("URL", mk.var(&mk_path, "URL")?);
    field("Maintainer", mk.var(&mk_path, "PKG_MAINTAINER")?);
    field("Architecture", &profile.arch);
    field("Installed-Size", &data_tar.len().to_string());
    field("Description", &description.join("\n "));

    let conffiles: String = layout
        .iter()
        .filter(|e| e.conffile)
        .map(|e| format!("{}\n", e.dest))
        .collect();
    let mut ctl: BTreeMap<String, (u32, Vec<u8>)> = BTreeMap::new();
    ctl.insert("/control".into(), (0o644, control.into_bytes()));
    if !conffiles.is_empty() {
        ctl.insert("/conffiles".into(), (0o644, conffiles.into_bytes()));
    }
    // The same wrappers the SDK generates (include/package-pack.mk); default_postinst and
    // default_prerm run our `*-pkg` bodies, create Require-User, run uci-defaults and
    // enable/start or stop/disable the init script.
    let postinst = "#!/bin/sh\n[ \"${IPKG_NO_SCRIPT}\" = \"1\" ] && exit 0\n[ -s ${IPKG_INSTROOT}/lib/functions.sh ] || exit 0\n. ${IPKG_INSTROOT}/lib/functions.sh\ndefault_postinst $0 $@\n";
    let prerm = "#!/bin/sh\n[ -s ${IPKG_INSTROOT}/lib/functions.sh ] || exit 0\n. ${IPKG_INSTROOT}/lib/functions.sh\ndefault_prerm $0 $@\n";
    ctl.insert("/postinst".into(), (0o755, postinst.as_bytes().to_vec()));
    ctl.insert("/prerm".into(), (0o755, prerm.as_bytes().to_vec()));
    for script in ["postinst", "prerm"] {
        let body = mk.define(&mk_path, &format!("Package/{name}/{script}"))?;
        // Make expands `$$` to `$` when the SDK writes these bodies out.
        ctl.insert(
            format!("/{script}-pkg"),
            (0o755, body.replace("$$", "$").into_bytes()),
        );
    }
    let control_tar = tar_tree(&ctl, mtime).map_err(|m| Error::package(&mk_path, m))?;

    let mut outer = Tar::new(mtime);
    let pack = |outer: &mut Tar| -> Result<(), String> {
        outer.file("./debian-binary", 0o644, b"2.0\n")?;
        outer.file("./data.tar.gz", 0o644, &gzip(&data_tar))?;
        outer.file("./control.tar.gz", 0o644, &gzip(&control_tar))
    };
    pack(&mut outer).map_err(|m| Error::package(&mk_path, m))?;
    let ipk = gzip(&outer.finish());

    let out = cross::out_dir(root, profile).join(format!("{name}_{version}_{}.ipk", profile.arch));
    std::fs::write(&out, ipk).map_err(|e| Error::io(&out, e))?;
    println!("ipk: {}", out.display());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makefile_vars_and_defines() {
        let mk = Makefile::parse(
            "PKG_NAME:=lanveil\ndefine Package/x\n  SECTION:=net\nendef\nX:=a\nX:=b\ndefine Package/x/prerm\n#!/bin/sh\nexit 0\nendef\n",
        );
        assert_eq!(mk.vars["PKG_NAME"], "lanveil");
        assert_eq!(mk.vars["SECTION"], "net");
        assert_eq!(mk.vars["X"], "a");
        assert_eq!(mk.defines["Package/x/prerm"], "#!/bin/sh\nexit 0\n");
    }

    #[test]
    fn depends_drops_make_conditions() {
        assert_eq!(
            depends("$(RUST_ARCH_DEPENDS) +kmod-nft-nat @IPV6 +kmod-nft-fib"),
            "libc, kmod-nft-nat, kmod-nft-fib"
        );
    }

    /// The daemon cannot start without a CA bundle (it verifies upstream certificates against
    /// /etc/ssl/certs/ca-certificates.crt): the feed Makefile and so the off-SDK ipk depend on
    /// OpenWrt's `ca-bundle`.
    #[test]
    fn shipped_depends_include_ca_bundle() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mk_path = pkg_dir(&root).join("Makefile");
        let mk = Makefile::parse(&std::fs::read_to_string(&mk_path).unwrap());
        let deps = depends(mk.var(&mk_path, "DEPENDS").unwrap());
        assert!(
            deps.split(", ").any(|d| d == "ca-bundle"),
            "Depends: {deps}"
        );
    }

    #[test]
    fn layout_rejects_relative_dest() {
        let e = parse_layout(Path::new("l"), "files/a etc/a 0644\n").unwrap_err();
        assert!(e.to_string().contains("absolute"), "{e}");
        let ok =
            parse_layout(Path::new("l"), "# c\nfiles/a /etc/config/a 0600 conffile\n").unwrap();
        assert_eq!(
            ok,
            vec![Entry {
                source: "files/a".into(),
                dest: "/etc/config/a".into(),
                mode: 0o600,
                conffile: true
            }]
        );
    }

    #[test]
    fn tar_header_checksum_and_layout() {
        let mut files = BTreeMap::new();
        files.insert("/usr/sbin/x".to_owned(), (0o755, b"hello".to_vec()));
        let t = tar_tree(&files, 1_700_000_000).unwrap();
        // ./ , ./usr/ , ./usr/sbin/ , ./usr/sbin/x (+1 data block) , 2 end blocks
        assert_eq!(t.len(), 512 * 7);
        let names: Vec<&str> = [0, 512, 1024, 1536]
            .iter()
            .map(|&o| {
                std::str::from_utf8(&t[o..o + 100])
                    .unwrap()
                    .trim_end_matches('\0')
            })
            .collect();
        assert_eq!(names, ["./", "./usr/", "./usr/sbin/", "./usr/sbin/x"]);
        let h = &t[1536..2048];
        let mut sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
        sum -= h[148..156].iter().map(|&b| u64::from(b)).sum::<u64>();
        sum += 8 * u64::from(b' ');
        let stored = u64::from_str_radix(std::str::from_utf8(&h[148..154]).unwrap(), 8).unwrap();
        assert_eq!(sum, stored);
    }

    #[test]
    fn elf_machine_is_checked() {
        let mut elf = vec![0u8; 64];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[5] = 1;
        elf[18..20].copy_from_slice(&183u16.to_le_bytes());
        assert!(check_elf(Path::new("x"), &elf, "aarch64-unknown-linux-musl").is_ok());
        assert!(check_elf(Path::new("x"), &elf, "mipsel-unknown-linux-musl").is_err());
    }
}
