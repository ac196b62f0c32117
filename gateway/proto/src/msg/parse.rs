//! The message splitter: one pass over the bytes, recording the start line, one span per
//! header field and the body. Nothing is allocated unless a header is folded (then the
//! buffer is copied once with the fold's CRLF turned into spaces, keeping offsets) or there
//! are more header fields than the inline capacity.
//!
//! The fast path finds each line's end in a structural index ([`Stops`]): a bit mask of
//! the control and non-ASCII bytes computed sixteen bytes at a time, whose set bits it
//! walks, and the colon with one sixteen-byte compare at the start of the line, so the
//! per-line work is a few bit operations rather than a scan. Two splitters share the framing rules: [`split_fast`] takes the common case
//! (well-formed, unfolded) and gives up on anything else; [`split_exact`] checks every rule
//! in order and is the only one that reports errors, so both the offsets of errors and the
//! spans of valid messages are the exact splitter's (a unit test compares the two).
//!
//! Framing rules: leading CRLFs are skipped (RFC 3261 §7.5); lines end in CRLF and a bare CR
//! or LF in the header section is an error; Content-Length frames the body and octets past it
//! are dropped (RFC 3261 §18.3, RFC 4475 §3.1.1.8); without Content-Length the body is the
//! rest of the buffer (datagram rule, RFC 4475 §3.4.1).

use bytes::{Bytes, BytesMut};
use memchr::memchr;
use smallvec::SmallVec;

use super::header::Code;
use super::scan::{alnum_run, find_byte, is_lws, is_token, parse_decimal, span_of, TOKEN};
use super::stops::{find_colon, Stops};
use super::{
    HeaderSpan, Message, ParseError, Span, StartLine, UriError, MAX_HEADERS, MAX_MESSAGE_LEN,
};

