//! Push payloads: from a notice about a call or message to the bytes and headers a provider
//! expects, with the provider's size limit checked before anything is sent.
//!
//! The inputs are [`Notice`] values built from what the relay knows about a call or message.
//! None of them has a field that could hold account credentials, so a push can never carry a
//! SIP password: the type system, not a review, keeps it out.
//!
//! Rules from PROTOCOL-FACTS (APNs): a VoIP push is only for a real incoming call (iOS 13+
//! kills apps that do not report a VoIP push to CallKit), with priority 10, expiration 0 and
//! topic `<bundle>.voip`; cancel / answered-elsewhere / missed go as background or alert
//! pushes; background pushes use priority 5. Limits: 4096 bytes, 5120 for VoIP. FCM: data
//! messages with string values, `android.priority` and `android.ttl`, 4096 bytes of data.

use std::time::Duration;

use serde_json::{json, Map, Value};

use super::{DeviceToken, Target, Urgency};

/// APNs payload limit for every push type except VoIP.
pub const APNS_MAX_PAYLOAD: usize = 4096;
/// APNs payload limit for VoIP pushes.
pub const APNS_MAX_VOIP_PAYLOAD: usize = 5120;
/// FCM limit on the data payload.
pub const FCM_MAX_DATA: usize = 4096;
/// Message previews are cut to this many bytes so that a long message still fits.
pub const MAX_PREVIEW: usize = 1024;

/// An incoming call, as the relay describes it to the callee's device.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CallNotice {
    /// Opaque reference the app uses to match the push to the held call (e.g. a call token).
    pub call_ref: String,
    /// The caller's number or user part, for CallKit's handle.
    pub caller: String,
    /// Display name from the From header, if any.
    pub caller_name: Option<String>,
    /// Whether the INVITE offered video.
    pub video: bool,
}

/// Why a call that was pushed ended before the device answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallEndReason {
    /// The caller hung up before the device connected.
    Cancelled,
    /// Another device of the same user answered.
    AnsweredElsewhere,
    /// Nobody answered: the user should see a missed call.
    Missed,
}

/// A text message (SIP MESSAGE) for the device.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MessageNotice {
    /// Opaque reference of the held message.
    pub message_ref: String,
    /// The sender's number or user part.
    pub from: String,
    /// Start of the message text, if the user allowed previews.
    pub preview: Option<String>,
}

/// What a push announces. The only inputs to payload construction.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Notice {
    /// A call is waiting: the one case that may use an APNs VoIP push.
    IncomingCall(CallNotice),
    /// A pushed call ended before the device picked it up.
    CallEnded {
        /// The call's reference, as in the incoming-call push.
        call_ref: String,
        /// The caller, for a missed-call notification.
        caller: String,
        /// Why it ended.
        reason: CallEndReason,
    },
    /// A message is waiting.
    Message(MessageNotice),
    /// The device should open the app so its registration does not lapse.
    RenewReminder,
}

impl Notice {
    /// The queue lane of this notice. Call ends share the call lane: a cancel must overtake
    /// queued messages, or a phone may ring for a call that is already gone.
    pub fn urgency(&self) -> Urgency {
        match self {
            Notice::IncomingCall(_) | Notice::CallEnded { .. } => Urgency::Call,
            Notice::Message(_) => Urgency::Message,
            Notice::RenewReminder => Urgency::Reminder,
        }
    }

