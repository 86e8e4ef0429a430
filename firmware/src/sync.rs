//! A 64-bit value shared between tasks. 32-bit MIPS (mipsel_24kc, many routers) has no 64-bit atomics,
//! so this is a tiny mutex instead; `clippy.toml` forbids `AtomicU64` so it does not creep back.

use std::sync::Mutex;

/// A shared `u64`.
#[derive(Debug, Default)]
pub struct Shared64(Mutex<u64>);

impl Shared64 {
    /// A new value.
    pub const fn new(v: u64) -> Self {
        Self(Mutex::new(v))
    }

    /// The value.
    pub fn load(&self) -> u64 {
        self.0.lock().map_or(0, |g| *g)
    }

    /// Sets the value.
    pub fn store(&self, v: u64) {
        if let Ok(mut g) = self.0.lock() {
            *g = v;
        }
    }

    /// Adds `d`, returning the previous value.
    pub fn fetch_add(&self, d: u64) -> u64 {
        match self.0.lock() {
            Ok(mut g) => {
                let old = *g;
                *g = old.wrapping_add(d);
                old
            }
            Err(_) => 0,
        }
    }
}
