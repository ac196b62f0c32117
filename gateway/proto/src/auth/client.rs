//! The client side: answering 401/407 challenges for one account.
//!
//! A [`DigestClient`] holds one username and secret and, per protection space (challenge
//! kind and realm: a proxy's 407 and the registrar's 401 are two), the nonce it was last
//! given. The registration machine feeds it every challenge
//! ([`DigestClient::handle_challenge`]), asks it for credentials before each request
//! ([`DigestClient::authorize`]), and reports accepted requests
//! ([`DigestClient::handle_success`]).
//!
//! Nonce reuse: after one challenge, later requests (REGISTER refreshes, SUBSCRIBEs) carry
//! credentials for the same nonce with nc = 2, 3, …, so a server that allows it needs no
//! extra 401 round trip. Loop prevention, per protection space:
//!
//! ```text
//!   no nonce --challenge--> answering --success--> reusing --challenge(new nonce)--> answering
//!                            |    ^                   |
//!        challenge, !stale   |    | stale=true        | challenge(same nonce, !stale)
//!                            v    | (≤ MAX_STALE)     v
//!                         Rejected (all nonces forgotten) <-
//! ```
//!
//! So a request answered with credentials for a fresh challenge gets at most one retry; only
//! `stale=true` (correct password, old nonce) earns another, and only [`MAX_STALE`] times in a
//! row. At most [`MAX_SPACES`] protection spaces are kept, so a server inventing a new realm
//! per response cannot make the client loop either.

use std::fmt;

use super::algorithm::{compute_response, userhash, ResponseInput};
use super::challenge::{parse_challenge_list, select_best, Challenge};
use super::credentials::{Credentials, NonceCount};
use super::{header_safe, Algorithm, AuthError, DigestRequest, Ha1, Qop, Secret};
use crate::rng::CoreRng;

/// How many `stale=true` challenges in a row, without an accepted request between them, the
/// client follows before giving up; a correct server needs one.
pub const MAX_STALE: u8 = 3;

/// Protection spaces (proxy and registrar realms) kept at once; a request rarely crosses
/// more than a proxy and a registrar.
pub const MAX_SPACES: usize = 4;

/// Length of generated client nonces, in token characters (about 143 bits of randomness).
const CNONCE_LEN: usize = 24;

/// Who challenged: decides the header pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChallengeKind {
    /// 401 with `WWW-Authenticate`; answered with `Authorization`.
    Www,
    /// 407 with `Proxy-Authenticate`; answered with `Proxy-Authorization`.
    Proxy,
}

impl ChallengeKind {
    /// The header that carries the challenge.
    pub fn challenge_header(self) -> &'static str {
        match self {
            Self::Www => "WWW-Authenticate",
            Self::Proxy => "Proxy-Authenticate",
        }
    }

    /// The header that carries the answer.
    pub fn credentials_header(self) -> &'static str {
        match self {
            Self::Www => "Authorization",
            Self::Proxy => "Proxy-Authorization",
        }
    }
}

/// Credentials for one protection space, and the header to put them in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// Which challenge this answers; [`ChallengeKind::credentials_header`] names the header.
    pub kind: ChallengeKind,
    /// The header value (print with `to_string()`).
    pub credentials: Credentials,
}

/// Answers Digest challenges for one account; see the module documentation.
pub struct DigestClient {
    username: String,
    secret: Secret,
    realm: Option<String>,
    /// One per protection space, in the order they were first challenged.
    sessions: Vec<Session>,
    stale_streak: u8,
}

/// Usernames are personal data and the secret is never printed: `Debug` shows only the
/// state that explains the client's decisions.
impl fmt::Debug for DigestClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let spaces: Vec<_> = self
            .sessions
            .iter()
            .map(|s| (s.kind, s.algorithm, s.nc, s.answering))
            .collect();
        f.debug_struct("DigestClient")
            .field("realm", &self.realm)
            .field("spaces", &spaces)
            .field("stale_streak", &self.stale_streak)
            .finish_non_exhaustive()
    }
}

/// What the client keeps about the nonce of one protection space.
struct Session {
    kind: ChallengeKind,
    challenge: Challenge,
    algorithm: Algorithm,
    qop: Option<Qop>,
    /// HA1 of the base hash for the challenge's realm, computed once per challenge.
    ha1: Ha1,
    /// The last nonce-count sent (0 before the first request).
    nc: u32,
    /// For `-sess` algorithms the cnonce that went into the session key stays fixed for the
    /// life of the nonce, so that servers that compute the key once and servers that
    /// recompute it per request agree.
    sess_cnonce: Option<String>,
    /// Credentials for this nonce have been sent at least once.
    used: bool,
    /// No request with this nonce has been accepted yet: it came from a challenge we are still
    /// answering, so another non-stale challenge means the secret is wrong.
    answering: bool,
}

