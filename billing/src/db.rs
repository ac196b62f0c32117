//! Database access: one pool over SQLite or PostgreSQL, migrations per backend, and the clock.
//!
//! Queries are runtime-checked `sqlx::query` calls through the `Any` driver, written once with
//! `$N` placeholders (which both SQLite and PostgreSQL accept) and only the types both backends
//! share (BIGINT, TEXT, BLOB/BYTEA). Where the two dialects must differ (row locking) the call
//! site asks `Db::backend`.
//!
//! Migrations run in two phases around one step in Rust: those before [`SEALED_FROM`], then
//! [`secrets::check_key`] and [`secrets::seal_legacy_passwords`] (which need the key that SQL
//! does not have), then the rest. A database from before passwords were sealed is thus converted
//! in place on its first start, without losing a row.
//!
//! SQLite runs on a single pooled connection. SQLite has one writer anyway, and with one
//! connection there is no `SQLITE_BUSY` and no deadlock when a read transaction upgrades to a
//! write; the atomicity of taking a DID then follows from statement order.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::{Migration, MigrationSource, Migrator};
use sqlx::{AnyPool, Executor};

use crate::secrets::{self, KeyError, Secrets};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// The first migration that must not run before the plaintext SIP passwords are sealed
/// (0003 drops the plaintext column).
pub const SEALED_FROM: i64 = 3;

/// A fixed list of migrations (a prefix of the embedded ones) as a migration source.
#[derive(Debug)]
struct Prefix(Vec<Migration>);

impl MigrationSource<'static> for Prefix {
    fn resolve(
        self,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<Output = Result<Vec<Migration>, sqlx::error::BoxDynError>>
                + Send,
        >,
    > {
        Box::pin(async move { Ok(self.0) })
    }
}

/// Which SQL dialect the pool speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded default.
    Sqlite,
    /// Production.
    Postgres,
}

/// Failures while opening the database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbOpenError {
    /// The URL names neither SQLite nor PostgreSQL.
    #[error("unsupported database URL scheme (use sqlite:// or postgres://)")]
    UnsupportedUrl,
    /// Connecting failed.
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] sqlx::Error),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// The secret key is not this database's, or sealing the legacy passwords failed.
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// The pool and its dialect.
#[derive(Debug, Clone)]
pub struct Db {
    /// The connection pool.
    pub pool: AnyPool,
    /// The dialect.
    pub backend: Backend,
}

impl Db {
    /// Connects, configures each connection, runs the backend's migrations, checks that
    /// `secrets` is the database's key and seals any plaintext SIP passwords left by an older
    /// version (see the module documentation).
    ///
    /// `pg_schema` must already be validated as `[A-Za-z0-9_]+`; it is created if missing and
    /// set as the `search_path` on every connection.
    pub async fn open(
        url: &str,
        pg_schema: Option<&str>,
        max_connections: u32,
        secrets: &Secrets,
    ) -> Result<Db, DbOpenError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(DbOpenError::UnsupportedUrl);
        };
        let options: AnyConnectOptions = url.parse().map_err(DbOpenError::Connect)?;
        let schema = pg_schema.map(str::to_owned);
        if let (Backend::Postgres, Some(schema)) = (backend, &schema) {
            // Create the schema on a throwaway connection so that the pool's search_path is valid.
            let boot = AnyPoolOptions::new()
                .max_connections(1)
                .connect_with(options.clone())
                .await
                .map_err(DbOpenError::Connect)?;
            boot.execute(format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"").as_str())
                .await
                .map_err(DbOpenError::Connect)?;
            boot.close().await;
        }
        let pool_options = match backend {
            Backend::Sqlite => AnyPoolOptions::new().max_connections(1).min_connections(1),
            Backend::Postgres => AnyPoolOptions::new().max_connections(max_connections.max(2)),
        };
        let pool = pool_options
            .acquire_timeout(Duration::from_secs(60))
            .after_connect(move |conn, _meta| {
                let schema = schema.clone();
                Box::pin(async move {
                    match backend {
                        Backend::Sqlite => {
                            conn.execute("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;")
                                .await?;
                        }
                        Backend::Postgres => {
                            if let Some(schema) = schema {
                                conn.execute(format!("SET search_path TO \"{schema}\"").as_str())
                                    .await?;
                            }
                        }
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(DbOpenError::Connect)?;
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        let mut before_sealing = Migrator::new(Prefix(
            migrator
                .iter()
                .filter(|m| m.version < SEALED_FROM)
                .cloned()
                .collect(),
        ))
        .await
        .map_err(DbOpenError::Migrate)?;
        // A database that is already past the barrier has later migrations applied.
        before_sealing.set_ignore_missing(true);
        before_sealing
            .run(&pool)
            .await
            .map_err(DbOpenError::Migrate)?;
        let db = Db { pool, backend };
        secrets::check_key(&db, secrets, Clock::default().now()).await?;
        let sealed = secrets::seal_legacy_passwords(&db, secrets).await?;
        migrator.run(&db.pool).await.map_err(DbOpenError::Migrate)?;
        if sealed > 0 {
            db.compact_after_sealing()
                .await
                .map_err(DbOpenError::Connect)?;
        }
        Ok(db)
    }

    /// Rewrites the storage once after legacy passwords were sealed, so that the old plaintext
    /// does not linger in free pages (SQLite), the WAL (SQLite) or dead tuples and the dropped
    /// column's bytes (PostgreSQL, where `DROP COLUMN` leaves the data in place). Backups and
    /// PostgreSQL's own WAL archive taken before the upgrade still hold it.
    async fn compact_after_sealing(&self) -> Result<(), sqlx::Error> {
        match self.backend {
            Backend::Sqlite => {
                self.pool.execute("VACUUM").await?;
                self.pool.execute("PRAGMA wal_checkpoint(TRUNCATE)").await?;
            }
            Backend::Postgres => {
                self.pool.execute("VACUUM FULL accounts").await?;
            }
        }
        Ok(())
    }

    /// ` FOR UPDATE SKIP LOCKED` on PostgreSQL, nothing on SQLite (single connection).
    pub fn skip_locked(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }
}

/// Wall-clock seconds with an adjustable offset, so tests can expire OTPs without sleeping.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset: Arc<AtomicI64>,
}

impl Clock {
    /// Unix time in seconds.
    pub fn now(&self) -> i64 {
        let real = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        real + self.offset.load(Ordering::Relaxed)
    }

    /// Moves this clock forward (tests).
    pub fn advance(&self, secs: i64) {
        self.offset.fetch_add(secs, Ordering::Relaxed);
    }
}
