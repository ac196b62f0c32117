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

const UPSERT: &str = "INSERT INTO devices (device_id, binding_id, contact_token, username, \
    auth_username, password_enc, domain, outbound_proxy, transport, display_name, push_kind, \
    push_enc, push_topic, push_env, app_id, app_version, expires, secret_hash, body_hash, \
    last_put_ms, state, last_status) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
    $13, $14, $15, $16, $17, $18, $19, $20, $21, $22) ON CONFLICT (device_id) DO UPDATE SET \
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
                for op in ops {
                    match op {
                        WriteOp::Upsert(d) => {
                            sqlx::query(UPSERT)
                                .bind(&d.device_id)
                                .bind(d.binding_id)
                                .bind(&d.contact_token)
                                .bind(&d.username)
                                .bind(&d.auth_username)
                                .bind(&d.password_enc)
                                .bind(&d.domain)
                                .bind(&d.outbound_proxy)
                                .bind(&d.transport)
                                .bind(&d.display_name)
                                .bind(&d.push_kind)
                                .bind(&d.push_enc)
                                .bind(&d.push_topic)
                                .bind(&d.push_env)
                                .bind(&d.app_id)
                                .bind(&d.app_version)
                                .bind(d.expires)
                                .bind(&d.secret_hash)
                                .bind(&d.body_hash)
                                .bind(d.last_put_ms)
                                .bind(&d.state)
                                .bind(d.last_status)
                                .execute(&mut *tx)
                                .await
                                .map_err(e("upserting a device"))?;
                        }
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
                        WriteOp::SetState {
                            device_id,
                            state,
                            last_status,
                        } => {
                            sqlx::query(
                                "UPDATE devices SET state = $1, last_status = $2 \
                                 WHERE device_id = $3",
                            )
                            .bind(*state)
                            .bind(*last_status)
                            .bind(device_id)
                            .execute(&mut *tx)
                            .await
                            .map_err(e("updating a device's state"))?;
                        }
                        WriteOp::Delete { device_id } => {
                            sqlx::query("DELETE FROM devices WHERE device_id = $1")
                                .bind(device_id)
                                .execute(&mut *tx)
                                .await
                                .map_err(e("deleting a device"))?;
                        }
                    }
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

            fn load_all(&self) -> StoreFuture<'_, Vec<DeviceRecord>> {
                Box::pin(async move {
                    let sql = format!("SELECT {COLUMNS} FROM devices ORDER BY device_id");
                    let rows = sqlx::query(&sql)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(query_err($backend, "loading devices"))?;
                    rows.iter().map(Self::decode).collect()
                })
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
}

sql_store!(SqliteStore, "sqlite");
sql_store!(PgStore, "postgres");
