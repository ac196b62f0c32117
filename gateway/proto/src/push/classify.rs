//! What a provider's answer means for the push: done, retry later, refresh auth, or give up.
//!
//! The rules come from PROTOCOL-FACTS: never retry `BadDeviceToken`, `DeviceTokenNotForTopic`,
//! `Unregistered`, `PayloadTooLarge`, `UNREGISTERED`, `INVALID_ARGUMENT` or the Forbidden
//! class; a dead token (APNs 410, FCM `UNREGISTERED`) is reported so the binding can drop it;
//! 429 and 5xx are retried with backoff honouring `Retry-After`; an FCM 429 waits at least a
//! minute before the first retry.

use std::time::Duration;

use serde_json::Value;

/// FCM asks for at least this long before retrying a 429 (`QUOTA_EXCEEDED`).
pub const FCM_QUOTA_MIN_DELAY: Duration = Duration::from_secs(60);

macro_rules! reasons {
    ($(#[$m:meta])* $name:ident { $($v:ident),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $(
                #[allow(missing_docs)]
                $v,
            )*
            /// A value this version does not know (kept for logs, treated conservatively).
            Other(String),
        }

        impl $name {
            /// Parses the provider's string.
            pub fn parse(s: &str) -> Self {
                match s {
                    $(stringify!($v) => Self::$v,)*
                    other => Self::Other(other.chars().take(64).collect()),
                }
            }
        }
    };
}

reasons!(
    /// The `reason` of an APNs error response.
    ApnsReason {
        BadCollapseId, BadDeviceToken, BadExpirationDate, BadMessageId, BadPriority, BadTopic,
        DeviceTokenNotForTopic, DuplicateHeaders, IdleTimeout, InvalidPushType, MissingDeviceToken,
        MissingTopic, PayloadEmpty, TopicDisallowed, BadCertificate, BadCertificateEnvironment,
        ExpiredProviderToken, Forbidden, InvalidProviderToken, MissingProviderToken,
        UnrelatedKeyIdInToken, BadEnvironmentKeyIdInToken, BadPath, MethodNotAllowed, ExpiredToken,
        Unregistered, PayloadTooLarge, TooManyProviderTokenUpdates, TooManyRequests,
        InternalServerError, ServiceUnavailable, Shutdown,
    }
);

reasons!(
    /// The `error.status` or `details[].errorCode` of an FCM error response.
    #[allow(non_camel_case_types)]
    FcmErrorCode {
        INVALID_ARGUMENT, UNREGISTERED, SENDER_ID_MISMATCH, QUOTA_EXCEEDED, UNAVAILABLE, INTERNAL,
        THIRD_PARTY_AUTH_ERROR, UNAUTHENTICATED, PERMISSION_DENIED, NOT_FOUND, UNSPECIFIED_ERROR,
    }
);

/// Why a push was given up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FailReason {
    /// APNs refused it for good.
    #[error("APNs rejected the push ({status}, {reason:?})")]
    Apns {
        /// HTTP status.
        status: u16,
        /// The `reason` from the body.
        reason: ApnsReason,
    },
    /// FCM refused it for good.
    #[error("FCM rejected the push ({status}, {code:?})")]
    Fcm {
        /// HTTP status.
        status: u16,
        /// The most specific code in the body.
        code: FcmErrorCode,
    },
    /// The token is dead (APNs 410 / FCM UNREGISTERED).
    #[error("device token is no longer valid")]
    DeadToken,
    /// The deadline passed before the push could be delivered.
    #[error("deadline passed before delivery")]
    DeadlineExceeded,
    /// Retries were exhausted.
    #[error("gave up after {0} attempts")]
    RetriesExhausted(u32),
    /// Evicted from a full queue by a more urgent push.
    #[error("evicted by a more urgent push")]
    Evicted,
    /// The wake-channel device is not connected.
    #[error("device not connected to the wake channel")]
    NotConnected,
    /// The credential could not produce a valid auth token (bad key, token endpoint refused).
    #[error("provider credentials unusable")]
    Credentials,
    /// No client is configured for the push's credential.
    #[error("no client for this credential")]
    NoClient,
}

