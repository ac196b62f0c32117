//! Digest credentials: the values of `Authorization` and `Proxy-Authorization`.
//!
//! [`Credentials`] is what a [`super::DigestClient`] produces and a [`super::DigestServer`]
//! checks; both go through this one parser and printer, so the two sides agree on quoting.

use std::borrow::Cow;
use std::fmt;

use super::algorithm::{compute_response, ResponseInput};
use super::params::{push_quoted, push_token_or_quoted, AuthParam, ItemBody, Lexer, MAX_ITEMS};
use super::{Algorithm, AlgorithmParam, ParseError, Qop, Secret};

/// A nonce-count (`nc`): how many requests the client has sent with one nonce.
/// Printed as eight lowercase hex digits (RFC 7616 §3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NonceCount(pub u32);

impl NonceCount {
    /// Parses exactly eight hex digits (either case, leniently).
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u32::from_str_radix(s, 16).ok().map(Self)
    }
}

impl NonceCount {
    /// The eight lowercase hex digits, without `fmt`.
    pub(crate) fn hex(self) -> NcText {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut b = [0u8; 8];
        for (i, d) in b.iter_mut().enumerate() {
            *d = DIGITS[((self.0 >> (28 - 4 * i)) & 15) as usize];
        }
        NcText(b)
    }
}

/// [`NonceCount::hex`]: eight ASCII hex digits.
pub(crate) struct NcText([u8; 8]);

impl NcText {
    /// The digits as bytes (what the response hash takes), without a UTF-8 check.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII hex digits were written.
        std::str::from_utf8(&self.0).unwrap_or("00000000")
    }
}

impl fmt::Display for NonceCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

/// One Digest credentials item (RFC 7616 §3.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The username, or its hash when `userhash` is set.
    pub username: String,
    /// Realm of the challenge being answered.
    pub realm: String,
    /// Nonce of the challenge being answered.
    pub nonce: String,
    /// digest-uri: the Request-URI.
    pub uri: String,
    /// The request digest, hex.
    pub response: String,
    /// `algorithm`; absent means MD5.
    pub algorithm: Option<AlgorithmParam>,
    /// Client nonce; required with qop.
    pub cnonce: Option<String>,
    /// Echo of the challenge's opaque.
    pub opaque: Option<String>,
    /// The chosen qop; `None` is the RFC 2069 form. Unknown values are kept as received.
    pub qop: Option<String>,
    /// Nonce-count; required with qop. Parsed in either case, but the hash covers the
    /// lowercase form the grammar prescribes (8LHEX), so a peer hashing uppercase fails.
    pub nc: Option<NonceCount>,
    /// `userhash=true`: `username` is `H(username ":" realm)`.
    pub userhash: bool,
    /// Parameters this crate does not interpret (including `username*`), in order.
    pub params: Vec<AuthParam>,
}

impl Credentials {
    /// Parses a header value holding one Digest credentials item.
    ///
    /// One pass over the value: parameters go straight from the lexer into their fields as
    /// borrowed slices, and only the fields kept are copied out (one exact-size allocation
    /// each). Errors are reported in the order a two-step parse (lex everything, then
    /// interpret the one item) would find them.
    pub fn parse(value: &str) -> Result<Self, ParseError> {
        let mut lx = Lexer::new(value);
        let mut b = Builder::default();
        let mut first = None;
        let mut items = 0usize;
        loop {
            lx.skip_empty_elements();
            if lx.at_end() {
                break;
            }
            if items == MAX_ITEMS {
                return Err(ParseError::TooManyParams);
            }
            if items == 0 {
                first = Some(lx.item(&mut |name, v| b.add(name, v))?);
            } else {
                // Lexed only so that a malformed later item is reported as such.
                lx.item(&mut |_, _| {})?;
            }
            items += 1;
        }
        let (scheme, body) = first.ok_or(ParseError::Empty)?;
        if items > 1 {
            return Err(ParseError::TrailingItems);
        }
        if !scheme.eq_ignore_ascii_case("Digest") {
            return Err(ParseError::UnsupportedScheme {
                scheme: scheme.to_owned(),
            });
        }
        if let ItemBody::Token68(_) = body {
            return Err(ParseError::Token68NotAllowed);
        }
        b.finish()
    }

