//! Test harness: starts vigil-billing on 127.0.0.1:0 against SQLite (a temp dir) or PostgreSQL
//! (a fresh schema per test) and talks to it over real HTTP.
//!
//! PostgreSQL comes from `VIGIL_TEST_PG_URL` (default postgres://postgres@127.0.0.1:5432/test);
//! if it cannot be reached the test fails: a skipped backend would hide regressions.
//!
//! Schemas are named `vbt_<unix seconds>_<random>` and each test's connections carry the schema
//! name as `application_name`. [`PgSchema`] drops its schema when the test ends, also when it
//! panics (its `Drop` ends the test's connections, which a panicking test never closed, and drops
//! the schema on a thread of its own); the first harness of a process also drops schemas of
//! earlier runs that are older than [`STALE_AFTER_SECS`] and have no connection left, so a run
//! killed outright leaves nothing behind for long. Schemas of tests running right now, in this
//! process or another, are never touched.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Connection, Executor};
use vigil_billing::{build_state, spawn, AppState, Config};

pub const ADMIN: &str = "admin-test-token";
pub const INTERNAL: &str = "internal-test-token";
pub const CAPTCHA: &str = "424242";
/// A fixed secret key for tests that run the service outside dev mode.
pub const TEST_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
/// Test schemas older than this with no open connection are leftovers of an earlier run.
pub const STALE_AFTER_SECS: u64 = 1800;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub fn pg_url() -> String {
    std::env::var("VIGIL_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// The PostgreSQL URL with the schema name as `application_name`, so that the connections of a
/// test can be found (and ended) by its schema.
pub fn pg_url_for(schema: &str) -> String {
    let url = pg_url();
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}application_name={schema}")
}

/// Runs each named `async fn name(Backend)` once per backend.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() { super::$name($crate::common::Backend::Sqlite).await }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() { super::$name($crate::common::Backend::Postgres).await }
            )*
        }
    };
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A PostgreSQL schema owned by one test, dropped when this guard goes away.
#[derive(Debug)]
pub struct PgSchema {
    pub name: String,
    dropped: bool,
}

impl PgSchema {
    /// A fresh name (the schema itself is created by whoever connects first); cleans up stale
    /// schemas of earlier runs first, once per process.
    pub async fn new() -> PgSchema {
        static CLEANED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
        CLEANED
            .get_or_init(|| async {
                match drop_stale_schemas().await {
                    Ok(0) => {}
                    Ok(n) => eprintln!("dropped {n} stale test schema(s) of earlier runs"),
                    Err(e) => eprintln!("warning: cleaning stale test schemas failed: {e}"),
                }
            })
            .await;
        PgSchema {
            name: format!(
                "vbt_{}_{}",
                unix_now(),
                hex::encode(rand::random::<[u8; 5]>())
            ),
            dropped: false,
        }
    }

    /// Drops the schema now (the normal end of a test).
    pub async fn drop_now(mut self) {
        drop_schema(&self.name).await.unwrap_or_else(|e| {
            panic!("dropping test schema {}: {e}", self.name);
        });
        self.dropped = true;
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        // Reached when a test panicked (or forgot `finish`). Drop may run inside the test's
        // runtime, where blocking on a future is not allowed: use a thread with its own.
        let name = self.name.clone();
        let outcome = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?
                .block_on(drop_schema(&name))
                .map_err(|e| e.to_string())
        })
        .join();
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!(
                "warning: could not drop test schema {}: {e} (the next run removes it)",
                self.name
            ),
            Err(_) => eprintln!("warning: dropping test schema {} panicked", self.name),
        }
    }
}

/// Ends the connections still using `schema` (a panicking test never closed its pool, and an
/// open transaction would hold the DROP up) and drops it.
async fn drop_schema(schema: &str) -> Result<(), sqlx::Error> {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&pg_url()).await?;
    conn.execute("SET lock_timeout = '20s'").await?;
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = $1 AND pid <> pg_backend_pid()",
    )
    .bind(schema)
    .execute(&mut conn)
    .await?;
    conn.execute(format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE").as_str())
        .await?;
    conn.close().await
}

/// Whether `name` is a test schema created more than [`STALE_AFTER_SECS`] before `now`.
pub fn is_stale_name(name: &str, now: u64) -> bool {
    let Some(rest) = name.strip_prefix("vbt_") else {
        return false;
    };
    let Some((secs, tag)) = rest.split_once('_') else {
        return false;
    };
    let well_formed = !tag.is_empty() && tag.bytes().all(|b| b.is_ascii_hexdigit());
    match secs.parse::<u64>() {
        Ok(t) if well_formed => now.saturating_sub(t) > STALE_AFTER_SECS,
        _ => false,
    }
}

