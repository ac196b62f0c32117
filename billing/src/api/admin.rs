//! Admin API (`/admin/v1`, bearer admin token): PBX customers and accounts, products with their
//! service features, tariffs, balances and DID inventory.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, patch, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{opt_field, Admin, ApiJson, AppState};
use crate::accounts::{self, bump_contacts_version, map_unique, Kind, NewAccount, SipCredentials};
use crate::dids;
use crate::error::{ApiError, ApiResult};
use crate::selfcare::Feature;
use crate::util::E164;

/// Routes under `/admin/v1`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/v1/customers", post(create_customer))
        .route("/admin/v1/accounts", post(create_account))
        .route(
            "/admin/v1/accounts/{id}",
            patch(update_account).delete(remove_account),
        )
        .route("/admin/v1/accounts/{id}/balance", post(adjust_balance))
        .route("/admin/v1/products", post(create_product))
        .route("/admin/v1/tariffs", post(create_tariff))
        .route("/admin/v1/dids", post(import_dids))
        .route("/admin/v1/sessions/{id}", delete(revoke_sessions))
}

/// `POST /admin/v1/customers`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCustomer {
    /// Unique name.
    pub name: String,
}

async fn create_customer(
    _: Admin,
    State(st): State<AppState>,
    ApiJson(req): ApiJson<NewCustomer>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let name = opt_field(Some(req.name), "name", 200)?
        .ok_or_else(|| ApiError::invalid("required", "name", "name is required"))?;
    let row: (i64,) =
        sqlx::query_as("INSERT INTO customers (name, created_at) VALUES ($1, $2) RETURNING id")
            .bind(&name)
            .bind(st.now())
            .fetch_one(&st.db.pool)
            .await
            .map_err(|e| map_unique(e, "customer_exists", "a customer with this name exists"))?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": row.0, "name": name })),
    ))
}

/// `POST /admin/v1/accounts`: a PBX account.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPbxAccount {
    /// PBX customer id.
    pub customer_id: i64,
    /// Product name (default `default`).
    pub product: Option<String>,
    /// The DID; any free one when omitted.
    pub did: Option<String>,
    /// Real or dummy mobile number for the alias and sign-in.
    pub mobile: String,
    /// Where sign-in codes go.
    pub email: Option<String>,
    /// Owner's first name.
    pub first_name: Option<String>,
    /// Owner's last name.
    pub last_name: Option<String>,
    /// Extension number; accounts without one are not in the contact list.
    pub extension: Option<String>,
    /// Extension name.
    pub extension_name: Option<String>,
}

async fn create_account(
    _: Admin,
    State(st): State<AppState>,
    ApiJson(req): ApiJson<NewPbxAccount>,
) -> ApiResult<(StatusCode, Json<SipCredentials>)> {
    let mobile = E164::parse_field(&req.mobile, "mobile")?;
    let did = req
        .did
        .as_deref()
        .map(|d| E164::parse_field(d, "did"))
        .transpose()?;
    let email = opt_field(req.email, "email", 254)?;
    if let Some(e) = &email {
        if !e.contains('@') || e.contains(char::is_whitespace) {
            return Err(ApiError::invalid(
                "invalid_email",
                "email",
                "not an email address",
            ));
        }
    }
    let extension = opt_field(req.extension, "extension", 16)?;
    if let Some(x) = &extension {
        if !x.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ApiError::invalid(
                "invalid_extension",
                "extension",
                "extension must be digits",
            ));
        }
    }
    let product_id =
        accounts::product_id(&st.db, req.product.as_deref().unwrap_or("default")).await?;
    let new = NewAccount {
        kind: Kind::Pbx,
        customer_id: Some(req.customer_id),
        product_id,
        did,
        pricing: None,
        mobile,
        email,
        first_name: opt_field(req.first_name, "first_name", 100)?,
        last_name: opt_field(req.last_name, "last_name", 100)?,
        extension,
        extension_name: opt_field(req.extension_name, "extension_name", 100)?,
    };
    let creds =
        accounts::provision(&st.db, &st.secrets, &st.cfg.sip.domain, &new, st.now()).await?;
    Ok((StatusCode::CREATED, Json(creds)))
}

/// `PATCH /admin/v1/accounts/{id}`: absent fields are kept, empty strings clear.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountPatch {
    /// Email.
    pub email: Option<String>,
    /// First name.
    pub first_name: Option<String>,
    /// Last name.
    pub last_name: Option<String>,
    /// Extension number.
    pub extension: Option<String>,
    /// Extension name.
    pub extension_name: Option<String>,
}

