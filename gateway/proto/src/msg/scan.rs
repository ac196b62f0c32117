//! Lexical helpers shared by the header value parsers: RFC 3261 §25.1 character classes,
//! LWS trimming, decimal numbers, quoted strings and the quote- and bracket-aware comma split.
//!
//! Everything works on `&str` slices of the message and returns sub-slices: nothing here
//! allocates except [`unquote`] when a quoted-pair must be removed.
//!
//! Runs of a class that holds every letter and digit ([`alnum_run`]) and searches for a
//! delimiter ([`find_either`]) go sixteen bytes at a time with SSE2 through `safe_arch` on
//! x86_64 (a byte loop elsewhere; unit tests hold both to the byte loop's answers): a
//! screen for the non-alphanumeric bytes costs three vector operations, and only the
//! bytes it flags are looked up in the class table.

use std::borrow::Cow;

use super::ValueError;

/// Character classes as bit flags in one 256-entry table, so that the hot loops of the
/// parsers do one load per byte instead of a chain of comparisons.
pub(crate) const TOKEN: u8 = 1;
pub(crate) const UNRESERVED: u8 = 2;
pub(crate) const USER: u8 = 4;
pub(crate) const PASSWORD: u8 = 8;
pub(crate) const PARAM: u8 = 16;
pub(crate) const HEADER: u8 = 32;
pub(crate) const HOST: u8 = 64;
pub(crate) const LWS: u8 = 128;

const fn class_of(b: u8) -> u8 {
    let alnum = b.is_ascii_alphanumeric();
    let mut c = 0;
    if alnum
        || matches!(
            b,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
    {
        c |= TOKEN;
    }
    let unreserved = alnum
        || matches!(
            b,
            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
        );
    if unreserved {
        c |= UNRESERVED;
    }
    if unreserved || matches!(b, b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/') {
        c |= USER;
    }
    if unreserved || matches!(b, b'&' | b'=' | b'+' | b'$' | b',') {
        c |= PASSWORD;
    }
    if unreserved || matches!(b, b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$') {
        c |= PARAM;
    }
    if unreserved || matches!(b, b'[' | b']' | b'/' | b'?' | b':' | b'+' | b'$') {
        c |= HEADER;
    }
    // `_` is not in the RFC 3261 hostname grammar but occurs in real deployments.
    if alnum || matches!(b, b'-' | b'.' | b'_') {
        c |= HOST;
    }
    if matches!(b, b' ' | b'\t' | b'\r' | b'\n') {
        c |= LWS;
    }
    c
}

const fn build_classes() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = class_of(i as u8);
        i += 1;
    }
    t
}

static CLASSES: [u8; 256] = build_classes();

/// A second table for the classes that did not fit in [`CLASSES`]' eight bits.
pub(crate) const GEN_VALUE: u8 = 1;
pub(crate) const CALLID: u8 = 2;

const fn extra_class_of(b: u8) -> u8 {
    let token = class_of(b) & TOKEN != 0;
    let mut c = 0;
    // `gen-value` characters of a header parameter: token, plus what a `host` (an IPv6
    // reference) needs.
    if token || matches!(b, b':' | b'[' | b']') {
        c |= GEN_VALUE;
    }
    // `word` characters of Call-ID (RFC 3261 §25.1), plus `@`.
    if token
        || matches!(
            b,
            b'(' | b')'
                | b'<'
                | b'>'
                | b':'
                | b'\\'
                | b'"'
                | b'/'
                | b'['
                | b']'
                | b'?'
                | b'{'
                | b'}'
                | b'@'
        )
    {
        c |= CALLID;
    }
    c
}

const fn build_extra() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = extra_class_of(i as u8);
        i += 1;
    }
    t
}

static EXTRA: [u8; 256] = build_extra();

/// Whether byte `b` is in any of the classes `mask`.
#[inline]
pub(crate) fn is(b: u8, mask: u8) -> bool {
    CLASSES[usize::from(b)] & mask != 0
}

