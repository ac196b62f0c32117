//! Self-care, rating, call history, recordings, routing lookup and the Kamailio view, over HTTP
//! on both backends.
#![allow(clippy::unwrap_used)]

mod common;

use common::{bearer, Backend, Harness, INTERNAL};
use serde_json::{json, Value};

both_backends!(
    editable_flag_enforced,
    rating_charges_offnet_and_forwarded_not_app,
    call_history_pages_and_filters,
    recordings_upload_and_download,
    route_lookup_reports_rules,
    kamailio_subscriber_view,
    internal_api_on_its_own_listener,
);

async fn product(
    h: &Harness,
    name: &str,
    fwd: (bool, bool),
    rec: (bool, bool),
    fm: (bool, bool),
    tariff: Option<&str>,
) {
    let r = h
        .admin_post(
            "/admin/v1/products",
            json!({
                "name": name, "tariff": tariff,
                "features": [
                    { "feature": "call_forwarding", "enabled": fwd.0, "editable": fwd.1 },
                    { "feature": "call_recording", "enabled": rec.0, "editable": rec.1 },
                    { "feature": "follow_me", "enabled": fm.0, "editable": fm.1 },
                ]
            }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
}

async fn editable_flag_enforced(b: Backend) {
    let h = Harness::start_with(b, |c| c.signup.product = "locked".to_owned()).await;
    product(
        &h,
        "locked",
        (true, false),
        (true, true),
        (false, false),
        None,
    )
    .await;
    h.import_dids(100, 1).await;
    let auth = bearer(&h.signup("+12065550600").await);
    let fwd = json!({ "unconditional": "+12065550700", "unreachable_to_mobile": true });
    let v = h
        .put("/v1/self-care/forwarding", Some(&auth), fwd)
        .await
        .expect_error(403, "feature_not_editable");
    assert!(v["message"].as_str().unwrap().contains("call forwarding"));
    h.put(
        "/v1/self-care/follow-me",
        Some(&auth),
        json!({ "entries": [] }),
    )
    .await
    .expect_error(403, "feature_not_in_product");
    let r = h
        .put(
            "/v1/self-care/recording",
            Some(&auth),
            json!({ "enabled": true }),
        )
        .await;
    assert_eq!(r.status, 200);
    let v = h.get("/v1/self-care", Some(&auth)).await.json();
    assert_eq!(v["recording"], true);
    assert_eq!(
        v["features"]["call_forwarding"],
        json!({ "enabled": true, "editable": false })
    );
    assert_eq!(v["forwarding"]["unconditional"], Value::Null);
    h.finish().await;

    // The default product lets users edit everything; values are validated and normalised.
    let h = Harness::start(b).await;
    h.import_dids(100, 1).await;
    let auth = bearer(&h.signup("+12065550601").await);
    let fwd = json!({ "busy": "1 206 555 0701", "no_answer": { "target": "+12065550702", "after_secs": 20 }, "unreachable_to_mobile": true });
    let r = h.put("/v1/self-care/forwarding", Some(&auth), fwd).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["busy"], "+12065550701");
    let bad = json!({ "no_answer": { "target": "+12065550702", "after_secs": 500 } });
    h.put("/v1/self-care/forwarding", Some(&auth), bad)
        .await
        .expect_error(400, "out_of_range");
    let fm = json!({ "mode": "simultaneous", "entries": [{ "number": "+12065550703", "ring_secs": 15 }, { "number": "+12065550704", "ring_secs": 30 }] });
    assert_eq!(
        h.put("/v1/self-care/follow-me", Some(&auth), fm)
            .await
            .status,
        200
    );
    let v = h.get("/v1/self-care", Some(&auth)).await.json();
    assert_eq!(v["follow_me"]["entries"][1]["number"], "+12065550704");
    assert_eq!(v["forwarding"]["no_answer"]["after_secs"], 20);
    h.finish().await;
}

async fn cdr(
    h: &Harness,
    call_id: &str,
    account: &str,
    kind: &str,
    direction: &str,
    peer: &str,
    duration: i64,
) -> common::Resp {
    h.internal_post(
        "/internal/v1/cdrs",
        json!({
            "call_id": call_id, "account": account, "direction": direction, "kind": kind,
            "peer": peer, "started_at": 1_700_000_000 + duration, "duration": duration,
        }),
    )
    .await
}

async fn rating_charges_offnet_and_forwarded_not_app(b: Backend) {
    let h = Harness::start_with(b, |c| c.signup.product = "rated".to_owned()).await;
    let r = h.admin_post("/admin/v1/tariffs", json!({
        "name": "t1", "currency": "EUR", "first_increment": 30, "next_increment": 6, "connect_fee": 1000,
        "rates": [ { "prefix": "1", "rate_per_minute": 20000 }, { "prefix": "1206", "rate_per_minute": 10000 }, { "prefix": "44", "rate_per_minute": 70000 } ]
    })).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    product(
        &h,
        "rated",
        (true, true),
        (true, true),
        (true, true),
        Some("t1"),
    )
    .await;
    h.import_dids(100, 2).await;
    let me = h.signup("+12065550800").await;
    let acct = me["account_id"].as_str().unwrap().to_owned();
    let r = h
        .admin_post(
            &format!("/admin/v1/accounts/{acct}/balance"),
            json!({ "amount": 5_000_000 }),
        )
        .await;
    assert_eq!(r.json()["balance"], 5_000_000);

    // App-to-app: free whatever the length.
    let v = cdr(&h, "c1", &acct, "app", "out", "+15550000101", 600)
        .await
        .json();
    assert_eq!(
        (v["charge"].as_i64(), v["balance"].as_i64()),
        (Some(0), Some(5_000_000))
    );
    // Off-net to +1206...: longest prefix 1206 at 10000/min; 61 s -> 30 + 6*6 = 66 s;
    // 10000*66/60 = 11000, plus the 1000 connect fee.
    let r = cdr(&h, "c2", &acct, "offnet", "out", "+12065559999", 61).await;
    assert_eq!(r.status, 201);
    let v = r.json();
    assert_eq!(v["billed_seconds"], 66);
    assert_eq!(v["rate_prefix"], "1206");
    assert_eq!(v["charge"], 12_000);
    assert_eq!(v["balance"], 5_000_000 - 12_000);
    // Forwarded to the UK mobile: 44 at 70000/min, 10 s -> first increment 30 s = 35000 + 1000.
    let v = cdr(&h, "c3", &acct, "forwarded", "in", "+447700900123", 10)
        .await
        .json();
    assert_eq!(
        (v["billed_seconds"].as_i64(), v["charge"].as_i64()),
        (Some(30), Some(36_000))
    );
    // Unanswered: nothing, not even the connect fee.
    let v = cdr(&h, "c4", &acct, "offnet", "out", "+12065559999", 0)
        .await
        .json();
    assert_eq!(v["charge"], 0);
    // No matching rate: recorded, unrated, free.
    let v = cdr(&h, "c5", &acct, "offnet", "out", "+33123456789", 100)
        .await
        .json();
    assert_eq!(
        (v["rated"].as_bool(), v["charge"].as_i64()),
        (Some(false), Some(0))
    );
    // Re-sent CDR: not charged twice.
    let r = cdr(&h, "c2", &acct, "offnet", "out", "+12065559999", 61).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["duplicate"], true);
    let bal = h.get("/v1/balance", Some(&bearer(&me))).await.json();
    assert_eq!(bal["balance"], 5_000_000 - 12_000 - 36_000);
    assert_eq!(bal["currency"], "EUR");
    cdr(&h, "c6", "+19999999999", "offnet", "out", "+1206", 5)
        .await
        .expect_error(404, "not_found");
    cdr(&h, "c7", &acct, "offnet", "out", "+1206", -5)
        .await
        .expect_error(400, "invalid_duration");
    h.finish().await;
}

