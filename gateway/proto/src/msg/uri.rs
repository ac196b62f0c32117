//! URIs: SIP and SIPS URIs taken apart (RFC 3261 §19.1), other schemes kept as opaque
//! absolute URIs (RFC 3261 §25.1 `absoluteURI`, RFC 4475 §3.3.2–3.3.4).
//!
//! [`Uri`] borrows from the message. Components are stored in their escaped wire form and
//! decoded once, on access ([`Uri::user`], [`Uri::params`], ...). Printing (`Display`)
//! reassembles the URI from its components, so `parse ∘ print` is a real round trip.

use std::borrow::Cow;
use std::fmt;

use super::error::UriError;
use super::escape::{self, decode};

/// The scheme of a URI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scheme {
    Sip,
    Sips,
    Tel,
    /// Any other scheme, kept as an opaque absolute URI.
    Other,
}

/// A parsed URI borrowing from its source text.
///
/// Components are stored as 16-bit offsets into the text rather than slices: a `Uri` is
/// 40 bytes instead of 120, which matters because name-addrs and contact lists embed it and
/// are moved around on every access.
#[derive(Clone, Copy, Debug)]
pub struct Uri<'a> {
    raw: &'a str,
    scheme_end: u16,
    /// `None` for opaque (non-SIP) URIs.
    parts: Option<Offsets>,
}

/// A sub-range of the URI text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct R(u16, u16);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Offsets {
    user: Option<R>,
    password: Option<R>,
    host: R,
    port: Option<u16>,
    params: R,
    headers: Option<R>,
}

/// Longest URI accepted (offsets are 16-bit).
pub const MAX_URI_LEN: usize = u16::MAX as usize;

/// The SIP components as slices (computed from [`Offsets`] on access).
#[derive(Clone, Debug, PartialEq, Eq)]
struct SipParts<'a> {
    user: Option<&'a str>,
    password: Option<&'a str>,
    host: &'a str,
    port: Option<u16>,
    /// `;a=b;c` including the leading `;`, or empty.
    params: &'a str,
    /// The text after `?`, if any.
    headers: Option<&'a str>,
}

/// Components compare equal; the raw text may differ (e.g. `0005060` versus `5060`).
impl PartialEq for Uri<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.scheme_str().eq_ignore_ascii_case(other.scheme_str())
            && self.sip() == other.sip()
            && self.opaque() == other.opaque()
    }
}
impl Eq for Uri<'_> {}

fn is_scheme(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphabetic()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
}

fn is_host_char(b: u8) -> bool {
    super::scan::is(b, super::scan::HOST)
}

/// Whitespace, controls, quotes and angle brackets never appear in a URI.
fn has_illegal(s: &str) -> bool {
    s.bytes()
        .any(|b| b <= b' ' || b == 0x7f || matches!(b, b'<' | b'>' | b'"'))
}

/// Validates a `;name[=value]...` URI parameter section (after its leading `;`) in one
/// pass: names non-empty, values non-empty when `=` is present, `paramchar` or `%HH` only.
/// Returns where the section ends (at `?` or the end), or `None` if it is malformed.
fn valid_uri_params(p: &[u8]) -> Option<usize> {
    let mut name_len = 0usize;
    let mut value_len: Option<usize> = None;
    let mut i = 0;
    loop {
        let b = p.get(i).copied();
        if b.is_some_and(escape::is_param_char) {
            match value_len.as_mut() {
                Some(v) => *v += 1,
                None => name_len += 1,
            }
            i += 1;
            continue;
        }
        match b {
            None | Some(b';' | b'?') => {
                if name_len == 0 || value_len == Some(0) {
                    return None;
                }
                if b != Some(b';') {
                    return Some(i);
                }
                name_len = 0;
                value_len = None;
            }
            Some(b'=') if value_len.is_none() => {
                if name_len == 0 {
                    return None;
                }
                value_len = Some(0);
            }
            Some(b'%') => {
                let hex = |j: usize| p.get(j).is_some_and(u8::is_ascii_hexdigit);
                if !(hex(i + 1) && hex(i + 2)) {
                    return None;
                }
                i += 2;
                match value_len.as_mut() {
                    Some(v) => *v += 1,
                    None => name_len += 1,
                }
            }
            Some(_) => return None,
        }
        i += 1;
    }
}

fn find(s: &str, b: u8) -> Option<usize> {
    super::scan::find_byte(s.as_bytes(), b)
}

