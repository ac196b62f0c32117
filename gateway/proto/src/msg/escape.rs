//! `%HH` escapes in URIs (RFC 3261 §19.1.2, §25.1 `escaped`).
//!
//! Decoding happens exactly once, on access: `value%2541` decodes to `value%41`, never to
//! `valueA` (RFC 4475 §3.1.1.3). A `%` that does not start a valid escape is kept literally,
//! which is how RFC 4475 §3.1.1.5 treats `%` outside the escape productions.

use std::borrow::Cow;

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%HH` escapes once. Borrowed when `s` has no escapes.
pub fn decode_bytes(s: &str) -> Cow<'_, [u8]> {
    let b = s.as_bytes();
    if !b.contains(&b'%') {
        return Cow::Borrowed(b);
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex_val),
                b.get(i + 2).copied().and_then(hex_val),
            ) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    Cow::Owned(out)
}

/// Decodes `%HH` escapes once into text. Escapes that do not form UTF-8 become U+FFFD.
pub fn decode(s: &str) -> Cow<'_, str> {
    match decode_bytes(s) {
        Cow::Borrowed(_) => Cow::Borrowed(s),
        Cow::Owned(v) => match String::from_utf8(v) {
            Ok(s) => Cow::Owned(s),
            Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
        },
    }
}

use super::scan::{is, HEADER, PARAM, USER};

/// Characters allowed unescaped in the user part.
pub(crate) fn is_user_char(b: u8) -> bool {
    is(b, USER)
}

/// Characters allowed unescaped in a URI parameter name or value (`paramchar`).
pub(crate) fn is_param_char(b: u8) -> bool {
    is(b, PARAM)
}

/// Characters allowed unescaped in a URI header name or value.
pub(crate) fn is_header_char(b: u8) -> bool {
    is(b, HEADER)
}

/// Escapes every byte of `s` for which `allowed` is false.
pub fn encode(s: &str, allowed: fn(u8) -> bool) -> Cow<'_, str> {
    if s.bytes().all(allowed) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for b in s.bytes() {
        if allowed(b) {
            out.push(char::from(b));
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
    Cow::Owned(out)
}

/// Escapes a user part.
pub fn encode_user(s: &str) -> Cow<'_, str> {
    encode(s, is_user_char)
}

/// Escapes a URI parameter name or value.
pub fn encode_param(s: &str) -> Cow<'_, str> {
    encode(s, is_param_char)
}

/// Escapes a URI header name or value.
pub fn encode_header(s: &str) -> Cow<'_, str> {
    encode(s, is_header_char)
}

/// Checks that `s` consists of characters of class `mask` (see `scan`) and well-formed
/// `%HH` escapes. One pass; the class is a table lookup, not a call.
pub(crate) fn valid_escaped(s: &str, mask: u8) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if is(c, mask) {
            i += 1;
        } else if c == b'%'
            && b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
            && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
        {
            i += 3;
        } else {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_once() {
        assert_eq!(decode("v%61lue%25%34%31"), "value%41");
        assert_eq!(decode("I%20have%20spaces"), "I have spaces");
        assert_eq!(decode("null-%00-null"), "null-\0-null");
        assert_eq!(decode("plain"), "plain");
        assert!(matches!(decode("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn literal_percent_where_not_an_escape() {
        assert_eq!(decode("%Z%45"), "%ZE");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%4"), "%4");
        assert!(!valid_escaped("%Z", USER));
        assert!(valid_escaped("a%20b", USER));
    }

    #[test]
    fn encode_then_decode() {
        let s = "user;par=u@example.net \u{e9}%";
        let e = encode_user(s);
        assert!(valid_escaped(&e, USER));
        assert!(!e.contains('@'));
        assert_eq!(decode(&e), s);
    }
}
