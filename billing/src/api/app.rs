//! App endpoints: PBX contacts, smart contacts, balance, call history and recordings.
//!
//! The contact list is built for the app's periodic refresh: every change to a PBX customer's
//! accounts bumps the customer's `contacts_version` in the same transaction, the ETag is derived
//! from that version (and the query), and `If-None-Match` is answered with 304 after one indexed
//! single-row read. The unfiltered list is cached serialised per customer and version; after a
//! change it is brought up to date from the rows changed since (one indexed range read), not
//! rebuilt, so the first request after an administrator's edit costs about as much as any other.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::json;

use std::sync::Arc;

use super::{ApiJson, ApiQuery, AppState, CachedContacts};
use crate::accounts::AuthAccount;
use crate::error::{ApiError, ApiResult};
use crate::otp::rate_limit;
use crate::rating::{CallKind, Direction};
use crate::util::sha256_hex;

/// Query of `GET /v1/contacts`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactsQuery {
    /// Name or number fragment.
    pub q: Option<String>,
    /// Only changes after this version (removed entries come back as tombstones).
    pub since: Option<i64>,
}

/// One colleague.
#[derive(Debug, Serialize)]
pub struct Contact {
    /// Account id.
    pub id: String,
    /// First + last name, else extension name, else the number.
    pub display_name: String,
    /// Extension.
    pub extension: String,
    /// DID, `+E.164`.
    pub number: String,
    /// Mobile from the alias, for off-net calls.
    pub mobile: String,
    /// Owner's first name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    /// Owner's last name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    /// Extension name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extension_name: Option<String>,
}

/// The PortaPhone display rule.
pub fn display_name(
    first: Option<&str>,
    last: Option<&str>,
    ext_name: Option<&str>,
    number: &str,
) -> String {
    let name = [first, last]
        .into_iter()
        .flatten()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if !name.is_empty() {
        return name;
    }
    match ext_name.map(str::trim) {
        Some(n) if !n.is_empty() => n.to_owned(),
        _ => number.to_owned(),
    }
}

type ContactRow = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    i64,
    i64,
);

fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .map(|t| t.trim().trim_start_matches("W/"))
                .any(|t| t == etag || t == "*")
        })
}

/// `GET /v1/contacts`.
pub async fn contacts(
    acct: AuthAccount,
    State(st): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<ContactsQuery>,
) -> ApiResult<Response> {
    let Some(customer) = acct.customer_id else {
        return Ok(Json(json!({ "version": 0, "contacts": [] })).into_response());
    };
    let search =
        q.q.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_lowercase);
    if search.as_ref().is_some_and(|s| s.chars().count() > 100) {
        return Err(ApiError::invalid("too_long", "q", "at most 100 characters"));
    }
    let (version,): (i64,) = sqlx::query_as("SELECT contacts_version FROM customers WHERE id = $1")
        .bind(customer)
        .fetch_one(&st.db.pool)
        .await?;
    let variant = match (&search, q.since) {
        (None, None) => "all".to_owned(),
        (s, since) => sha256_hex(&format!(
            "{}\0{}",
            s.as_deref().unwrap_or(""),
            since.unwrap_or(-1)
        ))[..16]
            .to_owned(),
    };
    let etag = format!("\"{customer}-{version}-{variant}\"");
    let etag_value = HeaderValue::from_str(&etag).map_err(|_| ApiError::Internal("etag header"))?;
    if if_none_match(&headers, &etag) {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag_value)]).into_response());
    }
    let Some(since) = q.since else {
        let snap = snapshot(&st, customer, version).await?;
        let body = match &search {
            None => snap.body.clone(),
            Some(s) => {
                let number_query = s
                    .chars()
                    .all(|c| c.is_ascii_digit() || "+-() .".contains(c));
                let digits: String = s.chars().filter(char::is_ascii_digit).collect();
                let hits: Vec<&Contact> = snap
                    .entries
                    .iter()
                    .filter(|e| {
                        let c = &e.contact;
                        if number_query {
                            !digits.is_empty()
                                && (c.extension.contains(&digits)
                                    || c.number.contains(&digits)
                                    || c.mobile.contains(&digits))
                        } else {
                            e.haystack.contains(s.as_str())
                        }
                    })
                    .map(|e| &e.contact)
                    .collect();
                let v = json!({ "version": version, "contacts": hits });
                Bytes::from(
                    serde_json::to_vec(&v).map_err(|_| ApiError::Internal("serialise contacts"))?,
                )
            }
        };
        return Ok(json_response(body, etag_value));
    };
    let rows: Vec<ContactRow> = sqlx::query_as(&format!(
        "SELECT {CONTACT_COLUMNS} FROM accounts WHERE customer_id = $1 AND contact_seq > $2 \
         ORDER BY extension, id"
    ))
    .bind(customer)
    .bind(since)
    .fetch_all(&st.db.pool)
    .await?;
    let mut list = Vec::with_capacity(rows.len());
    let mut removed = Vec::new();
    for row in rows {
        match contact_from_row(row) {
            Ok(c) => list.push(c),
            Err(id) => removed.push(id),
        }
    }
    let body = json!({ "version": version, "contacts": list, "removed": removed });
    let body = Bytes::from(
        serde_json::to_vec(&body).map_err(|_| ApiError::Internal("serialise contacts"))?,
    );
    Ok(json_response(body, etag_value))
}

