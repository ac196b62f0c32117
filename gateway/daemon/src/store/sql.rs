//! The SQLite and PostgreSQL backends of [`Store`](super::Store).
//!
//! Both speak the same SQL (numbered `$N` placeholders, `ON CONFLICT ... DO UPDATE`), so one
//! macro generates both implementations from the same query text; only the connection set-up
//! and the migrations differ. Queries are checked at run time, never against a live database
//! at build time.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, Row, SqlitePool};

use super::{DeviceRecord, Store, StoreError, StoreFuture, WriteOp};

const COLUMNS: &str = "device_id, binding_id, contact_token, username, auth_username, \
    password_enc, domain, outbound_proxy, transport, display_name, push_kind, push_enc, \
    push_topic, push_env, app_id, app_version, expires, secret_hash, body_hash, last_put_ms, \
    state, last_status";

/// Rows per multi-row upsert: at 22 parameters a row this stays far below SQLite's 32,766
/// and PostgreSQL's 65,535 parameters per statement.
const UPSERT_ROWS: usize = 500;

/// Devices per run of state changes ([`WriteOp::SetState`]): at most this many parameters
/// plus two per statement.
const STATE_ROWS: usize = 1000;

/// What an upsert does to a device that exists: every column takes the new value.
const UPSERT_CONFLICT: &str = " ON CONFLICT (device_id) DO UPDATE SET \
    binding_id = excluded.binding_id, contact_token = excluded.contact_token, \
    username = excluded.username, auth_username = excluded.auth_username, \
    password_enc = excluded.password_enc, domain = excluded.domain, \
    outbound_proxy = excluded.outbound_proxy, transport = excluded.transport, \
    display_name = excluded.display_name, push_kind = excluded.push_kind, \
    push_enc = excluded.push_enc, push_topic = excluded.push_topic, \
    push_env = excluded.push_env, app_id = excluded.app_id, \
    app_version = excluded.app_version, expires = excluded.expires, \
    secret_hash = excluded.secret_hash, body_hash = excluded.body_hash, \
    last_put_ms = excluded.last_put_ms, state = excluded.state, \
    last_status = excluded.last_status";

fn query_err(backend: &'static str, during: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |e| StoreError::Query {
        backend,
        during,
        detail: e.to_string(),
    }
}

