//! The engine's randomness: the OS CSPRNG (getrandom via ring), read in blocks so a query costs no
//! system call. If the OS generator fails the daemon stops rather than fall back to a weak generator.

use ring::rand::{SecureRandom, SystemRandom};

const BLOCK: usize = 512;

pub(crate) struct OsRng {
    sys: SystemRandom,
    buf: [u8; BLOCK],
    pos: usize,
}

impl std::fmt::Debug for OsRng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OsRng")
    }
}

impl OsRng {
    pub(crate) fn new() -> Result<Self, ring::error::Unspecified> {
        let sys = SystemRandom::new();
        let mut buf = [0u8; BLOCK];
        sys.fill(&mut buf)?;
        Ok(Self { sys, buf, pos: 0 })
    }
}

impl lanveil_core::rng::Rng for OsRng {
    fn fill(&mut self, dst: &mut [u8]) {
        for b in dst {
            if self.pos == BLOCK {
                if self.sys.fill(&mut self.buf).is_err() {
                    // No safe way to continue: message IDs must be unpredictable.
                    log::error!("the OS random generator failed; exiting");
                    std::process::exit(70);
                }
                self.pos = 0;
            }
            *b = self.buf[self.pos];
            // Each byte is used once.
            self.buf[self.pos] = 0;
            self.pos += 1;
        }
    }
}
