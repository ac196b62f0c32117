//! The service's error type and its mapping to HTTP at the edge.
//!
//! Every handler returns `Result<_, ApiError>`; `IntoResponse` turns the error into a status code
//! and a JSON body `{"error": code, "field": ..., "message": ...}`. Database and other internal
//! failures are logged here and reported to the client as a bare 500 so that no SQL, path or
//! secret leaks through an error message.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// What went wrong while serving a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The request was malformed or a field failed validation.
    #[error("{message}")]
    Invalid {
        /// Stable, machine-readable code such as `invalid_e164`.
        code: &'static str,
        /// The offending field, when one can be named.
        field: Option<&'static str>,
        /// Human-readable explanation.
        message: String,
    },
    /// The CAPTCHA answer was wrong, expired or already used.
    #[error("the CAPTCHA answer is wrong, expired or already used")]
    Captcha,
    /// The one-time password did not verify. Deliberately says nothing about why (unknown number,
    /// wrong code, expired, or locked out), so that it cannot be used to probe for accounts.
    #[error("the code is invalid or has expired")]
    Otp,
    /// No or wrong credentials.
    #[error("authentication required")]
    Unauthorized,
    /// Authenticated, but not allowed to do this.
    #[error("{message}")]
    Forbidden {
        /// Stable code such as `feature_not_editable`.
        code: &'static str,
        /// Why, for the app to show.
        message: String,
    },
    /// The named resource does not exist.
    #[error("{what} not found")]
    NotFound {
        /// What was looked up.
        what: &'static str,
    },
    /// The request conflicts with the current state (duplicate, number taken...).
    #[error("{message}")]
    Conflict {
        /// Stable code such as `did_taken`.
        code: &'static str,
        /// Explanation.
        message: String,
    },
    /// A rate limit or throttle was hit.
    #[error("too many requests; retry later")]
    TooManyRequests {
        /// Seconds after which a retry may succeed.
        retry_after_secs: u64,
    },
    /// A dependency the request needs is not configured or failed (SMS provider, no free DIDs).
    #[error("{message}")]
    Unavailable {
        /// Stable code such as `no_free_did`.
        code: &'static str,
        /// Explanation.
        message: String,
    },
    /// The body is not JSON (wrong or missing Content-Type).
    #[error("expected Content-Type: application/json")]
    UnsupportedMediaType,
    /// The body exceeds the limit for this route.
    #[error("request body too large")]
    PayloadTooLarge,
    /// No such route method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A database failure; details are logged, never sent.
    #[error("database error")]
    Database(#[from] sqlx::Error),
    /// Some other internal failure; the static text names the step, details are logged.
    #[error("internal error: {0}")]
    Internal(&'static str),
}

impl ApiError {
    /// A validation error on one field.
    pub fn invalid(code: &'static str, field: &'static str, message: impl Into<String>) -> Self {
        ApiError::Invalid {
            code,
            field: Some(field),
            message: message.into(),
        }
    }

    /// A validation error not tied to one field.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Invalid {
            code,
            field: None,
            message: message.into(),
        }
    }

    /// A 403 with a reason.
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Forbidden {
            code,
            message: message.into(),
        }
    }

    /// A 409 with a reason.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Conflict {
            code,
            message: message.into(),
        }
    }

    /// The HTTP status this error maps to.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Invalid { .. } | ApiError::Captcha | ApiError::Otp => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Database(_) | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Invalid { code, .. }
            | ApiError::Forbidden { code, .. }
            | ApiError::Conflict { code, .. }
            | ApiError::Unavailable { code, .. } => code,
            ApiError::Captcha => "captcha_invalid",
            ApiError::Otp => "otp_invalid",
            ApiError::Unauthorized => "unauthorized",
            ApiError::NotFound { .. } => "not_found",
            ApiError::TooManyRequests { .. } => "rate_limited",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Database(_) | ApiError::Internal(_) => "internal",
        }
    }
}

/// The JSON error body.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    /// Stable code.
    pub error: &'static str,
    /// Offending field, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'static str>,
    /// Human-readable message.
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            ApiError::Database(e) => {
                tracing::error!(error = %e, "database error");
                "internal error".to_owned()
            }
            ApiError::Internal(step) => {
                tracing::error!(step, "internal error");
                "internal error".to_owned()
            }
            other => other.to_string(),
        };
        let field = match &self {
            ApiError::Invalid { field, .. } => *field,
            _ => None,
        };
        let body = ErrorBody {
            error: self.code(),
            field,
            message,
        };
        let mut resp = (status, axum::Json(body)).into_response();
        if let ApiError::TooManyRequests { retry_after_secs } = self {
            if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                resp.headers_mut().insert(http::header::RETRY_AFTER, v);
            }
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer, Basic realm=\"vigil-billing\""),
            );
        }
        resp
    }
}

/// Shorthand for handler results.
pub type ApiResult<T> = Result<T, ApiError>;
