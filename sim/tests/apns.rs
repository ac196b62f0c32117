//! Mock APNs through a real TLS + HTTP/2 client: accepted pushes, every rejection, token
//! windows on the mock clock, dead tokens, team pinning and certificate auth.

mod common;

use common::apns::{fixture, send, voip, BODY, TOPIC, VOIP_TOPIC};
use common::{connect, device_token};
use http::{Method, Request, StatusCode};
use std::sync::Arc;
use std::time::Duration;
use vigil_sim::mock::{
    ApnsClientCert, ApnsSigningKey, Faults, MockApns, MockApnsConfig, PushPriority, PushService,
    TestCa,
};

#[tokio::test]
async fn valid_pushes_are_accepted_recorded_and_delivered() {
    let f = fixture(Faults::default()).await;
    let mut phones = f.mock.subscribe();
    let mut c = f.client().await;
    let jwt = f.token();
    let id = "123e4567-e89b-12d3-a456-426614174000";
    let a = send(
        &mut c,
        voip(&device_token(1), &jwt).header("apns-id", id),
        BODY,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.headers["apns-id"], id);
    assert!(a.body.is_empty());

    // Without apns-id the mock generates one.
    let alert = Request::builder()
        .method(Method::POST)
        .uri(format!("https://localhost/3/device/{}", device_token(2)))
        .header("authorization", format!("bearer {jwt}"))
        .header("apns-topic", TOPIC)
        .header("apns-push-type", "alert")
        .header("apns-priority", "5")
        .header("apns-collapse-id", "call-abc");
    let b = send(&mut c, alert, br#"{"aps":{"alert":"missed call"}}"#).await;
    assert_eq!(b.status, StatusCode::OK);
    let generated = b.headers["apns-id"].to_str().expect("ascii").to_owned();
    assert_eq!(generated.len(), 36);
    assert!(uuid::Uuid::parse_str(&generated).is_ok());

    let accepted = f.mock.accepted();
    assert_eq!(accepted.len(), 2);
    let first = &accepted[0];
    assert_eq!(first.service, PushService::Apns);
    assert_eq!(first.id, id);
    assert_eq!(first.token, device_token(1));
    assert_eq!(first.topic, VOIP_TOPIC);
    assert_eq!(first.push_type.as_deref(), Some("voip"));
    assert_eq!(first.priority, PushPriority::High);
    assert_eq!(first.expiration, Some(0));
    assert_eq!(first.payload["call-id"], "abc");
    assert_eq!(accepted[1].id, generated);
    assert_eq!(accepted[1].collapse_id.as_deref(), Some("call-abc"));
    assert_eq!(accepted[1].priority, PushPriority::Normal);

    let delivered = phones.recv().await.expect("delivered to the subscriber");
    assert_eq!(delivered, accepted[0]);
    assert_eq!(phones.recv().await.expect("second").id, generated);

    let stats = f.mock.stats();
    assert_eq!(stats.accepted, 2);
    assert_eq!(stats.by_status.get(&200), Some(&2));
    assert_eq!(stats.connections, 1);
}

#[tokio::test]
async fn every_rejection_has_apples_status_and_reason() {
    let f = fixture(Faults::default()).await;
    let mut c = f.client().await;
    let jwt = f.token();
    let dev = device_token(7);
    let other_key = ApnsSigningKey::generate("TEAM000001", "KEY0000001").expect("key");
    let wrong_sig = other_key.provider_token(f.clock.unix_secs());
    let unknown_kid = ApnsSigningKey::generate("TEAM000001", "KEY0000999")
        .expect("key")
        .provider_token(f.clock.unix_secs());
    let big = format!(r#"{{"aps":{{}},"pad":"{}"}}"#, "x".repeat(5200));
    let padded = |len: usize| format!(r#"{{"aps":{{}},"pad":"{}"}}"#, "x".repeat(len - 19));
    let alert_4097 = padded(4097);
    assert_eq!(alert_4097.len(), 4097);

    type Edit = Box<dyn Fn(http::request::Builder) -> http::request::Builder>;
    let hdr = |k: &'static str, v: String| -> Edit { Box::new(move |b| b.header(k, v.clone())) };
    let cases: Vec<(&str, http::request::Builder, Vec<u8>, u16, &str)> = vec![
        (
            "bad path",
            Request::builder()
                .method(Method::POST)
                .uri("https://localhost/3/devices/abc")
                .header("authorization", format!("bearer {jwt}")),
            BODY.to_vec(),
            404,
            "BadPath",
        ),
        (
            "GET",
            voip(&dev, &jwt).method(Method::GET),
            Vec::new(),
            405,
            "MethodNotAllowed",
        ),
        (
            "no token",
            Request::builder()
                .method(Method::POST)
                .uri(format!("https://localhost/3/device/{dev}"))
                .header("apns-topic", VOIP_TOPIC),
            BODY.to_vec(),
            403,
            "MissingProviderToken",
        ),
        (
            "garbage token",
            voip(&dev, "not.a.jwt"),
            BODY.to_vec(),
            403,
            "InvalidProviderToken",
        ),
        (
            "wrong signature",
            voip(&dev, &wrong_sig),
            BODY.to_vec(),
            403,
            "InvalidProviderToken",
        ),
        (
            "unknown kid",
            voip(&dev, &unknown_kid),
            BODY.to_vec(),
            403,
            "InvalidProviderToken",
        ),
        (
            "basic scheme",
            Request::builder()
                .method(Method::POST)
                .uri(format!("https://localhost/3/device/{dev}"))
                .header("authorization", format!("basic {jwt}"))
                .header("apns-topic", VOIP_TOPIC)
                .header("apns-push-type", "voip"),
            BODY.to_vec(),
            403,
            "InvalidProviderToken",
        ),
        (
            "no topic",
            Request::builder()
                .method(Method::POST)
                .uri(format!("https://localhost/3/device/{dev}"))
                .header("authorization", format!("bearer {jwt}"))
                .header("apns-push-type", "voip"),
            BODY.to_vec(),
            400,
            "MissingTopic",
        ),
        (
            "voip without .voip topic",
            hdr("apns-topic", TOPIC.into())(
                Request::builder()
                    .method(Method::POST)
                    .uri(format!("https://localhost/3/device/{dev}"))
                    .header("authorization", format!("bearer {jwt}"))
                    .header("apns-push-type", "voip"),
            ),
            BODY.to_vec(),
            400,
            "DeviceTokenNotForTopic",
        ),
        (
            "alert to .voip topic",
            Request::builder()
                .method(Method::POST)
                .uri(format!("https://localhost/3/device/{dev}"))
                .header("authorization", format!("bearer {jwt}"))
                .header("apns-topic", VOIP_TOPIC)
                .header("apns-push-type", "alert"),
            BODY.to_vec(),
            400,
            "BadTopic",
        ),
        (
            "unknown push type",
            Request::builder()
                .method(Method::POST)
                .uri(format!("https://localhost/3/device/{dev}"))
                .header("authorization", format!("bearer {jwt}"))
                .header("apns-topic", TOPIC)
                .header("apns-push-type", "wakeup"),
            BODY.to_vec(),
            400,
            "InvalidPushType",
        ),
        (
            "background at 10",
            Request::builder()
                .method(Method::POST)
                .uri(format!("https://localhost/3/device/{dev}"))
                .header("authorization", format!("bearer {jwt}"))
                .header("apns-topic", TOPIC)
                .header("apns-push-type", "background")
                .header("apns-priority", "10"),
            BODY.to_vec(),
            400,
            "BadPriority",
        ),
        (
            "background default priority",
            Request::builder()
                .method(Method::POST)
                .uri(format!("https://localhost/3/device/{dev}"))
                .header("authorization", format!("bearer {jwt}"))
                .header("apns-topic", TOPIC)
                .header("apns-push-type", "background"),
            BODY.to_vec(),
            400,
            "BadPriority",
        ),
        (
            "priority 7",
            Request::builder()
                .method(Method::POST)
                .uri(format!("https://localhost/3/device/{dev}"))
                .header("authorization", format!("bearer {jwt}"))
                .header("apns-topic", VOIP_TOPIC)
                .header("apns-push-type", "voip")
                .header("apns-priority", "7"),
            BODY.to_vec(),
            400,
            "BadPriority",
        ),
        (
            "expiration not numeric",
            Request::builder()
                .method(Method::POST)
                .uri(format!("https://localhost/3/device/{dev}"))
                .header("authorization", format!("bearer {jwt}"))
                .header("apns-topic", VOIP_TOPIC)
                .header("apns-push-type", "voip")
                .header("apns-expiration", "soon"),
            BODY.to_vec(),
            400,
            "BadExpirationDate",
        ),
        (
            "collapse id 65 bytes",
            voip(&dev, &jwt).header("apns-collapse-id", "c".repeat(65)),
            BODY.to_vec(),
            400,
            "BadCollapseId",
        ),
        (
            "apns-id not a UUID",
            voip(&dev, &jwt).header("apns-id", "1234"),
            BODY.to_vec(),
            400,
            "BadMessageId",
        ),
        (
            "token not hex",
            voip(&"zz".repeat(32), &jwt),
            BODY.to_vec(),
            400,
            "BadDeviceToken",
        ),
        (
            "no device token",
            voip("", &jwt),
            BODY.to_vec(),
            400,
            "MissingDeviceToken",
        ),
        (
            "repeated header",
            voip(&dev, &jwt).header("apns-priority", "5"),
            BODY.to_vec(),
            400,
            "DuplicateHeaders",
        ),
        (
            "token too short",
            voip("abcd", &jwt),
            BODY.to_vec(),
            400,
            "BadDeviceToken",
        ),
        (
            "empty payload",
            voip(&dev, &jwt),
            Vec::new(),
            400,
            "PayloadEmpty",
        ),
        (
            "payload not JSON",
            voip(&dev, &jwt),
            b"hello".to_vec(),
            400,
            "BadPayload",
        ),
        (
            "alert payload 4097",
            Request::builder()
                .method(Method::POST)
                .uri(format!("https://localhost/3/device/{dev}"))
                .header("authorization", format!("bearer {jwt}"))
                .header("apns-topic", TOPIC)
                .header("apns-push-type", "alert"),
            alert_4097.clone().into_bytes(),
            413,
            "PayloadTooLarge",
        ),
        (
            "voip payload over 5120",
            voip(&dev, &jwt),
            big.clone().into_bytes(),
            413,
            "PayloadTooLarge",
        ),
    ];
    let n = cases.len();
    for (what, req, body, status, reason) in cases {
        let a = send(&mut c, req, &body).await;
        assert_eq!(a.status.as_u16(), status, "{what}");
        assert_eq!(a.reason(), reason, "{what}");
        assert_eq!(
            a.headers["content-type"], "application/json; charset=UTF-8",
            "{what}"
        );
        assert!(a.headers.contains_key("apns-id"), "{what}");
    }
    assert!(f.mock.accepted().is_empty(), "no rejected push is recorded");
    let stats = f.mock.stats();
    assert_eq!(stats.requests, n as u64);
    assert_eq!(stats.by_reason.get("InvalidProviderToken"), Some(&4));
    assert_eq!(stats.by_reason.get("MissingProviderToken"), Some(&1));
    assert_eq!(stats.by_reason.get("PayloadTooLarge"), Some(&2));

    // The same sizes just under the limits pass: VoIP allows 5120 bytes, alert 4096.
    let voip_5000 = format!(r#"{{"aps":{{}},"pad":"{}"}}"#, "x".repeat(5000));
    assert_eq!(
        send(&mut c, voip(&dev, &jwt), voip_5000.as_bytes())
            .await
            .status,
        StatusCode::OK
    );
    let alert_4096 = padded(4096);
    assert_eq!(alert_4096.len(), 4096);
    let alert = Request::builder()
        .method(Method::POST)
        .uri(format!("https://localhost/3/device/{dev}"))
        .header("authorization", format!("bearer {jwt}"))
        .header("apns-topic", TOPIC)
        .header("apns-push-type", "alert");
    assert_eq!(
        send(&mut c, alert, alert_4096.as_bytes()).await.status,
        StatusCode::OK
    );
    let voip_5120 = padded(5120);
    assert_eq!(
        send(&mut c, voip(&dev, &jwt), voip_5120.as_bytes())
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn provider_token_windows_follow_the_mock_clock() {
    let f = fixture(Faults::default()).await;
    let mut c = f.client().await;
    let dev = device_token(3);
    let a = f.token();
    assert_eq!(
        send(&mut c, voip(&dev, &a), BODY).await.status,
        StatusCode::OK
    );
    // A second, different token at once: too many updates, and it does not replace `a`.
    let b = f.token();
    assert_ne!(a, b, "ECDSA signatures differ");
    let r = send(&mut c, voip(&dev, &b), BODY).await;
    assert_eq!(
        (r.status.as_u16(), r.reason().as_str()),
        (429, "TooManyProviderTokenUpdates")
    );
    // Also from another connection: the rule is per team and key, not per connection.
    let mut c2 = f.client().await;
    let r = send(&mut c2, voip(&dev, &b), BODY).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        send(&mut c2, voip(&dev, &a), BODY).await.status,
        StatusCode::OK
    );

    // 19 minutes later still too soon; after 20 the new token is taken.
    f.clock.advance(Duration::from_secs(19 * 60));
    assert_eq!(
        send(&mut c, voip(&dev, &b), BODY).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    f.clock.advance(Duration::from_secs(61));
    assert_eq!(
        send(&mut c, voip(&dev, &b), BODY).await.status,
        StatusCode::OK
    );
    // Now going back to `a` is itself an update within 20 minutes.
    assert_eq!(
        send(&mut c, voip(&dev, &a), BODY).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );

    // `b` was issued 20m01s ago; at 60 minutes it still works, past 60 it has expired.
    f.clock.advance(Duration::from_secs(39 * 60 + 58));
    assert_eq!(
        send(&mut c, voip(&dev, &b), BODY).await.status,
        StatusCode::OK
    );
    f.clock.advance(Duration::from_secs(2));
    let r = send(&mut c, voip(&dev, &b), BODY).await;
    assert_eq!(
        (r.status.as_u16(), r.reason().as_str()),
        (403, "ExpiredProviderToken")
    );
    // A fresh token, 40 minutes after `b` was first used, is accepted.
    let fresh = f.token();
    assert_eq!(
        send(&mut c, voip(&dev, &fresh), BODY).await.status,
        StatusCode::OK
    );

    // A token issued in the future (beyond clock skew) is invalid.
    let future = f.key.provider_token(f.clock.unix_secs() + 3600);
    let r = send(&mut c, voip(&dev, &future), BODY).await;
    assert_eq!(
        (r.status.as_u16(), r.reason().as_str()),
        (403, "InvalidProviderToken")
    );
}

#[tokio::test]
async fn tokens_of_two_teams_never_share_a_connection() {
    let ca = Arc::new(TestCa::generate().expect("CA"));
    let one = ApnsSigningKey::generate("TEAMAAAAAA", "KEYAAAAAAA").expect("key");
    let two = ApnsSigningKey::generate("TEAMBBBBBB", "KEYBBBBBBB").expect("key");
    let cfg = MockApnsConfig::new(ca.clone(), vec![one.public_key(), two.public_key()]);
    let mock = MockApns::start(cfg).await.expect("mock");
    let now = mock.clock().unix_secs();
    let (t1, t2) = (one.provider_token(now), two.provider_token(now));
    let dev = device_token(9);
    let mut c = connect(mock.addr, &ca).await;
    assert_eq!(
        send(&mut c, voip(&dev, &t1), BODY).await.status,
        StatusCode::OK
    );
    let r = send(&mut c, voip(&dev, &t2), BODY).await;
    assert_eq!(
        (r.status.as_u16(), r.reason().as_str()),
        (403, "InvalidProviderToken")
    );
    let mut c2 = connect(mock.addr, &ca).await;
    assert_eq!(
        send(&mut c2, voip(&dev, &t2), BODY).await.status,
        StatusCode::OK
    );
    assert_eq!(mock.accepted().len(), 2);
}

#[tokio::test]
async fn dead_tokens_answer_410_with_timestamp() {
    let f = fixture(Faults::default()).await;
    let mut c = f.client().await;
    let jwt = f.token();
    let dev = device_token(4);
    assert_eq!(
        send(&mut c, voip(&dev, &jwt), BODY).await.status,
        StatusCode::OK
    );
    f.clock.advance(Duration::from_secs(3600 * 24 * 30));
    let before = f.clock.unix_millis();
    f.mock.mark_dead(&dev);
    let after = f.clock.unix_millis();
    let jwt = f.token();
    let r = send(&mut c, voip(&dev, &jwt), BODY).await;
    assert_eq!(r.status, StatusCode::GONE);
    let body = r.json();
    assert_eq!(body["reason"], "Unregistered");
    let ts = body["timestamp"].as_u64().expect("a numeric timestamp");
    assert!((before..=after).contains(&ts), "{ts} in {before}..={after}");
    // Other tokens are unaffected.
    assert_eq!(
        send(&mut c, voip(&device_token(5), &jwt), BODY)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(f.mock.accepted().len(), 2);
}

#[tokio::test]
async fn certificate_auth_replaces_the_provider_token() {
    let ca = Arc::new(TestCa::generate().expect("CA"));
    let (identity, cert) = ApnsClientCert::issue(&ca, TOPIC).expect("client cert");
    let mut cfg = MockApnsConfig::new(ca.clone(), Vec::new());
    cfg.client_certs = vec![cert];
    let mock = MockApns::start(cfg).await.expect("mock");
    let with_cert = ca.client_config_with(Some(&identity)).expect("config");
    let mut c = common::connect_with(mock.addr, with_cert).await;
    let push = |topic: Option<&str>, push_type: &str| {
        let mut b = Request::builder()
            .method(Method::POST)
            .uri(format!("https://localhost/3/device/{}", device_token(1)))
            .header("apns-push-type", push_type);
        if let Some(t) = topic {
            b = b.header("apns-topic", t);
        }
        b
    };
    // No provider token needed; the topic defaults to the certificate's bundle id.
    assert_eq!(
        send(&mut c, push(Some(VOIP_TOPIC), "voip"), BODY)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        send(&mut c, push(None, "alert"), BODY).await.status,
        StatusCode::OK
    );
    let r = send(&mut c, push(Some("com.other.app"), "alert"), BODY).await;
    assert_eq!(
        (r.status.as_u16(), r.reason().as_str()),
        (400, "TopicDisallowed")
    );
    let accepted = mock.accepted();
    assert_eq!(accepted.len(), 2);
    assert_eq!(accepted[1].topic, TOPIC);

    // A certificate from the same CA that the mock was not told about.
    let stranger = ca
        .issue_client_cert("Apple Push Services: com.other.app")
        .expect("cert");
    let mut c2 = common::connect_with(
        mock.addr,
        ca.client_config_with(Some(&stranger)).expect("config"),
    )
    .await;
    let r = send(&mut c2, push(Some(TOPIC), "alert"), BODY).await;
    assert_eq!(
        (r.status.as_u16(), r.reason().as_str()),
        (403, "BadCertificate")
    );
    // No certificate and no token.
    let mut c3 = connect(mock.addr, &ca).await;
    let r = send(&mut c3, push(Some(TOPIC), "alert"), BODY).await;
    assert_eq!(
        (r.status.as_u16(), r.reason().as_str()),
        (403, "MissingProviderToken")
    );
}

#[tokio::test]
async fn http1_only_clients_are_refused() {
    let f = fixture(Faults::default()).await;
    let mut config = f.ca.client_config().expect("config");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(f.mock.addr)
        .await
        .expect("connect");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect("localhost".try_into().expect("name"), tcp)
        .await;
    assert!(
        tls.is_err(),
        "APNs speaks HTTP/2 only: no common ALPN protocol"
    );
    assert_eq!(f.mock.stats().connections, 0);
}
