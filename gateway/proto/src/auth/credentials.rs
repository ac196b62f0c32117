//! Digest credentials: the values of `Authorization` and `Proxy-Authorization`.
//!
//! [`Credentials`] is what a [`super::DigestClient`] produces and a [`super::DigestServer`]
//! checks; both go through this one parser and printer, so the two sides agree on quoting.

use std::fmt;

use super::algorithm::{compute_response, ResponseInput};
use super::params::{parse_items, AuthParam, ParamWriter, RawBody};
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
    pub fn parse(value: &str) -> Result<Self, ParseError> {
        let mut items = parse_items(value)?;
        if items.len() > 1 {
            return Err(ParseError::TrailingItems);
        }
        let item = items.pop().ok_or(ParseError::Empty)?;
        if !item.scheme.eq_ignore_ascii_case("Digest") {
            return Err(ParseError::UnsupportedScheme {
                scheme: item.scheme,
            });
        }
        let params = match item.body {
            RawBody::Params(p) => p,
            RawBody::Token68(_) => return Err(ParseError::Token68NotAllowed),
        };
        let mut b = Builder::default();
        for p in params {
            b.add(p)?;
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
            ha1: &ha1,
            nonce: &self.nonce,
            method,
            uri: &self.uri,
            qop,
            qop_text: self.qop.as_deref(),
            nc: &nc,
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

#[derive(Default)]
struct Builder {
    username: Option<String>,
    realm: Option<String>,
    nonce: Option<String>,
    uri: Option<String>,
    response: Option<String>,
    algorithm: Option<AlgorithmParam>,
    cnonce: Option<String>,
    opaque: Option<String>,
    qop: Option<String>,
    nc: Option<NonceCount>,
    userhash: Option<bool>,
    params: Vec<AuthParam>,
}

fn set<T>(slot: &mut Option<T>, name: &'static str, v: T) -> Result<(), ParseError> {
    if slot.is_some() {
        return Err(ParseError::DuplicateParam(name));
    }
    *slot = Some(v);
    Ok(())
}

impl Builder {
    fn add(&mut self, p: AuthParam) -> Result<(), ParseError> {
        let v = p.value;
        match p.name.to_ascii_lowercase().as_str() {
            "username" => set(&mut self.username, "username", v),
            "realm" => set(&mut self.realm, "realm", v),
            "nonce" => set(&mut self.nonce, "nonce", v),
            "uri" => set(&mut self.uri, "uri", v),
            "response" => set(&mut self.response, "response", v),
            "algorithm" => set(&mut self.algorithm, "algorithm", AlgorithmParam::parse(&v)),
            "cnonce" => set(&mut self.cnonce, "cnonce", v),
            "opaque" => set(&mut self.opaque, "opaque", v),
            "qop" => set(&mut self.qop, "qop", v),
            "nc" => {
                let nc = NonceCount::parse(&v).ok_or(ParseError::InvalidParam("nc"))?;
                set(&mut self.nc, "nc", nc)
            }
            "userhash" => set(
                &mut self.userhash,
                "userhash",
                v.eq_ignore_ascii_case("true"),
            ),
            _ => {
                self.params.push(AuthParam {
                    name: p.name,
                    value: v,
                });
                Ok(())
            }
        }
    }

    fn finish(self) -> Result<Credentials, ParseError> {
        // RFC 7616 §3.4: with qop, cnonce and nc MUST be present.
        if self.qop.is_some() {
            if self.cnonce.is_none() {
                return Err(ParseError::MissingParam("cnonce"));
            }
            if self.nc.is_none() {
                return Err(ParseError::MissingParam("nc"));
            }
        }
        Ok(Credentials {
            username: self.username.ok_or(ParseError::MissingParam("username"))?,
            realm: self.realm.ok_or(ParseError::MissingParam("realm"))?,
            nonce: self.nonce.ok_or(ParseError::MissingParam("nonce"))?,
            uri: self.uri.ok_or(ParseError::MissingParam("uri"))?,
            response: self.response.ok_or(ParseError::MissingParam("response"))?,
            algorithm: self.algorithm,
            cnonce: self.cnonce,
            opaque: self.opaque,
            qop: self.qop,
            nc: self.nc,
            userhash: self.userhash.unwrap_or(false),
            params: self.params,
        })
    }
}

impl fmt::Display for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Digest ")?;
        let mut w = ParamWriter::new();
        w.quoted(f, "username", &self.username)?;
        w.quoted(f, "realm", &self.realm)?;
        w.quoted(f, "nonce", &self.nonce)?;
        w.quoted(f, "uri", &self.uri)?;
        w.quoted(f, "response", &self.response)?;
        if let Some(a) = &self.algorithm {
            w.token(f, "algorithm", a.as_str())?;
        }
        if let Some(c) = &self.cnonce {
            w.quoted(f, "cnonce", c)?;
        }
        if let Some(o) = &self.opaque {
            w.quoted(f, "opaque", o)?;
        }
        if let Some(q) = &self.qop {
            w.token(f, "qop", q)?;
        }
        if let Some(nc) = &self.nc {
            w.token(f, "nc", &nc.to_string())?;
        }
        if self.userhash {
            w.token(f, "userhash", "true")?;
        }
        for p in &self.params {
            w.quoted(f, &p.name, &p.value)?;
        }
        Ok(())
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
