//! The server side: issuing challenges and verifying credentials.
//!
//! Nonces carry their own state, so issuing one stores nothing:
//! `nonce = base64url(issued_secs ‖ random[8] ‖ algorithm_id ‖ HMAC-SHA256(key, …)[..16])`,
//! where the MAC covers a domain label, the issue time, the random part, the algorithm id and
//! the realm. Any instance that shares the key can check a nonce after a restart; a nonce is
//! bound to the algorithm of the challenge that carried it, so credentials cannot answer a
//! SHA-256 challenge's nonce with MD5 (downgrade refused). [`DigestServer::rotate_key`]
//! keeps the previous key for recognition only, so a rotation costs clients one `stale`
//! round trip instead of a failed request.
//!
//! Time: [`DigestServer`] takes `now` as a [`Duration`] since an epoch the caller chooses and
//! keeps fixed for the key's lifetime (the shell passes time since the UNIX epoch, so nonces
//! survive restarts and work across processes). The core never reads a clock.
//!
//! Replay: only accepted requests create state, one `Window` per nonce in use: the highest
//! nc seen plus a 64-bit bitmap below it, as in IPsec anti-replay (RFC 4303 §3.4.3), so
//! requests sent in parallel may arrive out of order. At most `replay_capacity` nonces are
//! tracked. When full, the entry with the oldest issue time is dropped and a watermark
//! records its issue time; a nonce issued at or before the watermark that is not tracked is
//! answered `stale=true`, which costs the client one round trip but never accepts a replay.
//! Expired entries are dropped the same way. Memory is thus bounded by about 64 bytes ×
//! `replay_capacity` (key 16 B, window 16 B, B-tree overhead), 4 MiB at the default 65,536.
//! Replay state is per instance: a cluster should route one client to one instance.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use super::algorithm::userhash;
use super::challenge::Challenge;
use super::credentials::{Credentials, NonceCount};
use super::{header_safe, Algorithm, AlgorithmParam, DigestRequest, Qop, Secret};
use crate::rng::CoreRng;

const NONCE_RAND: usize = 8;
const NONCE_MAC: usize = 16;
const NONCE_BYTES: usize = 8 + NONCE_RAND + 1 + NONCE_MAC;
/// Base64url length of a nonce, checked before decoding anything a peer sent.
const NONCE_CHARS: usize = (NONCE_BYTES * 4).div_ceil(3);
const MAC_LABEL: &[u8] = b"vigil-digest-nonce-v1\0";

/// The key that signs nonces. `Debug` prints nothing of it; zeroed on drop.
#[derive(Clone)]
pub struct ServerSecret([u8; 32]);

impl ServerSecret {
    /// Wraps 32 bytes of key material (from the OS in production, shared by instances that
    /// must accept each other's nonces).
    pub fn new(key: [u8; 32]) -> Self {
        Self(key)
    }

    /// A key drawn from the core's RNG, for a single instance or tests.
    pub fn random(rng: &mut CoreRng) -> Self {
        let mut k = [0u8; 32];
        rng.fill(&mut k);
        Self(k)
    }
}

impl fmt::Debug for ServerSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServerSecret(<redacted>)")
    }
}

impl Drop for ServerSecret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// What a [`DigestServer`] offers and accepts.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The protection space named in challenges; credentials must echo it.
    pub realm: String,
    /// Algorithms offered, one challenge each, in preference order. Credentials using any
    /// other algorithm are refused.
    pub algorithms: Vec<Algorithm>,
    /// qop values offered. Default `auth` only.
    pub qop: Vec<Qop>,
    /// Accept credentials without qop (RFC 2069 clients). Each such nonce then works once.
    pub allow_rfc2069: bool,
    /// Offer `userhash=true`.
    pub userhash: bool,
    /// Require digest-uri to equal the Request-URI (RFC 7616 §3.4.6). Some clients put
    /// another form there (SIPp 3.6 uses the transport address); turning this off accepts
    /// them, while the response still covers the URI they sent and nc replay checks still
    /// apply.
    pub check_uri: bool,
    /// How long a nonce stays fresh; afterwards a correct response gets `stale=true`.
    pub nonce_lifetime: Duration,
    /// How far in the future a nonce's issue time may be (clock skew between instances).
    pub max_clock_skew: Duration,
    /// Nonces tracked for replay detection (see the module documentation).
    pub replay_capacity: usize,
}

