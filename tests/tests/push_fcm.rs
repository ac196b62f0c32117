//! End to end: Vigil's FCM HTTP v1 client against the mock FCM over TLS, every answer class.

// Helpers outside #[test] fns: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vigil_gateway::push::{ClientError, FcmClient, PushClient, PushDispatcher};
use vigil_proto::push::classify::FCM_QUOTA_MIN_DELAY;
use vigil_proto::push::payload::build_fcm;
use vigil_proto::push::{
    CredentialId, DeviceToken, DispatchConfig, FailReason, FcmErrorCode, Notice, Outcome,
    PushEvent, PushRequest, Target,
};
use vigil_sim::mock::{FaultReason, Faults, FcmServiceAccount, PushPriority};
use vigil_tests::push::{call, fcm_token, FcmEnv};

const MIN: Duration = Duration::from_secs(60);

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

fn msg(n: &Notice, t: &DeviceToken) -> vigil_proto::push::FcmMessage {
    build_fcm(n, t, Duration::from_secs(30)).unwrap()
}

#[tokio::test]
async fn high_priority_data_message_with_ttl() {
    let env = FcmEnv::start(Faults::default()).await;
    let client = env.client().await;
    let t = fcm_token(1);
    assert_eq!(
        client.send(&msg(&call("c1"), &t), soon()).await,
        Outcome::Accepted
    );
    assert_eq!(
        client.send(&msg(&Notice::RenewReminder, &t), soon()).await,
        Outcome::Accepted
    );
    let acc = env.mock.accepted();
    assert_eq!(acc.len(), 2);
    assert_eq!(acc[0].token, t.expose());
    assert_eq!(acc[0].topic, "vigil-test");
    assert_eq!(acc[0].priority, PushPriority::High);
    assert_eq!(acc[0].ttl, Some(Duration::from_secs(30)));
    assert_eq!(acc[0].payload["data"]["call_ref"], "c1");
    assert_eq!(acc[0].payload["data"]["type"], "incoming-call");
    assert_eq!(acc[1].priority, PushPriority::Normal);
    assert!(acc[0].id.starts_with("projects/vigil-test/messages/"));
}

#[tokio::test]
async fn access_token_cached_until_shortly_before_expiry() {
    let env = FcmEnv::start(Faults::default()).await;
    let client = env.client().await;
    for n in 0..20 {
        assert_eq!(
            client.send(&msg(&call("c"), &fcm_token(n)), soon()).await,
            Outcome::Accepted
        );
    }
    assert_eq!(client.token_fetches(), 1);
    assert_eq!(env.mock.stats().tokens_issued, 1);
    // 54 minutes in: still cached. 56 minutes in (5 minutes before the hour): refreshed.
    env.clock.advance(54 * MIN);
    env.mock_clock.advance(54 * MIN);
    assert_eq!(
        client.send(&msg(&call("c"), &fcm_token(1)), soon()).await,
        Outcome::Accepted
    );
    assert_eq!(client.token_fetches(), 1);
    env.clock.advance(2 * MIN);
    env.mock_clock.advance(2 * MIN);
    assert_eq!(
        client.send(&msg(&call("c"), &fcm_token(1)), soon()).await,
        Outcome::Accepted
    );
    assert_eq!(client.token_fetches(), 2);
}

#[tokio::test]
async fn unauthenticated_refreshes_the_access_token_once() {
    // Tokens live 30 minutes on the server; the client caches for 25.
    let env = FcmEnv::start_with(Faults::default(), |c| c.access_token_lifetime = 30 * MIN).await;
    let client = env.client().await;
    // The server's clock runs 40 minutes ahead: our cached token is expired there.
    env.mock_clock.advance(40 * MIN);
    assert_eq!(
        client.send(&msg(&call("c"), &fcm_token(1)), soon()).await,
        Outcome::Accepted
    );
    assert_eq!(client.token_fetches(), 2);
    assert_eq!(env.mock.stats().by_status.get(&401), Some(&1));
}