fn valid_host(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[') {
        let Some(inner) = inner.strip_suffix(']') else {
            return false;
        };
        !inner.is_empty()
            && inner.contains(':')
            && inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
    } else {
        !host.is_empty() && host.bytes().all(is_host_char)
    }
}

impl<'a> Uri<'a> {
    /// Parses a URI. Whitespace, control characters and `<>` are rejected (RFC 4475 §3.1.2.7,
    /// §3.1.2.8); removing brackets or LWS is the caller's business.
    pub fn parse(s: &'a str) -> Result<Uri<'a>, UriError> {
        if s.is_empty() {
            return Err(UriError::Empty);
        }
        if s.starts_with('<') || s.ends_with('>') {
            return Err(UriError::AngleBrackets);
        }
        let bad_scheme = |part: &str| {
            if has_illegal(part) {
                UriError::IllegalChar
            } else {
                UriError::BadScheme
            }
        };
        // `sip:` in any case is the usual scheme, and a valid one; in lower case (as
        // nearly everyone writes it) one comparison settles what the scheme is, too.
        let lower_sip = s.as_bytes().starts_with(b"sip:");
        let colon = if lower_sip || s.as_bytes()[..s.len().min(4)].eq_ignore_ascii_case(b"sip:") {
            3
        } else {
            find(s, b':').ok_or_else(|| bad_scheme(s))?
        };
        let scheme = &s[..colon];
        if !lower_sip && !is_scheme(scheme) {
            return Err(bad_scheme(scheme));
        }
        if s.len() > MAX_URI_LEN {
            return Err(UriError::TooLong);
        }
        let rest = &s[colon + 1..];
        let parts = if lower_sip
            || scheme.eq_ignore_ascii_case("sip")
            || scheme.eq_ignore_ascii_case("sips")
        {
            // Every SIP component is checked against its own character class, which
            // excludes whitespace, controls, quotes and brackets.
            let p = parse_sip(rest).map_err(|e| {
                if has_illegal(rest) {
                    UriError::IllegalChar
                } else {
                    e
                }
            })?;
            // Offsets of sub-slices of `s`, which is at most 64 KiB long.
            let r = |part: &str| {
                let start = part.as_ptr() as usize - s.as_ptr() as usize;
                R(start as u16, (start + part.len()) as u16)
            };
            Some(Offsets {
                user: p.user.map(r),
                password: p.password.map(r),
                host: r(p.host),
                port: p.port,
                params: r(p.params),
                headers: p.headers.map(r),
            })
        } else {
            if has_illegal(rest) {
                return Err(UriError::IllegalChar);
            }
            if rest.is_empty() {
                return Err(UriError::Empty);
            }
            None
        };
        Ok(Uri {
            raw: s,
            scheme_end: colon as u16,
            parts,
        })
    }

    /// The URI exactly as it appeared in the message.
    pub fn as_str(&self) -> &'a str {
        self.raw
    }