/// Generates the [`Store`] implementation of one backend from the shared SQL.
macro_rules! sql_store {
    ($store:ident, $backend:literal) => {
        impl $store {
            fn decode(
                row: &<<$store as HasDb>::Db as sqlx::Database>::Row,
            ) -> Result<DeviceRecord, StoreError> {
                let corrupt = |e: sqlx::Error| StoreError::Corrupt {
                    backend: $backend,
                    detail: e.to_string(),
                };
                Ok(DeviceRecord {
                    device_id: row.try_get("device_id").map_err(corrupt)?,
                    binding_id: row.try_get("binding_id").map_err(corrupt)?,
                    contact_token: row.try_get("contact_token").map_err(corrupt)?,
                    username: row.try_get("username").map_err(corrupt)?,
                    auth_username: row.try_get("auth_username").map_err(corrupt)?,
                    password_enc: row.try_get("password_enc").map_err(corrupt)?,
                    domain: row.try_get("domain").map_err(corrupt)?,
                    outbound_proxy: row.try_get("outbound_proxy").map_err(corrupt)?,
                    transport: row.try_get("transport").map_err(corrupt)?,
                    display_name: row.try_get("display_name").map_err(corrupt)?,
                    push_kind: row.try_get("push_kind").map_err(corrupt)?,
                    push_enc: row.try_get("push_enc").map_err(corrupt)?,
                    push_topic: row.try_get("push_topic").map_err(corrupt)?,
                    push_env: row.try_get("push_env").map_err(corrupt)?,
                    app_id: row.try_get("app_id").map_err(corrupt)?,
                    app_version: row.try_get("app_version").map_err(corrupt)?,
                    expires: row.try_get("expires").map_err(corrupt)?,
                    secret_hash: row.try_get("secret_hash").map_err(corrupt)?,
                    body_hash: row.try_get("body_hash").map_err(corrupt)?,
                    last_put_ms: row.try_get("last_put_ms").map_err(corrupt)?,
                    state: row.try_get("state").map_err(corrupt)?,
                    last_status: row.try_get("last_status").map_err(corrupt)?,
                })
            }

            async fn apply_ops(&self, ops: &[WriteOp]) -> Result<(), StoreError> {
                let e = |during| query_err($backend, during);
                let mut tx = self
                    .pool
                    .begin()
                    .await
                    .map_err(e("beginning a transaction"))?;
                let mut i = 0;
                while i < ops.len() {
                    // A run of upserts goes in one multi-row statement: a batch of PUTs is a
                    // few statements, not one round trip each. A device seen twice ends the
                    // run (PostgreSQL refuses to upsert a row twice in one statement, and the
                    // later write must win), so the order of writes is kept.
                    if matches!(ops[i], WriteOp::Upsert(_)) {
                        let mut run: Vec<&DeviceRecord> = Vec::new();
                        let mut seen = std::collections::HashSet::new();
                        while let Some(WriteOp::Upsert(d)) = ops.get(i) {
                            if run.len() == UPSERT_ROWS || !seen.insert(d.device_id.as_str()) {
                                break;
                            }
                            run.push(d);
                            i += 1;
                        }
                        let mut q = sqlx::QueryBuilder::<<$store as HasDb>::Db>::new(
                            "INSERT INTO devices (",
                        );
                        q.push(COLUMNS).push(") ");
                        q.push_values(run, |mut row, d| {
                            row.push_bind(&d.device_id)
                                .push_bind(d.binding_id)
                                .push_bind(&d.contact_token)
                                .push_bind(&d.username)
                                .push_bind(&d.auth_username)
                                .push_bind(&d.password_enc)
                                .push_bind(&d.domain)
                                .push_bind(&d.outbound_proxy)
                                .push_bind(&d.transport)
                                .push_bind(&d.display_name)
                                .push_bind(&d.push_kind)
                                .push_bind(&d.push_enc)
                                .push_bind(&d.push_topic)
                                .push_bind(&d.push_env)
                                .push_bind(&d.app_id)
                                .push_bind(&d.app_version)
                                .push_bind(d.expires)
                                .push_bind(&d.secret_hash)
                                .push_bind(&d.body_hash)
                                .push_bind(d.last_put_ms)
                                .push_bind(&d.state)
                                .push_bind(d.last_status);
                        });
                        q.push(UPSERT_CONFLICT);
                        q.build()
                            .execute(&mut *tx)
                            .await
                            .map_err(e("upserting devices"))?;
                        continue;
                    }
                    // A run of state changes goes in one `UPDATE ... WHERE device_id IN (...)`
                    // per distinct (state, status): a restart's wave of 2xx answers, a
                    // thousand bindings a second moving to `registered`, is a few statements
                    // per batch instead of one round trip each. As with upserts, a device
                    // seen twice ends the run, so the later write still wins.
                    if matches!(ops[i], WriteOp::SetState { .. }) {
                        let mut groups: Vec<((&str, i64), Vec<&str>)> = Vec::new();
                        let mut seen = std::collections::HashSet::new();
                        let mut taken = 0;
                        while let Some(WriteOp::SetState {
                            device_id,
                            state,
                            last_status,
                        }) = ops.get(i)
                        {
                            if taken == STATE_ROWS || !seen.insert(device_id.as_str()) {
                                break;
                            }
                            let key = (*state, *last_status);
                            match groups.iter_mut().find(|(k, _)| *k == key) {
                                Some((_, ids)) => ids.push(device_id),
                                None => groups.push((key, vec![device_id.as_str()])),
                            }
                            taken += 1;
                            i += 1;
                        }
                        for ((state, last_status), ids) in groups {
                            let mut q = sqlx::QueryBuilder::<<$store as HasDb>::Db>::new(
                                "UPDATE devices SET state = ",
                            );
                            q.push_bind(state)
                                .push(", last_status = ")
                                .push_bind(last_status)
                                .push(" WHERE device_id IN (");
                            let mut list = q.separated(", ");
                            for id in ids {
                                list.push_bind(id);
                            }
                            list.push_unseparated(")");
                            q.build()
                                .execute(&mut *tx)
                                .await
                                .map_err(e("updating devices' state"))?;
                        }
                        continue;
                    }
                    match &ops[i] {
                        // Handled above.
                        WriteOp::Upsert(_) | WriteOp::SetState { .. } => {}
                        WriteOp::Touch {
                            device_id,
                            last_put_ms,
                        } => {
                            sqlx::query("UPDATE devices SET last_put_ms = $1 WHERE device_id = $2")
                                .bind(*last_put_ms)
                                .bind(device_id)
                                .execute(&mut *tx)
                                .await
                                .map_err(e("touching a device"))?;
                        }
                        WriteOp::SetPush {
                            device_id,
                            body_hash,
                            push_enc,
                        } => {
                            sqlx::query(
                                "UPDATE devices SET push_enc = $1 \
                                 WHERE device_id = $2 AND body_hash = $3",
                            )
                            .bind(push_enc)
                            .bind(device_id)
                            .bind(body_hash)
                            .execute(&mut *tx)
                            .await
                            .map_err(e("dropping a dead push token"))?;
                        }
                        WriteOp::Delete { device_id } => {
                            sqlx::query("DELETE FROM devices WHERE device_id = $1")
                                .bind(device_id)
                                .execute(&mut *tx)
                                .await
                                .map_err(e("deleting a device"))?;
                        }
                    }
                    i += 1;
                }
                tx.commit().await.map_err(e("committing"))
            }
        }

        impl Store for $store {
            fn backend(&self) -> &'static str {
                $backend
            }

            fn apply<'a>(&'a self, ops: &'a [WriteOp]) -> StoreFuture<'a, ()> {
                Box::pin(self.apply_ops(ops))
            }

            fn get<'a>(&'a self, device_id: &'a str) -> StoreFuture<'a, Option<DeviceRecord>> {
                Box::pin(async move {
                    let sql = format!("SELECT {COLUMNS} FROM devices WHERE device_id = $1");
                    let row = sqlx::query(&sql)
                        .bind(device_id)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(query_err($backend, "reading a device"))?;
                    row.as_ref().map(Self::decode).transpose()
                })
            }

            fn load_page<'a>(
                &'a self,
                after: Option<&'a str>,
                limit: usize,
            ) -> StoreFuture<'a, Vec<DeviceRecord>> {
                Box::pin(self.load_devices(after, i64::try_from(limit).unwrap_or(i64::MAX)))
            }

            fn count(&self) -> StoreFuture<'_, u64> {
                Box::pin(async move {
                    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM devices")
                        .fetch_one(&self.pool)
                        .await
                        .map_err(query_err($backend, "counting devices"))?;
                    Ok(u64::try_from(n).unwrap_or(0))
                })
            }

            fn close(
                &self,
            ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
                Box::pin(self.pool.close())
            }
        }
    };
}

