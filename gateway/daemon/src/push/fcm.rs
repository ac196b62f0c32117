//! The FCM HTTP v1 client: OAuth2 access tokens from a service account, `messages:send`
//! over HTTP/2.
//!
//! The access token comes from the key file's `token_uri` (a JWT-bearer grant signed RS256
//! with the service account's key), is cached until shortly before it expires, and is
//! refreshed by one task at a time (others wait for it rather than each asking Google). A
//! 401 on send drops the cached token and resends once with a fresh one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};
use serde_json::{json, Value};
use vigil_proto::push::classify::{classify_fcm, parse_retry_after, Verdict};
use vigil_proto::push::{FailReason, FcmMessage, Outcome};

use super::h2pool::{H2Pool, PoolConfig, RequestError};
use super::jwt::Rs256Signer;
use super::tls::{client_config, Roots};
use super::{ClientError, HttpsUrl, PushClock, Secret, SystemClock};

/// Google's production endpoint.
pub const PRODUCTION_URL: &str = "https://fcm.googleapis.com";
const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// A token is replaced this long before it expires (or at half its life, if shorter).
const EXPIRY_MARGIN: Duration = Duration::from_secs(5 * 60);

/// Configuration of one FCM client (one service account / project).
#[derive(Debug, Clone)]
pub struct FcmConfig {
    /// The service-account JSON key file's contents.
    pub service_account_json: Secret,
    /// Base URL ([`PRODUCTION_URL`], a mock or relay).
    pub base_url: String,
    /// Trusted roots for both the API and the token endpoint.
    pub roots: Roots,
    /// Connections kept to the API.
    pub pool_size: usize,
    /// Time source.
    pub clock: Arc<dyn PushClock>,
    /// Connect to this address instead of resolving the API host.
    pub connect_to: Option<SocketAddr>,
    /// Handshake time limit.
    pub connect_timeout: Duration,
}

