//! The auth-param list lexer shared by challenges and credentials.
//!
//! It turns a WWW-Authenticate / Authorization header value into schemes with their
//! `name=value` parameters (quoted-string escapes removed), and writes values back with the
//! quoting the grammar needs. It knows nothing about Digest: `challenge.rs` and
//! `credentials.rs` give the parameters meaning. The grammar is RFC 7235 §2.1 / RFC 3261 §25.1
//! (`challenge = auth-scheme [ 1*SP ( token68 / #auth-param ) ]`), read leniently where real
//! servers are known to deviate (unquoted values with non-token characters) and printed
//! strictly.

use std::borrow::Cow;
use std::fmt;

use super::ParseError;

/// One `name=value` parameter as it appeared on the wire, with quoting removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthParam {
    /// The parameter name, in the case it was received (compare it case-insensitively).
    pub name: String,
    /// The value, unescaped if it was a quoted-string.
    pub value: String,
}

/// One challenge or credentials item: a scheme and what followed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawItem {
    pub scheme: String,
    pub body: RawBody,
}

/// What follows the scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RawBody {
    /// An auth-param list (possibly empty).
    Params(Vec<AuthParam>),
    /// A token68 blob (`Basic`/`Bearer` style); never valid for Digest.
    Token68(String),
}

const fn token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

/// Byte classes of the lexer's loops as tables, so that each byte costs one load.
const fn class_table(quoted_stop: bool) -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = if quoted_stop {
            matches!(b, b'"' | b'\\' | b'\r' | b'\n')
        } else {
            token_char(b)
        };
        i += 1;
    }
    t
}

static TOKEN_CHARS: [bool; 256] = class_table(false);
/// Bytes [`push_quoted`] must escape or replace: `"`, `\\` and controls other than HTAB.
static QUOTE_SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b == b'"' || b == b'\\' || (b.is_ascii_control() && b != b'\t');
        i += 1;
    }
    t
};
/// Bytes that end a run of ordinary characters inside a quoted-string.
static QUOTED_STOP: [bool; 256] = class_table(true);

/// Length of the run of bytes at the start of `s` that are ordinary inside a quoted-string
/// (not `"`, `\\`, CR or LF). Whole words are tested at once with the classic "has a zero
/// byte" bit trick (exact as a yes/no answer), and only the word holding a stop byte is
/// looked at byte by byte: nonces and digests are dozens of bytes long.
fn quoted_run(s: &[u8]) -> usize {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    // High bit set in each byte of `w` equal to `c` (and possibly above one): no branch.
    let eq = |w: u64, c: u8| {
        let x = w ^ (LO * u64::from(c));
        x.wrapping_sub(LO) & !x & HI
    };
    let mut i = 0;
    for chunk in s.chunks_exact(8) {
        let mut b = [0u8; 8];
        b.copy_from_slice(chunk);
        let w = u64::from_le_bytes(b);
        if eq(w, b'"') | eq(w, b'\\') | eq(w, b'\r') | eq(w, b'\n') != 0 {
            break;
        }
        i += 8;
    }
    let rest = &s[i..];
    i + rest
        .iter()
        .position(|&b| QUOTED_STOP[usize::from(b)])
        .unwrap_or(rest.len())
}

/// RFC 3261 `token` characters (a subset of the RFC 7230 tchar set that SIP allows).
#[inline]
pub(crate) fn is_token_char(b: u8) -> bool {
    TOKEN_CHARS[usize::from(b)]
}

/// True when `s` can be written without quotes.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_char)
}

fn is_token68_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
}

/// Upper bound on parameters per item, so a hostile header cannot make us build a huge list
/// (real challenges carry fewer than fifteen).
const MAX_PARAMS: usize = 64;

/// The auth-param lexer. It hands each parameter to a callback as borrowed slices of the
/// header value (a quoted value is copied only when it holds a quoted-pair), so a caller
/// that keeps a few parameters (credentials) allocates only for those, and one that keeps
/// all of them ([`parse_items`]) pays for exactly what it keeps.
pub(crate) struct Lexer<'a> {
    s: &'a [u8],
    src: &'a str,
    pos: usize,
}

/// What followed an item's scheme: parameters (already handed to the callback), or a
/// token68 blob.
pub(crate) enum ItemBody<'a> {
    Params,
    Token68(&'a str),
}

