//! The intake API's JSON documents and their validation.
//!
//! Requests deserialize with `deny_unknown_fields`, so a misspelt field is an error instead of
//! silently ignored; then [`PutDevice::validate`] checks every value the SIP and push layers
//! will later put on the wire, so bad input is refused here with the field's name rather than
//! failing later in a REGISTER or a push nobody watches.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::ApiError;

/// Body of `PUT /v1/devices/{device_id}`: everything the gateway needs to register and push
/// for a device whose app goes to the background.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutDevice {
    /// The SIP account to keep registered.
    pub sip: SipAccount,
    /// Where to push when a call or message arrives.
    pub push: PushTarget,
    /// The app handing over.
    pub app: AppInfo,
    /// Preferred registration expiry in seconds (60–86400; default 3600). The upstream may
    /// grant less or demand more (423).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<u32>,
}

/// A SIP account. `Debug` omits the password.
#[derive(Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SipAccount {
    /// User part of the address of record.
    pub username: String,
    /// Digest username, when it differs from `username`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_username: Option<String>,
    /// Digest password. Stored encrypted; never returned, never logged.
    pub password: String,
    /// SIP domain (`host` or `host:port`).
    pub domain: String,
    /// Outbound proxy: `host[:port]` or a `sip:`/`sips:` URI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound_proxy: Option<String>,
    /// `udp`, `tcp` or `tls`; default: from the domain's DNS (RFC 3263).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
    /// Display name for the From header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

impl std::fmt::Debug for SipAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SipAccount").finish_non_exhaustive()
    }
}

/// Exactly one push target.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum PushTarget {
    /// Apple Push Notification service.
    Apns(ApnsTarget),
    /// Firebase Cloud Messaging (HTTP v1).
    Fcm(FcmTarget),
    /// Vigil's QUIC wake channel.
    Quic(QuicTarget),
}

/// APNs tokens of one app installation.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApnsTarget {
    /// PushKit VoIP token (hex).
    pub voip_token: String,
    /// Regular (alert) token (hex), for missed-call and reminder notifications.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_token: Option<String>,
    /// The app's bundle id (the VoIP topic is `<bundle_id>.voip`).
    pub bundle_id: String,
    /// `sandbox` or `production`.
    pub environment: String,
}

/// An FCM registration token and its project.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FcmTarget {
    /// The registration token.
    pub token: String,
    /// Firebase project id.
    pub project_id: String,
}

/// The device's QUIC wake-channel token.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuicTarget {
    /// Token the device presents when it opens its wake connection.
    pub token: String,
}

/// The app handing over.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppInfo {
    /// Application id (bundle or package name).
    pub id: String,
    /// Application version.
    pub version: String,
}

/// Answer to a PUT.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PutResponse {
    /// The device.
    pub device_id: String,
    /// Registration state after this PUT (`registering` after a new or changed body).
    pub state: String,
    /// Whether this PUT changed anything (false: the same body again).
    pub changed: bool,
    /// Only in the answer to the first PUT: the secret that authorizes later calls
    /// (`Authorization: Bearer ...`). Stored only as a hash; keep it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_secret: Option<String>,
}

/// Answer to a GET.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeviceStatusDoc {
    /// The device.
    pub device_id: String,
    /// `registering`, `registered`, `retrying`, `failed` or `unregistering`.
    pub state: String,
    /// Expiry granted by the upstream in seconds (0 before the first 2xx).
    pub granted_expires: u32,
    /// When registered: the next refresh (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_refresh_at: Option<String>,
    /// When retrying: the next attempt (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    /// The upstream's last final status (e.g. 403), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_status: Option<u16>,
    /// When failed or retrying: why, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Last PUT (RFC 3339).
    pub last_put_at: String,
    /// When the device will be forgotten unless PUT again (RFC 3339).
    pub idle_expires_at: String,
    /// `false` once the push provider reported the device's (VoIP or FCM) push token dead
    /// (APNs 410, FCM UNREGISTERED): the token was dropped and nothing is pushed until a PUT
    /// brings a new one.
    #[serde(default = "yes")]
    pub push_active: bool,
}