impl ServerConfig {
    /// Defaults: SHA-256 then MD5 (many SIP phones know nothing else), qop=auth, nonces
    /// fresh for 5 minutes, 30 s skew, 65,536 tracked nonces.
    pub fn new(realm: impl Into<String>) -> Self {
        Self {
            realm: realm.into(),
            algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
            qop: vec![Qop::Auth],
            allow_rfc2069: false,
            userhash: false,
            check_uri: true,
            nonce_lifetime: Duration::from_secs(300),
            max_clock_skew: Duration::from_secs(30),
            replay_capacity: 65_536,
        }
    }
}

/// A configuration [`DigestServer::new`] refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The realm contains CR or LF.
    #[error("realm cannot go into a header")]
    InvalidRealm,
    /// No algorithm offered.
    #[error("no algorithm configured")]
    NoAlgorithms,
    /// No qop offered and RFC 2069 not allowed: no client could authenticate.
    #[error("no qop configured")]
    NoQop,
    /// `replay_capacity` is zero.
    #[error("replay capacity must be positive")]
    ZeroCapacity,
}

/// A successful verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorized {
    /// The account that authenticated.
    pub username: String,
    /// The algorithm used.
    pub algorithm: Algorithm,
    /// The qop used (`None`: RFC 2069 form).
    pub qop: Option<Qop>,
    /// The nonce-count of this request.
    pub nc: NonceCount,
    /// When the nonce was issued, on the caller's epoch.
    pub nonce_issued: Duration,
}

/// Why credentials were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DenyReason {
    /// The credentials name another realm.
    RealmMismatch,
    /// The algorithm is not implemented or not offered by this server.
    AlgorithmNotOffered,
    /// The nonce was issued for another algorithm (a downgrade attempt or a confused client).
    AlgorithmMismatch,
    /// The nonce was not issued by this key (or is malformed, or from the future).
    UnknownNonce,
    /// The username (or its hash) is not the account checked.
    UsernameMismatch,
    /// digest-uri differs from the Request-URI.
    UriMismatch,
    /// No qop while this server requires one.
    QopMissing,
    /// A qop this server did not offer.
    QopNotOffered,
    /// nc is zero.
    InvalidNonceCount,
    /// The stored HA1 is of another hash family than the algorithm used.
    SecretUnavailable,
    /// The response is wrong: bad password (never answered with `stale`).
    WrongResponse,
    /// Correct response, but the nonce is too old.
    NonceExpired,
    /// Correct response, but this nc was already used with this nonce (or fell below the
    /// replay window).
    Replay,
    /// Correct response, but replay state for this nonce was dropped to bound memory.
    NonceEvicted,
    /// Correct response, but the nonce was signed with the key before the last rotation.
    KeyRotated,
}

/// A refusal: send a fresh challenge ([`DigestServer::challenges`]) with this `stale` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denied {
    /// What was wrong.
    pub reason: DenyReason,
    /// True when the client proved knowledge of the secret and only needs a new nonce.
    pub stale: bool,
}

impl Denied {
    fn new(reason: DenyReason) -> Self {
        Self {
            reason,
            stale: false,
        }
    }

    fn stale(reason: DenyReason) -> Self {
        Self {
            reason,
            stale: true,
        }
    }
}

/// Sliding anti-replay window: `top` is the highest nc accepted, bit `i` of `seen` is nc
/// `top - i`.
#[derive(Debug, Clone, Copy)]
struct Window {
    top: u32,
    seen: u64,
}

impl Window {
    fn new(nc: u32) -> Self {
        Self { top: nc, seen: 1 }
    }

    /// Marks `nc` seen; false if it already was or is too old to tell.
    fn accept(&mut self, nc: u32) -> bool {
        if nc > self.top {
            let shift = nc - self.top;
            self.seen = if shift >= 64 { 0 } else { self.seen << shift };
            self.seen |= 1;
            self.top = nc;
            return true;
        }
        let back = self.top - nc;
        if back >= 64 || self.seen & (1 << back) != 0 {
            return false;
        }
        self.seen |= 1 << back;
        true
    }
}

