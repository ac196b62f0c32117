//! HTTP Digest authentication for SIP (RFC 7616, RFC 8760, RFC 3261 §22), client and server.
//!
//! This module works on header *values* (`&str`), not on SIP messages, so that it can be
//! tested against the RFC examples on its own; the registration machine glues it to
//! `msg`. Pieces:
//! - [`params`]: the auth-param list lexer and the quoting printer.
//! - [`challenge`]: `WWW-Authenticate` / `Proxy-Authenticate` values ([`Challenge`]), and
//!   choosing the strongest one a server offers ([`select_best`]).
//! - [`credentials`]: `Authorization` / `Proxy-Authorization` values ([`Credentials`]).
//! - [`algorithm`]: MD5, SHA-256, SHA-512-256 and their `-sess` variants, and the response
//!   formula both sides share.
//! - [`client`]: [`DigestClient`], which answers challenges, reuses a nonce with increasing
//!   nonce-count, and refuses to loop on a server that keeps rejecting it.
//! - [`server`]: [`DigestServer`], which issues stateless HMAC-signed nonces and verifies
//!   credentials with bounded replay state.
//!
//! Secrets ([`Password`], [`Ha1`]) never print in `Debug` output and are wiped on drop.
//!
//! How the registration machine (client) and a registrar (server) use it:
//!
//! ```
//! use std::time::Duration;
//! use vigil_proto::auth::*;
//! use vigil_proto::rng::CoreRng;
//!
//! let mut rng = CoreRng::from_seed(1);
//! let secret = Secret::Password(Password::new("s3cret"));
//! let key = ServerSecret::random(&mut rng);
//! let mut server = DigestServer::new(ServerConfig::new("example.org"), key).unwrap();
//! let mut client = DigestClient::new("alice", secret.clone()).unwrap();
//! let request = DigestRequest { method: "REGISTER", uri: "sip:example.org", body: b"" };
//! let now = Duration::from_secs(1_700_000_000); // the shell's time since the UNIX epoch
//!
//! // First REGISTER carries no credentials; the registrar answers 401.
//! assert!(client.authorize(&mut rng, &request).unwrap().is_empty());
//! let headers: Vec<String> =
//!     server.challenges(now, &mut rng, false).iter().map(|c| c.to_string()).collect();
//! client.handle_challenge(ChallengeKind::Www, headers.iter().map(String::as_str)).unwrap();
//!
//! // The retry carries `Authorization: <value>`; the registrar checks it.
//! let auth = client.authorize(&mut rng, &request).unwrap().remove(0);
//! assert_eq!(auth.kind.credentials_header(), "Authorization");
//! let received = Credentials::parse(&auth.credentials.to_string()).unwrap();
//! let ok = server.verify(now, &request, &received, "alice", &secret).unwrap();
//! assert_eq!(ok.algorithm, Algorithm::Sha256);
//! client.handle_success(); // 200 OK: the next refresh reuses the nonce with nc=2
//! ```

pub mod algorithm;
pub mod challenge;
pub mod client;
pub mod credentials;
pub mod params;
#[cfg(test)]
mod proptests;
pub mod server;

use std::fmt;

use zeroize::Zeroizing;

pub use algorithm::{Algorithm, AlgorithmParam, HashFamily};
pub use challenge::{parse_challenge_list, select_best, Challenge};
pub use client::{Authorization, ChallengeKind, DigestClient};
pub use credentials::{Credentials, NonceCount};
pub use params::AuthParam;
pub use server::{
    Authorized, ConfigError, Denied, DenyReason, DigestServer, ServerConfig, ServerSecret,
};

/// Why a header value is not a usable Digest challenge or credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The value holds no challenge or credentials at all.
    #[error("empty authentication header value")]
    Empty,
    /// Where an auth-scheme token was expected, something else was found.
    #[error("expected an auth-scheme at byte {at}")]
    ExpectedScheme {
        /// Byte offset in the header value.
        at: usize,
    },
    /// A quoted-string or quoted-pair runs to the end of the value.
    #[error("unterminated quoted-string starting at byte {at}")]
    UnterminatedQuote {
        /// Byte offset of the opening quote.
        at: usize,
    },
    /// A character the grammar does not allow here (including CR/LF inside a value).
    #[error("unexpected character at byte {at}")]
    InvalidChar {
        /// Byte offset in the header value.
        at: usize,
    },
    /// `name=` with no value.
    #[error("expected a parameter value at byte {at}")]
    ExpectedValue {
        /// Byte offset in the header value.
        at: usize,
    },
    /// More parameters or challenges than any real peer sends.
    #[error("too many parameters")]
    TooManyParams,
    /// The scheme is not Digest (Basic, Bearer, Negotiate, …).
    #[error("unsupported authentication scheme {scheme:?}")]
    UnsupportedScheme {
        /// The scheme as received.
        scheme: String,
    },
    /// A Digest scheme followed by a token68 blob instead of parameters.
    #[error("Digest scheme without parameters")]
    Token68NotAllowed,
    /// A parameter the grammar requires is absent.
    #[error("missing required parameter {0}")]
    MissingParam(&'static str),
    /// A known parameter appears twice (RFC 7616 §3.3: each at most once).
    #[error("duplicate parameter {0}")]
    DuplicateParam(&'static str),
    /// A known parameter has a value of the wrong form (e.g. `nc` not 8 hex digits).
    #[error("invalid value for parameter {0}")]
    InvalidParam(&'static str),
    /// Credentials values hold exactly one item; more followed.
    #[error("more than one credentials item in one header value")]
    TrailingItems,
}

/// Why a client could not produce credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No challenge names an algorithm and qop we support (for our realm and secret).
    #[error("no usable Digest challenge")]
    NoUsableChallenge {
        /// The first parse error met, if any challenge failed to parse.
        parse_error: Option<ParseError>,
    },
    /// The server rejected credentials computed for its own challenge without saying the
    /// nonce was stale: the username or password is wrong. The client forgets the nonce, so
    /// a later attempt starts over with one retry.
    #[error("credentials rejected by the server")]
    Rejected,
    /// The server kept answering `stale=true` without ever accepting a request.
    #[error("too many consecutive stale challenges")]
    TooManyStale,
    /// Challenges for more than [`client::MAX_SPACES`] realms arrived without a success.
    #[error("too many protection spaces")]
    TooManySpaces,
    /// The nonce-count reached its 32-bit limit; a new challenge is needed.
    #[error("nonce-count exhausted")]
    NonceCountExhausted,
    /// A username, realm or URI contains CR or LF and cannot go into a header.
    #[error("value contains CR or LF")]
    InvalidValue,
}

/// A `qop` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Qop {
    /// `auth`: authenticates method and URI.
    Auth,
    /// `auth-int`: also covers the message body.
    AuthInt,
}