    /// The scheme as written.
    pub fn scheme_str(&self) -> &'a str {
        self.slice(R(0, self.scheme_end))
    }

    fn slice(&self, r: R) -> &'a str {
        self.raw
            .get(usize::from(r.0)..usize::from(r.1))
            .unwrap_or("")
    }

    pub fn scheme(&self) -> Scheme {
        let s = self.scheme_str();
        if s.eq_ignore_ascii_case("sip") {
            Scheme::Sip
        } else if s.eq_ignore_ascii_case("sips") {
            Scheme::Sips
        } else if s.eq_ignore_ascii_case("tel") {
            Scheme::Tel
        } else {
            Scheme::Other
        }
    }

    /// Whether this is a `sip:` or `sips:` URI (with user, host, params, ...).
    pub fn is_sip(&self) -> bool {
        self.parts.is_some()
    }

    fn sip(&self) -> Option<SipParts<'a>> {
        let p = self.parts?;
        Some(SipParts {
            user: p.user.map(|r| self.slice(r)),
            password: p.password.map(|r| self.slice(r)),
            host: self.slice(p.host),
            port: p.port,
            params: self.slice(p.params),
            headers: p.headers.map(|r| self.slice(r)),
        })
    }

    /// For non-SIP schemes, everything after `scheme:`.
    pub fn opaque(&self) -> Option<&'a str> {
        match self.parts {
            None => self.raw.get(usize::from(self.scheme_end) + 1..),
            Some(_) => None,
        }
    }

    /// The user part, `%` escapes decoded once.
    pub fn user(&self) -> Option<Cow<'a, str>> {
        self.user_raw().map(decode)
    }

    /// The user part in its escaped wire form.
    pub fn user_raw(&self) -> Option<&'a str> {
        self.parts.and_then(|p| p.user).map(|r| self.slice(r))
    }

    /// The password, decoded. (Deprecated by RFC 3261 §19.1.1 but still parsed.)
    pub fn password(&self) -> Option<Cow<'a, str>> {
        self.parts
            .and_then(|p| p.password)
            .map(|r| decode(self.slice(r)))
    }

    /// The host as written; IPv6 references keep their brackets.
    pub fn host(&self) -> Option<&'a str> {
        self.parts.map(|p| self.slice(p.host))
    }

    pub fn port(&self) -> Option<u16> {
        self.parts.and_then(|p| p.port)
    }

    /// The raw `;param...` section (with its leading `;`), empty if none.
    pub fn params_raw(&self) -> &'a str {
        self.parts.map_or("", |p| self.slice(p.params))
    }

    /// URI parameters, decoded.
    pub fn params(&self) -> UriParams<'a> {
        UriParams {
            rest: self.params_raw().strip_prefix(';'),
            sep: b';',
        }
    }

    /// Looks a parameter up by name (case-insensitive). `Some(None)` means present without
    /// a value (e.g. `;lr`).
    pub fn param(&self, name: &str) -> Option<Option<Cow<'a, str>>> {
        self.params()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The `transport` parameter.
    pub fn transport(&self) -> Option<Cow<'a, str>> {
        self.param("transport").flatten()
    }

    /// Whether the `lr` parameter is present (loose routing, RFC 3261 §19.1.1).
    pub fn lr(&self) -> bool {
        self.param("lr").is_some()
    }

    /// The raw text after `?`, if any.
    pub fn headers_raw(&self) -> Option<&'a str> {
        self.parts.and_then(|p| p.headers).map(|r| self.slice(r))
    }

    /// The `?name=value&...` headers, decoded.
    pub fn headers(&self) -> UriParams<'a> {
        UriParams {
            rest: self.headers_raw(),
            sep: b'&',
        }
    }
}

/// End of the run of `mask` characters and `%HH` escapes in `b` starting at `from`.
#[inline]
fn span_escaped(b: &[u8], from: usize, mask: u8) -> usize {
    let mut i = from;
    loop {
        // Runs of class bytes in a tight loop; an escape is the rare case between them.
        i = super::scan::alnum_run_at(b, i, |c| super::scan::is(c, mask));
        if b.get(i) == Some(&b'%')
            && b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
            && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
        {
            i += 3;
        } else {
            return i;
        }
    }
}

/// Splits `user[:password]@` off the front of a SIP URI's text in one pass: neither class
/// contains `@` or `:`, so the first byte outside the user run tells what follows. The
/// userinfo ends at the first `@`; with no `@` there is none, and with one after a byte
/// that fits neither class the user part is malformed.
#[allow(clippy::type_complexity)]
fn split_userinfo(rest: &str) -> Result<(Option<&str>, Option<&str>, &str), UriError> {
    let b = rest.as_bytes();
    let u_end = span_escaped(b, 0, super::scan::USER);
    let (p, stop) = match b.get(u_end) {
        Some(b':') => {
            let p_end = span_escaped(b, u_end + 1, super::scan::PASSWORD);
            (Some(&rest[u_end + 1..p_end]), p_end)
        }
        _ => (None, u_end),
    };
    if b.get(stop) == Some(&b'@') {
        if u_end == 0 {
            return Err(UriError::BadUser);
        }
        return Ok((Some(&rest[..u_end]), p, &rest[stop + 1..]));
    }
    if find(&rest[stop..], b'@').is_some() {
        return Err(UriError::BadUser);
    }
    Ok((None, None, rest))
}