    /// The app-level fields shared by every provider (string values, as FCM requires).
    fn data(&self) -> Map<String, Value> {
        let mut m = Map::new();
        let mut put = |k: &str, v: &str| {
            m.insert(k.to_owned(), Value::String(v.to_owned()));
        };
        match self {
            Notice::IncomingCall(c) => {
                put("type", "incoming-call");
                put("call_ref", &c.call_ref);
                put("caller", &c.caller);
                if let Some(n) = &c.caller_name {
                    put("caller_name", n);
                }
                put("video", if c.video { "1" } else { "0" });
            }
            Notice::CallEnded {
                call_ref,
                caller,
                reason,
            } => {
                put("type", "call-ended");
                put("call_ref", call_ref);
                put("caller", caller);
                put(
                    "reason",
                    match reason {
                        CallEndReason::Cancelled => "cancelled",
                        CallEndReason::AnsweredElsewhere => "answered-elsewhere",
                        CallEndReason::Missed => "missed",
                    },
                );
            }
            Notice::Message(msg) => {
                put("type", "message");
                put("message_ref", &msg.message_ref);
                put("from", &msg.from);
                if let Some(p) = &msg.preview {
                    put("preview", truncate(p, MAX_PREVIEW));
                }
            }
            Notice::RenewReminder => put("type", "renew-registration"),
        }
        m
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Errors building a payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// The serialized payload exceeds the provider's limit.
    #[error("payload is {size} bytes, limit {limit}")]
    TooLarge {
        /// Bytes the payload would have.
        size: usize,
        /// The provider's limit for this push type.
        limit: usize,
    },
    /// The target is for a different provider than the request being built.
    #[error("target does not match the provider")]
    WrongTarget,
}

/// `apns-push-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApnsPushType {
    /// PushKit VoIP push (incoming calls only).
    Voip,
    /// User-visible alert.
    Alert,
    /// Silent content-available push.
    Background,
}

impl ApnsPushType {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            ApnsPushType::Voip => "voip",
            ApnsPushType::Alert => "alert",
            ApnsPushType::Background => "background",
        }
    }
}

/// `apns-expiration`, relative so that the core needs no wall clock; the shell turns
/// [`Expiration::After`] into epoch seconds when it writes the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Expiration {
    /// `0`: deliver now or drop (VoIP).
    Immediate,
    /// Store and retry delivery for this long.
    After(Duration),
}

/// Everything needed for one APNs `POST /3/device/<token>` except the authorization and
/// `apns-id`, which the shell adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApnsRequest {
    /// `apns-push-type`.
    pub push_type: ApnsPushType,
    /// `apns-topic`.
    pub topic: String,
    /// `apns-priority` (10 or 5).
    pub priority: u8,
    /// `apns-expiration`.
    pub expiration: Expiration,
    /// `apns-collapse-id`, so a newer notice for the same call replaces the older one.
    pub collapse_id: Option<String>,
    /// The JSON body.
    pub body: Vec<u8>,
}

/// Everything needed for one FCM `messages:send` request except the bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FcmMessage {
    /// The JSON body (`{"message": …}`).
    pub body: Vec<u8>,
    /// Whether `android.priority` is HIGH.
    pub high_priority: bool,
}

/// A provider request ready for a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireRequest {
    /// For the APNs client.
    Apns(ApnsRequest),
    /// For the FCM client.
    Fcm(FcmMessage),
    /// For the wake channel: the JSON data object.
    Wake(Vec<u8>),
}

