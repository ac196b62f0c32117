//! Self-care settings: forwarding rules, follow-me, call recording, and the product's service
//! features that say which of them an end user may change.

use serde::{Deserialize, Serialize};

use crate::db::Db;
use crate::error::{ApiError, ApiResult};
use crate::util::E164;

/// A service feature of a product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Feature {
    /// Forwarding rules.
    CallForwarding,
    /// Call recording.
    CallRecording,
    /// Follow-me list.
    FollowMe,
}

impl Feature {
    /// Column value.
    pub fn as_str(self) -> &'static str {
        match self {
            Feature::CallForwarding => "call_forwarding",
            Feature::CallRecording => "call_recording",
            Feature::FollowMe => "follow_me",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Feature::CallForwarding => "call forwarding",
            Feature::CallRecording => "call recording",
            Feature::FollowMe => "follow-me",
        }
    }

    /// All features.
    pub const ALL: [Feature; 3] = [
        Feature::CallForwarding,
        Feature::CallRecording,
        Feature::FollowMe,
    ];
}

/// Whether a feature is in the product and editable by end users.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FeatureState {
    /// In the product.
    pub enabled: bool,
    /// "Can be edited by end users".
    pub editable: bool,
}

/// Reads one feature's flags for a product (absent = disabled).
pub async fn feature(db: &Db, product: i64, f: Feature) -> ApiResult<FeatureState> {
    let row: Option<(i64, i64)> = sqlx::query_as(
        "SELECT enabled, editable FROM product_features WHERE product_id = $1 AND feature = $2",
    )
    .bind(product)
    .bind(f.as_str())
    .fetch_optional(&db.pool)
    .await?;
    Ok(row
        .map(|(e, d)| FeatureState {
            enabled: e != 0,
            editable: d != 0,
        })
        .unwrap_or_default())
}

/// Fails with 403 and a reason unless the end user may change `f`.
pub async fn require_editable(db: &Db, product: i64, f: Feature) -> ApiResult<()> {
    let state = feature(db, product, f).await?;
    if !state.enabled {
        return Err(ApiError::forbidden(
            "feature_not_in_product",
            format!("{} is not part of your service plan", f.label()),
        ));
    }
    if !state.editable {
        return Err(ApiError::forbidden(
            "feature_not_editable",
            format!(
                "{} is managed by your administrator and cannot be changed from the app",
                f.label()
            ),
        ));
    }
    Ok(())
}

/// Forward after ringing for a while.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoAnswer {
    /// Target number, E.164.
    pub target: String,
    /// Seconds to ring first.
    pub after_secs: u32,
}

/// Forwarding rules.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Forwarding {
    /// Forward every call to this number.
    pub unconditional: Option<String>,
    /// When busy.
    pub busy: Option<String>,
    /// When not answered in time.
    pub no_answer: Option<NoAnswer>,
    /// When the app is unreachable, forward to the account's mobile number.
    pub unreachable_to_mobile: bool,
}

impl Forwarding {
    /// Validates and normalises targets to `+E.164`.
    pub fn normalise(mut self) -> ApiResult<Forwarding> {
        for (field, t) in [
            ("unconditional", &mut self.unconditional),
            ("busy", &mut self.busy),
        ] {
            if let Some(v) = t {
                *v = E164::parse_field(v, field)?.plus();
            }
        }
        if let Some(n) = &mut self.no_answer {
            n.target = E164::parse_field(&n.target, "no_answer.target")?.plus();
            if !(5..=120).contains(&n.after_secs) {
                return Err(ApiError::invalid(
                    "out_of_range",
                    "no_answer.after_secs",
                    "5 to 120 seconds",
                ));
            }
        }
        Ok(self)
    }
}

/// How the follow-me list rings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RingMode {
    /// One after another, in order.
    #[default]
    Sequential,
    /// All at once.
    Simultaneous,
}

/// A follow-me destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FollowMeEntry {
    /// Number, E.164.
    pub number: String,
    /// Seconds to ring it.
    pub ring_secs: u32,
}

/// Follow-me list, in ringing order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FollowMe {
    /// Sequential or simultaneous.
    pub mode: RingMode,
    /// Destinations.
    pub entries: Vec<FollowMeEntry>,
}

impl FollowMe {
    /// Validates and normalises.
    pub fn normalise(mut self) -> ApiResult<FollowMe> {
        if self.entries.len() > 10 {
            return Err(ApiError::invalid(
                "too_many",
                "entries",
                "at most 10 follow-me numbers",
            ));
        }
        for e in &mut self.entries {
            e.number = E164::parse_field(&e.number, "entries.number")?.plus();
            if !(5..=120).contains(&e.ring_secs) {
                return Err(ApiError::invalid(
                    "out_of_range",
                    "entries.ring_secs",
                    "5 to 120 seconds",
                ));
            }
        }
        Ok(self)
    }
}

/// An account's self-care settings as stored.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Settings {
    /// Forwarding.
    pub forwarding: Forwarding,
    /// Follow-me.
    pub follow_me: FollowMe,
    /// Recording on.
    pub recording: bool,
}

/// Loads settings (stored as JSON text; unreadable JSON reads as defaults).
pub async fn load(db: &Db, account: &str) -> ApiResult<Settings> {
    let row: Option<(String, String, i64)> =
        sqlx::query_as("SELECT forwarding, follow_me, recording FROM accounts WHERE id = $1")
            .bind(account)
            .fetch_optional(&db.pool)
            .await?;
    let (f, m, r) = row.ok_or(ApiError::NotFound { what: "account" })?;
    Ok(Settings {
        forwarding: serde_json::from_str(&f).unwrap_or_default(),
        follow_me: serde_json::from_str(&m).unwrap_or_default(),
        recording: r != 0,
    })
}
