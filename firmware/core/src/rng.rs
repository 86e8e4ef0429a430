//! Randomness is an input: the shell passes an [`Rng`] backed by the OS CSPRNG; tests pass a seeded one.

/// A source of random bytes. Implementations used in production must be cryptographically secure:
/// upstream message IDs come from here (RFC 5452 §9.2 spirit; RFC 8937 on weak boot entropy).
pub trait Rng {
    /// Fills `dst` with random bytes.
    fn fill(&mut self, dst: &mut [u8]);

    /// A random u16.
    fn next_u16(&mut self) -> u16 {
        let mut b = [0u8; 2];
        self.fill(&mut b);
        u16::from_be_bytes(b)
    }

    /// A random u32.
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill(&mut b);
        u32::from_be_bytes(b)
    }
}

/// A deterministic generator for tests and simulations (xorshift64*). **Not** for production.
#[derive(Clone, Debug)]
pub struct TestRng(u64);

impl TestRng {
    /// Seeds the generator (0 is replaced by a fixed constant).
    pub fn new(seed: u64) -> Self {
        Self(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }
}

impl Rng for TestRng {
    fn fill(&mut self, dst: &mut [u8]) {
        for b in dst {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            *b = (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8;
        }
    }
}
