//! Mock APNs fault injection through a real TLS + HTTP/2 client: error rates, GOAWAY,
//! connection resets, the stream limit dropping to 1, and many concurrent streams.

mod common;

use common::apns::{fixture, send, voip, BODY};
use common::{device_token, request};
use http::StatusCode;
use std::sync::Arc;
use std::time::Duration;
use vigil_sim::mock::{FaultReason, Faults, LatencyDist};

#[tokio::test]
async fn injected_error_rates_match_the_configuration() {
    let faults = Faults {
        error_rate: vec![
            (0.05, FaultReason::Apns503),
            (0.02, FaultReason::Apns500),
            (0.03, FaultReason::Apns429TooManyRequests),
        ],
        seed: 11,
        ..Faults::default()
    };
    let f = fixture(faults).await;
    let jwt = f.token();
    let mut tasks = Vec::new();
    for worker in 0..4u32 {
        let mut c = f.client().await;
        let jwt = jwt.clone();
        tasks.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for i in 0..1000 {
                let a = send(&mut c, voip(&device_token(worker * 10_000 + i), &jwt), BODY).await;
                if a.status != StatusCode::OK {
                    assert!(a.headers.contains_key("apns-id"));
                    statuses.push((a.status.as_u16(), a.reason()));
                }
            }
            statuses
        }));
    }
    let mut errors = Vec::new();
    for t in tasks {
        errors.extend(t.await.expect("worker"));
    }
    let count = |s: u16, r: &str| errors.iter().filter(|(a, b)| *a == s && b == r).count();
    let (e503, e500, e429) = (
        count(503, "ServiceUnavailable"),
        count(500, "InternalServerError"),
        count(429, "TooManyRequests"),
    );
    assert_eq!(e503 + e500 + e429, errors.len());
    // 4000 draws: expect 200 / 80 / 120; allow ~4 standard deviations.
    assert!((145..=255).contains(&e503), "503s: {e503}");
    assert!((45..=115).contains(&e500), "500s: {e500}");
    assert!((80..=160).contains(&e429), "429s: {e429}");
    let stats = f.mock.stats();
    assert_eq!(stats.injected_faults as usize, errors.len());
    assert_eq!(stats.accepted as usize, 4000 - errors.len());
    assert_eq!(f.mock.accepted().len(), 4000 - errors.len());
    assert_eq!(stats.duplicate_ids, 0);
}

