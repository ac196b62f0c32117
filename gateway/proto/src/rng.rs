//! Seeded randomness for the core.
//!
//! The core never asks the operating system for entropy: the shell seeds one [`CoreRng`] per
//! core instance (from the OS in production, from a fixed seed in tests), so a test run is a
//! pure function of its seed. ChaCha8 is used because its output stream is stable across
//! versions of `rand_chacha`, which keeps recorded schedules reproducible.

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

/// Branch parameters start with the RFC 3261 magic cookie.
pub const BRANCH_MAGIC: &str = "z9hG4bK";

/// The core's random source; see the module documentation.
#[derive(Debug, Clone)]
pub struct CoreRng(ChaCha8Rng);

/// Letters used for tags, branches and Call-IDs: RFC 3261 `token` characters that need no
/// escaping anywhere.
const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// `N` random token characters on the stack ([`CoreRng::tag_token`],
/// [`CoreRng::call_id_token`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token<const N: usize>([u8; N]);

impl<const N: usize> Token<N> {
    /// The characters.
    pub fn as_str(&self) -> &str {
        // Only ALPHABET characters, which are ASCII, are written.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

/// The unused six-bit groups of the last draw of a token being generated.
#[derive(Default)]
struct TokenBits {
    value: u64,
    /// Groups of `value` still unused (a draw gives ten; its top four bits are dropped).
    left: u32,
}

impl CoreRng {
    /// A generator whose whole output is determined by `seed`.
    pub fn from_seed(seed: u64) -> Self {
        Self(ChaCha8Rng::seed_from_u64(seed))
    }

    /// A uniformly distributed `u64`.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// A uniformly distributed value in `0..bound` (`bound` must be non-zero; 0 yields 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            return 0;
        }
        // Rejection sampling removes the modulo bias.
        let zone = u64::MAX - (u64::MAX % bound);
        loop {
            let v = self.0.next_u64();
            if v < zone {
                return v % bound;
            }
        }
    }

    /// A uniformly distributed float in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Appends `len` random token characters to `out`.
    pub fn push_token(&mut self, out: &mut String, len: usize) {
        let mut buf = [0u8; 32];
        let mut bits = TokenBits::default();
        let mut left = len;
        while left > 0 {
            let n = left.min(buf.len());
            self.fill_token_from(&mut bits, &mut buf[..n]);
            // Token characters are ASCII.
            out.push_str(std::str::from_utf8(&buf[..n]).unwrap_or(""));
            left -= n;
        }
    }

    /// Fills `out` with random token characters: the same stream as [`Self::push_token`].
    ///
    /// Each character takes six bits of a `u64` draw, ten per draw; a value of 62 or 63 is
    /// dropped and the next six bits taken (rejection sampling, so every character is
    /// uniform over [`ALPHABET`], about 5.95 bits each as before). Drawing a whole `u64` per
    /// character, as this did before, spent ten times the ChaCha output: a branch, a tag
    /// and a Call-ID per REGISTER or binding made the block refills stand out in profiles.
    pub fn fill_token(&mut self, out: &mut [u8]) {
        self.fill_token_from(&mut TokenBits::default(), out);
    }

    /// [`Self::fill_token`] continuing from the bits left in `bits`.
    fn fill_token_from(&mut self, bits: &mut TokenBits, out: &mut [u8]) {
        let TokenBits { value, left } = bits;
        for b in out {
            loop {
                if *left == 0 {
                    *value = self.0.next_u64();
                    *left = 10;
                }
                let i = (*value & 63) as usize;
                *value >>= 6;
                *left -= 1;
                if let Some(&c) = ALPHABET.get(i) {
                    *b = c;
                    break;
                }
            }
        }
    }

    /// A fresh `Via` branch: the magic cookie followed by 16 random token characters.
    pub fn branch(&mut self) -> String {
        let mut s = String::with_capacity(BRANCH_MAGIC.len() + 16);
        self.push_branch(&mut s);
        s
    }

    /// Appends a fresh branch (see [`Self::branch`]) to `out`.
    pub fn push_branch(&mut self, out: &mut String) {
        out.push_str(BRANCH_MAGIC);
        self.push_token(out, 16);
    }