/// Where the next line ends.
enum Eol {
    /// Position of the CR of a CRLF.
    At(usize),
    /// No CR or LF before the end of the buffer.
    None,
    /// A CR or LF that is not part of a CRLF, at this position.
    Bare(usize),
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// High bit of each byte of `w` below 0x0E (CR is 0x0D, LF 0x0A). Every such byte is
/// flagged; a byte 0x0E just above one may be flagged too (the borrow), so callers look
/// at the flagged bytes themselves.
#[inline]
fn controls(w: u64) -> u64 {
    w.wrapping_sub(ONES * 0x0E) & !w & HIGH
}

/// High bit of each byte of `w` equal to `c`, with the same caveat as [`controls`].
#[inline]
fn bytes_equal(w: u64, c: u8) -> u64 {
    let x = w ^ (ONES * u64::from(c));
    x.wrapping_sub(ONES) & !x & HIGH
}

/// Position of the first CR or LF at or after `from`, or `b.len()`. Header lines are short
/// (tens of bytes), so an inline word-at-a-time loop beats a `memchr` call, whose dispatch
/// and short-input handling cost more than the scan itself.
#[inline(always)]
fn find_line_break(b: &[u8], from: usize) -> usize {
    let (pairs, _) = b[from..].as_chunks::<16>();
    let mut i = from;
    for pair in pairs {
        let (lo, hi) = pair.split_at(8);
        let lo = controls(u64::from_le_bytes(lo.try_into().unwrap_or_default()));
        let hi = controls(u64::from_le_bytes(hi.try_into().unwrap_or_default()));
        // Two words per test halves the loop overhead on the long lines (Authorization,
        // Contact) that dominate the scan.
        if lo | hi != 0 {
            for (mut m, base) in [(lo, i), (hi, i + 8)] {
                while m != 0 {
                    let j = base + (m.trailing_zeros() / 8) as usize;
                    if matches!(b[j], b'\r' | b'\n') {
                        return j;
                    }
                    // HTAB or another control byte: not a line end.
                    m &= m - 1;
                }
            }
        }
        i += 16;
    }
    while i < b.len() && !matches!(b[i], b'\r' | b'\n') {
        i += 1;
    }
    i
}

/// Whether `s` holds a CR or LF (the printer's check that a value stays on its line).
pub(super) fn has_line_break(s: &[u8]) -> bool {
    find_line_break(s, 0) != s.len()
}

/// Finds the CR of the next CRLF at or after `from`. (A plain enum rather than a
/// `Result<_, ParseError>` keeps the hot loop free of drop glue.)
#[inline(always)]
fn find_crlf(b: &[u8], from: usize) -> Eol {
    let i = find_line_break(b, from);
    if i == b.len() {
        Eol::None
    } else if b[i] == b'\r' && b.get(i + 1) == Some(&b'\n') {
        Eol::At(i)
    } else {
        Eol::Bare(i)
    }
}

fn line_end(b: &[u8], from: usize) -> Result<usize, ParseError> {
    match find_crlf(b, from) {
        Eol::At(i) => Ok(i),
        Eol::None => Err(ParseError::UnterminatedHeaders),
        Eol::Bare(offset) => Err(ParseError::BareLineBreak { offset }),
    }
}

fn span(off: usize, len: usize) -> Span {
    // Offsets fit: the message is at most MAX_MESSAGE_LEN bytes, checked first.
    Span {
        off: off as u32,
        len: len as u32,
    }
}

fn check_version(v: &[u8]) -> Result<(), ParseError> {
    // Everyone writes it in capitals: one comparison before the case-insensitive one.
    if v == b"SIP/2.0" || v.eq_ignore_ascii_case(b"SIP/2.0") {
        return Ok(());
    }
    // A well-formed version we do not speak gets 505 (RFC 4475 §3.1.2.16).
    if v.len() > 4 && v[..4].eq_ignore_ascii_case(b"SIP/") {
        let rest = &v[4..];
        if let Some(dot) = memchr(b'.', rest) {
            let (maj, min) = (&rest[..dot], &rest[dot + 1..]);
            let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
            if digits(maj) && digits(min) {
                return Err(ParseError::BadVersion);
            }
        }
    }
    Err(ParseError::BadStartLine)
}

/// Whether `s` holds a byte `<= 0x20` or DEL: sixteen bytes at a time with SSE2 when
/// there are sixteen (the last step overlapping the one before), else a word at a time.
fn has_space_or_control(s: &[u8]) -> bool {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    if let Some(last) = s.last_chunk::<16>() {
        let (chunks, _) = s.as_chunks::<16>();
        return chunks.iter().any(space_or_control16) || space_or_control16(last);
    }
    has_space_or_control_words(s)
}

/// Whether `chunk` holds a byte `<= 0x20` (unsigned) or DEL.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
fn space_or_control16(chunk: &[u8; 16]) -> bool {
    use safe_arch::{
        bitor_m128i, cmp_eq_mask_i8_m128i, load_unaligned_m128i, min_u8_m128i, move_mask_i8_m128i,
        set_splat_i8_m128i,
    };
    let v = load_unaligned_m128i(chunk);
    let low = cmp_eq_mask_i8_m128i(min_u8_m128i(v, set_splat_i8_m128i(0x20)), v);
    let del = cmp_eq_mask_i8_m128i(v, set_splat_i8_m128i(0x7f));
    move_mask_i8_m128i(bitor_m128i(low, del)) != 0
}

/// [`has_space_or_control`] a word at a time: short slices, and every slice off x86_64.
fn has_space_or_control_words(s: &[u8]) -> bool {
    let (words, tail) = s.as_chunks::<8>();
    words.iter().any(|w| {
        let w = u64::from_le_bytes(*w);
        // Bytes below 0x21 and bytes equal to 0x7F; exact as a yes/no answer.
        (w.wrapping_sub(ONES * 0x21) & !w & HIGH) | bytes_equal(w, 0x7f) != 0
    }) || tail.iter().any(|&c| c <= b' ' || c == 0x7f)
}

fn parse_start_line(line: &[u8]) -> Result<StartLine, ParseError> {
    if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"SIP/") {
        let sp = find_byte(line, b' ').ok_or(ParseError::BadStartLine)?;
        check_version(&line[..sp])?;
        let rest = &line[sp + 1..];
        let code_end = find_byte(rest, b' ').unwrap_or(rest.len());
        let code = &rest[..code_end];
        if code.len() != 3 || !code.iter().all(u8::is_ascii_digit) {
            return Err(ParseError::BadStatusCode);
        }
        let status = code.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
        if !(100..=699).contains(&status) {
            return Err(ParseError::BadStatusCode);
        }
        let reason_off = (sp + 1 + code_end + 1).min(line.len());
        return Ok(StartLine::Response {
            status,
            reason: span(reason_off, line.len() - reason_off),
        });
    }
    // The usual request line: a token, one SP, a URI free of blanks and controls, one SP
    // and the version in capitals. Anything else takes the checks below, which give the
    // error.
    let method_len = alnum_run(line, is_token);
    if method_len > 0 && line.get(method_len) == Some(&b' ') && line.ends_with(b" SIP/2.0") {
        let uri = line.get(method_len + 1..line.len() - 8).unwrap_or_default();
        if !uri.is_empty() && !has_space_or_control(uri) {
            return Ok(StartLine::Request {
                method: span(0, method_len),
                uri: span(method_len + 1, uri.len()),
            });
        }
    }
    // The method and the version are short, so plain loops find their spaces sooner than
    // `memchr` calls would.
    let sp1 = find_byte(line, b' ').ok_or(ParseError::MissingStartLine)?;
    let method = &line[..sp1];
    if method.is_empty() || !method.iter().copied().all(is_token) {
        return Err(ParseError::BadMethod);
    }
    let sp2 = line
        .iter()
        .rposition(|&c| c == b' ')
        .ok_or(ParseError::MissingStartLine)?;
    if sp2 == sp1 {
        return Err(ParseError::BadStartLine);
    }
    check_version(&line[sp2 + 1..])?;
    let uri = &line[sp1 + 1..sp2];
    // Several SP between the elements (RFC 4475 §3.1.2.9): malformed; we take the strict
    // choice the RFC allows.
    if uri.is_empty() || uri[0] == b' ' || uri[uri.len() - 1] == b' ' {
        return Err(ParseError::BadStartLine);
    }
    // LWS inside the Request-URI (RFC 4475 §3.1.2.8): rejected rather than guessed at.
    if has_space_or_control(uri) {
        return Err(ParseError::BadRequestUri(UriError::IllegalChar));
    }
    Ok(StartLine::Request {
        method: span(0, sp1),
        uri: span(sp1 + 1, uri.len()),
    })
}

