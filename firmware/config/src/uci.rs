//! A reader and writer for the subset of UCI syntax that `/etc/config/*` files use
//! (`package`, `config TYPE ['NAME']`, `option KEY 'VALUE'`, `list KEY 'VALUE'`, `#` comments).
//!
//! Reading follows libuci's `file.c` (see [`parse`]): `'…'` is literal, `"…"` and bare words honour
//! `\` escapes, adjacent quoted/bare parts concatenate into one token, an unquoted `#` starts a comment
//! anywhere, quoted values may span lines. This module checks syntax and names only; meaning is checked
//! by [`crate::Config::from_uci`].

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write as _;

use crate::error::{Error, Reason};

/// The most bytes [`parse_bytes`] reads: real files are a few KiB, and a file is parsed on the
/// daemon's only thread.
pub const MAX_FILE_BYTES: usize = 256 * 1024;

/// A parsed UCI file: its sections in order.
///
/// As [`parse`] makes it, this is what libuci holds after loading the file: each key of a section
/// appears once, either as one `option` value or as a `list`'s values one after another, where
/// libuci has it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Document {
    /// Sections in file order.
    pub sections: Vec<Section>,
}

/// One `config TYPE ['NAME']` block (all of them, for a name that is reopened).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    /// The section type (`lanveil`, `upstream`).
    pub ty: String,
    /// The section name, if given.
    pub name: Option<String>,
    /// Line of the `config` statement.
    pub line: u32,
    /// Options and lists in libuci's order (see [`Document`]).
    pub values: Vec<Value>,
}

/// One `option` or `list` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Value {
    /// The key.
    pub key: String,
    /// The value.
    pub value: String,
    /// `true` for `list`, `false` for `option`.
    pub is_list: bool,
    /// Line of the statement that gave the value.
    pub line: u32,
}

impl Section {
    /// A label for error messages: `upstream[quad9]`, or `upstream[#2]` for anonymous sections.
    pub fn label(&self, index: usize) -> String {
        let mut s = String::new();
        match &self.name {
            Some(n) => {
                let _ = write!(s, "{}[{}]", self.ty, n);
            }
            None => {
                let _ = write!(s, "{}[#{}]", self.ty, index + 1);
            }
        }
        s
    }
}

/// Parses UCI text exactly as libuci (`file.c`, strict mode, as `uci`, LuCI and the init script
/// load it) reads it, so lanveil never acts on a file those see differently:
///
/// - section and option names are letters, digits and `_` only; types are printable ASCII without
///   spaces (`uci_validate_str`): anything else makes libuci refuse the whole file;
/// - outside quotes, `#` starts a comment even inside a word (`tls://9.9.9.9#x` is `tls://9.9.9.9`);
/// - quoted values may span lines (the newlines are part of the value), and a `\` at the end of a
///   line outside single quotes joins the next line;
/// - `c`/`o`/`l`/`p` abbreviate `config`/`option`/`list`/`package`; a second `config` with an
///   existing name reopens that section;
/// - `option KEY 'V'` replaces whatever KEY had, one value or a whole list (`uci_set`), and
///   `option KEY ''` removes KEY, as `uci set KEY=''` does; `list KEY 'V'` appends V, an earlier
///   `option KEY` value becoming the list's first one (`uci_add_list`).
///
/// Stricter than libuci (rejected with a reason, never read differently): an unquoted `;` (libuci's
/// statement separator, whose effect depends on quoting elsewhere in the word), a NUL byte, an `option`
/// with no value at all, and `config` reopening a name with another type.
pub fn parse(text: &str) -> Result<Document, Error> {
    parse_text(text.as_bytes())
}

/// Parses a file's bytes as [`parse`] does text. Comments may hold any bytes (libuci skips them);
/// anything else must be UTF-8 (the error names the line). A file of more than [`MAX_FILE_BYTES`] is
/// refused before it is parsed ([`Reason::TooLarge`], line 0).
pub fn parse_bytes(bytes: &[u8]) -> Result<Document, Error> {
    check_file_size(bytes.len() as u64)?;
    parse_text(bytes)
}