fn yes() -> bool {
    true
}

/// Every error answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDoc {
    /// Machine-readable code (`malformed_json`, `unknown_field`, `invalid_field`,
    /// `body_too_large`, `unauthorized`, `not_found`, `rate_limited`, ...).
    pub error: String,
    /// The offending field (dotted path), when one is to blame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// What was wrong, for humans.
    pub message: String,
}

const DEFAULT_EXPIRES: u32 = 3600;

impl PutDevice {
    /// The expiry to ask for.
    pub fn expires(&self) -> u32 {
        self.expires.unwrap_or(DEFAULT_EXPIRES)
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ApiError> {
        let s = &self.sip;
        check_sip_user("sip.username", &s.username)?;
        if let Some(a) = &s.auth_username {
            check_sip_user("sip.auth_username", a)?;
        }
        if s.password.is_empty() || s.password.len() > 128 {
            return bad("sip.password", "must be 1 to 128 bytes");
        }
        if s.password.chars().any(char::is_control) {
            return bad("sip.password", "must not contain control characters");
        }
        check_hostport("sip.domain", &s.domain)?;
        if let Some(p) = &s.outbound_proxy {
            check_proxy("sip.outbound_proxy", p)?;
        }
        if let Some(t) = &s.transport {
            if !matches!(t.as_str(), "udp" | "tcp" | "tls") {
                return bad("sip.transport", "must be udp, tcp or tls");
            }
        }
        if let Some(d) = &s.display_name {
            if d.len() > 64 || d.chars().any(|c| c.is_control() || c == '"' || c == '\\') {
                return bad(
                    "sip.display_name",
                    "must be at most 64 bytes without quotes, backslashes or control characters",
                );
            }
        }
        match &self.push {
            PushTarget::Apns(a) => {
                check_hex_token("push.apns.voip_token", &a.voip_token)?;
                if let Some(t) = &a.alert_token {
                    check_hex_token("push.apns.alert_token", t)?;
                }
                check_charset("push.apns.bundle_id", &a.bundle_id, 155, |c| {
                    c.is_ascii_alphanumeric() || c == '.' || c == '-'
                })?;
                if !matches!(a.environment.as_str(), "sandbox" | "production") {
                    return bad("push.apns.environment", "must be sandbox or production");
                }
            }
            PushTarget::Fcm(f) => {
                check_charset("push.fcm.token", &f.token, 1024, |c| {
                    c.is_ascii_alphanumeric() || "-_:.".contains(c)
                })?;
                check_charset("push.fcm.project_id", &f.project_id, 64, |c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
                })?;
            }
            PushTarget::Quic(q) => {
                check_charset("push.quic.token", &q.token, 256, |c| {
                    c.is_ascii_alphanumeric() || "-_=".contains(c)
                })?;
            }
        }
        check_charset("app.id", &self.app.id, 128, |c| {
            c.is_ascii_alphanumeric() || "._-".contains(c)
        })?;
        check_charset("app.version", &self.app.version, 32, |c| {
            c.is_ascii_alphanumeric() || "._-+".contains(c)
        })?;
        if !(60..=86_400).contains(&self.expires()) {
            return bad("expires", "must be between 60 and 86400 seconds");
        }
        Ok(())
    }
}

fn bad<T>(field: &str, message: &str) -> Result<T, ApiError> {
    Err(ApiError::invalid_field(field, message))
}

fn check_charset(
    field: &str,
    value: &str,
    max: usize,
    ok: impl Fn(char) -> bool,
) -> Result<(), ApiError> {
    if value.is_empty() || value.len() > max {
        return Err(ApiError::invalid_field(
            field,
            &format!("must be 1 to {max} characters"),
        ));
    }
    if !value.chars().all(ok) {
        return bad(field, "contains characters that are not allowed here");
    }
    Ok(())
}

/// A device id in the URL path.
pub fn check_device_id(id: &str) -> Result<(), ApiError> {
    check_charset("device_id", id, 128, |c| {
        c.is_ascii_alphanumeric() || "._:-".contains(c)
    })
}

