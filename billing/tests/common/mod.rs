//! Test harness: starts vigil-billing on 127.0.0.1:0 against SQLite (a temp dir) or PostgreSQL
//! (a fresh schema per test, dropped afterwards) and talks to it over real HTTP.
//!
//! PostgreSQL comes from `VIGIL_TEST_PG_URL` (default postgres://postgres@127.0.0.1:5432/test);
//! if it cannot be reached the test fails: a skipped backend would hide regressions.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use sqlx::Executor;
use vigil_billing::{build_state, spawn, AppState, Config};

pub const ADMIN: &str = "admin-test-token";
pub const INTERNAL: &str = "internal-test-token";
pub const CAPTCHA: &str = "424242";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub fn pg_url() -> String {
    std::env::var("VIGIL_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
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

pub struct Harness {
    pub addr: SocketAddr,
    pub internal_addr: Option<SocketAddr>,
    pub state: AppState,
    pub backend: Backend,
    schema: Option<String>,
    _tmp: tempfile::TempDir,
    client: Client<HttpConnector, Full<Bytes>>,
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
        let tmp = tempfile::tempdir().unwrap();
        let mut cfg = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: tmp.path().to_owned(),
            admin_token: Some(ADMIN.to_owned()),
            internal_token: Some(INTERNAL.to_owned()),
            ..Config::default()
        };
        cfg.sip.domain = "sip.test.example".to_owned();
        cfg.sip.proxy = "proxy.test.example:5061;transport=tls".to_owned();
        cfg.gateway_intake_url = "https://gw.test.example/v1/intake".to_owned();
        cfg.enable_dev(Some(CAPTCHA.to_owned()));
        let schema = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => {
                let s = format!("vbt_{}", hex::encode(rand::random::<[u8; 6]>()));
                cfg.database_url = pg_url();
                cfg.pg_schema = Some(s.clone());
                cfg.max_connections = 10;
                Some(s)
            }
        };
        tweak(&mut cfg);
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
            schema,
            _tmp: tmp,
            client,
        }
    }

    /// Drops the PostgreSQL schema. Call at the end of every test.
    pub async fn finish(self) {
        self.state.db.pool.close().await;
        if let Some(schema) = &self.schema {
            sqlx::any::install_default_drivers();
            let pool = sqlx::AnyPool::connect(&pg_url()).await.unwrap();
            pool.execute(format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE").as_str())
                .await
                .unwrap();
            pool.close().await;
        }
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
        let text = std::fs::read_to_string(self._tmp.path().join(file)).ok()?;
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
