//! The intake API over real HTTPS on 127.0.0.1:0 (reqwest + rustls trusting the development
//! certificate): PUT/GET/DELETE, idempotency, auth, every class of bad input, rate limits,
//! the OpenAPI document, metrics, HTTP/2, the idle sweep, and the engine seam (commands out,
//! events in).

// Tests panic on the unexpected: unwrap is the assertion.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use vigil_gateway::api::registrar::{apply_event, ChannelRegistrar, RegCommand};
use vigil_gateway::api::server::ApiListener;
use vigil_gateway::api::{router, sweep_idle, ApiState};
use vigil_gateway::bindings::BindingTable;
use vigil_gateway::config::{ApiConfig, TlsFiles};
use vigil_gateway::crypto::SecretBox;
use vigil_gateway::store::{BatchConfig, SqliteStore, Store, WriteBatcher};
use vigil_gateway::tls::TlsContext;
use vigil_proto::reg::{BindingId, FailReason, RegEvent};

const VOIP: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";

struct Api {
    base: String,
    client: Client,
    h1: Client,
    state: Arc<ApiState>,
    store: Arc<dyn Store>,
    commands: UnboundedReceiver<RegCommand>,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Api {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn start(tweak: impl FnOnce(&mut ApiConfig)) -> Api {
    let dir = tempfile::tempdir().unwrap();
    let tls = TlsContext::load(&TlsFiles::default(), dir.path()).unwrap();
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&dir.path().join("vigil.db"))
            .await
            .unwrap(),
    );
    let batcher = WriteBatcher::spawn(store.clone(), BatchConfig::default());
    let (registrar, commands) = ChannelRegistrar::new();
    let mut config = ApiConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        rate_per_sec: 0.0,
        ..ApiConfig::default()
    };
    tweak(&mut config);
    let state = ApiState::new(
        Arc::new(BindingTable::new()),
        batcher,
        SecretBox::from_key(&[3; 32]),
        Arc::new(registrar),
        config.clone(),
    );
    let listener = ApiListener::bind(config.listen, &tls.server, Duration::from_secs(5))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(listener.serve(router(state.clone()), shutdown.clone(), TaskTracker::new()));
    let client = |alpn: Vec<Vec<u8>>| {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(tls.cert_chain[0].clone()).unwrap();
        let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        cfg.alpn_protocols = alpn;
        Client::builder()
            .use_preconfigured_tls(cfg)
            .build()
            .unwrap()
    };
    Api {
        base: format!("https://localhost:{}", addr.port()),
        client: client(vec![b"h2".to_vec(), b"http/1.1".to_vec()]),
        h1: client(vec![b"http/1.1".to_vec()]),
        state,
        store,
        commands,
        shutdown,
        _dir: dir,
    }
}

fn body(password: &str) -> Value {
    json!({
        "sip": {"username": "alice", "password": password, "domain": "sip.example.com", "display_name": "Alice",
                "transport": "tcp", "outbound_proxy": "sip:sbc.example.com:5061;transport=tls;lr"},
        "push": {"apns": {"voip_token": VOIP, "bundle_id": "com.example.app", "environment": "sandbox"}},
        "app": {"id": "com.example.app", "version": "1.0"},
        "expires": 600
    })
}

impl Api {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn put(&self, id: &str, body: &Value, bearer: Option<&str>) -> (StatusCode, Value) {
        let mut req = self
            .client
            .put(self.url(&format!("/v1/devices/{id}")))
            .json(body);
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        let resp = req.send().await.unwrap();
        (resp.status(), resp.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, id: &str, bearer: Option<&str>) -> (StatusCode, Value) {
        let mut req = self.client.get(self.url(&format!("/v1/devices/{id}")));
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        let resp = req.send().await.unwrap();
        (resp.status(), resp.json().await.unwrap_or(Value::Null))
    }