    /// The algorithm used, if we implement it (absent means MD5).
    pub fn algorithm(&self) -> Option<Algorithm> {
        AlgorithmParam::effective(self.algorithm.as_ref())
    }

    /// The `response` these credentials must carry if they were made by `username` with
    /// `secret` for a request with `method` and `body` (body used by qop=auth-int only).
    ///
    /// `None` if the algorithm or qop is unknown, or `secret` is an HA1 of another hash
    /// family. This is the formula both [`super::DigestClient`] and
    /// [`super::DigestServer`] use; it does not check nonce freshness or replay.
    pub fn expected_response(
        &self,
        method: &str,
        body: &[u8],
        username: &str,
        secret: &Secret,
    ) -> Option<String> {
        let algorithm = self.algorithm()?;
        let qop = self.known_qop().ok()?;
        let ha1 = secret.ha1(algorithm.hash(), username, &self.realm)?;
        let nc = self.nc.map(|n| n.to_string()).unwrap_or_default();
        let r = compute_response(&ResponseInput {
            algorithm,
            ha1: ha1.hex().as_bytes(),
            ha1_family: ha1.family(),
            nonce: &self.nonce,
            method,
            uri: &self.uri,
            qop,
            qop_text: self.qop.as_deref(),
            nc: nc.as_bytes(),
            cnonce: self.cnonce.as_deref().unwrap_or(""),
            body,
        })?;
        Some(r.to_string())
    }

    /// The qop used, if it is one we know; `Ok(None)` for no qop, `Err(())` for unknown.
    pub(crate) fn known_qop(&self) -> Result<Option<Qop>, ()> {
        match &self.qop {
            None => Ok(None),
            Some(q) => Qop::from_name(q).map(Some).ok_or(()),
        }
    }
}

/// The fields of credentials being parsed, borrowed from the header value. `error` holds
/// the first problem met, which [`Builder::finish`] reports once lexing has succeeded.
#[derive(Default)]
struct Builder<'a> {
    username: Option<Cow<'a, str>>,
    realm: Option<Cow<'a, str>>,
    nonce: Option<Cow<'a, str>>,
    uri: Option<Cow<'a, str>>,
    response: Option<Cow<'a, str>>,
    algorithm: Option<AlgorithmParam>,
    cnonce: Option<Cow<'a, str>>,
    opaque: Option<Cow<'a, str>>,
    qop: Option<Cow<'a, str>>,
    nc: Option<NonceCount>,
    userhash: Option<bool>,
    params: Vec<AuthParam>,
    error: Option<ParseError>,
}

/// A parameter name folded to one word for matching: its first eight bytes (zero-padded)
/// with `0x20` set in each, plus its ninth byte likewise in the top bits (`algorithm` is the
/// one known name longer than eight). For token characters, which is all a name can hold,
/// setting `0x20` lowercases letters and turns no other character into a letter, so two
/// names of equal length fold alike exactly when they are equal ignoring ASCII case.
const fn folded(name: &str) -> u128 {
    let b = name.as_bytes();
    let mut w: u128 = 0;
    let mut i = 0;
    while i < b.len() && i < 9 {
        w |= ((b[i] | 0x20) as u128) << (i * 8);
        i += 1;
    }
    w
}

/// [`folded`] at run time: one copy and one OR instead of a loop.
#[inline]
fn folded_word(name: &str) -> u128 {
    let b = name.as_bytes();
    let n = b.len().min(9);
    let mut buf = [0u8; 16];
    buf[..n].copy_from_slice(&b[..n]);
    // n <= 9, so the shift is at most 72 bits.
    let mask = (1u128 << (n * 8)) - 1;
    u128::from_le_bytes(buf) | (0x2020_2020_2020_2020_2020_2020_2020_2020 & mask)
}

