//! Sign-up (individuals, OTP by SMS) and sign-in (PBX users, OTP by email), and the CAPTCHA.
//!
//! Responses to the start requests are identical whether or not the number belongs to an
//! account, and every OTP failure is the same `otp_invalid`, so neither endpoint tells a caller
//! which numbers are registered.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::{ApiJson, AppState, ClientAddr};
use crate::accounts::{self, Kind, NewAccount, SipCredentials};
use crate::captcha;
use crate::error::{ApiError, ApiResult};
use crate::otp::{self, Purpose};
use crate::util::E164;

/// `GET /v1/captcha`: a PNG; its id is in the `X-Captcha-Id` header.
pub async fn captcha(State(st): State<AppState>, client: ClientAddr) -> ApiResult<Response> {
    let now = st.now();
    otp::rate_limit(
        &st.db,
        "captcha_client",
        &client.0,
        now,
        3600,
        st.cfg.captcha.per_client_per_hour,
    )
    .await?;
    let issued = captcha::issue(&st.db, st.secrets.mac_key(), now, st.cfg.captcha.ttl_secs).await?;
    let mut resp = issued.png.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/png"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let id =
        HeaderValue::from_str(&issued.id).map_err(|_| ApiError::Internal("captcha id header"))?;
    h.insert("x-captcha-id", id);
    Ok(resp)
}

/// Body of `POST /v1/signup` and `POST /v1/signin`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    /// Mobile number, E.164.
    pub mobile: String,
    /// From `X-Captcha-Id`.
    #[serde(default)]
    pub captcha_id: String,
    /// The digits in the image.
    pub captcha_answer: String,
}

/// Answer to a start request.
#[derive(Debug, Serialize)]
pub struct StartResponse {
    /// Always `code_sent` (for sign-in: sent if the number has an account).
    pub status: &'static str,
    /// Seconds the code stays valid.
    pub expires_in: u64,
}

/// Body of the verify requests.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// The same mobile number.
    pub mobile: String,
    /// The 6-digit code.
    pub code: String,
}

/// Everything the app needs after sign-up or sign-in.
#[derive(Debug, Serialize)]
pub struct ProvisionResponse {
    /// SIP account.
    #[serde(flatten)]
    pub sip: SipCredentials,
    /// Caller ID (the DID).
    pub caller_id: String,
    /// Outbound proxy.
    pub proxy: String,
    /// Where the app hands its credentials and push tokens when it goes to the background.
    pub gateway_intake_url: String,
    /// Bearer token for the app APIs.
    pub session_token: String,
    /// Whether this request created the account.
    pub created: bool,
}

/// Issues a one-time code for `mobile` and renders the message that carries it (the same
/// template for SMS and email).
async fn issue_code(st: &AppState, now: i64, mobile: &E164, purpose: Purpose) -> ApiResult<String> {
    let code = otp::issue(
        &st.db,
        st.secrets.mac_key(),
        &st.cfg.otp,
        now,
        mobile,
        purpose,
    )
    .await?;
    Ok(st.cfg.sms.text_template.replace("{code}", &code))
}

/// Shared first half of sign-up and sign-in: number, CAPTCHA, throttles.
async fn start(st: &AppState, client: &ClientAddr, req: StartRequest) -> ApiResult<(E164, i64)> {
    let mobile = E164::parse_field(&req.mobile, "mobile")?;
    let now = st.now();
    let test_answer = st
        .cfg
        .dev
        .as_ref()
        .and_then(|d| d.captcha_answer.as_deref());
    captcha::verify(
        &st.db,
        st.secrets.mac_key(),
        now,
        &req.captcha_id,
        &req.captcha_answer,
        test_answer,
    )
    .await?;
    otp::throttle_send(&st.db, &st.cfg.otp, now, &mobile, &client.0).await?;
    Ok((mobile, now))
}

fn accepted(st: &AppState) -> Response {
    (
        StatusCode::ACCEPTED,
        axum::Json(StartResponse {
            status: "code_sent",
            expires_in: st.cfg.otp.ttl_secs,
        }),
    )
        .into_response()
}

