//! Push benchmarks against the mock APNs, for the closing note of the push issue.
//!
//! `push_bench [PUSHES] [CONCURRENCY] [RATE] [SECS]` (defaults 50000 500 5000 10) runs, against
//! one in-process mock APNs over TLS:
//! 1. Vigil's `ApnsClient` sending `PUSHES` VoIP pushes with `CONCURRENCY` in flight;
//! 2. `h2load` (nghttp2-client) sending the same number of equivalent requests (same path
//!    shape, headers, body; its own team key so provider tokens do not collide) to the same
//!    mock, with the same total concurrency over the same number of connections (2);
//! 3. the dispatch pipeline fed at `RATE` pushes/s for `SECS` seconds, recording with
//!    hdrhistogram the latency from `submit` to the attempt leaving the queue for the client,
//!    and from `submit` to the provider's acceptance.
//!
//! Build it optimised: `cargo run --release -p vigil-tests --bin push_bench`.

use std::collections::HashMap;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use vigil_gateway::push::{PushClient, PushDispatcher, TransmitObserver};
use vigil_proto::push::payload::build_apns;
use vigil_proto::push::{CredentialId, DispatchConfig, Outcome, PushEvent, PushRequest, Target};
use vigil_sim::mock::{ApnsSigningKey, Faults};
use vigil_tests::push::{apns_token, call, ApnsEnv, BUNDLE};