/// Length of the prefix of `s` whose bytes are all in `mask`.
#[inline]
pub(crate) fn span_of(s: &[u8], mask: u8) -> usize {
    s.iter().position(|&b| !is(b, mask)).unwrap_or(s.len())
}

/// Length of the prefix of `s` whose bytes are all in the [`EXTRA`] classes `mask`, for the
/// runs that are often long (parameter values such as branches, Call-IDs): eight bytes are
/// tested per step, their flags ANDed, at about half the cost per byte of a byte loop; the
/// step that fails is finished byte by byte, so the answer is exact.
#[inline]
pub(crate) fn long_run_extra(s: &[u8], mask: u8) -> usize {
    let (chunks, _) = s.as_chunks::<8>();
    let mut n = 0;
    for c in chunks {
        if c.iter().fold(mask, |all, &b| all & EXTRA[usize::from(b)]) == 0 {
            break;
        }
        n += 8;
    }
    let rest = &s[n..];
    n + rest
        .iter()
        .position(|&b| EXTRA[usize::from(b)] & mask == 0)
        .unwrap_or(rest.len())
}

/// Length of the prefix of `s` whose bytes pass `in_class`, for a class that holds every
/// ASCII letter and digit: sixteen bytes per step are screened with [`non_alnum16`] and
/// only the bytes it flags are tested, so a run of letters and digits (hosts, tags,
/// Call-IDs, methods) costs a few operations per sixteen bytes. A slice of at least
/// sixteen bytes ends with a step over its last sixteen (overlapping the previous step,
/// whose bytes all passed); shorter slices take the byte loop.
#[inline]
pub(crate) fn alnum_run(s: &[u8], in_class: impl Fn(u8) -> bool) -> usize {
    alnum_run_at(s, 0, in_class)
}

/// [`alnum_run`] of `s[from..]`, as a position in `s`: the bytes before `from` let a run
/// near the end of a longer slice (a URI's host) take the shifted last step instead of
/// the byte loop.
#[inline]
pub(crate) fn alnum_run_at(s: &[u8], from: usize, in_class: impl Fn(u8) -> bool) -> usize {
    let Some(last) = s.last_chunk::<16>() else {
        let rest = &s[from..];
        return from
            + rest
                .iter()
                .position(|&c| !in_class(c))
                .unwrap_or(rest.len());
    };
    let mut base = from;
    loop {
        let (mut m, next) = match s[base..].first_chunk::<16>() {
            Some(chunk) => (u32::from(non_alnum16(chunk)), base + 16),
            None => (
                u32::from(non_alnum16(last)) >> (16 - (s.len() - base)),
                s.len(),
            ),
        };
        while m != 0 {
            let at = base + m.trailing_zeros() as usize;
            if !in_class(s[at]) {
                return at;
            }
            m &= m - 1;
        }
        if next == s.len() {
            return next;
        }
        base = next;
    }
}

/// Whether byte `b` is in any of the [`EXTRA`] classes `mask` ([`GEN_VALUE`], [`CALLID`]).
#[inline]
pub(crate) fn is_extra_class(b: u8, mask: u8) -> bool {
    EXTRA[usize::from(b)] & mask != 0
}

/// `token` characters (RFC 3261 §25.1): alphanum and `-.!%*_+`'~`.
#[inline]
pub(crate) fn is_token(b: u8) -> bool {
    is(b, TOKEN)
}

/// Linear whitespace, including the CR/LF of a folded line.
#[inline]
pub(crate) fn is_lws(b: u8) -> bool {
    is(b, LWS)
}

/// Trims LWS at both ends.
pub(crate) fn trim_lws(s: &str) -> &str {
    let b = s.as_bytes();
    // Values are almost always trimmed already: answer that case without a loop.
    match (b.first(), b.last()) {
        (Some(&f), Some(&l)) if !is_lws(f) && !is_lws(l) => return s,
        (None, _) => return s,
        _ => {}
    }
    let start = span_of(b, LWS);
    let end = b.iter().rposition(|&c| !is_lws(c)).map_or(start, |e| e + 1);
    // Both ends are at ASCII bytes (or the string ends), so these are char boundaries.
    s.get(start..end.max(start)).unwrap_or("")
}