const USERNAME: u128 = folded("username");
const REALM: u128 = folded("realm");
const NONCE: u128 = folded("nonce");
const URI: u128 = folded("uri");
const RESPONSE: u128 = folded("response");
const ALGORITHM: u128 = folded("algorithm");
const CNONCE: u128 = folded("cnonce");
const OPAQUE: u128 = folded("opaque");
const QOP: u128 = folded("qop");
const NC: u128 = folded("nc");
const USERHASH: u128 = folded("userhash");

fn set<T>(slot: &mut Option<T>, name: &'static str, v: T) -> Result<(), ParseError> {
    if slot.is_some() {
        return Err(ParseError::DuplicateParam(name));
    }
    *slot = Some(v);
    Ok(())
}

fn owned(v: Option<Cow<'_, str>>) -> Option<String> {
    v.map(Cow::into_owned)
}

impl<'a> Builder<'a> {
    #[inline]
    fn add(&mut self, name: &'a str, v: Cow<'a, str>) {
        if self.error.is_none() {
            if let Err(e) = self.set(name, v) {
                self.error = Some(e);
            }
        }
    }

    fn set(&mut self, name: &'a str, v: Cow<'a, str>) -> Result<(), ParseError> {
        // Names compare case-insensitively: as one folded word (see `folded`) and the length.
        match (name.len(), folded_word(name)) {
            (8, USERNAME) => set(&mut self.username, "username", v),
            (5, REALM) => set(&mut self.realm, "realm", v),
            (5, NONCE) => set(&mut self.nonce, "nonce", v),
            (3, URI) => set(&mut self.uri, "uri", v),
            (8, RESPONSE) => set(&mut self.response, "response", v),
            (9, ALGORITHM) => set(&mut self.algorithm, "algorithm", AlgorithmParam::parse(&v)),
            (6, CNONCE) => set(&mut self.cnonce, "cnonce", v),
            (6, OPAQUE) => set(&mut self.opaque, "opaque", v),
            (3, QOP) => set(&mut self.qop, "qop", v),
            (2, NC) => {
                let nc = NonceCount::parse(&v).ok_or(ParseError::InvalidParam("nc"))?;
                set(&mut self.nc, "nc", nc)
            }
            (8, USERHASH) => set(
                &mut self.userhash,
                "userhash",
                v.eq_ignore_ascii_case("true"),
            ),
            _ => {
                self.params.push(AuthParam {
                    name: name.to_owned(),
                    value: v.into_owned(),
                });
                Ok(())
            }
        }
    }

    fn finish(self) -> Result<Credentials, ParseError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        // RFC 7616 §3.4: with qop, cnonce and nc MUST be present.
        if self.qop.is_some() {
            if self.cnonce.is_none() {
                return Err(ParseError::MissingParam("cnonce"));
            }
            if self.nc.is_none() {
                return Err(ParseError::MissingParam("nc"));
            }
        }
        // Check every required field before copying any of them out.
        let username = self.username.ok_or(ParseError::MissingParam("username"))?;
        let realm = self.realm.ok_or(ParseError::MissingParam("realm"))?;
        let nonce = self.nonce.ok_or(ParseError::MissingParam("nonce"))?;
        let uri = self.uri.ok_or(ParseError::MissingParam("uri"))?;
        let response = self.response.ok_or(ParseError::MissingParam("response"))?;
        Ok(Credentials {
            username: username.into_owned(),
            realm: realm.into_owned(),
            nonce: nonce.into_owned(),
            uri: uri.into_owned(),
            response: response.into_owned(),
            algorithm: self.algorithm,
            cnonce: owned(self.cnonce),
            opaque: owned(self.opaque),
            qop: owned(self.qop),
            nc: self.nc,
            userhash: self.userhash.unwrap_or(false),
            params: self.params,
        })
    }
}