/// Builds the APNs request for `notice` to an app with `bundle_id`; `ttl` bounds how long
/// APNs may store a non-VoIP push.
pub fn build_apns(
    notice: &Notice,
    bundle_id: &str,
    ttl: Duration,
) -> Result<ApnsRequest, PayloadError> {
    let data = Value::Object(notice.data());
    let (push_type, aps) = match notice {
        Notice::IncomingCall(_) => (ApnsPushType::Voip, json!({})),
        Notice::CallEnded {
            reason: CallEndReason::Missed,
            caller,
            ..
        } => (
            ApnsPushType::Alert,
            json!({"alert": {"title": "Missed call", "body": caller}, "sound": "default"}),
        ),
        Notice::CallEnded { .. } | Notice::RenewReminder => {
            (ApnsPushType::Background, json!({"content-available": 1}))
        }
        Notice::Message(m) => (
            ApnsPushType::Alert,
            json!({
                "alert": {"title": m.from, "body": m.preview.as_deref().map_or("New message", |p| truncate(p, MAX_PREVIEW))},
                "sound": "default",
                "mutable-content": 1,
            }),
        ),
    };
    let body = serde_json::to_vec(&json!({"aps": aps, "vigil": data}))
        .expect("a JSON value of strings and objects always serializes");
    let (limit, topic, priority, expiration) = match push_type {
        ApnsPushType::Voip => (
            APNS_MAX_VOIP_PAYLOAD,
            format!("{bundle_id}.voip"),
            10,
            Expiration::Immediate,
        ),
        ApnsPushType::Alert => (
            APNS_MAX_PAYLOAD,
            bundle_id.to_owned(),
            10,
            Expiration::After(ttl),
        ),
        ApnsPushType::Background => (
            APNS_MAX_PAYLOAD,
            bundle_id.to_owned(),
            5,
            Expiration::After(ttl),
        ),
    };
    if body.len() > limit {
        return Err(PayloadError::TooLarge {
            size: body.len(),
            limit,
        });
    }
    let collapse_id = match notice {
        // APNs limits collapse ids to 64 bytes; longer call refs simply do not collapse.
        Notice::CallEnded { call_ref, .. } if call_ref.len() <= 64 => Some(call_ref.clone()),
        _ => None,
    };
    Ok(ApnsRequest {
        push_type,
        topic,
        priority,
        expiration,
        collapse_id,
        body,
    })
}

/// Builds the FCM HTTP v1 body for `notice` to `token` with the given time to live.
pub fn build_fcm(
    notice: &Notice,
    token: &DeviceToken,
    ttl: Duration,
) -> Result<FcmMessage, PayloadError> {
    let data = Value::Object(notice.data());
    let data_len = serde_json::to_vec(&data)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if data_len > FCM_MAX_DATA {
        return Err(PayloadError::TooLarge {
            size: data_len,
            limit: FCM_MAX_DATA,
        });
    }
    // High priority only where the user will see something, so Android does not demote
    // the app: calls and messages. Cancels and reminders wait for the next wake-up.
    let high = matches!(
        notice,
        Notice::IncomingCall(_)
            | Notice::Message(_)
            | Notice::CallEnded {
                reason: CallEndReason::Missed,
                ..
            }
    );
    let body = json!({"message": {
        "token": token.expose(),
        "data": data,
        "android": {"priority": if high { "HIGH" } else { "NORMAL" }, "ttl": format!("{}s", ttl.as_secs())},
    }});
    Ok(FcmMessage {
        body: serde_json::to_vec(&body).expect("a JSON value of strings always serializes"),
        high_priority: high,
    })
}

/// Builds the wake-channel message (the data object as JSON; same 4096-byte limit as FCM).
pub fn build_wake(notice: &Notice) -> Result<Vec<u8>, PayloadError> {
    let body = serde_json::to_vec(&Value::Object(notice.data()))
        .expect("a JSON object of strings always serializes");
    if body.len() > FCM_MAX_DATA {
        return Err(PayloadError::TooLarge {
            size: body.len(),
            limit: FCM_MAX_DATA,
        });
    }
    Ok(body)
}