/// (Always inlined: the usual answer is one byte test, cheaper than the call.)
#[inline(always)]
pub(crate) fn skip_lws(s: &str) -> &str {
    // Most separators have no LWS around them: a one-byte check answers that case.
    if !s.as_bytes().first().is_some_and(|&b| is_lws(b)) {
        return s;
    }
    let n = span_of(s.as_bytes(), LWS);
    s.get(n..).unwrap_or("")
}

/// Position of the first byte of `s` equal to `b`. Header fields and URI parts are short,
/// so a plain loop beats `memchr`'s dispatch here.
#[inline]
pub(crate) fn find_byte(s: &[u8], b: u8) -> Option<usize> {
    s.iter().position(|&c| c == b)
}

/// Position of the first byte of `s` equal to `x` or `y`: for the runs of tens of bytes
/// inside a value (a bracketed URI, a quoted string), where `memchr`'s dispatch costs more
/// than the search. Sixteen bytes per step with SSE2 on x86_64; a slice of at least
/// sixteen bytes ends with a step over its last sixteen (overlapping the previous step,
/// whose bytes held neither), so only shorter slices take the byte loop.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline]
pub(crate) fn find_either(s: &[u8], x: u8, y: u8) -> Option<usize> {
    use safe_arch::{
        bitor_m128i, cmp_eq_mask_i8_m128i, load_unaligned_m128i, move_mask_i8_m128i,
        set_splat_i8_m128i,
    };
    let (vx, vy) = (set_splat_i8_m128i(x as i8), set_splat_i8_m128i(y as i8));
    let hits = |chunk: &[u8; 16]| {
        let v = load_unaligned_m128i(chunk);
        move_mask_i8_m128i(bitor_m128i(
            cmp_eq_mask_i8_m128i(v, vx),
            cmp_eq_mask_i8_m128i(v, vy),
        ))
    };
    let (chunks, tail) = s.as_chunks::<16>();
    for (k, chunk) in chunks.iter().enumerate() {
        let m = hits(chunk);
        if m != 0 {
            return Some(16 * k + m.trailing_zeros() as usize);
        }
    }
    if tail.is_empty() {
        return None;
    }
    match s.last_chunk::<16>() {
        Some(last) => {
            let m = hits(last);
            (m != 0).then(|| s.len() - 16 + m.trailing_zeros() as usize)
        }
        None => tail.iter().position(|&c| c == x || c == y),
    }
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline]
pub(crate) fn find_either(s: &[u8], x: u8, y: u8) -> Option<usize> {
    s.iter().position(|&c| c == x || c == y)
}

/// The bytes of `chunk` that are not ASCII letters or digits, one bit each: sixteen at a
/// time with SSE2, each range tested by a signed compare after a bias. A superset of the
/// non-`token` bytes that costs a quarter of an exact test; callers look at the few
/// token punctuation bytes it also flags (`-.!%*_+`'~`) themselves.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline]
pub(crate) fn non_alnum16(chunk: &[u8; 16]) -> u16 {
    use safe_arch::{
        add_i8_m128i, bitor_m128i, cmp_lt_mask_i8_m128i, load_unaligned_m128i, m128i,
        move_mask_i8_m128i, set_splat_i8_m128i,
    };
    let v = load_unaligned_m128i(chunk);
    // Bytes `lo..lo + n`: after adding `0x80 - lo` they are the `n` smallest `i8` values.
    let range = |v: m128i, lo: u8, n: u8| {
        let shifted = add_i8_m128i(v, set_splat_i8_m128i(0x80u8.wrapping_sub(lo) as i8));
        cmp_lt_mask_i8_m128i(shifted, set_splat_i8_m128i((0x80 + n) as i8))
    };
    let letters = range(bitor_m128i(v, set_splat_i8_m128i(0x20)), b'a', 26);
    !(move_mask_i8_m128i(bitor_m128i(letters, range(v, b'0', 10))) as u16)
}