/// A row as a contact, or `Err(id)` when it is removed or has no extension (a tombstone).
fn contact_from_row(row: ContactRow) -> Result<Contact, String> {
    let (id, first, last, ext, ext_name, mobile, _seq, gone) = row;
    let Some(extension) = ext.filter(|_| gone == 0) else {
        return Err(id);
    };
    let number = format!("+{id}");
    Ok(Contact {
        display_name: display_name(
            first.as_deref(),
            last.as_deref(),
            ext_name.as_deref(),
            &number,
        ),
        id,
        extension,
        number,
        mobile: format!("+{mobile}"),
        first_name: first,
        last_name: last,
        extension_name: ext_name,
    })
}

/// One entry of a cached contact list: the contact, its JSON (a slice of the list body) and its
/// names joined and lower-cased for search.
#[derive(Debug)]
pub struct CachedEntry {
    /// The contact.
    pub contact: Contact,
    /// `serde_json` of `contact`.
    pub json: Box<[u8]>,
    /// Display name, first, last and extension name, lower-cased, one per line.
    pub haystack: String,
}

impl CachedEntry {
    fn new(contact: Contact) -> ApiResult<CachedEntry> {
        let json = serde_json::to_vec(&contact)
            .map_err(|_| ApiError::Internal("serialise contacts"))?
            .into_boxed_slice();
        let haystack = [
            Some(contact.display_name.as_str()),
            contact.first_name.as_deref(),
            contact.last_name.as_deref(),
            contact.extension_name.as_deref(),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("\n")
        .to_lowercase();
        Ok(CachedEntry {
            contact,
            json,
            haystack,
        })
    }
}

const CONTACT_COLUMNS: &str =
    "id, first_name, last_name, extension, extension_name, mobile, contact_seq, removed";

/// The customer's full list at `version`: from the cache when it is current; otherwise the
/// cached list brought forward with the rows changed since its version (`contact_seq >
/// cached.version`, an index range read that after an admin edit returns one row); otherwise
/// (first request, or the cache was reset) built from all the customer's rows. Searches filter
/// this snapshot in memory, so neither the list nor a search reads the whole accounts table while
/// nothing has changed.
///
/// The delta has no upper bound: rows changed after `version` was read are applied too (and
/// again, harmlessly, by the next delta). Every change numbered `version` or lower committed
/// before `version` could be read (the customer row is locked from the bump to the commit), so
/// the snapshot holds all of them.
pub async fn snapshot(
    st: &AppState,
    customer: i64,
    version: i64,
) -> ApiResult<Arc<CachedContacts>> {
    let cached = st
        .contacts_cache
        .lock()
        .map_err(|_| ApiError::Internal("contacts cache poisoned"))?
        .get(&customer)
        .cloned();
    let snap = match cached {
        Some(c) if c.version == version => return Ok(c),
        Some(old) if old.version < version => {
            let rows: Vec<ContactRow> = sqlx::query_as(&format!(
                "SELECT {CONTACT_COLUMNS} FROM accounts WHERE customer_id = $1 AND contact_seq > $2"
            ))
            .bind(customer)
            .bind(old.version)
            .fetch_all(&st.db.pool)
            .await?;
            brought_forward(&old, rows, version)?
        }
        _ => {
            let rows: Vec<ContactRow> = sqlx::query_as(&format!(
                "SELECT {CONTACT_COLUMNS} FROM accounts \
                 WHERE customer_id = $1 AND removed = 0 AND extension IS NOT NULL"
            ))
            .bind(customer)
            .fetch_all(&st.db.pool)
            .await?;
            let mut entries = Vec::with_capacity(rows.len());
            for row in rows {
                if let Ok(c) = contact_from_row(row) {
                    entries.push(Arc::new(CachedEntry::new(c)?));
                }
            }
            sort_entries(&mut entries);
            CachedContacts {
                version,
                body: list_body(version, &entries),
                entries,
            }
        }
    };
    let snap = Arc::new(snap);
    let mut cache = st
        .contacts_cache
        .lock()
        .map_err(|_| ApiError::Internal("contacts cache poisoned"))?;
    if cache.len() >= 1_000 && !cache.contains_key(&customer) {
        // Bounded memory: a crude reset is enough, rebuilding one list is cheap.
        cache.clear();
    }
    // A slower request that read an older version must not replace a newer snapshot.
    match cache.get(&customer) {
        Some(c) if c.version >= snap.version => {}
        _ => {
            cache.insert(customer, snap.clone());
        }
    }
    Ok(snap)
}

/// `old` with the changed `rows` applied: each changed account is dropped from the list and
/// re-added unless it is now removed or has no extension. Unchanged entries are shared.
fn brought_forward(
    old: &CachedContacts,
    rows: Vec<ContactRow>,
    version: i64,
) -> ApiResult<CachedContacts> {
    let changed: std::collections::HashSet<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    let mut entries: Vec<Arc<CachedEntry>> = Vec::with_capacity(old.entries.len() + rows.len());
    entries.extend(
        old.entries
            .iter()
            .filter(|e| !changed.contains(e.contact.id.as_str()))
            .cloned(),
    );
    drop(changed);
    for row in rows {
        if let Ok(c) = contact_from_row(row) {
            entries.push(Arc::new(CachedEntry::new(c)?));
        }
    }
    sort_entries(&mut entries);
    Ok(CachedContacts {
        version,
        body: list_body(version, &entries),
        entries,
    })
}

/// List order: by extension, then id. Sorted here rather than in SQL so that a full build and a
/// delta agree whatever the database's collation. The sort is stable and adaptive: after a delta
/// the list is one sorted run plus a few appended entries.
fn sort_entries(entries: &mut [Arc<CachedEntry>]) {
    entries.sort_by(|a, b| {
        (a.contact.extension.as_str(), a.contact.id.as_str())
            .cmp(&(b.contact.extension.as_str(), b.contact.id.as_str()))
    });
}

/// `{"version":V,"contacts":[...]}` from the entries' stored JSON, without serialising again.
fn list_body(version: i64, entries: &[Arc<CachedEntry>]) -> Bytes {
    let len: usize = entries.iter().map(|e| e.json.len() + 1).sum();
    let mut out = Vec::with_capacity(len + 48);
    out.extend_from_slice(format!("{{\"version\":{version},\"contacts\":[").as_bytes());
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&e.json);
    }
    out.extend_from_slice(b"]}");
    Bytes::from(out)
}

