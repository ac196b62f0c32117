//! Mock FCM HTTP v1 through a real TLS + HTTP/2 client: the OAuth token endpoint, the
//! bearer check, message validation, dead tokens and injected 429/503 with Retry-After.

mod common;

use common::{connect, Answer, Client};
use http::{Method, Request, StatusCode};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use vigil_sim::mock::{
    FaultReason, Faults, FcmServiceAccount, MockClock, MockFcm, MockFcmConfig, MockFcmHandle,
    PushPriority, PushService, TestCa, GOOGLE_TOKEN_AUDIENCE,
};

const PROJECT: &str = "vigil-test";
const EMAIL: &str = "push@vigil-test.iam.gserviceaccount.com";
const FCM_TOKEN: &str = "dGVzdC10b2tlbg:APA91bHPRgkF3JUikC4ENAHEeMrd41Zxv3hVZjC9KtT8OvPVGJ";
const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

struct Fixture {
    ca: Arc<TestCa>,
    account: FcmServiceAccount,
    clock: MockClock,
    mock: MockFcmHandle,
}

async fn fixture(faults: Faults) -> Fixture {
    let ca = Arc::new(TestCa::generate().expect("CA"));
    let account = FcmServiceAccount::generate(PROJECT, EMAIL).expect("account");
    let clock = MockClock::real();
    let mut cfg = MockFcmConfig::new(ca.clone(), vec![account.trusted()]);
    cfg.clock = clock.clone();
    cfg.faults = faults;
    let mock = MockFcm::start(cfg).await.expect("mock starts");
    Fixture {
        ca,
        account,
        clock,
        mock,
    }
}

fn form(grant_type: &str, assertion: &str) -> Vec<u8> {
    let enc = |s: &str| s.replace(':', "%3A");
    format!("grant_type={}&assertion={}", enc(grant_type), assertion).into_bytes()
}

