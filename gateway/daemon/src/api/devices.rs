//! The `/v1/devices/{device_id}` handlers: PUT (hand over), GET (status), DELETE (take back).
//!
//! A PUT answers only after its write has committed (group commit, see
//! [`crate::store::WriteBatcher`]), then hands the binding to the registration engine and
//! answers `202 Accepted` with state `registering`: the client polls GET until `registered`
//! (or `failed` with the upstream's status). This keeps the API's latency independent of the
//! upstream's and of the engine's global REGISTER pace, which after a restart may hold a
//! binding back for minutes.
//!
//! Who may call: the first PUT creates the device and returns its secret. Every later call
//! needs `Authorization: Bearer <secret>`, or the same SIP credentials (in a PUT's body, or as
//! `Authorization: Basic` for GET and DELETE).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tracing::{debug, info, warn};

use super::error::ApiError;
use super::model::{
    check_device_id, DeviceStatusDoc, ErrorDoc, PushTarget, PutDevice, PutResponse, SipAccount,
};
use super::registrar::{unix_ms_now, RegCommand};
use super::ApiState;
use crate::bindings::{Binding, ContactToken, DeviceState, Text};
use crate::store::{DeviceRecord, WriteOp};

/// `PUT /v1/devices/{device_id}`.
#[utoipa::path(
    put,
    path = "/v1/devices/{device_id}",
    params(("device_id" = String, Path, description = "The app's device id: 1-128 of A-Z a-z 0-9 . _ : -")),
    request_body = PutDevice,
    responses(
        (status = 202, description = "Created or changed; registration started", body = PutResponse),
        (status = 200, description = "Same body again: nothing changed", body = PutResponse),
        (status = 400, description = "Malformed JSON, unknown or missing field", body = ErrorDoc),
        (status = 401, description = "Device exists and neither its secret nor its SIP credentials were given", body = ErrorDoc),
        (status = 413, description = "Body too large", body = ErrorDoc),
        (status = 422, description = "A field's value is invalid", body = ErrorDoc),
        (status = 429, description = "Rate limited", body = ErrorDoc),
        (status = 503, description = "Storage unavailable", body = ErrorDoc),
    )
)]
pub async fn put_device(
    State(st): State<Arc<ApiState>>,
    Path(device_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    check_device_id(&device_id)?;
    let req = read_json(&st, &headers, body).await?;
    req.validate()?;
    let now_ms = unix_ms_now();
    let body_hash = body_digest(&req);
    loop {
        if let Some(existing) = st.table.get(&device_id) {
            return update(&st, existing, &headers, &req, body_hash, now_ms).await;
        }
        // Reserve the id in the table first, so two first PUTs racing for one device id
        // cannot both create it: the loser is treated as a later PUT.
        let secret: [u8; 32] = rand::random();
        let mut record = new_record(&st, &device_id, &req, body_hash, now_ms)?;
        record.secret_hash = Sha256::digest(secret).to_vec();
        let binding = Arc::new(to_binding(&record)?);
        if !st.table.insert_new(binding.clone()) {
            continue;
        }
        if let Err(error) = st.batcher.write(WriteOp::Upsert(Box::new(record))).await {
            st.table.remove(&device_id);
            warn!(%error, "device not stored");
            return Err(ApiError::unavailable("storage unavailable, try again"));
        }
        submit(&st, RegCommand::Upsert(binding.clone()))?;
        info!(token = %binding.token, "device handed over");
        let doc = PutResponse {
            device_id,
            state: DeviceState::Registering.as_str().to_owned(),
            changed: true,
            device_secret: Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)),
        };
        return Ok((StatusCode::ACCEPTED, Json(doc)).into_response());
    }
}

async fn update(
    st: &ApiState,
    existing: Arc<Binding>,
    headers: &HeaderMap,
    req: &PutDevice,
    body_hash: [u8; 16],
    now_ms: u64,
) -> Result<Response, ApiError> {
    authorize(st, headers, Some(&req.sip), &existing)?;
    let device_id = existing.device_id().to_owned();
    if existing.body_hash == body_hash && same_password(st, &existing, &req.sip.password)? {
        // The same body again: only the idle clock moves, durably, since idle expiry
        // must not forget a device that did renew.
        st.batcher
            .write(WriteOp::Touch {
                device_id: device_id.clone(),
                last_put_ms: now_ms as i64,
            })
            .await
            .map_err(|_| ApiError::unavailable("storage unavailable, try again"))?;
        existing.touch(now_ms);
        let doc = PutResponse {
            device_id,
            state: existing.status().state.as_str().to_owned(),
            changed: false,
            device_secret: None,
        };
        return Ok((StatusCode::OK, Json(doc)).into_response());
    }
    let mut record = new_record(st, &device_id, req, body_hash, now_ms)?;
    // The Contact token (and so the engine's binding) and the secret survive an update.
    record.binding_id = existing.token.0 as i64;
    record.contact_token = existing.token.to_string();
    record.secret_hash = existing.secret_hash.to_vec();
    let binding = Arc::new(to_binding(&record)?);
    st.batcher
        .write(WriteOp::Upsert(Box::new(record)))
        .await
        .map_err(|_| ApiError::unavailable("storage unavailable, try again"))?;
    st.table.insert(binding.clone());
    submit(st, RegCommand::Upsert(binding.clone()))?;
    info!(token = %binding.token, "device updated");
    let doc = PutResponse {
        device_id,
        state: DeviceState::Registering.as_str().to_owned(),
        changed: true,
        device_secret: None,
    };
    Ok((StatusCode::ACCEPTED, Json(doc)).into_response())
}

