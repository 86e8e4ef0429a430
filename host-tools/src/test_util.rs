//! Helpers for the unit tests: a temporary directory, executable stand-ins (for `ssh`), who we are.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use lanveil_config::uci::Document;

use crate::config_cmd::{parse_key, set, unset};
use crate::edit::Edit;

/// A fresh directory under the system's temporary directory, removed on drop.
#[derive(Debug)]
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "lanveil-ctl-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub(crate) fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes the shell script `text` to `path`, mode 0755. Written by another process (`sh`), so no
/// thread of this test process holds it open for writing when a test runs it (that would fail with
/// "Text file busy").
pub(crate) fn write_script(path: &Path, text: &str) {
    let ok = std::process::Command::new("sh")
        .args([
            "-c",
            "printf '%s' \"$1\" > \"$2\" && chmod 755 \"$2\"",
            "sh",
        ])
        .arg(text)
        .arg(path)
        .status()
        .unwrap()
        .success();
    assert!(ok, "cannot write {}", path.display());
}

/// Whether this process runs as root: the owner of a file it creates (its effective user).
pub(crate) fn is_root(dir: &TempDir) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let probe = dir.join(".whoami");
    std::fs::write(&probe, b"").unwrap();
    let uid = std::fs::metadata(&probe).unwrap().uid();
    std::fs::remove_file(&probe).unwrap();
    uid == 0
}

/// `config set KEY VALUE…` on `doc`.
pub(crate) fn set_key(
    doc: &mut Document,
    key: &str,
    values: &[&str],
) -> crate::error::Result<Edit> {
    let values: Vec<String> = values.iter().map(|v| (*v).to_string()).collect();
    set(doc, &parse_key(key).unwrap(), &values)
}

/// `config unset KEY` on `doc`.
pub(crate) fn unset_key(doc: &mut Document, key: &str) -> crate::error::Result<Option<Edit>> {
    unset(doc, &parse_key(key).unwrap())
}
