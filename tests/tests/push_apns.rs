//! End to end: Vigil's APNs client against the mock APNs over TLS, every answer class.

// Helpers outside #[test] fns: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vigil_gateway::push::{ApnsClient, PushClient, PushDispatcher};
use vigil_proto::push::payload::build_apns;
use vigil_proto::push::{
    ApnsPushType, ApnsReason, ApnsRequest, CallEndReason, CredentialId, DeviceToken,
    DispatchConfig, Expiration, FailReason, MessageNotice, Notice, Outcome, PushEvent, PushRequest,
    Target,
};
use vigil_sim::mock::{ApnsSigningKey, FaultReason, Faults, PushPriority};
use vigil_tests::push::{apns_token, call, ApnsEnv, BUNDLE};

const MIN: Duration = Duration::from_secs(60);

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

fn req(notice: &Notice) -> ApnsRequest {
    build_apns(notice, BUNDLE, Duration::from_secs(60)).unwrap()
}

#[tokio::test]
async fn voip_alert_and_background_pushes_carry_the_right_headers() {
    let env = ApnsEnv::start(Faults::default()).await;
    let client = env.client().await;
    let voip = req(&call("call-1"));
    assert_eq!(
        client
            .send(
                &apns_token(1),
                &voip,
                "11111111-1111-4111-8111-111111111111",
                soon()
            )
            .await,
        Outcome::Accepted
    );
    let msg = Notice::Message(MessageNotice {
        message_ref: "m1".into(),
        from: "bob".into(),
        preview: Some("hi".into()),
    });
    assert_eq!(
        client
            .send(
                &apns_token(2),
                &req(&msg),
                "22222222-2222-4222-8222-222222222222",
                soon()
            )
            .await,
        Outcome::Accepted
    );
    let cancel = Notice::CallEnded {
        call_ref: "call-1".into(),
        caller: "x".into(),
        reason: CallEndReason::Cancelled,
    };
    assert_eq!(
        client
            .send(
                &apns_token(1),
                &req(&cancel),
                "33333333-3333-4333-8333-333333333333",
                soon()
            )
            .await,
        Outcome::Accepted
    );

    let acc = env.mock.accepted();
    assert_eq!(acc.len(), 3);
    let by_id: HashMap<_, _> = acc.iter().map(|a| (a.id.as_str(), a)).collect();
    let v = by_id["11111111-1111-4111-8111-111111111111"];
    assert_eq!(v.push_type.as_deref(), Some("voip"));
    assert_eq!(v.topic, format!("{BUNDLE}.voip"));
    assert_eq!(v.priority, PushPriority::High);
    assert_eq!(v.expiration, Some(0));
    assert_eq!(v.token, apns_token(1).expose());
    assert_eq!(v.payload["vigil"]["call_ref"], "call-1");
    let a = by_id["22222222-2222-4222-8222-222222222222"];
    assert_eq!(a.push_type.as_deref(), Some("alert"));
    assert_eq!(a.topic, BUNDLE);
    assert!(a.expiration.unwrap() > 0);
    assert_eq!(a.payload["aps"]["alert"]["body"], "hi");
    let b = by_id["33333333-3333-4333-8333-333333333333"];
    assert_eq!(b.push_type.as_deref(), Some("background"));
    assert_eq!(b.priority, PushPriority::Normal);
    assert_eq!(b.collapse_id.as_deref(), Some("call-1"));
    assert!(acc
        .iter()
        .all(|a| a.payload.to_string().find("password").is_none()));
    // One provider token for all three, on warmed connections.
    assert_eq!(client.tokens_minted(), 1);
    assert_eq!(client.pool().connects(), 2);
}

