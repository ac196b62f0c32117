//! The two facts framing needs from a header section, found by a non-allocating scan.
//!
//! [`find_header_end`] locates the empty line that ends the header section; and
//! [`scan_content_length`] extracts the `Content-Length` value (long form or compact `l`,
//! case-insensitive, with whitespace before the colon and folded continuation lines allowed,
//! RFC 3261 §7.3.1). Everything else in the header section is left to the `msg` parser.

use super::FramingError;

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
                if name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l") {
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
