//! Mock FCM HTTP v1: Google's OAuth2 token endpoint (`POST /token`, service-account JWT
//! grant) and `POST /v1/projects/{project}/messages:send`, over HTTP/2.
//!
//! Errors use Google's shape:
//! `{"error":{"code":400,"message":"…","status":"INVALID_ARGUMENT","details":[{"@type":
//! "type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"INVALID_ARGUMENT"}]}}`;
//! the token endpoint answers OAuth errors `{"error":"invalid_grant","error_description":"…"}`.
//!
//! Choices where the service's documentation leaves room:
//! - A missing, unknown or expired bearer token answers 401 `UNAUTHENTICATED` without an
//!   `FcmError` detail, as Google's front end does (`THIRD_PARTY_AUTH_ERROR` is about APNs
//!   credentials, not the sender's token). A token without the firebase.messaging (or
//!   cloud-platform) scope answers 403 `PERMISSION_DENIED`.
//! - Sending for a project other than the service account's answers 403
//!   `PERMISSION_DENIED` with errorCode `SENDER_ID_MISMATCH`.
//! - Only `message.token` targets are accepted (Vigil never uses topics or conditions);
//!   unknown fields in `message` or `message.android` are 400 `INVALID_ARGUMENT` as in
//!   Google's strict JSON parser; `android.priority` must be `HIGH` or `NORMAL` exactly.
//! - The 4096-byte payload limit counts `data` keys and values (message-level and
//!   `android.data`) plus the serialised `notification` objects.

use crate::mock::faults::{FaultReason, Faults};
use crate::mock::jwt::Jwt;
use crate::mock::keys::{hex, FcmTrustedAccount};
use crate::mock::record::{lock, AcceptedPush, MockStats, PushPriority, PushService};
use crate::mock::server::{Body, ConnCtx, Core, Reply, Server, Service};
use crate::mock::{MockClock, TestCa};
use http::{header, Method, StatusCode};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;

/// Google's token URL, accepted as grant audience besides the mock's own `/token` URL.
pub const GOOGLE_TOKEN_AUDIENCE: &str = "https://oauth2.googleapis.com/token";
const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const SCOPE_FCM: &str = "https://www.googleapis.com/auth/firebase.messaging";
const SCOPE_CLOUD: &str = "https://www.googleapis.com/auth/cloud-platform";
const MAX_PAYLOAD: usize = 4096;
/// Largest request body read (a message with a 4 KiB payload plus its JSON structure).
const MAX_BODY: usize = 64 * 1024;
/// Most access tokens kept; expired ones are purged when the map fills.
const MAX_ACCESS_TOKENS: usize = 100_000;
/// Clock skew tolerated for a grant's `iat` in the future.
const GRANT_FUTURE_SKEW_SECS: u64 = 5 * 60;
/// Longest `android.ttl` FCM accepts: four weeks.
const MAX_TTL_SECS: u64 = 28 * 24 * 3600;

/// Configuration of a mock FCM.
#[derive(Clone, Debug)]
pub struct MockFcmConfig {
    /// Where to listen; port 0 picks a free port.
    pub listen: SocketAddr,
    /// The CA whose server certificate the mock presents.
    pub ca: Arc<TestCa>,
    /// Service accounts the mock trusts (each may send for its own project).
    pub service_accounts: Vec<FcmTrustedAccount>,
    /// Injected faults (the FCM reasons apply; APNs ones are ignored).
    pub faults: Faults,
    /// `SETTINGS_MAX_CONCURRENT_STREAMS` advertised to each connection.
    pub max_concurrent_streams: u32,
    /// The clock grants and access tokens are judged by.
    pub clock: MockClock,
    /// Lifetime of issued access tokens (Google: one hour).
    pub access_token_lifetime: Duration,
    /// Most accepted pushes kept for [`MockFcmHandle::accepted`] (oldest dropped first;
    /// 0 keeps none, for long benchmark runs). Capped at one million.
    pub record_capacity: usize,
}

