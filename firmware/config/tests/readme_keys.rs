//! The README's key reference is the key table's: every key with its default, range and meaning, and
//! no other key. After changing `firmware/config/src/keys.rs`, regenerate the block with
//! `LANVEIL_BLESS_README=1 cargo test -p lanveil-config --test readme_keys`.
#![cfg(feature = "reference")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use lanveil_config::keys;

const BEGIN: &str = "<!-- keys: generated from firmware/config/src/keys.rs (test: firmware/config/tests/readme_keys.rs) -->\n";
const END: &str = "<!-- keys: end -->\n";

#[test]
fn readme_key_reference_is_the_key_table() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
    let readme = std::fs::read_to_string(path).unwrap();
    let start = readme
        .find(BEGIN)
        .expect("README has the key reference block")
        + BEGIN.len();
    let end = start + readme[start..].find(END).expect("the block ends");
    let want = format!("\n{}\n", keys::reference());
    if readme[start..end] != want && std::env::var_os("LANVEIL_BLESS_README").is_some() {
        let blessed = format!("{}{want}{}", &readme[..start], &readme[end..]);
        std::fs::write(path, blessed).unwrap();
        return;
    }
    assert!(
        readme[start..end] == want,
        "README.md's key reference differs from the key table; expected:\n{want}"
    );
    // Every key of the table is in it with its default, and nothing that is not a key.
    let block = &readme[start..end];
    for k in keys::MAIN
        .iter()
        .map(|k| (k.name, k.default))
        .chain(keys::UPSTREAM.iter().map(|k| (k.name, k.default)))
    {
        assert!(block.contains(&format!("| `{}`", k.0)), "{} missing", k.0);
    }
    let rows = block.lines().filter(|l| l.starts_with("| `")).count();
    assert_eq!(rows, keys::MAIN.len() + keys::UPSTREAM.len());
}