fn json_response(body: Bytes, etag: HeaderValue) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::ETAG, etag),
        ],
        body,
    )
        .into_response()
}

/// Body of `POST /v1/smart-contacts`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmartContactsRequest {
    /// Lower-case hex SHA-256 of each `+E.164` number in the address book.
    pub hashes: Vec<String>,
}

/// A match.
#[derive(Debug, Serialize)]
pub struct SmartContact {
    /// The hash that matched.
    pub hash: String,
    /// The app user's DID to call app-to-app.
    pub number: String,
}

/// `POST /v1/smart-contacts`: which of these numbers are app users. Rate limited per account,
/// because hashes of a 10^10 space of numbers do not by themselves stop enumeration.
pub async fn smart_contacts(
    acct: AuthAccount,
    State(st): State<AppState>,
    ApiJson(req): ApiJson<SmartContactsRequest>,
) -> ApiResult<Json<serde_json::Value>> {
    let cfg = &st.cfg.smart_contacts;
    if req.hashes.len() > cfg.max_numbers_per_request {
        return Err(ApiError::invalid(
            "too_many",
            "hashes",
            format!("at most {} per request", cfg.max_numbers_per_request),
        ));
    }
    if req.hashes.iter().any(|h| {
        h.len() != 64
            || !h
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }) {
        return Err(ApiError::invalid(
            "invalid_hash",
            "hashes",
            "expected lower-case hex SHA-256 of +E.164 numbers",
        ));
    }
    rate_limit(
        &st.db,
        "smart_contacts",
        &acct.id,
        st.now(),
        3600,
        cfg.requests_per_hour,
    )
    .await?;
    let mut matches = Vec::new();
    for chunk in req.hashes.chunks(500) {
        let placeholders: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
        let sql = format!(
            "SELECT mobile_hash, id FROM accounts WHERE removed = 0 AND id <> $1 AND mobile_hash IN ({})",
            placeholders.join(",")
        );
        let mut query = sqlx::query_as::<_, (String, String)>(&sql).bind(&acct.id);
        for h in chunk {
            query = query.bind(h);
        }
        for (hash, id) in query.fetch_all(&st.db.pool).await? {
            matches.push(SmartContact {
                hash,
                number: format!("+{id}"),
            });
        }
    }
    Ok(Json(json!({ "matches": matches })))
}