/// [`Reason::TooLarge`] for a file of `size` bytes, if it has more than [`MAX_FILE_BYTES`].
pub fn check_file_size(size: u64) -> Result<(), Error> {
    let max = MAX_FILE_BYTES as u64;
    if size > max {
        return Err(Error::new(0, "", Reason::TooLarge { size, max }));
    }
    Ok(())
}

fn parse_text(s: &[u8]) -> Result<Document, Error> {
    if let Some(at) = s.iter().position(|&b| b == 0) {
        let line = s[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        return Err(Error::new(
            u32::try_from(line).unwrap_or(u32::MAX),
            "",
            Reason::Syntax("NUL byte in the file"),
        ));
    }
    let mut p = Parser {
        s,
        pos: 0,
        lim: 0,
        next: 0,
        line: 0,
        doc: Document::default(),
        options: Vec::new(),
        names: BTreeMap::new(),
        current: None,
    };
    while p.getln() {
        p.parse_line()?;
    }
    let Parser {
        mut doc, options, ..
    } = p;
    for (section, options) in doc.sections.iter_mut().zip(options) {
        section.values = options.slots.into_iter().flatten().flatten().collect();
    }
    Ok(doc)
}

/// A section's options while it is read, as libuci keeps them: one slot per key in the order libuci
/// has them (`None` once removed: a key set again later goes to the end), and each key's slot.
#[derive(Default)]
struct Options {
    slots: Vec<Option<Vec<Value>>>,
    index: BTreeMap<String, usize>,
}

impl Options {
    /// `uci_set`: `value` replaces the key's value or list, where it is; or is added at the end.
    fn set(&mut self, value: Value) {
        match self.index.get(&value.key) {
            Some(&i) => self.slots[i] = Some(alloc::vec![value]),
            None => {
                self.index.insert(value.key.clone(), self.slots.len());
                self.slots.push(Some(alloc::vec![value]));
            }
        }
    }

    /// `uci_add_list`: appends to the key's list; an `option` value becomes the list's first one.
    fn add_list(&mut self, value: Value) {
        match self
            .index
            .get(&value.key)
            .and_then(|&i| self.slots[i].as_mut())
        {
            Some(values) => {
                // An `option` holds one value (a list, by now, may be long).
                if let [only] = values.as_mut_slice() {
                    only.is_list = true;
                }
                values.push(value);
            }
            None => {
                self.index.insert(value.key.clone(), self.slots.len());
                self.slots.push(Some(alloc::vec![value]));
            }
        }
    }

    /// `uci_delete`: the key is gone.
    fn remove(&mut self, key: &str) {
        if let Some(i) = self.index.remove(key) {
            self.slots[i] = None;
        }
    }
}

/// Names of sections and options (`uci_validate_name`): letters, digits, `_`.
pub fn is_valid_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Section types (`uci_validate_type`): printable ASCII without spaces.
pub fn is_valid_type(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic())
}

fn is_valid_package(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// C's `isspace` in the C locale.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

const NAME_RULE: &str =
    "section name must be letters, digits and '_' only (uci refuses the whole file otherwise)";
const KEY_RULE: &str =
    "option name must be letters, digits and '_' only (uci refuses the whole file otherwise)";
const SEMICOLON: &str = "unquoted ';' (uci reads it as the end of the statement): quote the value";
const NOT_UTF8: &str = "not UTF-8 (only comments may hold other bytes)";

/// One argument: its text, and whether there was one at all (`''` is present but empty).
struct Arg {
    text: String,
    present: bool,
}

/// libuci's parse context over the whole text: `[pos, lim)` is what is left of the current
/// (possibly continued) line; a comment moves `lim` back to the `#`.
struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    lim: usize,
    next: usize,
    line: u32,
    /// The sections, their values filled in at the end from `options`.
    doc: Document,
    /// Each section's options so far (same index as `doc.sections`).
    options: Vec<Options>,
    /// The index of each named section.
    names: BTreeMap<String, usize>,
    current: Option<usize>,
}

