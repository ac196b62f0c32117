//! The HTTP edge: shared state, the router, extractors that turn bad input into JSON 4xx, and
//! the authentication guards for the app, admin and internal APIs.

pub mod admin;
pub mod app;
pub mod internal;
pub mod openapi;
pub mod selfcare;
pub mod signup;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::routing::{get, post, put};
use axum::Router;
use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::accounts::{self, AuthAccount};
use crate::config::Config;
use crate::db::{Clock, Db};
use crate::error::ApiError;
use crate::notify::{Email, Sms};
use crate::secrets::Secrets;
use crate::util::constant_time_eq;

/// Everything a handler needs.
#[derive(Debug, Clone)]
pub struct AppState(pub Arc<Inner>);

/// The state behind the `Arc`.
#[derive(Debug)]
pub struct Inner {
    /// Configuration.
    pub cfg: Config,
    /// Database.
    pub db: Db,
    /// The keys: MACs of codes and CAPTCHA answers, sealing of SIP passwords.
    pub secrets: Secrets,
    /// SMS provider.
    pub sms: Sms,
    /// Email provider.
    pub email: Email,
    /// Clock (adjustable in tests).
    pub clock: Clock,
    /// Serialised full contact lists per PBX customer, keyed by contact-list version.
    pub contacts_cache: Mutex<HashMap<i64, Arc<CachedContacts>>>,
}

/// A PBX customer's contact list at one version: the serialised full list, and the entries in
/// list order, each with its own JSON and search text so that a change re-serialises only the
/// entries it touched (see `app::snapshot`).
#[derive(Debug)]
pub struct CachedContacts {
    /// Version it was built at.
    pub version: i64,
    /// JSON body of the full list.
    pub body: Bytes,
    /// The entries, ordered by (extension, id).
    pub entries: Vec<Arc<app::CachedEntry>>,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// Current time in Unix seconds.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }
}

/// The public router (sign-up, app, admin, and the internal API unless it has its own listener).
pub fn router(state: AppState) -> Router {
    let mut r = Router::new()
        .route("/openapi.json", get(openapi::handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/captcha", get(signup::captcha))
        .route("/v1/signup", post(signup::start_signup))
        .route("/v1/signup/verify", post(signup::verify_signup))
        .route("/v1/signin", post(signup::start_signin))
        .route("/v1/signin/verify", post(signup::verify_signin))
        .route("/v1/contacts", get(app::contacts))
        .route("/v1/smart-contacts", post(app::smart_contacts))
        .route("/v1/balance", get(app::balance))
        .route("/v1/calls", get(app::calls))
        .route("/v1/recordings/{id}", get(app::recording_meta))
        .route("/v1/recordings/{id}/audio", get(app::recording_audio))
        .route("/v1/self-care", get(selfcare::show))
        .route("/v1/self-care/forwarding", put(selfcare::put_forwarding))
        .route("/v1/self-care/follow-me", put(selfcare::put_follow_me))
        .route("/v1/self-care/recording", put(selfcare::put_recording))
        .merge(admin::router());
    if state.cfg.internal_listen.is_none() {
        r = r.merge(internal::router());
    }
    finish(r, state)
}

/// The internal router alone, for a separate listener.
pub fn internal_router(state: AppState) -> Router {
    finish(internal::router(), state)
}

fn finish(r: Router<AppState>, state: AppState) -> Router {
    r.fallback(|| async { ApiError::NotFound { what: "route" } })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
}

/// `axum::Json` whose rejections are our JSON errors.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::UnsupportedMediaType),
            Err(JsonRejection::BytesRejection(r))
                if r.status() == http::StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Err(ApiError::PayloadTooLarge)
            }
            Err(JsonRejection::JsonSyntaxError(e)) => {
                Err(ApiError::bad_request("invalid_json", e.body_text()))
            }
            Err(e) => Err(ApiError::bad_request("invalid_body", e.body_text())),
        }
    }
}

/// `axum::extract::Query` whose rejections are our JSON errors.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e: QueryRejection| ApiError::bad_request("invalid_query", e.body_text()))
    }
}

/// The client's address for throttling: the peer address, or the first `X-Forwarded-For` hop
/// when `trust_forwarded_for` is set.
#[derive(Debug, Clone)]
pub struct ClientAddr(pub String);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if state.cfg.trust_forwarded_for {
            if let Some(first) = parts
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
            {
                return Ok(ClientAddr(first.trim().to_owned()));
            }
        }
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string());
        Ok(ClientAddr(peer.unwrap_or_else(|| "unknown".to_owned())))
    }
}

fn authorization(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

impl FromRequestParts<AppState> for AuthAccount {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        accounts::authenticate(&state.db, &state.secrets, authorization(parts), state.now()).await
    }
}

/// Proof that the request carried the admin token.
#[derive(Debug)]
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        check_token(authorization(parts), state.cfg.admin_token.as_deref()).map(|_| Admin)
    }
}

/// Proof that the request carried the internal (SIP switch) token.
#[derive(Debug)]
pub struct Internal;

impl FromRequestParts<AppState> for Internal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        check_token(authorization(parts), state.cfg.internal_token.as_deref()).map(|_| Internal)
    }
}

fn check_token(header: Option<&str>, expected: Option<&str>) -> Result<(), ApiError> {
    let Some(expected) = expected else {
        return Err(ApiError::forbidden(
            "api_disabled",
            "this API is disabled: no token is configured",
        ));
    };
    let given = header
        .and_then(|h| h.strip_prefix("Bearer "))
        .ok_or(ApiError::Unauthorized)?;
    if constant_time_eq(given.trim().as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

/// Trims an optional string field, turning blanks into `None` and bounding its length.
pub fn opt_field(
    v: Option<String>,
    field: &'static str,
    max: usize,
) -> Result<Option<String>, ApiError> {
    match v.map(|s| s.trim().to_owned()) {
        Some(s) if s.is_empty() => Ok(None),
        Some(s) if s.chars().count() > max => Err(ApiError::invalid(
            "too_long",
            field,
            format!("at most {max} characters"),
        )),
        other => Ok(other),
    }
}
