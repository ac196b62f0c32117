//! Digest challenges: the values of `WWW-Authenticate` (401) and `Proxy-Authenticate` (407).
//!
//! [`Challenge`] is parsed from and printed to a header value, so servers build challenges
//! as data and never format them by hand. [`parse_challenge_list`] reads a value that holds
//! several challenges (possibly of other schemes); [`select_best`] picks the strongest one we
//! can answer. A server offering several algorithms (RFC 8760) lists its preferred one
//! first; choosing by strength instead of position gives the same answer for a well-ordered
//! server and keeps a middlebox that reorders or prepends an MD5 challenge from
//! downgrading us.

use std::borrow::Cow;
use std::fmt;

use smallvec::SmallVec;

use super::params::{
    parse_items, AuthParam, ItemBody, Lexer, ParamWriter, RawBody, RawItem, MAX_ITEMS,
};
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

/// What a client needs of one Digest challenge, borrowed from its header value: the fields
/// [`Challenge`] holds that bear on answering it, without the owned strings and lists
/// (the registration engine reads one challenge per 401 and keeps three of its values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChallengeView<'a> {
    pub realm: Cow<'a, str>,
    pub nonce: Cow<'a, str>,
    pub opaque: Option<Cow<'a, str>>,
    pub stale: bool,
    /// The challenge named its algorithm.
    pub algorithm_named: bool,
    /// The effective algorithm, `None` if it is one we do not implement.
    pub algorithm: Option<Algorithm>,
    /// [`Challenge::client_qop`].
    pub client_qop: Option<Option<Qop>>,
    pub userhash: bool,
}

impl ChallengeView<'_> {
    fn is_usable(&self) -> bool {
        self.algorithm.is_some() && self.client_qop.is_some()
    }
}

/// The challenge [`select_best`] picks among the usable ones of `values` (each parsed as by
/// [`parse_challenge_list`], a value that fails to parse as a whole contributing none) whose
/// realm and nonce hold no CR or LF: the same choice, from borrowed slices, in one pass.
pub(crate) fn best_challenge<'a>(
    values: impl IntoIterator<Item = &'a str>,
) -> Option<ChallengeView<'a>> {
    let mut best: Option<(ChallengeView<'a>, u8)> = None;
    let mut items: SmallVec<[ChallengeView<'a>; 2]> = SmallVec::new();
    for v in values {
        items.clear();
        if view_items(v, &mut items).is_err() {
            continue;
        }
        for c in items.drain(..) {
            let line_break = |t: &str| memchr::memchr2(b'\r', b'\n', t.as_bytes()).is_some();
            if line_break(&c.realm) || line_break(&c.nonce) || !c.is_usable() {
                continue;
            }
            let rank = c.algorithm.map_or(0, Algorithm::strength);
            if best.as_ref().is_none_or(|(_, r)| rank > *r) {
                best = Some((c, rank));
            }
        }
    }
    best.map(|(c, _)| c)
}

/// The Digest challenges of one header value that [`Challenge::from_item`] accepts, as
/// views; `Err` where [`super::params::parse_items`] fails.
fn view_items<'a>(
    value: &'a str,
    out: &mut SmallVec<[ChallengeView<'a>; 2]>,
) -> Result<(), ParseError> {
    let mut lx = Lexer::new(value);
    let mut count = 0usize;
    loop {
        lx.skip_empty_elements();
        if lx.at_end() {
            break;
        }
        if count == MAX_ITEMS {
            return Err(ParseError::TooManyParams);
        }
        count += 1;
        let mut b = ViewBuilder::default();
        let (scheme, body) = lx.item(&mut |name, v| b.add(name, v))?;
        if !scheme.eq_ignore_ascii_case("Digest") || matches!(body, ItemBody::Token68(_)) {
            continue;
        }
        if let Some(c) = b.finish() {
            out.push(c);
        }
    }
    if count == 0 {
        return Err(ParseError::Empty);
    }
    Ok(())
}

/// The parameters of one challenge as [`Challenge::from_item`] reads them; `bad` once it
/// would fail (a duplicate parameter).
#[derive(Default)]
struct ViewBuilder<'a> {
    realm: Option<Cow<'a, str>>,
    nonce: Option<Cow<'a, str>>,
    opaque: Option<Cow<'a, str>>,
    stale: Option<bool>,
    algorithm: Option<Option<Algorithm>>,
    qop: Option<Option<Option<Qop>>>,
    userhash: Option<bool>,
    domain: bool,
    charset: bool,
    bad: bool,
}

fn once<T>(slot: &mut Option<T>, bad: &mut bool, v: T) {
    if slot.is_some() {
        *bad = true;
    } else {
        *slot = Some(v);
    }
}

