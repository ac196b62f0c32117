//! The strings of one binding, packed into a single heap allocation.
//!
//! A million bindings each holding eight `String`s would cost eight allocations and
//! 8 × 24 bytes of headers per binding before a single character is stored. [`Packed`] keeps
//! all of a binding's strings back to back in one `Box<str>` plus a table of end offsets, so
//! the fixed cost is 16 + 2·N bytes and one allocation. Because the box holds the SIP
//! password, it is zeroed when dropped and `Debug` never prints it.

use std::fmt;

use zeroize::Zeroize;

/// Up to `N` strings in one allocation; see the module documentation.
pub(crate) struct Packed<const N: usize> {
    text: Box<str>,
    /// `ends[i]` is the end offset of field `i`; field `i` starts where field `i - 1` ends.
    ends: [u16; N],
}

/// A field too long for the packed layout (the whole text must fit in 64 KiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooLong;

impl<const N: usize> Packed<N> {
    /// Packs `fields` in order.
    pub(crate) fn new(fields: [&str; N]) -> Result<Self, TooLong> {
        let total: usize = fields.iter().map(|f| f.len()).sum();
        if total > usize::from(u16::MAX) {
            return Err(TooLong);
        }
        let mut text = String::with_capacity(total);
        let mut ends = [0u16; N];
        for (i, f) in fields.iter().enumerate() {
            text.push_str(f);
            ends[i] = u16::try_from(text.len()).map_err(|_| TooLong)?;
        }
        Ok(Self {
            text: text.into_boxed_str(),
            ends,
        })
    }

    /// Field `i` (`i < N`).
    pub(crate) fn get(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.text[usize::from(start)..usize::from(self.ends[i])]
    }

    /// Heap bytes held (for memory reports).
    pub(crate) fn heap_len(&self) -> usize {
        self.text.len()
    }
}

impl<const N: usize> Drop for Packed<N> {
    fn drop(&mut self) {
        // The text holds the password: wipe it before the allocator reuses the memory.
        self.text.zeroize();
    }
}

impl<const N: usize> fmt::Debug for Packed<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Packed(<{} bytes redacted>)", self.text.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_including_empty_ones() {
        let p = Packed::new(["alice", "", "example.org", "s3cret"]).unwrap();
        assert_eq!(p.get(0), "alice");
        assert_eq!(p.get(1), "");
        assert_eq!(p.get(2), "example.org");
        assert_eq!(p.get(3), "s3cret");
        assert_eq!(p.heap_len(), 22);
        let dbg = format!("{p:?}");
        assert!(!dbg.contains("s3cret") && !dbg.contains("alice"), "{dbg}");
    }

    #[test]
    fn oversized_text_is_refused() {
        let big = "x".repeat(40_000);
        assert_eq!(Packed::new([&big, &big]).err(), Some(TooLong));
    }
}
