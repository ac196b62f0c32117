//! Digest challenges: the values of `WWW-Authenticate` (401) and `Proxy-Authenticate` (407).
//!
//! [`Challenge`] is parsed from and printed to a header value, so servers build challenges
//! as data and never format them by hand. [`parse_challenge_list`] reads a value that holds
//! several challenges (possibly of other schemes); [`select_best`] picks the strongest one we
//! can answer. A server offering several algorithms (RFC 8760) lists its preferred one
//! first; choosing by strength instead of position gives the same answer for a well-ordered
//! server and keeps a middlebox that reorders or prepends an MD5 challenge from
//! downgrading us.

use std::fmt;

use super::params::{parse_items, AuthParam, ParamWriter, RawBody, RawItem};
use super::{Algorithm, AlgorithmParam, ParseError, Qop};

/// One Digest challenge (RFC 7616 §3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// Protection space; required.
    pub realm: String,
    /// URIs of the protection space (space-separated on the wire); empty when absent.
    pub domain: Vec<String>,
    /// Server nonce; required.
    pub nonce: String,
    /// Opaque data the client must echo.
    pub opaque: Option<String>,
    /// `stale=true`: the previous credentials were right but their nonce is no longer valid.
    pub stale: bool,
    /// `algorithm`; absent means MD5.
    pub algorithm: Option<AlgorithmParam>,
    /// Offered qop values, as received (`None` = RFC 2069 compatibility, no qop).
    pub qop: Option<Vec<String>>,
    /// `charset` (RFC 7616 allows only `UTF-8`).
    pub charset: Option<String>,
    /// `userhash=true`: the server accepts a hashed username.
    pub userhash: bool,
    /// Parameters this crate does not interpret, in order.
    pub params: Vec<AuthParam>,
}

impl Challenge {
    /// A challenge with only the required parameters set.
    pub fn new(realm: impl Into<String>, nonce: impl Into<String>) -> Self {
        Self {
            realm: realm.into(),
            domain: Vec::new(),
            nonce: nonce.into(),
            opaque: None,
            stale: false,
            algorithm: None,
            qop: None,
            charset: None,
            userhash: false,
            params: Vec::new(),
        }
    }

    /// Parses a header value holding exactly one Digest challenge.
    pub fn parse(value: &str) -> Result<Self, ParseError> {
        let mut items = parse_items(value)?;
        if items.len() > 1 {
            return Err(ParseError::TrailingItems);
        }
        let item = items.pop().ok_or(ParseError::Empty)?;
        Self::from_item(item)
    }

    pub(crate) fn from_item(item: RawItem) -> Result<Self, ParseError> {
        if !item.scheme.eq_ignore_ascii_case("Digest") {
            return Err(ParseError::UnsupportedScheme {
                scheme: item.scheme,
            });
        }
        let params = match item.body {
            RawBody::Params(p) => p,
            RawBody::Token68(_) => return Err(ParseError::Token68NotAllowed),
        };
        let mut realm = None;
        let mut domain = None;
        let mut nonce = None;
        let mut opaque = None;
        let mut stale = None;
        let mut algorithm = None;
        let mut qop = None;
        let mut charset = None;
        let mut userhash = None;
        let mut extra = Vec::new();
        for p in params {
            let n = p.name.to_ascii_lowercase();
            let v = p.value;
            match n.as_str() {
                "realm" => set(&mut realm, "realm", v)?,
                "domain" => {
                    let list = v
                        .split_ascii_whitespace()
                        .map(str::to_owned)
                        .collect::<Vec<_>>();
                    set(&mut domain, "domain", list)?;
                }
                "nonce" => set(&mut nonce, "nonce", v)?,
                "opaque" => set(&mut opaque, "opaque", v)?,
                // RFC 7616: anything but a case-insensitive "true" means false.
                "stale" => set(&mut stale, "stale", v.eq_ignore_ascii_case("true"))?,
                "algorithm" => set(&mut algorithm, "algorithm", AlgorithmParam::parse(&v))?,
                "qop" => {
                    let list = v
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect::<Vec<_>>();
                    set(&mut qop, "qop", list)?;
                }
                "charset" => set(&mut charset, "charset", v)?,
                "userhash" => set(&mut userhash, "userhash", v.eq_ignore_ascii_case("true"))?,
                _ => extra.push(AuthParam {
                    name: p.name,
                    value: v,
                }),
            }
        }
        Ok(Self {
            realm: realm.ok_or(ParseError::MissingParam("realm"))?,
            domain: domain.unwrap_or_default(),
            nonce: nonce.ok_or(ParseError::MissingParam("nonce"))?,
            opaque,
            stale: stale.unwrap_or(false),
            algorithm,
            qop,
            charset,
            userhash: userhash.unwrap_or(false),
            params: extra,
        })
    }

