//! Accounts: provisioning from the DID inventory, lookups, sessions and app authentication.
//!
//! An account's id is its DID (digits, no `+`); the DID is also its SIP username and caller ID.
//! Taking a DID is one `UPDATE ... WHERE number = (SELECT ... LIMIT 1 [FOR UPDATE SKIP LOCKED])
//! RETURNING` inside the transaction that inserts the account, so two sign-ups can never receive
//! the same number: on PostgreSQL the row lock with SKIP LOCKED hands concurrent transactions
//! different rows, on SQLite the single connection serialises them.
//!
//! The SIP password is kept (as PortaBilling does) because a PBX user signing in on a new phone
//! must receive the same credentials. It is stored sealed with AES-256-GCM under the service key
//! (`secrets`), bound to the account id; `ha1`/`ha1b` are stored alongside for Kamailio.

use serde::Serialize;
use sqlx::{Any, Transaction};

use crate::db::Db;
use crate::error::{ApiError, ApiResult};
use crate::secrets::Secrets;
use crate::util::{random_password, random_token, sha256_hex, sip_ha1, E164};

/// An account row for HTTP Basic sign-in: id, kind, customer, product, sealed SIP password.
type BasicAuthRow = (String, String, Option<i64>, i64, Vec<u8>);

/// Individual or PBX.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Signed up with a mobile number.
    Individual,
    /// Created by an administrator for a PBX customer.
    Pbx,
}

impl Kind {
    /// Column value.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Individual => "individual",
            Kind::Pbx => "pbx",
        }
    }
}

/// What the app needs to register. `Debug` leaves the password out.
#[derive(Clone, Serialize)]
pub struct SipCredentials {
    /// Account id (the DID digits).
    pub account_id: String,
    /// The DID in `+E.164`, also the caller ID.
    pub did: String,
    /// SIP username.
    pub username: String,
    /// SIP password.
    pub password: String,
    /// SIP domain.
    pub domain: String,
}

impl std::fmt::Debug for SipCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SipCredentials")
            .field("account_id", &self.account_id)
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

/// Fields of a new account.
#[derive(Debug, Clone)]
pub struct NewAccount {
    /// Individual or PBX.
    pub kind: Kind,
    /// PBX customer id.
    pub customer_id: Option<i64>,
    /// Product id.
    pub product_id: i64,
    /// A specific DID, or any free one (optionally of `pricing`).
    pub did: Option<E164>,
    /// Pricing filter when taking any free DID.
    pub pricing: Option<String>,
    /// Mobile number for the alias.
    pub mobile: E164,
    /// Email for PBX sign-in.
    pub email: Option<String>,
    /// Owner's first name.
    pub first_name: Option<String>,
    /// Owner's last name.
    pub last_name: Option<String>,
    /// Extension number.
    pub extension: Option<String>,
    /// Extension name.
    pub extension_name: Option<String>,
}

/// The authenticated app account.
#[derive(Debug, Clone)]
pub struct AuthAccount {
    /// Account id.
    pub id: String,
    /// Individual or PBX.
    pub kind: Kind,
    /// PBX customer.
    pub customer_id: Option<i64>,
    /// Product.
    pub product_id: i64,
}