impl Parser<'_> {
    /// `uci_getln`: makes the next physical line the rest of the buffer; `false` at the end.
    fn getln(&mut self) -> bool {
        if self.next >= self.s.len() {
            self.lim = self.pos;
            return false;
        }
        self.pos = self.next;
        self.lim = self.s[self.pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(self.s.len(), |i| self.pos + i + 1);
        self.next = self.lim;
        self.line = self.line.saturating_add(1);
        true
    }

    fn at(&self, i: usize) -> u8 {
        if i < self.lim { self.s[i] } else { 0 }
    }

    fn cur(&self) -> u8 {
        self.at(self.pos)
    }

    fn err(&self, key: impl Into<String>, why: &'static str) -> Error {
        Error::new(self.line, key, Reason::Syntax(why))
    }

    fn skip_whitespace(&mut self) {
        while self.cur() != 0 && is_space(self.cur()) {
            self.pos += 1;
        }
    }

    /// `parse_backslash`: skips the `\` and takes the byte it escapes into `out`; at the end of a
    /// line, joins the next one instead.
    fn backslash(&mut self, out: &mut Vec<u8>) {
        self.pos += 1;
        let c = self.cur();
        let crlf_end = c == b'\r' && self.at(self.pos + 1) == b'\n' && self.at(self.pos + 2) == 0;
        if c == 0 || c == b'\n' || crlf_end {
            self.getln();
        } else {
            self.take(out);
        }
    }

    /// Takes the byte at the cursor into `out`.
    fn take(&mut self, out: &mut Vec<u8>) {
        out.push(self.cur());
        self.pos += 1;
    }

    /// `parse_str`'s quoted part, from the opening `quote` (`'` or `"`) to its closing one, which may
    /// be lines later. Only within `"` does `\` escape (and join lines).
    fn quoted(&mut self, out: &mut Vec<u8>, quote: u8) -> Result<(), Error> {
        let line = self.line;
        self.pos += 1;
        loop {
            match self.cur() {
                c if c == quote => {
                    self.pos += 1;
                    return Ok(());
                }
                0 => {
                    if !self.getln() {
                        let why = if quote == b'"' {
                            "unterminated \" quote"
                        } else {
                            "unterminated ' quote"
                        };
                        return Err(Error::new(line, "", Reason::Syntax(why)));
                    }
                }
                b'\\' if quote == b'"' => self.backslash(out),
                _ => self.take(out),
            }
        }
    }

    /// `next_arg` + `parse_str`: one argument, quotes and escapes resolved.
    fn next_arg(&mut self) -> Result<Arg, Error> {
        self.skip_whitespace();
        let (start, start_line) = (self.pos, self.line);
        let present = !matches!(self.cur(), 0 | b'#');
        let mut out = Vec::new();
        loop {
            match self.cur() {
                q @ (b'\'' | b'"') => self.quoted(&mut out, q)?,
                b'#' => {
                    // A comment, even inside a word: the rest of the line is gone.
                    self.lim = self.pos;
                    break;
                }
                0 => break,
                b';' => return Err(self.err("", SEMICOLON)),
                b'\\' => self.backslash(&mut out),
                _ => self.take(&mut out),
            }
            if self.cur() == 0 || is_space(self.cur()) {
                break;
            }
        }
        if self.cur() != 0 {
            self.pos += 1;
        }
        let text = String::from_utf8(out).map_err(|_| {
            // The line of the first byte that is not UTF-8 (the argument may span lines).
            let src = self.s.get(start..self.pos).unwrap_or_default();
            let line = core::str::from_utf8(src).err().map_or(self.line, |e| {
                let newlines = src[..e.valid_up_to()].iter().filter(|&&b| b == b'\n');
                let newlines = u32::try_from(newlines.count()).unwrap_or(u32::MAX);
                start_line.saturating_add(newlines)
            });
            Error::new(line, "", Reason::Syntax(NOT_UTF8))
        })?;
        Ok(Arg { text, present })
    }

    /// `assert_eol` (strict mode): nothing but an empty argument may follow.
    fn assert_eol(&mut self, key: &str, why: &'static str) -> Result<(), Error> {
        let extra = self.next_arg()?;
        if extra.text.is_empty() {
            Ok(())
        } else {
            Err(self.err(key, why))
        }
    }

    /// `uci_parse_line`: the statements of one (possibly continued) line.
    fn parse_line(&mut self) -> Result<(), Error> {
        self.skip_whitespace();
        loop {
            while matches!(self.cur(), b' ' | b'\t') {
                self.pos += 1;
            }
            if self.cur() == 0 {
                return Ok(());
            }
            let start = self.pos;
            while !matches!(self.cur(), 0 | b' ' | b'\t') {
                self.pos += 1;
            }
            let word = &self.s[start..self.pos];
            if word.first() == Some(&b'#') {
                return Ok(());
            }
            let line = self.line;
            match word {
                b"p" | b"package" => {
                    self.skip_command("'package' takes one name")?;
                    let name = self.next_arg()?;
                    if !name.present || name.text.is_empty() {
                        return Err(self.err("", "'package' takes one name"));
                    }
                    if !is_valid_package(&name.text) {
                        return Err(self.err(
                            name.text,
                            "package name must be letters, digits, '_' or '-'",
                        ));
                    }
                    self.assert_eol("", "'package' takes one name")?;
                }
                b"c" | b"config" => self.parse_config(line)?,
                b"o" | b"option" => self.parse_option(line, false)?,
                b"l" | b"list" => self.parse_option(line, true)?,
                _ => {
                    let trimmed = word.trim_ascii_end();
                    return Err(self.err(
                        "",
                        match trimmed {
                            b"config" | b"c" => "'config' takes a type and an optional name",
                            b"option" | b"o" | b"list" | b"l" => {
                                "'option' and 'list' take a key and a value"
                            }
                            b"package" | b"p" => "'package' takes one name",
                            _ => "expected 'config', 'option', 'list' or 'package'",
                        },
                    ));
                }
            }
        }
    }

    /// Steps over the separator after the command word (`uci_increase_pos`).
    fn skip_command(&mut self, why: &'static str) -> Result<(), Error> {
        if self.cur() == 0 {
            return Err(self.err("", why));
        }
        self.pos += 1;
        Ok(())
    }

    fn parse_config(&mut self, line: u32) -> Result<(), Error> {
        const USAGE: &str = "'config' takes a type and an optional name";
        self.skip_command(USAGE)?;
        let ty = self.next_arg()?;
        if ty.text.is_empty() {
            return Err(self.err("", USAGE));
        }
        if !is_valid_type(&ty.text) {
            return Err(self.err(
                ty.text,
                "section type must be printable ASCII without spaces",
            ));
        }
        let name = self.next_arg()?;
        if !name.text.is_empty() && !is_valid_name(&name.text) {
            let mut label = String::new();
            let _ = write!(label, "{}[{}]", ty.text, name.text);
            return Err(self.err(label, NAME_RULE));
        }
        self.assert_eol("", USAGE)?;
        let ty = ty.text;
        let name = Some(name.text).filter(|n| !n.is_empty());
        if let Some(n) = &name
            && let Some(&i) = self.names.get(n)
        {
            // libuci reopens a section of the same name (and, strict, refuses another type).
            if self.doc.sections[i].ty != ty {
                return Err(self.err(
                    self.doc.sections[i].label(i),
                    "a section of another type has this name already",
                ));
            }
            self.current = Some(i);
            return Ok(());
        }
        let idx = self.doc.sections.len();
        if let Some(n) = &name {
            self.names.insert(n.clone(), idx);
        }
        self.current = Some(idx);
        self.options.push(Options::default());
        self.doc.sections.push(Section {
            ty,
            name,
            line,
            values: Vec::new(),
        });
        Ok(())
    }

    fn parse_option(&mut self, line: u32, is_list: bool) -> Result<(), Error> {
        const USAGE: &str = "'option' and 'list' take a key and a value";
        let Some(idx) = self.current else {
            return Err(Error::new(line, "", Reason::OutsideSection));
        };
        self.skip_command(USAGE)?;
        let label = self.doc.sections[idx].label(idx);
        let key = self.next_arg()?;
        if key.text.is_empty() {
            return Err(self.err(label, USAGE));
        }
        let mut field = label;
        field.push('.');
        field.push_str(&key.text);
        if !is_valid_name(&key.text) {
            return Err(self.err(field, KEY_RULE));
        }
        let value = self.next_arg().map_err(|mut e| {
            if e.key.is_empty() {
                e.key.clone_from(&field);
            }
            e
        })?;
        self.assert_eol(&field, USAGE)?;
        if !value.present {
            return Err(self.err(field, USAGE));
        }
        let Some(options) = self.options.get_mut(idx) else {
            return Err(Error::new(line, "", Reason::OutsideSection));
        };
        let value = Value {
            key: key.text,
            value: value.text,
            is_list,
            line,
        };
        if is_list {
            options.add_list(value);
        } else if value.value.is_empty() {
            // `uci set KEY=''` deletes KEY; libuci reads `option KEY ''` the same way.
            options.remove(&value.key);
        } else {
            options.set(value);
        }
        Ok(())
    }
}

