//! The two facts framing needs from a header section, found by a non-allocating scan.
//!
//! [`find_header_end`] locates the empty line that ends the header section; and
//! [`scan_content_length`] extracts the `Content-Length` value (long form or compact `l`,
//! case-insensitive, with whitespace before the colon and folded continuation lines allowed,
//! RFC 3261 §7.3.1). Everything else in the header section is left to the `msg` parser.
//! `scan_head` finds both in one pass, for the datagram check.

use super::FramingError;
use crate::msg::stops::Stops;

const CRLF: &[u8] = b"\r\n";
const CRLFCRLF: &[u8] = b"\r\n\r\n";

/// The index of the first `\r\n` in `hay`. A `memchr` for line feeds (about one per header
/// line) with a look back at the byte before: `memmem::find` sets up a searcher on every call,
/// which cost more than the scan of a SIP line itself.
fn find_crlf(hay: &[u8]) -> Option<usize> {
    memchr::memchr_iter(b'\n', hay)
        .find(|&i| i > 0 && hay[i - 1] == b'\r')
        .map(|i| i - 1)
}

/// The index of the first `\r\n\r\n` in `hay`; see [`find_crlf`].
fn find_crlfcrlf(hay: &[u8]) -> Option<usize> {
    memchr::memchr_iter(b'\n', hay)
        .find(|&i| i >= 3 && hay[i - 3..=i] == *CRLFCRLF)
        .map(|i| i - 3)
}

/// Returns the index just past the `CRLFCRLF` that ends the header section of `buf`, searching
/// from `from` (which callers advance across reads so a slow header is not rescanned from the
/// start each time; it is clamped to `buf.len()`).
pub fn find_header_end(buf: &[u8], from: usize) -> Option<usize> {
    let from = from.min(buf.len());
    find_crlfcrlf(&buf[from..]).map(|i| from + i + CRLFCRLF.len())
}

/// Finds the `Content-Length` of a header section (start line included, final empty line
/// optional).
///
/// Returns `Ok(None)` when there is no `Content-Length` header. Several headers with the same
/// value are accepted (the length is unambiguous); differing values are
/// [`FramingError::ConflictingContentLength`]. A value too large for `usize` saturates to
/// `usize::MAX`, so the caller's size limit rejects it as too large.
pub fn scan_content_length(section: &[u8]) -> Result<Option<usize>, FramingError> {
    let mut scan = LengthScan::default();
    let mut line_start = 0;
    while line_start < section.len() {
        let line_end = find_crlf(&section[line_start..])
            .map(|i| line_start + i)
            .unwrap_or(section.len());
        if scan.line(section, line_start, line_end)? {
            return Ok(scan.found);
        }
        line_start = (line_end + CRLF.len()).min(section.len());
        if line_end == section.len() {
            break;
        }
    }
    scan.finish(section)
}

/// Finds, in one pass, both what [`find_header_end`] and [`scan_content_length`] find in
/// `section` (a datagram from its first byte that is not CR or LF): the length of the
/// header section up to and including its `CRLFCRLF`, and the Content-Length. The errors
/// are theirs, in their order: [`FramingError::UnterminatedHeaders`] without an empty
/// line, else the first Content-Length error.
///
/// Its line ends come from the parser's structural index ([`Stops`]), a bit mask of the
/// control bytes built sixty-four bytes at a time, where the two-pass form made two
/// `memchr` calls per header line; on a 401 or 200 from the registrar that was most of
/// the framing's cost.
pub(super) fn scan_head(section: &[u8]) -> Result<(usize, Option<usize>), FramingError> {
    let mut stops = Stops::new(section);
    let mut scan = LengthScan::default();
    let mut failed = None;
    let mut line_start = 0;
    while let Some(at) = stops.next() {
        // Every CRLF ends a line. Both its bytes are stops: at the CR, the LF is handed out
        // too, so each line costs one turn. (CRLFs cannot overlap, so this sees each, as
        // `find_crlf` line by line does.)
        if section[at] != b'\r' || section.get(at + 1) != Some(&b'\n') {
            continue;
        }
        stops.next();
        let line_end = at;
        if failed.is_none() {
            if let Err(e) = scan.line(section, line_start, line_end) {
                failed = Some(e);
            }
        }
        // The first line is not empty (it does not start with CR), so an empty line is the
        // one that ends the section: its CRLF completes the first `CRLFCRLF`.
        if line_end == line_start {
            return match failed {
                Some(e) => Err(e),
                None => Ok((at + 2, scan.found)),
            };
        }
        line_start = at + 2;
    }
    Err(FramingError::UnterminatedHeaders)
}

