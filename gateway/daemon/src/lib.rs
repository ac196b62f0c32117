//! The Vigil gateway daemon: the async shell around the sans-IO core in `vigil-proto`.
//!
//! The shell owns sockets, TLS, timers and tasks; it moves bytes and deadlines in and out of
//! the core and never makes protocol decisions of its own.
//!
//! - [`config`]: TOML file, flags and `VIGIL_*` environment variables over embedded defaults.
//! - [`tls`]: server certificate (configured or generated for development) and client trust.
//! - [`transport`]: UDP, TCP and TLS listeners and connections, the connection table, limits.
//! - [`driver`]: the task that owns the transaction layer and runs the core's event loop.
//! - [`regdriver`]: the registration engine inside that task, wired to the API and the store.
//! - [`received`]: the `received`/`rport` stamp on the top Via of each request.
//! - [`salvage`]: enough of an unframable UDP request to answer it with 400.
//! - [`uas`]: the minimal user agent server answering requests until the relay exists.
//! - [`api`]: the HTTPS credential intake API (axum), rate limits, OpenAPI, metrics.
//! - [`bindings`]: the in-memory binding table (papaya), by device id and Contact token.
//! - [`store`]: devices persisted in SQLite or PostgreSQL, behind a group-commit writer.
//! - [`crypto`]: AES-256-GCM sealing of passwords and push tokens at rest.
//! - [`gateway`]: start-up and graceful shutdown of the whole.

pub mod api;
pub mod bindings;
pub mod config;
pub mod crypto;
pub mod driver;
pub mod gateway;
pub mod push;
pub mod received;
pub mod regdriver;
pub mod resolve;
pub mod salvage;
pub mod store;
pub mod tls;
pub mod transport;
pub mod uas;

pub use config::{Config, ListenSpec};
pub use gateway::{Gateway, ShutdownReport, StartError};