impl FcmConfig {
    /// Defaults: production URL, system roots, 2 connections.
    pub fn new(service_account_json: Secret) -> Self {
        Self {
            service_account_json,
            base_url: PRODUCTION_URL.into(),
            roots: Roots::System,
            pool_size: 2,
            clock: Arc::new(SystemClock),
            connect_to: None,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

struct AccessToken {
    token: Secret,
    refresh_at: Instant,
}

/// An FCM client for one service account; see the module documentation.
pub struct FcmClient {
    pool: H2Pool,
    token_pool: H2Pool,
    token_path: String,
    token_uri: String,
    client_email: String,
    send_path: String,
    signer: Rs256Signer,
    clock: Arc<dyn PushClock>,
    access: tokio::sync::Mutex<Option<AccessToken>>,
    fetches: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for FcmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FcmClient")
            .field("send_path", &self.send_path)
            .finish_non_exhaustive()
    }
}

impl FcmClient {
    /// Builds the client without connecting.
    pub fn new(cfg: FcmConfig) -> Result<Self, ClientError> {
        let sa: Value = serde_json::from_str(cfg.service_account_json.expose())
            .map_err(|_| ClientError::Credential("service account is not JSON"))?;
        let field = |k: &str| sa.get(k).and_then(Value::as_str);
        let project = field("project_id").ok_or(ClientError::Credential("no project_id"))?;
        let email = field("client_email").ok_or(ClientError::Credential("no client_email"))?;
        let key = field("private_key").ok_or(ClientError::Credential("no private_key"))?;
        let token_uri = field("token_uri").unwrap_or("https://oauth2.googleapis.com/token");
        let signer = Rs256Signer::from_pem(&Secret::new(key), field("private_key_id"))?;
        let tls = client_config(&cfg.roots, &[b"h2"], None)?;
        let url = HttpsUrl::parse(&cfg.base_url)?;
        let turl = HttpsUrl::parse(token_uri)?;
        let same_host = turl.host == url.host && turl.port == url.port;
        let pool = H2Pool::new(PoolConfig {
            url,
            tls: Arc::clone(&tls),
            size: cfg.pool_size,
            connect_timeout: cfg.connect_timeout,
            connect_to: cfg.connect_to,
        })?;
        let token_pool = if same_host {
            pool.clone()
        } else {
            H2Pool::new(PoolConfig {
                url: turl.clone(),
                tls,
                size: 1,
                connect_timeout: cfg.connect_timeout,
                connect_to: None,
            })?
        };
        Ok(Self {
            pool,
            token_pool,
            token_path: if turl.path.is_empty() {
                "/".into()
            } else {
                turl.path.clone()
            },
            token_uri: token_uri.to_owned(),
            client_email: email.to_owned(),
            send_path: format!("/v1/projects/{project}/messages:send"),
            signer,
            clock: cfg.clock,
            access: tokio::sync::Mutex::new(None),
            fetches: Default::default(),
        })
    }

    /// Builds the client, opens its connections and fetches a first access token.
    pub async fn connect(cfg: FcmConfig) -> Result<Self, ClientError> {
        let c = Self::new(cfg)?;
        c.warm().await?;
        Ok(c)
    }

    /// Opens the connections and fetches a first access token, so the first push pays
    /// neither a handshake nor a token exchange.
    pub async fn warm(&self) -> Result<(), ClientError> {
        self.pool.warm().await?;
        self.access_token(None).await?;
        Ok(())
    }

    /// Access tokens fetched so far.
    pub fn token_fetches(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The cached access token, fetching a new one if it is due or equals `stale`.
    async fn access_token(&self, stale: Option<&Secret>) -> Result<Secret, ClientError> {
        let mut guard = self.access.lock().await;
        let now = self.clock.now();
        if let Some(t) = guard.as_ref() {
            if now < t.refresh_at && Some(&t.token) != stale {
                return Ok(t.token.clone());
            }
        }
        let fresh = self.fetch_token(now).await?;
        let token = fresh.token.clone();
        *guard = Some(fresh);
        Ok(token)
    }

    async fn fetch_token(&self, now: Instant) -> Result<AccessToken, ClientError> {
        let iat = self.clock.unix_secs();
        let claims = json!({
            "iss": self.client_email, "scope": SCOPE, "aud": self.token_uri,
            "iat": iat, "exp": iat + 3600,
        });
        let assertion = self.signer.sign(&claims)?;
        let form = format!(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={}",
            assertion.expose()
        );
        let mut h = HeaderMap::new();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        let resp = self
            .token_pool
            .request(
                Method::POST,
                &self.token_path,
                &h,
                Bytes::from(form),
                deadline,
            )
            .await
            .map_err(|e| match e {
                RequestError::Timeout => ClientError::Timeout,
                _ => ClientError::TokenEndpoint(0),
            })?;
        if resp.status != 200 {
            return Err(ClientError::TokenEndpoint(resp.status));
        }
        let v: Value = serde_json::from_slice(&resp.body)
            .map_err(|_| ClientError::TokenEndpoint(resp.status))?;
        let token = v
            .get("access_token")
            .and_then(Value::as_str)
            .ok_or(ClientError::TokenEndpoint(resp.status))?;
        let life = Duration::from_secs(v.get("expires_in").and_then(Value::as_u64).unwrap_or(3600));
        let margin = EXPIRY_MARGIN.min(life / 2);
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(AccessToken {
            token: Secret::new(token),
            refresh_at: now + life - margin,
        })
    }

    /// Sends one message and classifies the answer.
    pub async fn send(&self, msg: &FcmMessage, deadline: Instant) -> Outcome {
        self.send_observed(msg, deadline, &|| {}).await
    }

    /// Like [`FcmClient::send`], calling `handed_off` each time the request has been handed
    /// to an HTTP/2 connection (for latency measurements; must be cheap).
    pub async fn send_observed(
        &self,
        msg: &FcmMessage,
        deadline: Instant,
        handed_off: &(dyn Fn() + Sync),
    ) -> Outcome {
        let body = Bytes::from(msg.body.clone());
        let mut stale = None;
        for _ in 0..2 {
            let token = match self.access_token(stale.as_ref()).await {
                Ok(t) => t,
                Err(ClientError::TokenEndpoint(s)) if s == 0 || s >= 500 => {
                    return Outcome::TRANSPORT
                }
                Err(ClientError::Timeout) => return Outcome::TRANSPORT,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot obtain FCM access token");
                    return Outcome::Fail(FailReason::Credentials);
                }
            };
            let mut h = HeaderMap::new();
            h.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            if let Ok(mut v) = HeaderValue::from_str(&format!("Bearer {}", token.expose())) {
                v.set_sensitive(true);
                h.insert(http::header::AUTHORIZATION, v);
            }
            let resp = match self
                .pool
                .request_observed(
                    Method::POST,
                    &self.send_path,
                    &h,
                    body.clone(),
                    deadline,
                    handed_off,
                )
                .await
            {
                Ok(r) => r,
                Err(_) => return Outcome::TRANSPORT,
            };
            let retry_after = resp
                .headers
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            match classify_fcm(resp.status, &resp.body, retry_after) {
                Verdict::RefreshAuth => stale = Some(token),
                v => return v.into(),
            }
        }
        Outcome::Fail(FailReason::Credentials)
    }
}