/// Credentials to print, borrowed: what [`Credentials`]' `Display` prints, and what the
/// registration engine fills from its compact per-binding state without building an owned
/// [`Credentials`] (five string copies) first.
pub(crate) struct CredentialsRef<'a> {
    pub username: &'a str,
    pub realm: &'a str,
    pub nonce: &'a str,
    pub uri: &'a str,
    pub response: &'a str,
    pub algorithm: Option<&'a str>,
    pub cnonce: Option<&'a str>,
    pub opaque: Option<&'a str>,
    pub qop: Option<&'a str>,
    pub nc: Option<NonceCount>,
    pub userhash: bool,
    pub params: &'a [AuthParam],
}

impl CredentialsRef<'_> {
    /// Appends the header value (`Digest username="…", …`) to `out`.
    pub(crate) fn write_to(&self, out: &mut String) {
        fn quoted(out: &mut String, name: &str, v: &str) {
            out.push_str(", ");
            out.push_str(name);
            out.push('=');
            push_quoted(out, v);
        }
        fn token(out: &mut String, name: &str, v: &str) {
            out.push_str(", ");
            out.push_str(name);
            out.push('=');
            push_token_or_quoted(out, v);
        }
        out.push_str("Digest username=");
        push_quoted(out, self.username);
        quoted(out, "realm", self.realm);
        quoted(out, "nonce", self.nonce);
        quoted(out, "uri", self.uri);
        quoted(out, "response", self.response);
        if let Some(a) = self.algorithm {
            token(out, "algorithm", a);
        }
        if let Some(c) = self.cnonce {
            quoted(out, "cnonce", c);
        }
        if let Some(o) = self.opaque {
            quoted(out, "opaque", o);
        }
        if let Some(q) = self.qop {
            token(out, "qop", q);
        }
        if let Some(nc) = self.nc {
            token(out, "nc", nc.hex().as_str());
        }
        if self.userhash {
            token(out, "userhash", "true");
        }
        for p in self.params {
            quoted(out, &p.name, &p.value);
        }
    }
}