/// `GET /v1/balance`.
pub async fn balance(
    acct: AuthAccount,
    State(st): State<AppState>,
) -> ApiResult<Json<serde_json::Value>> {
    let (balance, currency): (i64, Option<String>) = sqlx::query_as(
        "SELECT a.balance, t.currency FROM accounts a JOIN products p ON p.id = a.product_id \
         LEFT JOIN tariffs t ON t.id = p.tariff_id WHERE a.id = $1",
    )
    .bind(&acct.id)
    .fetch_one(&st.db.pool)
    .await?;
    Ok(Json(
        json!({ "balance": balance, "currency": currency, "unit": "micro" }),
    ))
}

/// Query of `GET /v1/calls`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallsQuery {
    /// Page size (1-200, default 50).
    pub limit: Option<u32>,
    /// Only records older than this id (the previous page's `next_before`).
    pub before: Option<i64>,
    /// Direction filter.
    pub direction: Option<Direction>,
    /// Kind filter.
    pub kind: Option<CallKind>,
    /// Started at or after (Unix seconds).
    pub from: Option<i64>,
    /// Started before (Unix seconds).
    pub to: Option<i64>,
}

/// A call history entry.
#[derive(Debug, Serialize)]
pub struct CallRecord {
    /// CDR id.
    pub id: i64,
    /// Call-ID.
    pub call_id: String,
    /// `in` or `out`.
    pub direction: String,
    /// `app`, `offnet`, `forwarded`.
    pub kind: String,
    /// Other party.
    pub peer: String,
    /// Start.
    pub started_at: i64,
    /// Connected seconds.
    pub duration: i64,
    /// Charge, micro-units.
    pub charge: i64,
    /// Recording, if any.
    pub recording_id: Option<String>,
}