type Headers = SmallVec<[HeaderSpan; super::INLINE_HEADERS]>;

/// What splitting the header section found besides the spans.
struct Fields {
    /// Length of the start line and header section, including the empty line.
    head_len: usize,
    content_length: Option<usize>,
    folded: bool,
}

/// The header section from `from` (just after the start line, whose stops `stops` has
/// handed out): per line, the line end is the next stop ([`Stops`]) and the colon the
/// first in the line's first sixteen bytes ([`find_colon`]), so the only per-byte work
/// left is trimming the value's surrounding blanks. Returns `None`,
/// leaving the spans half-filled, for anything but a well-formed unfolded section;
/// [`split_exact`] then gives the answer, so this never decides an error and its hot loop
/// carries no error values.
///
/// The lines come from an iterator that `extend` drains, which writes each span without
/// a capacity check while the inline capacity lasts. (Not inlined: on its own the loop
/// keeps its state in registers.)
#[inline(never)]
fn split_fast<'b>(
    b: &'b [u8],
    from: usize,
    stops: Stops<'b>,
    headers: &mut Headers,
) -> Option<Fields> {
    let mut end = FastEnd::default();
    debug_assert!(std::ptr::eq(b, stops.bytes()));
    headers.extend(FastLines {
        stops,
        line: from,
        count: 0,
        end: &mut end,
    });
    Some(Fields {
        head_len: end.head_len?,
        content_length: end.content_length,
        folded: false,
    })
}

