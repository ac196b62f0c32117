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

use super::packed::{self, page_row, Page};
use super::{DeviceRecord, DeviceView, PageSink, Store, StoreError, StoreFuture, WriteOp};

const COLUMNS: &str = "device_id, binding_id, contact_token, username, auth_username, \
    password_enc, domain, outbound_proxy, transport, display_name, push_kind, push_enc, \
    push_topic, push_env, app_id, app_version, expires, secret_hash, body_hash, last_put_ms, \
    state, last_status";

/// Rows per multi-row upsert: at 23 parameters a row this stays far below SQLite's 32,766
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

/// Generates the [`Store`] implementation of one backend from the shared SQL. With
/// `$image`, upserts also write the load image (SQLite, see [`packed`]).
macro_rules! sql_store {
    ($store:ident, $backend:literal, $image:literal) => {
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
                        q.push(COLUMNS);
                        if $image {
                            q.push(", load_image");
                        }
                        q.push(") ");
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
                            if $image {
                                row.push_bind(packed::encode_image(&d.view()));
                            }
                        });
                        q.push(UPSERT_CONFLICT);
                        if $image {
                            q.push(", load_image = excluded.load_image");
                        }
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
                each: &'a mut PageSink<'_>,
            ) -> StoreFuture<'a, (usize, Option<String>)> {
                Box::pin(self.load_devices(after, i64::try_from(limit).unwrap_or(i64::MAX), each))
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
        let store = Self { pool };
        store.fill_load_images().await?;
        Ok(store)
    }

    /// The connection pool (tests read raw columns through it).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// One page of devices, which SQLite hands over as one value (see [`packed`]): sqlx's
    /// SQLite driver passes each result row from its worker thread through a channel and
    /// copies each of its values, so row by row, loading a million devices at start-up was
    /// mostly that hand-over, with two futex calls a row.
    async fn load_devices(
        &self,
        after: Option<&str>,
        limit: i64,
        each: &mut PageSink<'_>,
    ) -> Result<(usize, Option<String>), StoreError> {
        let query = match after {
            Some(after) => sqlx::query_scalar(LOAD_PAGE_SQLITE_AFTER).bind(after),
            None => sqlx::query_scalar(LOAD_PAGE_SQLITE_FIRST),
        };
        let page: Option<Vec<u8>> = query
            .bind(limit)
            .fetch_one(&self.pool)
            .await
            .map_err(query_err("sqlite", "loading devices"))?;
        let page = page.unwrap_or_default();
        let rows = usize::try_from(limit).unwrap_or(0).min(super::LOAD_PAGE);
        let views = match packed::decode_page(&page, rows) {
            Ok(Page::Views(views)) => views,
            Ok(Page::Unimaged) => {
                // Rare: a row changed since the store was opened without its image.
                let records = self.load_rows(after, limit).await?;
                let views: Vec<DeviceView<'_>> = records.iter().map(DeviceRecord::view).collect();
                return Ok(hand_over(views, each));
            }
            Err(detail) => {
                return Err(StoreError::Corrupt {
                    backend: "sqlite",
                    detail,
                })
            }
        };
        Ok(hand_over(views, each))
    }

    /// One page of devices, row by row: for pages with a row that has no load image.
    async fn load_rows(
        &self,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<DeviceRecord>, StoreError> {
        let rows = match after {
            Some(after) => {
                sqlx::query(&format!(
                "SELECT {COLUMNS} FROM devices WHERE device_id > $1 ORDER BY device_id LIMIT $2"
            ))
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM devices ORDER BY device_id LIMIT $1"
                ))
                .bind(limit)
                .fetch_all(&self.pool)
                .await
            }
        }
        .map_err(query_err("sqlite", "loading devices"))?;
        rows.iter().map(Self::decode).collect()
    }

    /// Writes the load image of every row that has none: rows stored before the column
    /// existed, or changed without a new image. Batches of [`UPSERT_ROWS`], each read and
    /// written in one transaction, so that a concurrent write cannot slip in between and
    /// leave an image of the old values.
    async fn fill_load_images(&self) -> Result<(), StoreError> {
        let e = |during| query_err("sqlite", during);
        let first = format!(
            "SELECT {COLUMNS} FROM devices WHERE load_image IS NULL \
             ORDER BY device_id LIMIT {UPSERT_ROWS}"
        );
        let next = format!(
            "SELECT {COLUMNS} FROM devices WHERE load_image IS NULL AND device_id > $1 \
             ORDER BY device_id LIMIT {UPSERT_ROWS}"
        );
        // Keyset paging: a row whose image cannot be built stays without one and is not
        // read again.
        let mut after: Option<String> = None;
        loop {
            let mut tx = self
                .pool
                .begin()
                .await
                .map_err(e("beginning a transaction"))?;
            let rows = match &after {
                None => sqlx::query(&first).fetch_all(&mut *tx).await,
                Some(after) => sqlx::query(&next).bind(after).fetch_all(&mut *tx).await,
            }
            .map_err(e("reading devices without load image"))?;
            let records = rows
                .iter()
                .map(Self::decode)
                .collect::<Result<Vec<_>, _>>()?;
            let Some(last) = records.last() else {
                return Ok(());
            };
            after = Some(last.device_id.clone());
            for r in &records {
                sqlx::query("UPDATE devices SET load_image = $1 WHERE device_id = $2")
                    .bind(packed::encode_image(&r.view()))
                    .bind(&r.device_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(e("writing load images"))?;
            }
            tx.commit().await.map_err(e("committing load images"))?;
        }
    }
}