/// The Content-Length of a header section, fed one line at a time (without its CRLF) by
/// [`scan_content_length`] or [`scan_head`].
#[derive(Default)]
struct LengthScan {
    found: Option<usize>,
    /// The header currently being collected: (value start, value end) when its name is
    /// Content-Length, so continuation lines extend it; `None` for other headers.
    current: Option<(usize, usize)>,
    past_start_line: bool,
}

impl LengthScan {
    /// Takes the line `section[start..end]`; `Ok(true)` when it is the empty line that
    /// ends the header section.
    #[inline(always)]
    fn line(&mut self, section: &[u8], start: usize, end: usize) -> Result<bool, FramingError> {
        let line = &section[start..end];
        if !self.past_start_line {
            // The start line: never a header, and a continuation of it is not either.
            self.past_start_line = true;
            return Ok(false);
        }
        if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            // A folded continuation of the previous header's value.
            if let Some((_, e)) = self.current.as_mut() {
                *e = end;
            }
            return Ok(false);
        }
        // A new header (or the empty line): first finish the previous one.
        if let Some((s, e)) = self.current.take() {
            record(&mut self.found, parse_value(&section[s..e])?)?;
        }
        match line.first() {
            None => return Ok(true),
            // Only a name starting with `c` or `l` can be Content-Length (a name is not
            // preceded by blanks): the other lines skip the colon search.
            Some(b'c' | b'C' | b'l' | b'L') => {
                if let Some(colon) = memchr::memchr(b':', line) {
                    let name = trim_end_ws(&line[..colon]);
                    if name.eq_ignore_ascii_case(b"content-length")
                        || name.eq_ignore_ascii_case(b"l")
                    {
                        self.current = Some((start + colon + 1, end));
                    }
                }
            }
            Some(_) => {}
        }
        Ok(false)
    }

    /// The Content-Length of a section that ended without its empty line.
    fn finish(mut self, section: &[u8]) -> Result<Option<usize>, FramingError> {
        if let Some((s, e)) = self.current.take() {
            record(&mut self.found, parse_value(&section[s..e])?)?;
        }
        Ok(self.found)
    }
}

fn record(found: &mut Option<usize>, value: usize) -> Result<(), FramingError> {
    match *found {
        None => *found = Some(value),
        Some(first) if first == value => {}
        Some(first) => {
            return Err(FramingError::ConflictingContentLength {
                first,
                second: value,
            })
        }
    }
    Ok(())
}

fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn trim_end_ws(s: &[u8]) -> &[u8] {
    let end = s
        .iter()
        .rposition(|b| *b != b' ' && *b != b'\t')
        .map_or(0, |i| i + 1);
    &s[..end]
}

