//! "No push lost": 10,000 pushes through the dispatch pipeline to mocks injecting 5 % 503s,
//! GOAWAYs and connection resets. Every push must be delivered exactly once (by `apns-id` for
//! APNs, by call reference for FCM) within its deadline, and every dead token reported.

// Helpers outside #[test] fns: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vigil_gateway::push::{DispatchHandle, PushClient, PushDispatcher};
use vigil_proto::push::{
    CredentialId, DispatchConfig, FailReason, PushEvent, PushId, PushRequest, Target,
};
use vigil_sim::mock::{FaultReason, Faults};
use vigil_tests::push::{apns_token, call, fcm_token, ApnsEnv, FcmEnv, BUNDLE};

const PUSHES: u64 = 10_000;
const DEAD_EVERY: u64 = 500;
const DEADLINE: Duration = Duration::from_secs(60);

fn faults(reason: FaultReason) -> Faults {
    Faults {
        error_rate: vec![(0.05, reason)],
        goaway_every: Some(997),
        reset_every: Some(1499),
        seed: 42,
        ..Faults::default()
    }
}

/// Submits `PUSHES` pushes (every `DEAD_EVERY`-th to a dead token) and collects the events
/// until every push is settled. Returns (sent ids, dead ids, elapsed).
async fn run(
    h: &DispatchHandle,
    events: &mut tokio::sync::mpsc::UnboundedReceiver<PushEvent>,
    cred: CredentialId,
    target: impl Fn(u64) -> Target,
) -> (
    HashMap<PushId, u64>,
    HashSet<PushId>,
    HashSet<PushId>,
    Duration,
) {
    let t0 = Instant::now();
    let mut ids = HashMap::new();
    for n in 0..PUSHES {
        let s = h
            .submit(PushRequest {
                credential: cred,
                target: target(n),
                notice: call(&format!("call-{n}")),
                deadline: t0 + DEADLINE,
            })
            .expect("queue has room");
        assert!(!s.duplicate);
        ids.insert(s.id, n);
    }
    let (mut sent, mut dead_reported, mut dead_failed) =
        (HashSet::new(), HashSet::new(), HashSet::new());
    while sent.len() + dead_failed.len() < ids.len() {
        let e = tokio::time::timeout(DEADLINE, events.recv())
            .await
            .expect("events keep coming")
            .expect("pipeline alive");
        match e {
            PushEvent::Sent { id } => assert!(sent.insert(id), "sent twice: {id}"),
            PushEvent::DeadToken { id, .. } => assert!(dead_reported.insert(id)),
            PushEvent::Failed {
                id,
                reason: FailReason::DeadToken,
            } => assert!(dead_failed.insert(id)),
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert_eq!(dead_reported, dead_failed);
    (ids, sent, dead_reported, t0.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apns_10k_pushes_through_faults_exactly_once() {
    let env = ApnsEnv::start(faults(FaultReason::Apns503)).await;
    for n in (0..PUSHES).step_by(DEAD_EVERY as usize) {
        env.mock.mark_dead(apns_token(n).expose());
    }
    let client = Arc::new(env.client().await);
    let cred = CredentialId(1);
    let (h, mut events) = PushDispatcher::start(
        DispatchConfig::default(),
        11,
        HashMap::from([(cred, PushClient::Apns(Arc::clone(&client)))]),
        256,
    );
    let (ids, sent, dead, elapsed) = run(&h, &mut events, cred, |n| Target::Apns {
        token: apns_token(n),
        bundle_id: BUNDLE.into(),
    })
    .await;
    assert!(elapsed < DEADLINE);
    assert_eq!(dead.len() as u64, PUSHES / DEAD_EVERY);
    assert!(dead.iter().all(|id| ids[id] % DEAD_EVERY == 0));
    assert_eq!(sent.len() as u64, PUSHES - PUSHES / DEAD_EVERY);

    // Exactly once at the server, by apns-id.
    let accepted = env.mock.accepted();
    let mut seen = HashSet::new();
    for a in &accepted {
        assert!(seen.insert(a.id.clone()), "apns-id {} accepted twice", a.id);
    }
    let expected: HashSet<String> = sent.iter().map(|id| h.apns_id(*id)).collect();
    assert_eq!(seen, expected);
    let stats = env.mock.stats();
    assert_eq!(stats.duplicate_ids, 0);
    // The faults really happened.
    assert!(stats.injected_faults > 300, "{stats:?}");
    assert!(stats.goaways_sent >= 5, "{stats:?}");
    assert!(stats.resets_sent >= 3, "{stats:?}");
    eprintln!(
        "apns no-loss: {PUSHES} pushes in {elapsed:?}, {} connects, stats {stats:?}",
        client.pool().connects()
    );
    h.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fcm_10k_pushes_through_faults_exactly_once() {
    let env = FcmEnv::start(faults(FaultReason::Fcm503 { retry_after: None })).await;
    for n in (0..PUSHES).step_by(DEAD_EVERY as usize) {
        env.mock.mark_dead(fcm_token(n).expose());
    }
    let client = Arc::new(env.client().await);
    let cred = CredentialId(2);
    let (h, mut events) = PushDispatcher::start(
        DispatchConfig::default(),
        12,
        HashMap::from([(cred, PushClient::Fcm(client))]),
        256,
    );
    let (ids, sent, dead, elapsed) = run(&h, &mut events, cred, |n| Target::Fcm {
        token: fcm_token(n),
    })
    .await;
    assert!(elapsed < DEADLINE);
    assert_eq!(dead.len() as u64, PUSHES / DEAD_EVERY);
    assert_eq!(sent.len() as u64, PUSHES - PUSHES / DEAD_EVERY);
    // Exactly once at the server, by call reference (FCM names messages itself).
    let mut seen = HashSet::new();
    for a in env.mock.accepted() {
        let r = a.payload["data"]["call_ref"].as_str().unwrap().to_owned();
        assert!(seen.insert(r.clone()), "{r} accepted twice");
    }
    let expected: HashSet<String> = sent.iter().map(|id| format!("call-{}", ids[id])).collect();
    assert_eq!(seen, expected);
    let stats = env.mock.stats();
    assert!(
        stats.injected_faults > 300 && stats.goaways_sent >= 5 && stats.resets_sent >= 3,
        "{stats:?}"
    );
    eprintln!("fcm no-loss: {PUSHES} pushes in {elapsed:?}, stats {stats:?}");
    h.shutdown();
}
