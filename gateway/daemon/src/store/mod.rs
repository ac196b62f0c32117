//! Persistence of devices: a [`Store`] trait with an SQLite backend (the embedded default, a
//! file in the data directory) and a PostgreSQL backend (for clusters), plus the group-commit
//! [`WriteBatcher`] in front of either.
//!
//! Queries are runtime-checked (`sqlx::query` + `bind`): the build needs no database. Each
//! backend has its own migrations (`migrations/sqlite`, `migrations/postgres`) embedded in the
//! binary. The store sees secrets only sealed by [`crate::crypto::SecretBox`].
//!
//! Durability: SQLite runs in WAL mode with `synchronous = FULL`, so a committed transaction
//! survives a crash (kill -9 or power loss); PostgreSQL commits synchronously by default. The
//! API answers a request only after its write's transaction committed (see [`batch`]).

mod batch;
mod packed;
mod sql;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

pub use batch::{BatchConfig, WriteBatcher};
pub use sql::{PgStore, SqliteStore};

/// A boxed future, so that [`Store`] can be used as `dyn Store`.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// One device as stored: what its app handed over, sealed where secret, and its bookkeeping.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    /// The app's device id (URL path segment of the API).
    pub device_id: String,
    /// The engine's binding id (random, positive).
    pub binding_id: i64,
    /// The Contact user part that routes incoming requests to this device.
    pub contact_token: String,
    /// SIP username (user part of the address of record).
    pub username: String,
    /// Digest username, when it differs.
    pub auth_username: Option<String>,
    /// The SIP password, sealed.
    pub password_enc: Vec<u8>,
    /// SIP domain.
    pub domain: String,
    /// Outbound proxy (`host[:port]`).
    pub outbound_proxy: Option<String>,
    /// `udp`, `tcp` or `tls`.
    pub transport: Option<String>,
    /// Display name for the From header.
    pub display_name: Option<String>,
    /// `apns`, `fcm` or `quic`.
    pub push_kind: String,
    /// The push tokens (JSON), sealed.
    pub push_enc: Vec<u8>,
    /// APNs bundle id or FCM project id.
    pub push_topic: Option<String>,
    /// APNs `sandbox` or `production`.
    pub push_env: Option<String>,
    /// The app's id.
    pub app_id: String,
    /// The app's version.
    pub app_version: String,
    /// Preferred registration expiry (seconds).
    pub expires: i64,
    /// SHA-256 of the device secret returned by the first PUT.
    pub secret_hash: Vec<u8>,
    /// Digest of the PUT body, so that the same body again changes nothing.
    pub body_hash: Vec<u8>,
    /// Last PUT, Unix milliseconds (idle expiry).
    pub last_put_ms: i64,
    /// Last known registration state (`registering`, `registered`, ...).
    pub state: String,
    /// Last final status from the upstream (0 if none).
    pub last_status: i64,
}

impl std::fmt::Debug for DeviceRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Personal data and secrets stay out of logs.
        f.debug_struct("DeviceRecord")
            .field("binding_id", &self.binding_id)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl DeviceRecord {
    /// The record's fields, borrowed.
    pub fn view(&self) -> DeviceView<'_> {
        DeviceView {
            device_id: &self.device_id,
            binding_id: self.binding_id,
            contact_token: &self.contact_token,
            username: &self.username,
            auth_username: self.auth_username.as_deref(),
            password_enc: &self.password_enc,
            domain: &self.domain,
            outbound_proxy: self.outbound_proxy.as_deref(),
            transport: self.transport.as_deref(),
            display_name: self.display_name.as_deref(),
            push_kind: &self.push_kind,
            push_enc: &self.push_enc,
            push_topic: self.push_topic.as_deref(),
            push_env: self.push_env.as_deref(),
            app_id: &self.app_id,
            app_version: &self.app_version,
            expires: self.expires,
            secret_hash: &self.secret_hash,
            body_hash: &self.body_hash,
            last_put_ms: self.last_put_ms,
            state: &self.state,
            last_status: self.last_status,
        }
    }
}

/// A stored device's fields borrowed from wherever they were read: a [`DeviceRecord`], or a
/// page of devices as SQLite hands it over in one buffer. Start-up builds each binding from
/// a view, so loading a device allocates only the binding itself, not the twenty fields of
/// a record that would be dropped right after. The fields mean what [`DeviceRecord`]'s do.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct DeviceView<'a> {
    pub device_id: &'a str,
    pub binding_id: i64,
    pub contact_token: &'a str,
    pub username: &'a str,
    pub auth_username: Option<&'a str>,
    pub password_enc: &'a [u8],
    pub domain: &'a str,
    pub outbound_proxy: Option<&'a str>,
    pub transport: Option<&'a str>,
    pub display_name: Option<&'a str>,
    pub push_kind: &'a str,
    pub push_enc: &'a [u8],
    pub push_topic: Option<&'a str>,
    pub push_env: Option<&'a str>,
    pub app_id: &'a str,
    pub app_version: &'a str,
    pub expires: i64,
    pub secret_hash: &'a [u8],
    pub body_hash: &'a [u8],
    pub last_put_ms: i64,
    pub state: &'a str,
    pub last_status: i64,
}

