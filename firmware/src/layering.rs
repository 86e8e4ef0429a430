//! The shell's layering, checked on its source (issue 16): only the composition root (`lib.rs`)
//! imports the driver, and the files under `firmware/src` import each other without a cycle. Tasks
//! talk to the driver through `events.rs`, which sits below both.
//!
//! The check reads every `.rs` file under `src/` at test time, drops comments and literals, and
//! collects the paths it names: `use` trees (braces expanded) and inline `crate::`/`super::`/`self::`
//! paths (and `lanveil::` in `main.rs`). A path is an edge to the deepest module file it names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Files allowed to import the driver: the composition root (and the driver itself).
const MAY_IMPORT_DRIVER: &[&str] = &["lib.rs", "driver.rs"];

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Path,
    Open,
    Close,
    Comma,
    Star,
    Other,
}

/// Tokens of `src` with comments, string and character literals removed.
fn tokens(src: &str) -> Vec<Tok> {
    let c: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        let next = c.get(i + 1).copied();
        if ch == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && next == Some('*') {
            i += 2;
            while i + 1 < c.len() && !(c[i] == '*' && c[i + 1] == '/') {
                i += 1;
            }
            i += 2;
        } else if ch == '"' {
            i += 1;
            while i < c.len() && c[i] != '"' {
                i += if c[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push(Tok::Other);
        } else if ch == '\'' {
            // A character literal ('x', '\n', '\u{..}'), else a lifetime.
            if next == Some('\\') {
                i += 2;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if c.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1;
            }
            out.push(Tok::Other);
        } else if ch.is_alphanumeric() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            // `r#ident` and raw strings do not occur in this crate; a raw string would need handling.
            out.push(Tok::Ident(word));
        } else if ch == ':' && next == Some(':') {
            out.push(Tok::Path);
            i += 2;
        } else {
            out.push(match ch {
                '{' => Tok::Open,
                '}' => Tok::Close,
                ',' => Tok::Comma,
                '*' => Tok::Star,
                c if c.is_whitespace() => {
                    i += 1;
                    continue;
                }
                _ => Tok::Other,
            });
            i += 1;
        }
    }
    out
}

/// Expands one `use` tree starting at `t[*i]` under `prefix`.
fn use_tree(t: &[Tok], i: &mut usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let mut path = prefix;
    while let Some(tok) = t.get(*i) {
        match tok {
            Tok::Ident(w) if w == "as" => {
                *i += 2;
                break;
            }
            Tok::Ident(w) => {
                path.push(w.clone());
                *i += 1;
            }
            Tok::Path | Tok::Star => *i += 1,
            Tok::Open => {
                *i += 1;
                loop {
                    if t.get(*i) == Some(&Tok::Close) {
                        *i += 1;
                        break;
                    }
                    use_tree(t, i, path.clone(), out);
                    match t.get(*i) {
                        Some(Tok::Comma) => *i += 1,
                        Some(Tok::Close) => {
                            *i += 1;
                            break;
                        }
                        _ => break,
                    }
                }
                return;
            }
            _ => break,
        }
    }
    out.push(path);
}

/// Every path `src` names that may refer to this crate's modules, each with the inline modules
/// (`mod tests { .. }`) it sits in.
fn paths(src: &str) -> Vec<(Vec<String>, Vec<String>)> {
    let t = tokens(src);
    let mut out = Vec::new();
    // Inline modules open at this point, each with the brace depth inside it.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    let mut i = 0;
    while i < t.len() {
        let within = || inline.iter().map(|(m, _)| m.clone()).collect::<Vec<_>>();
        match &t[i] {
            Tok::Ident(w) if w == "use" => {
                i += 1;
                let mut found = Vec::new();
                use_tree(&t, &mut i, Vec::new(), &mut found);
                out.extend(found.into_iter().map(|p| (within(), p)));
            }
            Tok::Ident(w) if w == "mod" => {
                if let (Some(Tok::Ident(name)), Some(Tok::Open)) = (t.get(i + 1), t.get(i + 2)) {
                    inline.push((name.clone(), depth + 1));
                }
                i += 1;
            }
            Tok::Ident(w) if t.get(i + 1) == Some(&Tok::Path) => {
                let mut path = vec![w.clone()];
                i += 1;
                while t.get(i) == Some(&Tok::Path) {
                    match t.get(i + 1) {
                        Some(Tok::Ident(next)) => path.push(next.clone()),
                        _ => break,
                    }
                    i += 2;
                }
                out.push((within(), path));
            }
            Tok::Open => {
                depth += 1;
                i += 1;
            }
            Tok::Close => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
                i += 1;
            }
            _ => i += 1,
        }
    }
    out
}

/// The module a file defines: `lib.rs` → `[]`, `a.rs` and `a/mod.rs` → `[a]`, `a/b.rs` → `[a, b]`.
fn module_of(file: &str) -> Vec<String> {
    let mut m: Vec<String> = file
        .trim_end_matches(".rs")
        .split('/')
        .map(str::to_string)
        .collect();
    if matches!(m.last().map(String::as_str), Some("lib" | "mod" | "main")) {
        m.pop();
    }
    m
}