/// What [`FastLines`] found besides the spans.
#[derive(Default)]
struct FastEnd {
    /// Set when the empty line was reached: the section is well-formed.
    head_len: Option<usize>,
    content_length: Option<usize>,
}

/// [`split_fast`]'s lines: ends at the empty line (setting `end.head_len`) or at anything
/// the fast path does not take (leaving it `None`).
struct FastLines<'s, 'b> {
    /// Owned, so that the walk's state stays in registers. Its bytes are the message's:
    /// one copy of the slice, not two, competes for the registers.
    stops: Stops<'b>,
    /// Where the next line starts.
    line: usize,
    count: usize,
    end: &'s mut FastEnd,
}

impl Iterator for FastLines<'_, '_> {
    type Item = HeaderSpan;

    #[inline(always)]
    fn next(&mut self) -> Option<HeaderSpan> {
        let b = self.stops.bytes();
        let line = self.line;
        // The line's first stop: the CR of the empty line that ends the section, or a
        // stop after the line's colon. Anything else (a line end, HTAB, another control or
        // a non-ASCII byte before any colon) is for the exact splitter.
        let first = self.stops.next()?;
        if first == line {
            if b.get(first..first + 2) == Some(&b"\r\n"[..]) {
                self.end.head_len = Some(first + 2);
            }
            return None;
        }
        // The search starts after the name's first byte: a line starting with `:` (an
        // empty name) then takes that colon into its name, which fails the token check
        // below, and `i - 1` stays in the line.
        let i = find_colon(b, line + 1, first)?;
        // SP may precede the colon (RFC 3261 HCOLON); one test answers the usual case.
        let mut name_end = i;
        if b[i - 1] == b' ' {
            while name_end > line && b[name_end - 1] == b' ' {
                name_end -= 1;
            }
        }
        // At most 32 bytes ([`find_colon`]), so it fits the span's `u16`.
        let name_len = name_end - line;
        if name_len == 0 {
            return None;
        }
        let code = Code::lookup_at(b, line, name_len);
        if code.is_none() && !b[line..name_end].iter().all(|&c| is_token(c)) {
            return None;
        }
        // The line ends at a CRLF not followed by a fold. (A CRLF that ends the buffer
        // leaves the section unterminated, which is the exact splitter's to report.)
        // Usually the line's first stop is that CR, and one read answers both questions.
        let ends_line = |at: usize| matches!(b.get(at..at + 3), Some(&[b'\r', b'\n', next]) if next != b' ' && next != b'\t');
        let eol = if ends_line(first) {
            first
        } else if matches!(b[first], b'\r' | b'\n') {
            return None;
        } else {
            // HTAB, another control or a non-ASCII byte in the value: the line end is
            // the next CR or LF.
            let eol = self.stops.next_break()?;
            if !ends_line(eol) {
                return None;
            }
            eol
        };
        // The LF is the next stop: hand it out, so the next line's first stop is its own.
        self.stops.next();
        // The value holds no CR or LF (`eol` is the first), so LWS here is SP and HTAB.
        // Usually one SP follows the colon and the value ends at the CR: two tests answer
        // that (a byte above SP is not LWS; `eol` is past the colon, so `i + 2 <= eol`).
        let mut vs = i + 1;
        if b[vs] == b' ' && b[vs + 1] > b' ' {
            vs += 1;
        } else {
            while vs < eol && matches!(b[vs], b' ' | b'\t') {
                vs += 1;
            }
        }
        let mut ve = eol;
        if b[ve - 1] <= b' ' {
            while ve > vs && matches!(b[ve - 1], b' ' | b'\t') {
                ve -= 1;
            }
        }
        if code == Some(Code::ContentLength) {
            let v = &b[vs..ve];
            // Seven digits cannot overflow; longer values go to the exact splitter.
            if v.is_empty() || v.len() > 7 || !v.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let n = v.iter().fold(0usize, |n, d| n * 10 + usize::from(d - b'0'));
            if n > MAX_MESSAGE_LEN || self.end.content_length.is_some_and(|first| first != n) {
                return None;
            }
            self.end.content_length = Some(n);
        }
        if self.count == MAX_HEADERS {
            return None;
        }
        self.count += 1;
        self.line = eol + 2;
        Some(HeaderSpan {
            code,
            name_len: name_len as u16,
            name_off: line as u32,
            value: span(vs, ve - vs),
        })
    }
}

