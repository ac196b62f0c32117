//! The APNs provider API client: HTTP/2 over rustls, token (`.p8`) or certificate auth.
//!
//! One [`ApnsClient`] serves one credential: one team's key (or one certificate) and its own
//! connection pool, so tokens of different teams never share a connection. The provider token
//! is minted and reused according to `vigil_proto::push::ProviderTokenPolicy` (20–60 min,
//! refreshed on 403 `ExpiredProviderToken`, never twice within 20 minutes); every request
//! carries an `apns-id` derived from the push id, so a resend after a lost connection can be
//! recognised as the same push.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri};
use vigil_proto::push::classify::{classify_apns, parse_retry_after, Verdict};
use vigil_proto::push::{
    ApnsRequest, DeviceToken, Expiration, ExpiredDecision, FailReason, Outcome,
    ProviderTokenPolicy, PushId, TokenAction,
};

use super::h2pool::{H2Pool, PoolConfig, RequestError};
use super::jwt::Es256Signer;
use super::tls::{client_config, client_identity, Roots};
use super::{ClientError, HttpsUrl, PushClock, Secret, SystemClock};

/// Apple's production endpoint.
pub const PRODUCTION_URL: &str = "https://api.push.apple.com";
/// Apple's sandbox endpoint.
pub const SANDBOX_URL: &str = "https://api.sandbox.push.apple.com";

/// How the client authenticates.
#[derive(Debug, Clone)]
pub enum ApnsAuth {
    /// Provider tokens signed with a `.p8` key.
    Token {
        /// The `.p8` file's contents.
        p8_pem: Secret,
        /// The key id (`kid`).
        key_id: String,
        /// The team id (`iss`).
        team_id: String,
    },
    /// A client certificate (mTLS).
    Certificate {
        /// The certificate chain PEM.
        cert_chain_pem: String,
        /// Its private key PEM.
        key_pem: Secret,
    },
}

/// Configuration of one APNs client.
#[derive(Debug, Clone)]
pub struct ApnsConfig {
    /// Base URL ([`PRODUCTION_URL`], [`SANDBOX_URL`], a mock or relay).
    pub base_url: String,
    /// Trusted roots.
    pub roots: Roots,
    /// Authentication.
    pub auth: ApnsAuth,
    /// Connections kept open.
    pub pool_size: usize,
    /// How long a provider token is reused (clamped to 20–59 minutes).
    pub token_reuse: Duration,
    /// Time source (tests run it ahead).
    pub clock: Arc<dyn PushClock>,
    /// Connect to this address instead of resolving the host.
    pub connect_to: Option<SocketAddr>,
    /// TCP + TLS + HTTP/2 handshake time limit.
    pub connect_timeout: Duration,
}