/// `GET /v1/devices/{device_id}`.
#[utoipa::path(
    get,
    path = "/v1/devices/{device_id}",
    params(("device_id" = String, Path, description = "The app's device id")),
    responses(
        (status = 200, description = "Registration state", body = DeviceStatusDoc),
        (status = 401, description = "Wrong or missing device secret / SIP credentials", body = ErrorDoc),
        (status = 404, description = "Unknown device", body = ErrorDoc),
    )
)]
pub async fn get_device(
    State(st): State<Arc<ApiState>>,
    Path(device_id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<DeviceStatusDoc>, ApiError> {
    check_device_id(&device_id)?;
    let b = st.table.get(&device_id).ok_or_else(ApiError::not_found)?;
    authorize(&st, &headers, None, &b)?;
    let s = b.status();
    let at = |ms: u64| (ms > 0).then(|| rfc3339(ms));
    let failing = matches!(s.state, DeviceState::Retrying | DeviceState::Failed);
    Ok(Json(DeviceStatusDoc {
        device_id,
        state: s.state.as_str().to_owned(),
        granted_expires: s.granted_expires,
        next_refresh_at: at(s.next_at_ms).filter(|_| s.state == DeviceState::Registered),
        next_attempt_at: at(s.next_at_ms).filter(|_| s.state == DeviceState::Retrying),
        upstream_status: (failing && s.last_status != 0).then_some(s.last_status),
        reason: s.reason.describe().filter(|_| failing).map(str::to_owned),
        last_put_at: rfc3339(b.last_put_ms()),
        idle_expires_at: rfc3339(b.last_put_ms() + st.idle_expiry_ms()),
        push_active: b.has_push_token(),
    }))
}

/// `DELETE /v1/devices/{device_id}`.
#[utoipa::path(
    delete,
    path = "/v1/devices/{device_id}",
    params(("device_id" = String, Path, description = "The app's device id")),
    responses(
        (status = 204, description = "Unregistering upstream (Expires: 0); credentials forgotten"),
        (status = 401, description = "Wrong or missing device secret / SIP credentials", body = ErrorDoc),
        (status = 404, description = "Unknown device", body = ErrorDoc),
    )
)]
pub async fn delete_device(
    State(st): State<Arc<ApiState>>,
    Path(device_id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    check_device_id(&device_id)?;
    let b = st.table.get(&device_id).ok_or_else(ApiError::not_found)?;
    authorize(&st, &headers, None, &b)?;
    forget(&st, &b).await?;
    info!(token = %b.token, "device taken back");
    Ok(StatusCode::NO_CONTENT)
}

/// Unregisters upstream and forgets a device (DELETE and the idle sweep).
pub(super) async fn forget(st: &ApiState, b: &Arc<Binding>) -> Result<(), ApiError> {
    submit(st, RegCommand::Remove(b.token))?;
    st.batcher
        .write(WriteOp::Delete {
            device_id: b.device_id().to_owned(),
        })
        .await
        .map_err(|_| ApiError::unavailable("storage unavailable, try again"))?;
    // Only if it is still this binding: a PUT may have replaced it meanwhile.
    if st
        .table
        .get(b.device_id())
        .is_some_and(|cur| Arc::ptr_eq(&cur, b))
    {
        st.table.remove(b.device_id());
    }
    Ok(())
}

fn submit(st: &ApiState, cmd: RegCommand) -> Result<(), ApiError> {
    st.registrar
        .submit(cmd)
        .map_err(|_| ApiError::unavailable("registration engine unavailable"))
}

async fn read_json(st: &ApiState, headers: &HeaderMap, body: Body) -> Result<PutDevice, ApiError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().unwrap_or("").trim() == "application/json");
    if !json {
        return Err(ApiError::unsupported_media_type());
    }
    let limit = st.config.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::body_too_large(limit));
    }
    // Any error while reading is the limit or a dead connection (which hears nothing).
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::body_too_large(limit))?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::from_json(&e))
}

