//! Changing the owner's files without changing what they are: `config set`/`unset` edit the UCI text
//! in place (the owner's comments, blank lines and quoting stay; only the statements of the changed
//! key or section are rewritten, in the form `uci export` writes), and every write replaces the file
//! atomically while keeping its permission bits and owner, and writes through a symlink to the file
//! it points to.
//!
//! An in-place edit is used only when the edited text reads back (with the daemon's UCI reader) as
//! exactly the document the change produced; otherwise the caller writes the whole document anew.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use lanveil_config::uci::{self, Document, Section};

use crate::error::{Error, Result, io_ctx};

/// What `config set`/`unset` changed in a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// The values of `key` in section `section` (the same index before and after) were replaced or
    /// removed.
    Key {
        /// Section index.
        section: usize,
        /// The key.
        key: String,
    },
    /// A section was added at `section` (index in the new document).
    Added {
        /// Section index.
        section: usize,
    },
    /// Section `section` (index in the old document) was removed.
    Removed {
        /// Section index.
        section: usize,
    },
}

/// Where the statement that starts at byte `start` (a line start) ends: past its newline, or past
/// the newline of the last line it continues onto (a quoted value spanning lines, a `\` at the end
/// of a line outside single quotes), or past a comment ending it.
fn statement_end(s: &[u8], start: usize) -> usize {
    #[derive(PartialEq)]
    enum Quote {
        Out,
        Single,
        Double,
    }
    let mut q = Quote::Out;
    let mut i = start;
    while let Some(&c) = s.get(i) {
        match q {
            Quote::Out => match c {
                b'\n' => return i + 1,
                b'\'' => q = Quote::Single,
                b'"' => q = Quote::Double,
                // The next octet is taken as it is (a newline: the statement goes on).
                b'\\' => i += 1,
                b'#' => {
                    return s[i..]
                        .iter()
                        .position(|&b| b == b'\n')
                        .map_or(s.len(), |k| i + k + 1);
                }
                _ => {}
            },
            Quote::Single => {
                if c == b'\'' {
                    q = Quote::Out;
                }
            }
            Quote::Double => match c {
                b'"' => q = Quote::Out,
                b'\\' => i += 1,
                _ => {}
            },
        }
        i += 1;
    }
    s.len()
}

/// A document's meaning, line numbers aside.
type Shape<'a> = Vec<(&'a str, Option<&'a str>, Vec<(&'a str, &'a str, bool)>)>;

fn shape(doc: &Document) -> Shape<'_> {
    doc.sections
        .iter()
        .map(|s| {
            (
                s.ty.as_str(),
                s.name.as_deref(),
                s.values
                    .iter()
                    .map(|v| (v.key.as_str(), v.value.as_str(), v.is_list))
                    .collect(),
            )
        })
        .collect()
}

fn section_text(s: &Section) -> String {
    uci::write(&Document {
        sections: vec![s.clone()],
    })
}

/// `original` (the text `before` was read from) with `edit` made in place, so that it reads back as
/// `after`; `None` when that cannot be done here (the caller then writes `after` as a whole).
pub fn edit_text(
    original: &str,
    before: &Document,
    after: &Document,
    edit: &Edit,
) -> Option<String> {
    let s = original.as_bytes();
    let mut starts = vec![0usize];
    starts.extend(
        s.iter()
            .enumerate()
            .filter(|&(_, &b)| b == b'\n')
            .map(|(i, _)| i + 1),
    );
    let start_of = |line: u32| -> Option<usize> {
        starts
            .get(usize::try_from(line).ok()?.checked_sub(1)?)
            .copied()
            .filter(|&at| at < s.len())
    };
    let span = |line: u32| start_of(line).map(|a| (a, statement_end(s, a)));
    // Past the last statement of a section (its `config` line or its last value).
    let section_end = |sec: &Section| -> Option<usize> {
        let mut end = span(sec.line)?.1;
        for v in &sec.values {
            end = end.max(span(v.line)?.1);
        }
        Some(end)
    };
    // (start, end, replacement), not overlapping.
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    match edit {
        Edit::Key { section, key } => {
            let old = before.sections.get(*section)?;
            let new = after.sections.get(*section)?;
            let text: String = new
                .values
                .iter()
                .filter(|v| &v.key == key)
                .map(|v| {
                    format!(
                        "\t{} {} {}\n",
                        if v.is_list { "list" } else { "option" },
                        v.key,
                        uci::quote(&v.value)
                    )
                })
                .collect();
            let spans = old
                .values
                .iter()
                .filter(|v| &v.key == key)
                .map(|v| span(v.line))
                .collect::<Option<Vec<_>>>()?;
            match spans.split_first() {
                Some((&(a, b), rest)) => {
                    edits.push((a, b, text));
                    edits.extend(rest.iter().map(|&(a, b)| (a, b, String::new())));
                }
                None => {
                    let at = section_end(old)?;
                    edits.push((at, at, text));
                }
            }
        }
        Edit::Added { section } => {
            let text = section_text(after.sections.get(*section)?);
            match before.sections.first() {
                Some(first) if *section == 0 => {
                    let at = start_of(first.line)?;
                    edits.push((at, at, format!("{text}\n")));
                }
                _ => {
                    let mut lead = String::new();
                    if !original.is_empty() && !original.ends_with('\n') {
                        lead.push('\n');
                    }
                    if !original.trim().is_empty() {
                        lead.push('\n');
                    }
                    edits.push((s.len(), s.len(), format!("{lead}{text}")));
                }
            }
        }
        Edit::Removed { section } => {
            let old = before.sections.get(*section)?;
            edits.push((start_of(old.line)?, section_end(old)?, String::new()));
        }
    }
    edits.sort_by_key(|e| e.0);
    let mut out = String::with_capacity(original.len() + 128);
    let mut at = 0;
    for (a, b, text) in edits {
        if a < at {
            return None;
        }
        out.push_str(original.get(at..a)?);
        out.push_str(&text);
        at = b;
    }
    out.push_str(original.get(at..)?);
    let back = uci::parse(&out).ok()?;
    (shape(&back) == shape(after)).then_some(out)
}

