//! One-time passwords and the rate limiter that throttles them.
//!
//! A code is 6 digits, valid for `otp.ttl_secs`, stored only as an HMAC under the server key,
//! and void after `otp.max_attempts` wrong guesses. The attempt counter is incremented in the same
//! statement that reads the MAC, so concurrent guesses cannot exceed the limit; a right code is
//! consumed by a conditional delete, so it works once.

use crate::config::OtpConfig;
use crate::db::Db;
use crate::error::{ApiError, ApiResult};
use crate::util::{constant_time_eq, hmac_hex, random_otp, E164};

/// What a code is for; a sign-up code cannot be used to sign in to a PBX account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Individual sign-up, delivered by SMS.
    Signup,
    /// PBX sign-in, delivered by email.
    PbxSignin,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::Signup => "signup",
            Purpose::PbxSignin => "pbx",
        }
    }
}

/// Records one event under `scope`/`key` and fails if more than `limit` fall in the window.
///
/// Insert-then-count: concurrent callers each see at least their own event, so the limit can
/// only be enforced early, never late. Rejected attempts count too, so hammering keeps a client
/// throttled until it stops.
pub async fn rate_limit(
    db: &Db,
    scope: &str,
    key: &str,
    now: i64,
    window_secs: u64,
    limit: u32,
) -> ApiResult<()> {
    sqlx::query("INSERT INTO rate_events (scope, rkey, at) VALUES ($1, $2, $3)")
        .bind(scope)
        .bind(key)
        .bind(now)
        .execute(&db.pool)
        .await?;
    let (count,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM rate_events WHERE scope = $1 AND rkey = $2 AND at > $3",
    )
    .bind(scope)
    .bind(key)
    .bind(now - window_secs as i64)
    .fetch_one(&db.pool)
    .await?;
    if count > i64::from(limit) {
        return Err(ApiError::TooManyRequests {
            retry_after_secs: window_secs,
        });
    }
    Ok(())
}

/// Applies the per-number and per-client throttles for sending a code.
pub async fn throttle_send(
    db: &Db,
    cfg: &OtpConfig,
    now: i64,
    mobile: &E164,
    client: &str,
) -> ApiResult<()> {
    rate_limit(db, "otp_client", client, now, 3600, cfg.per_client_per_hour).await?;
    rate_limit(
        db,
        "otp_number_burst",
        mobile.digits(),
        now,
        cfg.resend_interval_secs,
        1,
    )
    .await?;
    rate_limit(
        db,
        "otp_number",
        mobile.digits(),
        now,
        3600,
        cfg.per_number_per_hour,
    )
    .await
}

/// Creates (or replaces) the code for `mobile` and returns it for delivery.
pub async fn issue(
    db: &Db,
    key: &[u8],
    cfg: &OtpConfig,
    now: i64,
    mobile: &E164,
    purpose: Purpose,
) -> ApiResult<String> {
    let code = random_otp();
    let mac = hmac_hex(key, &["otp", purpose.as_str(), mobile.digits(), &code]);
    sqlx::query(
        "INSERT INTO otps (mobile, purpose, code_mac, expires_at, attempts) VALUES ($1, $2, $3, $4, 0) \
         ON CONFLICT (mobile, purpose) DO UPDATE SET code_mac = excluded.code_mac, \
         expires_at = excluded.expires_at, attempts = 0",
    )
    .bind(mobile.digits())
    .bind(purpose.as_str())
    .bind(&mac)
    .bind(now + cfg.ttl_secs as i64)
    .execute(&db.pool)
    .await?;
    Ok(code)
}

/// Checks `code`; on success the code is consumed. Every failure is the same `ApiError::Otp`.
pub async fn verify(
    db: &Db,
    key: &[u8],
    cfg: &OtpConfig,
    now: i64,
    mobile: &E164,
    purpose: Purpose,
    code: &str,
) -> ApiResult<()> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        // Still counts as an attempt: malformed guesses must not be free.
        let _ = bump(db, now, mobile, purpose, cfg.max_attempts).await?;
        return Err(ApiError::Otp);
    }
    let Some(stored) = bump(db, now, mobile, purpose, cfg.max_attempts).await? else {
        return Err(ApiError::Otp);
    };
    let given = hmac_hex(key, &["otp", purpose.as_str(), mobile.digits(), code]);
    if !constant_time_eq(stored.as_bytes(), given.as_bytes()) {
        return Err(ApiError::Otp);
    }
    let done = sqlx::query("DELETE FROM otps WHERE mobile = $1 AND purpose = $2 AND code_mac = $3")
        .bind(mobile.digits())
        .bind(purpose.as_str())
        .bind(&stored)
        .execute(&db.pool)
        .await?;
    if done.rows_affected() == 1 {
        Ok(())
    } else {
        Err(ApiError::Otp)
    }
}

/// Counts an attempt against a live code and returns its MAC, or `None` if there is no live
/// code with attempts left.
async fn bump(
    db: &Db,
    now: i64,
    mobile: &E164,
    purpose: Purpose,
    max_attempts: u32,
) -> ApiResult<Option<String>> {
    let row: Option<(String,)> = sqlx::query_as(
        "UPDATE otps SET attempts = attempts + 1 \
         WHERE mobile = $1 AND purpose = $2 AND attempts < $3 AND expires_at >= $4 \
         RETURNING code_mac",
    )
    .bind(mobile.digits())
    .bind(purpose.as_str())
    .bind(i64::from(max_attempts))
    .bind(now)
    .fetch_optional(&db.pool)
    .await?;
    Ok(row.map(|r| r.0))
}

/// Deletes expired codes, CAPTCHAs, sessions and old rate events; run periodically.
pub async fn housekeeping(db: &Db, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM otps WHERE expires_at < $1")
        .bind(now)
        .execute(&db.pool)
        .await?;
    sqlx::query("DELETE FROM captchas WHERE expires_at < $1")
        .bind(now)
        .execute(&db.pool)
        .await?;
    sqlx::query("DELETE FROM sessions WHERE expires_at < $1")
        .bind(now)
        .execute(&db.pool)
        .await?;
    sqlx::query("DELETE FROM rate_events WHERE at < $1")
        .bind(now - 86_400)
        .execute(&db.pool)
        .await?;
    Ok(())
}