async fn token_request(c: &mut Client, body: &[u8]) -> Answer {
    let req = Request::builder()
        .method(Method::POST)
        .uri("https://localhost/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(())
        .expect("request");
    c.request(req, body).await.expect("answer")
}

impl Fixture {
    async fn client(&self) -> Client {
        connect(self.mock.addr, &self.ca).await
    }

    fn assertion(&self) -> String {
        let now = self.clock.unix_secs();
        self.account
            .grant_assertion(&self.mock.token_url(), now, now + 3600)
    }

    async fn access_token(&self, c: &mut Client) -> String {
        let a = token_request(c, &form(GRANT_TYPE, &self.assertion())).await;
        assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
        a.json()["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }
}

async fn send(c: &mut Client, project: &str, bearer: Option<&str>, body: &Value) -> Answer {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(format!(
            "https://localhost/v1/projects/{project}/messages:send"
        ))
        .header("content-type", "application/json");
    if let Some(b) = bearer {
        req = req.header("authorization", format!("Bearer {b}"));
    }
    c.request(req.body(()).expect("request"), body.to_string().as_bytes())
        .await
        .expect("answer")
}

fn wake(token: &str) -> Value {
    json!({"message": {"token": token, "data": {"type": "call", "call_id": "c1"},
        "android": {"priority": "HIGH", "ttl": "30s", "collapse_key": "call"}}})
}

/// Checks Google's error shape and returns (status, errorCode).
fn google_error(a: &Answer) -> (String, Option<String>) {
    let e = &a.json()["error"];
    assert_eq!(e["code"].as_u64(), Some(u64::from(a.status.as_u16())));
    assert!(e["message"].is_string());
    let code = e["details"].as_array().map(|d| {
        assert_eq!(
            d[0]["@type"],
            "type.googleapis.com/google.firebase.fcm.v1.FcmError"
        );
        d[0]["errorCode"].as_str().expect("errorCode").to_owned()
    });
    (e["status"].as_str().expect("status").to_owned(), code)
}

#[tokio::test]
async fn token_exchange_and_send_are_recorded_and_delivered() {
    let f = fixture(Faults::default()).await;
    let mut phones = f.mock.subscribe();
    let mut c = f.client().await;
    let a = token_request(&mut c, &form(GRANT_TYPE, &f.assertion())).await;
    assert_eq!(a.status, StatusCode::OK);
    let body = a.json();
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["token_type"], "Bearer");
    let token = body["access_token"].as_str().expect("token").to_owned();

    let r = send(&mut c, PROJECT, Some(&token), &wake(FCM_TOKEN)).await;
    assert_eq!(r.status, StatusCode::OK);
    let name = r.json()["name"].as_str().expect("name").to_owned();
    assert!(
        name.starts_with(&format!("projects/{PROJECT}/messages/")),
        "{name}"
    );

    let accepted = f.mock.accepted();
    assert_eq!(accepted.len(), 1);
    let p = &accepted[0];
    assert_eq!(
        (p.service, p.id.as_str(), p.token.as_str(), p.topic.as_str()),
        (PushService::Fcm, name.as_str(), FCM_TOKEN, PROJECT)
    );
    assert_eq!(p.priority, PushPriority::High);
    assert_eq!(p.ttl, Some(Duration::from_secs(30)));
    assert_eq!(p.collapse_id.as_deref(), Some("call"));
    assert_eq!(p.payload["data"]["call_id"], "c1");
    assert_eq!(phones.recv().await.expect("delivered"), *p);

    // Google's own audience is accepted too, and validate_only is answered but not delivered.
    let now = f.clock.unix_secs();
    let google = f
        .account
        .grant_assertion(GOOGLE_TOKEN_AUDIENCE, now, now + 600);
    assert_eq!(
        token_request(&mut c, &form(GRANT_TYPE, &google))
            .await
            .status,
        StatusCode::OK
    );
    let mut dry = wake(FCM_TOKEN);
    dry["validate_only"] = json!(true);
    assert_eq!(
        send(&mut c, PROJECT, Some(&token), &dry).await.status,
        StatusCode::OK
    );
    assert_eq!(f.mock.accepted().len(), 1);
    assert_eq!(f.mock.stats().tokens_issued, 2);
}

#[tokio::test]
async fn token_endpoint_rejects_bad_grants() {
    let f = fixture(Faults::default()).await;
    let mut c = f.client().await;
    let now = f.clock.unix_secs();
    let url = f.mock.token_url();
    let impostor = FcmServiceAccount::generate(PROJECT, EMAIL).expect("account");
    let stranger =
        FcmServiceAccount::generate(PROJECT, "other@x.iam.gserviceaccount.com").expect("account");
    let cases = [
        (
            "wrong grant type",
            form("client_credentials", &f.assertion()),
            "unsupported_grant_type",
        ),
        ("not a JWT", form(GRANT_TYPE, "abc"), "invalid_grant"),
        (
            "wrong key",
            form(GRANT_TYPE, &impostor.grant_assertion(&url, now, now + 3600)),
            "invalid_grant",
        ),
        (
            "unknown account",
            form(GRANT_TYPE, &stranger.grant_assertion(&url, now, now + 3600)),
            "invalid_grant",
        ),
        (
            "wrong audience",
            form(
                GRANT_TYPE,
                &f.account
                    .grant_assertion("https://example.com/token", now, now + 3600),
            ),
            "invalid_grant",
        ),
        (
            "lifetime over an hour",
            form(
                GRANT_TYPE,
                &f.account.grant_assertion(&url, now, now + 3601),
            ),
            "invalid_grant",
        ),
        (
            "already expired",
            form(
                GRANT_TYPE,
                &f.account.grant_assertion(&url, now - 7200, now - 3600),
            ),
            "invalid_grant",
        ),
        (
            "no scope",
            form(
                GRANT_TYPE,
                &f.account
                    .sign_claims(&json!({"iss": EMAIL, "aud": url, "iat": now, "exp": now + 60})),
            ),
            "invalid_scope",
        ),
    ];
    for (what, body, error) in cases {
        let a = token_request(&mut c, &body).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{what}");
        assert_eq!(a.json()["error"], error, "{what}");
        assert!(a.json()["error_description"].is_string(), "{what}");
    }
    assert_eq!(f.mock.stats().tokens_issued, 0);
}

#[tokio::test]
async fn bearer_token_is_checked() {
    let f = fixture(Faults::default()).await;
    let mut c = f.client().await;
    for bearer in [None, Some("ya29.made-up")] {
        let a = send(&mut c, PROJECT, bearer, &wake(FCM_TOKEN)).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        assert_eq!(google_error(&a), ("UNAUTHENTICATED".to_owned(), None));
    }
    let token = f.access_token(&mut c).await;
    assert_eq!(
        send(&mut c, PROJECT, Some(&token), &wake(FCM_TOKEN))
            .await
            .status,
        StatusCode::OK
    );
    // Another project: the account may not send for it.
    let a = send(&mut c, "someone-else", Some(&token), &wake(FCM_TOKEN)).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(
        google_error(&a),
        (
            "PERMISSION_DENIED".to_owned(),
            Some("SENDER_ID_MISMATCH".to_owned())
        )
    );
    // The token lasts an hour on the mock clock.
    f.clock.advance(Duration::from_secs(3599));
    assert_eq!(
        send(&mut c, PROJECT, Some(&token), &wake(FCM_TOKEN))
            .await
            .status,
        StatusCode::OK
    );
    f.clock.advance(Duration::from_secs(2));
    let a = send(&mut c, PROJECT, Some(&token), &wake(FCM_TOKEN)).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let fresh = f.access_token(&mut c).await;
    assert_eq!(
        send(&mut c, PROJECT, Some(&fresh), &wake(FCM_TOKEN))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(f.mock.accepted().len(), 3);
}

#[tokio::test]
async fn message_validation_matches_fcm() {
    let f = fixture(Faults::default()).await;
    let mut c = f.client().await;
    let token = f.access_token(&mut c).await;
    let big = "x".repeat(4097);
    let cases = [
        ("no message", json!({})),
        ("no token", json!({"message": {"data": {"a": "b"}}})),
        ("topic target", json!({"message": {"topic": "news"}})),
        (
            "bad token",
            json!({"message": {"token": "has spaces in it"}}),
        ),
        (
            "number in data",
            json!({"message": {"token": FCM_TOKEN, "data": {"n": 1}}}),
        ),
        (
            "lowercase priority",
            json!({"message": {"token": FCM_TOKEN, "android": {"priority": "high"}}}),
        ),
        (
            "ttl without unit",
            json!({"message": {"token": FCM_TOKEN, "android": {"ttl": "30"}}}),
        ),
        (
            "unknown field",
            json!({"message": {"token": FCM_TOKEN, "priority": "high"}}),
        ),
        (
            "unknown top-level field",
            json!({"message": {"token": FCM_TOKEN}, "dry_run": true}),
        ),
        (
            "payload over 4096",
            json!({"message": {"token": FCM_TOKEN, "data": {"k": big}}}),
        ),
    ];
    for (what, body) in cases {
        let a = send(&mut c, PROJECT, Some(&token), &body).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{what}");
        assert_eq!(
            google_error(&a),
            (
                "INVALID_ARGUMENT".to_owned(),
                Some("INVALID_ARGUMENT".to_owned())
            ),
            "{what}"
        );
    }
    // Not JSON at all.
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!(
            "https://localhost/v1/projects/{PROJECT}/messages:send"
        ))
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .expect("request");
    assert_eq!(
        c.request(req, b"{").await.expect("answer").status,
        StatusCode::BAD_REQUEST
    );
    // Just under the limit passes.
    let ok = json!({"message": {"token": FCM_TOKEN, "data": {"k": "x".repeat(4095)}}});
    assert_eq!(
        send(&mut c, PROJECT, Some(&token), &ok).await.status,
        StatusCode::OK
    );
    assert_eq!(f.mock.accepted().len(), 1);
    assert_eq!(
        f.mock.accepted()[0].priority,
        PushPriority::Normal,
        "FCM's default"
    );
}

#[tokio::test]
async fn dead_tokens_are_unregistered() {
    let f = fixture(Faults::default()).await;
    let mut c = f.client().await;
    let token = f.access_token(&mut c).await;
    f.mock.mark_dead(FCM_TOKEN);
    let a = send(&mut c, PROJECT, Some(&token), &wake(FCM_TOKEN)).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(
        google_error(&a),
        ("NOT_FOUND".to_owned(), Some("UNREGISTERED".to_owned()))
    );
    assert!(f.mock.accepted().is_empty());
}

#[tokio::test]
async fn injected_quota_and_unavailable_carry_retry_after() {
    let f = fixture(Faults {
        error_rate: vec![
            (0.1, FaultReason::Fcm429 { retry_after: 60 }),
            (
                0.1,
                FaultReason::Fcm503 {
                    retry_after: Some(5),
                },
            ),
        ],
        seed: 3,
        ..Faults::default()
    })
    .await;
    let mut c = f.client().await;
    let token = f.access_token(&mut c).await;
    let (mut q, mut u, mut ok) = (0, 0, 0);
    for _ in 0..1000 {
        let a = send(&mut c, PROJECT, Some(&token), &wake(FCM_TOKEN)).await;
        match a.status.as_u16() {
            200 => ok += 1,
            429 => {
                assert_eq!(
                    google_error(&a),
                    (
                        "RESOURCE_EXHAUSTED".to_owned(),
                        Some("QUOTA_EXCEEDED".to_owned())
                    )
                );
                assert_eq!(a.headers["retry-after"], "60");
                q += 1;
            }
            503 => {
                assert_eq!(
                    google_error(&a),
                    ("UNAVAILABLE".to_owned(), Some("UNAVAILABLE".to_owned()))
                );
                assert_eq!(a.headers["retry-after"], "5");
                u += 1;
            }
            s => panic!("unexpected status {s}"),
        }
    }
    // 1000 draws at 10 % each: expect 100, allow ~4 standard deviations.
    assert!((60..=140).contains(&q), "429s: {q}");
    assert!((60..=140).contains(&u), "503s: {u}");
    assert_eq!(f.mock.accepted().len(), ok);
    // Faults change at run time: none from now on.
    f.mock.set_faults(Faults::default());
    for _ in 0..50 {
        assert_eq!(
            send(&mut c, PROJECT, Some(&token), &wake(FCM_TOKEN))
                .await
                .status,
            StatusCode::OK
        );
    }
    assert_eq!(f.mock.stats().injected_faults as usize, q + u);
}