async fn call_history_pages_and_filters(b: Backend) {
    let h = Harness::start(b).await;
    h.import_dids(100, 1).await;
    let me = h.signup("+12065550900").await;
    let acct = me["account_id"].as_str().unwrap().to_owned();
    for i in 0..7 {
        let (kind, dir) = if i % 2 == 0 {
            ("app", "in")
        } else {
            ("offnet", "out")
        };
        assert_eq!(
            cdr(
                &h,
                &format!("call-{i}"),
                &acct,
                kind,
                dir,
                "+12065551234",
                10 + i
            )
            .await
            .status,
            201
        );
    }
    let auth = bearer(&me);
    let p1 = h.get("/v1/calls?limit=3", Some(&auth)).await.json();
    let ids1: Vec<&str> = p1["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["call_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids1, ["call-6", "call-5", "call-4"]);
    let next = p1["next_before"].as_i64().unwrap();
    let p2 = h
        .get(&format!("/v1/calls?limit=3&before={next}"), Some(&auth))
        .await
        .json();
    let ids2: Vec<&str> = p2["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["call_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids2, ["call-3", "call-2", "call-1"]);
    let out = h
        .get("/v1/calls?direction=out&kind=offnet", Some(&auth))
        .await
        .json();
    assert_eq!(out["calls"].as_array().unwrap().len(), 3);
    assert!(out["next_before"].is_null());
    let window = h
        .get("/v1/calls?from=1700000012&to=1700000015", Some(&auth))
        .await
        .json();
    assert_eq!(window["calls"].as_array().unwrap().len(), 3); // started 12, 13, 14 -> call-2..4
    h.get("/v1/calls?limit=0", Some(&auth))
        .await
        .expect_error(400, "out_of_range");
    h.get("/v1/calls?direction=sideways", Some(&auth))
        .await
        .expect_error(400, "invalid_query");
    h.finish().await;
}