#[tokio::test]
async fn never_retried_errors_and_dead_tokens() {
    let env = FcmEnv::start(Faults::default()).await;
    let client = env.client().await;
    // A character FCM tokens never contain: INVALID_ARGUMENT.
    let bad = DeviceToken::opaque("bad+token").unwrap();
    assert_eq!(
        client.send(&msg(&call("c"), &bad), soon()).await,
        Outcome::Fail(FailReason::Fcm {
            status: 400,
            code: FcmErrorCode::INVALID_ARGUMENT
        })
    );
    env.mock.mark_dead(fcm_token(5).expose());
    assert_eq!(
        client.send(&msg(&call("c"), &fcm_token(5)), soon()).await,
        Outcome::DeadToken
    );
    // Nothing retried: one 400 and one 404 (plus the token request).
    let stats = env.mock.stats();
    assert_eq!(stats.by_status.get(&400), Some(&1));
    assert_eq!(stats.by_status.get(&404), Some(&1));
    assert_eq!(stats.requests, 3);

    // An account the server does not trust cannot get a token at all.
    let stranger =
        FcmServiceAccount::generate("vigil-test", "evil@x.iam.gserviceaccount.com").unwrap();
    let mut cfg = env.config();
    cfg.service_account_json =
        vigil_gateway::push::Secret::new(stranger.to_json(&env.mock.token_url()));
    assert!(matches!(
        FcmClient::connect(cfg).await,
        Err(ClientError::TokenEndpoint(400..=403))
    ));
}

#[tokio::test]
async fn quota_and_unavailable_honour_retry_after() {
    let env = FcmEnv::start(Faults {
        error_rate: vec![(1.0, FaultReason::Fcm429 { retry_after: 3 })],
        ..Faults::default()
    })
    .await;
    let client = env.client().await;
    assert_eq!(
        client.send(&msg(&call("c"), &fcm_token(1)), soon()).await,
        Outcome::Retry {
            retry_after: Some(Duration::from_secs(3)),
            min_delay: FCM_QUOTA_MIN_DELAY
        }
    );
    env.mock.set_faults(Faults {
        error_rate: vec![(
            1.0,
            FaultReason::Fcm503 {
                retry_after: Some(2),
            },
        )],
        ..Faults::default()
    });
    assert_eq!(
        client.send(&msg(&call("c"), &fcm_token(1)), soon()).await,
        Outcome::Retry {
            retry_after: Some(Duration::from_secs(2)),
            min_delay: Duration::ZERO
        }
    );
    env.mock.set_faults(Faults {
        error_rate: vec![(1.0, FaultReason::Fcm500)],
        ..Faults::default()
    });
    assert!(matches!(
        client.send(&msg(&call("c"), &fcm_token(1)), soon()).await,
        Outcome::Retry { .. }
    ));
}

#[tokio::test]
async fn dispatcher_waits_out_retry_after_and_gives_up_on_quota_past_deadline() {
    let env = FcmEnv::start(Faults {
        error_rate: vec![(
            1.0,
            FaultReason::Fcm503 {
                retry_after: Some(1),
            },
        )],
        ..Faults::default()
    })
    .await;
    let client = Arc::new(env.client().await);
    let cred = CredentialId(4);
    let (h, mut events) = PushDispatcher::start(
        DispatchConfig::default(),
        3,
        HashMap::from([(cred, PushClient::Fcm(client))]),
        16,
    );
    let t0 = Instant::now();
    let p = h
        .submit(PushRequest {
            credential: cred,
            target: Target::Fcm {
                token: fcm_token(1),
            },
            notice: call("c"),
            deadline: t0 + Duration::from_secs(20),
        })
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    env.mock.set_faults(Faults::default());
    let e = tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e, PushEvent::Sent { id: p.id });
    assert!(
        t0.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was honoured"
    );
    // Quota exceeded: the first retry would be ≥ 60 s away, past this call's 20 s deadline.
    env.mock.set_faults(Faults {
        error_rate: vec![(1.0, FaultReason::Fcm429 { retry_after: 1 })],
        ..Faults::default()
    });
    let q = h
        .submit(PushRequest {
            credential: cred,
            target: Target::Fcm {
                token: fcm_token(2),
            },
            notice: call("d"),
            deadline: Instant::now() + Duration::from_secs(20),
        })
        .unwrap();
    let e = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        e,
        PushEvent::Failed {
            id: q.id,
            reason: FailReason::DeadlineExceeded
        }
    );
    assert_eq!(
        env.mock.stats().by_status.get(&429),
        Some(&1),
        "no retry sooner than a minute"
    );
    h.shutdown();
}