fn arg(i: usize, default: u64) -> u64 {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn print_hist(name: &str, h: &Histogram<u64>) {
    println!(
        "{name}: n={} p50={}µs p90={}µs p99={}µs p99.9={}µs max={}µs",
        h.len(),
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.9),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max()
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let pushes = arg(1, 50_000);
    let concurrency = arg(2, 500).max(2);
    let rate = arg(3, 5_000);
    let secs = arg(4, 10);

    let h2load_key = ApnsSigningKey::generate("TEAM000002", "KEY0000002").expect("key");
    let env = ApnsEnv::start_with(Faults::default(), |c| {
        c.keys.push(h2load_key.public_key());
        c.max_concurrent_streams = 1000;
    })
    .await;
    let client = Arc::new(env.client().await);
    let req =
        Arc::new(build_apns(&call("bench"), BUNDLE, Duration::from_secs(30)).expect("payload"));

    // 1. Vigil's client.
    let run = |n: u64, base: u64| {
        let client = Arc::clone(&client);
        let req = Arc::clone(&req);
        async move {
            let next = Arc::new(AtomicU64::new(0));
            let t0 = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..concurrency {
                let (client, req, next) =
                    (Arc::clone(&client), Arc::clone(&req), Arc::clone(&next));
                tasks.push(tokio::spawn(async move {
                    let mut ok = 0u64;
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            return ok;
                        }
                        let id = format!("00000000-0000-4000-8000-{:012x}", base + i);
                        let deadline = Instant::now() + Duration::from_secs(30);
                        if client
                            .send(&apns_token(i % 1000), &req, &id, deadline)
                            .await
                            == Outcome::Accepted
                        {
                            ok += 1;
                        }
                    }
                }));
            }
            let mut ok = 0;
            for t in tasks {
                ok += t.await.expect("sender task");
            }
            (ok, t0.elapsed())
        }
    };
    let _ = run(2_000, 1 << 40).await; // warm-up
    let (ok, took) = run(pushes, 0).await;
    let ours = ok as f64 / took.as_secs_f64();
    println!("vigil ApnsClient: {ok}/{pushes} accepted in {:.3}s = {ours:.0} pushes/s (concurrency {concurrency}, 2 connections)", took.as_secs_f64());

    // 2. h2load with equivalent requests.
    let dir = std::env::temp_dir().join(format!("vigil-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let body = dir.join("body.json");
    std::fs::write(&body, &req.body).expect("body file");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let jwt = h2load_key.provider_token(now);
    let url = format!(
        "https://localhost:{}/3/device/{}",
        env.mock.addr.port(),
        apns_token(1).expose()
    );
    let per_conn = (concurrency / 2).to_string();
    let out = Command::new("h2load")
        .args([
            "-n",
            &pushes.to_string(),
            "-c",
            "2",
            "-m",
            &per_conn,
            "-t",
            "1",
        ])
        .args(["-H", &format!("authorization: bearer {jwt}")])
        .args([
            "-H",
            "apns-push-type: voip",
            "-H",
            &format!("apns-topic: {BUNDLE}.voip"),
        ])
        .args(["-H", "apns-priority: 10", "-H", "apns-expiration: 0"])
        .args(["-H", "content-type: application/json", "-d"])
        .arg(&body)
        .arg(&url)
        .output();
    std::fs::remove_dir_all(&dir).ok();
    match out {
        Ok(o) => {
            let text = String::from_utf8_lossy(&o.stdout);
            let finished = text
                .lines()
                .find(|l| l.starts_with("finished in"))
                .unwrap_or("h2load printed no summary");
            let codes = text
                .lines()
                .find(|l| l.starts_with("status codes"))
                .unwrap_or("");
            println!("h2load: {finished}; {codes}");
            let h2rate = finished
                .split(", ")
                .nth(1)
                .and_then(|s| s.split_whitespace().next())
                .and_then(|s| s.parse::<f64>().ok());
            if let Some(r) = h2rate {
                println!("ratio vigil/h2load = {:.2}", ours / r);
            }
        }
        Err(e) => println!("h2load not run: {e}"),
    }

    // 3. Dispatch latency at a fixed rate.
    let total = (rate * secs) as usize;
    let submitted: Arc<Vec<AtomicU64>> =
        Arc::new((0..=total + 1).map(|_| AtomicU64::new(0)).collect());
    let queue_hist = Arc::new(Mutex::new(Histogram::<u64>::new(3).expect("histogram")));
    let t_base = Instant::now();
    let observer: TransmitObserver = {
        let (submitted, queue_hist) = (Arc::clone(&submitted), Arc::clone(&queue_hist));
        Arc::new(move |id| {
            let at = submitted
                .get(id.0 as usize)
                .map_or(0, |a| a.load(Ordering::Relaxed));
            let now = t_base.elapsed().as_nanos() as u64;
            if at > 0 {
                let _ = queue_hist
                    .lock()
                    .expect("not poisoned")
                    .record(now.saturating_sub(at) / 1000);
            }
        })
    };
    let cred = CredentialId(1);
    let (h, mut events) = PushDispatcher::start_observed(
        DispatchConfig::default(),
        1,
        HashMap::from([(cred, PushClient::Apns(Arc::clone(&client)))]),
        1000,
        Some(observer),
    );
    let collector = {
        let submitted = Arc::clone(&submitted);
        tokio::spawn(async move {
            let mut e2e = Histogram::<u64>::new(3).expect("histogram");
            let mut sent = 0;
            while sent < total {
                match events.recv().await {
                    Some(PushEvent::Sent { id }) => {
                        sent += 1;
                        let at = submitted[id.0 as usize].load(Ordering::Relaxed);
                        let _ = e2e
                            .record((t_base.elapsed().as_nanos() as u64).saturating_sub(at) / 1000);
                    }
                    Some(other) => println!("unexpected event {other:?}"),
                    None => break,
                }
            }
            (sent, e2e)
        })
    };
    let per_tick = (rate / 1000).max(1);
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let mut n = 0usize;
    let t0 = Instant::now();
    while n < total {
        tick.tick().await;
        for _ in 0..per_tick {
            if n >= total {
                break;
            }
            let now = Instant::now();
            // Record the submit time before the id exists: ids are handed out in order from 1.
            submitted[n + 1].store(t_base.elapsed().as_nanos() as u64, Ordering::Relaxed);
            let s = h
                .submit(PushRequest {
                    credential: cred,
                    target: Target::Apns {
                        token: apns_token(n as u64),
                        bundle_id: BUNDLE.into(),
                    },
                    notice: call(&format!("lat-{n}")),
                    deadline: now + Duration::from_secs(30),
                })
                .expect("queue has room");
            debug_assert_eq!(s.id.0 as usize, n + 1);
            n += 1;
        }
    }
    let offered = total as f64 / t0.elapsed().as_secs_f64();
    let (sent, e2e) = collector.await.expect("collector");
    println!("dispatch at {offered:.0} pushes/s offered for {secs}s: {sent}/{total} sent");
    print_hist(
        "  submit → handed to client (queue latency)",
        &queue_hist.lock().expect("not poisoned"),
    );
    print_hist("  submit → accepted by mock APNs (end to end)", &e2e);
    h.shutdown();
}
