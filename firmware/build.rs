//! Records the build time (or SOURCE_DATE_EPOCH, for reproducible builds) as the lowest time floor:
//! a router clock reading earlier than this is certainly wrong.
// The build machine's clock, not the router's: the daemon's clock rule (firmware/clippy.toml) does not
// apply here.
#![allow(clippy::disallowed_methods)]
fn main() {
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let secs = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        });
    println!("cargo:rustc-env=LANVEIL_BUILD_UNIX={secs}");
}