impl DigestClient {
    /// A client for `username` with its password or precomputed HA1.
    /// Fails if the username holds CR or LF.
    pub fn new(username: impl Into<String>, secret: Secret) -> Result<Self, AuthError> {
        let username = username.into();
        if !header_safe(&username) {
            return Err(AuthError::InvalidValue);
        }
        Ok(Self {
            username,
            secret,
            realm: None,
            sessions: Vec::new(),
            stale_streak: 0,
        })
    }

    /// Only answer challenges for `realm` (by default any realm is answered, as SIP UAs do).
    /// Advisable with a precomputed HA1, which is only valid for one realm.
    pub fn with_realm(mut self, realm: impl Into<String>) -> Self {
        self.realm = Some(realm.into());
        self
    }

    /// The username this client authenticates as.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The challenges currently answered or reused, one per protection space.
    pub fn challenges(&self) -> impl Iterator<Item = (ChallengeKind, &Challenge)> {
        self.sessions.iter().map(|s| (s.kind, &s.challenge))
    }

    /// The last nonce-count sent in the protection space `(kind, realm)`.
    pub fn nonce_count(&self, kind: ChallengeKind, realm: &str) -> Option<NonceCount> {
        self.space(kind, realm)
            .map(|i| NonceCount(self.sessions[i].nc))
    }

    /// Forgets every nonce (for example when the upstream server changed).
    pub fn reset(&mut self) {
        self.sessions.clear();
        self.stale_streak = 0;
    }

    fn space(&self, kind: ChallengeKind, realm: &str) -> Option<usize> {
        self.sessions
            .iter()
            .position(|s| s.kind == kind && s.challenge.realm == realm)
    }

    /// Handles the `WWW-Authenticate` (401, [`ChallengeKind::Www`]) or `Proxy-Authenticate`
    /// (407, [`ChallengeKind::Proxy`]) values of a response, one entry per header line; each
    /// may hold several challenges.
    ///
    /// Picks the strongest challenge we can answer. Returns [`AuthError::Rejected`] if the
    /// server turned down credentials computed for its own challenge without `stale=true`,
    /// [`AuthError::TooManyStale`] past [`MAX_STALE`] stale challenges in a row, and
    /// [`AuthError::TooManySpaces`] past [`MAX_SPACES`] realms; all three forget every nonce,
    /// so a later attempt starts over.
    pub fn handle_challenge<'a>(
        &mut self,
        kind: ChallengeKind,
        header_values: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), AuthError> {
        let mut challenges = Vec::new();
        let mut parse_error = None;
        for value in header_values {
            match parse_challenge_list(value) {
                Ok(list) => {
                    for c in list {
                        match c {
                            Ok(c) => challenges.push(c),
                            Err(e) => {
                                parse_error.get_or_insert(e);
                            }
                        }
                    }
                }
                Err(e) => {
                    parse_error.get_or_insert(e);
                }
            }
        }
        self.handle_parsed_challenges(kind, &challenges)
            .map_err(|e| match e {
                AuthError::NoUsableChallenge { .. } => AuthError::NoUsableChallenge { parse_error },
                e => e,
            })
    }

    /// Like [`Self::handle_challenge`], for challenges that are already parsed.
    pub fn handle_parsed_challenges(
        &mut self,
        kind: ChallengeKind,
        challenges: &[Challenge],
    ) -> Result<(), AuthError> {
        const UNUSABLE: AuthError = AuthError::NoUsableChallenge { parse_error: None };
        let candidates = challenges.iter().filter(|c| {
            self.realm.as_ref().is_none_or(|r| *r == c.realm)
                && c.algorithm().is_some_and(|a| self.secret.supports(a))
                && header_safe(&c.realm)
                && header_safe(&c.nonce)
        });
        let chosen = select_best(candidates).ok_or(UNUSABLE)?;
        if kind == ChallengeKind::Www {
            // A 401 comes from beyond every proxy, so each proxy accepted what we sent it.
            for s in self
                .sessions
                .iter_mut()
                .filter(|s| s.kind == ChallengeKind::Proxy)
            {
                s.answering &= !s.used;
            }
        }
        let existing = self.space(kind, &chosen.realm);
        if let Some(cur) = existing.map(|i| &self.sessions[i]).filter(|s| s.used) {
            if chosen.stale {
                self.stale_streak += 1;
                if self.stale_streak > MAX_STALE {
                    self.reset();
                    return Err(AuthError::TooManyStale);
                }
            } else if cur.answering || chosen.nonce == cur.challenge.nonce {
                self.reset();
                return Err(AuthError::Rejected);
            }
        }
        if existing.is_none() && self.sessions.len() == MAX_SPACES {
            self.reset();
            return Err(AuthError::TooManySpaces);
        }
        let algorithm = chosen.algorithm().ok_or(UNUSABLE)?;
        let qop = chosen.client_qop().ok_or(UNUSABLE)?;
        let ha1 = self
            .secret
            .ha1(algorithm.hash(), &self.username, &chosen.realm)
            .ok_or(UNUSABLE)?;
        let session = Session {
            kind,
            challenge: chosen.clone(),
            algorithm,
            qop,
            ha1,
            nc: 0,
            sess_cnonce: None,
            used: false,
            answering: true,
        };
        match existing {
            Some(i) => self.sessions[i] = session,
            None => self.sessions.push(session),
        }
        Ok(())
    }

    /// Reports that a request sent with our credentials was accepted (2xx, or any final
    /// response other than 401/407): the nonces are good for reuse and the stale count resets.
    pub fn handle_success(&mut self) {
        for s in &mut self.sessions {
            s.answering = false;
        }
        self.stale_streak = 0;
    }

    /// Credentials for the next request, one per protection space, each using its current
    /// nonce with the next nonce-count; empty before any challenge (send the request without
    /// credentials and let the server challenge).
    pub fn authorize(
        &mut self,
        rng: &mut CoreRng,
        request: &DigestRequest<'_>,
    ) -> Result<Vec<Authorization>, AuthError> {
        if !header_safe(request.uri) || !header_safe(request.method) {
            return Err(AuthError::InvalidValue);
        }
        let username = &self.username;
        self.sessions
            .iter_mut()
            .map(|s| {
                let credentials = s.authorize(rng, username, request)?;
                Ok(Authorization {
                    kind: s.kind,
                    credentials,
                })
            })
            .collect()
    }
}

