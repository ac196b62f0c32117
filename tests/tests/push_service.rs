//! The push service as the daemon starts it: from a `[push]` configuration naming credential
//! files (the mocks' keys, service account and CAs written to disk), with APNs, FCM and the
//! wake channel together. Pushes go out on each, and a dead APNs token comes back as a
//! `DeadToken` event naming the target, which is what the binding table acts on.

// Helpers outside #[test] fns: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vigil_gateway::push::config::{
    ApnsSettings, DispatchSettings, FcmSettings, PushConfig, WakeSettings,
};
use vigil_gateway::push::{
    ApnsEnvironment, PushService, PushStartError, Roots, Secret, WakeClient,
};
use vigil_proto::push::{DeviceToken, FailReason, PushEvent, PushId, PushRequest, Target};
use vigil_sim::mock::Faults;
use vigil_tests::push::{apns_token, call, fcm_token, ApnsEnv, FcmEnv, BUNDLE};
use vigil_tests::TempDir;

fn apns_settings(env: &ApnsEnv, dir: &TempDir) -> ApnsSettings {
    ApnsSettings {
        name: "ios".into(),
        key_file: Some(dir.write("AuthKey.p8", &env.key.p8_pem())),
        key_id: Some(env.key.key_id.clone()),
        team_id: Some(env.key.team_id.clone()),
        cert_file: None,
        cert_key_file: None,
        environment: ApnsEnvironment::Production,
        base_url: Some(env.mock.base_url()),
        ca_file: Some(dir.write("apns-ca.pem", &env.mock.ca_pem)),
        topics: vec![BUNDLE.into()],
        pool_size: 2,
        token_reuse_mins: 45,
    }
}

fn fcm_settings(env: &FcmEnv, dir: &TempDir) -> FcmSettings {
    FcmSettings {
        name: "android".into(),
        service_account_file: dir.write("sa.json", &env.account.to_json(&env.mock.token_url())),
        base_url: Some(env.mock.base_url()),
        ca_file: Some(dir.write("fcm-ca.pem", &env.mock.ca_pem)),
        pool_size: 1,
    }
}

fn wake_settings(cert: Option<(&Path, &Path)>) -> WakeSettings {
    WakeSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        cert_file: cert.map(|c| c.0.to_owned()),
        key_file: cert.map(|c| c.1.to_owned()),
        keep_alive_secs: 25,
        idle_timeout_secs: 90,
        auth_timeout_secs: 10,
    }
}

/// A TLS 1.2 + 1.3 server config like the gateway's own listeners use.
fn gateway_tls(cert: &rcgen::CertifiedKey) -> rustls::ServerConfig {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert.cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der())),
        )
        .unwrap()
}