/// [`non_alnum16`] a byte at a time: the fallback off x86_64.
#[cfg_attr(all(target_arch = "x86_64", target_feature = "sse2"), allow(dead_code))]
pub(crate) fn non_alnum16_portable(chunk: &[u8; 16]) -> u16 {
    let mut bits = 0;
    for (i, &c) in chunk.iter().enumerate() {
        bits |= u16::from(!c.is_ascii_alphanumeric()) << i;
    }
    bits
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline]
pub(crate) fn non_alnum16(chunk: &[u8; 16]) -> u16 {
    non_alnum16_portable(chunk)
}

/// Parses `1*DIGIT` (leading zeros allowed) no larger than `max`.
pub(crate) fn parse_decimal(s: &str, max: u64) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    // Up to 19 digits cannot overflow a u64: no checked arithmetic per digit (ports,
    // sequence numbers and lengths are all this short).
    if s.len() <= 19 {
        let mut n: u64 = 0;
        for b in s.bytes() {
            let d = b.wrapping_sub(b'0');
            if d > 9 {
                return None;
            }
            n = n * 10 + u64::from(d);
        }
        return (n <= max).then_some(n);
    }
    let mut n: u64 = 0;
    for b in s.bytes() {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        if n > max {
            return None;
        }
    }
    Some(n)
}

/// Parses a whole value as a bounded decimal, telling "not a number" from "too large".
pub(crate) fn decimal_value(value: &str, max: u64) -> Result<u64, ValueError> {
    let v = trim_lws(value);
    if v.is_empty() {
        return Err(ValueError::Empty);
    }
    // Up to 19 digits cannot overflow a u64 (see `parse_decimal`).
    if v.len() <= 19 {
        let mut n: u64 = 0;
        for b in v.bytes() {
            let d = b.wrapping_sub(b'0');
            if d > 9 {
                return Err(ValueError::BadNumber);
            }
            n = n * 10 + u64::from(d);
        }
        return if n <= max {
            Ok(n)
        } else {
            Err(ValueError::NumberTooLarge)
        };
    }
    // One pass: a non-digit anywhere is "not a number" even after an overflow.
    let mut n: u64 = 0;
    let mut too_large = false;
    for b in v.bytes() {
        if !b.is_ascii_digit() {
            return Err(ValueError::BadNumber);
        }
        match n
            .checked_mul(10)
            .and_then(|x| x.checked_add(u64::from(b - b'0')))
        {
            Some(x) if x <= max => n = x,
            _ => too_large = true,
        }
    }
    if too_large {
        Err(ValueError::NumberTooLarge)
    } else {
        Ok(n)
    }
}

/// Splits a quoted string off the front of `s` (which must start with `"`). Returns the
/// whole quoted string including its quotes, and the rest.
pub(crate) fn split_quoted(s: &str) -> Result<(&str, &str), ValueError> {
    let n = quoted_len(s.as_bytes())?;
    Ok((&s[..n], &s[n..]))
}

/// Length of the quoted string (quotes included) at the front of `b`, which must start
/// with `"`.
#[inline]
pub(crate) fn quoted_len(b: &[u8]) -> Result<usize, ValueError> {
    debug_assert_eq!(b.first(), Some(&b'"'));
    let mut i = 1;
    while let Some(o) = b.get(i..).and_then(|r| find_either(r, b'"', b'\\')) {
        let at = i + o;
        if b[at] == b'"' {
            return Ok(at + 1);
        }
        i = at + 2;
    }
    Err(ValueError::UnterminatedQuote)
}