impl<'a> Lexer<'a> {
    pub(crate) fn new(value: &'a str) -> Self {
        Lexer {
            s: value.as_bytes(),
            src: value,
            pos: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    /// Whether the whole value has been read.
    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    /// Skips optional whitespace (SP / HTAB; header folding was undone by the message parser).
    fn ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn token(&mut self) -> Option<&'a str> {
        let start = self.pos;
        let rest = self.s.get(start..).unwrap_or_default();
        self.pos += rest
            .iter()
            .position(|&b| !is_token_char(b))
            .unwrap_or(rest.len());
        // Token characters are ASCII, so both ends are char boundaries.
        (self.pos > start).then(|| &self.src[start..self.pos])
    }

    /// If a token68 followed by end-of-item starts here, consumes and returns it.
    fn token68(&mut self) -> Option<&'a str> {
        let start = self.pos;
        let mut p = start;
        while self.s.get(p).copied().is_some_and(is_token68_char) {
            p += 1;
        }
        if p == start {
            return None;
        }
        while self.s.get(p) == Some(&b'=') {
            p += 1;
        }
        let mut q = p;
        while matches!(self.s.get(q), Some(b' ' | b'\t')) {
            q += 1;
        }
        if matches!(self.s.get(q), None | Some(b',')) {
            self.pos = p;
            Some(&self.src[start..p])
        } else {
            None
        }
    }

    /// A quoted-string, without its quotes and with quoted-pairs undone: borrowed from the
    /// value unless it holds a quoted-pair (which real Digest values almost never do).
    fn quoted(&mut self) -> Result<Cow<'a, str>, ParseError> {
        let open = self.pos;
        self.pos += 1; // the opening DQUOTE
        let run = self.pos;
        loop {
            // Jump over ordinary characters, eight at a time.
            self.pos += quoted_run(self.s.get(self.pos..).unwrap_or_default());
            match self.peek() {
                None => return Err(ParseError::UnterminatedQuote { at: open }),
                Some(b'"') => {
                    let v = &self.src[run..self.pos];
                    self.pos += 1;
                    return Ok(Cow::Borrowed(v));
                }
                Some(b'\\') => return self.quoted_escaped(open, run).map(Cow::Owned),
                Some(b'\r' | b'\n') => return Err(ParseError::InvalidChar { at: self.pos }),
                Some(_) => self.pos += 1,
            }
        }
    }

    /// The rest of a quoted-string from its first quoted-pair (at `self.pos`); `run` is
    /// where the text not yet copied starts.
    fn quoted_escaped(&mut self, open: usize, mut run: usize) -> Result<String, ParseError> {
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err(ParseError::UnterminatedQuote { at: open }),
                Some(b'"') => {
                    out.push_str(&self.src[run..self.pos]);
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    out.push_str(&self.src[run..self.pos]);
                    self.pos += 1;
                    // quoted-pair escapes one character, which may be multi-byte UTF-8.
                    let c = self.src[self.pos..]
                        .chars()
                        .next()
                        .ok_or(ParseError::UnterminatedQuote { at: open })?;
                    if c == '\r' || c == '\n' {
                        return Err(ParseError::InvalidChar { at: self.pos });
                    }
                    out.push(c);
                    self.pos += c.len_utf8();
                    run = self.pos;
                }
                Some(b'\r' | b'\n') => return Err(ParseError::InvalidChar { at: self.pos }),
                Some(_) => self.pos += 1,
            }
        }
    }

    /// An unquoted value. Lenient: anything up to whitespace, comma or quote, because servers
    /// are seen sending base64 nonces unquoted.
    fn bare_value(&mut self) -> Result<&'a str, ParseError> {
        let start = self.pos;
        let rest = self.s.get(start..).unwrap_or_default();
        self.pos += rest
            .iter()
            .position(|&b| b <= b' ' || b == b',' || b == b'"' || b == 0x7f)
            .unwrap_or(rest.len());
        if self.pos == start {
            return Err(ParseError::ExpectedValue { at: start });
        }
        // Stopped at an ASCII byte or the end, so this is a char boundary.
        Ok(&self.src[start..self.pos])
    }

    /// After a value: optional whitespace, then a comma (consumed; true) or the end (false).
    fn separator(&mut self) -> Result<bool, ParseError> {
        self.ows();
        match self.peek() {
            None => Ok(false),
            Some(b',') => {
                self.pos += 1;
                Ok(true)
            }
            Some(_) => Err(ParseError::InvalidChar { at: self.pos }),
        }
    }

    /// Skips whitespace and empty list elements (`#rule` allows `a, , b`); true if it
    /// consumed a comma.
    pub(crate) fn skip_empty_elements(&mut self) -> bool {
        let mut comma = false;
        loop {
            self.ows();
            if self.peek() == Some(b',') {
                self.pos += 1;
                comma = true;
            } else {
                return comma;
            }
        }
    }

    /// Reads one challenge or credentials item: returns its scheme and body, and hands each
    /// `name=value` parameter to `param` in order. (Inlined: with its callers it is one
    /// loop; left to the optimiser, whether it is depends on unrelated code.)
    #[inline]
    pub(crate) fn item(
        &mut self,
        param: &mut impl FnMut(&'a str, Cow<'a, str>),
    ) -> Result<(&'a str, ItemBody<'a>), ParseError> {
        let at = self.pos;
        let scheme = self.token().ok_or(ParseError::ExpectedScheme { at })?;
        match self.peek() {
            None | Some(b',') => return Ok((scheme, ItemBody::Params)),
            Some(b' ' | b'\t') => self.ows(),
            Some(_) => return Err(ParseError::InvalidChar { at: self.pos }),
        }
        if let Some(t) = self.token68() {
            return Ok((scheme, ItemBody::Token68(t)));
        }
        let mut count = 0;
        let mut after_comma = false;
        loop {
            after_comma |= self.skip_empty_elements();
            let name_at = self.pos;
            let Some(name) = self.token() else {
                if self.peek().is_none() {
                    break;
                }
                return Err(ParseError::InvalidChar { at: self.pos });
            };
            self.ows();
            if self.peek() != Some(b'=') {
                // A token not followed by '=' starts the next challenge, which must be
                // separated from this one by a comma: rewind to it.
                if !after_comma {
                    return Err(ParseError::InvalidChar { at: name_at });
                }
                self.pos = name_at;
                break;
            }
            self.pos += 1;
            self.ows();
            let value = match self.peek() {
                Some(b'"') => self.quoted()?,
                _ => Cow::Borrowed(self.bare_value()?),
            };
            if count == MAX_PARAMS {
                return Err(ParseError::TooManyParams);
            }
            count += 1;
            param(name, value);
            after_comma = self.separator()?;
            if !after_comma {
                break;
            }
        }
        Ok((scheme, ItemBody::Params))
    }
}