impl DeviceView<'_> {
    /// An owned copy.
    pub fn to_record(&self) -> DeviceRecord {
        let o = |v: Option<&str>| v.map(str::to_owned);
        DeviceRecord {
            device_id: self.device_id.to_owned(),
            binding_id: self.binding_id,
            contact_token: self.contact_token.to_owned(),
            username: self.username.to_owned(),
            auth_username: o(self.auth_username),
            password_enc: self.password_enc.to_vec(),
            domain: self.domain.to_owned(),
            outbound_proxy: o(self.outbound_proxy),
            transport: o(self.transport),
            display_name: o(self.display_name),
            push_kind: self.push_kind.to_owned(),
            push_enc: self.push_enc.to_vec(),
            push_topic: o(self.push_topic),
            push_env: o(self.push_env),
            app_id: self.app_id.to_owned(),
            app_version: self.app_version.to_owned(),
            expires: self.expires,
            secret_hash: self.secret_hash.to_vec(),
            body_hash: self.body_hash.to_vec(),
            last_put_ms: self.last_put_ms,
            state: self.state.to_owned(),
            last_status: self.last_status,
        }
    }
}

impl std::fmt::Debug for DeviceView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // As DeviceRecord's: personal data and secrets stay out of logs.
        f.debug_struct("DeviceView")
            .field("binding_id", &self.binding_id)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// Receives one page of devices from [`Store::load_page`], in `device_id` order.
pub type PageSink<'s> = dyn FnMut(&[DeviceView<'_>]) + Send + 's;

/// One write; a batch of them commits in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WriteOp {
    /// Insert or replace the whole device.
    Upsert(Box<DeviceRecord>),
    /// The same body was PUT again: only the idle clock moves.
    Touch {
        /// The device.
        device_id: String,
        /// Unix milliseconds.
        last_put_ms: i64,
    },
    /// The registration engine reported a new state.
    SetState {
        /// The device.
        device_id: String,
        /// State name.
        state: &'static str,
        /// Last final status (0 if none).
        last_status: i64,
    },
    /// A push token was reported dead: replace the sealed push tokens, unless the device
    /// was PUT with another body meanwhile (its `body_hash` changed), whose tokens win.
    SetPush {
        /// The device.
        device_id: String,
        /// The body digest the new tokens were derived from.
        body_hash: Vec<u8>,
        /// The remaining push tokens, sealed (empty: none left).
        push_enc: Vec<u8>,
    },
    /// Forget the device.
    Delete {
        /// The device.
        device_id: String,
    },
}

/// Why a store operation failed. The database's own error is reduced to text so that no
/// driver type leaks through this API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database could not be opened or migrated.
    #[error("cannot open {backend} store: {detail}")]
    Open {
        /// `sqlite` or `postgres`.
        backend: &'static str,
        /// What the driver said.
        detail: String,
    },
    /// A query or commit failed.
    #[error("{backend} store failed while {during}: {detail}")]
    Query {
        /// `sqlite` or `postgres`.
        backend: &'static str,
        /// What was being done.
        during: &'static str,
        /// What the driver said.
        detail: String,
    },
    /// A stored row does not decode (a column has an unexpected type or value).
    #[error("{backend} store holds an undecodable row: {detail}")]
    Corrupt {
        /// `sqlite` or `postgres`.
        backend: &'static str,
        /// What did not decode.
        detail: String,
    },
    /// The writer task is gone (shutdown).
    #[error("the store writer has stopped")]
    Closed,
}

/// Devices per [`Store::load_page`] at start-up.
pub const LOAD_PAGE: usize = 2_000;

/// A device store; see the module documentation. Object-safe, so the gateway holds an
/// `Arc<dyn Store>` chosen by configuration.
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
    /// Applies `ops` in order in one transaction: all of them are durable when this returns
    /// `Ok`, none are on error.
    fn apply<'a>(&'a self, ops: &'a [WriteOp]) -> StoreFuture<'a, ()>;
    /// One device.
    fn get<'a>(&'a self, device_id: &'a str) -> StoreFuture<'a, Option<DeviceRecord>>;
    /// Hands `each` up to `limit` devices in `device_id` order, starting after `after` (from
    /// the first when `None`), as views into the page as read; returns how many and the last
    /// one's id. Start-up rebuilds the binding table and the engine page by page, so a
    /// million stored devices never sit in memory as pages and bindings at once.
    fn load_page<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: usize,
        each: &'a mut PageSink<'_>,
    ) -> StoreFuture<'a, (usize, Option<String>)>;
    /// Every device in `device_id` order, through [`for_each_page`].
    fn load_all(&self) -> StoreFuture<'_, Vec<DeviceRecord>> {
        Box::pin(async move {
            let mut all = Vec::new();
            for_each_page(self, |page| {
                all.extend(page.iter().map(DeviceView::to_record))
            })
            .await?;
            Ok(all)
        })
    }
    /// Number of devices.
    fn count(&self) -> StoreFuture<'_, u64>;
    /// Closes the connections gracefully.
    fn close(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// Hands `each` every stored device, a page of up to [`LOAD_PAGE`] at a time in `device_id`
/// order ([`Store::load_page`] from where the previous page ended).
pub async fn for_each_page<S: Store + ?Sized>(
    store: &S,
    mut each: impl FnMut(&[DeviceView<'_>]) + Send,
) -> Result<(), StoreError> {
    let mut after: Option<String> = None;
    loop {
        let (n, last) = store
            .load_page(after.as_deref(), LOAD_PAGE, &mut each)
            .await?;
        match last {
            Some(id) if n >= LOAD_PAGE => after = Some(id),
            _ => return Ok(()),
        }
    }
}

/// Opens the configured store: PostgreSQL when `url` is a `postgres://` URL, otherwise
/// SQLite at `url` (a path) or at `data_dir/vigil.db`. Runs the backend's migrations.
pub async fn open(url: Option<&str>, data_dir: &Path) -> Result<Arc<dyn Store>, StoreError> {
    match url {
        Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
            Ok(Arc::new(PgStore::connect(u, None).await?))
        }
        Some(path) => Ok(Arc::new(SqliteStore::open(Path::new(path)).await?)),
        None => Ok(Arc::new(
            SqliteStore::open(&data_dir.join("vigil.db")).await?,
        )),
    }
}