impl MockFcmConfig {
    /// Listens on 127.0.0.1 with a free port, 100 streams, no faults, real time.
    pub fn new(ca: Arc<TestCa>, service_accounts: Vec<FcmTrustedAccount>) -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            ca,
            service_accounts,
            faults: Faults::default(),
            max_concurrent_streams: 100,
            clock: MockClock::real(),
            access_token_lifetime: Duration::from_secs(3600),
            record_capacity: 1_000_000,
        }
    }
}

/// Entry point of the mock FCM.
#[derive(Debug)]
pub struct MockFcm;

impl MockFcm {
    /// Binds the listener and starts serving.
    pub async fn start(cfg: MockFcmConfig) -> std::io::Result<MockFcmHandle> {
        let tls = cfg
            .ca
            .server_config(&[b"h2"])
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        // Bind first: the accepted grant audiences name the bound port.
        let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
        let addr = listener.local_addr()?;
        let core = Arc::new(Core::new(
            cfg.clock.clone(),
            cfg.faults.clone(),
            cfg.record_capacity,
        ));
        let audiences = vec![
            GOOGLE_TOKEN_AUDIENCE.to_owned(),
            format!("https://localhost:{}/token", addr.port()),
            format!("https://127.0.0.1:{}/token", addr.port()),
            format!("https://{addr}/token"),
        ];
        let service = Arc::new(Fcm {
            accounts: cfg.service_accounts.clone(),
            audiences,
            lifetime: cfg.access_token_lifetime,
            core: core.clone(),
            tokens: Mutex::new(HashMap::new()),
        });
        let server = Server::start(
            listener,
            tls,
            cfg.max_concurrent_streams,
            core.clone(),
            service,
        )?;
        Ok(MockFcmHandle {
            addr: server.addr,
            ca_pem: cfg.ca.ca_pem.clone(),
            core,
            server,
        })
    }
}

/// A running mock FCM.
pub struct MockFcmHandle {
    /// The bound address.
    pub addr: SocketAddr,
    /// PEM of the CA clients must trust.
    pub ca_pem: String,
    core: Arc<Core>,
    server: Server,
}

impl std::fmt::Debug for MockFcmHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockFcmHandle")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl MockFcmHandle {
    /// Base URL for `messages:send`: `https://localhost:PORT`.
    pub fn base_url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    /// The token endpoint, for a service-account JSON's `token_uri`.
    pub fn token_url(&self) -> String {
        format!("{}/token", self.base_url())
    }

    /// Every push accepted so far, oldest first.
    pub fn accepted(&self) -> Vec<AcceptedPush> {
        self.core.recorder.accepted()
    }

    /// A stream of pushes accepted from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<AcceptedPush> {
        self.core.recorder.subscribe()
    }

    /// Replaces the injected faults (and reseeds their generator).
    pub fn set_faults(&self, faults: Faults) {
        self.core.set_faults(faults);
    }

    /// From now on, sends to `token` answer 404 `UNREGISTERED`.
    pub fn mark_dead(&self, token: &str) {
        self.core.mark_dead(token);
    }

    /// Counters so far.
    pub fn stats(&self) -> MockStats {
        self.core.recorder.snapshot()
    }

    /// The mock's clock.
    pub fn clock(&self) -> &MockClock {
        &self.core.clock
    }

    /// Stops the mock and closes its connections.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

struct AccessToken {
    project_id: String,
    fcm_scope: bool,
    expires_ms: u64,
}

struct Fcm {
    accounts: Vec<FcmTrustedAccount>,
    audiences: Vec<String>,
    lifetime: Duration,
    core: Arc<Core>,
    tokens: Mutex<HashMap<String, AccessToken>>,
}

/// A Google API error.
struct ApiError {
    code: StatusCode,
    status: &'static str,
    message: String,
    error_code: Option<&'static str>,
}

