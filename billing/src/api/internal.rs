//! Internal API for the SIP switch (`/internal/v1`, bearer internal token): routing lookup,
//! CDR ingestion with rating, and recording upload.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::{ApiJson, ApiQuery, AppState, Internal};
use crate::error::{ApiError, ApiResult};
use crate::rating::{self, CdrIn, Rated};
use crate::selfcare::{self, Feature, FollowMe, Forwarding};
use crate::util::{random_token, E164};

/// Largest accepted recording.
pub const MAX_RECORDING_BYTES: usize = 64 * 1024 * 1024;

/// Routes under `/internal/v1`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/internal/v1/route/{number}", get(route))
        .route("/internal/v1/cdrs", post(ingest))
        .route(
            "/internal/v1/recordings",
            put(upload_recording).layer(DefaultBodyLimit::max(MAX_RECORDING_BYTES)),
        )
}

type RouteRow = (String, String, String, String, String, i64, i64, i64);

/// `GET /internal/v1/route/{number}`: is this number (a DID or an aliased mobile) an app user,
/// and how should calls to it be routed. Features the product lacks are reported as off.
async fn route(
    _: Internal,
    State(st): State<AppState>,
    Path(number): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let n = E164::parse_field(&number, "number")?;
    let row: Option<RouteRow> = sqlx::query_as(
        "SELECT id, sip_username, mobile, forwarding, follow_me, recording, product_id, balance FROM accounts \
         WHERE removed = 0 AND (id = $1 OR alias = $2) ORDER BY CASE WHEN id = $1 THEN 0 ELSE 1 END LIMIT 1",
    )
    .bind(n.digits())
    .bind(n.alias())
    .fetch_optional(&st.db.pool)
    .await?;
    let Some((id, username, mobile, fwd, fm, rec, product, balance)) = row else {
        return Ok(Json(json!({ "app_user": false })));
    };
    let on = |s: selfcare::FeatureState| s.enabled;
    let fwd_on = on(selfcare::feature(&st.db, product, Feature::CallForwarding).await?);
    let fm_on = on(selfcare::feature(&st.db, product, Feature::FollowMe).await?);
    let rec_on = on(selfcare::feature(&st.db, product, Feature::CallRecording).await?);
    let forwarding: Forwarding = if fwd_on {
        serde_json::from_str(&fwd).unwrap_or_default()
    } else {
        Forwarding::default()
    };
    let follow_me: FollowMe = if fm_on {
        serde_json::from_str(&fm).unwrap_or_default()
    } else {
        FollowMe::default()
    };
    Ok(Json(json!({
        "app_user": true,
        "account_id": id,
        "sip_username": username,
        "sip_domain": st.cfg.sip.domain,
        "caller_id": format!("+{id}"),
        "mobile": format!("+{mobile}"),
        "forwarding": forwarding,
        "follow_me": follow_me,
        "recording": rec_on && rec != 0,
        "balance": balance,
    })))
}

/// `POST /internal/v1/cdrs`.
async fn ingest(
    _: Internal,
    State(st): State<AppState>,
    ApiJson(cdr): ApiJson<CdrIn>,
) -> ApiResult<(StatusCode, Json<Rated>)> {
    let rated = rating::ingest(&st.db, &cdr).await?;
    let status = if rated.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(rated)))
}

/// Query of `PUT /internal/v1/recordings`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordingQuery {
    account: String,
    call_id: String,
}

async fn upload_recording(
    _: Internal,
    State(st): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<RecordingQuery>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let account = E164::parse_field(&q.account, "account")?;
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.starts_with("audio/"))
        .ok_or_else(|| ApiError::bad_request("invalid_content_type", "recordings must be audio/*"))?
        .to_owned();
    if body.is_empty() {
        return Err(ApiError::bad_request("empty_body", "empty recording"));
    }
    let id = random_token(12);
    sqlx::query(
        "INSERT INTO recordings (id, account_id, call_id, content_type, size, created_at, data) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&id)
    .bind(account.digits())
    .bind(&q.call_id)
    .bind(&ct)
    .bind(body.len() as i64)
    .bind(st.now())
    .bind(body.to_vec())
    .execute(&st.db.pool)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(d) if d.is_foreign_key_violation() => {
            ApiError::NotFound { what: "account" }
        }
        _ => ApiError::Database(e),
    })?;
    Ok((StatusCode::CREATED, Json(json!({ "id": id }))))
}