async fn recordings_upload_and_download(b: Backend) {
    let h = Harness::start(b).await;
    h.import_dids(100, 2).await;
    let me = h.signup("+12065551000").await;
    let other = h.signup("+12065551001").await;
    let acct = me["account_id"].as_str().unwrap().to_owned();
    assert_eq!(
        cdr(&h, "rec-call", &acct, "offnet", "out", "+12065551234", 30)
            .await
            .status,
        201
    );
    let audio: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
    let req = http::Request::put(format!(
        "http://{}/internal/v1/recordings?account={acct}&call_id=rec-call",
        h.addr
    ))
    .header("authorization", format!("Bearer {INTERNAL}"))
    .header("content-type", "audio/wav")
    .body(http_body_util::Full::new(bytes::Bytes::from(audio.clone())))
    .unwrap();
    let r = h.send(req).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let calls = h.get("/v1/calls", Some(&bearer(&me))).await.json();
    assert_eq!(calls["calls"][0]["recording_id"], id.as_str());
    let meta = h
        .get(&format!("/v1/recordings/{id}"), Some(&bearer(&me)))
        .await
        .json();
    assert_eq!(
        (meta["size"].as_i64(), meta["content_type"].as_str()),
        (Some(4096), Some("audio/wav"))
    );
    let r = h
        .get(&format!("/v1/recordings/{id}/audio"), Some(&bearer(&me)))
        .await;
    assert_eq!(r.headers["content-type"], "audio/wav");
    assert_eq!(r.body.as_ref(), audio.as_slice());
    // Another user cannot see it.
    h.get(&format!("/v1/recordings/{id}/audio"), Some(&bearer(&other)))
        .await
        .expect_error(404, "not_found");
    h.finish().await;
}