/// Drops test schemas of earlier runs: named by [`PgSchema`], older than [`STALE_AFTER_SECS`]
/// and with no connection open under their name.
pub async fn drop_stale_schemas() -> Result<usize, sqlx::Error> {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&pg_url()).await?;
    let names: Vec<(String,)> =
        sqlx::query_as("SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'vbt\\_%'")
            .fetch_all(&mut conn)
            .await?;
    let busy: Vec<(String,)> = sqlx::query_as(
        "SELECT DISTINCT application_name::text FROM pg_stat_activity WHERE application_name LIKE 'vbt\\_%'",
    )
    .fetch_all(&mut conn)
    .await?;
    conn.close().await?;
    let now = unix_now();
    let mut dropped = 0;
    for (name,) in names {
        if is_stale_name(&name, now) && !busy.iter().any(|(b,)| *b == name) {
            drop_schema(&name).await?;
            dropped += 1;
        }
    }
    Ok(dropped)
}

/// Where one test's service keeps its data: a temp dir, and on PostgreSQL a schema of its own.
#[derive(Debug)]
pub struct TestDb {
    pub backend: Backend,
    pub schema: Option<PgSchema>,
    pub tmp: tempfile::TempDir,
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        let schema = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(PgSchema::new().await),
        };
        TestDb {
            backend,
            schema,
            tmp: tempfile::tempdir().unwrap(),
        }
    }

    /// The SQLite file (in the temp dir) or the PostgreSQL server.
    pub fn database_url(&self) -> String {
        match &self.schema {
            None => format!(
                "sqlite://{}?mode=rwc",
                self.tmp.path().join("billing.sqlite").display()
            ),
            Some(s) => pg_url_for(&s.name),
        }
    }

    pub fn schema_name(&self) -> Option<&str> {
        self.schema.as_ref().map(|s| s.name.as_str())
    }

    /// The configuration the harness starts the service with (dev mode).
    pub fn config(&self) -> Config {
        let mut cfg = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: self.tmp.path().to_owned(),
            admin_token: Some(ADMIN.to_owned()),
            internal_token: Some(INTERNAL.to_owned()),
            database_url: self.database_url(),
            pg_schema: self.schema_name().map(str::to_owned),
            ..Config::default()
        };
        if self.backend == Backend::Postgres {
            cfg.max_connections = 10;
        }
        cfg.sip.domain = "sip.test.example".to_owned();
        cfg.sip.proxy = "proxy.test.example:5061;transport=tls".to_owned();
        cfg.gateway_intake_url = "https://gw.test.example/v1/intake".to_owned();
        cfg.enable_dev(Some(CAPTCHA.to_owned()));
        cfg
    }

    /// A pool on the test's database outside the service (creating the schema if needed).
    pub async fn raw_pool(&self) -> AnyPool {
        sqlx::any::install_default_drivers();
        let schema = self.schema_name().map(str::to_owned);
        if let Some(s) = &schema {
            let mut conn = sqlx::AnyConnection::connect(&pg_url_for(s)).await.unwrap();
            conn.execute(format!("CREATE SCHEMA IF NOT EXISTS \"{s}\"").as_str())
                .await
                .unwrap();
            conn.close().await.unwrap();
        }
        AnyPoolOptions::new()
            .max_connections(1)
            .after_connect(move |conn, _| {
                let schema = schema.clone();
                Box::pin(async move {
                    if let Some(s) = schema {
                        conn.execute(format!("SET search_path TO \"{s}\"").as_str())
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(&self.database_url())
            .await
            .unwrap()
    }

    /// Drops the schema (if any) now.
    pub async fn finish(self) {
        if let Some(s) = self.schema {
            s.drop_now().await;
        }
    }
}

pub struct Harness {
    pub addr: SocketAddr,
    pub internal_addr: Option<SocketAddr>,
    pub state: AppState,
    pub backend: Backend,
    client: Client<HttpConnector, Full<Bytes>>,
    // Last: dropped after everything above, and on a panic it removes the schema.
    pub db: TestDb,
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    /// Asserts a JSON error with this status and code.
    pub fn expect_error(&self, status: u16, code: &str) -> Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        let v = self.json();
        assert_eq!(v["error"], code, "body: {v}");
        assert!(v["message"].is_string(), "body: {v}");
        v
    }
}

impl Harness {
    pub async fn start(backend: Backend) -> Harness {
        Self::start_with(backend, |_| {}).await
    }

    pub async fn start_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Harness {
        Self::start_on(TestDb::new(backend).await, tweak).await
    }

    /// Starts the service on a prepared test database.
    pub async fn start_on(db: TestDb, tweak: impl FnOnce(&mut Config)) -> Harness {
        let mut cfg = db.config();
        tweak(&mut cfg);
        let backend = db.backend;
        let state = build_state(cfg).await.unwrap_or_else(|e| {
            panic!(
                "cannot start vigil-billing on {backend:?} (is PostgreSQL at {} up?): {e:#}",
                pg_url()
            )
        });
        let running = spawn(state).await.unwrap();
        let client = Client::builder(TokioExecutor::new()).build_http();
        Harness {
            addr: running.addr,
            internal_addr: running.internal_addr,
            state: running.state,
            backend,
            client,
            db,
        }
    }

    /// Closes the pool and drops the PostgreSQL schema. Call at the end of every test (a test
    /// that panics before it gets here is cleaned up by [`PgSchema`]'s `Drop`).
    pub async fn finish(self) {
        self.state.db.pool.close().await;
        self.db.finish().await;
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        auth: Option<&str>,
        body: Option<Value>,
        extra: &[(&str, &str)],
    ) -> Resp {
        let mut b = http::Request::builder()
            .method(method)
            .uri(format!("http://{}{}", self.addr, path));
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        for (k, v) in extra {
            b = b.header(*k, *v);
        }
        let body = match body {
            Some(v) => {
                b = b.header("content-type", "application/json");
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        self.send(b.body(Full::new(body)).unwrap()).await
    }

    pub async fn send(&self, req: http::Request<Full<Bytes>>) -> Resp {
        let resp = self.client.request(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Resp {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str, auth: Option<&str>) -> Resp {
        self.request(Method::GET, path, auth, None, &[]).await
    }
    pub async fn post(&self, path: &str, auth: Option<&str>, body: Value) -> Resp {
        self.request(Method::POST, path, auth, Some(body), &[])
            .await
    }
    pub async fn put(&self, path: &str, auth: Option<&str>, body: Value) -> Resp {
        self.request(Method::PUT, path, auth, Some(body), &[]).await
    }
    pub async fn admin_post(&self, path: &str, body: Value) -> Resp {
        self.post(path, Some(&format!("Bearer {ADMIN}")), body)
            .await
    }
    pub async fn internal_post(&self, path: &str, body: Value) -> Resp {
        self.post(path, Some(&format!("Bearer {INTERNAL}")), body)
            .await
    }

    /// Imports `count` DIDs +1555000NNNN starting at `first`.
    pub async fn import_dids(&self, first: u32, count: u32) -> Vec<String> {
        let numbers: Vec<String> = (first..first + count)
            .map(|i| format!("+1555{i:07}"))
            .collect();
        let r = self
            .admin_post(
                "/admin/v1/dids",
                json!({ "batch": "test", "pricing": "standard", "numbers": numbers }),
            )
            .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json()["imported"], count);
        numbers
    }

    fn last_code(&self, file: &str, to: &str) -> Option<String> {
        let text = std::fs::read_to_string(self.db.tmp.path().join(file)).ok()?;
        text.lines()
            .rev()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["to"] == to)
            .and_then(|v| {
                v["text"]
                    .as_str()
                    .map(|t| t.chars().filter(char::is_ascii_digit).collect())
            })
    }

    /// The last code SMSed to `mobile` (`+E.164`).
    pub fn sms_code(&self, mobile: &str) -> Option<String> {
        self.last_code("sms.jsonl", mobile)
    }

    /// The last code emailed to `email`.
    pub fn email_code(&self, email: &str) -> Option<String> {
        self.last_code("email.jsonl", email)
    }

    pub async fn start_signup(&self, mobile: &str) -> Resp {
        self.post(
            "/v1/signup",
            None,
            json!({ "mobile": mobile, "captcha_answer": CAPTCHA }),
        )
        .await
    }

    /// Full individual sign-up; returns the provisioning response.
    pub async fn signup(&self, mobile: &str) -> Value {
        let r = self.start_signup(mobile).await;
        assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
        let code = self.sms_code(mobile).expect("an SMS was written");
        let r = self
            .post(
                "/v1/signup/verify",
                None,
                json!({ "mobile": mobile, "code": code }),
            )
            .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        r.json()
    }

    /// Creates a PBX customer and returns its id.
    pub async fn customer(&self, name: &str) -> i64 {
        let r = self
            .admin_post("/admin/v1/customers", json!({ "name": name }))
            .await;
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        r.json()["id"].as_i64().unwrap()
    }
}

pub fn bearer(resp: &Value) -> String {
    format!("Bearer {}", resp["session_token"].as_str().unwrap())
}
