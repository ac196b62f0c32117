//! Individual sign-up over HTTP on both backends: provisioning, 200 concurrent sign-ups,
//! CAPTCHA, OTP lockout/expiry/throttling, and malformed input.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;

use common::{Backend, Harness, CAPTCHA};
use serde_json::json;
use vigil_billing::util::{hmac_hex, sip_ha1};

both_backends!(
    signup_provisions_account,
    concurrent_signups_get_distinct_dids,
    otp_locks_after_five_wrong_attempts,
    otp_expires_after_five_minutes,
    resend_throttled_per_number,
    throttled_per_client_address,
    captcha_is_single_use_and_expires,
    malformed_input_is_json_4xx,
    openapi_documents_routes,
);

async fn signup_provisions_account(b: Backend) {
    let h = Harness::start(b).await;
    let dids = h.import_dids(100, 3).await;
    let v = h.signup("+12065552453").await;
    let did = v["did"].as_str().unwrap();
    assert!(dids.iter().any(|d| d == did), "{did} not from inventory");
    assert_eq!(v["account_id"].as_str().unwrap(), &did[1..]);
    assert_eq!(v["username"].as_str().unwrap(), &did[1..]);
    assert_eq!(v["caller_id"], did);
    assert_eq!(v["domain"], "sip.test.example");
    assert_eq!(v["proxy"], "proxy.test.example:5061;transport=tls");
    assert_eq!(v["gateway_intake_url"], "https://gw.test.example/v1/intake");
    assert_eq!(v["created"], true);
    let password = v["password"].as_str().unwrap();
    assert!(password.len() >= 20);

    // Alias, ha1 and hashed OTP at rest.
    let (alias, ha1): (String, String) =
        sqlx::query_as("SELECT alias, ha1 FROM accounts WHERE id = $1")
            .bind(&did[1..])
            .fetch_one(&h.state.db.pool)
            .await
            .unwrap();
    assert_eq!(alias, "12065552453@pstn");
    assert_eq!(ha1, sip_ha1(&did[1..], "sip.test.example", password).0);

    // The session token and the SIP credentials both authenticate the app.
    let r = h.get("/v1/balance", Some(&common::bearer(&v))).await;
    assert_eq!(r.status, 200);
    use base64::Engine;
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{password}", &did[1..]));
    assert_eq!(
        h.get("/v1/balance", Some(&format!("Basic {basic}")))
            .await
            .status,
        200
    );
    let wrong = base64::engine::general_purpose::STANDARD.encode(format!("{}:nope", &did[1..]));
    h.get("/v1/balance", Some(&format!("Basic {wrong}")))
        .await
        .expect_error(401, "unauthorized");

    // Signing up again with the same mobile returns the same account, not a new DID.
    h.state.clock.advance(31);
    let again = h.signup("+12065552453").await;
    assert_eq!(again["did"], v["did"]);
    assert_eq!(again["password"], v["password"]);
    assert_eq!(again["created"], false);
    let (free,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM dids WHERE account_id IS NULL")
        .fetch_one(&h.state.db.pool)
        .await
        .unwrap();
    assert_eq!(free, 2);
    h.finish().await;
}

async fn concurrent_signups_get_distinct_dids(b: Backend) {
    let h = Harness::start_with(b, |c| {
        c.otp.per_client_per_hour = 10_000;
        c.max_connections = 16;
    })
    .await;
    let dids: HashSet<String> = h.import_dids(1000, 200).await.into_iter().collect();
    let h = std::sync::Arc::new(h);
    let mut tasks = Vec::new();
    for i in 0..200u32 {
        let h = h.clone();
        tasks.push(tokio::spawn(async move {
            h.signup(&format!("+4477009{i:05}")).await["did"]
                .as_str()
                .unwrap()
                .to_owned()
        }));
    }
    let mut got = HashSet::new();
    for t in tasks {
        let did = t.await.unwrap();
        assert!(dids.contains(&did), "{did} not from the inventory");
        assert!(got.insert(did.clone()), "{did} handed out twice");
    }
    assert_eq!(got.len(), 200);
    // The inventory is now empty: the next sign-up is refused, not given a duplicate.
    let r = h.start_signup("+447700999999").await;
    assert_eq!(r.status, 202);
    let code = h.sms_code("+447700999999").unwrap();
    h.post(
        "/v1/signup/verify",
        None,
        json!({ "mobile": "+447700999999", "code": code }),
    )
    .await
    .expect_error(503, "no_free_did");
    std::sync::Arc::try_unwrap(h)
        .ok()
        .expect("all tasks done")
        .finish()
        .await;
}

async fn otp_locks_after_five_wrong_attempts(b: Backend) {
    let h = Harness::start(b).await;
    h.import_dids(200, 1).await;
    let m = "+12065550001";
    assert_eq!(h.start_signup(m).await.status, 202);
    let code = h.sms_code(m).unwrap();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..5 {
        h.post(
            "/v1/signup/verify",
            None,
            json!({ "mobile": m, "code": wrong }),
        )
        .await
        .expect_error(400, "otp_invalid");
    }
    // The right code no longer works, and the error is the same generic one.
    h.post(
        "/v1/signup/verify",
        None,
        json!({ "mobile": m, "code": code }),
    )
    .await
    .expect_error(400, "otp_invalid");
    // The code is stored only as a MAC.
    let (mac,): (String,) = sqlx::query_as("SELECT code_mac FROM otps WHERE mobile = $1")
        .bind("12065550001")
        .fetch_one(&h.state.db.pool)
        .await
        .unwrap();
    assert!(!mac.contains(&code));
    assert_eq!(
        mac,
        hmac_hex(
            h.state.secrets.mac_key(),
            &["otp", "signup", "12065550001", &code]
        )
    );
    // A fresh code (after the resend interval) works.
    h.state.clock.advance(31);
    assert_eq!(h.start_signup(m).await.status, 202);
    let code2 = h.sms_code(m).unwrap();
    let r = h
        .post(
            "/v1/signup/verify",
            None,
            json!({ "mobile": m, "code": code2 }),
        )
        .await;
    assert_eq!(r.status, 200);
    // Used once: replay fails.
    h.post(
        "/v1/signup/verify",
        None,
        json!({ "mobile": m, "code": code2 }),
    )
    .await
    .expect_error(400, "otp_invalid");
    // Unknown number: same error.
    h.post(
        "/v1/signup/verify",
        None,
        json!({ "mobile": "+12065550999", "code": "123456" }),
    )
    .await
    .expect_error(400, "otp_invalid");
    h.finish().await;
}

async fn otp_expires_after_five_minutes(b: Backend) {
    let h = Harness::start(b).await;
    h.import_dids(300, 1).await;
    let m = "+12065550002";
    assert_eq!(h.start_signup(m).await.status, 202);
    let code = h.sms_code(m).unwrap();
    assert_eq!(code.len(), 6);
    h.state.clock.advance(301);
    h.post(
        "/v1/signup/verify",
        None,
        json!({ "mobile": m, "code": code }),
    )
    .await
    .expect_error(400, "otp_invalid");
    h.finish().await;
}

async fn resend_throttled_per_number(b: Backend) {
    let h = Harness::start(b).await;
    let m = "+12065550003";
    assert_eq!(h.start_signup(m).await.status, 202);
    let r = h.start_signup(m).await;
    r.expect_error(429, "rate_limited");
    assert!(r.headers.contains_key("retry-after"));
    // After the resend interval: allowed, up to 5 per hour.
    for _ in 0..4 {
        h.state.clock.advance(31);
        assert_eq!(h.start_signup(m).await.status, 202);
    }
    h.state.clock.advance(31);
    h.start_signup(m).await.expect_error(429, "rate_limited");
    // Another number is not affected.
    assert_eq!(h.start_signup("+12065550004").await.status, 202);
    h.finish().await;
}

async fn throttled_per_client_address(b: Backend) {
    let h = Harness::start_with(b, |c| c.otp.per_client_per_hour = 3).await;
    for i in 0..3 {
        assert_eq!(h.start_signup(&format!("+1206555010{i}")).await.status, 202);
    }
    h.start_signup("+12065550109")
        .await
        .expect_error(429, "rate_limited");
    h.state.clock.advance(3601);
    assert_eq!(h.start_signup("+12065550109").await.status, 202);
    h.finish().await;
}

async fn captcha_is_single_use_and_expires(b: Backend) {
    // No dev answer: the real CAPTCHA path.
    let h = Harness::start_with(b, |c| c.enable_dev(None)).await;
    let r = h.get("/v1/captcha", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], "image/png");
    assert_eq!(&r.body[..8], b"\x89PNG\r\n\x1a\n");
    let id = r.headers["x-captcha-id"].to_str().unwrap().to_owned();
    // The dev answer is not accepted without --dev-captcha-answer.
    h.post(
        "/v1/signup",
        None,
        json!({ "mobile": "+12065550005", "captcha_id": id, "captcha_answer": CAPTCHA }),
    )
    .await
    .expect_error(400, "captcha_invalid");
    // A known answer (planted with the server key) works once.
    let now = h.state.now();
    let plant = |id: &str, expires: i64| {
        let mac = hmac_hex(h.state.secrets.mac_key(), &["captcha", id, "731904"]);
        sqlx::query("INSERT INTO captchas (id, answer_mac, expires_at) VALUES ($1, $2, $3)")
            .bind(id.to_owned())
            .bind(mac)
            .bind(expires)
    };
    plant("known", now + 300)
        .execute(&h.state.db.pool)
        .await
        .unwrap();
    let body =
        json!({ "mobile": "+12065550005", "captcha_id": "known", "captcha_answer": "731904" });
    assert_eq!(h.post("/v1/signup", None, body.clone()).await.status, 202);
    h.state.clock.advance(31);
    h.post("/v1/signup", None, body)
        .await
        .expect_error(400, "captcha_invalid");
    // An expired one fails even with the right answer.
    plant("old", now + 10)
        .execute(&h.state.db.pool)
        .await
        .unwrap();
    h.state.clock.advance(60);
    h.post(
        "/v1/signup",
        None,
        json!({ "mobile": "+12065550006", "captcha_id": "old", "captcha_answer": "731904" }),
    )
    .await
    .expect_error(400, "captcha_invalid");
    h.finish().await;
}