fn api_error(
    code: StatusCode,
    status: &'static str,
    error_code: Option<&'static str>,
    message: impl Into<String>,
) -> ApiError {
    ApiError {
        code,
        status,
        message: message.into(),
        error_code,
    }
}

fn invalid(message: impl Into<String>) -> ApiError {
    api_error(
        StatusCode::BAD_REQUEST,
        "INVALID_ARGUMENT",
        Some("INVALID_ARGUMENT"),
        message,
    )
}

impl ApiError {
    fn reply(self) -> Reply {
        let mut error = json!({
            "code": self.code.as_u16(),
            "message": self.message,
            "status": self.status,
        });
        if let Some(code) = self.error_code {
            error["details"] = json!([{
                "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                "errorCode": code,
            }]);
        }
        Reply::json(
            self.code,
            &json!({ "error": error }),
            Some(self.error_code.unwrap_or(self.status)),
        )
    }
}

fn oauth_error(error: &'static str, description: &str) -> Reply {
    Reply::json(
        StatusCode::BAD_REQUEST,
        &json!({"error": error, "error_description": description}),
        Some(error),
    )
}

impl Fcm {
    fn token_endpoint(&self, body: Body) -> Reply {
        let Body::Complete(body) = body else {
            return oauth_error("invalid_request", "Request too large.");
        };
        let form = parse_form(&body);
        let field = |name: &str| {
            form.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        if field("grant_type") != Some(GRANT_TYPE) {
            return oauth_error("unsupported_grant_type", "Invalid grant_type.");
        }
        let Some(assertion) = field("assertion") else {
            return oauth_error("invalid_request", "Missing required parameter: assertion");
        };
        let Ok(jwt) = Jwt::parse(assertion) else {
            return oauth_error("invalid_grant", "Invalid JWT.");
        };
        if jwt.header_str("alg") != Some("RS256") {
            return oauth_error("invalid_grant", "Invalid JWT: unsupported algorithm.");
        }
        let Some(account) = jwt
            .claim_str("iss")
            .and_then(|iss| self.accounts.iter().find(|a| a.client_email == iss))
        else {
            return oauth_error("invalid_grant", "Invalid grant: account not found");
        };
        if jwt.verify_rs256(&account.public_key).is_err() {
            return oauth_error("invalid_grant", "Invalid JWT Signature.");
        }
        if !jwt
            .claim_str("aud")
            .is_some_and(|aud| self.audiences.iter().any(|a| a == aud))
        {
            return oauth_error("invalid_grant", "Invalid JWT: Failed audience check.");
        }
        let now = self.core.clock.unix_secs();
        let timeframe_ok = match (jwt.claim_u64("iat"), jwt.claim_u64("exp")) {
            (Some(iat), Some(exp)) => {
                exp > iat && exp - iat <= 3600 && iat <= now + GRANT_FUTURE_SKEW_SECS && exp > now
            }
            _ => false,
        };
        if !timeframe_ok {
            return oauth_error(
                "invalid_grant",
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.",
            );
        }
        let scopes = jwt.claim_str("scope").unwrap_or("");
        if scopes.is_empty() {
            return oauth_error("invalid_scope", "Empty or missing scope not allowed.");
        }
        let fcm_scope = scopes
            .split(' ')
            .any(|s| s == SCOPE_FCM || s == SCOPE_CLOUD);

        let mut raw = [0u8; 24];
        if SystemRandom::new().fill(&mut raw).is_err() {
            return api_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                None,
                "no randomness",
            )
            .reply();
        }
        let access_token = format!("ya29.mock.{}", hex(&raw));
        let now_ms = self.core.clock.unix_millis();
        let lifetime_ms = u64::try_from(self.lifetime.as_millis()).unwrap_or(u64::MAX);
        {
            let mut tokens = lock(&self.tokens);
            if tokens.len() >= MAX_ACCESS_TOKENS {
                tokens.retain(|_, t| t.expires_ms > now_ms);
            }
            if tokens.len() >= MAX_ACCESS_TOKENS {
                return api_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "RESOURCE_EXHAUSTED",
                    None,
                    "too many live tokens",
                )
                .reply();
            }
            tokens.insert(
                access_token.clone(),
                AccessToken {
                    project_id: account.project_id.clone(),
                    fcm_scope,
                    expires_ms: now_ms.saturating_add(lifetime_ms),
                },
            );
        }
        self.core.recorder.stats(|s| s.tokens_issued += 1);
        Reply::json(
            StatusCode::OK,
            &json!({
                "access_token": access_token,
                "expires_in": self.lifetime.as_secs(),
                "token_type": "Bearer",
            }),
            None,
        )
    }

    fn send(
        &self,
        conn: &ConnCtx,
        req: &http::request::Parts,
        project: &str,
        body: Body,
    ) -> Result<Option<AcceptedPush>, ApiError> {
        let unauthenticated = || {
            api_error(
                StatusCode::UNAUTHORIZED,
                "UNAUTHENTICATED",
                None,
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
            )
        };
        let bearer = req
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim())
            .ok_or_else(unauthenticated)?;
        let now_ms = self.core.clock.unix_millis();
        {
            let tokens = lock(&self.tokens);
            let token = tokens
                .get(bearer)
                .filter(|t| t.expires_ms > now_ms)
                .ok_or_else(unauthenticated)?;
            if !token.fcm_scope {
                return Err(api_error(
                    StatusCode::FORBIDDEN,
                    "PERMISSION_DENIED",
                    None,
                    "Request had insufficient authentication scopes.",
                ));
            }
            if token.project_id != project {
                return Err(api_error(
                    StatusCode::FORBIDDEN,
                    "PERMISSION_DENIED",
                    Some("SENDER_ID_MISMATCH"),
                    format!("Permission 'cloudmessaging.messages.create' denied on resource '//cloudresourcemanager.googleapis.com/projects/{project}' (or it may not exist)."),
                ));
            }
        }
        let Body::Complete(body) = body else {
            return Err(invalid("Request payload size exceeds the limit."));
        };
        let request: Value = serde_json::from_slice(&body)
            .map_err(|e| invalid(format!("Invalid JSON payload received. {e}")))?;
        let request = request
            .as_object()
            .ok_or_else(|| invalid("Invalid JSON payload received."))?;
        check_fields(request, &["message", "validate_only"], "")?;
        let validate_only = match request.get("validate_only") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(invalid("Invalid value at 'validate_only' (TYPE_BOOL)")),
        };
        let message = request
            .get("message")
            .and_then(Value::as_object)
            .ok_or_else(|| invalid("Request contains an invalid argument: message is required."))?;
        check_fields(
            message,
            &[
                "name",
                "data",
                "notification",
                "android",
                "webpush",
                "apns",
                "fcm_options",
                "token",
                "topic",
                "condition",
            ],
            "message.",
        )?;
        let token = match message.get("token") {
            Some(Value::String(t)) => t.as_str(),
            _ => {
                return Err(invalid(
                    "Request contains an invalid argument: message.token is required.",
                ))
            }
        };
        let token_ok = !token.is_empty()
            && token.len() <= 4096
            && token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_:.".contains(&b));
        if !token_ok {
            return Err(invalid(
                "The registration token is not a valid FCM registration token",
            ));
        }
        let mut payload_size = data_size(message.get("data"), "message.data")?;
        payload_size += message
            .get("notification")
            .map_or(0, |n| n.to_string().len());
        let mut priority = PushPriority::Normal;
        let mut ttl = None;
        let mut collapse_id = None;
        if let Some(android) = message.get("android") {
            let android = android
                .as_object()
                .ok_or_else(|| invalid("Invalid value at 'message.android'"))?;
            check_fields(
                android,
                &[
                    "collapse_key",
                    "priority",
                    "ttl",
                    "restricted_package_name",
                    "data",
                    "notification",
                    "fcm_options",
                    "direct_boot_ok",
                ],
                "message.android.",
            )?;
            priority = match android.get("priority") {
                None => PushPriority::Normal,
                Some(Value::String(p)) if p == "HIGH" => PushPriority::High,
                Some(Value::String(p)) if p == "NORMAL" => PushPriority::Normal,
                Some(other) => {
                    return Err(invalid(format!(
                        "Invalid value at 'message.android.priority' (type.googleapis.com/google.firebase.fcm.v1.AndroidMessagePriority), {other}"
                    )))
                }
            };
            if let Some(t) = android.get("ttl") {
                ttl = Some(parse_duration(t).ok_or_else(|| invalid(format!("Invalid value at 'message.android.ttl' (type.googleapis.com/google.protobuf.Duration), {t}")))?);
            }
            if let Some(c) = android.get("collapse_key") {
                collapse_id = Some(
                    c.as_str()
                        .ok_or_else(|| invalid("Invalid value at 'message.android.collapse_key'"))?
                        .to_owned(),
                );
            }
            payload_size += data_size(android.get("data"), "message.android.data")?;
            payload_size += android
                .get("notification")
                .map_or(0, |n| n.to_string().len());
        }
        if payload_size > MAX_PAYLOAD {
            return Err(invalid("Android message is too big"));
        }
        if self.core.dead_since(token).is_some() {
            return Err(api_error(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                Some("UNREGISTERED"),
                "Requested entity was not found.",
            ));
        }
        if validate_only {
            return Ok(None);
        }
        let mut id = [0u8; 8];
        SystemRandom::new().fill(&mut id).map_err(|_| {
            api_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                Some("INTERNAL"),
                "Internal error encountered.",
            )
        })?;
        Ok(Some(AcceptedPush {
            service: PushService::Fcm,
            id: format!("projects/{project}/messages/0:{now_ms}%{}", hex(&id)),
            token: token.to_owned(),
            topic: project.to_owned(),
            push_type: None,
            priority,
            expiration: None,
            ttl,
            collapse_id,
            payload: Value::Object(message.clone()),
            connection: conn.id,
            at: self.core.clock.now(),
        }))
    }
}