fn parse_sip(rest: &str) -> Result<SipParts<'_>, UriError> {
    let (user, password, hostpart) = split_userinfo(rest)?;
    let host_end = if hostpart.starts_with('[') {
        find(hostpart, b']')
            .map(|i| i + 1)
            .ok_or(UriError::BadHost)?
    } else {
        // From `rest`, which `hostpart` ends: a short host then takes the shifted step.
        let from = rest.len() - hostpart.len();
        super::scan::alnum_run_at(rest.as_bytes(), from, |c| {
            super::scan::is(c, super::scan::HOST)
        }) - from
    };
    let host = &hostpart[..host_end];
    let next_ok = matches!(
        hostpart.as_bytes().get(host_end),
        None | Some(b':' | b';' | b'?')
    );
    // A host that is not an IPv6 reference is a HOST run by construction: only its
    // emptiness is left to check.
    let host_ok = if host.starts_with('[') {
        valid_host(host)
    } else {
        !host.is_empty()
    };
    if !next_ok || !host_ok {
        return Err(UriError::BadHost);
    }
    let mut after = &hostpart[host_end..];
    let mut port = None;
    if let Some(p) = after.strip_prefix(':') {
        let end = p
            .bytes()
            .position(|b| b == b';' || b == b'?')
            .unwrap_or(p.len());
        let n =
            super::scan::parse_decimal(&p[..end], u64::from(u16::MAX)).ok_or(UriError::BadPort)?;
        port = Some(u16::try_from(n).map_err(|_| UriError::BadPort)?);
        after = &p[end..];
    }
    let params_end = match after.strip_prefix(';') {
        Some(ps) => 1 + valid_uri_params(ps.as_bytes()).ok_or(UriError::BadParam)?,
        None => 0,
    };
    let params = &after[..params_end];
    let tail = &after[params_end..];
    if !tail.is_empty() && !tail.starts_with('?') {
        return Err(UriError::BadHost);
    }
    let headers = match tail.strip_prefix('?') {
        None => None,
        Some(h) => {
            for kv in h.split('&') {
                let (n, v) = kv.split_once('=').ok_or(UriError::BadHeader)?;
                if n.is_empty()
                    || !escape::valid_escaped(n, super::scan::HEADER)
                    || !escape::valid_escaped(v, super::scan::HEADER)
                {
                    return Err(UriError::BadHeader);
                }
            }
            Some(h)
        }
    };
    Ok(SipParts {
        user,
        password,
        host,
        port,
        params,
        headers,
    })
}

/// Iterator over decoded URI parameters or headers: `(name, value)`.
#[derive(Clone, Debug)]
pub struct UriParams<'a> {
    rest: Option<&'a str>,
    sep: u8,
}

impl<'a> Iterator for UriParams<'a> {
    type Item = (Cow<'a, str>, Option<Cow<'a, str>>);

    fn next(&mut self) -> Option<Self::Item> {
        let s = self.rest?;
        let (item, rest) = match super::scan::find_byte(s.as_bytes(), self.sep) {
            Some(i) => (&s[..i], Some(&s[i + 1..])),
            None => (s, None),
        };
        self.rest = rest;
        Some(match item.split_once('=') {
            Some((n, v)) => (decode(n), Some(decode(v))),
            None => (decode(item), None),
        })
    }
}

impl fmt::Display for Uri<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.scheme_str())?;
        f.write_str(":")?;
        match self.sip() {
            None => f.write_str(self.opaque().unwrap_or("")),
            Some(p) => {
                if let Some(u) = p.user {
                    f.write_str(u)?;
                    if let Some(pw) = p.password {
                        write!(f, ":{pw}")?;
                    }
                    f.write_str("@")?;
                }
                f.write_str(p.host)?;
                if let Some(port) = p.port {
                    write!(f, ":{port}")?;
                }
                f.write_str(p.params)?;
                if let Some(h) = p.headers {
                    write!(f, "?{h}")?;
                }
                Ok(())
            }
        }
    }
}

/// Assembles a SIP or SIPS URI from decoded components, escaping them as needed, so that
/// no caller builds URIs by string formatting.
#[derive(Clone, Debug, Default)]
pub struct SipUriBuilder {
    sips: bool,
    user: Option<String>,
    host: String,
    port: Option<u16>,
    params: Vec<(String, Option<String>)>,
    headers: Vec<(String, String)>,
}

