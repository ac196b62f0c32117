//! Call rating: billing increments, per-minute rates by longest destination prefix, and CDR
//! ingestion with the balance update.
//!
//! Money is integer micro-units of the tariff currency; all arithmetic is exact and rounds up,
//! in the operator's favour, as switch billing does. App-to-app calls are free; off-net calls are
//! charged to the caller and forwarded calls to the account whose DID was forwarded.

use serde::{Deserialize, Serialize};

use crate::db::Db;
use crate::error::{ApiError, ApiResult};
use crate::util::E164;

/// Seconds billed for a call of `duration` seconds: nothing for an unanswered call, at least
/// `first`, then whole `next`-second increments.
pub fn billed_seconds(duration: i64, first: i64, next: i64) -> i64 {
    if duration <= 0 {
        return 0;
    }
    let (first, next) = (first.max(1), next.max(1));
    if duration <= first {
        return first;
    }
    let rest = duration - first;
    first + (rest + next - 1) / next * next
}

/// The charge for `billed` seconds at `rate_per_minute`, plus the connect fee, rounded up.
pub fn charge(billed: i64, rate_per_minute: i64, connect_fee: i64) -> i64 {
    if billed <= 0 {
        return 0;
    }
    let cost = (i128::from(rate_per_minute) * i128::from(billed) + 59) / 60;
    connect_fee.saturating_add(i64::try_from(cost).unwrap_or(i64::MAX))
}

/// What kind of call a CDR describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallKind {
    /// Between two app users: free.
    App,
    /// To or from the PSTN.
    Offnet,
    /// Forwarded from the DID to another number (e.g. the mobile).
    Forwarded,
}

impl CallKind {
    /// Column value.
    pub fn as_str(self) -> &'static str {
        match self {
            CallKind::App => "app",
            CallKind::Offnet => "offnet",
            CallKind::Forwarded => "forwarded",
        }
    }
}

/// Direction from the account's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// The account called out.
    Out,
    /// The account was called.
    In,
}

/// A CDR from the SIP switch.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CdrIn {
    /// SIP Call-ID (with `account` the idempotency key).
    pub call_id: String,
    /// The account (DID) the record belongs to.
    pub account: String,
    /// Direction.
    pub direction: Direction,
    /// Kind.
    pub kind: CallKind,
    /// The other party (the destination for off-net and forwarded calls).
    pub peer: String,
    /// Start, Unix seconds.
    pub started_at: i64,
    /// Connected seconds (0 if unanswered).
    pub duration: i64,
}

/// The rating outcome.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Rated {
    /// CDR id.
    pub cdr_id: i64,
    /// Seconds billed.
    pub billed_seconds: i64,
    /// Charge, micro-units.
    pub charge: i64,
    /// Matched prefix.
    pub rate_prefix: Option<String>,
    /// False when a chargeable call matched no rate (recorded at zero charge).
    pub rated: bool,
    /// Balance after the charge.
    pub balance: i64,
    /// The CDR had been ingested before; nothing was charged again.
    pub duplicate: bool,
}

