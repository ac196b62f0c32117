//! A dead push token through the running gateway: a device handed over through the intake
//! API with an APNs VoIP token that the mock APNs answers 410 `Unregistered` for; a push to
//! it through the gateway's push service comes back as a dead-token event, and the gateway
//! drops the token from the device's binding, in memory (`GET` shows `push_active: false`)
//! and in the store (the row's sealed tokens are gone, also after a restart).

// Helpers outside #[test] fns: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vigil_gateway::config::Config;
use vigil_gateway::push::config::{ApnsSettings, DispatchSettings, PushConfig};
use vigil_gateway::push::ApnsEnvironment;
use vigil_gateway::Gateway;
use vigil_proto::push::{PushRequest, Target};
use vigil_sim::mock::Faults;
use vigil_tests::push::{apns_token, call, ApnsEnv, BUNDLE};
use vigil_tests::TempDir;

fn config(data_dir: &Path, apns: &ApnsEnv, files: &TempDir) -> Config {
    let mut c = Config {
        data_dir: data_dir.to_owned(),
        ..Config::default()
    };
    c.sip.listen = vec!["udp:127.0.0.1:0".parse().unwrap()];
    c.sip.shutdown_grace_secs = 2;
    c.api.enabled = true;
    c.api.listen = "127.0.0.1:0".parse().unwrap();
    c.api.rate_per_sec = 0.0;
    c.push = PushConfig {
        apns: vec![ApnsSettings {
            name: "ios".into(),
            key_file: Some(files.write("AuthKey.p8", &apns.key.p8_pem())),
            key_id: Some(apns.key.key_id.clone()),
            team_id: Some(apns.key.team_id.clone()),
            cert_file: None,
            cert_key_file: None,
            environment: ApnsEnvironment::Production,
            base_url: Some(apns.mock.base_url()),
            ca_file: Some(files.write("apns-ca.pem", &apns.mock.ca_pem)),
            topics: vec![BUNDLE.into()],
            pool_size: 1,
            token_reuse_mins: 45,
        }],
        fcm: Vec::new(),
        wake: None,
        dispatch: DispatchSettings::default(),
    };
    c
}

/// An HTTPS client for the intake API trusting the gateway's development certificate.
fn api_client(gw: &Gateway) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(gw.tls_certificates().unwrap()[0].clone())
        .unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(cfg)
        .build()
        .unwrap()
}

async fn get(gw: &Gateway, device: &str, secret: &str) -> Value {
    let base = format!("https://localhost:{}", gw.api_addr().unwrap().port());
    let resp = api_client(gw)
        .get(format!("{base}/v1/devices/{device}"))
        .bearer_auth(secret)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::OK);
    resp.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_apns_token_is_dropped_from_the_binding_and_the_store() {
    let files = TempDir::new("dead-token-files");
    let data = TempDir::new("dead-token-data");
    let apns = ApnsEnv::start(Faults::default()).await;
    let (dead, alive) = (apns_token(1), apns_token(2));
    apns.mock.mark_dead(dead.expose());
    let c = config(&data.0, &apns, &files);
    let gw = Gateway::start(&c).await.unwrap();
    let base = format!("https://localhost:{}", gw.api_addr().unwrap().port());
    let http = api_client(&gw);
    let mut secrets = Vec::new();
    for (device, token) in [("dead-phone", &dead), ("live-phone", &alive)] {
        let resp = http
            .put(format!("{base}/v1/devices/{device}"))
            .json(&json!({
                "sip": {"username": device, "password": "pw", "domain": "sip.example.com"},
                "push": {"apns": {"voip_token": token.expose(), "bundle_id": BUNDLE,
                                  "environment": "production"}},
                "app": {"id": BUNDLE, "version": "1.0"}
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), reqwest::StatusCode::ACCEPTED);
        let doc: Value = resp.json().await.unwrap();
        secrets.push(doc["device_secret"].as_str().unwrap().to_owned());
        assert_eq!(
            get(&gw, device, &secrets[secrets.len() - 1]).await["push_active"],
            true
        );
    }

    // Push to both through the gateway's own push service; the mock answers 410 for one.
    let push = gw.push().unwrap();
    let cred = push
        .apns_credential(BUNDLE, ApnsEnvironment::Production)
        .unwrap();
    for (i, token) in [&dead, &alive].into_iter().enumerate() {
        push.submit(PushRequest {
            credential: cred,
            target: Target::Apns {
                token: token.clone(),
                bundle_id: BUNDLE.into(),
            },
            notice: call(&format!("c{i}")),
            deadline: Instant::now() + Duration::from_secs(10),
        })
        .unwrap();
    }
    let t0 = Instant::now();
    while get(&gw, "dead-phone", &secrets[0]).await["push_active"] != false {
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "the dead token was not dropped within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The push to the live token was accepted, and that device keeps its token.
    let t0 = Instant::now();
    while !apns
        .mock
        .accepted()
        .iter()
        .any(|p| p.token == alive.expose())
    {
        assert!(t0.elapsed() < Duration::from_secs(15), "live push accepted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        get(&gw, "live-phone", &secrets[1]).await["push_active"],
        true
    );
    let table = &gw.api_state().unwrap().table;
    assert!(!table.get("dead-phone").unwrap().has_push_token());
    assert!(table.get("live-phone").unwrap().has_push_token());
    assert!(gw.shutdown().await.graceful);

    // Durable: the store row lost its tokens, and a restarted gateway still knows.
    let store = vigil_gateway::store::open(None, &data.0).await.unwrap();
    assert!(store
        .get("dead-phone")
        .await
        .unwrap()
        .unwrap()
        .push_enc
        .is_empty());
    assert!(!store
        .get("live-phone")
        .await
        .unwrap()
        .unwrap()
        .push_enc
        .is_empty());
    store.close().await;
    let gw = Gateway::start(&c).await.unwrap();
    assert_eq!(
        get(&gw, "dead-phone", &secrets[0]).await["push_active"],
        false
    );
    assert_eq!(
        get(&gw, "live-phone", &secrets[1]).await["push_active"],
        true
    );
    gw.shutdown().await;
}