#[tokio::test]
async fn never_retried_reasons_fail_at_once() {
    let env = ApnsEnv::start(Faults::default()).await;
    let client = env.client().await;
    let fail = |status, reason| Outcome::Fail(FailReason::Apns { status, reason });

    // Too short for the mock (64–200 hex digits): BadDeviceToken.
    let short = DeviceToken::apns("abcd").unwrap();
    assert_eq!(
        client
            .send(&short, &req(&call("c")), &uuid(1), soon())
            .await,
        fail(400, ApnsReason::BadDeviceToken)
    );

    // A VoIP push on the app topic: DeviceTokenNotForTopic.
    let mut wrong = req(&call("c"));
    wrong.topic = BUNDLE.into();
    assert_eq!(
        client.send(&apns_token(1), &wrong, &uuid(2), soon()).await,
        fail(400, ApnsReason::DeviceTokenNotForTopic)
    );

    // Over 4096 bytes for an alert (our builder refuses it; a hand-made request reaches APNs).
    let big = ApnsRequest {
        push_type: ApnsPushType::Alert,
        topic: BUNDLE.into(),
        priority: 10,
        expiration: Expiration::After(MIN),
        collapse_id: None,
        body: format!(r#"{{"aps":{{}},"x":"{}"}}"#, "y".repeat(4100)).into_bytes(),
    };
    assert_eq!(
        client.send(&apns_token(1), &big, &uuid(3), soon()).await,
        fail(413, ApnsReason::PayloadTooLarge)
    );

    // An app this key may not push to.
    let mut other = req(&call("c"));
    other.topic = "com.other.app.voip".into();
    assert_eq!(
        client.send(&apns_token(1), &other, &uuid(4), soon()).await,
        fail(400, ApnsReason::TopicDisallowed)
    );

    // Dead token: 410 Unregistered.
    env.mock.mark_dead(apns_token(9).expose());
    assert_eq!(
        client
            .send(&apns_token(9), &req(&call("c")), &uuid(5), soon())
            .await,
        Outcome::DeadToken
    );

    // A key the server does not know: Forbidden class.
    let mut cfg = env.config();
    let stranger = ApnsSigningKey::generate("TEAM000001", "KEY0000009").unwrap();
    cfg.auth = vigil_gateway::push::ApnsAuth::Token {
        p8_pem: vigil_gateway::push::Secret::new(stranger.p8_pem()),
        key_id: stranger.key_id.clone(),
        team_id: stranger.team_id.clone(),
    };
    let c2 = ApnsClient::connect(cfg).await.unwrap();
    assert_eq!(
        c2.send(&apns_token(1), &req(&call("c")), &uuid(6), soon())
            .await,
        fail(403, ApnsReason::InvalidProviderToken)
    );

    // None of these was retried: one request each.
    assert_eq!(env.mock.stats().requests, 6);
    assert!(env.mock.accepted().is_empty());
}

fn uuid(n: u64) -> String {
    format!("00000000-0000-4000-8000-{n:012x}")
}

#[tokio::test]
async fn server_errors_are_retried_with_retry_after() {
    let env = ApnsEnv::start(Faults {
        error_rate: vec![(1.0, FaultReason::Apns503)],
        ..Faults::default()
    })
    .await;
    let client = env.client().await;
    let out = client
        .send(&apns_token(1), &req(&call("c")), &uuid(1), soon())
        .await;
    assert!(matches!(out, Outcome::Retry { .. }), "{out:?}");
    env.mock.set_faults(Faults {
        error_rate: vec![(1.0, FaultReason::Apns429TooManyRequests)],
        ..Faults::default()
    });
    let out = client
        .send(&apns_token(1), &req(&call("c")), &uuid(1), soon())
        .await;
    assert!(matches!(out, Outcome::Retry { .. }), "{out:?}");
    env.mock.set_faults(Faults {
        error_rate: vec![(1.0, FaultReason::Apns500)],
        ..Faults::default()
    });
    let out = client
        .send(&apns_token(1), &req(&call("c")), &uuid(1), soon())
        .await;
    assert!(matches!(out, Outcome::Retry { .. }), "{out:?}");
}

#[tokio::test]
async fn dispatcher_retries_5xx_until_accepted_and_reports_events() {
    let env = ApnsEnv::start(Faults {
        error_rate: vec![(1.0, FaultReason::Apns503Shutdown)],
        ..Faults::default()
    })
    .await;
    let client = Arc::new(env.client().await);
    let cred = CredentialId(1);
    let (h, mut events) = PushDispatcher::start(
        DispatchConfig::default(),
        7,
        HashMap::from([(cred, PushClient::Apns(client))]),
        64,
    );
    env.mock.mark_dead(apns_token(66).expose());
    let target = |n| Target::Apns {
        token: apns_token(n),
        bundle_id: BUNDLE.into(),
    };
    let p = h
        .submit(PushRequest {
            credential: cred,
            target: target(1),
            notice: call("c1"),
            deadline: Instant::now() + Duration::from_secs(20),
        })
        .unwrap();
    // Identical push while the first is live: merged.
    let dup = h
        .submit(PushRequest {
            credential: cred,
            target: target(1),
            notice: call("c1"),
            deadline: Instant::now() + Duration::from_secs(20),
        })
        .unwrap();
    assert!(dup.duplicate && dup.id == p.id);
    let dead = h
        .submit(PushRequest {
            credential: cred,
            target: target(66),
            notice: call("c2"),
            deadline: Instant::now() + Duration::from_secs(20),
        })
        .unwrap();
    // A short deadline that the 503s outlast.
    let late = h
        .submit(PushRequest {
            credential: cred,
            target: target(2),
            notice: call("c3"),
            deadline: Instant::now() + Duration::from_millis(400),
        })
        .unwrap();

    // Dead-token answers come before injected faults: reported at once.
    let mut got = vec![];
    while got.len() < 2 {
        got.push(events.recv().await.unwrap());
    }
    assert_eq!(
        got[0],
        PushEvent::DeadToken {
            id: dead.id,
            credential: cred,
            target: target(66)
        }
    );
    assert_eq!(
        got[1],
        PushEvent::Failed {
            id: dead.id,
            reason: FailReason::DeadToken
        }
    );
    let e = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        e,
        PushEvent::Failed {
            id: late.id,
            reason: FailReason::DeadlineExceeded
        }
    );
    assert!(env.mock.stats().requests >= 3, "the 503s were retried");
    env.mock.set_faults(Faults::default());
    let e = tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e, PushEvent::Sent { id: p.id });
    let acc = env.mock.accepted();
    assert_eq!(acc.len(), 1);
    assert_eq!(acc[0].id, h.apns_id(p.id));
    h.shutdown();
}

