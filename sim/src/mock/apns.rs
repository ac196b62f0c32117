//! Mock APNs: Apple's provider API (`POST /3/device/<token>` over HTTP/2) with token
//! (JWT ES256) or client-certificate authentication.
//!
//! Checks run in this order, each answering like Apple with `{"reason": "..."}` and an
//! `apns-id` header: `apns-id` itself (400 `BadMessageId`, first because every answer
//! echoes it), path (404 `BadPath`), method (405 `MethodNotAllowed`), repeated headers
//! (400 `DuplicateHeaders`), client certificate (403 `BadCertificate`) or provider token
//! (403 `MissingProviderToken` / `InvalidProviderToken` / `ExpiredProviderToken`, 429
//! `TooManyProviderTokenUpdates`), headers (400 `MissingTopic`, `BadTopic`,
//! `TopicDisallowed`, `DeviceTokenNotForTopic`, `InvalidPushType`, `BadPriority`,
//! `BadExpirationDate`, `BadCollapseId`), device token (400 `MissingDeviceToken` /
//! `BadDeviceToken`), payload (400 `PayloadEmpty` / `BadPayload`, 413 `PayloadTooLarge`),
//! dead token (410 `Unregistered` with `timestamp`). Only then are injected faults drawn.
//!
//! Choices where Apple's documentation is silent, made to be strict rather than lenient so
//! client bugs surface here and not in production:
//! - A connection belongs to the team of the first valid token it carried. A token of
//!   another team on it is refused with 403 `InvalidProviderToken` (the token is valid, but
//!   not on this connection); the client must open a connection per team.
//! - Token updates are tracked per (team, key id) across all connections: the first token
//!   is accepted; a *different* token within 20 minutes (mock clock) of when the current one
//!   was first used gets 429 `TooManyProviderTokenUpdates` and does not replace it. So a
//!   client must share one token across its connection pool.
//! - `iat` more than 60 minutes old → 403 `ExpiredProviderToken`; more than 5 minutes in
//!   the future → 403 `InvalidProviderToken`.
//! - A missing `apns-push-type` is treated as `alert` and a missing `apns-priority` as 10,
//!   Apple's documented defaults (so a background push without a priority is `BadPriority`).
//! - Push types that need a topic suffix (`voip` → `.voip`, `complication`, `fileprovider`,
//!   `liveactivity`, `pushtotalk`, `location`) answer 400 `DeviceTokenNotForTopic` without
//!   it; `alert`/`background` sent to a suffixed topic answer 400 `BadTopic`.
//! - A body that is not a JSON object answers 400 `BadPayload` (Apple lists no reason).
//! - Device tokens must be 64–200 hex digits of even length.
//! - Certificate-based authentication: a connection that presented a configured client
//!   certificate ([`ApnsClientCert`]) needs no provider token; `apns-topic` defaults to the
//!   certificate's first topic, and a topic outside its list is 400 `TopicDisallowed`. A
//!   certificate from the test CA that is not configured is 403 `BadCertificate`.

use crate::mock::faults::{FaultReason, Faults};
use crate::mock::jwt::Jwt;
use crate::mock::keys::ApnsKey;
use crate::mock::record::{lock, AcceptedPush, MockStats, PushPriority, PushService};
use crate::mock::server::{Body, ConnCtx, Core, Reply, Server, Service};
use crate::mock::{ClientIdentity, MockClock, TestCa, TlsError};
use http::{HeaderName, Method, StatusCode};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// Payload limit for every push type but VoIP.
pub const MAX_PAYLOAD: usize = 4096;
/// Payload limit for VoIP pushes.
pub const MAX_VOIP_PAYLOAD: usize = 5120;
/// A provider token older than this is expired.
const TOKEN_MAX_AGE_SECS: u64 = 60 * 60;
/// A new provider token sooner than this after the previous one is "too many updates".
const TOKEN_MIN_REFRESH_MS: u64 = 20 * 60 * 1000;
/// Clock skew tolerated for `iat` in the future.
const TOKEN_FUTURE_SKEW_SECS: u64 = 5 * 60;
/// Distinct verified tokens remembered (one or two per sending team are live at a time).
const VERIFIED_CACHE: usize = 1024;

const APNS_ID: HeaderName = HeaderName::from_static("apns-id");