/// `POST /v1/signup`: CAPTCHA, throttles, then a code by SMS.
pub async fn start_signup(
    State(st): State<AppState>,
    client: ClientAddr,
    ApiJson(req): ApiJson<StartRequest>,
) -> ApiResult<Response> {
    if !st.cfg.signup.enabled {
        return Err(ApiError::forbidden(
            "signup_closed",
            "individual sign-up is closed",
        ));
    }
    let (mobile, now) = start(&st, &client, req).await?;
    let text = issue_code(&st, now, &mobile, Purpose::Signup).await?;
    if let Err(e) = st.sms.send(&mobile, &text).await {
        // Every number gets an SMS, so reporting the failure reveals nothing about accounts.
        tracing::warn!(to = %mobile, error = %e, "SMS delivery failed");
        return Err(ApiError::Unavailable {
            code: "sms_unavailable",
            message: "the code could not be sent; try again later".to_owned(),
        });
    }
    tracing::info!(to = %mobile, "sign-up code sent");
    Ok(accepted(&st))
}

/// `POST /v1/signup/verify`: checks the code and provisions (or returns) the account.
pub async fn verify_signup(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<VerifyRequest>,
) -> ApiResult<axum::Json<ProvisionResponse>> {
    let mobile = E164::parse_field(&req.mobile, "mobile")?;
    let now = st.now();
    otp::verify(
        &st.db,
        st.secrets.mac_key(),
        &st.cfg.otp,
        now,
        &mobile,
        Purpose::Signup,
        &req.code,
    )
    .await?;
    // The caller has now proved they own the number, so it is safe to say what exists.
    let (creds, created) = match accounts::find_by_mobile(&st.db, &mobile).await? {
        Some((id, Kind::Individual, _)) => (
            accounts::credentials(&st.db, &st.secrets, &id).await?,
            false,
        ),
        Some((_, Kind::Pbx, _)) => {
            return Err(ApiError::conflict(
                "pbx_account",
                "this number belongs to a PBX account; use sign-in",
            ))
        }
        None => {
            let product_id = accounts::product_id(&st.db, &st.cfg.signup.product).await?;
            let new = NewAccount {
                kind: Kind::Individual,
                customer_id: None,
                product_id,
                did: None,
                pricing: st.cfg.signup.did_pricing.clone(),
                mobile: mobile.clone(),
                email: None,
                first_name: None,
                last_name: None,
                extension: None,
                extension_name: None,
            };
            let creds =
                accounts::provision(&st.db, &st.secrets, &st.cfg.sip.domain, &new, now).await?;
            tracing::info!(mobile = %mobile, "individual account provisioned");
            (creds, true)
        }
    };
    respond(&st, creds, created, now).await
}

async fn respond(
    st: &AppState,
    sip: SipCredentials,
    created: bool,
    now: i64,
) -> ApiResult<axum::Json<ProvisionResponse>> {
    let session_token = accounts::create_session(&st.db, &sip.account_id, now).await?;
    Ok(axum::Json(ProvisionResponse {
        caller_id: sip.did.clone(),
        sip,
        proxy: st.cfg.sip.proxy.clone(),
        gateway_intake_url: st.cfg.gateway_intake_url.clone(),
        session_token,
        created,
    }))
}

/// `POST /v1/signin`: PBX users; a code by email if the number is a PBX alias with an email.
pub async fn start_signin(
    State(st): State<AppState>,
    client: ClientAddr,
    ApiJson(req): ApiJson<StartRequest>,
) -> ApiResult<Response> {
    let (mobile, now) = start(&st, &client, req).await?;
    if let Some((_, Kind::Pbx, Some(email))) = accounts::find_by_mobile(&st.db, &mobile).await? {
        let text = issue_code(&st, now, &mobile, Purpose::PbxSignin).await?;
        // Failures are logged, not reported: reporting would reveal that the number exists.
        match st.email.send(&email, &text).await {
            Ok(()) => tracing::info!(mobile = %mobile, "sign-in code emailed"),
            Err(e) => tracing::warn!(mobile = %mobile, error = %e, "sign-in email failed"),
        }
    }
    Ok(accepted(&st))
}

/// `POST /v1/signin/verify`: checks the emailed code and returns the PBX account's credentials.
pub async fn verify_signin(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<VerifyRequest>,
) -> ApiResult<axum::Json<ProvisionResponse>> {
    let mobile = E164::parse_field(&req.mobile, "mobile")?;
    let now = st.now();
    otp::verify(
        &st.db,
        st.secrets.mac_key(),
        &st.cfg.otp,
        now,
        &mobile,
        Purpose::PbxSignin,
        &req.code,
    )
    .await?;
    let Some((id, Kind::Pbx, _)) = accounts::find_by_mobile(&st.db, &mobile).await? else {
        // The account was removed between the code and its use.
        return Err(ApiError::Otp);
    };
    let creds = accounts::credentials(&st.db, &st.secrets, &id).await?;
    respond(&st, creds, false, now).await
}