/// Upper bound on items (challenges) in one header value.
pub(crate) const MAX_ITEMS: usize = MAX_PARAMS;

/// Splits a header value into its challenges or credentials.
pub(crate) fn parse_items(value: &str) -> Result<Vec<RawItem>, ParseError> {
    let mut lx = Lexer::new(value);
    let mut items = Vec::new();
    loop {
        lx.skip_empty_elements();
        if lx.at_end() {
            break;
        }
        if items.len() == MAX_ITEMS {
            return Err(ParseError::TooManyParams);
        }
        // Each item ends at the end of the value, before a comma, or (after a comma) at the
        // next scheme, so the loop needs no separator check of its own.
        let mut params = Vec::new();
        let (scheme, body) = lx.item(&mut |name, value| {
            params.push(AuthParam {
                name: name.to_owned(),
                value: value.into_owned(),
            });
        })?;
        let body = match body {
            ItemBody::Params => RawBody::Params(params),
            ItemBody::Token68(t) => RawBody::Token68(t.to_owned()),
        };
        items.push(RawItem {
            scheme: scheme.to_owned(),
            body,
        });
    }
    if items.is_empty() {
        return Err(ParseError::Empty);
    }
    Ok(items)
}

/// Writes `value` as a quoted-string. Backslash, quote and control characters are escaped
/// with a quoted-pair; CR and LF cannot be escaped in SIP, so they become spaces rather
/// than letting a value inject a header line (the parser never yields them).
pub(crate) fn write_quoted(f: &mut fmt::Formatter<'_>, value: &str) -> fmt::Result {
    // Runs of plain characters go out in one write (a nonce or a response hash is one run):
    // a write per character made this the costliest part of printing credentials.
    fn special(b: u8) -> bool {
        b == b'"' || b == b'\\' || (b.is_ascii_control() && b != b'\t')
    }
    f.write_str("\"")?;
    let mut rest = value;
    while let Some(i) = rest.bytes().position(special) {
        f.write_str(&rest[..i])?;
        // `special` matches ASCII bytes only, so `i..i + 1` is one whole character.
        match rest.as_bytes()[i] {
            b'\r' | b'\n' => f.write_str(" ")?,
            _ => {
                f.write_str("\\")?;
                f.write_str(&rest[i..i + 1])?;
            }
        }
        rest = &rest[i + 1..];
    }
    f.write_str(rest)?;
    f.write_str("\"")
}