/// Takes a DID and inserts the account in one transaction; returns its credentials.
pub async fn provision(
    db: &Db,
    secrets: &Secrets,
    domain: &str,
    new: &NewAccount,
    now: i64,
) -> ApiResult<SipCredentials> {
    let mut tx = db.pool.begin().await?;
    let did = take_did(db, &mut tx, new, now).await?;
    let password = random_password();
    let (ha1, ha1b) = sip_ha1(&did, domain, &password);
    let seq = match new.customer_id {
        Some(c) => bump_contacts_version(&mut tx, c).await?,
        None => 0,
    };
    let inserted = sqlx::query(
        "INSERT INTO accounts (id, kind, customer_id, product_id, mobile, mobile_hash, alias, email, \
         first_name, last_name, extension, extension_name, sip_username, sip_domain, sip_password_sealed, \
         ha1, ha1b, contact_seq, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $19)",
    )
    .bind(&did)
    .bind(new.kind.as_str())
    .bind(new.customer_id)
    .bind(new.product_id)
    .bind(new.mobile.digits())
    .bind(new.mobile.contact_hash())
    .bind(new.mobile.alias())
    .bind(new.email.as_deref())
    .bind(new.first_name.as_deref())
    .bind(new.last_name.as_deref())
    .bind(new.extension.as_deref())
    .bind(new.extension_name.as_deref())
    .bind(&did)
    .bind(domain)
    .bind(secrets.seal_password(&did, &password))
    .bind(&ha1)
    .bind(&ha1b)
    .bind(seq)
    .bind(now)
    .execute(&mut *tx)
    .await;
    if let Err(e) = inserted {
        return Err(map_unique(
            e,
            "alias_taken",
            "an account with this mobile alias already exists",
        ));
    }
    tx.commit().await?;
    Ok(SipCredentials {
        account_id: did.clone(),
        did: format!("+{did}"),
        username: did,
        password,
        domain: domain.to_owned(),
    })
}

async fn take_did(
    db: &Db,
    tx: &mut Transaction<'static, Any>,
    new: &NewAccount,
    now: i64,
) -> ApiResult<String> {
    if let Some(did) = &new.did {
        let row: Option<(String,)> = sqlx::query_as(
            "UPDATE dids SET account_id = number, assigned_at = $1 \
             WHERE number = $2 AND account_id IS NULL RETURNING number",
        )
        .bind(now)
        .bind(did.digits())
        .fetch_optional(&mut **tx)
        .await?;
        return row.map(|r| r.0).ok_or_else(|| {
            ApiError::conflict(
                "did_unavailable",
                "the DID is not in the inventory or already assigned",
            )
        });
    }
    let sql = format!(
        "UPDATE dids SET account_id = number, assigned_at = $1 WHERE number = \
         (SELECT number FROM dids WHERE account_id IS NULL AND ($2 = '' OR pricing = $2) \
         ORDER BY number LIMIT 1{}) RETURNING number",
        db.skip_locked()
    );
    let row: Option<(String,)> = sqlx::query_as(&sql)
        .bind(now)
        .bind(new.pricing.as_deref().unwrap_or(""))
        .fetch_optional(&mut **tx)
        .await?;
    row.map(|r| r.0).ok_or(ApiError::Unavailable {
        code: "no_free_did",
        message: "no free number is available; try again later".to_owned(),
    })
}

/// Increments a PBX customer's contact-list version and returns the new value.
pub async fn bump_contacts_version(
    tx: &mut Transaction<'static, Any>,
    customer: i64,
) -> ApiResult<i64> {
    let row: Option<(i64,)> = sqlx::query_as(
        "UPDATE customers SET contacts_version = contacts_version + 1 WHERE id = $1 RETURNING contacts_version",
    )
    .bind(customer)
    .fetch_optional(&mut **tx)
    .await?;
    row.map(|r| r.0)
        .ok_or(ApiError::NotFound { what: "customer" })
}

/// Turns a unique-constraint violation into a 409, anything else into a database error.
pub fn map_unique(e: sqlx::Error, code: &'static str, message: &str) -> ApiError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => ApiError::conflict(code, message),
        _ => ApiError::Database(e),
    }
}

/// An active account found by its mobile alias: (id, kind, email).
pub async fn find_by_mobile(
    db: &Db,
    mobile: &E164,
) -> ApiResult<Option<(String, Kind, Option<String>)>> {
    let row: Option<(String, String, Option<String>)> =
        sqlx::query_as("SELECT id, kind, email FROM accounts WHERE alias = $1 AND removed = 0")
            .bind(mobile.alias())
            .fetch_optional(&db.pool)
            .await?;
    Ok(row.map(|(id, kind, email)| {
        (
            id,
            if kind == "pbx" {
                Kind::Pbx
            } else {
                Kind::Individual
            },
            email,
        )
    }))
}