/// Names the sqlx database type of a store, for the macro.
trait HasDb {
    type Db: sqlx::Database;
}

/// The embedded SQLite store: one file, WAL, `synchronous = FULL`.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl HasDb for SqliteStore {
    type Db = sqlx::Sqlite;
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and runs the SQLite migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let open_err = |e: String| StoreError::Open {
            backend: "sqlite",
            detail: e,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| open_err(e.to_string()))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: the WAL is fsynced at every commit, so an acknowledged write survives
            // power loss, not just a process crash.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| open_err(e.to_string()))?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|e| open_err(e.to_string()))?;
        Ok(Self { pool })
    }

    /// The connection pool (tests read raw columns through it).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// One page of devices, which SQLite hands over as one JSON array. sqlx's SQLite driver
    /// passes each result row from its worker thread through a channel and copies each of
    /// its values: row by row, loading a million devices at start-up was mostly that
    /// hand-over, with two futex calls a row.
    async fn load_devices(
        &self,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<DeviceRecord>, StoreError> {
        let corrupt = |detail: String| StoreError::Corrupt {
            backend: "sqlite",
            detail,
        };
        let query = match after {
            Some(after) => sqlx::query_as(LOAD_PAGE_SQLITE_AFTER).bind(after),
            None => sqlx::query_as(LOAD_PAGE_SQLITE_FIRST),
        };
        let (page,): (String,) = query
            .bind(limit)
            .fetch_one(&self.pool)
            .await
            .map_err(query_err("sqlite", "loading devices"))?;
        let rows: Vec<PackedRow> =
            serde_json::from_str(&page).map_err(|e| corrupt(e.to_string()))?;
        let mut out = rows
            .into_iter()
            .map(PackedRow::into_record)
            .collect::<Result<Vec<_>, _>>()
            .map_err(corrupt)?;
        // SQL does not promise that the aggregate keeps the subquery's order (SQLite does
        // keep it, so this only checks).
        if !out.is_sorted_by(|a, b| a.device_id <= b.device_id) {
            out.sort_unstable_by(|a, b| a.device_id.cmp(&b.device_id));
        }
        Ok(out)
    }
}