/// [`write_quoted`] into a `String`, for printers that build a header value directly
/// (the REGISTER path) without going through `fmt`.
pub(crate) fn push_quoted(out: &mut String, value: &str) {
    out.reserve(value.len() + 2);
    out.push('"');
    let mut rest = value;
    while let Some(i) = first_quote_special(rest.as_bytes()) {
        out.push_str(&rest[..i]);
        // `special` matches ASCII bytes only, so `i..i + 1` is one whole character.
        match rest.as_bytes()[i] {
            b'\r' | b'\n' => out.push(' '),
            _ => {
                out.push('\\');
                out.push_str(&rest[i..i + 1]);
            }
        }
        rest = &rest[i + 1..];
    }
    out.push_str(rest);
    out.push('"');
}

/// Where the first byte [`push_quoted`] must escape or replace is. Nonces and hashes are
/// dozens of bytes with none, so whole words are screened at once (as [`quoted_run`] does),
/// and only a word that may hold one is looked at byte by byte.
fn first_quote_special(s: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let eq = |w: u64, c: u8| {
        let x = w ^ (LO * u64::from(c));
        x.wrapping_sub(LO) & !x & HI
    };
    // Some byte below `n` (exact as a yes/no answer for n <= 128): the controls, and HTAB,
    // which is not special but only sends its word to the byte loop.
    let below = |w: u64, n: u8| w.wrapping_sub(LO * u64::from(n)) & !w & HI;
    let mut i = 0;
    for chunk in s.chunks_exact(8) {
        let mut b = [0u8; 8];
        b.copy_from_slice(chunk);
        let w = u64::from_le_bytes(b);
        if eq(w, b'"') | eq(w, b'\\') | eq(w, 0x7f) | below(w, 0x20) != 0 {
            break;
        }
        i += 8;
    }
    s[i..]
        .iter()
        .position(|&b| QUOTE_SPECIAL[usize::from(b)])
        .map(|p| i + p)
}

/// [`write_token_or_quoted`] into a `String`.
pub(crate) fn push_token_or_quoted(out: &mut String, value: &str) {
    if is_token(value) {
        out.push_str(value);
    } else {
        push_quoted(out, value);
    }
}

/// Writes `value` bare if it is a token, else quoted: for parameters whose grammar is a token
/// (`algorithm`, `nc`, `qop` in credentials), which some peers only accept unquoted.
pub(crate) fn write_token_or_quoted(f: &mut fmt::Formatter<'_>, value: &str) -> fmt::Result {
    if is_token(value) {
        f.write_str(value)
    } else {
        write_quoted(f, value)
    }
}

/// Writes `, name=value` (or `name=value` for the first) with the given value writer.
pub(crate) struct ParamWriter {
    first: bool,
}

impl ParamWriter {
    pub(crate) fn new() -> Self {
        Self { first: true }
    }

    fn name(&mut self, f: &mut fmt::Formatter<'_>, name: &str) -> fmt::Result {
        if !self.first {
            f.write_str(", ")?;
        }
        self.first = false;
        f.write_str(name)?;
        f.write_str("=")
    }

    pub(crate) fn quoted(&mut self, f: &mut fmt::Formatter<'_>, n: &str, v: &str) -> fmt::Result {
        self.name(f, n)?;
        write_quoted(f, v)
    }

    pub(crate) fn token(&mut self, f: &mut fmt::Formatter<'_>, n: &str, v: &str) -> fmt::Result {
        self.name(f, n)?;
        write_token_or_quoted(f, v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(item: &RawItem) -> Vec<(&str, &str)> {
        match &item.body {
            RawBody::Params(p) => p
                .iter()
                .map(|p| (p.name.as_str(), p.value.as_str()))
                .collect(),
            RawBody::Token68(_) => panic!("expected params"),
        }
    }

    #[test]
    fn splits_several_challenges_and_unescapes() {
        let v = r#"Digest realm="a\"b", nonce=xyz/+=,qop="auth", Basic realm="x", Bearer abc=="#;
        let items = parse_items(v).unwrap();
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].scheme, "Digest");
        assert_eq!(
            params(&items[0]),
            [("realm", "a\"b"), ("nonce", "xyz/+="), ("qop", "auth")]
        );
        assert_eq!(params(&items[1]), [("realm", "x")]);
        assert_eq!(items[2].body, RawBody::Token68("abc==".into()));
    }