async fn next_event(events: &mut tokio::sync::mpsc::UnboundedReceiver<PushEvent>) -> PushEvent {
    tokio::time::timeout(Duration::from_secs(20), events.recv())
        .await
        .expect("an event within 20 s")
        .expect("service alive")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_from_config_pushes_on_every_channel_and_reports_dead_tokens() {
    let dir = TempDir::new("push-service");
    let apns = ApnsEnv::start(Faults::default()).await;
    let fcm = FcmEnv::start(Faults::default()).await;
    let dead = apns_token(7);
    apns.mock.mark_dead(dead.expose());
    let cfg = PushConfig {
        apns: vec![apns_settings(&apns, &dir)],
        fcm: vec![fcm_settings(&fcm, &dir)],
        wake: Some(wake_settings(None)),
        dispatch: DispatchSettings::default(),
    };
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (svc, mut events) = PushService::start(&cfg, Some(&gateway_tls(&cert))).unwrap();

    // Credential selection, as the binding table will use it.
    let ios = svc
        .apns_credential(BUNDLE, ApnsEnvironment::Production)
        .unwrap();
    assert_eq!(svc.apns_credential(BUNDLE, ApnsEnvironment::Sandbox), None);
    assert_eq!(
        svc.apns_credential("org.other.app", ApnsEnvironment::Production),
        None
    );
    let android = svc.fcm_credential(Some("vigil-test")).unwrap();
    assert_eq!(svc.fcm_credential(None), Some(android));
    assert_eq!(svc.fcm_credential(Some("other-project")), None);
    let wake = svc.wake_credential().unwrap();
    assert_eq!(svc.credential_name(ios), Some("ios"));
    assert_eq!(svc.credential_name(android), Some("android"));

    // A device on the wake channel, authenticated by the gateway's certificate.
    let server = svc.wake_server().unwrap();
    let device = DeviceToken::opaque("phone-1").unwrap();
    server.register(&device, &Secret::new("wake-secret"));
    let phone = WakeClient::connect(
        server.local_addr().unwrap(),
        "localhost",
        &Roots::Pem(cert.cert.pem()),
        "phone-1",
        &Secret::new("wake-secret"),
    )
    .await
    .unwrap();
    // The server files the connection under the device right after answering its
    // authentication; wait for that before pushing.
    let t0 = Instant::now();
    while !server.is_connected(&device) && t0.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The phone stays connected after acknowledging: dropping the connection at once could
    // cut the acknowledgement off before it leaves.
    let phone = tokio::spawn(async move { (phone.next_wake().await.unwrap(), phone) });

    let deadline = Instant::now() + Duration::from_secs(30);
    let submit = |credential, target, n: u32| {
        let s = svc
            .submit(PushRequest {
                credential,
                target,
                notice: call(&format!("svc-{n}")),
                deadline,
            })
            .unwrap();
        assert!(!s.duplicate);
        s.id
    };
    let live = submit(
        ios,
        Target::Apns {
            token: apns_token(1),
            bundle_id: BUNDLE.into(),
        },
        1,
    );
    let gone = submit(
        ios,
        Target::Apns {
            token: dead.clone(),
            bundle_id: BUNDLE.into(),
        },
        2,
    );
    let droid = submit(
        android,
        Target::Fcm {
            token: fcm_token(1),
        },
        3,
    );
    let woken = submit(wake, Target::Wake { device }, 4);

    let mut sent: Vec<PushId> = Vec::new();
    let mut delivered = Vec::new();
    let mut dead_targets = Vec::new();
    let mut failed = Vec::new();
    while sent.len() + delivered.len() + failed.len() < 4 {
        match next_event(&mut events).await {
            PushEvent::Sent { id } => sent.push(id),
            PushEvent::Delivered { id } => delivered.push(id),
            PushEvent::DeadToken {
                id,
                credential,
                target,
            } => dead_targets.push((id, credential, target)),
            PushEvent::Failed { id, reason } => failed.push((id, reason)),
            other => panic!("unexpected event {other:?}"),
        }
    }
    sent.sort();
    assert_eq!(sent, vec![live, droid]);
    assert_eq!(delivered, vec![woken], "failed: {failed:?}");
    assert_eq!(failed, vec![(gone, FailReason::DeadToken)]);
    assert_eq!(
        dead_targets,
        vec![(
            gone,
            ios,
            Target::Apns {
                token: dead,
                bundle_id: BUNDLE.into()
            }
        )]
    );
    let (wake_msg, _phone) = phone.await.unwrap();
    assert!(!wake_msg.payload.is_empty());
    assert_eq!(apns.mock.stats().accepted, 1);
    assert_eq!(fcm.mock.stats().accepted, 1);
    svc.shutdown();
}

#[tokio::test]
async fn refuses_bad_configurations_before_starting_anything() {
    let dir = TempDir::new("push-service-bad");
    // The wake channel needs a certificate: its own files or the gateway's.
    let cfg = PushConfig {
        wake: Some(wake_settings(None)),
        ..PushConfig::default()
    };
    assert!(matches!(
        PushService::start(&cfg, None),
        Err(PushStartError::NoWakeCertificate)
    ));
    // Its own files work without the gateway's.
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let c = dir.write("wake.pem", &cert.cert.pem());
    let k = dir.write("wake.key", &cert.key_pair.serialize_pem());
    let cfg = PushConfig {
        wake: Some(wake_settings(Some((&c, &k)))),
        ..PushConfig::default()
    };
    let (svc, _events) = PushService::start(&cfg, None).unwrap();
    assert!(svc.wake_server().unwrap().local_addr().is_ok());
    svc.shutdown();
    // A missing key file is named in the error.
    let cfg = PushConfig {
        apns: vec![ApnsSettings {
            key_file: Some(dir.0.join("missing.p8")),
            ..apns_settings_stub()
        }],
        ..PushConfig::default()
    };
    match PushService::start(&cfg, None) {
        Err(PushStartError::Read { path, .. }) => assert!(path.ends_with("missing.p8")),
        other => panic!("expected a read error, got {other:?}"),
    }
    // A key file that is not a P-256 PKCS#8 key is a credential error, not a panic.
    let cfg = PushConfig {
        apns: vec![ApnsSettings {
            key_file: Some(dir.write("garbage.p8", "not a key")),
            ..apns_settings_stub()
        }],
        ..PushConfig::default()
    };
    assert!(matches!(
        PushService::start(&cfg, None),
        Err(PushStartError::Client { .. })
    ));
    // Validation runs first.
    let cfg = PushConfig {
        apns: vec![ApnsSettings {
            team_id: None,
            ..apns_settings_stub()
        }],
        ..PushConfig::default()
    };
    assert!(matches!(
        PushService::start(&cfg, None),
        Err(PushStartError::Invalid(_))
    ));
}

fn apns_settings_stub() -> ApnsSettings {
    ApnsSettings {
        name: "stub".into(),
        key_file: Some(PathBuf::from("/nonexistent/AuthKey.p8")),
        key_id: Some("KEY0000001".into()),
        team_id: Some("TEAM000001".into()),
        cert_file: None,
        cert_key_file: None,
        environment: ApnsEnvironment::Production,
        base_url: None,
        ca_file: None,
        topics: Vec::new(),
        pool_size: 2,
        token_reuse_mins: 45,
    }
}