/// Configuration of a mock APNs.
#[derive(Clone, Debug)]
pub struct MockApnsConfig {
    /// Where to listen; port 0 picks a free port (see [`MockApnsHandle::addr`]).
    pub listen: SocketAddr,
    /// The CA whose server certificate the mock presents.
    pub ca: Arc<TestCa>,
    /// Signing keys the mock trusts.
    pub keys: Vec<ApnsKey>,
    /// Injected faults.
    pub faults: Faults,
    /// `SETTINGS_MAX_CONCURRENT_STREAMS` advertised to each connection (APNs: 500–1000+).
    pub max_concurrent_streams: u32,
    /// The clock token ages are judged by.
    pub clock: MockClock,
    /// Bundle ids the keys may push to; empty allows any (else 400 `TopicDisallowed`).
    pub bundle_ids: Vec<String>,
    /// Client certificates accepted for certificate-based authentication.
    pub client_certs: Vec<ApnsClientCert>,
    /// Most accepted pushes kept for [`MockApnsHandle::accepted`] (oldest dropped first;
    /// 0 keeps none, for long benchmark runs). Capped at one million.
    pub record_capacity: usize,
}

/// A client certificate the mock accepts instead of a provider token, and the topics it
/// may push to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApnsClientCert {
    /// The certificate, DER, exactly as the client presents it.
    pub cert_der: Vec<u8>,
    /// Topics this certificate may push to.
    pub topics: Vec<String>,
}

impl ApnsClientCert {
    /// Issues a certificate from `ca` for `bundle_id`, valid (like Apple's universal push
    /// certificates) for the app's topic and its `.voip` and `.complication` topics. The
    /// first topic is the default when a request has no `apns-topic`.
    pub fn issue(ca: &TestCa, bundle_id: &str) -> Result<(ClientIdentity, Self), TlsError> {
        let identity = ca.issue_client_cert(&format!("Apple Push Services: {bundle_id}"))?;
        let cert = Self {
            cert_der: identity.cert_der.as_ref().to_vec(),
            topics: vec![
                bundle_id.to_owned(),
                format!("{bundle_id}.voip"),
                format!("{bundle_id}.complication"),
            ],
        };
        Ok((identity, cert))
    }
}

impl MockApnsConfig {
    /// Listens on 127.0.0.1 with a free port, 1000 streams, no faults, real time.
    pub fn new(ca: Arc<TestCa>, keys: Vec<ApnsKey>) -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            ca,
            keys,
            faults: Faults::default(),
            max_concurrent_streams: 1000,
            clock: MockClock::real(),
            bundle_ids: Vec::new(),
            client_certs: Vec::new(),
            record_capacity: 1_000_000,
        }
    }
}

/// Entry point of the mock APNs.
#[derive(Debug)]
pub struct MockApns;

impl MockApns {
    /// Binds the listener and starts serving.
    pub async fn start(cfg: MockApnsConfig) -> std::io::Result<MockApnsHandle> {
        let tls = cfg
            .ca
            .server_config(&[b"h2"])
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let core = Arc::new(Core::new(
            cfg.clock.clone(),
            cfg.faults.clone(),
            cfg.record_capacity,
        ));
        let service = Arc::new(Apns {
            keys: cfg.keys.clone(),
            bundle_ids: cfg.bundle_ids.clone(),
            client_certs: cfg.client_certs.clone(),
            core: core.clone(),
            current_tokens: Mutex::new(HashMap::new()),
            verified: Mutex::new(HashSet::new()),
        });
        let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
        let server = Server::start(
            listener,
            tls,
            cfg.max_concurrent_streams,
            core.clone(),
            service,
        )?;
        Ok(MockApnsHandle {
            addr: server.addr,
            ca_pem: cfg.ca.ca_pem.clone(),
            core,
            server,
        })
    }
}

/// A running mock APNs.
pub struct MockApnsHandle {
    /// The bound address.
    pub addr: SocketAddr,
    /// PEM of the CA clients must trust.
    pub ca_pem: String,
    core: Arc<Core>,
    server: Server,
}

impl std::fmt::Debug for MockApnsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockApnsHandle")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl MockApnsHandle {
    /// Base URL for clients: `https://localhost:PORT` (the certificate also covers
    /// 127.0.0.1 and ::1).
    pub fn base_url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    /// Every push accepted so far, oldest first.
    pub fn accepted(&self) -> Vec<AcceptedPush> {
        self.core.recorder.accepted()
    }

    /// A stream of pushes accepted from now on (what virtual phones listen to).
    pub fn subscribe(&self) -> broadcast::Receiver<AcceptedPush> {
        self.core.recorder.subscribe()
    }

    /// Replaces the injected faults (and reseeds their generator).
    pub fn set_faults(&self, faults: Faults) {
        self.core.set_faults(faults);
    }

    /// From now on, pushes to `token` answer 410 `Unregistered` with the current time.
    pub fn mark_dead(&self, token: &str) {
        self.core.mark_dead(token);
    }

    /// Counters so far.
    pub fn stats(&self) -> MockStats {
        self.core.recorder.snapshot()
    }

    /// The mock's clock (shared with the config's).
    pub fn clock(&self) -> &MockClock {
        &self.core.clock
    }

    /// Stops the mock and closes its connections.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