    #[test]
    fn quoted_values_escape_quotes_backslashes_and_controls() {
        struct Q(&'static str);
        impl fmt::Display for Q {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_quoted(f, self.0)
            }
        }
        assert_eq!(Q("plain").to_string(), r#""plain""#);
        assert_eq!(Q("").to_string(), r#""""#);
        assert_eq!(Q(r#"a"b\c"#).to_string(), r#""a\"b\\c""#);
        // CR/LF cannot be quoted-pairs in SIP: spaces. Other controls are escaped, a tab and
        // non-ASCII text pass through.
        assert_eq!(
            Q("x\r\ny\u{1}z\tä\"").to_string(),
            "\"x  y\\\u{1}z\tä\\\"\""
        );
        // What is printed parses back to the value (minus the CR/LF).
        let printed = format!("Digest realm={}", Q("we\"ird\\ä"));
        let items = parse_items(&printed).unwrap();
        assert_eq!(params(&items[0]), [("realm", "we\"ird\\ä")]);
    }

    #[test]
    fn bare_scheme_and_empty_elements() {
        let items = parse_items(" , Negotiate , Digest  realm=r ,, nonce = \"n\" ").unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].body, RawBody::Params(vec![]));
        assert_eq!(params(&items[1]), [("realm", "r"), ("nonce", "n")]);
    }

    #[test]
    fn malformed_inputs_are_typed_errors() {
        assert_eq!(parse_items(""), Err(ParseError::Empty));
        assert_eq!(parse_items(" ,, "), Err(ParseError::Empty));
        assert_eq!(
            parse_items("Digest realm=\"abc"),
            Err(ParseError::UnterminatedQuote { at: 13 })
        );
        assert!(matches!(
            parse_items("Digest realm=\"a\\"),
            Err(ParseError::UnterminatedQuote { .. })
        ));
        // `realm=` alone is a valid token68; as a parameter it lacks a value.
        assert_eq!(
            parse_items("Digest realm=").unwrap()[0].body,
            RawBody::Token68("realm=".into())
        );
        assert!(matches!(
            parse_items("Digest a=b, realm="),
            Err(ParseError::ExpectedValue { .. })
        ));
        assert!(matches!(
            parse_items("Negotiate Digest a=b"),
            Err(ParseError::InvalidChar { .. })
        ));
        assert!(matches!(
            parse_items("\"Digest\""),
            Err(ParseError::ExpectedScheme { .. })
        ));
        assert!(matches!(
            parse_items("Digest realm=\"a\"b"),
            Err(ParseError::InvalidChar { .. })
        ));
        assert!(matches!(
            parse_items("Digest realm=\"a\r\n\""),
            Err(ParseError::InvalidChar { .. })
        ));
        assert!(matches!(
            parse_items("Digest@ realm=a"),
            Err(ParseError::InvalidChar { .. })
        ));
        let many = format!("Digest {}", vec!["a=b"; 100].join(","));
        assert_eq!(parse_items(&many), Err(ParseError::TooManyParams));
    }

    #[test]
    fn push_quoted_matches_write_quoted() {
        struct Q<'a>(&'a str, bool);
        impl fmt::Display for Q<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                if self.1 {
                    write_token_or_quoted(f, self.0)
                } else {
                    write_quoted(f, self.0)
                }
            }
        }
        let mut values: Vec<String> = [
            "plain",
            "",
            "a\"b\\c",
            "x\r\ny\u{1}z\tä\"",
            "MD5",
            "a b",
            "auth-int",
        ]
        .iter()
        .map(|v| v.to_string())
        .collect();
        // Every special byte (and HTAB, and non-ASCII) at every position of longer values.
        for len in [7, 8, 9, 16, 23, 40] {
            for pos in 0..len {
                for c in [
                    '"', '\\', '\r', '\n', '\u{0}', '\u{1f}', '\u{7f}', '\t', 'é',
                ] {
                    let mut v =
                        String::from(&"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH"[..len]);
                    v.replace_range(pos..pos + 1, &c.to_string());
                    values.push(v);
                }
            }
        }
        for v in values.iter().map(String::as_str) {
            let mut s = String::new();
            push_quoted(&mut s, v);
            assert_eq!(s, Q(v, false).to_string(), "{v:?}");
            s.clear();
            push_token_or_quoted(&mut s, v);
            assert_eq!(s, Q(v, true).to_string(), "{v:?}");
        }
    }

    #[test]
    fn quoted_run_stops_at_the_first_special_byte() {
        for len in 0..40 {
            for stop in [b'"', b'\\', b'\r', b'\n'] {
                let mut s = vec![b'a'; len];
                s.push(stop);
                s.extend_from_slice(b"xyz\"");
                assert_eq!(quoted_run(&s), len, "stop {stop} after {len}");
            }
            assert_eq!(quoted_run(&vec![b'\xe9'; len]), len, "no stop at all");
        }
    }

    #[test]
    fn utf8_inside_quotes_and_escapes() {
        let items = parse_items("Digest realm=\"h\u{e9}\\\u{e9}llo\"").unwrap();
        assert_eq!(params(&items[0]), [("realm", "h\u{e9}\u{e9}llo")]);
    }
}