/// A page of devices as a JSON array of arrays, the columns in [`PackedRow`]'s order, blobs
/// in hex, in `device_id` order as SQLite compares text; `WHERE` is spliced in (`$1` the
/// last id of the previous page, the next parameter the limit). Two statements rather than
/// `$1 IS NULL OR device_id > $1`, which keeps SQLite from seeking the primary key's index:
/// every page would rescan the table from its start.
macro_rules! load_page_sqlite {
    ($where:literal, $limit:literal) => {
        concat!(
            "SELECT COALESCE(json_group_array(json_array(\
            device_id, binding_id, contact_token, username, auth_username, hex(password_enc), \
            domain, outbound_proxy, transport, display_name, push_kind, hex(push_enc), \
            push_topic, push_env, app_id, app_version, expires, hex(secret_hash), \
            hex(body_hash), last_put_ms, state, last_status)), '[]') \
            FROM (SELECT * FROM devices ",
            $where,
            " ORDER BY device_id LIMIT ",
            $limit,
            ")"
        )
    };
}
const LOAD_PAGE_SQLITE_FIRST: &str = load_page_sqlite!("", "$1");
const LOAD_PAGE_SQLITE_AFTER: &str = load_page_sqlite!("WHERE device_id > $1", "$2");

/// A row of [`LOAD_PAGE_SQLITE_FIRST`] / [`LOAD_PAGE_SQLITE_AFTER`]: the columns of [`DeviceRecord`] in order, blobs in hex.
#[derive(serde::Deserialize)]
struct PackedRow(
    String,
    i64,
    String,
    String,
    Option<String>,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    String,
    i64,
    String,
    String,
    i64,
    String,
    i64,
);

impl PackedRow {
    fn into_record(self) -> Result<DeviceRecord, String> {
        let blob = |name: &str, hex_text: &str| {
            unhex(hex_text).ok_or_else(|| format!("device {}: {name}: not hex", self.0))
        };
        Ok(DeviceRecord {
            password_enc: blob("password_enc", &self.5)?,
            push_enc: blob("push_enc", &self.11)?,
            secret_hash: blob("secret_hash", &self.17)?,
            body_hash: blob("body_hash", &self.18)?,
            device_id: self.0,
            binding_id: self.1,
            contact_token: self.2,
            username: self.3,
            auth_username: self.4,
            domain: self.6,
            outbound_proxy: self.7,
            transport: self.8,
            display_name: self.9,
            push_kind: self.10,
            push_topic: self.12,
            push_env: self.13,
            app_id: self.14,
            app_version: self.15,
            expires: self.16,
            last_put_ms: self.19,
            state: self.20,
            last_status: self.21,
        })
    }
}

/// Decodes SQLite's `hex()` (upper case; lower case accepted too). The `hex` crate's decoder
/// collects without knowing the length and cost about 30 instructions a digit, most of the
/// start-up load; this one looks each digit up in a table and checks once at the end.
fn unhex(text: &str) -> Option<Vec<u8>> {
    /// A digit's value, or 0xFF (high bits set) for a byte that is not a hex digit.
    const NIBBLE: [u8; 256] = {
        let mut t = [0xFF; 256];
        let mut c = 0;
        while c < 10 {
            t[b'0' as usize + c] = c as u8;
            c += 1;
        }
        let mut c = 0;
        while c < 6 {
            t[b'A' as usize + c] = 10 + c as u8;
            t[b'a' as usize + c] = 10 + c as u8;
            c += 1;
        }
        t
    };
    let digits = text.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    let mut out = vec![0u8; digits.len() / 2];
    let mut bad = 0u8;
    for (o, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let (hi, lo) = (NIBBLE[pair[0] as usize], NIBBLE[pair[1] as usize]);
        bad |= hi | lo;
        *o = hi << 4 | lo;
    }
    (bad & 0xF0 == 0).then_some(out)
}