async fn update_account(
    _: Admin,
    State(st): State<AppState>,
    Path(id): Path<String>,
    ApiJson(p): ApiJson<AccountPatch>,
) -> ApiResult<StatusCode> {
    let mut tx = st.db.pool.begin().await?;
    let row: Option<(Option<i64>,)> =
        sqlx::query_as("SELECT customer_id FROM accounts WHERE id = $1 AND removed = 0")
            .bind(&id)
            .fetch_optional(&mut *tx)
            .await?;
    let (customer,) = row.ok_or(ApiError::NotFound { what: "account" })?;
    let seq = match customer {
        Some(c) => bump_contacts_version(&mut tx, c).await?,
        None => 0,
    };
    let fields = [
        ("email", p.email, 254),
        ("first_name", p.first_name, 100),
        ("last_name", p.last_name, 100),
        ("extension", p.extension, 16),
        ("extension_name", p.extension_name, 100),
    ];
    for (col, value, max) in fields {
        let Some(v) = value else { continue };
        let v = opt_field(Some(v), col, max)?;
        // `col` comes from the fixed list above, never from the request.
        sqlx::query(&format!("UPDATE accounts SET {col} = $1 WHERE id = $2"))
            .bind(v)
            .bind(&id)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query("UPDATE accounts SET contact_seq = $1, updated_at = $2 WHERE id = $3")
        .bind(seq)
        .bind(st.now())
        .bind(&id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn remove_account(
    _: Admin,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let mut tx = st.db.pool.begin().await?;
    let row: Option<(Option<i64>,)> =
        sqlx::query_as("UPDATE accounts SET removed = 1, updated_at = $1 WHERE id = $2 AND removed = 0 RETURNING customer_id")
            .bind(st.now())
            .bind(&id)
            .fetch_optional(&mut *tx)
            .await?;
    let (customer,) = row.ok_or(ApiError::NotFound { what: "account" })?;
    if let Some(c) = customer {
        let seq = bump_contacts_version(&mut tx, c).await?;
        sqlx::query("UPDATE accounts SET contact_seq = $1 WHERE id = $2")
            .bind(seq)
            .bind(&id)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query("DELETE FROM sessions WHERE account_id = $1")
        .bind(&id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn revoke_sessions(
    _: Admin,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    sqlx::query("DELETE FROM sessions WHERE account_id = $1")
        .bind(&id)
        .execute(&st.db.pool)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /admin/v1/accounts/{id}/balance`: add (or with a negative amount, subtract) credit.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BalanceAdjust {
    /// Micro-units of the account's currency.
    pub amount: i64,
}

async fn adjust_balance(
    _: Admin,
    State(st): State<AppState>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<BalanceAdjust>,
) -> ApiResult<Json<serde_json::Value>> {
    let row: Option<(i64,)> =
        sqlx::query_as("UPDATE accounts SET balance = balance + $1 WHERE id = $2 AND removed = 0 RETURNING balance")
            .bind(req.amount)
            .bind(&id)
            .fetch_optional(&st.db.pool)
            .await?;
    let (balance,) = row.ok_or(ApiError::NotFound { what: "account" })?;
    Ok(Json(json!({ "account_id": id, "balance": balance })))
}

/// One feature of a product.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureSpec {
    /// Which feature.
    pub feature: Feature,
    /// Whether the product includes it.
    pub enabled: bool,
    /// "Can be edited by end users".
    pub editable: bool,
}

/// `POST /admin/v1/products`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewProduct {
    /// Unique name.
    pub name: String,
    /// Tariff name.
    pub tariff: Option<String>,
    /// Features; missing ones are disabled.
    #[serde(default)]
    pub features: Vec<FeatureSpec>,
}

async fn create_product(
    _: Admin,
    State(st): State<AppState>,
    ApiJson(req): ApiJson<NewProduct>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let name = opt_field(Some(req.name), "name", 100)?
        .ok_or_else(|| ApiError::invalid("required", "name", "name is required"))?;
    let mut tx = st.db.pool.begin().await?;
    let tariff_id: Option<i64> = match &req.tariff {
        Some(t) => {
            let row: Option<(i64,)> = sqlx::query_as("SELECT id FROM tariffs WHERE name = $1")
                .bind(t)
                .fetch_optional(&mut *tx)
                .await?;
            Some(
                row.ok_or_else(|| ApiError::invalid("unknown_tariff", "tariff", "no such tariff"))?
                    .0,
            )
        }
        None => None,
    };
    let (id,): (i64,) =
        sqlx::query_as("INSERT INTO products (name, tariff_id) VALUES ($1, $2) RETURNING id")
            .bind(&name)
            .bind(tariff_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| map_unique(e, "product_exists", "a product with this name exists"))?;
    for f in &req.features {
        sqlx::query("INSERT INTO product_features (product_id, feature, enabled, editable) VALUES ($1, $2, $3, $4)")
            .bind(id)
            .bind(f.feature.as_str())
            .bind(i64::from(f.enabled))
            .bind(i64::from(f.editable))
            .execute(&mut *tx)
            .await
            .map_err(|e| map_unique(e, "duplicate_feature", "a feature is listed twice"))?;
    }
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(json!({ "id": id, "name": name }))))
}

/// A rate by destination prefix.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateSpec {
    /// Digits the destination starts with.
    pub prefix: String,
    /// Micro-units per minute.
    pub rate_per_minute: i64,
}

/// `POST /admin/v1/tariffs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTariff {
    /// Unique name.
    pub name: String,
    /// ISO currency code.
    pub currency: String,
    /// First billing increment, seconds (the minimum charged).
    pub first_increment: i64,
    /// Following increments, seconds.
    pub next_increment: i64,
    /// Charged once per connected call, micro-units.
    #[serde(default)]
    pub connect_fee: i64,
    /// Rates.
    #[serde(default)]
    pub rates: Vec<RateSpec>,
}

async fn create_tariff(
    _: Admin,
    State(st): State<AppState>,
    ApiJson(req): ApiJson<NewTariff>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    if req.first_increment < 1 || req.next_increment < 1 {
        return Err(ApiError::invalid(
            "invalid_increment",
            "next_increment",
            "increments must be at least 1 second",
        ));
    }
    if req.connect_fee < 0 || req.rates.iter().any(|r| r.rate_per_minute < 0) {
        return Err(ApiError::invalid(
            "negative_rate",
            "rates",
            "rates and fees cannot be negative",
        ));
    }
    if req
        .rates
        .iter()
        .any(|r| !r.prefix.bytes().all(|b| b.is_ascii_digit()) || r.prefix.len() > 15)
    {
        return Err(ApiError::invalid(
            "invalid_prefix",
            "rates",
            "prefixes are up to 15 digits",
        ));
    }
    let mut tx = st.db.pool.begin().await?;
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO tariffs (name, currency, first_increment, next_increment, connect_fee) VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(&req.name)
    .bind(&req.currency)
    .bind(req.first_increment)
    .bind(req.next_increment)
    .bind(req.connect_fee)
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| map_unique(e, "tariff_exists", "a tariff with this name exists"))?;
    for r in &req.rates {
        sqlx::query(
            "INSERT INTO tariff_rates (tariff_id, prefix, rate_per_minute) VALUES ($1, $2, $3)",
        )
        .bind(id)
        .bind(&r.prefix)
        .bind(r.rate_per_minute)
        .execute(&mut *tx)
        .await
        .map_err(|e| map_unique(e, "duplicate_prefix", "a prefix is listed twice"))?;
    }
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": id, "name": req.name })),
    ))
}

/// `POST /admin/v1/dids`: the API twin of `vigil-billing did import`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DidImport {
    /// Batch name (created if new).
    pub batch: String,
    /// Pricing batch.
    pub pricing: String,
    /// Numbers, E.164.
    pub numbers: Vec<String>,
}

async fn import_dids(
    _: Admin,
    State(st): State<AppState>,
    ApiJson(req): ApiJson<DidImport>,
) -> ApiResult<Json<dids::ImportReport>> {
    if req.numbers.len() > 100_000 {
        return Err(ApiError::invalid(
            "too_many",
            "numbers",
            "at most 100000 numbers per request",
        ));
    }
    let mut numbers = Vec::with_capacity(req.numbers.len());
    for n in &req.numbers {
        numbers.push(E164::parse_field(n, "numbers")?);
    }
    let report = dids::import(&st.db, &req.batch, &req.pricing, &numbers, st.now()).await?;
    Ok(Json(report))
}