/// Hands a page to `each` in `device_id` order; returns its length and last id.
fn hand_over(mut views: Vec<DeviceView<'_>>, each: &mut PageSink<'_>) -> (usize, Option<String>) {
    // SQL does not promise that the aggregate keeps the subquery's order (SQLite does keep
    // it, so this only checks).
    if !views.is_sorted_by(|a, b| a.device_id <= b.device_id) {
        views.sort_unstable_by(|a, b| a.device_id.cmp(b.device_id));
    }
    let last = views.last().map(|v| v.device_id.to_owned());
    each(&views);
    (views.len(), last)
}

/// A page of devices as one blob of `page_row!`s (NULL when empty), in `device_id` order
/// as SQLite compares text; `WHERE` is spliced in (`$1` the last id of the previous page,
/// the next parameter the limit). Two statements rather than `$1 IS NULL OR device_id > $1`,
/// which keeps SQLite from seeking the primary key's index: every page would rescan the
/// table from its start. The blob is built as text (SQLite concatenates text only) and
/// handed over as a blob, so that nobody checks it for UTF-8.
macro_rules! load_page_sqlite {
    ($where:literal, $limit:literal) => {
        concat!(
            "SELECT CAST(group_concat(",
            page_row!(),
            ", '') AS BLOB) \
            FROM (SELECT last_put_ms, last_status, state, load_image FROM devices ",
            $where,
            " ORDER BY device_id LIMIT ",
            $limit,
            ")"
        )
    };
}
const LOAD_PAGE_SQLITE_FIRST: &str = load_page_sqlite!("", "$1");
const LOAD_PAGE_SQLITE_AFTER: &str = load_page_sqlite!("WHERE device_id > $1", "$2");

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
        each: &mut PageSink<'_>,
    ) -> Result<(usize, Option<String>), StoreError> {
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
        let records = rows
            .iter()
            .map(Self::decode)
            .collect::<Result<Vec<_>, _>>()?;
        let views: Vec<DeviceView<'_>> = records.iter().map(DeviceRecord::view).collect();
        Ok(hand_over(views, each))
    }
}

sql_store!(SqliteStore, "sqlite", true);
sql_store!(PgStore, "postgres", false);

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

    /// The page decoder's model of SQLite's `char()` (which encodes the state's length) is
    /// what SQLite writes, at every width and at the edges of each.
    #[tokio::test]
    async fn sqlite_char_is_encoded_as_the_decoder_expects() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("v.db")).await.unwrap();
        for c in [
            0, 0x7F, 0x80, 0x7FF, 0x800, 0xD800, 0xFFFF, 0x10000, 0x10FFFF,
        ] {
            let bytes: Vec<u8> = sqlx::query_scalar("SELECT CAST(char($1) AS BLOB)")
                .bind(i64::from(c))
                .fetch_one(store.pool())
                .await
                .unwrap();
            assert_eq!(bytes, super::packed::tests::sqlite_char(c), "{c:#x}");
        }
    }
}