/// The header section from `from`, line by line with every framing check in order: the
/// reference for [`split_fast`] and the source of every framing error after the start line.
fn split_exact(b: &[u8], from: usize, headers: &mut Headers) -> Result<Fields, ParseError> {
    let len = b.len();
    let mut folded = false;
    let mut content_length: Option<usize> = None;
    let mut pos = from;
    loop {
        if pos >= len {
            return Err(ParseError::UnterminatedHeaders);
        }
        if b[pos] == b'\r' && b.get(pos + 1) == Some(&b'\n') {
            pos += 2;
            break;
        }
        if b[pos] == b' ' || b[pos] == b'\t' {
            return Err(ParseError::OrphanContinuation { offset: pos });
        }
        let line = pos;
        let mut eol = line_end(b, pos)?;
        while matches!(b.get(eol + 2), Some(b' ' | b'\t')) {
            folded = true;
            eol = line_end(b, eol + 2)?;
        }
        // One pass over the name validates it as a token and finds where it ends;
        // SP/HTAB may precede the colon (RFC 3261 HCOLON).
        let name_len = span_of(&b[line..eol], TOKEN);
        let name_end = line + name_len;
        let mut colon = name_end;
        while colon < eol && matches!(b[colon], b' ' | b'\t') {
            colon += 1;
        }
        if name_len == 0 || name_len > usize::from(u16::MAX) || colon >= eol || b[colon] != b':' {
            return Err(ParseError::HeaderNameInvalid { offset: line });
        }
        let name = &b[line..name_end];
        let mut vs = colon + 1;
        let mut ve = eol;
        while vs < ve && is_lws(b[vs]) {
            vs += 1;
        }
        while ve > vs && is_lws(b[ve - 1]) {
            ve -= 1;
        }
        let code = Code::lookup_at(b, line, name.len());
        if code == Some(Code::ContentLength) {
            let v = &b[vs..ve];
            if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
                return Err(ParseError::BadContentLength);
            }
            let s = std::str::from_utf8(v).map_err(|_| ParseError::BadContentLength)?;
            let n = parse_decimal(s, MAX_MESSAGE_LEN as u64).ok_or(ParseError::BadContentLength)?
                as usize;
            match content_length {
                Some(first) if first != n => {
                    return Err(ParseError::ConflictingContentLength { first, second: n })
                }
                _ => content_length = Some(n),
            }
        }
        if headers.len() == MAX_HEADERS {
            return Err(ParseError::TooManyHeaders { max: MAX_HEADERS });
        }
        headers.push(HeaderSpan {
            code,
            name_len: name.len() as u16,
            name_off: line as u32,
            value: span(vs, ve - vs),
        });
        pos = eol + 2;
    }
    Ok(Fields {
        head_len: pos,
        content_length,
        folded,
    })
}