/// Removes the surrounding quotes and quoted-pair backslashes of a quoted string; a value
/// that is not quoted is returned as is.
pub fn unquote(s: &str) -> Cow<'_, str> {
    let Some(inner) = s.strip_prefix('"').and_then(|r| r.strip_suffix('"')) else {
        return Cow::Borrowed(s);
    };
    if !inner.contains('\\') {
        return Cow::Borrowed(inner);
    }
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Quotes `s` as a quoted-string, escaping `"` and `\`.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            // CR and LF cannot be quoted (quoted-pair excludes them): drop them so the
            // printed header stays one logical line.
            '\r' | '\n' => out.push(' '),
            _ => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Iterator over a comma-separated list whose elements are parsed by `parse`, which reads
/// one element off the front of its input and returns the rest. One pass, no pre-split.
pub(crate) struct ListIter<'a, T> {
    rest: Option<&'a str>,
    parse: fn(&'a str) -> Result<(T, &'a str), ValueError>,
}

impl<'a, T> ListIter<'a, T> {
    pub(crate) fn new(
        value: &'a str,
        parse: fn(&'a str) -> Result<(T, &'a str), ValueError>,
    ) -> Self {
        ListIter {
            rest: Some(value),
            parse,
        }
    }
}

impl<'a, T> Iterator for ListIter<'a, T> {
    type Item = Result<T, ValueError>;

    // Inlined into each list accessor, whose `parse` it then calls directly: left to
    // itself, the compiler's choice flips with unrelated changes elsewhere in the crate.
    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let s = skip_lws(self.rest.take()?);
        let (item, rest) = match (self.parse)(s) {
            Ok(x) => x,
            Err(e) => return Some(Err(e)),
        };
        let rest = skip_lws(rest);
        if rest.is_empty() {
            return Some(Ok(item));
        }
        match rest.strip_prefix(',') {
            Some(r) => {
                self.rest = Some(r);
                Some(Ok(item))
            }
            None => Some(Err(ValueError::TrailingGarbage)),
        }
    }
}

/// Iterator over the comma-separated elements of a header value, skipping commas inside
/// quoted strings and `<...>`. Elements are LWS-trimmed and may be empty.
#[derive(Clone, Debug)]
pub(crate) struct CommaSplit<'a> {
    rest: Option<&'a str>,
}

pub(crate) fn split_commas(s: &str) -> CommaSplit<'_> {
    CommaSplit { rest: Some(s) }
}

impl<'a> Iterator for CommaSplit<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let s = self.rest?;
        let bytes = s.as_bytes();
        let mut i = 0;
        // Jump between the only bytes that matter; most values have no quotes or brackets,
        // so this is one search per element.
        while let Some(off) = memchr::memchr3(b',', b'"', b'<', &bytes[i..]) {
            let at = i + off;
            match bytes[at] {
                b',' => {
                    self.rest = Some(&s[at + 1..]);
                    return Some(trim_lws(&s[..at]));
                }
                b'"' => {
                    // Skip to the closing quote, honouring backslash escapes.
                    let mut j = at + 1;
                    loop {
                        match bytes[j..].iter().position(|&c| c == b'"' || c == b'\\') {
                            None => {
                                j = bytes.len();
                                break;
                            }
                            Some(o) if bytes[j + o] == b'\\' => j += o + 2,
                            Some(o) => {
                                j += o + 1;
                                break;
                            }
                        }
                        if j >= bytes.len() {
                            break;
                        }
                    }
                    i = j.min(bytes.len());
                }
                _ => {
                    i = find_byte(&bytes[at..], b'>').map_or(bytes.len(), |o| at + o + 1);
                }
            }
        }
        self.rest = None;
        Some(trim_lws(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alnum_runs_match_the_byte_loop() {
        for len in 0..50 {
            for at in 0..=len {
                for bad in [b' ', b'@', 0xc3, b'<'] {
                    for filler in [b'a', b'.', b'7'] {
                        let mut s = vec![filler; len];
                        for (i, c) in s.iter_mut().enumerate() {
                            if i % 5 == 3 {
                                *c = b'-';
                            }
                        }
                        if at < len {
                            s[at] = bad;
                        }
                        for mask in [TOKEN, HOST, USER] {
                            assert_eq!(alnum_run(&s, |c| is(c, mask)), span_of(&s, mask));
                            for from in 0..=len {
                                assert_eq!(
                                    alnum_run_at(&s, from, |c| is(c, mask)),
                                    from + span_of(&s[from..], mask)
                                );
                            }
                        }
                        assert_eq!(
                            alnum_run(&s, |c| is_extra_class(c, CALLID)),
                            long_run_extra(&s, CALLID)
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn non_alnum_masks_are_exact() {
        for background in [b'a', b' ', b'~', 0xff] {
            for pos in 0..16 {
                for v in 0..=255u8 {
                    let mut chunk = [background; 16];
                    chunk[pos] = v;
                    let want = non_alnum16_portable(&chunk);
                    assert_eq!(non_alnum16(&chunk), want, "byte {v:#04x} at {pos}");
                    assert_eq!(want >> pos & 1 == 0, v.is_ascii_alphanumeric());
                }
            }
        }
    }

    #[test]
    fn find_either_finds_the_first_of_two_bytes() {
        for len in 0..50 {
            for at in 0..len {
                for (k, c) in [b'"', b'\\'].into_iter().enumerate() {
                    let mut s = vec![b'a'; len];
                    s[at] = c;
                    if at + 3 < len {
                        s[at + 3 - k] = b'\\';
                    }
                    assert_eq!(find_either(&s, b'"', b'\\'), Some(at), "{len} {at}");
                }
            }
            assert_eq!(find_either(&vec![b'a'; len], b'"', b'\\'), None);
        }
    }

    #[test]
    fn comma_split_respects_quotes_and_brackets() {
        let v: Vec<_> = split_commas(r#""a, \"b" <sip:x@y;p=1,2>, <sip:z> ,, c"#).collect();
        assert_eq!(v, vec![r#""a, \"b" <sip:x@y;p=1,2>"#, "<sip:z>", "", "c"]);
        let v: Vec<_> = split_commas(";;,;,,").collect();
        assert_eq!(v, vec![";;", ";", "", ""]);
    }

    /// The eight-at-a-time run agrees with a byte loop at every length and stop position.
    #[test]
    fn long_runs_match_a_byte_loop() {
        for len in 0..40 {
            for stop in 0..=len {
                for bad in [b' ', b';', b',', 0x80] {
                    let mut s = vec![b'a'; len];
                    if stop < len {
                        s[stop] = bad;
                    }
                    for mask in [GEN_VALUE, CALLID, GEN_VALUE | CALLID] {
                        let want = s
                            .iter()
                            .position(|&b| !is_extra_class(b, mask))
                            .unwrap_or(len);
                        assert_eq!(long_run_extra(&s, mask), want, "{len} {stop} {bad} {mask}");
                    }
                }
            }
        }
    }

    #[test]
    fn decimals() {
        assert_eq!(parse_decimal("0068", 255), Some(68));
        assert_eq!(parse_decimal("256", 255), None);
        assert_eq!(parse_decimal("99999999999999999999999", u64::MAX), None);
        assert_eq!(parse_decimal("-1", 255), None);
        assert_eq!(decimal_value(" 12 ", 100), Ok(12));
        assert_eq!(decimal_value("1000", 100), Err(ValueError::NumberTooLarge));
        assert_eq!(decimal_value("x", 100), Err(ValueError::BadNumber));
    }

    #[test]
    fn quoted_strings() {
        assert_eq!(
            split_quoted(r#""J Rosenberg \\\"" <x>"#),
            Ok((r#""J Rosenberg \\\"""#, " <x>"))
        );
        assert_eq!(split_quoted("\"open"), Err(ValueError::UnterminatedQuote));
        assert_eq!(unquote(r#""J Rosenberg \\\"""#), r#"J Rosenberg \""#);
        assert_eq!(unquote(&quote(r#"a"b\c"#)), r#"a"b\c"#);
    }
}