/// Builds the request for `target`. `ttl` is the time left until the push's deadline.
pub fn build(notice: &Notice, target: &Target, ttl: Duration) -> Result<WireRequest, PayloadError> {
    match target {
        Target::Apns { bundle_id, .. } => build_apns(notice, bundle_id, ttl).map(WireRequest::Apns),
        Target::Fcm { token } => build_fcm(notice, token, ttl).map(WireRequest::Fcm),
        Target::Wake { .. } => build_wake(notice).map(WireRequest::Wake),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call() -> Notice {
        Notice::IncomingCall(CallNotice {
            call_ref: "c1".into(),
            caller: "+15551234".into(),
            caller_name: Some("Alice".into()),
            video: false,
        })
    }

    #[test]
    fn voip_only_for_incoming_calls() {
        let r = build_apns(&call(), "com.ex.app", Duration::from_secs(30)).unwrap();
        assert_eq!(r.push_type, ApnsPushType::Voip);
        assert_eq!(r.topic, "com.ex.app.voip");
        assert_eq!(r.priority, 10);
        assert_eq!(r.expiration, Expiration::Immediate);
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["vigil"]["type"], "incoming-call");
        assert_eq!(v["vigil"]["caller_name"], "Alice");

        for reason in [CallEndReason::Cancelled, CallEndReason::AnsweredElsewhere] {
            let n = Notice::CallEnded {
                call_ref: "c1".into(),
                caller: "x".into(),
                reason,
            };
            let r = build_apns(&n, "com.ex.app", Duration::from_secs(30)).unwrap();
            assert_eq!(r.push_type, ApnsPushType::Background);
            assert_eq!(r.topic, "com.ex.app");
            assert_eq!(r.priority, 5, "background pushes must use priority 5");
            assert_eq!(r.collapse_id.as_deref(), Some("c1"));
        }
        let n = Notice::CallEnded {
            call_ref: "c1".into(),
            caller: "x".into(),
            reason: CallEndReason::Missed,
        };
        let r = build_apns(&n, "com.ex.app", Duration::from_secs(30)).unwrap();
        assert_eq!(r.push_type, ApnsPushType::Alert);
        assert_eq!(r.expiration, Expiration::After(Duration::from_secs(30)));
        let r = build_apns(&Notice::RenewReminder, "b", Duration::from_secs(60)).unwrap();
        assert_eq!(r.push_type, ApnsPushType::Background);
    }

    #[test]
    fn size_limits() {
        // A caller name of 4.5 kB fits the 5120-byte VoIP limit but not 4096.
        let mut c = CallNotice {
            call_ref: "c".into(),
            caller: "1".into(),
            caller_name: Some("n".repeat(4500)),
            video: true,
        };
        let r = build_apns(&Notice::IncomingCall(c.clone()), "b", Duration::ZERO).unwrap();
        assert!(r.body.len() > APNS_MAX_PAYLOAD && r.body.len() <= APNS_MAX_VOIP_PAYLOAD);
        c.caller_name = Some("n".repeat(5200));
        let e = build_apns(&Notice::IncomingCall(c.clone()), "b", Duration::ZERO).unwrap_err();
        assert!(matches!(
            e,
            PayloadError::TooLarge {
                limit: APNS_MAX_VOIP_PAYLOAD,
                ..
            }
        ));
        let tok = DeviceToken::opaque("t").unwrap();
        let e = build_fcm(&Notice::IncomingCall(c), &tok, Duration::ZERO).unwrap_err();
        assert!(matches!(
            e,
            PayloadError::TooLarge {
                limit: FCM_MAX_DATA,
                ..
            }
        ));
        // Long previews are cut, so a long message still goes out.
        let m = Notice::Message(MessageNotice {
            message_ref: "m".into(),
            from: "bob".into(),
            preview: Some("é".repeat(3000)),
        });
        let r = build_apns(&m, "b", Duration::from_secs(5)).unwrap();
        assert!(r.body.len() <= APNS_MAX_PAYLOAD);
        assert!(std::str::from_utf8(&r.body).is_ok());
    }

    #[test]
    fn fcm_body_shape() {
        let tok = DeviceToken::opaque("tok-1").unwrap();
        let f = build_fcm(&call(), &tok, Duration::from_secs(30)).unwrap();
        let v: Value = serde_json::from_slice(&f.body).unwrap();
        assert_eq!(v["message"]["token"], "tok-1");
        assert_eq!(v["message"]["android"]["priority"], "HIGH");
        assert_eq!(v["message"]["android"]["ttl"], "30s");
        assert_eq!(v["message"]["data"]["video"], "0");
        let f = build_fcm(&Notice::RenewReminder, &tok, Duration::from_secs(3)).unwrap();
        assert!(!f.high_priority);
    }
}