impl<'a> ViewBuilder<'a> {
    fn add(&mut self, name: &'a str, v: Cow<'a, str>) {
        let bad = &mut self.bad;
        let is = |n: &str| name.eq_ignore_ascii_case(n);
        if is("realm") {
            once(&mut self.realm, bad, v);
        } else if is("nonce") {
            once(&mut self.nonce, bad, v);
        } else if is("opaque") {
            once(&mut self.opaque, bad, v);
        } else if is("stale") {
            once(&mut self.stale, bad, v.eq_ignore_ascii_case("true"));
        } else if is("algorithm") {
            let a = AlgorithmParam::effective(Some(&AlgorithmParam::parse(&v)));
            once(&mut self.algorithm, bad, a);
        } else if is("qop") {
            let offers = |q: Qop| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .any(|s| Qop::from_name(s) == Some(q))
            };
            let client = if offers(Qop::Auth) {
                Some(Some(Qop::Auth))
            } else if offers(Qop::AuthInt) {
                Some(Some(Qop::AuthInt))
            } else {
                None
            };
            once(&mut self.qop, bad, client);
        } else if is("userhash") {
            once(&mut self.userhash, bad, v.eq_ignore_ascii_case("true"));
        } else if is("domain") {
            *bad |= std::mem::replace(&mut self.domain, true);
        } else if is("charset") {
            *bad |= std::mem::replace(&mut self.charset, true);
        }
    }

    fn finish(self) -> Option<ChallengeView<'a>> {
        if self.bad {
            return None;
        }
        Some(ChallengeView {
            realm: self.realm?,
            nonce: self.nonce?,
            opaque: self.opaque,
            stale: self.stale.unwrap_or(false),
            algorithm_named: self.algorithm.is_some(),
            algorithm: self.algorithm.unwrap_or(Some(Algorithm::Md5)),
            client_qop: self.qop.unwrap_or(Some(None)),
            userhash: self.userhash.unwrap_or(false),
        })
    }
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

    /// [`best_challenge`] chooses what the owned path (parse every value, keep the usable
    /// challenges without CR/LF, [`select_best`]) chooses, with the same fields.
    #[test]
    fn best_challenge_matches_the_owned_path() {
        fn owned(values: &[&str]) -> Option<Challenge> {
            let mut parsed = Vec::new();
            for v in values {
                if let Ok(list) = parse_challenge_list(v) {
                    parsed.extend(list.into_iter().flatten());
                }
            }
            let usable = parsed.iter().filter(|c| {
                !c.realm.contains(['\r', '\n']) && !c.nonce.contains(['\r', '\n']) && c.is_usable()
            });
            select_best(usable).cloned()
        }
        let rfc = RFC7616.replace("\n        ", " ");
        let cases: Vec<Vec<&str>> = vec![
            vec!["Digest realm=\"vigil.test\", nonce=\"Z0b7+m0d\", qop=\"auth\", algorithm=MD5"],
            vec![&rfc],
            vec![
                "Digest realm=r, nonce=a, algorithm=MD5, qop=\"auth\", Basic realm=\"r\", \
                  Digest realm=r, nonce=b, algorithm=SHA-256, qop=\"auth\", \
                  Digest realm=r, nonce=c, algorithm=AKAv1-MD5, qop=\"auth\", \
                  Digest realm=r, nonce=d, algorithm=SHA-512-256, qop=\"x-unknown\", \
                  Digest realm=r, nonce=e, algorithm=SHA-256-sess, qop=\"auth\"",
            ],
            vec![
                "Digest realm=r, nonce=a",
                "Digest realm=r, nonce=z, algorithm=sha-512-256",
            ],
            vec![
                "Digest realm=r, nonce=z, algorithm=sha-512-256, qop=\"auth\"x",
                "Digest realm=q, nonce=y",
            ],
            vec![
                "Digest realm=r, realm=s, nonce=a",
                "Digest realm=t, nonce=b, STALE=TRUE",
            ],
            vec![
                "Digest realm=r, nonce=a, domain=x, DOMAIN=y",
                "Digest nonce=n",
            ],
            vec!["Digest realm=r, nonce=a, charset=UTF-8, charset=x"],
            vec!["Digest realm=r, nonce=a, qop=\" AUTH-INT , \", userhash=TRUE, opaque=\"o\\\"p\""],
            vec!["Digest realm=r, nonce=a, qop=\"auth\", qop=\"auth\""],
            vec!["Digest realm=r, nonce=a, algorithm=MD5, algorithm=MD5"],
            vec!["Digest realm=\"a\\\"b\", nonce=n, stale=false, x-foo=\"a b\""],
            vec![
                "Digest abc==",
                "Basic realm=x",
                "dIgEsT REALM=\"r\", Nonce=n",
            ],
            vec!["", " , ,", "Digest", "Digest realm=r, nonce=a, Bad@"],
            vec![
                "Digest realm=r, nonce=m, algorithm=MD5-sess, qop=auth",
                "Digest realm=r, nonce=s, algorithm=SHA-256",
            ],
        ];
        let many = format!(
            "{}, Digest realm=r, nonce=x",
            vec!["Basic a=b"; 64].join(", ")
        );
        let cases = cases.into_iter().chain([vec![many.as_str()]]);
        for values in cases {
            let want = owned(&values);
            let got = best_challenge(values.iter().copied());
            match (&want, &got) {
                (None, None) => {}
                (Some(w), Some(g)) => {
                    assert_eq!(w.realm, g.realm, "{values:?}");
                    assert_eq!(w.nonce, g.nonce, "{values:?}");
                    assert_eq!(w.opaque.as_deref(), g.opaque.as_deref(), "{values:?}");
                    assert_eq!(w.stale, g.stale, "{values:?}");
                    assert_eq!(w.algorithm.is_some(), g.algorithm_named, "{values:?}");
                    assert_eq!(w.algorithm(), g.algorithm, "{values:?}");
                    assert_eq!(w.client_qop(), g.client_qop, "{values:?}");
                    assert_eq!(w.userhash, g.userhash, "{values:?}");
                }
                _ => panic!("{values:?}: owned {want:?}, view {got:?}"),
            }
        }
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
