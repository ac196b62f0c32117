//! Errors of the intake API, mapped to a status code and a JSON body at the edge:
//! `{"error": code, "field": ..., "message": ...}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::model::ErrorDoc;

/// An error answer; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Machine-readable code.
    pub code: &'static str,
    /// The field to blame, if any.
    pub field: Option<String>,
    /// Human-readable explanation.
    pub message: String,
    /// Seconds to wait (429, 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            field: None,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 422: a field's value is unusable.
    pub fn invalid_field(field: &str, message: &str) -> Self {
        Self {
            field: Some(field.to_owned()),
            ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message)
        }
    }

    /// 400: the body is not JSON of the expected shape. serde's message is classified so that
    /// an unknown or missing field is named.
    pub fn from_json(e: &serde_json::Error) -> Self {
        let msg = e.to_string();
        let quoted = msg
            .split('`')
            .nth(1)
            .map(str::to_owned)
            .filter(|_| msg.matches('`').count() >= 2);
        let (code, field) = if msg.starts_with("unknown field") {
            ("unknown_field", quoted)
        } else if msg.starts_with("missing field") {
            ("missing_field", quoted)
        } else if msg.starts_with("unknown variant") {
            ("invalid_field", None)
        } else if e.is_data() {
            ("invalid_type", None)
        } else {
            ("malformed_json", None)
        };
        Self {
            field,
            ..Self::new(StatusCode::BAD_REQUEST, code, msg)
        }
    }

    /// 413.
    pub fn body_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("request body exceeds {limit} bytes"),
        )
    }

    /// 415.
    pub fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send Content-Type: application/json",
        )
    }

    /// 401.
    pub fn unauthorized(message: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 404.
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such device")
    }

    /// 429.
    pub fn rate_limited(retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests from this address",
            )
        }
    }

    /// 503: storage or the registration engine cannot take the request now.
    pub fn unavailable(message: &str) -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
        }
    }

    /// 500: stored data cannot be read (e.g. the secret key changed).
    pub fn internal(message: &str) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorDoc {
            error: self.code.to_owned(),
            field: self.field,
            message: self.message,
        };
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}