/// Quotes a value for writing: single quotes, with embedded `'` written as `'\''` (libuci style).
/// Inside single quotes `#`, `;`, `\`, `"` and newlines are literal, so libuci reads the value back
/// exactly.
pub fn quote(value: &str) -> String {
    let mut s = String::with_capacity(value.len() + 2);
    s.push('\'');
    for c in value.chars() {
        if c == '\'' {
            s.push_str("'\\''");
        } else {
            s.push(c);
        }
    }
    s.push('\'');
    s
}

/// Writes a document back as UCI text (tabs, single quotes), the way `uci export` does.
pub fn write(doc: &Document) -> String {
    let mut out = String::new();
    for (i, section) in doc.sections.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str("config ");
        if is_valid_name(&section.ty) {
            out.push_str(&section.ty);
        } else {
            out.push_str(&quote(&section.ty));
        }
        if let Some(name) = &section.name {
            out.push(' ');
            out.push_str(&quote(name));
        }
        out.push('\n');
        for v in &section.values {
            out.push('\t');
            out.push_str(if v.is_list { "list " } else { "option " });
            out.push_str(&v.key);
            out.push(' ');
            out.push_str(&quote(&v.value));
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn parse_sections_options_lists_and_quoting() {
        let text = "# comment\npackage lanveil\n\nconfig lanveil 'main'\n\tlist listen '127.0.0.1:53'\n\tlist listen \"[::1]:53\" # trailing\n\toption log_level info\n\nconfig upstream\n\toption url 'tls://9.9.9.9#dns.quad9.net'\n\toption note 'it'\\''s'\n";
        let doc = parse(text).unwrap();
        assert_eq!(doc.sections.len(), 2);
        let main = &doc.sections[0];
        assert_eq!(main.ty, "lanveil");
        assert_eq!(main.name.as_deref(), Some("main"));
        assert_eq!(main.line, 4);
        let vals: Vec<_> = main
            .values
            .iter()
            .map(|v| (v.key.as_str(), v.value.as_str(), v.is_list, v.line))
            .collect();
        assert_eq!(
            vals,
            vec![
                ("listen", "127.0.0.1:53", true, 5),
                ("listen", "[::1]:53", true, 6),
                ("log_level", "info", false, 7)
            ]
        );
        assert_eq!(doc.sections[1].name, None);
        assert_eq!(doc.sections[1].values[1].value, "it's");
    }

    #[test]
    fn write_then_parse_round_trips() {
        let text = "config upstream 'a'\n\toption url 'tls://1.1.1.1#x y'\n\tlist pin 'it'\\''s'\n";
        let doc = parse(text).unwrap();
        assert_eq!(write(&doc), text);
        assert_eq!(parse(&write(&doc)).unwrap(), doc);
    }

    fn value_of(text: &str) -> String {
        let doc = parse(text).unwrap();
        doc.sections[0].values[0].value.clone()
    }

    #[test]
    fn names_are_libuci_names() {
        // uci_validate_name: letters, digits, '_'. libuci refuses the whole file otherwise, so `uci
        // get` in the init script fails while lanveil would run.
        let e = parse("config upstream 'my-dns'\n\toption url 'tls://9.9.9.9#x'\n").unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (1, "upstream[my-dns]"));
        assert_eq!(e.reason, Reason::Syntax(NAME_RULE));
        for bad in ["my-key", "a.b", "k\u{e9}y"] {
            let text = alloc::format!("config lanveil 'main'\n\n\toption {bad} '1'\n");
            let e = parse(&text).unwrap_err();
            assert_eq!(e.line, 3, "{bad}");
            assert_eq!(e.key, alloc::format!("lanveil[main].{bad}"));
            assert_eq!(e.reason, Reason::Syntax(KEY_RULE));
        }
        assert!(parse("config upstream\n\tlist my-pin 'x'\n").is_err());
        assert!(parse("config lanveil 'a.b'\n").is_err());
        assert!(parse("config upstream 'my_dns2'\n\toption url_2 x\n").is_ok());
        // Types: printable ASCII without spaces (libuci's rule); the model refuses unknown ones.
        assert!(parse("config my-type\n").is_ok());
        assert!(parse("config 'my type'\n").is_err());
        assert!(parse("package lanveil-x\nconfig t\n").is_ok());
        assert!(parse("package 'a b'\n").is_err());
        assert!(is_valid_name("quad9_2") && !is_valid_name("quad9-2") && !is_valid_name(""));
    }

    #[test]
    fn hash_starts_a_comment_inside_an_unquoted_word() {
        // libuci parse_str: `case '#'` ends the string and the line, so `uci get` and LuCI see
        // `tls://9.9.9.9`; lanveil must act on the same value.
        let t = "config upstream 'q'\n\toption url tls://9.9.9.9#dns.quad9.net\n";
        assert_eq!(value_of(t), "tls://9.9.9.9");
        let t = "config upstream 'q'\n\toption url 'tls://9.9.9.9'#dns.quad9.net trailing\n";
        assert_eq!(value_of(t), "tls://9.9.9.9");
        let t = "config upstream 'q'\n\toption url \"tls://9.9.9.9#dns.quad9.net\"\n";
        assert_eq!(value_of(t), "tls://9.9.9.9#dns.quad9.net");
        let t = "config upstream 'q'\n\toption url tls://9.9.9.9\\#dns.quad9.net\n";
        assert_eq!(value_of(t), "tls://9.9.9.9#dns.quad9.net");
        // A value cut to nothing is no value.
        assert!(parse("config upstream 'q'\n\toption url #x\n").is_err());
    }

    #[test]
    fn quoted_values_span_lines_and_backslash_joins_lines() {
        let t = "config lanveil 'main'\n\toption a 'one\ntwo'\n\toption b \"x\\\ny\"\n\toption c ab\\\ncd\n\toption d 'z'\n";
        let doc = parse(t).unwrap();
        let vals: Vec<_> = doc.sections[0]
            .values
            .iter()
            .map(|v| (v.key.as_str(), v.value.as_str(), v.line))
            .collect();
        assert_eq!(
            vals,
            vec![
                ("a", "one\ntwo", 2),
                ("b", "xy", 4),
                ("c", "abcd", 6),
                ("d", "z", 8)
            ]
        );
        // Written back (single quotes, newline inside) and read again: the same values.
        let again = parse(&write(&doc)).unwrap();
        let texts = |d: &Document| -> Vec<String> {
            d.sections[0]
                .values
                .iter()
                .map(|v| v.value.clone())
                .collect()
        };
        assert_eq!(texts(&again), texts(&doc));
        assert_eq!(write(&again), write(&doc));
        let e = parse("config lanveil\n\toption a 'x\ny\n").unwrap_err();
        assert_eq!(
            (e.line, e.reason),
            (2, Reason::Syntax("unterminated ' quote"))
        );
    }

    #[test]
    fn libuci_statement_rules() {
        // Abbreviated commands, as libuci accepts them.
        let doc = parse("c upstream 'q'\n\to url 'tls://1.1.1.1#one'\n\tl pin 'p'\n").unwrap();
        assert_eq!(doc.sections[0].values.len(), 2);
        // A quoted command word is no command to libuci (strtok, not parse_str).
        assert!(parse("'config' lanveil\n").is_err());
        // Too many arguments: strict mode refuses.
        assert!(parse("config lanveil 'main' extra\n").is_err());
        assert!(parse("config lanveil\n\toption a b c\n").is_err());
        // Unquoted ';' is refused; quoted it is literal.
        let e = parse("config lanveil\n\toption a b;c\n").unwrap_err();
        assert_eq!((e.line, e.reason), (2, Reason::Syntax(SEMICOLON)));
        assert_eq!(value_of("config lanveil\n\toption a 'b;c'\n"), "b;c");
        // `option KEY ''` removes KEY (uci set KEY='').
        let doc = parse("config lanveil\n\toption a 'x'\n\toption a ''\n\toption b 'y'\n").unwrap();
        assert_eq!(doc.sections[0].values.len(), 1);
        // A second `config` with the same name reopens the section.
        let doc = parse("config upstream 'q'\n\toption url 'u'\nconfig lanveil\nconfig upstream 'q'\n\toption pin 'p'\n").unwrap();
        assert_eq!(doc.sections.len(), 2);
        assert_eq!(doc.sections[0].values.len(), 2);
        assert!(parse("config upstream 'q'\nconfig lanveil 'q'\n").is_err());
        assert!(parse("config lanveil\n\toption a 'x\0'\n").is_err());
    }

    /// `(key, value, is_list, line)` of a section's values.
    fn values(s: &Section) -> Vec<(&str, &str, bool, u32)> {
        s.values
            .iter()
            .map(|v| (v.key.as_str(), v.value.as_str(), v.is_list, v.line))
            .collect()
    }

    #[test]
    fn option_replaces_and_list_appends_as_libuci_does() {
        // uci_set: `option` replaces a whole list, where the list was.
        let doc = parse(
            "config lanveil 'main'\n\tlist allow '0.0.0.0/0'\n\tlist allow '::/0'\n\toption log_level 'info'\n\toption allow '192.168.1.0/24'\n",
        )
        .unwrap();
        assert_eq!(
            values(&doc.sections[0]),
            vec![
                ("allow", "192.168.1.0/24", false, 5),
                ("log_level", "info", false, 4)
            ]
        );
        // Two `option`s: the last one.
        let doc = parse("config lanveil\n\toption listen 'a'\n\toption listen 'b'\n").unwrap();
        assert_eq!(values(&doc.sections[0]), vec![("listen", "b", false, 3)]);
        // uci_add_list: an earlier option's value becomes the list's first one; later values follow
        // it, also after other keys and in a reopened section.
        let doc = parse(
            "config lanveil 'm'\n\toption listen 'a'\n\toption x 'y'\n\tlist listen 'b'\nconfig upstream 'u'\nconfig lanveil 'm'\n\tlist listen 'c'\n",
        )
        .unwrap();
        assert_eq!(
            values(&doc.sections[0]),
            vec![
                ("listen", "a", true, 2),
                ("listen", "b", true, 4),
                ("listen", "c", true, 7),
                ("x", "y", false, 3)
            ]
        );
        // `option KEY ''` removes a list too; set again, the key comes last (a new option).
        let doc = parse(
            "config lanveil\n\tlist pin 'p'\n\tlist pin 'q'\n\toption a 'b'\n\toption pin ''\n\tlist pin 'r'\n",
        )
        .unwrap();
        assert_eq!(
            values(&doc.sections[0]),
            vec![("a", "b", false, 4), ("pin", "r", true, 6)]
        );
        // Written out and read again: the same.
        assert_eq!(parse(&write(&doc)).unwrap().sections[0].values.len(), 2);
    }

    #[test]
    fn only_comments_may_hold_bytes_that_are_not_utf8() {
        let doc = parse_bytes(
            b"# caf\xe9\nconfig lanveil 'main' # \xff\xfe\n\toption a 'b' #\xc3\n\t# \xe9 \\\n\toption c 'd'\n",
        )
        .unwrap();
        assert_eq!(
            values(&doc.sections[0]),
            vec![("a", "b", false, 3), ("c", "d", false, 5)]
        );
        let e =
            parse_bytes(b"config lanveil 'main'\n\n\toption local_domain 'caf\xe9'\n").unwrap_err();
        assert_eq!(
            (e.line, e.key.as_str(), e.reason),
            (3, "lanveil[main].local_domain", Reason::Syntax(NOT_UTF8))
        );
        // In a quoted value over several lines: the line of the byte.
        let e = parse_bytes(b"config lanveil\n\toption a 'one\n\xff\ntwo'\n").unwrap_err();
        assert_eq!((e.line, e.reason), (3, Reason::Syntax(NOT_UTF8)));
        // Text that looks like a comment inside a quoted value is part of the value.
        let e = parse_bytes(b"config lanveil\n\toption a 'one\n# \xff\n'\n").unwrap_err();
        assert_eq!(e.line, 3);
        let e = parse_bytes(b"config lanveil 'm\xe9'\n").unwrap_err();
        assert_eq!((e.line, e.reason), (1, Reason::Syntax(NOT_UTF8)));
        let e = parse_bytes(b"config lanveil\n\xff\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(parse_bytes("config lanveil\n\toption a 'caf\u{e9}'\n".as_bytes()).is_ok());
    }

    #[test]
    fn files_larger_than_the_limit_are_refused() {
        let mut big = b"config lanveil 'main'\n".to_vec();
        big.resize(MAX_FILE_BYTES, b'#');
        assert!(parse_bytes(&big).is_ok());
        big.push(b'\n');
        let e = parse_bytes(&big).unwrap_err();
        assert_eq!(
            (e.line, e.reason.clone()),
            (
                0,
                Reason::TooLarge {
                    size: MAX_FILE_BYTES as u64 + 1,
                    max: MAX_FILE_BYTES as u64
                }
            )
        );
        assert_eq!(
            alloc::format!("{}", e.display_with_file("/etc/config/lanveil")),
            "/etc/config/lanveil: the file is 262145 bytes, more than the 262144 bytes lanveil reads (a configuration is a few KiB)"
        );
        assert!(check_file_size(u64::MAX).is_err());
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let e = parse("config lanveil\n\toption x 'unterminated\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert_eq!(e.reason, Reason::Syntax("unterminated ' quote"));
        let e = parse("option x y\n").unwrap_err();
        assert_eq!((e.line, e.reason), (1, Reason::OutsideSection));
        let e = parse("config lanveil\nfrobnicate\n").unwrap_err();
        assert_eq!(e.line, 2);
        let e = parse("config lanveil\n\toption only_key\n").unwrap_err();
        assert_eq!(e.line, 2);
    }
}
