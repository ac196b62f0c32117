//! Self-care endpoints: read settings, change forwarding, follow-me and recording where the
//! product allows end users to.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{ApiJson, AppState};
use crate::accounts::AuthAccount;
use crate::error::{ApiError, ApiResult};
use crate::selfcare::{self, Feature, FeatureState, FollowMe, Forwarding, Settings};

/// `GET /v1/self-care`.
#[derive(Debug, Serialize)]
pub struct SelfCareView {
    /// Current settings.
    #[serde(flatten)]
    pub settings: Settings,
    /// Feature flags from the product.
    pub features: std::collections::BTreeMap<&'static str, FeatureState>,
}

/// Current settings and what may be changed.
pub async fn show(acct: AuthAccount, State(st): State<AppState>) -> ApiResult<Json<SelfCareView>> {
    let settings = selfcare::load(&st.db, &acct.id).await?;
    let mut features = std::collections::BTreeMap::new();
    for f in Feature::ALL {
        features.insert(
            f.as_str(),
            selfcare::feature(&st.db, acct.product_id, f).await?,
        );
    }
    Ok(Json(SelfCareView { settings, features }))
}

async fn store(
    st: &AppState,
    acct: &AuthAccount,
    column: &'static str,
    value: String,
) -> ApiResult<()> {
    // `column` is one of three literals chosen by the callers below.
    sqlx::query(&format!(
        "UPDATE accounts SET {column} = $1, updated_at = $2 WHERE id = $3"
    ))
    .bind(value)
    .bind(st.now())
    .bind(&acct.id)
    .execute(&st.db.pool)
    .await?;
    Ok(())
}

/// `PUT /v1/self-care/forwarding`.
pub async fn put_forwarding(
    acct: AuthAccount,
    State(st): State<AppState>,
    ApiJson(rules): ApiJson<Forwarding>,
) -> ApiResult<Json<Forwarding>> {
    selfcare::require_editable(&st.db, acct.product_id, Feature::CallForwarding).await?;
    let rules = rules.normalise()?;
    let text =
        serde_json::to_string(&rules).map_err(|_| ApiError::Internal("serialise forwarding"))?;
    store(&st, &acct, "forwarding", text).await?;
    Ok(Json(rules))
}

/// `PUT /v1/self-care/follow-me`.
pub async fn put_follow_me(
    acct: AuthAccount,
    State(st): State<AppState>,
    ApiJson(list): ApiJson<FollowMe>,
) -> ApiResult<Json<FollowMe>> {
    selfcare::require_editable(&st.db, acct.product_id, Feature::FollowMe).await?;
    let list = list.normalise()?;
    let text =
        serde_json::to_string(&list).map_err(|_| ApiError::Internal("serialise follow-me"))?;
    store(&st, &acct, "follow_me", text).await?;
    Ok(Json(list))
}

/// Body of `PUT /v1/self-care/recording`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Recording {
    /// On or off.
    pub enabled: bool,
}

/// `PUT /v1/self-care/recording`.
pub async fn put_recording(
    acct: AuthAccount,
    State(st): State<AppState>,
    ApiJson(r): ApiJson<Recording>,
) -> ApiResult<Json<Recording>> {
    selfcare::require_editable(&st.db, acct.product_id, Feature::CallRecording).await?;
    sqlx::query("UPDATE accounts SET recording = $1, updated_at = $2 WHERE id = $3")
        .bind(i64::from(r.enabled))
        .bind(st.now())
        .bind(&acct.id)
        .execute(&st.db.pool)
        .await?;
    Ok(Json(r))
}