/// Rates and stores a CDR and debits the balance, atomically; idempotent per (call, account).
pub async fn ingest(db: &Db, cdr: &CdrIn) -> ApiResult<Rated> {
    let account = E164::parse_field(&cdr.account, "account")?;
    if cdr.call_id.is_empty() || cdr.call_id.len() > 256 {
        return Err(ApiError::invalid(
            "invalid_call_id",
            "call_id",
            "1 to 256 characters",
        ));
    }
    if cdr.duration < 0 || cdr.duration > 7 * 86_400 {
        return Err(ApiError::invalid(
            "invalid_duration",
            "duration",
            "0 to 604800 seconds",
        ));
    }
    let mut tx = db.pool.begin().await?;
    // (tariff id, first increment, next increment, connect fee); all NULL without a tariff.
    type TariffRow = (Option<i64>, Option<i64>, Option<i64>, Option<i64>);
    let acct: Option<TariffRow> = sqlx::query_as(
        "SELECT t.id, t.first_increment, t.next_increment, t.connect_fee FROM accounts a \
         JOIN products p ON p.id = a.product_id LEFT JOIN tariffs t ON t.id = p.tariff_id \
         WHERE a.id = $1",
    )
    .bind(account.digits())
    .fetch_optional(&mut *tx)
    .await?;
    let (tariff, first, next, fee) = acct.ok_or(ApiError::NotFound { what: "account" })?;
    let (mut billed, mut amount, mut prefix, mut rated) = (0, 0, None, true);
    if cdr.kind != CallKind::App {
        let dest: String = cdr.peer.chars().filter(char::is_ascii_digit).collect();
        let rate: Option<(String, i64)> = match tariff {
            Some(t) => {
                sqlx::query_as(
                    "SELECT prefix, rate_per_minute FROM tariff_rates WHERE tariff_id = $1 \
                     AND $2 LIKE prefix || '%' ORDER BY LENGTH(prefix) DESC LIMIT 1",
                )
                .bind(t)
                .bind(&dest)
                .fetch_optional(&mut *tx)
                .await?
            }
            None => None,
        };
        match rate {
            Some((p, per_minute)) => {
                billed = billed_seconds(cdr.duration, first.unwrap_or(60), next.unwrap_or(60));
                amount = charge(
                    billed,
                    per_minute,
                    if billed > 0 { fee.unwrap_or(0) } else { 0 },
                );
                prefix = Some(p);
            }
            None => rated = false,
        }
    }
    let inserted: Option<(i64,)> = sqlx::query_as(
        "INSERT INTO cdrs (call_id, account_id, direction, kind, peer, started_at, duration, \
         billed_seconds, charge, rate_prefix, rated) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (call_id, account_id) DO NOTHING RETURNING id",
    )
    .bind(&cdr.call_id)
    .bind(account.digits())
    .bind(match cdr.direction {
        Direction::Out => "out",
        Direction::In => "in",
    })
    .bind(cdr.kind.as_str())
    .bind(&cdr.peer)
    .bind(cdr.started_at)
    .bind(cdr.duration)
    .bind(billed)
    .bind(amount)
    .bind(prefix.as_deref())
    .bind(i64::from(rated))
    .fetch_optional(&mut *tx)
    .await?;
    let Some((cdr_id,)) = inserted else {
        let (cdr_id, billed, amount, prefix, rated): (i64, i64, i64, Option<String>, i64) = sqlx::query_as(
            "SELECT id, billed_seconds, charge, rate_prefix, rated FROM cdrs WHERE call_id = $1 AND account_id = $2",
        )
        .bind(&cdr.call_id)
        .bind(account.digits())
        .fetch_one(&mut *tx)
        .await?;
        let (balance,): (i64,) = sqlx::query_as("SELECT balance FROM accounts WHERE id = $1")
            .bind(account.digits())
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        return Ok(Rated {
            cdr_id,
            billed_seconds: billed,
            charge: amount,
            rate_prefix: prefix,
            rated: rated != 0,
            balance,
            duplicate: true,
        });
    };
    let (balance,): (i64,) = sqlx::query_as(
        "UPDATE accounts SET balance = balance - $1 WHERE id = $2 RETURNING balance",
    )
    .bind(amount)
    .bind(account.digits())
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Rated {
        cdr_id,
        billed_seconds: billed,
        charge: amount,
        rate_prefix: prefix,
        rated,
        balance,
        duplicate: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increments() {
        assert_eq!(billed_seconds(0, 60, 60), 0);
        assert_eq!(billed_seconds(1, 60, 60), 60);
        assert_eq!(billed_seconds(60, 60, 60), 60);
        assert_eq!(billed_seconds(61, 60, 60), 120);
        assert_eq!(billed_seconds(61, 30, 6), 66);
        assert_eq!(billed_seconds(29, 30, 6), 30);
        assert_eq!(billed_seconds(31, 1, 1), 31);
    }

    #[test]
    fn charges_round_up() {
        // 66 s at 0.10/min (100_000 micro) = 110_000.
        assert_eq!(charge(66, 100_000, 0), 110_000);
        // 1 s at 7 micro/min = 0.1166.. -> 1.
        assert_eq!(charge(1, 7, 0), 1);
        assert_eq!(charge(60, 7, 5), 12);
        assert_eq!(charge(0, 100_000, 50), 0);
    }
}
