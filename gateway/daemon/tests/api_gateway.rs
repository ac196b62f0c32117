//! The intake API as the gateway starts it: key loading (production mode refuses to start
//! without one; development mode generates one), the store in the data directory, and a
//! restart that restores every device from the store.

// Tests panic on the unexpected: unwrap is the assertion.
#![allow(clippy::unwrap_used)]

mod common;

use reqwest::StatusCode;
use serde_json::{json, Value};
use vigil_gateway::config::Config;
use vigil_gateway::{Gateway, StartError};

use common::api_client as client;

fn config(dir: &std::path::Path) -> Config {
    let mut c = Config {
        data_dir: dir.to_owned(),
        ..Config::default()
    };
    c.sip.listen = vec!["udp:127.0.0.1:0".parse().unwrap()];
    c.sip.shutdown_grace_secs = 2;
    c.api.enabled = true;
    c.api.listen = "127.0.0.1:0".parse().unwrap();
    c.api.rate_per_sec = 0.0;
    c
}

fn body(i: usize) -> Value {
    json!({
        "sip": {"username": format!("user{i}"), "password": "pw", "domain": "sip.example.com"},
        "push": {"fcm": {"token": format!("fcm-token-{i}"), "project_id": "proj-1"}},
        "app": {"id": "com.example.app", "version": "2.0"}
    })
}

#[tokio::test]
async fn production_mode_without_a_key_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.crypto.production = true;
    match Gateway::start(&c).await {
        Err(StartError::Key(e)) => assert!(e.to_string().contains("VIGIL_SECRET_KEY"), "{e}"),
        other => panic!("expected a key error, got {other:?}"),
    }
    assert!(
        !dir.path().join("secret.key").exists(),
        "production never generates a key"
    );
}

#[tokio::test]
async fn a_restart_restores_every_device() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path());
    let gw = Gateway::start(&c).await.unwrap();
    assert!(
        dir.path().join("secret.key").exists(),
        "development key generated"
    );
    let base = format!("https://localhost:{}", gw.api_addr().unwrap().port());
    let http = client(&gw);
    let mut secrets = Vec::new();
    for i in 0..20 {
        let resp = http
            .put(format!("{base}/v1/devices/dev-{i}"))
            .json(&body(i))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        let doc: Value = resp.json().await.unwrap();
        secrets.push(doc["device_secret"].as_str().unwrap().to_owned());
    }
    assert!(gw.shutdown().await.graceful);

    let gw = Gateway::start(&c).await.unwrap();
    assert_eq!(gw.api_state().unwrap().table.len(), 20);
    let base = format!("https://localhost:{}", gw.api_addr().unwrap().port());
    let http = client(&gw);
    for (i, secret) in secrets.iter().enumerate() {
        let resp = http
            .get(format!("{base}/v1/devices/dev-{i}"))
            .bearer_auth(secret)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "device {i} restored");
        // The same body after the restart is recognised as unchanged.
        let resp = http
            .put(format!("{base}/v1/devices/dev-{i}"))
            .bearer_auth(secret)
            .json(&body(i))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
    gw.shutdown().await;
}