impl Qop {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auth => "auth",
            Self::AuthInt => "auth-int",
        }
    }

    /// Case-insensitive lookup.
    pub fn from_name(s: &str) -> Option<Self> {
        if s.eq_ignore_ascii_case("auth") {
            Some(Self::Auth)
        } else if s.eq_ignore_ascii_case("auth-int") {
            Some(Self::AuthInt)
        } else {
            None
        }
    }
}

/// The request being authorized: what the response covers besides the secret.
#[derive(Debug, Clone, Copy)]
pub struct DigestRequest<'a> {
    /// The SIP method (`REGISTER`, `INVITE`, …).
    pub method: &'a str,
    /// The Request-URI as it appears on the request line (digest-uri must equal it).
    pub uri: &'a str,
    /// The message body, used by qop=auth-int only.
    pub body: &'a [u8],
}

/// A SIP password. `Debug` prints no part of it; its memory is zeroed on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(Zeroizing<String>);

impl Password {
    /// Wraps a password.
    pub fn new(s: impl Into<String>) -> Self {
        Self(Zeroizing::new(s.into()))
    }

    /// The password text, for hashing only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// A precomputed `HA1 = H(username ":" realm ":" password)` for one hash family, as stored
/// by registrars that keep no clear-text passwords. It is password-equivalent for that realm,
/// so it is redacted and zeroed like a password.
#[derive(Clone, PartialEq, Eq)]
pub struct Ha1 {
    family: HashFamily,
    hex: Zeroizing<String>,
}

impl Ha1 {
    /// Computes HA1 from a password.
    pub fn compute(family: HashFamily, username: &str, realm: &str, password: &Password) -> Self {
        algorithm::ha1_from_password(family, username, realm, password)
    }

    /// Takes a stored HA1 in hex (either case); `None` if it is not hex of the right length.
    pub fn from_hex(family: HashFamily, hex: &str) -> Option<Self> {
        let ok = hex.len() == 2 * family.output_len() && hex.bytes().all(|b| b.is_ascii_hexdigit());
        ok.then(|| Self {
            family,
            hex: Zeroizing::new(hex.to_ascii_lowercase()),
        })
    }

    pub(crate) fn from_trusted_hex(family: HashFamily, hex: Zeroizing<String>) -> Self {
        Self { family, hex }
    }

    /// The hash family this HA1 was computed with.
    pub fn family(&self) -> HashFamily {
        self.family
    }

    pub(crate) fn hex(&self) -> &str {
        &self.hex
    }
}

impl fmt::Debug for Ha1 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ha1({:?}, <redacted>)", self.family)
    }
}

/// What a side knows about the user's secret.
#[derive(Debug, Clone)]
pub enum Secret {
    /// The clear-text password: every algorithm can be answered or checked.
    Password(Password),
    /// A precomputed HA1: only algorithms of its hash family.
    Ha1(Ha1),
}

impl Secret {
    /// HA1 for `family`, or `None` if a stored HA1 is of another family.
    pub(crate) fn ha1(&self, family: HashFamily, username: &str, realm: &str) -> Option<Ha1> {
        match self {
            Self::Password(p) => Some(Ha1::compute(family, username, realm, p)),
            Self::Ha1(h) => (h.family() == family).then(|| h.clone()),
        }
    }

    /// True if this secret can answer or check `algorithm`.
    pub fn supports(&self, algorithm: Algorithm) -> bool {
        match self {
            Self::Password(_) => true,
            Self::Ha1(h) => h.family() == algorithm.hash(),
        }
    }
}

/// True if `s` can be placed in a header value.
pub(crate) fn header_safe(s: &str) -> bool {
    !s.bytes().any(|b| b == b'\r' || b == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_leak_through_debug() {
        let p = Password::new("Circle of Life");
        let h = Ha1::compute(HashFamily::Md5, "Mufasa", "r", &p);
        let s = format!(
            "{p:?} {h:?} {:?} {:?}",
            Secret::Password(p.clone()),
            Secret::Ha1(h.clone())
        );
        assert!(!s.contains("Circle"), "{s}");
        assert!(!s.contains(h.hex()), "{s}");
        assert!(s.contains("redacted"));
    }

    #[test]
    fn ha1_from_hex_checks_form() {
        let h = Ha1::from_hex(HashFamily::Md5, "939E7578ED9E3C518A452ACEE763BCE9").unwrap();
        assert_eq!(h.hex(), "939e7578ed9e3c518a452acee763bce9");
        assert!(Ha1::from_hex(HashFamily::Sha256, "939e7578ed9e3c518a452acee763bce9").is_none());
        assert!(Ha1::from_hex(HashFamily::Md5, "zz9e7578ed9e3c518a452acee763bce9").is_none());
    }
}