#[tokio::test]
async fn goaway_lets_in_flight_streams_finish() {
    let f = fixture(Faults {
        goaway_every: Some(10),
        latency: LatencyDist::Fixed(Duration::from_millis(100)),
        ..Faults::default()
    })
    .await;
    let jwt = f.token();
    let mut c = f.client().await;
    // Ten concurrent pushes: the tenth triggers GOAWAY while all are in flight, and all
    // ten still complete.
    let mut handles = Vec::new();
    for i in 0..10 {
        let send = c.send.clone();
        let req = voip(&device_token(i), &jwt);
        handles.push(tokio::spawn(async move {
            request(&send, req.body(()).expect("req"), BODY).await
        }));
    }
    for h in handles {
        let a = h
            .await
            .expect("task")
            .expect("in-flight stream completes after GOAWAY");
        assert_eq!(a.status, StatusCode::OK);
    }
    // The connection then closes gracefully; a new request on it fails.
    let closed = tokio::time::timeout(Duration::from_secs(5), &mut c.conn).await;
    assert!(
        matches!(closed, Ok(Ok(Ok(())))),
        "graceful close: {closed:?}"
    );
    let err = c
        .request(voip(&device_token(99), &jwt).body(()).expect("req"), BODY)
        .await;
    assert!(err.is_err());
    let stats = f.mock.stats();
    assert_eq!(stats.goaways_sent, 1);
    assert_eq!(stats.accepted, 10);
    // A new connection works.
    let mut c2 = f.client().await;
    assert_eq!(
        send(&mut c2, voip(&device_token(100), &jwt), BODY)
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn reset_drops_the_connection_without_answer() {
    let f = fixture(Faults {
        reset_every: Some(5),
        ..Faults::default()
    })
    .await;
    let jwt = f.token();
    let mut c = f.client().await;
    for i in 0..4 {
        assert_eq!(
            send(&mut c, voip(&device_token(i), &jwt), BODY)
                .await
                .status,
            StatusCode::OK
        );
    }
    let err = c
        .request(voip(&device_token(4), &jwt).body(()).expect("req"), BODY)
        .await
        .err()
        .expect("the fifth request gets no answer");
    assert!(!err.is_go_away(), "abrupt, not GOAWAY: {err:?}");
    assert!(
        err.is_io() || err.is_reset() || err.to_string().contains("closed"),
        "{err:?}"
    );
    let stats = f.mock.stats();
    assert_eq!(stats.resets_sent, 1);
    assert_eq!(stats.accepted, 4);
    // A new connection works.
    let mut c2 = f.client().await;
    assert_eq!(
        send(&mut c2, voip(&device_token(5), &jwt), BODY)
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn stream_limit_drops_to_one_after_a_rejection() {
    let f = fixture(Faults {
        drop_stream_limit_to_1_after_rejection: true,
        ..Faults::default()
    })
    .await;
    let jwt = f.token();
    let mut c = f.client().await;
    assert_eq!(
        send(&mut c, voip(&device_token(1), &jwt), BODY)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(c.send.current_max_send_streams(), 1000);
    let r = send(&mut c, voip("nothex", &jwt), BODY).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // The SETTINGS frame went out with the rejection; one more round trip has it applied.
    assert_eq!(
        send(&mut c, voip(&device_token(2), &jwt), BODY)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(c.send.current_max_send_streams(), 1);
    // The connection keeps working, one stream at a time, with concurrent callers queued.
    let mut handles = Vec::new();
    for i in 0..20 {
        let send = c.send.clone();
        let req = voip(&device_token(10 + i), &jwt);
        handles.push(tokio::spawn(async move {
            request(&send, req.body(()).expect("req"), BODY).await
        }));
    }
    for h in handles {
        assert_eq!(
            h.await.expect("task").expect("answer").status,
            StatusCode::OK
        );
    }
    let stats = f.mock.stats();
    assert_eq!(stats.stream_limit_drops, 1);
    assert_eq!(
        stats.refused_streams, 0,
        "a well-behaved client never exceeds the limit"
    );
    assert_eq!(stats.accepted, 22);
}

#[tokio::test]
async fn many_concurrent_streams_on_one_connection() {
    let f = fixture(Faults::default()).await;
    let jwt = f.token();
    let c = f.client().await;
    let mut handles = Vec::new();
    for i in 0..500 {
        let send = c.send.clone();
        let req = voip(&device_token(i), &jwt);
        handles.push(tokio::spawn(async move {
            request(&send, req.body(()).expect("req"), BODY).await
        }));
    }
    for h in handles {
        assert_eq!(
            h.await.expect("task").expect("answer").status,
            StatusCode::OK
        );
    }
    assert_eq!(f.mock.accepted().len(), 500);
    assert_eq!(f.mock.stats().connections, 1);
}

/// A naive client that resends on any failure must still see each push accepted exactly
/// once: a reset only loses requests the mock never answered (and never recorded).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resets_and_goaways_never_duplicate_an_answered_push() {
    let f = Arc::new(
        fixture(Faults {
            error_rate: vec![(0.05, FaultReason::Apns503)],
            goaway_every: Some(89),
            reset_every: Some(97),
            latency: LatencyDist::Uniform {
                min: Duration::ZERO,
                max: Duration::from_millis(3),
            },
            seed: 5,
            ..Faults::default()
        })
        .await,
    );
    let jwt = f.token();
    let mut workers = Vec::new();
    for w in 0..4u32 {
        let (f, jwt) = (f.clone(), jwt.clone());
        workers.push(tokio::spawn(async move {
            let mut conn = f.client().await;
            let mut retries = 0;
            for batch in 0..25u32 {
                // Ten pushes in flight at once on one connection, each resent until a 200.
                let mut todo: Vec<(u32, String)> = (0..10)
                    .map(|i| (w * 1000 + batch * 10 + i, uuid::Uuid::new_v4().to_string()))
                    .collect();
                while !todo.is_empty() {
                    let mut handles = Vec::new();
                    for (n, id) in todo.drain(..) {
                        let send = conn.send.clone();
                        let req = voip(&device_token(n), &jwt).header("apns-id", id.clone());
                        handles.push(tokio::spawn(async move {
                            let r = request(&send, req.body(()).expect("req"), BODY).await;
                            (n, id, r.map(|a| a.status))
                        }));
                    }
                    let mut broken = false;
                    for h in handles {
                        let (n, id, r) = h.await.expect("task");
                        match r {
                            Ok(StatusCode::OK) => {}
                            Ok(s) => {
                                assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
                                todo.push((n, id));
                            }
                            Err(_) => {
                                broken = true;
                                todo.push((n, id));
                            }
                        }
                    }
                    retries += todo.len();
                    if broken || conn.conn.is_finished() {
                        conn = f.client().await;
                    }
                }
            }
            retries
        }));
    }
    let mut retries = 0;
    for w in workers {
        retries += w.await.expect("worker");
    }
    let accepted = f.mock.accepted();
    let unique: std::collections::HashSet<_> = accepted.iter().map(|p| p.id.as_str()).collect();
    let stats = f.mock.stats();
    assert!(
        stats.resets_sent >= 5 && stats.goaways_sent >= 5,
        "{stats:?}"
    );
    assert!(retries > 0);
    assert_eq!(unique.len(), 1000, "every push accepted");
    assert_eq!(
        accepted.len(),
        1000,
        "none twice ({} duplicates)",
        stats.duplicate_ids
    );
    assert_eq!(stats.duplicate_ids, 0);
}