/// Rejects fields outside `known`, as Google's JSON parser does.
fn check_fields(object: &Map<String, Value>, known: &[&str], prefix: &str) -> Result<(), ApiError> {
    match object.keys().find(|k| !known.contains(&k.as_str())) {
        Some(unknown) => Err(invalid(format!(
            "Invalid JSON payload received. Unknown name \"{unknown}\" at '{prefix}': Cannot find field."
        ))),
        None => Ok(()),
    }
}

/// Size of a `data` map (keys plus values), which must hold only strings.
fn data_size(data: Option<&Value>, field: &str) -> Result<usize, ApiError> {
    let Some(data) = data else { return Ok(0) };
    let data = data
        .as_object()
        .ok_or_else(|| invalid(format!("Invalid value at '{field}'")))?;
    let mut size = 0;
    for (key, value) in data {
        let Value::String(value) = value else {
            return Err(invalid(format!(
                "Invalid value at '{field}[0].value' (TYPE_STRING), {value}"
            )));
        };
        size += key.len() + value.len();
    }
    Ok(size)
}

/// Parses a protobuf JSON duration such as `"0s"`, `"30s"` or `"3.5s"`.
fn parse_duration(v: &Value) -> Option<Duration> {
    let s = v.as_str()?.strip_suffix('s')?;
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    if secs.is_empty()
        || !secs.bytes().all(|b| b.is_ascii_digit())
        || frac.len() > 9
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    if s.contains('.') && frac.is_empty() {
        return None;
    }
    let secs: u64 = secs.parse().ok()?;
    let nanos: u32 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().ok()?
    };
    (secs <= MAX_TTL_SECS).then(|| Duration::new(secs, nanos))
}

