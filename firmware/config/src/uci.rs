//! A reader and writer for the subset of UCI syntax that `/etc/config/*` files use
//! (`package`, `config TYPE ['NAME']`, `option KEY 'VALUE'`, `list KEY 'VALUE'`, `#` comments).
//!
//! Quoting follows libuci: `'…'` is literal, `"…"` and bare words honour `\` escapes, and adjacent
//! quoted/bare parts concatenate into one token. This module checks syntax only; meaning is checked by
//! [`crate::Config::from_uci`].

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write as _;

use crate::error::{Error, Reason};

/// A parsed UCI file: its sections in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Document {
    /// Sections in file order.
    pub sections: Vec<Section>,
}

/// One `config TYPE ['NAME']` block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    /// The section type (`lanveil`, `upstream`).
    pub ty: String,
    /// The section name, if given.
    pub name: Option<String>,
    /// Line of the `config` statement.
    pub line: u32,
    /// Options and lists in file order.
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
    /// Line of the statement.
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

/// Parses UCI text.
pub fn parse(text: &str) -> Result<Document, Error> {
    let mut doc = Document::default();
    for (idx, raw_line) in text.lines().enumerate() {
        let line = u32::try_from(idx + 1).unwrap_or(u32::MAX);
        let tokens = tokenize(raw_line).map_err(|r| Error::new(line, "", r))?;
        let Some((first, rest)) = tokens.split_first() else {
            continue;
        };
        match first.as_str() {
            "package" => {
                if rest.len() != 1 {
                    return Err(Error::new(
                        line,
                        "",
                        Reason::Syntax("'package' takes one name"),
                    ));
                }
            }
            "config" => {
                let (ty, name) = match rest {
                    [ty] => (ty.clone(), None),
                    [ty, name] => (ty.clone(), Some(name.clone())),
                    _ => {
                        return Err(Error::new(
                            line,
                            "",
                            Reason::Syntax("'config' takes a type and an optional name"),
                        ));
                    }
                };
                if ty.is_empty() || !ty.bytes().all(is_ident_byte) {
                    return Err(Error::new(
                        line,
                        "",
                        Reason::Syntax("section type must be letters, digits, '_' or '-'"),
                    ));
                }
                if let Some(n) = &name
                    && (n.is_empty() || !n.bytes().all(is_ident_byte))
                {
                    return Err(Error::new(
                        line,
                        "",
                        Reason::Syntax("section name must be letters, digits, '_' or '-'"),
                    ));
                }
                doc.sections.push(Section {
                    ty,
                    name,
                    line,
                    values: Vec::new(),
                });
            }
            kw @ ("option" | "list") => {
                let [key, value] = rest else {
                    return Err(Error::new(
                        line,
                        "",
                        Reason::Syntax("'option' and 'list' take a key and a value"),
                    ));
                };
                if key.is_empty() || !key.bytes().all(is_ident_byte) {
                    return Err(Error::new(
                        line,
                        key.as_str(),
                        Reason::Syntax("key must be letters, digits, '_' or '-'"),
                    ));
                }
                let Some(section) = doc.sections.last_mut() else {
                    return Err(Error::new(line, key.as_str(), Reason::OutsideSection));
                };
                section.values.push(Value {
                    key: key.clone(),
                    value: value.clone(),
                    is_list: kw == "list",
                    line,
                });
            }
            _ => {
                return Err(Error::new(
                    line,
                    "",
                    Reason::Syntax("expected 'config', 'option', 'list' or 'package'"),
                ));
            }
        }
    }
    Ok(doc)
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

fn tokenize(line: &str) -> Result<Vec<String>, Reason> {
    let mut tokens = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.peek() {
            None | Some('#') => break,
            _ => {}
        }
        let mut tok = String::new();
        while let Some(&c) = chars.peek() {
            match c {
                c if c.is_whitespace() => break,
                '\'' => {
                    chars.next();
                    loop {
                        match chars.next() {
                            Some('\'') => break,
                            Some(c) => tok.push(c),
                            None => return Err(Reason::Syntax("unterminated ' quote")),
                        }
                    }
                }
                '"' => {
                    chars.next();
                    loop {
                        match chars.next() {
                            Some('"') => break,
                            Some('\\') => match chars.next() {
                                Some(c) => tok.push(c),
                                None => return Err(Reason::Syntax("unterminated \" quote")),
                            },
                            Some(c) => tok.push(c),
                            None => return Err(Reason::Syntax("unterminated \" quote")),
                        }
                    }
                }
                '\\' => {
                    chars.next();
                    match chars.next() {
                        Some(c) => tok.push(c),
                        None => return Err(Reason::Syntax("line ends in a backslash")),
                    }
                }
                c => {
                    chars.next();
                    tok.push(c);
                }
            }
        }
        tokens.push(tok);
    }
    Ok(tokens)
}

/// Quotes a value for writing: single quotes, with embedded `'` written as `'\''` (libuci style).
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
        out.push_str(&section.ty);
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