/// The token in use for one (team, key id), and when it was first used (Unix ms).
struct CurrentToken {
    token: String,
    first_used_ms: u64,
}

struct Apns {
    keys: Vec<ApnsKey>,
    bundle_ids: Vec<String>,
    client_certs: Vec<ApnsClientCert>,
    core: Arc<Core>,
    current_tokens: Mutex<HashMap<(String, String), CurrentToken>>,
    /// Tokens whose signature verified (bounded by [`VERIFIED_CACHE`]).
    verified: Mutex<HashSet<String>>,
}

/// Push types and the topic suffix each requires ("" = none allowed).
const PUSH_TYPES: &[(&str, &str)] = &[
    ("alert", ""),
    ("background", ""),
    ("mdm", ""),
    ("widgets", ""),
    ("controls", ""),
    ("voip", ".voip"),
    ("complication", ".complication"),
    ("fileprovider", ".pushkit.fileprovider"),
    ("liveactivity", ".push-type.liveactivity"),
    ("location", ".location-query"),
    ("pushtotalk", ".voip-ptt"),
];

/// Headers that must appear at most once (else 400 `DuplicateHeaders`).
const DUPLICATE_CHECKED: &[&str] = &[
    "authorization",
    "apns-id",
    "apns-topic",
    "apns-push-type",
    "apns-priority",
    "apns-expiration",
    "apns-collapse-id",
];