    async fn raw_put(&self, id: &str, ctype: &str, body: Vec<u8>) -> (StatusCode, Value) {
        let resp = self
            .client
            .put(self.url(&format!("/v1/devices/{id}")))
            .header("content-type", ctype)
            .body(body)
            .send()
            .await
            .unwrap();
        (resp.status(), resp.json().await.unwrap_or(Value::Null))
    }

    fn next_command(&mut self) -> RegCommand {
        self.commands.try_recv().expect("a command for the engine")
    }
}

#[tokio::test]
async fn put_get_delete_with_engine_events() {
    let mut api = start(|_| {}).await;
    let (status, doc) = api.put("phone-1", &body("pw1"), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{doc}");
    assert_eq!(doc["state"], "registering");
    assert_eq!(doc["changed"], true);
    let secret = doc["device_secret"]
        .as_str()
        .expect("first PUT returns the secret")
        .to_owned();
    let RegCommand::Upsert(binding) = api.next_command() else {
        panic!("expected Upsert")
    };
    let token = binding.token;

    // Durable before the answer.
    let stored = api.store.get("phone-1").await.unwrap().expect("stored");
    assert_eq!(stored.contact_token, token.to_string());
    assert!(!String::from_utf8_lossy(&stored.password_enc).contains("pw1"));

    let (status, doc) = api.get("phone-1", Some(&secret)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["state"], "registering");

    // The engine reports a 200 OK: GET shows it.
    let now = Instant::now();
    let ev = RegEvent::Registered {
        id: BindingId(token.0),
        expires: 300,
        refresh_at: now + Duration::from_secs(200),
    };
    apply_event(&api.state.table, &api.state.batcher, &ev, now);
    let (_, doc) = api.get("phone-1", Some(&secret)).await;
    assert_eq!(doc["state"], "registered");
    assert_eq!(doc["granted_expires"], 300);
    assert!(doc["next_refresh_at"].is_string(), "{doc}");
    assert!(doc.get("upstream_status").is_none());

    // Same body again: nothing changes, no command.
    let (status, doc) = api.put("phone-1", &body("pw1"), Some(&secret)).await;
    assert_eq!((status, &doc["changed"]), (StatusCode::OK, &json!(false)));
    assert_eq!(doc["state"], "registered");
    assert!(doc.get("device_secret").is_none());
    assert!(
        api.commands.try_recv().is_err(),
        "an unchanged body does not re-register"
    );

    // Changed body: update with the same token.
    let mut changed = body("pw1");
    changed["expires"] = json!(900);
    let (status, doc) = api.put("phone-1", &changed, Some(&secret)).await;
    assert_eq!(
        (status, &doc["changed"]),
        (StatusCode::ACCEPTED, &json!(true))
    );
    let RegCommand::Upsert(b2) = api.next_command() else {
        panic!("expected Upsert")
    };
    assert_eq!(b2.token, token, "the contact token survives an update");
    assert_eq!(b2.expires, 900);
    assert_eq!(
        api.store.get("phone-1").await.unwrap().unwrap().expires,
        900
    );

    // The upstream refuses for good.
    let ev = RegEvent::Failed {
        id: BindingId(token.0),
        status: 403,
        reason: FailReason::Forbidden,
    };
    apply_event(&api.state.table, &api.state.batcher, &ev, Instant::now());
    let (_, doc) = api.get("phone-1", Some(&secret)).await;
    assert_eq!(doc["state"], "failed");
    assert_eq!(doc["upstream_status"], 403);
    assert_eq!(doc["reason"], "forbidden by the SIP server");

    let resp = api
        .client
        .delete(api.url("/v1/devices/phone-1"))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(matches!(api.next_command(), RegCommand::Remove(t) if t == token));
    assert_eq!(
        api.get("phone-1", Some(&secret)).await.0,
        StatusCode::NOT_FOUND
    );
    assert!(api.store.get("phone-1").await.unwrap().is_none());
}

#[tokio::test]
async fn auth_401_and_404() {
    let api = start(|_| {}).await;
    let (_, doc) = api.put("phone-2", &body("pw2"), None).await;
    let secret = doc["device_secret"].as_str().unwrap().to_owned();

    assert_eq!(
        api.get("nobody", Some(&secret)).await.0,
        StatusCode::NOT_FOUND
    );
    let (status, doc) = api.get("phone-2", None).await;
    assert_eq!(
        (status, doc["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );
    assert_eq!(
        api.get("phone-2", Some("AAAA")).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        api.get("phone-2", Some("not base64!")).await.0,
        StatusCode::UNAUTHORIZED
    );

    // The same SIP credentials authorize too: Basic for GET, the body for PUT.
    let basic = |u: &str, p: &str| {
        api.client
            .get(api.url("/v1/devices/phone-2"))
            .basic_auth(u, Some(p))
    };
    assert_eq!(
        basic("alice", "pw2").send().await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        basic("alice", "wrong").send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        basic("mallory", "pw2").send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        api.put("phone-2", &body("pw2"), None).await.0,
        StatusCode::OK
    );
    // A new password without the secret is someone else.
    assert_eq!(
        api.put("phone-2", &body("pw-other"), None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        api.put("phone-2", &body("pw-other"), Some("AAAA")).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        api.put("phone-2", &body("pw-other"), Some(&secret)).await.0,
        StatusCode::ACCEPTED
    );

    let resp = api
        .client
        .delete(api.url("/v1/devices/phone-2"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = api
        .client
        .delete(api.url("/v1/devices/ghost"))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn every_class_of_bad_input_is_a_json_4xx() {
    let api = start(|c| c.max_body_bytes = 4096).await;
    let expect =
        |(status, doc): (StatusCode, Value), want: StatusCode, code: &str, field: Option<&str>| {
            assert_eq!(status, want, "{doc}");
            assert_eq!(doc["error"], code, "{doc}");
            assert_eq!(doc["field"].as_str(), field, "{doc}");
            assert!(
                doc["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{doc}"
            );
        };
    let j = "application/json";
    expect(
        api.raw_put("d", j, b"{\"sip\": ".to_vec()).await,
        StatusCode::BAD_REQUEST,
        "malformed_json",
        None,
    );
    expect(
        api.raw_put("d", "text/plain", b"{}".to_vec()).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        None,
    );
    expect(
        api.raw_put("d", j, vec![b' '; 5000]).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        None,
    );

    let mut b = body("pw");
    b["sip"]["pasword"] = json!("typo");
    expect(
        api.put("d", &b, None).await,
        StatusCode::BAD_REQUEST,
        "unknown_field",
        Some("pasword"),
    );
    let mut b = body("pw");
    b["extra"] = json!(1);
    expect(
        api.put("d", &b, None).await,
        StatusCode::BAD_REQUEST,
        "unknown_field",
        Some("extra"),
    );
    let mut b = body("pw");
    b["sip"].as_object_mut().unwrap().remove("domain");
    expect(
        api.put("d", &b, None).await,
        StatusCode::BAD_REQUEST,
        "missing_field",
        Some("domain"),
    );
    let mut b = body("pw");
    b["expires"] = json!("soon");
    expect(
        api.put("d", &b, None).await,
        StatusCode::BAD_REQUEST,
        "invalid_type",
        None,
    );

    let cases: &[(&str, Value, &str)] = &[
        ("/sip/domain", json!("bad domain.com"), "sip.domain"),
        ("/sip/domain", json!("example.com:99999"), "sip.domain"),
        ("/sip/username", json!("al ice"), "sip.username"),
        ("/sip/password", json!(""), "sip.password"),
        (
            "/sip/outbound_proxy",
            json!("sip:user@proxy.example.com"),
            "sip.outbound_proxy",
        ),
        (
            "/sip/outbound_proxy",
            json!("sip:proxy;transport=sctp"),
            "sip.outbound_proxy",
        ),
        ("/sip/transport", json!("sctp"), "sip.transport"),
        ("/sip/display_name", json!("a\"b"), "sip.display_name"),
        (
            "/push/apns/voip_token",
            json!("zz".repeat(32)),
            "push.apns.voip_token",
        ),
        (
            "/push/apns/voip_token",
            json!("abc"),
            "push.apns.voip_token",
        ),
        (
            "/push/apns/environment",
            json!("staging"),
            "push.apns.environment",
        ),
        ("/app/version", json!(""), "app.version"),
        ("/expires", json!(5), "expires"),
    ];
    for (ptr, value, field) in cases {
        let mut b = body("pw");
        *b.pointer_mut(ptr).unwrap() = value.clone();
        expect(
            api.put("d", &b, None).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some(field),
        );
    }
    let mut b = body("pw");
    b["push"] = json!({"fcm": {"token": "tok en", "project_id": "p"}});
    expect(
        api.put("d", &b, None).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        Some("push.fcm.token"),
    );
    expect(
        api.put("bad%20id", &body("pw"), None).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        Some("device_id"),
    );
    expect(
        api.get("x", None).await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );
    assert_eq!(api.state.table.len(), 0, "nothing bad was stored");
    assert_eq!(api.store.count().await.unwrap(), 0);
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let api = start(|c| {
        c.rate_per_sec = 0.5;
        c.rate_burst = 3;
    })
    .await;
    for _ in 0..3 {
        assert_eq!(api.get("x", None).await.0, StatusCode::NOT_FOUND);
    }
    let resp = api
        .client
        .get(api.url("/v1/devices/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    let doc: Value = resp.json().await.unwrap();
    assert_eq!(doc["error"], "rate_limited");
}

#[tokio::test]
async fn openapi_metrics_and_both_http_versions() {
    let api = start(|_| {}).await;
    let resp = api
        .client
        .get(api.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2, "ALPN picks h2");
    let doc: Value = resp.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let path = &doc["paths"]["/v1/devices/{device_id}"];
    for m in ["put", "get", "delete"] {
        assert!(path[m].is_object(), "{m} documented");
    }
    assert!(doc["components"]["schemas"]["PutDevice"].is_object());

    let resp = api.h1.get(api.url("/openapi.json")).send().await.unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
    assert_eq!(resp.status(), StatusCode::OK);

    api.put("m1", &body("pw"), None).await;
    let text = api
        .client
        .get(api.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("vigil_bindings{state=\"registering\"}"),
        "{text}"
    );
    assert!(text.contains("vigil_api_requests_total"), "{text}");
    // A Prometheus histogram with buckets (they add up across a cluster's nodes).
    assert!(
        text.contains("vigil_api_request_duration_seconds_bucket{"),
        "{text}"
    );
    assert!(text.contains("le=\"0.005\""), "{text}");
    assert!(!text.contains("pw"), "no secrets in metrics");
}

#[tokio::test]
async fn idle_devices_are_unregistered_and_forgotten() {
    let mut api = start(|c| c.idle_expiry_secs = 1).await;
    api.put("old", &body("pw"), None).await;
    let RegCommand::Upsert(b) = api.next_command() else {
        panic!()
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (_, doc) = api.put("fresh", &body("pw"), None).await;
    let fresh_secret = doc["device_secret"].as_str().unwrap().to_owned();
    api.next_command();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(sweep_idle(&api.state).await, 1, "only the idle device");
    assert!(matches!(api.next_command(), RegCommand::Remove(t) if t == b.token));
    assert!(api.state.table.get("old").is_none());
    assert!(api.store.get("old").await.unwrap().is_none());
    assert_eq!(
        api.get("fresh", Some(&fresh_secret)).await.0,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_puts_share_commits() {
    let api = Arc::new(start(|_| {}).await);
    let before = api.state.batcher.commits();
    let n = 300;
    let mut tasks = Vec::new();
    for i in 0..n {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            api.put(&format!("c-{i}"), &body("pw"), None).await.0
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::ACCEPTED);
    }
    let commits = api.state.batcher.commits() - before;
    println!("{n} concurrent HTTPS PUTs were made durable in {commits} commits");
    assert_eq!(api.store.count().await.unwrap(), n as u64);
    assert!(commits * 5 <= n as u64, "{commits} commits for {n} PUTs");
}