/// The PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl HasDb for PgStore {
    type Db = sqlx::Postgres;
}

impl PgStore {
    /// Connects to `url` and runs the PostgreSQL migrations. With `schema`, every connection
    /// works in that schema (`search_path`); it must exist. Tests use this to isolate
    /// themselves in a database that other suites share.
    pub async fn connect(url: &str, schema: Option<&str>) -> Result<Self, StoreError> {
        let open_err = |e: String| StoreError::Open {
            backend: "postgres",
            detail: e,
        };
        let mut options = PgConnectOptions::from_str(url).map_err(|e| open_err(e.to_string()))?;
        if let Some(schema) = schema {
            options = options.options([("search_path", schema)]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(|e| open_err(e.to_string()))?;
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| open_err(e.to_string()))?;
        Ok(Self { pool })
    }

    /// The connection pool (tests read raw columns through it).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// One page of devices, row by row (the PostgreSQL driver streams rows cheaply); keyset
    /// paging on the primary key, in the column's collation for both `>` and `ORDER BY`.
    async fn load_devices(
        &self,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<DeviceRecord>, StoreError> {
        let sql = match after {
            Some(_) => format!(
                "SELECT {COLUMNS} FROM devices WHERE device_id > $1 ORDER BY device_id LIMIT $2"
            ),
            None => format!("SELECT {COLUMNS} FROM devices ORDER BY device_id LIMIT $1"),
        };
        let mut query = sqlx::query(&sql);
        if let Some(after) = after {
            query = query.bind(after);
        }
        let query = query.bind(limit);
        let rows = query
            .fetch_all(&self.pool)
            .await
            .map_err(query_err("postgres", "loading devices"))?;
        rows.iter().map(Self::decode).collect()
    }
}

sql_store!(SqliteStore, "sqlite");
sql_store!(PgStore, "postgres");

#[cfg(test)]
mod tests {
    use super::*;

    /// A page after the first seeks the primary key's index; a scan from the table's start
    /// per page would make loading a million devices quadratic.
    #[tokio::test]
    async fn sqlite_pages_after_the_first_seek_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("v.db")).await.unwrap();
        let plan: Vec<(i64, i64, i64, String)> =
            sqlx::query_as(&format!("EXPLAIN QUERY PLAN {LOAD_PAGE_SQLITE_AFTER}"))
                .bind("dev-1")
                .bind(2_000_i64)
                .fetch_all(store.pool())
                .await
                .unwrap();
        let steps: Vec<&str> = plan.iter().map(|(.., d)| d.as_str()).collect();
        assert!(
            steps
                .iter()
                .any(|d| d.starts_with("SEARCH devices") && d.contains("device_id>")),
            "{steps:?}"
        );
        assert!(
            !steps.iter().any(|d| d.starts_with("SCAN devices")),
            "{steps:?}"
        );
    }

    #[test]
    fn unhex_decodes_what_hex_encodes_and_rejects_the_rest() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(unhex(&hex::encode_upper(&all)), Some(all.clone()));
        assert_eq!(unhex(&hex::encode(&all)), Some(all));
        assert_eq!(unhex(""), Some(Vec::new()));
        for bad in ["A", "0G", "zz", "0 ", "é0"] {
            assert_eq!(unhex(bad), None, "{bad}");
        }
        // Every byte value in either position of a pair, against the definition.
        for b in 0..=255u8 {
            let ok = b.is_ascii_hexdigit();
            for pair in [[b, b'0'], [b'0', b]] {
                let got = std::str::from_utf8(&pair).ok().and_then(unhex);
                let want = ok.then(|| {
                    vec![u8::from_str_radix(std::str::from_utf8(&pair).unwrap(), 16).unwrap()]
                });
                assert_eq!(got, want, "{pair:?}");
            }
        }
    }
}
