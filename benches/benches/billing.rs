//! vigil-billing benchmarks over real HTTP on 127.0.0.1:
//! - `signup/sqlite`: full individual sign-ups (start, read the code, verify and provision) per
//!   second on the embedded SQLite backend;
//! - `contacts_5000/*`: the contact list of a 5,000-extension PBX (full list from the snapshot,
//!   full list rebuilt from the database, a search, and the
//!   `If-None-Match` → 304 path the app's periodic refresh takes). Goal: p99 ≤ 10 ms.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use vigil_billing::accounts::{self, Kind, NewAccount};
use vigil_billing::util::E164;
use vigil_billing::{build_state, dids, spawn, AppState, Config};

struct Svc {
    addr: SocketAddr,
    state: AppState,
    client: Client<HttpConnector, Full<Bytes>>,
    dir: tempfile::TempDir,
}

async fn start() -> Svc {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_owned(),
        admin_token: Some("bench-admin".into()),
        ..Config::default()
    };
    cfg.otp.per_client_per_hour = u32::MAX;
    cfg.enable_dev(Some("1234".into()));
    let state = build_state(cfg).await.unwrap();
    let running = spawn(state).await.unwrap();
    Svc {
        addr: running.addr,
        state: running.state,
        client: Client::builder(TokioExecutor::new()).build_http(),
        dir,
    }
}

impl Svc {
    async fn call(
        &self,
        method: &str,
        path: &str,
        auth: Option<&str>,
        body: Option<Value>,
        inm: Option<&str>,
    ) -> (u16, http::HeaderMap, Bytes) {
        let mut b = http::Request::builder()
            .method(method)
            .uri(format!("http://{}{}", self.addr, path));
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        if let Some(e) = inm {
            b = b.header("if-none-match", e);
        }
        let body = match body {
            Some(v) => {
                b = b.header("content-type", "application/json");
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        let resp = self
            .client
            .request(b.body(Full::new(body)).unwrap())
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        (
            status,
            headers,
            resp.into_body().collect().await.unwrap().to_bytes(),
        )
    }

    /// The last SMS code for `to`, read from the tail of the dev sink.
    fn code_for(&self, to: &str) -> String {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = std::fs::File::open(self.dir.path().join("sms.jsonl")).unwrap();
        let len = f.metadata().unwrap().len();
        f.seek(SeekFrom::Start(len.saturating_sub(4096))).unwrap();
        let mut tail = String::new();
        f.read_to_string(&mut tail).unwrap();
        let needle = format!("\"to\":\"{to}\"");
        let line = tail
            .lines()
            .rev()
            .find(|l| l.contains(&needle))
            .expect("code sent");
        let v: Value = serde_json::from_str(line).unwrap();
        v["text"]
            .as_str()
            .unwrap()
            .chars()
            .filter(char::is_ascii_digit)
            .collect()
    }
}

fn signup(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let svc = rt.block_on(start());
    let mut next = 0u64;
    let mut g = c.benchmark_group("signup");
    g.throughput(Throughput::Elements(1));
    g.sample_size(10);
    g.bench_function("sqlite", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let numbers: Vec<E164> = (0..iters)
                    .map(|i| E164::parse(&format!("+1555{:07}", next + i)).unwrap())
                    .collect();
                dids::import(&svc.state.db, "bench", "std", &numbers, svc.state.now())
                    .await
                    .unwrap();
                let start = Instant::now();
                for _ in 0..iters {
                    let mobile = format!("+4470{:08}", next);
                    next += 1;
                    let (s, _, _) = svc
                        .call(
                            "POST",
                            "/v1/signup",
                            None,
                            Some(json!({ "mobile": mobile, "captcha_answer": "1234" })),
                            None,
                        )
                        .await;
                    assert_eq!(s, 202);
                    let code = svc.code_for(&mobile);
                    let (s, _, _) = svc
                        .call(
                            "POST",
                            "/v1/signup/verify",
                            None,
                            Some(json!({ "mobile": mobile, "code": code })),
                            None,
                        )
                        .await;
                    assert_eq!(s, 200);
                }
                start.elapsed()
            })
        })
    });
    g.finish();
}