#[tokio::test]
async fn provider_token_reused_then_refreshed_on_age_and_on_expired() {
    let env = ApnsEnv::start(Faults::default()).await;
    let client = env.client().await;
    let send = |n: u64| {
        let client = &client;
        async move {
            client
                .send(
                    &apns_token(n),
                    &req(&call(&format!("c{n}"))),
                    &uuid(n),
                    soon(),
                )
                .await
        }
    };
    assert_eq!(send(1).await, Outcome::Accepted);
    // 30 minutes later: same token (the mock would answer 429 to a new one within 20 min
    // of first use, and accepts the old one: under 60 min).
    env.clock.advance(30 * MIN);
    env.mock_clock.advance(30 * MIN);
    assert_eq!(send(2).await, Outcome::Accepted);
    assert_eq!(client.tokens_minted(), 1);
    // 46 minutes after minting: a new token, accepted.
    env.clock.advance(16 * MIN);
    env.mock_clock.advance(16 * MIN);
    assert_eq!(send(3).await, Outcome::Accepted);
    assert_eq!(client.tokens_minted(), 2);

    // The server's clock runs 40 minutes ahead: at 21 client-minutes the token is 61 minutes
    // old to the server → 403 ExpiredProviderToken → refreshed (allowed: > 20 min) → accepted.
    env.mock_clock.advance(61 * MIN);
    env.clock.advance(21 * MIN);
    assert_eq!(send(4).await, Outcome::Accepted);
    assert_eq!(client.tokens_minted(), 3);
    assert_eq!(
        env.mock.stats().by_reason.get("ExpiredProviderToken"),
        Some(&1)
    );

    // Expired again 5 client-minutes after a refresh: no second refresh within 20 minutes;
    // the push is told to retry when a refresh is allowed.
    env.mock_clock.advance(65 * MIN);
    env.clock.advance(5 * MIN);
    match send(5).await {
        Outcome::Retry {
            retry_after: Some(d),
            ..
        } => {
            assert!(d > 14 * MIN && d <= 15 * MIN, "{d:?}");
        }
        other => panic!("expected a delayed retry, got {other:?}"),
    }
    assert_eq!(client.tokens_minted(), 3);
    assert_eq!(
        env.mock
            .stats()
            .by_reason
            .get("TooManyProviderTokenUpdates"),
        None
    );
}