    /// The algorithm this challenge asks for, if we implement it (absent means MD5).
    pub fn algorithm(&self) -> Option<Algorithm> {
        AlgorithmParam::effective(self.algorithm.as_ref())
    }

    /// True if the challenge offers `qop`.
    pub fn offers_qop(&self, qop: Qop) -> bool {
        self.qop
            .as_ref()
            .is_some_and(|l| l.iter().any(|q| Qop::from_name(q) == Some(qop)))
    }

    /// The qop a client should answer with: `auth` if offered, else `auth-int`;
    /// `Some(None)` for a challenge without qop (RFC 2069 form); `None` if only unknown
    /// qop values are offered.
    pub fn client_qop(&self) -> Option<Option<Qop>> {
        match &self.qop {
            None => Some(None),
            Some(_) if self.offers_qop(Qop::Auth) => Some(Some(Qop::Auth)),
            Some(_) if self.offers_qop(Qop::AuthInt) => Some(Some(Qop::AuthInt)),
            Some(_) => None,
        }
    }

    /// True if a client of this crate can answer the challenge.
    pub fn is_usable(&self) -> bool {
        self.algorithm().is_some() && self.client_qop().is_some()
    }
}

fn set<T>(slot: &mut Option<T>, name: &'static str, v: T) -> Result<(), ParseError> {
    if slot.is_some() {
        return Err(ParseError::DuplicateParam(name));
    }
    *slot = Some(v);
    Ok(())
}