type CallRow = (
    i64,
    String,
    String,
    String,
    String,
    i64,
    i64,
    i64,
    Option<String>,
);

/// `GET /v1/calls`: newest first, keyset-paged.
pub async fn calls(
    acct: AuthAccount,
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<CallsQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    let limit = i64::from(q.limit.unwrap_or(50));
    if !(1..=200).contains(&limit) {
        return Err(ApiError::invalid("out_of_range", "limit", "1 to 200"));
    }
    let dir = q
        .direction
        .map(|d| if d == Direction::In { "in" } else { "out" })
        .unwrap_or("");
    let rows: Vec<CallRow> = sqlx::query_as(
        "SELECT c.id, c.call_id, c.direction, c.kind, c.peer, c.started_at, c.duration, c.charge, \
         (SELECT MIN(r.id) FROM recordings r WHERE r.account_id = c.account_id AND r.call_id = c.call_id) \
         FROM cdrs c WHERE c.account_id = $1 AND ($2 = '' OR c.direction = $2) AND ($3 = '' OR c.kind = $3) \
         AND c.started_at >= $4 AND c.started_at < $5 AND c.id < $6 ORDER BY c.id DESC LIMIT $7",
    )
    .bind(&acct.id)
    .bind(dir)
    .bind(q.kind.map(CallKind::as_str).unwrap_or(""))
    .bind(q.from.unwrap_or(i64::MIN))
    .bind(q.to.unwrap_or(i64::MAX))
    .bind(q.before.unwrap_or(i64::MAX))
    .bind(limit)
    .fetch_all(&st.db.pool)
    .await?;
    let next_before = if rows.len() as i64 == limit {
        rows.last().map(|r| r.0)
    } else {
        None
    };
    let calls: Vec<CallRecord> = rows
        .into_iter()
        .map(
            |(id, call_id, direction, kind, peer, started_at, duration, charge, recording_id)| {
                CallRecord {
                    id,
                    call_id,
                    direction,
                    kind,
                    peer,
                    started_at,
                    duration,
                    charge,
                    recording_id,
                }
            },
        )
        .collect();
    Ok(Json(json!({ "calls": calls, "next_before": next_before })))
}

/// `GET /v1/recordings/{id}`.
pub async fn recording_meta(
    acct: AuthAccount,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let row: Option<(String, String, i64, i64)> = sqlx::query_as(
        "SELECT call_id, content_type, size, created_at FROM recordings WHERE id = $1 AND account_id = $2",
    )
    .bind(&id)
    .bind(&acct.id)
    .fetch_optional(&st.db.pool)
    .await?;
    let (call_id, content_type, size, created_at) =
        row.ok_or(ApiError::NotFound { what: "recording" })?;
    Ok(Json(json!({
        "id": id, "call_id": call_id, "content_type": content_type, "size": size,
        "created_at": created_at, "download": format!("/v1/recordings/{id}/audio"),
    })))
}

/// `GET /v1/recordings/{id}/audio`.
pub async fn recording_audio(
    acct: AuthAccount,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let row: Option<(String, Vec<u8>)> = sqlx::query_as(
        "SELECT content_type, data FROM recordings WHERE id = $1 AND account_id = $2",
    )
    .bind(&id)
    .bind(&acct.id)
    .fetch_optional(&st.db.pool)
    .await?;
    let (ct, data) = row.ok_or(ApiError::NotFound { what: "recording" })?;
    let ct =
        HeaderValue::from_str(&ct).unwrap_or(HeaderValue::from_static("application/octet-stream"));
    Ok(([(header::CONTENT_TYPE, ct)], data).into_response())
}