/// Parses `LWS* 1*DIGIT LWS*` (the value may span folded lines, so CR and LF count as
/// whitespace here).
fn parse_value(raw: &[u8]) -> Result<usize, FramingError> {
    let mut i = 0;
    while i < raw.len() && is_lws(raw[i]) {
        i += 1;
    }
    if raw.get(i) == Some(&b'-') {
        return Err(FramingError::NegativeContentLength);
    }
    let digits_start = i;
    let mut value: usize = 0;
    while i < raw.len() && raw[i].is_ascii_digit() {
        value = value
            .saturating_mul(10)
            .saturating_add(usize::from(raw[i] - b'0'));
        i += 1;
    }
    if i == digits_start {
        return Err(FramingError::InvalidContentLength);
    }
    if raw[i..].iter().any(|b| !is_lws(*b)) {
        return Err(FramingError::InvalidContentLength);
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn naive(hay: &[u8], needle: &[u8]) -> Option<usize> {
        hay.windows(needle.len()).position(|w| w == needle)
    }

    /// The Content-Length scan as it was before [`LengthScan`], line for line: the
    /// reference the one-pass [`scan_head`] is held to.
    fn two_pass_content_length(section: &[u8]) -> Result<Option<usize>, FramingError> {
        let mut found: Option<usize> = None;
        // The header currently being collected: (value start, value end) when its name is
        // Content-Length, so continuation lines extend it; `None` for other headers.
        let mut current: Option<(usize, usize)> = None;
        let mut first_line = true;

        let mut line_start = 0;
        while line_start < section.len() {
            let line_end = find_crlf(&section[line_start..])
                .map(|i| line_start + i)
                .unwrap_or(section.len());
            let line = &section[line_start..line_end];
            let next = (line_end + CRLF.len()).min(section.len());

            if first_line {
                // The start line: never a header, and a continuation of it is not either.
                first_line = false;
            } else if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
                // A folded continuation of the previous header's value.
                if let Some((_, end)) = current.as_mut() {
                    *end = line_end;
                }
            } else {
                // A new header (or the empty line): first finish the previous one.
                if let Some((start, end)) = current.take() {
                    record(&mut found, parse_value(&section[start..end])?)?;
                }
                if line.is_empty() {
                    break;
                }
                if let Some(colon) = memchr::memchr(b':', line) {
                    let name = trim_end_ws(&line[..colon]);
                    if name.eq_ignore_ascii_case(b"content-length")
                        || name.eq_ignore_ascii_case(b"l")
                    {
                        current = Some((line_start + colon + 1, line_end));
                    }
                }
            }
            line_start = next;
            if line_end == section.len() {
                break;
            }
        }
        if let Some((start, end)) = current {
            record(&mut found, parse_value(&section[start..end])?)?;
        }
        Ok(found)
    }

    /// What [`scan_head`] replaced: [`find_header_end`], then the Content-Length of the
    /// section it ends.
    fn two_pass(section: &[u8]) -> Result<(usize, Option<usize>), FramingError> {
        let end = find_header_end(section, 0).ok_or(FramingError::UnterminatedHeaders)?;
        Ok((end, two_pass_content_length(&section[..end])?))
    }

    /// Header sections built from the pieces framing cares about: CR, LF, folds, colons,
    /// Content-Length names in both forms and cases, digits, signs and other bytes.
    fn sections() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(&b"\r\n"[..]),
            Just(&b"\r"[..]),
            Just(&b"\n"[..]),
            Just(&b" "[..]),
            Just(&b"\t"[..]),
            Just(&b":"[..]),
            Just(&b"Content-Length"[..]),
            Just(&b"content-LENGTH "[..]),
            Just(&b"l"[..]),
            Just(&b"L"[..]),
            Just(&b"Call-ID"[..]),
            Just(&b"0"[..]),
            Just(&b"12"[..]),
            Just(&b"-"[..]),
            Just(&b"x"[..]),
            Just(&b"\xc3\xa9"[..]),
        ];
        (
            prop_oneof![Just(&b"S"[..]), Just(&b"SIP/2.0 200 OK"[..])],
            proptest::collection::vec(piece, 0..40),
        )
            .prop_map(|(first, pieces)| {
                let mut v = first.to_vec();
                for p in pieces {
                    v.extend_from_slice(p);
                }
                v
            })
    }

    proptest! {
        #[test]
        fn one_pass_agrees_with_two_passes(section in sections(), tail in 0usize..80) {
            // Bodies of any length after the section, so the index's last block varies.
            let mut data = section;
            data.extend(std::iter::repeat_n(b'a', tail));
            prop_assert_eq!(scan_head(&data), two_pass(&data));
            prop_assert_eq!(
                scan_content_length(&data),
                two_pass_content_length(&data)
            );
        }
    }

    #[test]
    fn one_pass_on_edge_cases() {
        let cases: [&[u8]; 9] = [
            b"S\r\n\r\n",
            b"S\r\nl: 3\r\n\r\nabc",
            b"S\r\nContent-Length: 1\r\nl: 2\r\n\r\n",
            b"S\r\nContent-Length: x\r\nno end",
            b"S\r\nContent-Length: 1\r\n 2\r\n\r\n",
            b"S\r\nContent-Length: -1\r\nl: x\r\n\r\n",
            b"S\n\r\n\r\n",
            b"S\r\nX: a\r\rl: 5\r\n\r\n",
            b"S\r\nCONTENT-length\t : 007 \r\n\r\n",
        ];
        for c in cases {
            assert_eq!(
                scan_head(c),
                two_pass(c),
                "{:?}",
                String::from_utf8_lossy(c)
            );
        }
    }

    proptest! {
        #[test]
        fn line_searches_agree_with_a_naive_search(
            hay in proptest::collection::vec(
                prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'a'), any::<u8>()],
                0..200,
            )
        ) {
            prop_assert_eq!(find_crlf(&hay), naive(&hay, CRLF));
            prop_assert_eq!(find_crlfcrlf(&hay), naive(&hay, CRLFCRLF));
        }
    }

    #[test]
    fn line_searches_on_edge_cases() {
        for (hay, crlf, end) in [
            (&b""[..], None, None),
            (b"\n\r\n", Some(1), None),
            (b"\r\r\n\n\r\n\r\n", Some(1), Some(4)),
            (b"a\r\n\r\n", Some(1), Some(1)),
            (b"\n\n\r\r\n", Some(3), None),
        ] {
            assert_eq!(find_crlf(hay), crlf, "{hay:?}");
            assert_eq!(find_crlfcrlf(hay), end, "{hay:?}");
        }
    }
}