impl fmt::Display for Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Digest ")?;
        let mut w = ParamWriter::new();
        w.quoted(f, "realm", &self.realm)?;
        if !self.domain.is_empty() {
            w.quoted(f, "domain", &self.domain.join(" "))?;
        }
        w.quoted(f, "nonce", &self.nonce)?;
        if let Some(o) = &self.opaque {
            w.quoted(f, "opaque", o)?;
        }
        if self.stale {
            w.token(f, "stale", "true")?;
        }
        if let Some(a) = &self.algorithm {
            w.token(f, "algorithm", a.as_str())?;
        }
        if let Some(q) = &self.qop {
            w.quoted(f, "qop", &q.join(","))?;
        }
        if let Some(c) = &self.charset {
            w.token(f, "charset", c)?;
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

/// Parses a header value that may hold several challenges, of any scheme.
///
/// A syntax error fails the whole value (the list cannot be resynchronised after it); a
/// well-formed item that is not a usable Digest challenge (another scheme, a missing nonce)
/// is an `Err` entry, so one bad challenge does not hide a good one beside it.
pub fn parse_challenge_list(value: &str) -> Result<Vec<Result<Challenge, ParseError>>, ParseError> {
    Ok(parse_items(value)?
        .into_iter()
        .map(Challenge::from_item)
        .collect())
}

/// The strongest usable challenge (RFC 8760: SHA-512-256 > SHA-256 > MD5); among equals the
/// first, since servers list their preference first.
pub fn select_best<'a>(
    challenges: impl IntoIterator<Item = &'a Challenge>,
) -> Option<&'a Challenge> {
    let mut best: Option<(&Challenge, u8)> = None;
    for c in challenges {
        if !c.is_usable() {
            continue;
        }
        let rank = c.algorithm().map_or(0, Algorithm::strength);
        if best.is_none_or(|(_, r)| rank > r) {
            best = Some((c, rank));
        }
    }
    best.map(|(c, _)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC7616: &str = r#"Digest
        realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256,
        nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
        opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#;

    #[test]
    fn parses_the_rfc7616_challenge() {
        let v = RFC7616.replace("\n        ", " ");
        let c = Challenge::parse(&v).unwrap();
        assert_eq!(c.realm, "http-auth@example.org");
        assert_eq!(c.algorithm(), Some(Algorithm::Sha256));
        assert_eq!(
            c.qop.as_deref(),
            Some(&["auth".to_owned(), "auth-int".to_owned()][..])
        );
        assert!(c.offers_qop(Qop::AuthInt));
        assert_eq!(c.client_qop(), Some(Some(Qop::Auth)));
        assert_eq!(
            c.opaque.as_deref(),
            Some("FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS")
        );
        assert_eq!(Challenge::parse(&c.to_string()).unwrap(), c);
    }

    #[test]
    fn case_insensitive_names_unknown_params_and_flags() {
        let c = Challenge::parse(
            "dIgEsT REALM=\"r\", Nonce=n, STALE=TRUE, userhash=true, x-foo=\"a b\", \
             domain=\"sip:a sip:b\", charset=UTF-8",
        )
        .unwrap();
        assert!(c.stale && c.userhash);
        assert_eq!(c.domain, ["sip:a", "sip:b"]);
        assert_eq!(
            c.params,
            [AuthParam {
                name: "x-foo".into(),
                value: "a b".into()
            }]
        );
        assert_eq!(c.charset.as_deref(), Some("UTF-8"));
        assert_eq!(c.algorithm(), Some(Algorithm::Md5));
        let printed = c.to_string();
        assert!(printed.starts_with("Digest realm=\"r\""), "{printed}");
        assert_eq!(Challenge::parse(&printed).unwrap(), c);
    }

    #[test]
    fn rejects_bad_challenges_with_typed_errors() {
        assert_eq!(
            Challenge::parse("Digest realm=\"r\""),
            Err(ParseError::MissingParam("nonce"))
        );
        assert_eq!(
            Challenge::parse("Digest nonce=\"n\""),
            Err(ParseError::MissingParam("realm"))
        );
        assert_eq!(
            Challenge::parse("Digest realm=a, realm=b, nonce=n"),
            Err(ParseError::DuplicateParam("realm"))
        );
        assert_eq!(
            Challenge::parse("Basic realm=\"x\""),
            Err(ParseError::UnsupportedScheme {
                scheme: "Basic".into()
            })
        );
        assert_eq!(
            Challenge::parse("Digest abc=="),
            Err(ParseError::Token68NotAllowed)
        );
        assert!(matches!(
            Challenge::parse("Digest realm=\"r, nonce=n"),
            Err(ParseError::UnterminatedQuote { .. })
        ));
        assert_eq!(
            Challenge::parse("Digest realm=r, nonce=n, Digest realm=r, nonce=m"),
            Err(ParseError::TrailingItems)
        );
        assert!(Challenge::parse("\u{0}\u{1}junk").is_err());
    }

    #[test]
    fn selects_strongest_supported_algorithm() {
        let v = "Digest realm=r, nonce=a, algorithm=MD5, qop=\"auth\", \
                 Basic realm=\"r\", \
                 Digest realm=r, nonce=b, algorithm=SHA-256, qop=\"auth\", \
                 Digest realm=r, nonce=c, algorithm=AKAv1-MD5, qop=\"auth\", \
                 Digest realm=r, nonce=d, algorithm=SHA-512-256, qop=\"x-unknown\", \
                 Digest realm=r, nonce=e, algorithm=SHA-256-sess, qop=\"auth\"";
        let list = parse_challenge_list(v).unwrap();
        assert_eq!(list.len(), 6);
        assert!(matches!(list[1], Err(ParseError::UnsupportedScheme { .. })));
        let ok: Vec<Challenge> = list.into_iter().filter_map(Result::ok).collect();
        // SHA-512-256 with only an unknown qop is unusable; SHA-256 beats SHA-256-sess by order.
        assert_eq!(select_best(&ok).unwrap().nonce, "b");
        let with_512 = Challenge::parse("Digest realm=r, nonce=z, algorithm=sha-512-256").unwrap();
        let all: Vec<&Challenge> = ok.iter().chain([&with_512]).collect();
        assert_eq!(select_best(all).unwrap().nonce, "z");
        assert!(select_best(&ok[2..3]).is_none());
    }
}