impl Message {
    /// Parses exactly one message from `buf` (a UDP datagram or one framed stream message).
    ///
    /// Only the framing is checked here: start line, header lines, Content-Length, UTF-8.
    /// Typed header values are parsed on access, so a message with, say, a malformed Contact
    /// still parses and its Via can be used to answer 400; [`Message::check`] runs every
    /// check a server does before accepting a message.
    pub fn parse(buf: Bytes) -> Result<Message, ParseError> {
        if buf.len() > MAX_MESSAGE_LEN {
            return Err(ParseError::MessageTooLarge {
                len: buf.len(),
                max: MAX_MESSAGE_LEN,
            });
        }
        let mut start = 0;
        while buf[start..].starts_with(b"\r\n") {
            start += 2;
        }
        if start == buf.len() {
            return Err(ParseError::Empty);
        }
        let mut buf = if start == 0 { buf } else { buf.slice(start..) };
        let b: &[u8] = &buf;
        let len = b.len();

        let mut stops = Stops::new(b);
        let sl_end = stops.next_break().unwrap_or(len);
        if b.get(sl_end..sl_end + 2) != Some(&b"\r\n"[..]) {
            return Err(ParseError::MissingStartLine);
        }
        // Its LF: the header lines' stops come next.
        stops.next();
        let start_line = parse_start_line(&b[..sl_end])?;

        let mut headers: Headers = SmallVec::new();
        let from = sl_end + 2;
        // The fast splitter answers every well-formed, unfolded header section; anything it
        // does not recognise (errors, folds, bare CR) goes to the exact one, which finds
        // the same spans and reports the first error with its offset.
        let fields = match split_fast(b, from, stops, &mut headers) {
            Some(f) => f,
            None => {
                headers.clear();
                split_exact(b, from, &mut headers)?
            }
        };
        let Fields {
            head_len,
            content_length,
            folded,
        } = fields;
        let (body, msg_end) = match content_length {
            Some(cl) => {
                let got = len - head_len;
                if cl > got {
                    return Err(ParseError::BodyTruncated { expected: cl, got });
                }
                (span(head_len, cl), head_len + cl)
            }
            None => (span(head_len, len - head_len), len),
        };
        if folded {
            buf = unfold(&buf[..msg_end], head_len);
        } else {
            buf.truncate(msg_end);
        }
        let head = match bytestring::ByteString::try_from(buf.slice(..head_len)) {
            Ok(h) => h,
            Err(e) => {
                return Err(ParseError::InvalidUtf8 {
                    offset: start + e.valid_up_to(),
                })
            }
        };
        Ok(Message {
            buf,
            head,
            start: start_line,
            headers,
            body,
            content_length,
            head_len: head_len as u32,
            to_tag_checked: None,
            checked: std::sync::OnceLock::new(),
        })
    }
}