impl Session {
    fn authorize(
        &mut self,
        rng: &mut CoreRng,
        username: &str,
        request: &DigestRequest<'_>,
    ) -> Result<Credentials, AuthError> {
        let nc = self
            .nc
            .checked_add(1)
            .ok_or(AuthError::NonceCountExhausted)?;
        let sess = self.algorithm.is_sess();
        // The RFC 2069 form has no cnonce, except that -sess needs one for the session key.
        let cnonce = match &self.sess_cnonce {
            Some(c) => Some(c.clone()),
            None if self.qop.is_some() || sess => {
                let mut c = String::with_capacity(CNONCE_LEN);
                rng.push_token(&mut c, CNONCE_LEN);
                if sess {
                    self.sess_cnonce = Some(c.clone());
                }
                Some(c)
            }
            None => None,
        };
        let nc_text = NonceCount(nc).to_string();
        let response = compute_response(&ResponseInput {
            algorithm: self.algorithm,
            ha1: self.ha1.hex().as_bytes(),
            ha1_family: self.ha1.family(),
            nonce: &self.challenge.nonce,
            method: request.method,
            uri: request.uri,
            qop: self.qop,
            qop_text: None,
            nc: nc_text.as_bytes(),
            cnonce: cnonce.as_deref().unwrap_or(""),
            body: request.body,
        })
        .ok_or(AuthError::NoUsableChallenge { parse_error: None })?;
        let c = &self.challenge;
        let (username, hashed) = if c.userhash {
            (userhash(self.algorithm.hash(), username, &c.realm), true)
        } else {
            (username.to_owned(), false)
        };
        self.nc = nc;
        self.used = true;
        Ok(Credentials {
            username,
            realm: c.realm.clone(),
            nonce: c.nonce.clone(),
            uri: request.uri.to_owned(),
            response: response.to_string(),
            algorithm: c.algorithm.clone(),
            cnonce,
            opaque: c.opaque.clone(),
            qop: self.qop.map(|q| q.as_str().to_owned()),
            nc: self.qop.is_some().then_some(NonceCount(nc)),
            userhash: hashed,
            params: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{ParseError, Password};
    use ChallengeKind::{Proxy, Www};

    fn client() -> DigestClient {
        DigestClient::new("alice", Secret::Password(Password::new("pw"))).unwrap()
    }

    const REQ: DigestRequest<'static> = DigestRequest {
        method: "REGISTER",
        uri: "sip:example.org",
        body: b"",
    };

    fn one(c: &mut DigestClient, rng: &mut CoreRng) -> Credentials {
        let mut v = c.authorize(rng, &REQ).unwrap();
        assert_eq!(v.len(), 1);
        v.remove(0).credentials
    }

    #[test]
    fn nonce_reuse_counts_up_and_cnonce_changes() {
        let mut c = client();
        let mut rng = CoreRng::from_seed(1);
        assert_eq!(c.authorize(&mut rng, &REQ), Ok(Vec::new()));
        c.handle_challenge(Www, ["Digest realm=\"r\", nonce=\"n1\", qop=\"auth\""])
            .unwrap();
        let a = one(&mut c, &mut rng);
        c.handle_success();
        let b = one(&mut c, &mut rng);
        assert_eq!(a.nc, Some(NonceCount(1)));
        assert_eq!(b.nc, Some(NonceCount(2)));
        assert_eq!(b.nonce, "n1");
        assert_ne!(a.cnonce, b.cnonce);
        assert_ne!(a.response, b.response);
        assert_eq!(c.nonce_count(Www, "r"), Some(NonceCount(2)));
        assert_eq!(c.nonce_count(Proxy, "r"), None);
        let debug = format!("{c:?}");
        assert!(!debug.contains("alice") && !debug.contains("pw"), "{debug}");
        assert!(debug.contains("Www, Md5, 2, false"), "{debug}");
    }

    #[test]
    fn same_nonce_again_is_rejected_and_forgotten() {
        let mut c = client();
        let mut rng = CoreRng::from_seed(2);
        let ch = "Digest realm=\"r\", nonce=\"n1\", qop=\"auth\"";
        c.handle_challenge(Www, [ch]).unwrap();
        one(&mut c, &mut rng);
        assert_eq!(c.handle_challenge(Www, [ch]), Err(AuthError::Rejected));
        assert_eq!(c.challenges().count(), 0);
        // A later attempt starts over with one retry.
        c.handle_challenge(Www, [ch]).unwrap();
    }

    #[test]
    fn proxy_then_registrar_answers_both() {
        let mut c = client();
        let mut rng = CoreRng::from_seed(3);
        c.handle_challenge(
            Proxy,
            ["Digest realm=\"proxy\", nonce=\"p1\", qop=\"auth\""],
        )
        .unwrap();
        one(&mut c, &mut rng);
        // The registrar behind the proxy challenges next: not a rejection of the proxy.
        c.handle_challenge(Www, ["Digest realm=\"reg\", nonce=\"r1\", qop=\"auth\""])
            .unwrap();
        let both = c.authorize(&mut rng, &REQ).unwrap();
        let kinds: Vec<_> = both
            .iter()
            .map(|a| (a.kind.credentials_header(), a.credentials.realm.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [("Proxy-Authorization", "proxy"), ("Authorization", "reg")]
        );
        assert_eq!(both[0].credentials.nc, Some(NonceCount(2)));
        // The proxy challenging again without stale after accepting once: a fresh nonce
        // (it was accepted), so one retry; the same again is a rejection.
        c.handle_challenge(
            Proxy,
            ["Digest realm=\"proxy\", nonce=\"p2\", qop=\"auth\""],
        )
        .unwrap();
        c.authorize(&mut rng, &REQ).unwrap();
        assert_eq!(
            c.handle_challenge(
                Proxy,
                ["Digest realm=\"proxy\", nonce=\"p3\", qop=\"auth\""]
            ),
            Err(AuthError::Rejected)
        );
    }

    #[test]
    fn a_realm_per_response_is_cut_off() {
        let mut c = client();
        let mut rng = CoreRng::from_seed(4);
        for i in 0..MAX_SPACES {
            let v = format!("Digest realm=\"r{i}\", nonce=\"n\", qop=\"auth\"");
            c.handle_challenge(Proxy, [v.as_str()]).unwrap();
            c.authorize(&mut rng, &REQ).unwrap();
        }
        assert_eq!(
            c.handle_challenge(Proxy, ["Digest realm=\"more\", nonce=\"n\""]),
            Err(AuthError::TooManySpaces)
        );
    }

    #[test]
    fn unusable_challenges_are_reported_with_the_parse_error() {
        let mut c = client().with_realm("mine");
        assert_eq!(
            c.handle_challenge(Www, ["Digest realm=\"other\", nonce=n"]),
            Err(AuthError::NoUsableChallenge { parse_error: None })
        );
        assert_eq!(
            c.handle_challenge(Www, ["Digest realm=\"mine\""]),
            Err(AuthError::NoUsableChallenge {
                parse_error: Some(ParseError::MissingParam("nonce"))
            })
        );
        let bad = DigestClient::new("a\r\nVia: x", Secret::Password(Password::new("p")));
        assert_eq!(bad.err(), Some(AuthError::InvalidValue));
    }
}
