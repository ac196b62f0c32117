//! The auth-param list lexer shared by challenges and credentials.
//!
//! It turns a WWW-Authenticate / Authorization header value into schemes with their
//! `name=value` parameters (quoted-string escapes removed), and writes values back with the
//! quoting the grammar needs. It knows nothing about Digest: `challenge.rs` and
//! `credentials.rs` give the parameters meaning. The grammar is RFC 7235 §2.1 / RFC 3261 §25.1
//! (`challenge = auth-scheme [ 1*SP ( token68 / #auth-param ) ]`), read leniently where real
//! servers are known to deviate (unquoted values with non-token characters) and printed
//! strictly.

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

/// RFC 3261 `token` characters (a subset of the RFC 7230 tchar set that SIP allows).
pub(crate) fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
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

struct Lexer<'a> {
    s: &'a [u8],
    src: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    /// Skips optional whitespace (SP / HTAB; header folding was undone by the message parser).
    fn ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn token(&mut self) -> Option<&'a str> {
        let start = self.pos;
        while self.peek().is_some_and(is_token_char) {
            self.pos += 1;
        }
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

    fn quoted(&mut self) -> Result<String, ParseError> {
        let open = self.pos;
        self.pos += 1; // the opening DQUOTE
        let mut out = String::new();
        let mut run = self.pos;
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
        while let Some(b) = self.peek() {
            if b <= b' ' || b == b',' || b == b'"' || b == 0x7f {
                break;
            }
            self.pos += 1;
        }
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
    fn skip_empty_elements(&mut self) -> bool {
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

    fn item(&mut self) -> Result<RawItem, ParseError> {
        let at = self.pos;
        let scheme = self
            .token()
            .ok_or(ParseError::ExpectedScheme { at })?
            .to_owned();
        match self.peek() {
            None => {
                return Ok(RawItem {
                    scheme,
                    body: RawBody::Params(Vec::new()),
                })
            }
            Some(b' ' | b'\t') => self.ows(),
            Some(b',') => {
                return Ok(RawItem {
                    scheme,
                    body: RawBody::Params(Vec::new()),
                })
            }
            Some(_) => return Err(ParseError::InvalidChar { at: self.pos }),
        }
        if let Some(t) = self.token68() {
            return Ok(RawItem {
                scheme,
                body: RawBody::Token68(t.to_owned()),
            });
        }
        let mut params = Vec::new();
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
                _ => self.bare_value()?.to_owned(),
            };
            if params.len() == MAX_PARAMS {
                return Err(ParseError::TooManyParams);
            }
            params.push(AuthParam {
                name: name.to_owned(),
                value,
            });
            after_comma = self.separator()?;
            if !after_comma {
                break;
            }
        }
        Ok(RawItem {
            scheme,
            body: RawBody::Params(params),
        })
    }
}

/// Splits a header value into its challenges or credentials.
pub(crate) fn parse_items(value: &str) -> Result<Vec<RawItem>, ParseError> {
    let mut lx = Lexer {
        s: value.as_bytes(),
        src: value,
        pos: 0,
    };
    let mut items = Vec::new();
    loop {
        lx.skip_empty_elements();
        if lx.peek().is_none() {
            break;
        }
        if items.len() == MAX_PARAMS {
            return Err(ParseError::TooManyParams);
        }
        // Each item ends at the end of the value, before a comma, or (after a comma) at the
        // next scheme, so the loop needs no separator check of its own.
        items.push(lx.item()?);
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
    f.write_str("\"")?;
    for c in value.chars() {
        match c {
            '\r' | '\n' => f.write_str(" ")?,
            '"' | '\\' => write!(f, "\\{c}")?,
            c if c.is_ascii_control() && c != '\t' => write!(f, "\\{c}")?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
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
        write!(f, "{name}=")
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
    fn utf8_inside_quotes_and_escapes() {
        let items = parse_items("Digest realm=\"h\u{e9}\\\u{e9}llo\"").unwrap();
        assert_eq!(params(&items[0]), [("realm", "h\u{e9}\u{e9}llo")]);
    }
}