/// An APNs error: status and reason.
struct Reject(StatusCode, &'static str);

impl Apns {
    /// Checks the token's ES256 signature, once per distinct token: a sender reuses one
    /// token for 20–60 minutes, and an ECDSA verification per push would make the mock,
    /// not the client under test, the bottleneck of throughput benchmarks. The keys never
    /// change, so a token that verified once always verifies; ages are checked every time.
    fn verify_signature(&self, jwt: &Jwt, token: &str, public_key: &[u8]) -> Result<(), Reject> {
        if lock(&self.verified).contains(token) {
            return Ok(());
        }
        jwt.verify_es256(public_key)
            .map_err(|_| Reject(StatusCode::FORBIDDEN, "InvalidProviderToken"))?;
        let mut verified = lock(&self.verified);
        if verified.len() >= VERIFIED_CACHE {
            verified.clear();
        }
        verified.insert(token.to_owned());
        Ok(())
    }

    fn reject(&self, apns_id: &str, Reject(status, reason): Reject) -> Reply {
        Reply::json(status, &json!({ "reason": reason }), Some(reason)).header(APNS_ID, apns_id)
    }

    fn check_token(&self, conn: &ConnCtx, req: &http::request::Parts) -> Result<(), Reject> {
        use StatusCode as S;
        let invalid = Reject(S::FORBIDDEN, "InvalidProviderToken");
        let Some(auth) = req.headers.get(http::header::AUTHORIZATION) else {
            return Err(Reject(S::FORBIDDEN, "MissingProviderToken"));
        };
        let auth = auth
            .to_str()
            .map_err(|_| Reject(S::FORBIDDEN, "InvalidProviderToken"))?;
        let Some((scheme, token)) = auth.split_once(' ') else {
            return Err(invalid);
        };
        let token = token.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
            return Err(invalid);
        }
        let jwt = Jwt::parse(token).map_err(|_| Reject(S::FORBIDDEN, "InvalidProviderToken"))?;
        let (Some("ES256"), Some(kid), Some(iss), Some(iat)) = (
            jwt.header_str("alg"),
            jwt.header_str("kid"),
            jwt.claim_str("iss"),
            jwt.claim_u64("iat"),
        ) else {
            return Err(invalid);
        };
        let Some(key) = self
            .keys
            .iter()
            .find(|k| k.key_id == kid && k.team_id == iss)
        else {
            return Err(invalid);
        };
        self.verify_signature(&jwt, token, &key.public_key)?;
        let now = self.core.clock.unix_secs();
        if iat > now + TOKEN_FUTURE_SKEW_SECS {
            return Err(invalid);
        }
        if now.saturating_sub(iat) > TOKEN_MAX_AGE_SECS {
            return Err(Reject(S::FORBIDDEN, "ExpiredProviderToken"));
        }
        {
            let mut team = lock(&conn.team);
            match team.as_deref() {
                Some(t) if t != iss => return Err(invalid),
                Some(_) => {}
                None => *team = Some(iss.to_owned()),
            }
        }
        let now_ms = self.core.clock.unix_millis();
        let mut current = lock(&self.current_tokens);
        match current.get_mut(&(iss.to_owned(), kid.to_owned())) {
            Some(cur) if cur.token == token => Ok(()),
            Some(cur) => {
                if now_ms.saturating_sub(cur.first_used_ms) < TOKEN_MIN_REFRESH_MS {
                    return Err(Reject(S::TOO_MANY_REQUESTS, "TooManyProviderTokenUpdates"));
                }
                *cur = CurrentToken {
                    token: token.to_owned(),
                    first_used_ms: now_ms,
                };
                Ok(())
            }
            None => {
                current.insert(
                    (iss.to_owned(), kid.to_owned()),
                    CurrentToken {
                        token: token.to_owned(),
                        first_used_ms: now_ms,
                    },
                );
                Ok(())
            }
        }
    }

    fn validate(
        &self,
        conn: &ConnCtx,
        req: &http::request::Parts,
        body: Body,
        apns_id: &str,
    ) -> Result<AcceptedPush, Reject> {
        use StatusCode as S;
        let bad = |reason| Reject(S::BAD_REQUEST, reason);
        let Some(device_token) = req.uri.path().strip_prefix("/3/device/") else {
            return Err(Reject(S::NOT_FOUND, "BadPath"));
        };
        if req.method != Method::POST {
            return Err(Reject(S::METHOD_NOT_ALLOWED, "MethodNotAllowed"));
        }
        let repeated = DUPLICATE_CHECKED
            .iter()
            .any(|name| req.headers.get_all(*name).iter().count() > 1);
        if repeated {
            return Err(bad("DuplicateHeaders"));
        }
        // A connection with a client certificate is authenticated by it (any provider
        // token is then ignored); one issued by the CA but not configured is refused.
        let cert_topics = match &conn.client_cert {
            Some(der) => match self.client_certs.iter().find(|c| c.cert_der == *der) {
                Some(cert) => Some(&cert.topics),
                None => return Err(Reject(S::FORBIDDEN, "BadCertificate")),
            },
            None => None,
        };
        if cert_topics.is_none() {
            self.check_token(conn, req)?;
        }

        let header = |name: &str| req.headers.get(name).map(|v| v.to_str().map_err(|_| ()));
        let topic = match header("apns-topic") {
            None => match cert_topics.and_then(|t| t.first()) {
                Some(default) => default.as_str(),
                None => return Err(bad("MissingTopic")),
            },
            Some(Err(())) => return Err(bad("BadTopic")),
            Some(Ok(t)) if t.is_empty() || t.len() > 255 || t.contains(char::is_whitespace) => {
                return Err(bad("BadTopic"))
            }
            Some(Ok(t)) => t,
        };
        if cert_topics.is_some_and(|t| !t.iter().any(|allowed| allowed == topic)) {
            return Err(bad("TopicDisallowed"));
        }
        let push_type = match header("apns-push-type") {
            None => "alert",
            Some(Ok(t)) => t,
            Some(Err(())) => return Err(bad("InvalidPushType")),
        };
        let Some(&(push_type, suffix)) = PUSH_TYPES.iter().find(|(t, _)| *t == push_type) else {
            return Err(bad("InvalidPushType"));
        };
        let bundle = if suffix.is_empty() {
            if PUSH_TYPES
                .iter()
                .any(|(_, s)| !s.is_empty() && topic.ends_with(s))
            {
                return Err(bad("BadTopic"));
            }
            topic
        } else {
            topic
                .strip_suffix(suffix)
                .ok_or(bad("DeviceTokenNotForTopic"))?
        };
        if !self.bundle_ids.is_empty() && !self.bundle_ids.iter().any(|b| b == bundle) {
            return Err(bad("TopicDisallowed"));
        }
        let priority = match header("apns-priority") {
            None => PushPriority::High,
            Some(Ok("10")) => PushPriority::High,
            Some(Ok("5")) => PushPriority::Normal,
            Some(Ok("1")) => PushPriority::Low,
            Some(_) => return Err(bad("BadPriority")),
        };
        if push_type == "background" && priority != PushPriority::Normal {
            return Err(bad("BadPriority"));
        }
        let expiration = match header("apns-expiration") {
            None => None,
            Some(Ok(v)) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
                Some(v.parse::<u64>().map_err(|_| bad("BadExpirationDate"))?)
            }
            Some(_) => return Err(bad("BadExpirationDate")),
        };
        let collapse_id = match header("apns-collapse-id") {
            None => None,
            Some(Ok(v)) if v.len() <= 64 => Some(v.to_owned()),
            Some(_) => return Err(bad("BadCollapseId")),
        };
        if device_token.is_empty() {
            return Err(bad("MissingDeviceToken"));
        }
        let token_ok = (64..=200).contains(&device_token.len())
            && device_token.len() % 2 == 0
            && device_token.bytes().all(|b| b.is_ascii_hexdigit());
        if !token_ok {
            return Err(bad("BadDeviceToken"));
        }
        let limit = if push_type == "voip" {
            MAX_VOIP_PAYLOAD
        } else {
            MAX_PAYLOAD
        };
        let payload = match body {
            Body::TooLarge => return Err(Reject(S::PAYLOAD_TOO_LARGE, "PayloadTooLarge")),
            Body::Complete(b) if b.len() > limit => {
                return Err(Reject(S::PAYLOAD_TOO_LARGE, "PayloadTooLarge"))
            }
            Body::Complete(b) if b.iter().all(u8::is_ascii_whitespace) => {
                return Err(bad("PayloadEmpty"))
            }
            Body::Complete(b) => match serde_json::from_slice::<serde_json::Value>(&b) {
                Ok(v @ serde_json::Value::Object(_)) => v,
                _ => return Err(bad("BadPayload")),
            },
        };
        if self.core.dead_since(device_token).is_some() {
            return Err(Reject(S::GONE, "Unregistered"));
        }
        Ok(AcceptedPush {
            service: PushService::Apns,
            id: apns_id.to_owned(),
            token: device_token.to_owned(),
            topic: topic.to_owned(),
            push_type: Some(push_type.to_owned()),
            priority,
            expiration,
            ttl: None,
            collapse_id,
            payload,
            connection: conn.id,
            at: self.core.clock.now(),
        })
    }
}