/// Copies the message with every fold (CRLF followed by SP/HTAB) in the header section
/// replaced by two spaces. Offsets stay valid and values read as one line, which is what a
/// fold means (RFC 3261 §7.3.1).
fn unfold(msg: &[u8], head_len: usize) -> Bytes {
    let mut out = BytesMut::from(msg);
    let head = &mut out[..head_len];
    let mut i = 0;
    while let Some(p) = memchr(b'\r', &head[i..]) {
        let p = i + p;
        if p + 2 < head.len() && head[p + 1] == b'\n' && matches!(head[p + 2], b' ' | b'\t') {
            head[p] = b' ';
            head[p + 1] = b' ';
        }
        i = p + 1;
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::HeaderName;

    fn p(s: &str) -> Result<Message, ParseError> {
        Message::parse(Bytes::copy_from_slice(s.as_bytes()))
    }

    const REG: &str = "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
        Call-ID: a@b\r\nl: 3\r\n\r\nabcTRAILING";

    #[test]
    fn splits_start_line_headers_and_body() {
        let m = p(REG).expect("valid");
        assert_eq!(m.method_str(), Some("REGISTER"));
        assert_eq!(m.request_uri_str(), Some("sip:example.com"));
        assert_eq!(m.header(HeaderName::CallId), Some("a@b"));
        assert_eq!(m.body(), b"abc");
        assert_eq!(m.content_length(), Some(3));
        assert!(m.as_bytes().ends_with(b"abc"));
    }

    #[test]
    fn skips_leading_crlf_and_rejects_empty() {
        assert!(p(&format!("\r\n\r\n{REG}")).is_ok());
        assert_eq!(p("").err(), Some(ParseError::Empty));
        assert_eq!(p("\r\n\r\n").err(), Some(ParseError::Empty));
    }

    #[test]
    fn framing_errors() {
        let base = "OPTIONS sip:a SIP/2.0\r\n";
        assert_eq!(p(base).err(), Some(ParseError::UnterminatedHeaders));
        assert_eq!(
            p(&format!("{base}Via x\r\n\r\n")).err(),
            Some(ParseError::HeaderNameInvalid { offset: 23 })
        );
        assert_eq!(
            p(&format!("{base}Bad Name: x\r\n\r\n")).err(),
            Some(ParseError::HeaderNameInvalid { offset: 23 })
        );
        assert_eq!(
            p(&format!("{base} folded: x\r\n\r\n")).err(),
            Some(ParseError::OrphanContinuation { offset: 23 })
        );
        assert_eq!(
            p(&format!("{base}A: b\nC: d\r\n\r\n")).err(),
            Some(ParseError::BareLineBreak { offset: 27 })
        );
        assert_eq!(
            p(&format!("{base}l: 5\r\n\r\nab")).err(),
            Some(ParseError::BodyTruncated {
                expected: 5,
                got: 2
            })
        );
        assert_eq!(
            p(&format!("{base}l: 1\r\nl: 1\r\n\r\na")).map(|m| m.body().len()),
            Ok(1)
        );
        assert_eq!(
            p(&format!("{base}l: 99999999999999999999\r\n\r\n")).err(),
            Some(ParseError::BadContentLength)
        );
        assert_eq!(
            p("OPTIONS sip:a SIP/2.0").err(),
            Some(ParseError::MissingStartLine)
        );
        assert_eq!(
            p("garbage\r\n\r\n").err(),
            Some(ParseError::MissingStartLine)
        );
        assert!(matches!(
            Message::parse(Bytes::from(vec![b'a'; MAX_MESSAGE_LEN + 1])),
            Err(ParseError::MessageTooLarge { .. })
        ));
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
        assert_eq!(
            p(&format!("{base}{many}\r\n")).err(),
            Some(ParseError::TooManyHeaders { max: MAX_HEADERS })
        );
        let mut bad = format!("{base}X: ").into_bytes();
        bad.extend_from_slice(&[0xff, b'\r', b'\n', b'\r', b'\n']);
        assert_eq!(
            Message::parse(Bytes::from(bad)).err(),
            Some(ParseError::InvalidUtf8 { offset: 26 })
        );
    }

    #[test]
    fn start_lines() {
        assert_eq!(
            p("SIP/2.0 180 Ringing\r\n\r\n").map(|m| m.status()),
            Ok(Some(180))
        );
        assert_eq!(
            p("SIP/2.0 180\r\n\r\n").map(|m| m.reason().map(str::to_owned)),
            Ok(Some(String::new()))
        );
        assert_eq!(
            p("SIP/2.0 99 Low\r\n\r\n").err(),
            Some(ParseError::BadStatusCode)
        );
        assert_eq!(
            p("SIP/2.0 700 High\r\n\r\n").err(),
            Some(ParseError::BadStatusCode)
        );
        assert_eq!(
            p("SIP/3.0 200 OK\r\n\r\n").err(),
            Some(ParseError::BadVersion)
        );
        assert_eq!(
            p("sip/2.0 200 OK\r\n\r\n").map(|m| m.status()),
            Ok(Some(200))
        );
        assert_eq!(
            p("INV<ITE sip:a SIP/2.0\r\n\r\n").err(),
            Some(ParseError::BadMethod)
        );
        assert_eq!(
            p("INVITE sip:a\r\n\r\n").err(),
            Some(ParseError::BadStartLine)
        );
        assert_eq!(
            p("INVITE sip:a HTTP/1.1\r\n\r\n").err(),
            Some(ParseError::BadStartLine)
        );
    }

    /// The fast splitter must agree with the exact one wherever it answers: every
    /// single-byte insertion of a line-break, blank, colon, control or non-ASCII byte into
    /// a message with a known, an unknown and a Content-Length header, behind a first line
    /// of every length up to two of the structural index's blocks, so that each byte
    /// falls in every position of a block.
    #[test]
    fn fast_split_agrees_with_exact_split() {
        let base = b"Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\nX-Custom-Header-Long : a\tb \r\n\
                     l: 3\r\nCall-ID: 0123456789abcdef0123456789\r\n\r\nabc";
        let mut cases = 0;
        for pad in 0..128 {
            let mut padded = format!("X-Pad: {}\r\n", "p".repeat(pad)).into_bytes();
            padded.extend_from_slice(base);
            for at in 0..=padded.len() {
                // Behind the first line only the insertions into the other lines are new.
                if pad > 0 && at < padded.len() - base.len() {
                    continue;
                }
                for ins in [
                    &b"\r"[..],
                    b"\n",
                    b"\r\n",
                    b" ",
                    b"\t",
                    b":",
                    b"\r\n ",
                    b"\x01",
                    b"\xc3",
                ] {
                    let mut b = padded[..at].to_vec();
                    b.extend_from_slice(ins);
                    b.extend_from_slice(&padded[at..]);
                    let mut fast = Headers::new();
                    let Some(f) = split_fast(&b, 0, Stops::new(&b), &mut fast) else {
                        continue;
                    };
                    let mut exact = Headers::new();
                    let e = split_exact(&b, 0, &mut exact).expect("fast split only what is valid");
                    assert_eq!(
                        (f.head_len, f.content_length, f.folded, format!("{fast:?}")),
                        (e.head_len, e.content_length, e.folded, format!("{exact:?}")),
                        "{}",
                        String::from_utf8_lossy(&b)
                    );
                    cases += 1;
                }
            }
        }
        assert!(
            cases > 128 * base.len(),
            "the fast splitter answers most cases"
        );
    }

    /// Names too long for the fast splitter's colon search are the exact splitter's.
    #[test]
    fn long_names_take_the_exact_split() {
        for n in [31, 32, 33, 40, 300] {
            let name = "X".repeat(n);
            let b = format!("{name}: v\r\nVia: SIP/2.0/UDP h\r\n\r\n").into_bytes();
            let mut fast = Headers::new();
            let f = split_fast(&b, 0, Stops::new(&b), &mut fast);
            assert_eq!(f.is_some(), n <= 32, "{n}");
            let mut exact = Headers::new();
            split_exact(&b, 0, &mut exact).expect("valid");
            assert_eq!(exact[0].name_len as usize, n);
            let m = p(&format!(
                "OPTIONS sip:a SIP/2.0\r\n{}",
                String::from_utf8_lossy(&b)
            ))
            .expect("valid");
            assert_eq!(
                m.header(HeaderName::parse(&name).expect("token")),
                Some("v")
            );
        }
    }

    /// Both screens agree with the definition for every byte value at every position of
    /// slices of every length up to 40.
    #[test]
    fn space_or_control_screens_are_exact() {
        for len in 1..40 {
            for pos in 0..len {
                for v in 0..=255u8 {
                    let mut s = vec![b'a'; len];
                    s[pos] = v;
                    let want = v <= b' ' || v == 0x7f;
                    assert_eq!(has_space_or_control(&s), want, "{len} {pos} {v:#x}");
                    assert_eq!(has_space_or_control_words(&s), want, "{len} {pos} {v:#x}");
                }
            }
        }
    }

    #[test]
    fn folds_become_spaces_in_place() {
        let m = p("OPTIONS sip:a SIP/2.0\r\nSubject: one\r\n two\r\n\r\n").expect("folded");
        assert_eq!(m.header(HeaderName::Subject), Some("one   two"));
        assert_eq!(m.as_bytes().len(), 45, "same length as the input");
    }
}
