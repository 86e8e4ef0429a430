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
//! Reproducibility: ustar headers (the `tar` crate) filled from the inputs only, entries sorted by
//! path, uid/gid 0 with no user/group names, one mtime for everything (`SOURCE_DATE_EPOCH`, else
//! the last commit's time, else 0), gzip without a name or timestamp. The same inputs give the same
//! bytes (tested below: built twice, compared, and every entry read back).

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

/// Appends one entry to a ustar archive: numeric owner 0:0 without user or group names, one
/// mtime for everything, `None` data for a directory.
///
/// The name goes into the header as given (`./`, `./usr/sbin/lanveil`): the `tar` crate's
/// `set_path` would drop the leading `./` that OpenWrt's `ipkg-build` (`tar -C DIR .`) writes and
/// tests/openwrt/test_package.sh checks, so only the name field is filled by hand.
fn append(
    tar: &mut tar::Builder<Vec<u8>>,
    name: &str,
    mode: u32,
    mtime: u64,
    data: Option<&[u8]>,
) -> Result<(), String> {
    let mut h = tar::Header::new_ustar();
    let field = &mut h.as_old_mut().name;
    // One byte stays NUL: a 100-byte name has no terminator, which some readers mishandle.
    if name.len() >= field.len() {
        return Err(format!("{name}: path too long for ustar"));
    }
    field[..name.len()].copy_from_slice(name.as_bytes());
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(mtime);
    let body = data.unwrap_or_default();
    h.set_size(body.len() as u64);
    h.set_entry_type(if data.is_some() {
        tar::EntryType::Regular
    } else {
        tar::EntryType::Directory
    });
    h.set_cksum();
    tar.append(&h, body).map_err(|e| format!("{name}: {e}"))
}

/// Builds a ustar archive of `entries` (name → (mode, bytes), `None` for a directory, mode
/// 0755) in the order given, with the two end-of-archive blocks.
fn tar_entries<'a>(
    entries: impl IntoIterator<Item = (&'a str, Option<(u32, &'a [u8])>)>,
    mtime: u64,
) -> Result<Vec<u8>, String> {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, f) in entries {
        match f {
            None => append(&mut tar, name, 0o755, mtime, None)?,
            Some((mode, data)) => append(&mut tar, name, mode, mtime, Some(data))?,
        }
    }
    tar.into_inner().map_err(|e| e.to_string())
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
    tar_entries(
        entries.iter().map(|(name, f)| {
            (
                name.as_str(),
                f.map(|(mode, data)| (*mode, data.as_slice())),
            )
        }),
        mtime,
    )
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
    crate::toolchain::workspace_package(&text)
        .map_err(|e| Error::package(&path, format!("[workspace.package] version: {e}")))?
        .version
        .ok_or_else(|| Error::package(&path, "[workspace.package] version: missing"))
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
    let binary = cross::binary(root, profile);
    let (file_name, ipk) = package(root, profile, &binary, source_date_epoch(root))?;
    let out = cross::out_dir(root, profile).join(file_name);
    std::fs::write(&out, ipk).map_err(|e| Error::io(&out, e))?;
    println!("ipk: {}", out.display());
    Ok(out)
}