impl fmt::Display for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::with_capacity(384);
        CredentialsRef {
            username: &self.username,
            realm: &self.realm,
            nonce: &self.nonce,
            uri: &self.uri,
            response: &self.response,
            algorithm: self.algorithm.as_ref().map(AlgorithmParam::as_str),
            cnonce: self.cnonce.as_deref(),
            opaque: self.opaque.as_deref(),
            qop: self.qop.as_deref(),
            nc: self.nc,
            userhash: self.userhash,
            params: &self.params,
        }
        .write_to(&mut out);
        f.write_str(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7616 §3.9.1, the SHA-256 Authorization header (folded lines joined).
    const RFC7616_SHA256: &str = r#"Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", algorithm=SHA-256, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", nc=00000001, cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop=auth, response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#;

    #[test]
    fn parses_and_reprints_rfc7616_credentials() {
        let c = Credentials::parse(RFC7616_SHA256).unwrap();
        assert_eq!(c.username, "Mufasa");
        assert_eq!(c.algorithm(), Some(Algorithm::Sha256));
        assert_eq!(c.nc, Some(NonceCount(1)));
        assert_eq!(c.known_qop(), Ok(Some(Qop::Auth)));
        let printed = c.to_string();
        assert!(printed.contains("nc=00000001"), "{printed}");
        assert!(
            printed.contains("qop=auth,") || printed.ends_with("qop=auth"),
            "{printed}"
        );
        assert!(printed.contains("algorithm=SHA-256"), "{printed}");
        assert_eq!(Credentials::parse(&printed).unwrap(), c);
    }

    /// The one-pass parser reports what the two-step parse (lex the whole value, then
    /// interpret its one item) reported: lexing errors anywhere first, then the item count,
    /// the scheme, and only then the parameters' meaning.
    #[test]
    fn error_precedence_matches_lex_then_interpret() {
        let dup_then_lex_error = "Digest realm=a, realm=b, Other x=\"open";
        assert_eq!(
            Credentials::parse(dup_then_lex_error),
            Err(ParseError::UnterminatedQuote { at: 33 })
        );
        assert_eq!(
            Credentials::parse("Digest realm=a, realm=b, Other x=y"),
            Err(ParseError::TrailingItems)
        );
        assert_eq!(
            Credentials::parse("Basic realm=a, realm=b"),
            Err(ParseError::UnsupportedScheme {
                scheme: "Basic".into()
            })
        );
        assert_eq!(
            Credentials::parse("Digest abc=="),
            Err(ParseError::Token68NotAllowed)
        );
        assert_eq!(
            Credentials::parse("Digest nc=1, realm=a, realm=b"),
            Err(ParseError::InvalidParam("nc")),
            "the first interpretation error wins"
        );
        assert_eq!(
            Credentials::parse("Digest REALM=a, Realm=b, username=u"),
            Err(ParseError::DuplicateParam("realm"))
        );
        assert_eq!(Credentials::parse(" , ,"), Err(ParseError::Empty));
        let many = format!("Digest {}", vec!["a=b"; 65].join(","));
        assert_eq!(Credentials::parse(&many), Err(ParseError::TooManyParams));
    }

    #[test]
    fn nonce_count_hex_matches_fmt() {
        for n in [0, 1, 9, 10, 0xabc, 0x1234_5678, u32::MAX] {
            assert_eq!(NonceCount(n).hex().as_str(), NonceCount(n).to_string());
        }
    }

    #[test]
    fn names_fold_alike_only_when_equal_ignoring_case() {
        for name in [
            "username",
            "ALGORITHM",
            "Nc",
            "x",
            "",
            "algorithmX",
            "user-name",
        ] {
            assert_eq!(folded_word(name), folded(name), "{name}");
        }
        assert_eq!(folded_word("UserName"), USERNAME);
        assert_eq!(folded_word("aLgOrItHm"), ALGORITHM);
        assert_ne!(folded_word("usernamf"), USERNAME);
        assert_ne!(folded_word("user_ame"), USERNAME);
    }

    #[test]
    fn quoted_pairs_and_unknown_params_are_kept() {
        let c = Credentials::parse(
            r#"Digest username="a\"b", realm="r", nonce="n", uri="sip:x", response="00", X-Ext="v\\w""#,
        )
        .unwrap();
        assert_eq!(c.username, "a\"b");
        assert_eq!(
            c.params,
            [AuthParam {
                name: "X-Ext".into(),
                value: "v\\w".into()
            }]
        );
        assert_eq!(Credentials::parse(&c.to_string()).unwrap(), c);
    }

    #[test]
    fn lenient_quoting_and_typed_errors() {
        let c = Credentials::parse(
            "digest USERNAME=bob, realm=r, nonce=n, uri=\"sip:x\", response=ab, \
             qop=\"auth\", nc=\"0000000A\", cnonce=c, username*=UTF-8''b%C3%B6b",
        )
        .unwrap();
        assert_eq!(c.nc, Some(NonceCount(10)));
        assert_eq!(c.qop.as_deref(), Some("auth"));
        assert_eq!(c.params[0].name, "username*");
        assert_eq!(
            Credentials::parse(
                "Digest username=a, realm=r, nonce=n, uri=u, response=x, qop=auth, nc=00000001"
            ),
            Err(ParseError::MissingParam("cnonce"))
        );
        assert_eq!(
            Credentials::parse("Digest username=a, realm=r, nonce=n, uri=u, response=x, nc=1"),
            Err(ParseError::InvalidParam("nc"))
        );
        assert_eq!(
            Credentials::parse("Digest username=a, realm=r, nonce=n, response=x"),
            Err(ParseError::MissingParam("uri"))
        );
        assert_eq!(
            Credentials::parse("Bearer abc"),
            Err(ParseError::UnsupportedScheme {
                scheme: "Bearer".into()
            })
        );
    }
}