/// The file a path names, through symlinks (a dangling one too: its target is where a write goes).
fn resolve(path: &Path) -> Result<PathBuf> {
    let mut cur = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                let to = io_ctx(
                    std::fs::read_link(&cur),
                    format!("cannot read the symlink {}", cur.display()),
                )?;
                cur = match cur.parent() {
                    Some(dir) if to.is_relative() => dir.join(to),
                    _ => to,
                };
            }
            _ => return Ok(cur),
        }
    }
    Err(Error::failed(format!(
        "{}: too many levels of symbolic links",
        path.display()
    )))
}

/// Replaces `path` (through symlinks) with `contents` atomically: a temporary file next to the target,
/// with the target's permission bits and owner when it exists, renamed over it.
pub fn write_file(path: &str, contents: &[u8]) -> Result<()> {
    let target = resolve(Path::new(path))?;
    let existing = std::fs::metadata(&target).ok();
    replace(&target, contents, existing.as_ref())
}

/// Writes `contents` to `path` itself (a symlink there is replaced, not followed), atomically, with
/// the permission bits and owner of `like` when given.
pub fn replace(path: &Path, contents: &[u8], like: Option<&std::fs::Metadata>) -> Result<()> {
    let Some(name) = path.file_name() else {
        return Err(Error::usage(format!("{}: not a file path", path.display())));
    };
    let tmp = path.with_file_name(format!(
        ".{}.{}.lanveil-ctl.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = write_new(&tmp, contents, like).and_then(|()| {
        io_ctx(
            std::fs::rename(&tmp, path),
            format!("cannot replace {}", path.display()),
        )
    });
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Creates `tmp` (never through an existing file or link) with `contents`, synced.
fn write_new(tmp: &Path, contents: &[u8], like: Option<&std::fs::Metadata>) -> Result<()> {
    let what = format!("cannot write {}", tmp.display());
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
        // No wider than the original while it is being written.
        options.mode(like.map_or(0o666, |m| m.mode() & 0o777));
    }
    let mut f = io_ctx(options.open(tmp), &what)?;
    #[cfg(unix)]
    if let Some(m) = like {
        use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
        // The owner first (a chown clears set-id bits), best effort: only root may give a file away.
        let _ = std::os::unix::fs::fchown(&f, Some(m.uid()), Some(m.gid()));
        io_ctx(
            f.set_permissions(std::fs::Permissions::from_mode(m.mode() & 0o7777)),
            &what,
        )?;
    }
    #[cfg(not(unix))]
    if let Some(m) = like {
        io_ctx(f.set_permissions(m.permissions()), &what)?;
    }
    io_ctx(f.write_all(contents), &what)?;
    io_ctx(f.sync_all(), &what)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{set_key, unset_key};

    const FILE: &str = "# my router: keep this\n\
        config lanveil 'main'\n\
        \tlist listen '127.0.0.1:5453' # LAN only\n\
        \t# slow link\n\
        \toption query_timeout_ms '2000'\n\
        \n\
        # the one I pay for\n\
        config upstream 'q'\n\
        \toption url \"tls://9.9.9.9:853#dns.quad9.net\"\n\
        \toption note 'two\n\
        lines'\n\
        \n\
        config upstream 'old'\n\
        \toption url 'tls://192.0.2.1#x.example'\n\
        # end\n";

    /// `change` applied to `file` in place, when the result reads back as the changed document.
    fn edit_of(file: &str, change: impl FnOnce(&mut Document) -> Edit) -> Option<String> {
        let before = uci::parse(file).unwrap();
        let mut after = before.clone();
        let e = change(&mut after);
        edit_text(file, &before, &after, &e)
    }

    /// Applies `change` to FILE in place; the result must read back as the changed document.
    fn edited(change: impl FnOnce(&mut Document) -> Edit) -> String {
        edit_of(FILE, change).unwrap()
    }

    /// Sets `log_level` to `debug`.
    fn debug_log(d: &mut Document) -> Edit {
        set_key(d, "log_level", &["debug"]).unwrap()
    }

    #[test]
    fn set_and_unset_edit_in_place() {
        let text = edited(|d| set_key(d, "query_timeout_ms", &["1500"]).unwrap());
        assert_eq!(
            text,
            FILE.replace(
                "\toption query_timeout_ms '2000'\n",
                "\toption query_timeout_ms '1500'\n"
            )
        );
        let text = edited(debug_log);
        assert_eq!(
            text,
            FILE.replace("'2000'\n", "'2000'\n\toption log_level 'debug'\n")
        );
        let text = edited(|d| set_key(d, "upstream.q.note", &["one line"]).unwrap());
        assert_eq!(text, FILE.replace("'two\nlines'", "'one line'"));
        let text =
            edited(|d| set_key(d, "upstream.new.url", &["tls://192.0.2.9#n.example"]).unwrap());
        assert_eq!(
            text,
            format!("{FILE}\nconfig upstream 'new'\n\toption url 'tls://192.0.2.9#n.example'\n")
        );
        let text = edited(|d| unset_key(d, "upstream.old").unwrap().unwrap());
        assert_eq!(
            text,
            FILE.replace(
                "config upstream 'old'\n\toption url 'tls://192.0.2.1#x.example'\n",
                ""
            )
        );
        let text = edited(|d| unset_key(d, "upstream.q.note").unwrap().unwrap());
        assert_eq!(text, FILE.replace("\toption note 'two\nlines'\n", ""));
        // A main section where there was none: before the first section, after the comments.
        let file = "# top\nconfig upstream 'q'\n\toption url 'tls://9.9.9.9#dns.quad9.net'\n";
        assert_eq!(
            edit_of(file, debug_log).unwrap(),
            format!(
                "# top\nconfig lanveil 'main'\n\toption log_level 'debug'\n\n{}",
                &file[6..]
            )
        );
    }

    #[test]
    fn an_edit_that_would_read_back_differently_is_not_made() {
        // `option KEY ''` after the section's last value removes KEY again where it is read.
        let file = "config lanveil 'main'\n\toption log_level ''\n";
        assert_eq!(edit_of(file, debug_log), None);
    }

    /// A group this user is in besides `primary` (`id -G`), if any.
    fn another_group(primary: u32) -> Option<u32> {
        let out = std::process::Command::new("id").arg("-G").output().ok()?;
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|g| g.parse().ok())
            .find(|&g| g != primary)
    }

    /// The atomic write keeps the file's owner, user and group (and its mode): as root, any owner
    /// (4242:4242); otherwise a group of ours other than the primary one, when there is one. Both
    /// for the file written in place of the old one and for a copy made like it (`config set`'s
    /// `.bak`).
    #[test]
    fn a_rewritten_file_keeps_its_owner() {
        use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

        use crate::test_util::{TempDir, is_root};

        let dir = TempDir::new("edit-owner");
        let path = dir.join("lanveil.conf");
        std::fs::write(&path, "config lanveil 'main'\n").unwrap();
        let created = std::fs::metadata(&path).unwrap();
        let want = if is_root(&dir) {
            (4242, 4242)
        } else if let Some(group) = another_group(created.gid()) {
            (created.uid(), group)
        } else {
            println!(
                "NOTE a_rewritten_file_keeps_its_owner: not root and in no group but {}: only \
                 checks that the owner stays {}:{} (run as root, or as a user with a \
                 supplementary group, to check that fchown gives the file its owner back)",
                created.gid(),
                created.uid(),
                created.gid()
            );
            (created.uid(), created.gid())
        };
        std::os::unix::fs::chown(&path, Some(want.0), Some(want.1)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let path = path.to_str().unwrap();
        write_file(path, b"config lanveil 'main'\n\toption log_level 'debug'\n").unwrap();
        let m = std::fs::metadata(path).unwrap();
        assert_eq!((m.uid(), m.gid()), want, "owner of the rewritten file");
        assert_eq!(m.mode() & 0o7777, 0o640);
        assert_ne!(m.ino(), created.ino(), "replaced, not written in place");
        assert!(std::fs::read_to_string(path).unwrap().contains("log_level"));
        let bak = dir.join("lanveil.conf.bak");
        replace(&bak, b"old\n", Some(&m)).unwrap();
        let b = std::fs::metadata(&bak).unwrap();
        assert_eq!(
            (b.uid(), b.gid(), b.mode() & 0o7777),
            (want.0, want.1, 0o640)
        );
    }

    #[test]
    fn statements_end_where_libuci_ends_them() {
        let s = b"\toption a 'x\ny' # c\n\toption b \"p\\\nq\"\n\toption c w\\\nz\n\tlist d 'v'\n";
        let e1 = statement_end(s, 0);
        assert_eq!(&s[..e1], b"\toption a 'x\ny' # c\n");
        let e2 = statement_end(s, e1);
        assert_eq!(&s[e1..e2], b"\toption b \"p\\\nq\"\n");
        let e3 = statement_end(s, e2);
        assert_eq!(&s[e2..e3], b"\toption c w\\\nz\n");
        assert_eq!(statement_end(s, e3), s.len());
        assert_eq!(statement_end(b"x 'unterminated", 0), 15);
    }
}
