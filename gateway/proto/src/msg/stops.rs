//! The splitter's structural index: the positions of the bytes it stops at, found 64 bytes
//! at a time as a bit mask and handed out in order, so that finding a header's line end is
//! a trailing-zero count instead of a scan.
//! (The datagram framing check walks the same index for its line ends.)
//!
//! A stop is a byte below 0x0E (CR, LF, HTAB, other controls) or a non-ASCII byte (one
//! signed compare finds both; non-ASCII bytes are rare in a header section and the
//! splitter skips them like any stop that is not a line end). A header line usually holds
//! two (its CR and LF); the splitter walks them one by one and reads each stop's byte to
//! tell which it is. The bytes between are looked at once, sixteen at a time, when their
//! block is classified. Blocks are classified when the walk reaches them, so the bytes past
//! the header section are scanned only to the end of the block the empty line is in.
//!
//! Colons are not stops: a header's colon is found by [`find_colon`], one sixteen-byte
//! compare at the start of the line, so that the colons inside values (`sip:`, ports,
//! `urn:uuid:`) cost the walk nothing.
//!
//! On x86_64 a block is classified with SSE2 (baseline there) through `safe_arch`, which
//! wraps the intrinsics in safe functions (the crate forbids `unsafe`); elsewhere eight
//! bytes at a time in a `u64`. Both give the exact mask, and a unit test holds them to it
//! for every byte value in every position.

const BLOCK: usize = 64;

/// The stops of `b` in order of position.
pub(crate) struct Stops<'a> {
    b: &'a [u8],
    /// Offset of the block `bits` belongs to.
    base: usize,
    /// The block's stops not handed out yet: bit `i` is byte `base + i`.
    bits: u64,
}

impl<'a> Stops<'a> {
    /// The stops of `b`, from its first byte.
    #[inline]
    pub(crate) fn new(b: &'a [u8]) -> Self {
        let mut s = Stops {
            b,
            base: 0,
            bits: 0,
        };
        s.load(0);
        s
    }

    /// Classifies the block starting at `at` (`<= b.len()`). A short last block is read as
    /// the buffer's last 64 bytes, shifted (the bytes before it were classified already),
    /// or, in a buffer shorter than a block, padded with spaces, which are not stops.
    #[inline]
    fn load(&mut self, at: usize) {
        self.base = at;
        let rest = &self.b[at..];
        self.bits = match rest.first_chunk::<BLOCK>() {
            Some(block) => classify(block),
            None => match self.b.last_chunk::<BLOCK>() {
                // `rest.len() < BLOCK`, so the shift is in 1..=64 bits; as a u128 it
                // cannot overflow, and it leaves exactly the bits of `rest`.
                Some(last) => (u128::from(classify(last)) >> (BLOCK - rest.len())) as u64,
                None => {
                    let mut block = [b' '; BLOCK];
                    block[..rest.len()].copy_from_slice(rest);
                    classify(&block)
                }
            },
        };
    }

    /// The bytes whose stops these are.
    #[inline(always)]
    pub(super) fn bytes(&self) -> &'a [u8] {
        self.b
    }

    /// Position of the next stop, or `None` past the last one.
    #[inline(always)]
    pub(crate) fn next(&mut self) -> Option<usize> {
        while self.bits == 0 {
            let next = self.base + BLOCK;
            if next >= self.b.len() {
                return None;
            }
            self.load(next);
        }
        let at = self.base + self.bits.trailing_zeros() as usize;
        self.bits &= self.bits - 1;
        Some(at)
    }

    /// Position of the next CR or LF (the other stops skipped), or `None` if there is none.
    #[inline(always)]
    pub(super) fn next_break(&mut self) -> Option<usize> {
        loop {
            let at = self.next()?;
            if matches!(self.b[at], b'\r' | b'\n') {
                return Some(at);
            }
        }
    }
}