/// File → the files it imports from (the crate's own modules only).
fn edges(files: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let modules: BTreeMap<Vec<String>, &String> = files
        .keys()
        .filter(|f| f.as_str() != "main.rs")
        .map(|f| (module_of(f), f))
        .collect();
    let mut graph = BTreeMap::new();
    for (file, src) in files {
        let mut to = BTreeSet::new();
        for (within, path) in paths(src) {
            let mut here = module_of(file);
            here.extend(within);
            let mut abs = match path.first().map(String::as_str) {
                Some("crate") if file != "main.rs" => Vec::new(),
                Some("lanveil") if file == "main.rs" => Vec::new(),
                Some("self") => here.clone(),
                Some("super") => {
                    let mut m = here.clone();
                    m.pop();
                    m
                }
                _ => continue,
            };
            let mut rest = path[1..].iter().peekable();
            while rest.peek().is_some_and(|s| s.as_str() == "super") {
                rest.next();
                abs.pop();
            }
            abs.extend(rest.cloned());
            let target = (0..=abs.len())
                .rev()
                .find_map(|n| modules.get(&abs[..n]))
                .copied();
            if let Some(target) = target
                && target != file
            {
                to.insert(target.clone());
            }
        }
        graph.insert(file.clone(), to);
    }
    graph
}

/// A cycle of imports, if any (as the files along it).
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        f: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|s| s == f) {
            let mut c = stack[at..].to_vec();
            c.push(f.to_string());
            return Some(c);
        }
        if done.contains(f) {
            return None;
        }
        stack.push(f.to_string());
        for next in graph.get(f).into_iter().flatten() {
            if let Some(c) = visit(next, graph, done, stack) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(f.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|f| visit(f, graph, &mut done, &mut Vec::new()))
}

/// The crate's sources: path under `src/` → text.
fn sources() -> BTreeMap<String, String> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<String, String>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, root, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                out.insert(rel, std::fs::read_to_string(&p).unwrap());
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeMap::new();
    walk(&root, &root, &mut out);
    out
}

fn importers_of_driver(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<&String> {
    graph
        .iter()
        .filter(|(f, to)| to.contains("driver.rs") && !MAY_IMPORT_DRIVER.contains(&f.as_str()))
        .map(|(f, _)| f)
        .collect()
}

#[test]
fn only_the_composition_root_imports_the_driver_and_there_is_no_import_cycle() {
    let files = sources();
    for f in [
        "lib.rs",
        "main.rs",
        "driver.rs",
        "events.rs",
        "upstream/dot.rs",
    ] {
        assert!(
            files.contains_key(f),
            "{f} not found: the check reads the wrong place"
        );
    }
    let graph = edges(&files);
    assert!(
        graph["lib.rs"].contains("driver.rs") && graph["listen.rs"].contains("events.rs"),
        "the check sees no imports: {graph:?}"
    );
    let bad = importers_of_driver(&graph);
    assert!(
        bad.is_empty(),
        "only lib.rs may import the driver; also: {bad:?} (send events through events.rs)"
    );
    assert_eq!(cycle(&graph), None, "import cycle under firmware/src");
}

/// The checker itself finds what it must.
#[test]
fn the_layering_check_catches_driver_imports_and_cycles() {
    let files = |list: &[(&str, &str)]| -> BTreeMap<String, String> {
        list.iter()
            .map(|(f, s)| (f.to_string(), s.to_string()))
            .collect()
    };
    let ok = files(&[
        (
            "lib.rs",
            "mod driver; mod events; use crate::driver::Driver;",
        ),
        ("driver.rs", "use crate::events::{Input, X};"),
        (
            "events.rs",
            "// crate::driver::Input in a comment\nconst S: &str = \"crate::driver\";",
        ),
        ("main.rs", "use lanveil::{cli, logging};"),
        ("cli.rs", ""),
        ("logging.rs", ""),
    ]);
    let g = edges(&ok);
    assert!(importers_of_driver(&g).is_empty(), "{g:?}");
    assert_eq!(cycle(&g), None);
    assert_eq!(
        g["main.rs"],
        BTreeSet::from(["cli.rs".into(), "logging.rs".into()])
    );

    let spellings = [
        "use crate::driver::Input;",
        "use crate::{clock, driver::Input};",
        "use crate::{driver, clock};",
        "fn f(_: crate::driver::Input) {}",
        "use super::super::driver::Input;",
        "use super::{super::driver as d};",
    ];
    for s in spellings {
        let g = edges(&files(&[
            ("lib.rs", ""),
            ("driver.rs", ""),
            ("clock.rs", ""),
            ("upstream/mod.rs", ""),
            ("upstream/dot.rs", s),
        ]));
        assert_eq!(importers_of_driver(&g), ["upstream/dot.rs"], "{s}: {g:?}");
    }

    let g = edges(&files(&[
        ("lib.rs", ""),
        ("a.rs", "use crate::b::X;"),
        ("b.rs", "fn f() { super::c::g() }"),
        ("c.rs", "use crate::{a::{self, Y}};"),
    ]));
    assert_eq!(
        cycle(&g),
        Some(vec![
            "a.rs".into(),
            "b.rs".into(),
            "c.rs".into(),
            "a.rs".into()
        ])
    );
    // `super` inside an inline module is the file's own module, not its parent.
    let g = edges(&files(&[
        ("lib.rs", "mod a; use crate::a::X;"),
        (
            "a.rs",
            "mod tests { use super::*; fn f() { super::X; } }\nfn g() { super::Y }",
        ),
    ]));
    assert_eq!(g["a.rs"], BTreeSet::from(["lib.rs".into()]));
    let g = edges(&files(&[
        ("lib.rs", "mod a; use crate::a::X;"),
        ("a.rs", "#[cfg(test)]\nmod tests {\n    use super::*;\n}\n"),
    ]));
    assert!(g["a.rs"].is_empty(), "{g:?}");
    assert_eq!(cycle(&g), None);
}