/// The package's file name and bytes: the repository's feed package with `binary` as the
/// daemon, every timestamp set to `mtime`. Reads file contents only (no metadata), so the same
/// inputs give the same bytes.
fn package(
    root: &Path,
    profile: &Profile,
    binary: &Path,
    mtime: u64,
) -> Result<(String, Vec<u8>), Error> {
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
            binary.to_owned()
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

    let (data_gz, control_gz) = (gzip(&data_tar), gzip(&control_tar));
    // opkg reads the members in this order (not sorted).
    let outer = tar_entries(
        [
            ("./debian-binary", Some((0o644, &b"2.0\n"[..]))),
            ("./data.tar.gz", Some((0o644, data_gz.as_slice()))),
            ("./control.tar.gz", Some((0o644, control_gz.as_slice()))),
        ],
        mtime,
    )
    .map_err(|m| Error::package(&mk_path, m))?;
    Ok((
        format!("{name}_{version}_{}.ipk", profile.arch),
        gzip(&outer),
    ))
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
        // Octal digits, NUL-terminated (as opkg's libbb reads it: strtol(chksum, NULL, 8)).
        let field = std::str::from_utf8(&h[148..156]).unwrap();
        let digits = field.split('\0').next().unwrap();
        let stored = u64::from_str_radix(digits, 8).unwrap();
        assert_eq!(sum, stored);
        assert_eq!(
            &h[257..265],
            b"ustar\x0000",
            "POSIX ustar magic and version"
        );
    }

    /// What a reader sees in one tar: (path, entry type, mode, uid, gid, user name, group
    /// name, mtime, contents).
    type Listing = Vec<(
        String,
        tar::EntryType,
        u32,
        u64,
        u64,
        Vec<u8>,
        Vec<u8>,
        u64,
        Vec<u8>,
    )>;

    fn list(tar_bytes: &[u8]) -> Listing {
        use std::io::Read as _;
        let mut a = tar::Archive::new(tar_bytes);
        let mut out = Vec::new();
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let h = e.header().clone();
            let mut body = Vec::new();
            e.read_to_end(&mut body).unwrap();
            assert!(h.as_ustar().is_some(), "ustar header");
            out.push((
                String::from_utf8(e.path_bytes().into_owned()).unwrap(),
                h.entry_type(),
                h.mode().unwrap(),
                h.uid().unwrap(),
                h.gid().unwrap(),
                h.username_bytes().unwrap_or_default().to_vec(),
                h.groupname_bytes().unwrap_or_default().to_vec(),
                h.mtime().unwrap(),
                body,
            ));
        }
        out
    }

    fn gunzip(data: &[u8]) -> Vec<u8> {
        use std::io::Read as _;
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(data)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    fn repo_root() -> &'static Path {
        Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
    }

    /// A stand-in for the built daemon: an x86_64 ELF header and some bytes, in a file of its
    /// own (tests run in parallel).
    fn fake_binary(tag: &str) -> PathBuf {
        let mut elf = vec![0u8; 4096];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[5] = 1;
        elf[18..20].copy_from_slice(&62u16.to_le_bytes());
        for (i, b) in elf.iter_mut().enumerate().skip(64) {
            *b = (i % 251) as u8;
        }
        let dir =
            std::env::temp_dir().join(format!("lanveil-board-ipk-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("lanveil");
        std::fs::write(&p, &elf).unwrap();
        p
    }

    #[test]
    fn ipk_is_reproducible() {
        let root = repo_root();
        let profile = crate::profile::load(root, "x86_64").unwrap();
        let bin = fake_binary("repro");
        let (name, a) = package(root, &profile, &bin, 1_700_000_000).unwrap();
        assert_eq!(
            name,
            format!("lanveil_{}-r1_x86_64.ipk", env!("CARGO_PKG_VERSION"))
        );
        // A different file time on an input changes nothing: only contents are read.
        let f = std::fs::File::options().write(true).open(&bin).unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(86_400))
            .unwrap();
        drop(f);
        let (_, b) = package(root, &profile, &bin, 1_700_000_000).unwrap();
        assert!(a == b, "same inputs, different bytes");
        // gzip header: no file name, no timestamp.
        assert_eq!(&a[..8], b"\x1f\x8b\x08\x00\x00\x00\x00\x00");
        // The mtime is the only clock in it.
        let (_, c) = package(root, &profile, &bin, 1_700_000_001).unwrap();
        assert!(a != c);
        let _ = std::fs::remove_dir_all(bin.parent().unwrap());
    }

    #[test]
    fn ipk_lists_the_expected_entries_modes_and_owners() {
        const MTIME: u64 = 1_700_000_000;
        let root = repo_root();
        let profile = crate::profile::load(root, "x86_64").unwrap();
        let bin = fake_binary("list");
        let (_, ipk) = package(root, &profile, &bin, MTIME).unwrap();
        let binary = std::fs::read(&bin).unwrap();
        let _ = std::fs::remove_dir_all(bin.parent().unwrap());

        let outer = list(&gunzip(&ipk));
        let names: Vec<&str> = outer.iter().map(|e| e.0.as_str()).collect();
        // opkg's order, with the `./` prefix ipkg-build writes.
        assert_eq!(
            names,
            ["./debian-binary", "./data.tar.gz", "./control.tar.gz"]
        );
        assert_eq!(outer[0].8, b"2.0\n");
        let mut all = outer.clone();

        let data = list(&gunzip(&outer[1].8));
        let pkg = pkg_dir(root);
        let read = |f: &str| std::fs::read(pkg.join(f)).unwrap();
        let dir = |p: &str| (p.to_owned(), tar::EntryType::Directory, 0o755, Vec::new());
        let file =
            |p: &str, mode: u32, body: Vec<u8>| (p.to_owned(), tar::EntryType::Regular, mode, body);
        let want = vec![
            dir("./"),
            dir("./etc/"),
            dir("./etc/config/"),
            file("./etc/config/lanveil", 0o644, read("files/lanveil.config")),
            dir("./etc/init.d/"),
            file("./etc/init.d/lanveil", 0o755, read("files/lanveil.init")),
            file(
                "./etc/init.d/lanveil_early",
                0o755,
                read("files/lanveil.early"),
            ),
            dir("./etc/uci-defaults/"),
            file(
                "./etc/uci-defaults/90-lanveil",
                0o755,
                read("files/lanveil.defaults"),
            ),
            dir("./etc/udhcpc.user.d/"),
            file(
                "./etc/udhcpc.user.d/lanveil",
                0o644,
                read("files/lanveil.udhcpc"),
            ),
            dir("./lib/"),
            dir("./lib/upgrade/"),
            dir("./lib/upgrade/keep.d/"),
            file(
                "./lib/upgrade/keep.d/lanveil",
                0o644,
                read("files/lanveil.keep"),
            ),
            file(
                "./lib/upgrade/lanveil.sh",
                0o644,
                read("files/lanveil.upgrade"),
            ),
            dir("./usr/"),
            dir("./usr/libexec/"),
            file(
                "./usr/libexec/lanveil-guard",
                0o755,
                read("files/lanveil.guard"),
            ),
            dir("./usr/sbin/"),
            file("./usr/sbin/lanveil", 0o755, binary),
            dir("./usr/share/"),
            dir("./usr/share/lanveil/"),
            file(
                "./usr/share/lanveil/lanveil.sh",
                0o644,
                read("files/lanveil.sh"),
            ),
            file(
                "./usr/share/lanveil/presets.json",
                0o644,
                read("files/presets.json"),
            ),
        ];
        let got: Vec<_> = data
            .iter()
            .map(|e| (e.0.clone(), e.1, e.2, e.8.clone()))
            .collect();
        assert_eq!(got, want);
        all.extend(data);

        let control = list(&gunzip(&outer[2].8));
        let got: Vec<(&str, tar::EntryType, u32)> =
            control.iter().map(|e| (e.0.as_str(), e.1, e.2)).collect();
        assert_eq!(
            got,
            [
                ("./", tar::EntryType::Directory, 0o755),
                ("./conffiles", tar::EntryType::Regular, 0o644),
                ("./control", tar::EntryType::Regular, 0o644),
                ("./postinst", tar::EntryType::Regular, 0o755),
                ("./postinst-pkg", tar::EntryType::Regular, 0o755),
                ("./prerm", tar::EntryType::Regular, 0o755),
                ("./prerm-pkg", tar::EntryType::Regular, 0o755),
            ]
        );
        assert_eq!(control[1].8, b"/etc/config/lanveil\n");
        let text = String::from_utf8(control[2].8.clone()).unwrap();
        assert!(text.starts_with("Package: lanveil\n"), "{text}");
        assert!(text.contains("\nArchitecture: x86_64\n"), "{text}");
        assert!(
            text.contains(&format!("\nSourceDateEpoch: {MTIME}\n")),
            "{text}"
        );
        all.extend(control);

        // Every entry of every layer: owner 0:0 by number only, the one mtime.
        for e in &all {
            assert_eq!((e.3, e.4), (0, 0), "{}: owner", e.0);
            assert!(
                e.5.is_empty() && e.6.is_empty(),
                "{}: user/group names",
                e.0
            );
            assert_eq!(e.7, MTIME, "{}: mtime", e.0);
        }
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