/// A decoded, authenticated nonce.
struct NonceInfo {
    issued: u64,
    rand: [u8; NONCE_RAND],
    algorithm: Algorithm,
    /// Signed by the key in use before the last [`DigestServer::rotate_key`].
    old_key: bool,
}

/// Issues challenges and verifies credentials; see the module documentation.
#[derive(Debug)]
pub struct DigestServer {
    config: ServerConfig,
    key: ServerSecret,
    /// The key before the last rotation: its nonces still prove a correct response, and
    /// are answered `stale` so clients move to a new nonce without a failure.
    previous_key: Option<ServerSecret>,
    /// Replay windows by (issue time, random part), oldest first.
    windows: BTreeMap<(u64, [u8; NONCE_RAND]), Window>,
    /// Untracked nonces issued at or before this time are answered `stale`.
    watermark: Option<u64>,
}

impl DigestServer {
    /// A server for `config`, signing nonces with `key`.
    pub fn new(config: ServerConfig, key: ServerSecret) -> Result<Self, ConfigError> {
        if !header_safe(&config.realm) {
            return Err(ConfigError::InvalidRealm);
        }
        if config.algorithms.is_empty() {
            return Err(ConfigError::NoAlgorithms);
        }
        if config.qop.is_empty() && !config.allow_rfc2069 {
            return Err(ConfigError::NoQop);
        }
        if config.replay_capacity == 0 {
            return Err(ConfigError::ZeroCapacity);
        }
        Ok(Self {
            config,
            key,
            previous_key: None,
            windows: BTreeMap::new(),
            watermark: None,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Starts signing nonces with `key`. Nonces of the key before are still recognised
    /// until the next rotation (a correct response with one gets `stale=true`); older ones
    /// become unknown. Rotate less often than the nonce lifetime.
    pub fn rotate_key(&mut self, key: ServerSecret) {
        self.previous_key = Some(std::mem::replace(&mut self.key, key));
    }

    /// How many nonces currently have replay state (at most `replay_capacity`).
    pub fn tracked_nonces(&self) -> usize {
        self.windows.len()
    }

    /// One challenge per offered algorithm, strongest-preferred first, each with its own
    /// nonce. Send each as its own `WWW-Authenticate` (or `Proxy-Authenticate`) header.
    pub fn challenges(&self, now: Duration, rng: &mut CoreRng, stale: bool) -> Vec<Challenge> {
        self.config
            .algorithms
            .iter()
            .map(|&a| self.challenge(now, rng, a, stale))
            .collect()
    }

    /// A challenge for one algorithm.
    pub fn challenge(
        &self,
        now: Duration,
        rng: &mut CoreRng,
        algorithm: Algorithm,
        stale: bool,
    ) -> Challenge {
        let mut rand = [0u8; NONCE_RAND];
        rng.fill(&mut rand);
        let issued = now.as_secs();
        let mut raw = Vec::with_capacity(NONCE_BYTES);
        raw.extend_from_slice(&issued.to_be_bytes());
        raw.extend_from_slice(&rand);
        raw.push(algorithm.id());
        let mac = self.mac(&self.key, &raw);
        raw.extend_from_slice(&mac);
        let mut c = Challenge::new(self.config.realm.clone(), URL_SAFE_NO_PAD.encode(&raw));
        c.stale = stale;
        c.algorithm = Some(AlgorithmParam::Known(algorithm));
        if !self.config.qop.is_empty() {
            c.qop = Some(
                self.config
                    .qop
                    .iter()
                    .map(|q| q.as_str().to_owned())
                    .collect(),
            );
        }
        c.userhash = self.config.userhash;
        c
    }

    fn mac(&self, key: &ServerSecret, body: &[u8]) -> [u8; NONCE_MAC] {
        let mut m =
            <Hmac<Sha256> as Mac>::new_from_slice(&key.0).expect("HMAC accepts keys of any length");
        m.update(MAC_LABEL);
        m.update(body);
        m.update(self.config.realm.as_bytes());
        let full = m.finalize().into_bytes();
        let mut out = [0u8; NONCE_MAC];
        out.copy_from_slice(&full[..NONCE_MAC]);
        out
    }

    fn decode_nonce(&self, nonce: &str) -> Option<NonceInfo> {
        if nonce.len() != NONCE_CHARS {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(nonce).ok()?;
        if raw.len() != NONCE_BYTES {
            return None;
        }
        let (body, mac) = raw.split_at(NONCE_BYTES - NONCE_MAC);
        let old_key = if bool::from(self.mac(&self.key, body).ct_eq(mac)) {
            false
        } else if let Some(k) = &self.previous_key {
            if !bool::from(self.mac(k, body).ct_eq(mac)) {
                return None;
            }
            true
        } else {
            return None;
        };
        let issued = u64::from_be_bytes(body[..8].try_into().ok()?);
        let rand = body[8..8 + NONCE_RAND].try_into().ok()?;
        let algorithm = Algorithm::from_id(body[8 + NONCE_RAND])?;
        Some(NonceInfo {
            issued,
            rand,
            algorithm,
            old_key,
        })
    }

    /// Checks `creds` against the account `username` whose secret is `secret`, for `request`.
    ///
    /// The caller looks the account up by `creds.username` (for `userhash`, by the hash; see
    /// [`Self::userhash`]). On `Err`, answer 401/407 with [`Self::challenges`] using the
    /// returned `stale` flag.
    pub fn verify(
        &mut self,
        now: Duration,
        request: &DigestRequest<'_>,
        creds: &Credentials,
        username: &str,
        secret: &Secret,
    ) -> Result<Authorized, Denied> {
        use DenyReason::*;
        let cfg = &self.config;
        if creds.realm != cfg.realm {
            return Err(Denied::new(RealmMismatch));
        }
        let algorithm = creds
            .algorithm()
            .filter(|a| cfg.algorithms.contains(a))
            .ok_or(Denied::new(AlgorithmNotOffered))?;
        let info = self
            .decode_nonce(&creds.nonce)
            .ok_or(Denied::new(UnknownNonce))?;
        if info.algorithm != algorithm {
            return Err(Denied::new(AlgorithmMismatch));
        }
        if info.issued > now.as_secs().saturating_add(cfg.max_clock_skew.as_secs()) {
            return Err(Denied::new(UnknownNonce));
        }
        let name_ok = if creds.userhash {
            cfg.userhash
                && creds.username.eq_ignore_ascii_case(&userhash(
                    algorithm.hash(),
                    username,
                    &cfg.realm,
                ))
        } else {
            creds.username == username
        };
        if !name_ok {
            return Err(Denied::new(UsernameMismatch));
        }
        if cfg.check_uri && creds.uri != request.uri {
            return Err(Denied::new(UriMismatch));
        }
        let qop = match creds.known_qop() {
            Err(()) => return Err(Denied::new(QopNotOffered)),
            Ok(None) if !cfg.allow_rfc2069 => return Err(Denied::new(QopMissing)),
            Ok(Some(q)) if !cfg.qop.contains(&q) => return Err(Denied::new(QopNotOffered)),
            Ok(q) => q,
        };
        // The parser guarantees nc and cnonce with qop; RFC 2069 counts as one use (nc 1).
        let nc = creds.nc.unwrap_or(NonceCount(1));
        if nc.0 == 0 {
            return Err(Denied::new(InvalidNonceCount));
        }
        let expected = creds
            .expected_response(request.method, request.body, username, secret)
            .ok_or(Denied::new(SecretUnavailable))?;
        // Lengths are public (they follow from the algorithm); the contents are compared in
        // constant time so a timing oracle cannot build a valid response byte by byte.
        let got = creds.response.to_ascii_lowercase();
        if got.len() != expected.len() || !bool::from(got.as_bytes().ct_eq(expected.as_bytes())) {
            return Err(Denied::new(WrongResponse));
        }
        let lifetime = cfg.nonce_lifetime.as_secs();
        if now.as_secs() > info.issued.saturating_add(lifetime) {
            return Err(Denied::stale(NonceExpired));
        }
        if info.old_key {
            return Err(Denied::stale(KeyRotated));
        }
        self.record(now, &info, nc)?;
        Ok(Authorized {
            username: username.to_owned(),
            algorithm,
            qop,
            nc,
            nonce_issued: Duration::from_secs(info.issued),
        })
    }

    /// Records `nc` for the nonce in the bounded replay table.
    fn record(&mut self, now: Duration, info: &NonceInfo, nc: NonceCount) -> Result<(), Denied> {
        let lifetime = self.config.nonce_lifetime.as_secs();
        // Drop expired windows: their nonces fail the expiry check anyway, and raising the
        // watermark keeps them refused even if the caller's clock steps back.
        while let Some((&(issued, _), _)) = self.windows.first_key_value() {
            if issued.saturating_add(lifetime) >= now.as_secs() {
                break;
            }
            self.evict_oldest();
        }
        let key = (info.issued, info.rand);
        if let Some(w) = self.windows.get_mut(&key) {
            return if w.accept(nc.0) {
                Ok(())
            } else {
                Err(Denied::stale(DenyReason::Replay))
            };
        }
        if self.watermark.is_some_and(|wm| info.issued <= wm) {
            return Err(Denied::stale(DenyReason::NonceEvicted));
        }
        if self.windows.len() >= self.config.replay_capacity {
            self.evict_oldest();
        }
        self.windows.insert(key, Window::new(nc.0));
        Ok(())
    }

    fn evict_oldest(&mut self) {
        if let Some(((issued, _), _)) = self.windows.pop_first() {
            self.watermark = Some(self.watermark.map_or(issued, |w| w.max(issued)));
        }
    }

    /// `H(username ":" realm)` for `algorithm`, for indexing accounts when `userhash` is on.
    pub fn userhash(&self, algorithm: Algorithm, username: &str) -> String {
        userhash(algorithm.hash(), username, &self.config.realm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_accepts_out_of_order_once() {
        let mut w = Window::new(5);
        assert!(!w.accept(5));
        assert!(w.accept(7));
        assert!(w.accept(6));
        assert!(!w.accept(6));
        assert!(w.accept(3));
        assert!(w.accept(100));
        assert!(!w.accept(36), "fell below the 64-wide window");
        assert!(w.accept(37));
        assert!(w.accept(u32::MAX));
        assert!(!w.accept(u32::MAX));
    }

    #[test]
    fn nonces_are_signed_and_bound() {
        let mut rng = CoreRng::from_seed(9);
        let s = DigestServer::new(ServerConfig::new("r"), ServerSecret::random(&mut rng)).unwrap();
        let c = s.challenge(
            Duration::from_secs(1000),
            &mut rng,
            Algorithm::Sha256,
            false,
        );
        assert_eq!(c.nonce.len(), NONCE_CHARS);
        let info = s.decode_nonce(&c.nonce).unwrap();
        assert_eq!((info.issued, info.algorithm), (1000, Algorithm::Sha256));
        // Flip one character: the MAC no longer matches.
        let mut bad = c.nonce.clone().into_bytes();
        bad[3] = if bad[3] == b'A' { b'B' } else { b'A' };
        assert!(s.decode_nonce(std::str::from_utf8(&bad).unwrap()).is_none());
        // Another key, or another realm, does not accept it.
        let other =
            DigestServer::new(ServerConfig::new("r"), ServerSecret::random(&mut rng)).unwrap();
        assert!(other.decode_nonce(&c.nonce).is_none());
        let k = ServerSecret::new([7; 32]);
        let a = DigestServer::new(ServerConfig::new("a"), k.clone()).unwrap();
        let b = DigestServer::new(ServerConfig::new("b"), k).unwrap();
        let ca = a.challenge(Duration::ZERO, &mut rng, Algorithm::Md5, false);
        assert!(a.decode_nonce(&ca.nonce).is_some());
        assert!(b.decode_nonce(&ca.nonce).is_none());
        assert!(!format!("{:?}", a).contains("[7, 7"));
    }

    #[test]
    fn bad_configs_are_refused() {
        let k = || ServerSecret::new([1; 32]);
        let mut c = ServerConfig::new("r\r\nX: y");
        assert_eq!(
            DigestServer::new(c.clone(), k()).err(),
            Some(ConfigError::InvalidRealm)
        );
        c.realm = "r".into();
        c.algorithms.clear();
        assert_eq!(
            DigestServer::new(c.clone(), k()).err(),
            Some(ConfigError::NoAlgorithms)
        );
        c.algorithms.push(Algorithm::Md5);
        c.replay_capacity = 0;
        assert_eq!(
            DigestServer::new(c.clone(), k()).err(),
            Some(ConfigError::ZeroCapacity)
        );
        c.replay_capacity = 1;
        c.qop.clear();
        assert_eq!(DigestServer::new(c, k()).err(), Some(ConfigError::NoQop));
    }
}