/// What to do after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// The provider accepted the push.
    Accepted,
    /// Try again later: after at least `min_delay` and the server's `Retry-After`.
    Retry {
        /// The server's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
        /// Lower bound the provider's rules impose on the next attempt.
        min_delay: Duration,
    },
    /// The auth token expired: refresh it (subject to the token policy) and retry.
    RefreshAuth,
    /// The device token is dead.
    DeadToken,
    /// Give up.
    Fail(FailReason),
}

impl Verdict {
    fn retry(retry_after: Option<Duration>) -> Self {
        Verdict::Retry {
            retry_after,
            min_delay: Duration::ZERO,
        }
    }
}

/// Parses `Retry-After` in its delta-seconds form. (The HTTP-date form needs a wall clock; the
/// shell converts it to seconds before calling.)
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    v.trim()
        .parse::<u64>()
        .ok()
        .map(|s| Duration::from_secs(s.min(3600)))
}

/// Extracts `reason` from an APNs error body (`{"reason": "…"}`).
pub fn apns_reason(body: &[u8]) -> Option<ApnsReason> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v.get("reason")?.as_str().map(ApnsReason::parse)
}

/// Classifies an APNs response.
pub fn classify_apns(status: u16, body: &[u8], retry_after: Option<Duration>) -> Verdict {
    use ApnsReason as R;
    if status == 200 {
        return Verdict::Accepted;
    }
    let reason = apns_reason(body).unwrap_or(R::Other(String::new()));
    match (status, &reason) {
        (410, _) | (_, R::Unregistered) | (_, R::ExpiredToken) => Verdict::DeadToken,
        (403, R::ExpiredProviderToken) => Verdict::RefreshAuth,
        // Our token was refreshed too often: the token policy prevents that, but if the
        // server says so anyway, waiting (with the same token) is the only safe move.
        (429, _) => Verdict::retry(retry_after),
        (500..=599, _) => Verdict::retry(retry_after),
        // Every other answer (400 family, other 403s, 404, 405, 413) will not change on retry.
        _ => Verdict::Fail(FailReason::Apns { status, reason }),
    }
}

/// Extracts the most specific error code from an FCM error body: a `details[].errorCode`
/// if present, else `error.status`.
pub fn fcm_code(body: &[u8]) -> Option<FcmErrorCode> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let err = v.get("error")?;
    if let Some(details) = err.get("details").and_then(Value::as_array) {
        for d in details {
            if let Some(c) = d.get("errorCode").and_then(Value::as_str) {
                return Some(FcmErrorCode::parse(c));
            }
        }
    }
    err.get("status")
        .and_then(Value::as_str)
        .map(FcmErrorCode::parse)
}