async fn route_lookup_reports_rules(b: Backend) {
    let h = Harness::start(b).await;
    h.import_dids(100, 1).await;
    let me = h.signup("+12065551100").await;
    let auth = bearer(&me);
    let fwd = json!({ "unconditional": null, "unreachable_to_mobile": true });
    assert_eq!(
        h.put("/v1/self-care/forwarding", Some(&auth), fwd)
            .await
            .status,
        200
    );
    assert_eq!(
        h.put(
            "/v1/self-care/recording",
            Some(&auth),
            json!({ "enabled": true })
        )
        .await
        .status,
        200
    );
    let tok = format!("Bearer {INTERNAL}");
    for number in [me["did"].as_str().unwrap(), "+12065551100"] {
        let v = h
            .get(
                &format!("/internal/v1/route/{}", number.trim_start_matches('+')),
                Some(&tok),
            )
            .await
            .json();
        assert_eq!(v["app_user"], true, "{number}");
        assert_eq!(v["account_id"], me["account_id"]);
        assert_eq!(v["mobile"], "+12065551100");
        assert_eq!(v["forwarding"]["unreachable_to_mobile"], true);
        assert_eq!(v["recording"], true);
    }
    let v = h
        .get("/internal/v1/route/12065559876", Some(&tok))
        .await
        .json();
    assert_eq!(v, json!({ "app_user": false }));
    h.get("/internal/v1/route/abc", Some(&tok))
        .await
        .expect_error(400, "invalid_e164");
    h.get("/internal/v1/route/12065551100", Some(&bearer(&me)))
        .await
        .expect_error(401, "unauthorized");
    h.finish().await;
}

async fn kamailio_subscriber_view(b: Backend) {
    let h = Harness::start(b).await;
    h.import_dids(100, 1).await;
    let me = h.signup("+12065551200").await;
    if b == Backend::Postgres {
        let (user, domain, ha1, ha1b): (String, String, String, String) = sqlx::query_as(
            "SELECT username, domain, ha1, ha1b FROM subscriber WHERE username = $1",
        )
        .bind(me["username"].as_str().unwrap())
        .fetch_one(&h.state.db.pool)
        .await
        .unwrap();
        let pw = me["password"].as_str().unwrap();
        assert_eq!(domain, "sip.test.example");
        use md5::Digest;
        let want = hex::encode(md5::Md5::digest(format!("{user}:{domain}:{pw}").as_bytes()));
        assert_eq!(ha1, want);
        let want_b = hex::encode(md5::Md5::digest(
            format!("{user}@{domain}:{domain}:{pw}").as_bytes(),
        ));
        assert_eq!(ha1b, want_b);
        let (v,): (i32,) =
            sqlx::query_as("SELECT table_version FROM version WHERE table_name = 'subscriber'")
                .fetch_one(&h.state.db.pool)
                .await
                .unwrap();
        assert_eq!(v, 7);
    } else {
        // SQLite has no Kamailio view; the columns it would expose are still there.
        let (n,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM accounts WHERE ha1 <> '' AND ha1b <> ''")
                .fetch_one(&h.state.db.pool)
                .await
                .unwrap();
        assert_eq!(n, 1);
    }
    h.finish().await;
}

async fn internal_api_on_its_own_listener(b: Backend) {
    let h = Harness::start_with(b, |c| {
        c.internal_listen = Some("127.0.0.1:0".parse().unwrap())
    })
    .await;
    let internal = h.internal_addr.expect("a second listener");
    let tok = format!("Bearer {INTERNAL}");
    // Not on the public listener...
    h.get("/internal/v1/route/12065559876", Some(&tok))
        .await
        .expect_error(404, "not_found");
    // ...but on the internal one, which serves nothing else.
    let req = |path: &str| {
        http::Request::get(format!("http://{internal}{path}"))
            .header("authorization", tok.as_str())
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap()
    };
    let r = h.send(req("/internal/v1/route/12065559876")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({ "app_user": false }));
    h.send(req("/v1/balance"))
        .await
        .expect_error(404, "not_found");
    h.finish().await;
}