impl ApnsConfig {
    /// Defaults for `base_url`: system roots, 2 connections, 45-minute tokens.
    pub fn new(base_url: impl Into<String>, auth: ApnsAuth) -> Self {
        Self {
            base_url: base_url.into(),
            roots: Roots::System,
            auth,
            pool_size: 2,
            token_reuse: Duration::from_secs(45 * 60),
            clock: Arc::new(SystemClock),
            connect_to: None,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

struct TokenAuth {
    signer: Es256Signer,
    state: Mutex<TokenState>,
}

struct TokenState {
    policy: ProviderTokenPolicy,
    /// The current token as a ready `authorization` value (marked sensitive, so HPACK never
    /// indexes it and `Debug` hides it), and when it was minted. Building the value once per
    /// token instead of once per push saves a format and a header validation per request.
    current: Option<(HeaderValue, Instant)>,
}

/// An APNs client for one credential; see the module documentation.
pub struct ApnsClient {
    pool: H2Pool,
    token: Option<TokenAuth>,
    clock: Arc<dyn PushClock>,
    mints: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for ApnsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApnsClient")
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

impl ApnsClient {
    /// Builds the client without connecting.
    pub fn new(cfg: ApnsConfig) -> Result<Self, ClientError> {
        let url = HttpsUrl::parse(&cfg.base_url)?;
        let (identity, token) = match &cfg.auth {
            ApnsAuth::Token {
                p8_pem,
                key_id,
                team_id,
            } => {
                let signer = Es256Signer::from_p8(p8_pem, key_id, team_id)?;
                let state = TokenState {
                    policy: ProviderTokenPolicy::new(cfg.token_reuse),
                    current: None,
                };
                (
                    None,
                    Some(TokenAuth {
                        signer,
                        state: Mutex::new(state),
                    }),
                )
            }
            ApnsAuth::Certificate {
                cert_chain_pem,
                key_pem,
            } => (Some(client_identity(cert_chain_pem, key_pem)?), None),
        };
        let tls = client_config(&cfg.roots, &[b"h2"], identity)?;
        let pool = H2Pool::new(PoolConfig {
            url,
            tls,
            size: cfg.pool_size,
            connect_timeout: cfg.connect_timeout,
            connect_to: cfg.connect_to,
        })?;
        Ok(Self {
            pool,
            token,
            clock: cfg.clock,
            mints: Default::default(),
        })
    }

    /// Builds the client and opens its connections.
    pub async fn connect(cfg: ApnsConfig) -> Result<Self, ClientError> {
        let c = Self::new(cfg)?;
        c.pool.warm().await?;
        Ok(c)
    }

    /// The connection pool (for statistics).
    pub fn pool(&self) -> &H2Pool {
        &self.pool
    }

    /// Provider tokens minted so far.
    pub fn tokens_minted(&self) -> u64 {
        self.mints.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The `authorization` value to use now and when its token was minted.
    fn provider_token(&self, now: Instant) -> Result<Option<(HeaderValue, Instant)>, ClientError> {
        let Some(auth) = &self.token else {
            return Ok(None);
        };
        let mut st = auth
            .state
            .lock()
            .expect("token state lock is never poisoned: no panics inside");
        if st.policy.poll_token(now) == TokenAction::Mint || st.current.is_none() {
            let jwt = auth.signer.provider_token(self.clock.unix_secs())?;
            let mut bearer = HeaderValue::from_str(&format!("bearer {}", jwt.expose()))
                .map_err(|_| ClientError::Credential("provider token is not a header value"))?;
            bearer.set_sensitive(true);
            st.policy.handle_minted(now);
            st.current = Some((bearer, now));
            self.mints
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::debug!(team = auth.signer.team_id(), "minted APNs provider token");
        }
        Ok(st.current.clone())
    }

    fn handle_expired(&self, now: Instant, minted: Instant) -> ExpiredDecision {
        match &self.token {
            Some(auth) => auth
                .state
                .lock()
                .expect("token state lock is never poisoned: no panics inside")
                .policy
                .handle_expired(now, minted),
            None => ExpiredDecision::WaitUntil(now + Duration::from_secs(3600)),
        }
    }

    fn headers(&self, req: &ApnsRequest, apns_id: &str, bearer: Option<&HeaderValue>) -> HeaderMap {
        const PUSH_TYPE: HeaderName = HeaderName::from_static("apns-push-type");
        const TOPIC: HeaderName = HeaderName::from_static("apns-topic");
        const PRIORITY: HeaderName = HeaderName::from_static("apns-priority");
        const EXPIRATION: HeaderName = HeaderName::from_static("apns-expiration");
        const COLLAPSE_ID: HeaderName = HeaderName::from_static("apns-collapse-id");
        const APNS_ID: HeaderName = HeaderName::from_static("apns-id");
        let mut h = HeaderMap::with_capacity(8);
        h.insert(PUSH_TYPE, HeaderValue::from_static(req.push_type.as_str()));
        // Topic, collapse id and apns-id were validated when the push was built; a value
        // that is still not a header value is left out and the server names the problem.
        if let Ok(v) = HeaderValue::from_str(&req.topic) {
            h.insert(TOPIC, v);
        }
        let priority = if req.priority == 10 { "10" } else { "5" };
        h.insert(PRIORITY, HeaderValue::from_static(priority));
        let exp = match req.expiration {
            Expiration::Immediate => HeaderValue::from_static("0"),
            Expiration::After(d) => HeaderValue::from(self.clock.unix_secs() + d.as_secs().max(1)),
        };
        h.insert(EXPIRATION, exp);
        if let Some(v) = req
            .collapse_id
            .as_deref()
            .and_then(|c| HeaderValue::from_str(c).ok())
        {
            h.insert(COLLAPSE_ID, v);
        }
        if let Ok(mut v) = HeaderValue::from_str(apns_id) {
            // Unique per push: HPACK-indexing it would only evict the entries that repeat
            // (topic, push type, priority) and make the encoder compare it against every
            // earlier apns-id still in the table. Sensitive values are sent as literals
            // and never enter the table.
            v.set_sensitive(true);
            h.insert(APNS_ID, v);
        }
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(b) = bearer {
            h.insert(http::header::AUTHORIZATION, b.clone());
        }
        h
    }

    /// Sends one push and classifies the answer. A 403 `ExpiredProviderToken` is handled
    /// here: the token is re-minted (when the policy allows) and the push resent once.
    pub async fn send(
        &self,
        token: &DeviceToken,
        req: &ApnsRequest,
        apns_id: &str,
        deadline: Instant,
    ) -> Outcome {
        self.send_observed(token, req, apns_id, deadline, &|| {})
            .await
    }

    /// Like [`ApnsClient::send`], calling `handed_off` each time the request has been
    /// handed to an HTTP/2 connection (for latency measurements; must be cheap).
    pub async fn send_observed(
        &self,
        token: &DeviceToken,
        req: &ApnsRequest,
        apns_id: &str,
        deadline: Instant,
        handed_off: &(dyn Fn() + Sync),
    ) -> Outcome {
        let path = format!("/3/device/{}", token.expose());
        let body = Bytes::from(req.body.clone());
        for _ in 0..2 {
            let now = self.clock.now();
            let auth = match self.provider_token(now) {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot mint APNs provider token");
                    return Outcome::Fail(FailReason::Credentials);
                }
            };
            // Built per attempt inside the pool: the headers move into the connection
            // instead of being built here and copied there.
            let build = |authority: &Authority| {
                let uri = Uri::builder()
                    .scheme(Scheme::HTTPS)
                    .authority(authority.clone())
                    .path_and_query(path.as_str())
                    .build()
                    .ok()?;
                let mut r = Request::new(());
                *r.method_mut() = Method::POST;
                *r.uri_mut() = uri;
                *r.headers_mut() = self.headers(req, apns_id, auth.as_ref().map(|a| &a.0));
                Some(r)
            };
            let resp = match self
                .pool
                .send(&build, body.clone(), deadline, handed_off)
                .await
            {
                Ok(r) => r,
                Err(RequestError::Timeout | RequestError::Lost | RequestError::Unprocessed) => {
                    return Outcome::TRANSPORT
                }
            };
            let retry_after = resp
                .headers
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            match classify_apns(resp.status, &resp.body, retry_after) {
                Verdict::RefreshAuth if auth.is_some() => {
                    let minted = auth.map_or(now, |a| a.1);
                    let now = self.clock.now();
                    match self.handle_expired(now, minted) {
                        ExpiredDecision::MintNow => continue,
                        ExpiredDecision::WaitUntil(t) if t <= now => continue,
                        ExpiredDecision::WaitUntil(t) => {
                            return Outcome::Retry {
                                retry_after: Some(t - now),
                                min_delay: Duration::ZERO,
                            }
                        }
                    }
                }
                Verdict::RefreshAuth => {
                    return Outcome::Fail(FailReason::Apns {
                        status: resp.status,
                        reason: vigil_proto::push::ApnsReason::ExpiredProviderToken,
                    })
                }
                v => return v.into(),
            }
        }
        Outcome::TRANSPORT
    }
}

/// The `apns-id` of a push: a UUID built from a per-process random `instance` and the push
/// id, stable across resends of the same push.
pub fn apns_id(instance: u64, id: PushId) -> String {
    let hi = (instance & 0xffff_ffff_ffff_0fff) | 0x4000; // version 4 nibble
    let lo = (id.0 & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000; // RFC 4122 variant
    let mut s = String::with_capacity(36);
    let _ = write!(
        s,
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        hi >> 32,
        (hi >> 16) & 0xffff,
        hi & 0xffff,
        lo >> 48,
        lo & 0xffff_ffff_ffff
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apns_ids_are_uuids_and_stable() {
        let a = apns_id(0x0123_4567_89ab_cdef, PushId(42));
        assert_eq!(a.len(), 36);
        assert_eq!(a, apns_id(0x0123_4567_89ab_cdef, PushId(42)));
        assert_ne!(a, apns_id(0x0123_4567_89ab_cdef, PushId(43)));
        let parts: Vec<_> = a.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            vec![8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'));
        assert!(matches!(parts[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'));
    }
}
