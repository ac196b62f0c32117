//! Vigil's APNs client against the mock APNs (HTTP/2 over TLS on loopback): pushes per
//! second through `ApnsClient::send`, the path every APNs push takes.
//!
//! The mock runs on a tokio runtime of its own (one worker thread) and the client on
//! another (one worker), so neither steals the other's scheduler; on a 2-core machine they
//! get a core each when nothing else runs. Two cases:
//! - `apns_client/500_in_flight_2_connections`: throughput with HTTP/2 multiplexing, the
//!   shape of the side-by-side with h2load in `tests/src/bin/push_bench.rs` (which runs the
//!   mock as a separate process and needs the `h2load` tool, so it is not a criterion bench);
//! - `apns_client/1_in_flight`: one push at a time, i.e. the round trip of one push.
//!
//! Criterion's "thrpt" is pushes per second. Run: `cargo bench -p vigil-benches --bench push`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tokio::runtime::Runtime;
use vigil_gateway::push::{ApnsAuth, ApnsClient, ApnsConfig, Roots, Secret};
use vigil_proto::push::payload::build_apns;
use vigil_proto::push::{ApnsRequest, CallNotice, DeviceToken, Notice, Outcome};
use vigil_sim::mock::{ApnsSigningKey, MockApns, MockApnsConfig, MockApnsHandle, TestCa};

const BUNDLE: &str = "org.vigil.bench";

fn runtime(name: &str) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(name)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// 1,000 distinct device tokens, as a gateway pushes to many devices.
fn tokens() -> Vec<DeviceToken> {
    (0..1000u64)
        .map(|i| DeviceToken::apns(&format!("{:064x}", 0xbe4c_0000 + i)).expect("hex token"))
        .collect()
}

/// Sends `n` pushes with `in_flight` concurrent senders; returns the elapsed time.
async fn push_many(
    client: &Arc<ApnsClient>,
    req: &Arc<ApnsRequest>,
    tokens: &Arc<Vec<DeviceToken>>,
    ids: &Arc<AtomicU64>,
    n: u64,
    in_flight: u64,
) -> Duration {
    let next = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..in_flight.min(n) {
        let (client, req, tokens, ids, next) = (
            Arc::clone(client),
            Arc::clone(req),
            Arc::clone(tokens),
            Arc::clone(ids),
            Arc::clone(&next),
        );
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < n {
                let i = ids.fetch_add(1, Ordering::Relaxed);
                let apns_id = format!("00000000-0000-4000-8000-{i:012x}");
                let token = &tokens[(i % tokens.len() as u64) as usize];
                let deadline = Instant::now() + Duration::from_secs(30);
                let outcome = client.send(token, &req, &apns_id, deadline).await;
                assert_eq!(outcome, Outcome::Accepted, "the mock accepts every push");
            }
        }));
    }
    for t in tasks {
        t.await.expect("sender task");
    }
    t0.elapsed()
}

fn bench_push(c: &mut Criterion) {
    let mock_rt = runtime("mock-apns");
    let client_rt = runtime("vigil-client");
    let key = ApnsSigningKey::generate("BENCHTEAM1", "BENCHKEY01").expect("p8 key");
    let mock: MockApnsHandle = mock_rt.block_on(async {
        let ca = Arc::new(TestCa::generate().expect("test CA"));
        let mut cfg = MockApnsConfig::new(ca, vec![key.public_key()]);
        // Benchmarks send hundreds of thousands of pushes; counting them is enough.
        cfg.record_capacity = 0;
        MockApns::start(cfg).await.expect("mock APNs starts")
    });
    let mut cfg = ApnsConfig::new(
        mock.base_url(),
        ApnsAuth::Token {
            p8_pem: Secret::new(key.p8_pem()),
            key_id: key.key_id.clone(),
            team_id: key.team_id.clone(),
        },
    );
    cfg.roots = Roots::Pem(mock.ca_pem.clone());
    cfg.connect_to = Some(mock.addr);
    cfg.pool_size = 2;
    let client = Arc::new(
        client_rt
            .block_on(ApnsClient::connect(cfg))
            .expect("client connects to the mock"),
    );
    let notice = Notice::IncomingCall(CallNotice {
        call_ref: "bench-call".to_owned(),
        caller: "+15550100".to_owned(),
        caller_name: Some("Alice".to_owned()),
        video: false,
    });
    let req = Arc::new(build_apns(&notice, BUNDLE, Duration::from_secs(30)).expect("payload"));
    let tokens = Arc::new(tokens());
    let ids = Arc::new(AtomicU64::new(0));

    let mut g = c.benchmark_group("apns_client");
    g.throughput(Throughput::Elements(1));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    for (name, in_flight) in [("500_in_flight_2_connections", 500), ("1_in_flight", 1)] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                client_rt.block_on(push_many(&client, &req, &tokens, &ids, iters, in_flight))
            })
        });
    }
    g.finish();
    let stats = mock.stats();
    assert_eq!(
        stats.accepted, stats.requests,
        "every push accepted: {stats:?}"
    );
    mock_rt.block_on(mock.shutdown());
}

criterion_group!(benches, bench_push);
criterion_main!(benches);