/// The stops of one block, with SSE2: per sixteen bytes, a signed `v < 0x0E` finds the
/// bytes below 0x0E and from 0x80.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
fn classify(block: &[u8; BLOCK]) -> u64 {
    use safe_arch::{
        cmp_lt_mask_i8_m128i, load_unaligned_m128i, move_mask_i8_m128i, set_splat_i8_m128i,
    };
    let limit = set_splat_i8_m128i(0x0e);
    let mut bits = 0u64;
    let (chunks, _) = block.as_chunks::<16>();
    for (k, chunk) in chunks.iter().enumerate() {
        let control = cmp_lt_mask_i8_m128i(load_unaligned_m128i(chunk), limit);
        // `move_mask` sets only the low 16 bits: one per byte.
        bits |= u64::from(move_mask_i8_m128i(control) as u16) << (16 * k);
    }
    bits
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline(always)]
fn classify(block: &[u8; BLOCK]) -> u64 {
    classify_portable(block)
}

/// The stops of one block, eight bytes at a time in a `u64`: the fallback off x86_64 (on
/// x86_64 it is compiled for the test that compares the two).
#[cfg_attr(all(target_arch = "x86_64", target_feature = "sse2"), allow(dead_code))]
fn classify_portable(block: &[u8; BLOCK]) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut bits = 0u64;
    let (words, _) = block.as_chunks::<8>();
    for (k, w) in words.iter().enumerate() {
        let w = u64::from_le_bytes(*w);
        // Adding to the low seven bits of a byte cannot carry into the next byte, so each
        // byte's high bit is exact: set when the byte has its own high bit set or its low
        // bits stay under 0x0E.
        let below = (w | !((w & LOW7) + ONES * (0x80 - 0x0e))) & HIGH;
        // The multiplication moves the high bit of byte `i` to bit `56 + i`, no two
        // partial products meeting.
        let gathered = below.wrapping_mul(0x0002_0408_1020_4081) >> 56;
        bits |= gathered << (8 * k);
    }
    bits
}

/// Bit `i` set when `chunk[i]` is `:`.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
fn colons16(chunk: &[u8; 16]) -> u32 {
    use safe_arch::{
        cmp_eq_mask_i8_m128i, load_unaligned_m128i, move_mask_i8_m128i, set_splat_i8_m128i,
    };
    let eq = cmp_eq_mask_i8_m128i(load_unaligned_m128i(chunk), set_splat_i8_m128i(b':' as i8));
    move_mask_i8_m128i(eq) as u32 & 0xffff
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline(always)]
fn colons16(chunk: &[u8; 16]) -> u32 {
    colons16_portable(chunk)
}

/// [`colons16`] a byte at a time: the fallback off x86_64.
#[cfg_attr(all(target_arch = "x86_64", target_feature = "sse2"), allow(dead_code))]
fn colons16_portable(chunk: &[u8; 16]) -> u32 {
    let mut bits = 0;
    for (i, &c) in chunk.iter().enumerate() {
        bits |= u32::from(c == b':') << i;
    }
    bits
}