/// Whether `s` is a UUID in its canonical 8-4-4-4-12 hex form.
fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

impl Service for Apns {
    fn body_limit(&self) -> usize {
        MAX_VOIP_PAYLOAD
    }

    fn handle(&self, conn: &ConnCtx, req: &http::request::Parts, body: Body) -> Reply {
        let given_id = req.headers.get("apns-id").map(|v| v.to_str().unwrap_or(""));
        let apns_id = match given_id {
            Some(id) if is_uuid(id) => id.to_owned(),
            _ => uuid::Uuid::new_v4().hyphenated().to_string().to_uppercase(),
        };
        if given_id.is_some_and(|id| !is_uuid(id)) {
            return self.reject(&apns_id, Reject(StatusCode::BAD_REQUEST, "BadMessageId"));
        }
        match self.validate(conn, req, body, &apns_id) {
            Ok(push) => {
                // Apple answers 200 with an empty body.
                let mut reply = Reply::empty(StatusCode::OK).header(APNS_ID, &apns_id);
                reply.accepted = Some(push);
                reply
            }
            Err(Reject(StatusCode::GONE, reason)) => {
                let token = req.uri.path().trim_start_matches("/3/device/");
                let timestamp = self.core.dead_since(token).unwrap_or(0);
                Reply::json(
                    StatusCode::GONE,
                    &json!({ "reason": reason, "timestamp": timestamp }),
                    Some(reason),
                )
                .header(APNS_ID, &apns_id)
            }
            Err(reject) => self.reject(&apns_id, reject),
        }
    }

    fn fault_reply(&self, fault: &FaultReason, push: &AcceptedPush) -> Option<Reply> {
        let apns_id = &push.id;
        let reject = match fault {
            FaultReason::Apns500 => {
                Reject(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError")
            }
            FaultReason::Apns503 => Reject(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable"),
            FaultReason::Apns503Shutdown => Reject(StatusCode::SERVICE_UNAVAILABLE, "Shutdown"),
            FaultReason::Apns429TooManyRequests => {
                Reject(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests")
            }
            _ => return None,
        };
        Some(self.reject(apns_id, reject))
    }
}