async fn malformed_input_is_json_4xx(b: Backend) {
    let h = Harness::start(b).await;
    let v = h
        .post(
            "/v1/signup",
            None,
            json!({ "mobile": "12345", "captcha_answer": CAPTCHA }),
        )
        .await
        .expect_error(400, "invalid_e164");
    assert_eq!(v["field"], "mobile");
    h.post("/v1/signup", None, json!({ "captcha_answer": CAPTCHA }))
        .await
        .expect_error(400, "invalid_body");
    h.post(
        "/v1/signup",
        None,
        json!({ "mobile": "+12065550007", "captcha_answer": CAPTCHA, "extra": 1 }),
    )
    .await
    .expect_error(400, "invalid_body");
    let raw = http::Request::post(format!("http://{}/v1/signup", h.addr))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            b"{not json",
        )))
        .unwrap();
    h.send(raw).await.expect_error(400, "invalid_json");
    let raw = http::Request::post(format!("http://{}/v1/signup", h.addr))
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            b"mobile=1",
        )))
        .unwrap();
    h.send(raw)
        .await
        .expect_error(415, "unsupported_media_type");
    h.get("/v1/nope", None).await.expect_error(404, "not_found");
    h.get("/v1/signup", None)
        .await
        .expect_error(405, "method_not_allowed");
    h.get("/v1/contacts", None)
        .await
        .expect_error(401, "unauthorized");
    h.get("/v1/calls?limit=abc", Some("Bearer x"))
        .await
        .expect_error(401, "unauthorized");
    h.post(
        "/admin/v1/customers",
        Some("Bearer wrong"),
        json!({ "name": "x" }),
    )
    .await
    .expect_error(401, "unauthorized");
    h.post("/internal/v1/cdrs", Some("Bearer wrong"), json!({}))
        .await
        .expect_error(401, "unauthorized");
    h.post(
        "/v1/signup/verify",
        None,
        json!({ "mobile": "+12065550007", "code": "12ab" }),
    )
    .await
    .expect_error(400, "otp_invalid");
    h.finish().await;
}

async fn openapi_documents_routes(b: Backend) {
    let h = Harness::start(b).await;
    let r = h.get("/openapi.json", None).await;
    assert_eq!(r.status, 200);
    let doc = r.json();
    assert_eq!(doc["openapi"], "3.1.0");
    for (method, path) in vigil_billing::api::openapi::documented() {
        assert!(doc["paths"][path][method].is_object(), "{method} {path}");
        // Every documented route exists: it does not answer 404 route-not-found.
        let m: http::Method = method.to_uppercase().parse().unwrap();
        let concrete = path.replace("{id}", "x").replace("{number}", "12065550000");
        let resp = h.request(m, &concrete, None, None, &[]).await;
        let not_route = resp.status != 404 || resp.json()["message"] != "route not found";
        assert!(not_route, "{method} {path} is not routed");
    }
    h.finish().await;
}
