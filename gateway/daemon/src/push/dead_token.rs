//! Dropping push tokens that a provider reported dead (APNs 410 `Unregistered`, FCM
//! `UNREGISTERED`) from the device bindings, in memory and durably in the store, so that no
//! further push goes to them and `GET /v1/devices/{id}` shows `push_active: false`.
//!
//! A [`PushEvent::DeadToken`](vigil_proto::push::PushEvent) names the dead target, not the
//! device. The tokens are sealed in the bindings, so the device is found by opening the
//! sealed tokens of the bindings of that provider (and, for APNs, that bundle id): one
//! AES-GCM open per candidate, about a microsecond each, done on a blocking thread. Dead
//! tokens are rare (an app uninstalled) and a dropped token never comes back, so this costs
//! less than an index of token digests, which every binding would carry all the time.
//!
//! What is dropped: a dead APNs alert token removes only that token (VoIP pushes still
//! work); a dead VoIP, FCM or wake token leaves the binding without push tokens until the
//! app PUTs a new one. The store update is conditional on the device's body digest, so a
//! PUT that raced with the drop (carrying fresh tokens) wins in the store as in memory.

use std::sync::Arc;

use tracing::{debug, info, warn};
use vigil_proto::push::Target;

use crate::api::model::PushTarget;
use crate::api::ApiState;
use crate::bindings::Binding;
use crate::store::WriteOp;

/// What a dead token means for one binding's push tokens.
#[derive(Debug, PartialEq, Eq)]
enum Effect {
    /// The binding does not hold the token.
    NotHeld,
    /// Keep these tokens (JSON), without the dead one.
    Keep(Vec<u8>),
    /// No push token is left.
    Nothing,
}

/// The provider kind, topic filter and token of a dead target, as the bindings store them.
fn key(target: &Target) -> Option<(&'static str, Option<&str>, &str)> {
    match target {
        Target::Apns { token, bundle_id } => Some(("apns", Some(bundle_id), token.expose())),
        Target::Fcm { token } => Some(("fcm", None, token.expose())),
        // A wake device id is not a token the API stores (it stores the device's secret);
        // the wake channel reports no dead tokens.
        Target::Wake { .. } => None,
    }
}

/// Applies a dead `token` to one binding's opened push tokens.
fn drop_from(json: &[u8], token: &str) -> Effect {
    let Ok(mut target) = serde_json::from_slice::<PushTarget>(json) else {
        return Effect::NotHeld;
    };
    match &mut target {
        // APNs tokens are hex; the event carries them in lower case.
        PushTarget::Apns(a) if a.voip_token.eq_ignore_ascii_case(token) => Effect::Nothing,
        PushTarget::Apns(a)
            if a.alert_token
                .as_deref()
                .is_some_and(|t| t.eq_ignore_ascii_case(token)) =>
        {
            a.alert_token = None;
            match serde_json::to_vec(&target) {
                Ok(j) => Effect::Keep(j),
                Err(_) => Effect::Nothing,
            }
        }
        PushTarget::Fcm(f) if f.token == token => Effect::Nothing,
        _ => Effect::NotHeld,
    }
}

/// The bindings holding the dead token, each with its new sealed push tokens.
fn find(
    api: &ApiState,
    kind: &str,
    topic: Option<&str>,
    token: &str,
) -> Vec<(Arc<Binding>, Vec<u8>)> {
    let mut found = Vec::new();
    for b in api.table.with_push_kind(kind, topic) {
        let Ok(json) = api.secrets.open(b.push_sealed()) else {
            warn!(token = %b.token, "push tokens cannot be opened: was the secret key changed?");
            continue;
        };
        match drop_from(&json, token) {
            Effect::NotHeld => {}
            Effect::Keep(rest) => found.push((b, api.secrets.seal(&rest))),
            Effect::Nothing => found.push((b, Vec::new())),
        }
    }
    found
}

/// Drops a dead target's token from every binding holding it (normally one); returns how
/// many bindings changed. Store failures are logged: the next push to the token reports it
/// dead again.
pub async fn drop_dead_token(api: &Arc<ApiState>, target: &Target) -> usize {
    let Some((kind, topic, token)) = key(target) else {
        return 0;
    };
    let found = {
        let (api, topic, token) = (Arc::clone(api), topic.map(str::to_owned), token.to_owned());
        match tokio::task::spawn_blocking(move || find(&api, kind, topic.as_deref(), &token)).await
        {
            Ok(f) => f,
            Err(e) => {
                warn!(error = %e, "dead-token lookup failed");
                return 0;
            }
        }
    };
    let mut changed = 0;
    for (b, push_enc) in found {
        let op = WriteOp::SetPush {
            device_id: b.device_id().to_owned(),
            body_hash: b.body_hash.to_vec(),
            push_enc: push_enc.clone(),
        };
        if let Err(error) = api.batcher.write(op).await {
            warn!(token = %b.token, %error, "dead push token not dropped from the store");
            continue;
        }
        let new = match b.with_push_sealed(push_enc) {
            Ok(n) => Arc::new(n),
            Err(error) => {
                warn!(token = %b.token, %error, "dead push token not dropped from memory");
                continue;
            }
        };
        if api.table.replace_if_current(&b, new) {
            info!(token = %b.token, kind, "dead push token dropped from the binding");
            changed += 1;
        } else {
            debug!(token = %b.token, "binding replaced meanwhile: its new tokens stand");
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_the_dead_token_only() {
        let voip = "aa".repeat(32);
        let alert = "bb".repeat(32);
        let apns = serde_json::json!({"apns": {"voip_token": voip, "alert_token": alert,
            "bundle_id": "org.example", "environment": "production"}})
        .to_string();
        assert_eq!(drop_from(apns.as_bytes(), &voip), Effect::Nothing);
        assert_eq!(
            drop_from(apns.as_bytes(), &"cc".repeat(32)),
            Effect::NotHeld
        );
        let Effect::Keep(rest) = drop_from(apns.as_bytes(), &alert.to_uppercase()) else {
            panic!("alert token dropped, VoIP token kept");
        };
        let rest: serde_json::Value = serde_json::from_slice(&rest).unwrap();
        assert_eq!(rest["apns"]["voip_token"], voip.as_str());
        assert!(rest["apns"].get("alert_token").is_none());
        let fcm = br#"{"fcm": {"token": "f-1", "project_id": "p"}}"#;
        assert_eq!(drop_from(fcm, "f-1"), Effect::Nothing);
        assert_eq!(drop_from(fcm, "f-2"), Effect::NotHeld);
        assert_eq!(drop_from(b"not json", "f-1"), Effect::NotHeld);
    }
}