/// The user part of a SIP URI (RFC 3261 `user`: unreserved, escapes, user-unreserved).
fn check_sip_user(field: &str, v: &str) -> Result<(), ApiError> {
    check_charset(field, v, 64, |c| {
        c.is_ascii_alphanumeric() || "-_.!~*'()%&=+$,;?/".contains(c)
    })?;
    // Every escape is % followed by two hex digits.
    let b = v.as_bytes();
    for (i, _) in v.match_indices('%') {
        let ok = b
            .get(i + 1..i + 3)
            .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit));
        if !ok {
            return bad(field, "has a % not followed by two hex digits");
        }
    }
    Ok(())
}

/// `host[:port]` where host is a DNS name, IPv4 address or bracketed IPv6 address.
fn check_hostport(field: &str, v: &str) -> Result<(), ApiError> {
    let (host, port) = if let Some(rest) = v.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| ApiError::invalid_field(field, "unclosed IPv6 bracket"))?;
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return bad(field, "invalid IPv6 address");
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(|| {
                ApiError::invalid_field(field, "expected :port after the IPv6 address")
            })?),
        };
        (None, port)
    } else {
        match v.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(v), None),
        }
    };
    if let Some(p) = port {
        if !matches!(p.parse::<u16>(), Ok(n) if n > 0) {
            return bad(field, "port must be 1 to 65535");
        }
    }
    if let Some(h) = host {
        if h.is_empty() || h.len() > 253 {
            return bad(field, "host must be 1 to 253 characters");
        }
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        };
        if !h.trim_end_matches('.').split('.').all(label_ok) {
            return bad(field, "not a valid host name or IPv4 address");
        }
    }
    Ok(())
}

/// `host[:port]`, or `sip:`/`sips:` URI with an optional `;transport=` parameter.
fn check_proxy(field: &str, v: &str) -> Result<(), ApiError> {
    let rest = v
        .strip_prefix("sips:")
        .or_else(|| v.strip_prefix("sip:"))
        .unwrap_or(v);
    let mut parts = rest.split(';');
    let hostport = parts.next().unwrap_or_default();
    if hostport.contains('@') {
        return bad(field, "an outbound proxy URI has no user part");
    }
    check_hostport(field, hostport)?;
    for p in parts {
        match p.split_once('=') {
            Some(("transport", "udp" | "tcp" | "tls")) => {}
            None if p == "lr" => {}
            _ => return bad(field, "only ;transport=udp|tcp|tls and ;lr are allowed"),
        }
    }
    Ok(())
}

/// An APNs token: hex, even length, 32 to 200 digits (Apple's are 64 today; the length is
/// opaque but the encoding is not).
fn check_hex_token(field: &str, v: &str) -> Result<(), ApiError> {
    if v.len() < 32 || v.len() > 200 || !v.len().is_multiple_of(2) {
        return bad(field, "must be an even number of hex digits, 32 to 200");
    }
    if !v.chars().all(|c| c.is_ascii_hexdigit()) {
        return bad(field, "must be hex");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_proxies() {
        for ok in ["example.com", "a.b.c:5060", "10.0.0.1", "[::1]:5061", "x."] {
            assert!(check_hostport("f", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "exa mple.com",
            "a..b",
            "-a.com",
            "a.com:0",
            "a.com:99999",
            "[::1",
            "a@b",
        ] {
            assert!(check_hostport("f", bad).is_err(), "{bad}");
        }
        assert!(check_proxy("f", "sip:proxy.example.com:5060;transport=tcp;lr").is_ok());
        assert!(check_proxy("f", "sips:[2001:db8::1]").is_ok());
        assert!(check_proxy("f", "sip:user@proxy").is_err());
        assert!(check_proxy("f", "sip:proxy;transport=sctp").is_err());
        assert!(check_sip_user("f", "alice%20b").is_ok());
        assert!(check_sip_user("f", "alice%2").is_err());
        assert!(check_sip_user("f", "al ice").is_err());
        assert!(check_hex_token("f", &"ab".repeat(32)).is_ok());
        assert!(check_hex_token("f", &"zz".repeat(32)).is_err());
    }
}
