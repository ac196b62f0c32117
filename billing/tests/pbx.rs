//! PBX users over HTTP on both backends: admin-created accounts, sign-in by emailed code,
//! the contact list (display rule, search, ETag/304, changes-since) and smart contacts.
#![allow(clippy::unwrap_used)]

mod common;

use common::{bearer, Backend, Harness, ADMIN, CAPTCHA};
use serde_json::{json, Value};
use vigil_billing::util::E164;

both_backends!(
    pbx_signin_by_email,
    signin_does_not_reveal_registration,
    contacts_display_rule_and_etag,
    contacts_search_and_changes_since,
    smart_contacts_match_and_rate_limit,
);

async fn pbx_account(h: &Harness, customer: i64, mobile: &str, extra: Value) -> Value {
    let mut body = json!({ "customer_id": customer, "mobile": mobile });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let r = h.admin_post("/admin/v1/accounts", body).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

async fn signin(h: &Harness, mobile: &str, email: &str) -> Value {
    let r = h
        .post(
            "/v1/signin",
            None,
            json!({ "mobile": mobile, "captcha_answer": CAPTCHA }),
        )
        .await;
    assert_eq!(r.status, 202);
    let code = h.email_code(email).expect("an email was written");
    let r = h
        .post(
            "/v1/signin/verify",
            None,
            json!({ "mobile": mobile, "code": code }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

async fn pbx_signin_by_email(b: Backend) {
    let h = Harness::start(b).await;
    h.import_dids(500, 2).await;
    let abc = h.customer("ABC").await;
    let created = pbx_account(&h, abc, "+12065552453", json!({
        "did": "+15550000501", "email": "john@abc.example", "first_name": "John", "last_name": "Doe",
        "extension": "101", "extension_name": "Sales",
    }))
    .await;
    assert_eq!(created["did"], "+15550000501");
    let v = signin(&h, "+12065552453", "john@abc.example").await;
    assert_eq!(v["account_id"], "15550000501");
    assert_eq!(v["password"], created["password"]);
    assert_eq!(v["caller_id"], "+15550000501");
    assert_eq!(v["gateway_intake_url"], "https://gw.test.example/v1/intake");
    // No SMS was sent for a PBX sign-in.
    assert!(h.sms_code("+12065552453").is_none());
    // A sign-up code cannot be used to sign in, and sign-up of a PBX number is refused.
    h.state.clock.advance(31);
    assert_eq!(h.start_signup("+12065552453").await.status, 202);
    let sms = h.sms_code("+12065552453").unwrap();
    h.post(
        "/v1/signin/verify",
        None,
        json!({ "mobile": "+12065552453", "code": sms }),
    )
    .await
    .expect_error(400, "otp_invalid");
    h.post(
        "/v1/signup/verify",
        None,
        json!({ "mobile": "+12065552453", "code": sms }),
    )
    .await
    .expect_error(409, "pbx_account");
    // The DID given explicitly is now taken.
    let r = h
        .admin_post(
            "/admin/v1/accounts",
            json!({ "customer_id": abc, "mobile": "+12065559999", "did": "+15550000501" }),
        )
        .await;
    r.expect_error(409, "did_unavailable");
    // The same alias twice is refused.
    let r = h
        .admin_post(
            "/admin/v1/accounts",
            json!({ "customer_id": abc, "mobile": "+12065552453" }),
        )
        .await;
    r.expect_error(409, "alias_taken");
    h.finish().await;
}

async fn signin_does_not_reveal_registration(b: Backend) {
    let h = Harness::start(b).await;
    h.import_dids(600, 1).await;
    let abc = h.customer("ABC").await;
    pbx_account(&h, abc, "+12065550100", json!({ "email": "a@abc.example" })).await;
    let known = h
        .post(
            "/v1/signin",
            None,
            json!({ "mobile": "+12065550100", "captcha_answer": CAPTCHA }),
        )
        .await;
    let unknown = h
        .post(
            "/v1/signin",
            None,
            json!({ "mobile": "+12065550101", "captcha_answer": CAPTCHA }),
        )
        .await;
    assert_eq!(known.status, unknown.status);
    assert_eq!(known.body, unknown.body);
    assert!(h.email_code("a@abc.example").is_some());
    let a = h
        .post(
            "/v1/signin/verify",
            None,
            json!({ "mobile": "+12065550101", "code": "123456" }),
        )
        .await;
    let b2 = h
        .post(
            "/v1/signin/verify",
            None,
            json!({ "mobile": "+12065550100", "code": "000000" }),
        )
        .await;
    a.expect_error(400, "otp_invalid");
    b2.expect_error(400, "otp_invalid");
    assert_eq!(a.body, b2.body);
    h.finish().await;
}

async fn contacts_display_rule_and_etag(b: Backend) {
    let h = Harness::start(b).await;
    h.import_dids(700, 5).await;
    let abc = h.customer("ABC").await;
    let other = h.customer("Other").await;
    let me = pbx_account(&h, abc, "+12065550200", json!({ "email": "me@abc.example", "first_name": "John", "last_name": "Doe", "extension": "100" })).await;
    pbx_account(
        &h,
        abc,
        "+12065550201",
        json!({ "first_name": "Alice", "extension": "101", "extension_name": "Front desk" }),
    )
    .await;
    pbx_account(
        &h,
        abc,
        "+12065550202",
        json!({ "extension": "102", "extension_name": "Warehouse" }),
    )
    .await;
    let bare = pbx_account(&h, abc, "+12065550203", json!({ "extension": "103" })).await;
    pbx_account(
        &h,
        abc,
        "+12065550204",
        json!({ "first_name": "No", "last_name": "Extension" }),
    )
    .await;
    // Another customer's extension never shows.
    h.import_dids(800, 1).await;
    pbx_account(
        &h,
        other,
        "+12065550300",
        json!({ "first_name": "Eve", "extension": "100" }),
    )
    .await;

    let auth = bearer(&signin(&h, "+12065550200", "me@abc.example").await);
    let r = h.get("/v1/contacts", Some(&auth)).await;
    assert_eq!(r.status, 200);
    let etag = r.headers["etag"].to_str().unwrap().to_owned();
    let v = r.json();
    let names: Vec<&str> = v["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["display_name"].as_str().unwrap())
        .collect();
    let bare_number = bare["did"].as_str().unwrap();
    assert_eq!(names, ["John Doe", "Alice", "Warehouse", bare_number]);
    assert_eq!(v["contacts"][0]["number"], me["did"]);
    assert_eq!(v["contacts"][0]["mobile"], "+12065550200");

    // Conditional request: 304 with no body while nothing changed.
    let r = h
        .request(
            http::Method::GET,
            "/v1/contacts",
            Some(&auth),
            None,
            &[("if-none-match", &etag)],
        )
        .await;
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    assert_eq!(r.headers["etag"].to_str().unwrap(), etag);
    // Any change to the customer's accounts changes the ETag.
    let r = h
        .request(
            http::Method::PATCH,
            &format!(
                "/admin/v1/accounts/{}",
                bare["account_id"].as_str().unwrap()
            ),
            Some(&format!("Bearer {ADMIN}")),
            Some(json!({ "extension_name": "Loading bay" })),
            &[],
        )
        .await;
    assert_eq!(r.status, 204);
    let r = h
        .request(
            http::Method::GET,
            "/v1/contacts",
            Some(&auth),
            None,
            &[("if-none-match", &etag)],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_ne!(r.headers["etag"].to_str().unwrap(), etag);
    assert_eq!(r.json()["contacts"][3]["display_name"], "Loading bay");
    h.finish().await;
}

async fn contacts_search_and_changes_since(b: Backend) {
    let h = Harness::start(b).await;
    h.import_dids(900, 4).await;
    let abc = h.customer("ABC").await;
    pbx_account(&h, abc, "+12065550400", json!({ "email": "me@abc.example", "first_name": "John", "last_name": "Doe", "extension": "200" })).await;
    let alice = pbx_account(
        &h,
        abc,
        "+12065550401",
        json!({ "first_name": "Alice", "last_name": "Smith", "extension": "201" }),
    )
    .await;
    pbx_account(
        &h,
        abc,
        "+12065550402",
        json!({ "extension": "310", "extension_name": "Warehouse" }),
    )
    .await;
    let auth = bearer(&signin(&h, "+12065550400", "me@abc.example").await);
    let search = |q: &'static str| {
        let auth = auth.clone();
        let h = &h;
        async move {
            let v = h
                .get(&format!("/v1/contacts?q={q}"), Some(&auth))
                .await
                .json();
            v["contacts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["extension"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(search("smi").await, ["201"]);
    assert_eq!(search("WARE").await, ["310"]);
    assert_eq!(search("31").await, ["310"]);
    assert_eq!(search("0401").await, ["201"]);
    assert!(search("zzz").await.is_empty());

    let v = h.get("/v1/contacts", Some(&auth)).await.json();
    let version = v["version"].as_i64().unwrap();
    // Nothing changed since `version`.
    let v2 = h
        .get(&format!("/v1/contacts?since={version}"), Some(&auth))
        .await
        .json();
    assert_eq!(v2["contacts"].as_array().unwrap().len(), 0);
    // Add one, remove Alice: changes-since lists exactly those.
    h.import_dids(950, 1).await;
    pbx_account(
        &h,
        abc,
        "+12065550403",
        json!({ "first_name": "Bob", "extension": "202" }),
    )
    .await;
    let r = h
        .request(
            http::Method::DELETE,
            &format!(
                "/admin/v1/accounts/{}",
                alice["account_id"].as_str().unwrap()
            ),
            Some(&format!("Bearer {ADMIN}")),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 204);
    let v3 = h
        .get(&format!("/v1/contacts?since={version}"), Some(&auth))
        .await
        .json();
    let added: Vec<&str> = v3["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["display_name"].as_str().unwrap())
        .collect();
    assert_eq!(added, ["Bob"]);
    assert_eq!(v3["removed"], json!([alice["account_id"]]));
    assert!(v3["version"].as_i64().unwrap() > version);
    h.get("/v1/contacts?since=abc", Some(&auth))
        .await
        .expect_error(400, "invalid_query");
    h.finish().await;
}

async fn smart_contacts_match_and_rate_limit(b: Backend) {
    let h = Harness::start_with(b, |c| c.smart_contacts.requests_per_hour = 2).await;
    h.import_dids(1000, 3).await;
    let john = h.signup("+12065550500").await;
    let adam = h.signup("+12065550501").await;
    let hash = |n: &str| E164::parse(n).unwrap().contact_hash();
    let body =
        json!({ "hashes": [hash("+12065550501"), hash("+12065550999"), hash("+12065550500")] });
    let r = h
        .post("/v1/smart-contacts", Some(&bearer(&john)), body.clone())
        .await;
    assert_eq!(r.status, 200);
    // Adam is an app user; the unknown number is not; John himself is not listed.
    assert_eq!(
        r.json()["matches"],
        json!([{ "hash": hash("+12065550501"), "number": adam["did"] }])
    );
    assert_eq!(
        h.post("/v1/smart-contacts", Some(&bearer(&john)), body.clone())
            .await
            .status,
        200
    );
    h.post("/v1/smart-contacts", Some(&bearer(&john)), body)
        .await
        .expect_error(429, "rate_limited");
    h.post(
        "/v1/smart-contacts",
        Some(&bearer(&adam)),
        json!({ "hashes": ["+12065550500"] }),
    )
    .await
    .expect_error(400, "invalid_hash");
    h.finish().await;
}