/// Parses an `application/x-www-form-urlencoded` body.
fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    fn decode(s: &[u8]) -> String {
        let mut out = Vec::with_capacity(s.len());
        let mut i = 0;
        while i < s.len() {
            match s[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < s.len() => {
                    let hex = std::str::from_utf8(&s[i + 1..i + 3])
                        .ok()
                        .and_then(|h| u8::from_str_radix(h, 16).ok());
                    match hex {
                        Some(b) => {
                            out.push(b);
                            i += 2;
                        }
                        None => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    body.split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = match pair.iter().position(|&b| b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &[][..]),
            };
            (decode(k), decode(v))
        })
        .collect()
}

impl Service for Fcm {
    fn body_limit(&self) -> usize {
        MAX_BODY
    }

    fn handle(&self, conn: &ConnCtx, req: &http::request::Parts, body: Body) -> Reply {
        let path = req.uri.path();
        if path == "/token" {
            if req.method != Method::POST {
                return api_error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "METHOD_NOT_ALLOWED",
                    None,
                    "Method not allowed.",
                )
                .reply();
            }
            return self.token_endpoint(body);
        }
        let project = path
            .strip_prefix("/v1/projects/")
            .and_then(|rest| rest.strip_suffix("/messages:send"))
            .filter(|p| !p.is_empty() && !p.contains('/'));
        let Some(project) = project else {
            return api_error(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                None,
                "The requested URL was not found on this server.",
            )
            .reply();
        };
        if req.method != Method::POST {
            return api_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED",
                None,
                "Method not allowed.",
            )
            .reply();
        }
        match self.send(conn, req, project, body) {
            Ok(Some(push)) => {
                let mut reply = Reply::json(StatusCode::OK, &json!({ "name": push.id }), None);
                reply.accepted = Some(push);
                reply
            }
            Ok(None) => Reply::json(
                StatusCode::OK,
                &json!({ "name": format!("projects/{project}/messages/fake_message_id") }),
                None,
            ),
            Err(e) => e.reply(),
        }
    }

    fn fault_reply(&self, fault: &FaultReason, _push: &AcceptedPush) -> Option<Reply> {
        Some(match fault {
            FaultReason::Fcm500 => api_error(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", Some("INTERNAL"), "Internal error encountered.").reply(),
            FaultReason::Fcm503 { retry_after } => {
                let reply = api_error(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", Some("UNAVAILABLE"), "The service is currently unavailable.").reply();
                match retry_after {
                    Some(secs) => reply.header(header::RETRY_AFTER, &secs.to_string()),
                    None => reply,
                }
            }
            FaultReason::Fcm429 { retry_after } => api_error(
                StatusCode::TOO_MANY_REQUESTS,
                "RESOURCE_EXHAUSTED",
                Some("QUOTA_EXCEEDED"),
                "Quota exceeded for quota metric 'Send requests' and limit 'Send requests per minute'.",
            )
            .reply()
            .header(header::RETRY_AFTER, &retry_after.to_string()),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration(&json!("0s")), Some(Duration::ZERO));
        assert_eq!(parse_duration(&json!("30s")), Some(Duration::from_secs(30)));
        assert_eq!(
            parse_duration(&json!("3.5s")),
            Some(Duration::from_millis(3500))
        );
        for bad in ["30", "s", "-1s", "1.s", "3.1234567891s", "2419201s"] {
            assert_eq!(parse_duration(&json!(bad)), None, "{bad}");
        }
        assert_eq!(parse_duration(&json!(30)), None);
    }

    #[test]
    fn form_decoding() {
        let f = parse_form(b"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=a.b.c&x=1+2%");
        assert_eq!(f[0], ("grant_type".into(), GRANT_TYPE.into()));
        assert_eq!(f[1], ("assertion".into(), "a.b.c".into()));
        assert_eq!(f[2], ("x".into(), "1 2%".into()));
    }
}