/// SHA-256 over the body without the password, truncated to 128 bits: enough to tell bodies
/// apart, and no fast hash of the password is ever stored (the password is compared after
/// opening its sealed copy).
fn body_digest(req: &PutDevice) -> [u8; 16] {
    let mut canon = req.clone();
    canon.sip.password.clear();
    let json = serde_json::to_vec(&canon).expect("serializing plain structs cannot fail");
    let d = Sha256::digest(json);
    let mut out = [0; 16];
    out.copy_from_slice(&d[..16]);
    out
}

fn new_record(
    st: &ApiState,
    device_id: &str,
    req: &PutDevice,
    body_hash: [u8; 16],
    now_ms: u64,
) -> Result<DeviceRecord, ApiError> {
    let token = ContactToken::random();
    let push_json = serde_json::to_vec(&req.push).expect("serializing plain structs cannot fail");
    let (kind, topic, env) = match &req.push {
        PushTarget::Apns(a) => (
            "apns",
            Some(a.bundle_id.clone()),
            Some(a.environment.clone()),
        ),
        PushTarget::Fcm(f) => ("fcm", Some(f.project_id.clone()), None),
        PushTarget::Quic(_) => ("quic", None, None),
    };
    let s = &req.sip;
    Ok(DeviceRecord {
        device_id: device_id.to_owned(),
        binding_id: token.0 as i64,
        contact_token: token.to_string(),
        username: s.username.clone(),
        auth_username: s.auth_username.clone(),
        password_enc: st.secrets.seal(s.password.as_bytes()),
        domain: s.domain.clone(),
        outbound_proxy: s.outbound_proxy.clone(),
        transport: s.transport.clone(),
        display_name: s.display_name.clone(),
        push_kind: kind.to_owned(),
        push_enc: st.secrets.seal(&push_json),
        push_topic: topic,
        push_env: env,
        app_id: req.app.id.clone(),
        app_version: req.app.version.clone(),
        expires: i64::from(req.expires()),
        secret_hash: Vec::new(),
        body_hash: body_hash.to_vec(),
        last_put_ms: now_ms as i64,
        state: DeviceState::Registering.as_str().to_owned(),
        last_status: 0,
    })
}

fn to_binding(record: &DeviceRecord) -> Result<Binding, ApiError> {
    let mut r = record.clone();
    if r.secret_hash.is_empty() {
        r.secret_hash = vec![0; 32];
    }
    Binding::from_record(&r).map_err(|_| ApiError::invalid_field("sip", "device record too large"))
}

fn same_password(st: &ApiState, b: &Binding, password: &str) -> Result<bool, ApiError> {
    let stored = st.secrets.open(b.password_sealed()).map_err(|_| {
        warn!(token = %b.token, "stored password cannot be opened: was the secret key changed?");
        ApiError::internal("stored credentials unreadable")
    })?;
    Ok(bool::from(stored.as_slice().ct_eq(password.as_bytes())))
}

/// Checks the caller's right to a device; see the module documentation.
fn authorize(
    st: &ApiState,
    headers: &HeaderMap,
    body_sip: Option<&SipAccount>,
    b: &Binding,
) -> Result<(), ApiError> {
    let denied = || {
        debug!(token = %b.token, "unauthorized call");
        ApiError::unauthorized("wrong or missing device secret or SIP credentials")
    };
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let creds_ok = |user: &str, password: &str| -> Result<bool, ApiError> {
        let user_ok = bool::from(user.as_bytes().ct_eq(b.text(Text::Username).as_bytes()));
        Ok(same_password(st, b, password)? && user_ok)
    };
    let ok = match auth.map(|a| a.split_once(' ').unwrap_or((a, ""))) {
        Some((scheme, secret)) if scheme.eq_ignore_ascii_case("bearer") => {
            let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(secret.trim())
                .map_err(|_| denied())?;
            bool::from(Sha256::digest(secret).as_slice().ct_eq(&b.secret_hash))
        }
        Some((scheme, cred)) if scheme.eq_ignore_ascii_case("basic") => {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(cred.trim())
                .map_err(|_| denied())?;
            let text = String::from_utf8(raw).map_err(|_| denied())?;
            let (user, password) = text.split_once(':').ok_or_else(denied)?;
            creds_ok(user, password)?
        }
        Some(_) => false,
        None => match body_sip {
            Some(sip) => creds_ok(&sip.username, &sip.password)?,
            None => false,
        },
    };
    if ok {
        Ok(())
    } else {
        Err(denied())
    }
}

fn rfc3339(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