    /// A fresh From/To tag (10 characters, about 59 bits of randomness).
    pub fn tag(&mut self) -> String {
        self.tag_token().as_str().to_owned()
    }

    /// [`Self::tag`] on the stack, for a caller that copies it anyway.
    pub fn tag_token(&mut self) -> Token<10> {
        self.token()
    }

    /// A fresh Call-ID local part (20 characters, about 119 bits of randomness).
    pub fn call_id(&mut self) -> String {
        self.call_id_token().as_str().to_owned()
    }

    /// [`Self::call_id`] on the stack, for a caller that copies it anyway (the registration
    /// engine packs it into the binding's strings).
    pub fn call_id_token(&mut self) -> Token<20> {
        self.token()
    }

    fn token<const N: usize>(&mut self) -> Token<N> {
        let mut t = Token([0; N]);
        self.fill_token(&mut t.0);
        t
    }

    /// Fills `dest` with random bytes (client nonces, tokens).
    pub fn fill(&mut self, dest: &mut [u8]) {
        self.0.fill_bytes(dest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream() {
        let mut a = CoreRng::from_seed(7);
        let mut b = CoreRng::from_seed(7);
        assert_eq!(a.branch(), b.branch());
        assert_eq!(a.tag(), b.tag());
        assert_eq!(a.tag_token(), b.tag_token());
        assert_eq!(a.call_id(), b.call_id_token().as_str());
        assert_eq!(a.tag_token().as_str().len(), 10);
        assert_ne!(
            CoreRng::from_seed(8).call_id(),
            CoreRng::from_seed(7).call_id()
        );
    }

    #[test]
    fn branch_has_cookie_and_token_chars() {
        let b = CoreRng::from_seed(1).branch();
        assert!(b.starts_with(BRANCH_MAGIC));
        assert_eq!(b.len(), 23);
        assert!(b.bytes().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn fill_token_is_push_token() {
        // The same characters whether they come in one call or in 32-byte pieces.
        let (mut a, mut b) = (CoreRng::from_seed(5), CoreRng::from_seed(5));
        for len in [0, 1, 10, 24, 32, 33, 70] {
            let mut s = String::new();
            a.push_token(&mut s, len);
            let mut buf = vec![0u8; len];
            b.fill_token(&mut buf);
            assert_eq!(s.as_bytes(), &buf[..]);
            assert!(s.bytes().all(|c| ALPHABET.contains(&c)));
        }
    }

    #[test]
    fn fill_token_takes_six_bits_per_character() {
        // Reference: the draws cut into six-bit groups, low bits first, ten per draw,
        // 62 and 63 skipped.
        let mut r = CoreRng::from_seed(11);
        let mut groups = Vec::new();
        for _ in 0..40 {
            let v = r.next_u64();
            groups.extend((0..10).map(|k| ((v >> (6 * k)) & 63) as usize));
        }
        let reference: Vec<u8> = groups
            .into_iter()
            .filter(|&g| g < 62)
            .map(|g| ALPHABET[g])
            .take(300)
            .collect();
        let mut buf = vec![0u8; 300];
        CoreRng::from_seed(11).fill_token(&mut buf);
        assert_eq!(buf, reference);
    }

    #[test]
    fn token_characters_are_uniform() {
        // 62,000 characters: each of the 62 expected 1,000 times; a bias of the rejection
        // (say, 62 and 63 folded onto two letters) would double two counts.
        let mut buf = vec![0u8; 62_000];
        CoreRng::from_seed(9).fill_token(&mut buf);
        let mut counts = [0u32; 256];
        for &c in &buf {
            counts[usize::from(c)] += 1;
        }
        for &c in ALPHABET {
            let n = counts[usize::from(c)];
            assert!((850..1150).contains(&n), "{} seen {n} times", c as char);
        }
    }

    #[test]
    fn below_stays_in_range() {
        let mut r = CoreRng::from_seed(3);
        for bound in [1u64, 2, 3, 10, 1000] {
            for _ in 0..1000 {
                assert!(r.below(bound) < bound);
            }
        }
        assert_eq!(r.below(0), 0);
        let u = r.unit();
        assert!((0.0..1.0).contains(&u));
    }
}