/// The stored credentials of an account, the password unsealed.
pub async fn credentials(db: &Db, secrets: &Secrets, id: &str) -> ApiResult<SipCredentials> {
    let row: Option<(String, Vec<u8>, String)> = sqlx::query_as(
        "SELECT sip_username, sip_password_sealed, sip_domain FROM accounts WHERE id = $1 AND removed = 0",
    )
    .bind(id)
    .fetch_optional(&db.pool)
    .await?;
    let (username, sealed, domain) = row.ok_or(ApiError::NotFound { what: "account" })?;
    let password = open_password(secrets, id, &sealed)?;
    Ok(SipCredentials {
        account_id: id.to_owned(),
        did: format!("+{id}"),
        username,
        password,
        domain,
    })
}

/// Issues a session token for the app (stored hashed).
pub async fn create_session(db: &Db, account: &str, now: i64) -> ApiResult<String> {
    let token = random_token(32);
    sqlx::query("INSERT INTO sessions (token_hash, account_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
        .bind(sha256_hex(&token))
        .bind(account)
        .bind(now)
        .bind(now + 180 * 86_400)
        .execute(&db.pool)
        .await?;
    Ok(token)
}

/// Authenticates an app request: `Authorization: Bearer <session>` or `Basic user:sip-password`.
pub async fn authenticate(
    db: &Db,
    secrets: &Secrets,
    authorization: Option<&str>,
    now: i64,
) -> ApiResult<AuthAccount> {
    const COLS: &str = "a.id, a.kind, a.customer_id, a.product_id";
    let header = authorization.ok_or(ApiError::Unauthorized)?;
    let row: Option<(String, String, Option<i64>, i64)> = if let Some(token) =
        header.strip_prefix("Bearer ")
    {
        sqlx::query_as(&format!(
            "SELECT {COLS} FROM sessions s JOIN accounts a ON a.id = s.account_id \
             WHERE s.token_hash = $1 AND s.expires_at > $2 AND a.removed = 0"
        ))
        .bind(sha256_hex(token.trim()))
        .bind(now)
        .fetch_optional(&db.pool)
        .await?
    } else if let Some(b64) = header.strip_prefix("Basic ") {
        use base64::Engine;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|_| ApiError::Unauthorized)?;
        let text = String::from_utf8(decoded).map_err(|_| ApiError::Unauthorized)?;
        let (user, pass) = text.split_once(':').ok_or(ApiError::Unauthorized)?;
        let found: Option<BasicAuthRow> = sqlx::query_as(&format!(
            "SELECT {COLS}, a.sip_password_sealed FROM accounts a WHERE a.sip_username = $1 AND a.removed = 0"
        ))
        .bind(user)
        .fetch_optional(&db.pool)
        .await?;
        match found {
            Some((id, kind, c, p, sealed)) => {
                let stored = open_password(secrets, &id, &sealed)?;
                crate::util::constant_time_eq(stored.as_bytes(), pass.as_bytes())
                    .then_some((id, kind, c, p))
            }
            None => None,
        }
    } else {
        None
    };
    let (id, kind, customer_id, product_id) = row.ok_or(ApiError::Unauthorized)?;
    let kind = if kind == "pbx" {
        Kind::Pbx
    } else {
        Kind::Individual
    };
    Ok(AuthAccount {
        id,
        kind,
        customer_id,
        product_id,
    })
}

/// Unseals a stored password. Failure means the row was sealed under another key or damaged:
/// an operator problem, logged without the value and answered with a bare 500.
fn open_password(secrets: &Secrets, id: &str, sealed: &[u8]) -> ApiResult<String> {
    secrets.open_password(id, sealed).map_err(|_| {
        tracing::error!(
            "a stored SIP password does not open with the configured secret key (wrong key or damaged row)"
        );
        ApiError::Internal("unsealing a SIP password")
    })
}

/// The id of a product by name.
pub async fn product_id(db: &Db, name: &str) -> ApiResult<i64> {
    let row: Option<(i64,)> = sqlx::query_as("SELECT id FROM products WHERE name = $1")
        .bind(name)
        .fetch_optional(&db.pool)
        .await?;
    row.map(|r| r.0)
        .ok_or(ApiError::NotFound { what: "product" })
}