/// Position of the first `:` in `b[from..to]` (`from <= to <= b.len()`) if it is among
/// the 32 bytes from `from`, else `None`. A header name and its colon fit the first
/// sixteen bytes of the line nearly always, so this is one compare; longer names are for
/// the exact splitter, and the last few bytes of a buffer are looked at one by one.
#[inline(always)]
pub(super) fn find_colon(b: &[u8], from: usize, to: usize) -> Option<usize> {
    for at in [from, from + 16] {
        if at >= to {
            return None;
        }
        let Some(chunk) = b.get(at..).and_then(<[u8]>::first_chunk::<16>) else {
            return b[at..to]
                .iter()
                .position(|&c| c == b':')
                .map(|i| at + i)
                .filter(|&i| i < from + 32);
        };
        let m = colons16(chunk);
        if m != 0 {
            let i = at + m.trailing_zeros() as usize;
            return (i < to).then_some(i);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mask by definition, one byte at a time.
    fn classify_naive(block: &[u8; BLOCK]) -> u64 {
        let mut bits = 0;
        for (i, &c) in block.iter().enumerate() {
            if !(0x0e..0x80).contains(&c) {
                bits |= 1 << i;
            }
        }
        bits
    }

    /// Both classifiers agree with the definition for every byte value in every position,
    /// on backgrounds of stops, of bytes that are not, and of pseudo-random bytes, so that
    /// a neighbouring byte cannot change a result either.
    #[test]
    fn classifiers_are_exact() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut random = [0u8; BLOCK];
        for c in &mut random {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            *c = seed as u8;
        }
        for background in [
            [0; BLOCK],
            [0x0d; BLOCK],
            [b':'; BLOCK],
            [0x0e; BLOCK],
            [0xff; BLOCK],
            random,
        ] {
            for pos in 0..BLOCK {
                for v in 0..=255u8 {
                    let mut block = background;
                    block[pos] = v;
                    let want = classify_naive(&block);
                    assert_eq!(classify(&block), want, "byte {v:#04x} at {pos}");
                    assert_eq!(classify_portable(&block), want, "byte {v:#04x} at {pos}");
                }
            }
        }
    }

    /// [`find_colon`] agrees with a plain search for every colon position and range, near
    /// the end of the buffer too, and both colon masks with the definition.
    #[test]
    fn finds_colons_like_a_plain_search() {
        for len in 0..80 {
            for colon in 0..=len {
                let mut b = vec![b'a'; len];
                if colon < len {
                    b[colon] = b':';
                }
                if colon + 7 < len {
                    b[colon + 7] = b':';
                }
                for from in 0..=len {
                    for to in from..=len {
                        let want = b[from..to]
                            .iter()
                            .position(|&c| c == b':')
                            .map(|i| from + i)
                            .filter(|&i| i < from + 32);
                        assert_eq!(find_colon(&b, from, to), want, "{len} {colon} {from}..{to}");
                    }
                }
            }
        }
        for pos in 0..16 {
            for v in 0..=255u8 {
                let mut chunk = [b':'; 16];
                chunk[pos] = v;
                let want = !(u32::from(v != b':') << pos) & 0xffff;
                assert_eq!(colons16(&chunk), want);
                assert_eq!(colons16_portable(&chunk), want);
            }
        }
    }

    /// The walk hands out exactly the stops of a plain scan for buffers of every length
    /// (short last blocks read shifted from the buffer's last 64 bytes, or padded).
    #[test]
    fn walk_matches_a_plain_scan_at_every_length() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for len in 0..300 {
            for _ in 0..4 {
                let b: Vec<u8> = (0..len)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        // Mostly ordinary bytes, some stops of each kind.
                        match seed % 16 {
                            0 => b'\r',
                            1 => b'\n',
                            2 => 0xc3,
                            3 => b'\t',
                            _ => b'a' + (seed % 26) as u8,
                        }
                    })
                    .collect();
                let want: Vec<usize> = (0..len)
                    .filter(|&i| !(0x0e..0x80).contains(&b[i]))
                    .collect();
                let mut s = Stops::new(&b);
                let got: Vec<usize> = std::iter::from_fn(|| s.next()).collect();
                assert_eq!(got, want, "len {len}");
            }
        }
    }

    #[test]
    fn walks_stops_across_blocks_to_the_end() {
        let mut b = vec![b'a'; 300];
        for (at, c) in [
            (10, b'\x01'),
            (63, b'\t'),
            (64, b'\r'),
            (65, b'\n'),
            (100, b':'),
            (200, 0xc3),
            (299, 0),
        ] {
            b[at] = c;
        }
        let mut s = Stops::new(&b);
        let all: Vec<_> = std::iter::from_fn(|| s.next()).collect();
        assert_eq!(all, [10, 63, 64, 65, 200, 299], "colons are not stops");
        let mut s = Stops::new(&b);
        assert_eq!(s.next_break(), Some(64));
        assert_eq!(s.next_break(), Some(65));
        assert_eq!(s.next_break(), None, "none in the short last block");
        assert_eq!(Stops::new(b"").next(), None);
        assert_eq!(Stops::new(&[b'x'; 128]).next(), None);
        assert_eq!(Stops::new(b"ab\r").next_break(), Some(2));
    }
}
