//! Small shared helpers: temporary directories that clean up after
//! themselves, free loopback ports, and the harness-wide default timeout.

use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Default bound for any single network exchange made by the harness.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// A directory under the system temp dir, removed (recursively) on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates a fresh, empty, uniquely named directory `<tmp>/<prefix>-<pid>-<n>-<nanos>`.
    ///
    /// # Panics
    /// If the directory cannot be created.
    pub fn new(prefix: &str) -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path =
            std::env::temp_dir().join(format!("{prefix}-{}-{n}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create temp dir {}: {e}", path.display()));
        TempDir { path }
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `self.path().join(name)`.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Writes `contents` to `name` inside the directory and returns the full path.
    ///
    /// # Panics
    /// If the file cannot be written.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.join(name);
        std::fs::write(&p, contents)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", p.display()));
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A TCP port on `ip` that was free a moment ago (bind to port 0, read the
/// port, close). Racy by nature, but fine for tests on loopback.
///
/// # Panics
/// If `ip` cannot be bound at all.
pub fn free_port(ip: IpAddr) -> u16 {
    let l = TcpListener::bind(SocketAddr::new(ip, 0))
        .unwrap_or_else(|e| panic!("cannot bind {ip}:0 to find a free port: {e}"));
    l.local_addr()
        .expect("local_addr of a bound listener")
        .port()
}

/// A port on `ip` that is currently free for both TCP and UDP (for servers
/// such as Unbound that listen on both).
///
/// # Panics
/// If no such port is found in 100 tries.
pub fn free_tcp_udp_port(ip: IpAddr) -> u16 {
    for _ in 0..100 {
        let Ok(l) = TcpListener::bind(SocketAddr::new(ip, 0)) else {
            continue;
        };
        let Ok(addr) = l.local_addr() else { continue };
        if UdpSocket::bind(addr).is_ok() {
            return addr.port();
        }
    }
    panic!("no port free for both TCP and UDP on {ip} after 100 tries");
}

/// Path of `prog` if found in `$PATH` (or as given, if it contains a slash).
pub fn find_program(prog: &str) -> Option<PathBuf> {
    if prog.contains('/') {
        let p = PathBuf::from(prog);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}

/// Path of `prog`, or a panic telling which Debian package provides it.
///
/// # Panics
/// If the program is not installed.
pub fn require_program(prog: &str, debian_package: &str) -> PathBuf {
    find_program(prog).unwrap_or_else(|| {
        panic!(
            "`{prog}` is required by the lanveil test harness but was not found in PATH; \
             install it with `apt-get install {debian_package}`"
        )
    })
}

/// Builds binary `bin` of workspace package `package` in the same profile as the running test (a no-op
/// when up to date) and returns its path. `-p lanveil-tests` is always selected too, so features unify
/// exactly as in the test build, and the variables cargo sets for the test process are dropped (a build
/// script watching one, as ring's watches `CARGO_MANIFEST_DIR`, would otherwise force a rebuild).
///
/// # Panics
/// If the build fails.
pub fn workspace_binary(package: &str, bin: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>")
        .to_path_buf();
    let mut cmd = std::process::Command::new(env!("CARGO"));
    cmd.args([
        "build",
        "-q",
        "-p",
        package,
        "-p",
        "lanveil-tests",
        "--bin",
        bin,
    ]);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let per_crate = [
        "CARGO_MANIFEST_",
        "CARGO_PKG_",
        "CARGO_CRATE_",
        "CARGO_BIN_",
        "CARGO_PRIMARY_",
        "CARGO_TARGET_TMPDIR",
        "CARGO_RUSTC_CURRENT_DIR",
    ];
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if per_crate.iter().any(|p| k.starts_with(p)) || k == "OUT_DIR" {
            cmd.env_remove(&k);
        }
    }
    let status = cmd.status().expect("cargo runs");
    assert!(status.success(), "building {bin} failed");
    let path = profile_dir.join(bin);
    assert!(path.exists(), "{} missing after build", path.display());
    path
}