#[tokio::test]
async fn teams_never_share_a_connection() {
    let env = ApnsEnv::start_with(Faults::default(), |_| {}).await;
    let other_key = ApnsSigningKey::generate("TEAM000002", "KEY0000002").unwrap();
    // A second mock trusting both keys.
    let env2 =
        ApnsEnv::start_with(Faults::default(), |c| c.keys.push(other_key.public_key())).await;
    drop(env);
    let a = env2.client().await;
    let mut cfg = env2.config();
    cfg.auth = vigil_gateway::push::ApnsAuth::Token {
        p8_pem: vigil_gateway::push::Secret::new(other_key.p8_pem()),
        key_id: other_key.key_id.clone(),
        team_id: other_key.team_id.clone(),
    };
    let b = ApnsClient::connect(cfg).await.unwrap();
    for n in 0..10 {
        assert_eq!(
            a.send(&apns_token(n), &req(&call("a")), &uuid(n), soon())
                .await,
            Outcome::Accepted
        );
        assert_eq!(
            b.send(&apns_token(n), &req(&call("b")), &uuid(100 + n), soon())
                .await,
            Outcome::Accepted
        );
    }
    let acc = env2.mock.accepted();
    let conns_a: std::collections::HashSet<_> = acc
        .iter()
        .filter(|p| p.payload["vigil"]["call_ref"] == "a")
        .map(|p| p.connection)
        .collect();
    let conns_b: std::collections::HashSet<_> = acc
        .iter()
        .filter(|p| p.payload["vigil"]["call_ref"] == "b")
        .map(|p| p.connection)
        .collect();
    assert!(conns_a.is_disjoint(&conns_b));
    assert_eq!(acc.len(), 20);
}

#[tokio::test]
async fn goaway_and_stream_limit_drop_lose_nothing() {
    let env = ApnsEnv::start(Faults {
        goaway_every: Some(7),
        drop_stream_limit_to_1_after_rejection: true,
        ..Faults::default()
    })
    .await;
    let client = Arc::new(env.client().await);
    // A rejection first, so the connection's stream limit drops to 1.
    let short = DeviceToken::apns("abcd").unwrap();
    assert!(matches!(
        client
            .send(&short, &req(&call("x")), &uuid(999), soon())
            .await,
        Outcome::Fail(_)
    ));
    let mut tasks = vec![];
    for n in 0..200u64 {
        let c = Arc::clone(&client);
        tasks.push(tokio::spawn(async move {
            c.send(
                &apns_token(n),
                &req(&call(&format!("g{n}"))),
                &uuid(n),
                soon(),
            )
            .await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), Outcome::Accepted);
    }
    let stats = env.mock.stats();
    assert!(stats.goaways_sent > 10, "{stats:?}");
    assert!(
        client.pool().connects() > 2,
        "reconnected after GOAWAY: {} connects, {stats:?}",
        client.pool().connects()
    );
    let ids: std::collections::HashSet<_> = env.mock.accepted().into_iter().map(|a| a.id).collect();
    assert_eq!(ids.len(), 200);
    assert_eq!(stats.duplicate_ids, 0);
}