/// Classifies an FCM HTTP v1 response.
pub fn classify_fcm(status: u16, body: &[u8], retry_after: Option<Duration>) -> Verdict {
    use FcmErrorCode as C;
    if status == 200 {
        return Verdict::Accepted;
    }
    let code = fcm_code(body).unwrap_or(C::Other(String::new()));
    match (status, &code) {
        (_, C::UNREGISTERED) | (404, C::NOT_FOUND) => Verdict::DeadToken,
        (_, C::QUOTA_EXCEEDED) | (429, _) => Verdict::Retry {
            retry_after,
            min_delay: FCM_QUOTA_MIN_DELAY,
        },
        // A 401 without the APNs-bridge error means our OAuth token is stale.
        (401, c) if *c != C::THIRD_PARTY_AUTH_ERROR => Verdict::RefreshAuth,
        (500..=599, _) | (_, C::UNAVAILABLE) | (_, C::INTERNAL) => Verdict::retry(retry_after),
        _ => Verdict::Fail(FailReason::Fcm { status, code }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apns(status: u16, reason: &str) -> Verdict {
        classify_apns(
            status,
            format!(r#"{{"reason":"{reason}"}}"#).as_bytes(),
            None,
        )
    }

    #[test]
    fn apns_never_retry() {
        for (s, r) in [
            (400, "BadDeviceToken"),
            (400, "DeviceTokenNotForTopic"),
            (413, "PayloadTooLarge"),
            (403, "InvalidProviderToken"),
            (403, "Forbidden"),
            (403, "BadCertificate"),
            (404, "BadPath"),
        ] {
            assert!(
                matches!(apns(s, r), Verdict::Fail(FailReason::Apns { status, .. }) if status == s),
                "{r}"
            );
        }
        assert_eq!(apns(410, "Unregistered"), Verdict::DeadToken);
        assert_eq!(apns(400, "Unregistered"), Verdict::DeadToken);
        assert_eq!(apns(403, "ExpiredProviderToken"), Verdict::RefreshAuth);
        assert_eq!(classify_apns(200, b"", None), Verdict::Accepted);
    }

    #[test]
    fn apns_retry_classes() {
        for (s, r) in [
            (429, "TooManyRequests"),
            (429, "TooManyProviderTokenUpdates"),
            (500, "InternalServerError"),
            (503, "ServiceUnavailable"),
            (503, "Shutdown"),
        ] {
            assert!(matches!(apns(s, r), Verdict::Retry { .. }), "{r}");
        }
        let v = classify_apns(503, b"not json", Some(Duration::from_secs(7)));
        assert_eq!(
            v,
            Verdict::Retry {
                retry_after: Some(Duration::from_secs(7)),
                min_delay: Duration::ZERO
            }
        );
    }

    #[test]
    fn fcm_classes() {
        let body = |status: &str, code: Option<&str>| {
            let details = code
                .map(|c| format!(r#","details":[{{"@type":"x","errorCode":"{c}"}}]"#))
                .unwrap_or_default();
            format!(r#"{{"error":{{"code":1,"message":"m","status":"{status}"{details}}}}}"#)
        };
        let b = body("NOT_FOUND", Some("UNREGISTERED"));
        assert_eq!(classify_fcm(404, b.as_bytes(), None), Verdict::DeadToken);
        let b = body("INVALID_ARGUMENT", Some("INVALID_ARGUMENT"));
        assert!(matches!(
            classify_fcm(400, b.as_bytes(), None),
            Verdict::Fail(_)
        ));
        let b = body("PERMISSION_DENIED", Some("SENDER_ID_MISMATCH"));
        assert!(matches!(
            classify_fcm(403, b.as_bytes(), None),
            Verdict::Fail(_)
        ));
        let b = body("UNAUTHENTICATED", Some("THIRD_PARTY_AUTH_ERROR"));
        assert!(matches!(
            classify_fcm(401, b.as_bytes(), None),
            Verdict::Fail(_)
        ));
        let b = body("UNAUTHENTICATED", None);
        assert_eq!(classify_fcm(401, b.as_bytes(), None), Verdict::RefreshAuth);
        let b = body("RESOURCE_EXHAUSTED", Some("QUOTA_EXCEEDED"));
        assert_eq!(
            classify_fcm(429, b.as_bytes(), Some(Duration::from_secs(5))),
            Verdict::Retry {
                retry_after: Some(Duration::from_secs(5)),
                min_delay: FCM_QUOTA_MIN_DELAY
            }
        );
        let b = body("UNAVAILABLE", Some("UNAVAILABLE"));
        assert!(matches!(
            classify_fcm(503, b.as_bytes(), None),
            Verdict::Retry { .. }
        ));
        assert!(matches!(
            classify_fcm(500, b"", None),
            Verdict::Retry { .. }
        ));
        assert_eq!(parse_retry_after(" 12 "), Some(Duration::from_secs(12)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }
}
