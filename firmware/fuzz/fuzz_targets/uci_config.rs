//! `uci::parse` and `Config::from_uci_text` on arbitrary text: never panic; a parsed document
//! survives `uci::write` → `uci::parse`; a valid configuration survives `to_uci` → `from_uci_text`
//! and `pack` → `unpack` unchanged.
#![no_main]

use lanveil_config::Config;
use lanveil_config::uci::{self, Document};
use libfuzzer_sys::fuzz_target;

/// The document without line numbers (the writer does not keep comments or blank lines).
fn strip_lines(mut d: Document) -> Document {
    for s in &mut d.sections {
        s.line = 0;
        for v in &mut s.values {
            v.line = 0;
        }
    }
    d
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(doc) = uci::parse(text) {
        let written = uci::write(&doc);
        let again = uci::parse(&written)
            .unwrap_or_else(|e| panic!("written UCI does not parse: {e}\n{written}"));
        assert_eq!(strip_lines(again), strip_lines(doc));
    }
    let Ok(c) = Config::from_uci_text(text) else {
        return;
    };
    let written = c.to_uci();
    assert_eq!(
        Config::from_uci_text(&written).as_ref(),
        Ok(&c),
        "to_uci round trip:\n{written}"
    );
    assert_eq!(
        Config::unpack(&c.pack()).as_ref(),
        Ok(&c),
        "pack round trip"
    );
});