fn contacts(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let svc = rt.block_on(start());
    let token = rt.block_on(async {
        let st = &svc.state;
        let now = st.now();
        let numbers: Vec<E164> = (0..5000)
            .map(|i| E164::parse(&format!("+1666{i:07}")).unwrap())
            .collect();
        dids::import(&st.db, "pbx", "std", &numbers, now)
            .await
            .unwrap();
        let (customer,): (i64,) = sqlx::query_as(
            "INSERT INTO customers (name, created_at) VALUES ('big', $1) RETURNING id",
        )
        .bind(now)
        .fetch_one(&st.db.pool)
        .await
        .unwrap();
        let product = accounts::product_id(&st.db, "default").await.unwrap();
        let mut first = None;
        for i in 0..5000u32 {
            let new = NewAccount {
                kind: Kind::Pbx,
                customer_id: Some(customer),
                product_id: product,
                did: None,
                pricing: None,
                mobile: E164::parse(&format!("+4420{i:08}")).unwrap(),
                email: None,
                first_name: (i % 3 != 0).then(|| format!("First{i}")),
                last_name: (i % 3 == 1).then(|| format!("Last{i}")),
                extension: Some(format!("{}", 10_000 + i)),
                extension_name: (i % 2 == 0).then(|| format!("Desk {i}")),
            };
            let creds = accounts::provision(&st.db, &st.cfg.sip.domain, &new, now)
                .await
                .unwrap();
            first.get_or_insert(creds.account_id);
        }
        let token = accounts::create_session(&st.db, first.as_deref().unwrap(), now)
            .await
            .unwrap();
        format!("Bearer {token}")
    });
    let (s, headers, body) = rt.block_on(svc.call("GET", "/v1/contacts", Some(&token), None, None));
    assert_eq!(s, 200);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["contacts"].as_array().unwrap().len(), 5000);
    let etag = headers["etag"].to_str().unwrap().to_owned();

    // Criterion reports means; the goal is a p99, so measure that directly once.
    rt.block_on(async {
        for (label, inm) in [
            ("full_list", None),
            ("not_modified_304", Some(etag.as_str())),
        ] {
            let mut hist = hdrhistogram::Histogram::<u64>::new(3).unwrap();
            for _ in 0..500 {
                let t = Instant::now();
                let _ = svc
                    .call("GET", "/v1/contacts", Some(&token), None, inm)
                    .await;
                hist.record(t.elapsed().as_micros() as u64).unwrap();
            }
            println!(
                "contacts_5000/{label}: p50 {} us, p99 {} us, max {} us (500 requests)",
                hist.value_at_quantile(0.5),
                hist.value_at_quantile(0.99),
                hist.max()
            );
        }
    });
    let mut g = c.benchmark_group("contacts_5000");
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("full_list", |b| {
        b.iter(|| {
            rt.block_on(async {
                let (s, _, body) = svc
                    .call("GET", "/v1/contacts", Some(&token), None, None)
                    .await;
                assert_eq!(s, 200);
                body.len()
            })
        })
    });
    g.bench_function("full_list_rebuilt", |b| {
        // The first request after an admin change: the snapshot is rebuilt from the database.
        b.iter(|| {
            svc.state.contacts_cache.lock().unwrap().clear();
            rt.block_on(async {
                let (s, _, body) = svc
                    .call("GET", "/v1/contacts", Some(&token), None, None)
                    .await;
                assert_eq!(s, 200);
                body.len()
            })
        })
    });
    g.bench_function("search", |b| {
        b.iter(|| {
            rt.block_on(async {
                let (s, _, _) = svc
                    .call("GET", "/v1/contacts?q=desk%2012", Some(&token), None, None)
                    .await;
                assert_eq!(s, 200);
            })
        })
    });
    g.bench_function("not_modified_304", |b| {
        b.iter(|| {
            rt.block_on(async {
                let (s, _, _) = svc
                    .call("GET", "/v1/contacts", Some(&token), None, Some(&etag))
                    .await;
                assert_eq!(s, 304);
            })
        })
    });
    g.finish();
}

criterion_group!(benches, signup, contacts);
criterion_main!(benches);