impl SipUriBuilder {
    /// `host` is a hostname, IPv4 address or bracketed IPv6 reference.
    pub fn new(host: &str) -> Self {
        SipUriBuilder {
            host: host.to_owned(),
            ..Default::default()
        }
    }
    pub fn sips(mut self, sips: bool) -> Self {
        self.sips = sips;
        self
    }
    /// The decoded user part; it is escaped when printed.
    pub fn user(mut self, user: &str) -> Self {
        self.user = Some(user.to_owned());
        self
    }
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }
    pub fn param(mut self, name: &str, value: Option<&str>) -> Self {
        self.params
            .push((name.to_owned(), value.map(str::to_owned)));
        self
    }
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
    /// Prints the URI.
    pub fn build(&self) -> String {
        let mut s = String::with_capacity(64);
        s.push_str(if self.sips { "sips:" } else { "sip:" });
        if let Some(u) = &self.user {
            s.push_str(&escape::encode_user(u));
            s.push('@');
        }
        s.push_str(&self.host);
        if let Some(p) = self.port {
            s.push(':');
            s.push_str(&p.to_string());
        }
        for (n, v) in &self.params {
            s.push(';');
            s.push_str(&escape::encode_param(n));
            if let Some(v) = v {
                s.push('=');
                s.push_str(&escape::encode_param(v));
            }
        }
        for (i, (n, v)) in self.headers.iter().enumerate() {
            s.push(if i == 0 { '?' } else { '&' });
            s.push_str(&escape::encode_header(n));
            s.push('=');
            s.push_str(&escape::encode_header(v));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_sip_uri() {
        let u =
            Uri::parse("sips:alice:secret@[2001:db8::1]:5061;transport=tls;lr?Subject=hi&X=%20y")
                .expect("valid");
        assert_eq!(u.scheme(), Scheme::Sips);
        assert_eq!(u.user().as_deref(), Some("alice"));
        assert_eq!(u.password().as_deref(), Some("secret"));
        assert_eq!(u.host(), Some("[2001:db8::1]"));
        assert_eq!(u.port(), Some(5061));
        assert_eq!(u.transport().as_deref(), Some("tls"));
        assert!(u.lr());
        let h: Vec<_> = u.headers().collect();
        assert_eq!(h[1], ("X".into(), Some(" y".into())));
        assert_eq!(u.to_string(), u.as_str());
    }

    #[test]
    fn rfc4475_user_parts() {
        let u = Uri::parse("sip:user;par=u%40example.net@example.com").expect("semiuri");
        assert_eq!(u.user().as_deref(), Some("user;par=u@example.net"));
        assert_eq!(u.params_raw(), "");
        let u = Uri::parse("sip:sips%3Auser%40example.com@example.net").expect("esc01");
        assert_eq!(u.user().as_deref(), Some("sips:user@example.com"));
        assert_eq!(u.host(), Some("example.net"));
        let u = Uri::parse("sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31")
            .expect("esc01 contact");
        assert!(u.lr());
        assert_eq!(u.param("name").flatten().as_deref(), Some("value%41"));
    }

    #[test]
    fn absolute_uris() {
        for s in [
            "tel:+1-201-555-0123",
            "isbn:2983792873",
            "http://www.example.com",
            "name:John_Smith",
            "soap.beep://192.0.2.103:3002",
            "nobodyKnowsThisScheme:totallyopaquecontent",
        ] {
            let u = Uri::parse(s).expect(s);
            assert!(!u.is_sip());
            assert_eq!(u.to_string(), s);
            assert_eq!(u.host(), None);
        }
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(Uri::parse("<sip:a@b>").err(), Some(UriError::AngleBrackets));
        assert_eq!(Uri::parse("sip:a@b; lr").err(), Some(UriError::IllegalChar));
        assert_eq!(Uri::parse("sip:a@b:99999").err(), Some(UriError::BadPort));
        assert_eq!(Uri::parse("sip:a@").err(), Some(UriError::BadHost));
        assert_eq!(Uri::parse("sip:@b").err(), Some(UriError::BadUser));
        assert_eq!(Uri::parse("sip:a@b;;").err(), Some(UriError::BadParam));
        assert_eq!(Uri::parse("1x:y").err(), Some(UriError::BadScheme));
        assert_eq!(Uri::parse("nocolon").err(), Some(UriError::BadScheme));
        assert_eq!(Uri::parse("sip:a@[::1").err(), Some(UriError::BadHost));
        assert_eq!(Uri::parse("sip:a@b?x").err(), Some(UriError::BadHeader));
    }

    #[test]
    fn builder_escapes() {
        let s = SipUriBuilder::new("example.com")
            .user("a b@c")
            .port(5060)
            .param("pn-prid", Some("tok:en/1"))
            .param("lr", None)
            .build();
        let u = Uri::parse(&s).expect("builder output parses");
        assert_eq!(u.user().as_deref(), Some("a b@c"));
        assert_eq!(u.param("pn-prid").flatten().as_deref(), Some("tok:en/1"));
        assert!(u.lr());
    }
}
