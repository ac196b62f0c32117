//! Push benchmarks against a mock APNs running as its own process, for the closing note of
//! the push issue.
//!
//! Three processes: the mock (`vigil-sim mock-apns --keys 2`, spawned here), Vigil's client
//! (this process) and `h2load` (nghttp2-client, spawned here). Each round runs, against the
//! same mock:
//! 1. Vigil's `ApnsClient` sending `--pushes` VoIP pushes with `--concurrency` in flight over
//!    `--connections` connections, on a tokio runtime of `--threads` workers;
//! 2. `h2load` sending the same number of equivalent requests (same path shape, the same
//!    headers including `apns-id`, the same body; its own team key so the provider tokens do
//!    not collide) with the same concurrency over the same number of connections, on one
//!    thread.
//!
//! For both it prints the rate and the CPU time each sender and the mock used per push (from
//! `/proc`), which, unlike the rate, barely depends on what else the machine is doing. Then
//! the dispatch pipeline is fed at `--rate` pushes/s for `--secs` seconds, and hdrhistogram
//! records the latency from `submit` to the request handed to the HTTP/2 connection (where a
//! push leaves Vigil's code) and from `submit` to the mock's 200.
//!
//! ```text
//! cargo build --release -p vigil-sim -p vigil-tests
//! target/release/push_bench [--pushes 50000] [--concurrency 500] [--connections 2]
//!     [--threads 1] [--rounds 3] [--rate 5000] [--secs 10] [--mock-cpus LIST]
//!     [--bench-cpus LIST] [--skip-throughput] [--skip-latency]
//! ```
//! `--mock-cpus`/`--bench-cpus` pin the mock and this process (and h2load) with `taskset`.
//! The mock binary is looked up next to this one, or at `$VIGIL_SIM`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use vigil_gateway::push::apns::apns_id;
use vigil_gateway::push::{
    ApnsAuth, ApnsClient, ApnsConfig, PushClient, PushDispatcher, Roots, Secret, TransmitObserver,
};
use vigil_proto::push::payload::build_apns;
use vigil_proto::push::{
    ApnsRequest, CredentialId, DeviceToken, DispatchConfig, Outcome, PushEvent, PushId,
    PushRequest, Target,
};
use vigil_tests::procstat::{cpu_times, loadavg};
use vigil_tests::push::{apns_token, call, BUNDLE};

/// Distinct device tokens the throughput run cycles through.
const TOKENS: u64 = 1000;

/// Push dispatch benchmarks; see the module documentation of `tests/src/bin/push_bench.rs`.
#[derive(clap::Parser)]
#[command(name = "push_bench")]
struct Args {
    /// Pushes per throughput round.
    #[arg(long, default_value_t = 50_000)]
    pushes: u64,
    /// Pushes in flight.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..))]
    concurrency: u64,
    /// HTTP/2 connections to the mock APNs.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    connections: u64,
    /// Runtime worker threads of the dispatcher.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    threads: u64,
    /// Throughput rounds.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// Pushes per second in the latency run.
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..))]
    rate: u64,
    /// Seconds of the latency run.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    secs: u64,
    /// CPUs the mock APNs is pinned to (taskset list).
    #[arg(long)]
    mock_cpus: Option<String>,
    /// CPUs this bench is pinned to (taskset list).
    #[arg(long)]
    bench_cpus: Option<String>,
    /// Skip the throughput rounds.
    #[arg(long = "skip-throughput", action = clap::ArgAction::SetFalse)]
    throughput: bool,
    /// Skip the latency run.
    #[arg(long = "skip-latency", action = clap::ArgAction::SetFalse)]
    latency: bool,
}

/// A failure before or during the run that is the caller's to fix: said, and exit 2.
fn usage(msg: &str) -> ! {
    eprintln!("push_bench: {msg}");
    std::process::exit(2)
}

fn parse_args() -> Args {
    <Args as clap::Parser>::parse()
}

/// The mock APNs child process and what its output said.
struct Mock {
    child: Child,
    addr: SocketAddr,
    ca_pem: String,
    /// (path of the .p8, team id, key id), in the order printed.
    keys: Vec<(PathBuf, String, String)>,
    dir: PathBuf,
}

impl Mock {
    fn spawn(cpus: Option<&str>) -> Mock {
        let exe = std::env::var_os("VIGIL_SIM")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                std::env::current_exe()
                    .expect("own path")
                    .with_file_name("vigil-sim")
            });
        if !exe.exists() {
            usage(&format!(
                "{} not found: build it (cargo build --release -p vigil-sim) or set VIGIL_SIM",
                exe.display()
            ));
        }
        let dir = std::env::temp_dir().join(format!("vigil-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let ca = dir.join("ca.pem");
        let mut cmd = match cpus {
            Some(list) => {
                let mut c = Command::new("taskset");
                c.args(["-c", list]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let mut child = cmd
            .args([
                "mock-apns",
                "--listen",
                "127.0.0.1:0",
                "--keys",
                "2",
                "--record",
                "0",
            ])
            .arg("--ca-out")
            .arg(&ca)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn vigil-sim mock-apns");
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let mut keys = Vec::new();
        let addr = loop {
            let line = lines
                .next()
                .expect("the mock prints where it listens")
                .expect("readable stdout");
            if let Some(rest) = line.strip_prefix("APNs signing key: ") {
                // "PATH (team T, key K)"
                let (path, ids) = rest.rsplit_once(" (team ").expect("key line shape");
                let (team, kid) = ids
                    .trim_end_matches(')')
                    .split_once(", key ")
                    .expect("key line shape");
                keys.push((PathBuf::from(path), team.to_owned(), kid.to_owned()));
            }
            if let Some(rest) = line.split(" listening on ").nth(1) {
                break rest
                    .split_whitespace()
                    .next()
                    .and_then(|a| a.parse().ok())
                    .expect("an address");
            }
        };
        // Keep draining the mock's stdout so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        assert_eq!(keys.len(), 2, "the mock printed two keys");
        Mock {
            child,
            addr,
            ca_pem: std::fs::read_to_string(&ca).expect("CA written"),
            keys,
            dir,
        }
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    fn cpu(&self) -> Duration {
        // taskset execs the mock, so the child's pid is the mock's either way.
        cpu_times(&self.pid()).0
    }

    fn client_config(&self, pool_size: usize) -> ApnsConfig {
        let (p8, team, kid) = &self.keys[0];
        let auth = ApnsAuth::Token {
            p8_pem: Secret::new(std::fs::read_to_string(p8).expect(".p8 readable")),
            key_id: kid.clone(),
            team_id: team.clone(),
        };
        let mut cfg = ApnsConfig::new(format!("https://localhost:{}", self.addr.port()), auth);
        cfg.roots = Roots::Pem(self.ca_pem.clone());
        cfg.connect_to = Some(self.addr);
        cfg.pool_size = pool_size;
        cfg
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

/// One measured run: pushes accepted, wall time, sender CPU, mock CPU.
struct Run {
    ok: u64,
    n: u64,
    took: Duration,
    sender_cpu: Duration,
    mock_cpu: Duration,
}

impl Run {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.took.as_secs_f64()
    }

    fn print(&self, who: &str) {
        let per = |d: Duration| d.as_secs_f64() * 1e6 / self.n.max(1) as f64;
        println!(
            "  {who:<8} {}/{} ok in {:.3}s = {:>7.0} pushes/s; CPU per push: sender {:.1}µs, mock {:.1}µs; load {}",
            self.ok,
            self.n,
            self.took.as_secs_f64(),
            self.rate(),
            per(self.sender_cpu),
            per(self.mock_cpu),
            loadavg()
        );
    }
}

async fn vigil_run(
    client: &Arc<ApnsClient>,
    req: &Arc<ApnsRequest>,
    n: u64,
    concurrency: u64,
    base: u64,
    mock: &Mock,
) -> Run {
    let next = Arc::new(AtomicU64::new(0));
    // The device tokens exist before a push is sent (the dispatcher takes them from the
    // binding), so making them is not part of the measured sending.
    let tokens: Arc<[DeviceToken]> = (0..TOKENS).map(apns_token).collect();
    let (cpu0, mock0) = (cpu_times("self").0, mock.cpu());
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, req, next) = (Arc::clone(client), Arc::clone(req), Arc::clone(&next));
        let tokens = Arc::clone(&tokens);
        tasks.push(tokio::spawn(async move {
            let mut ok = 0u64;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return ok;
                }
                // A unique apns-id per push, made as the dispatcher makes it.
                let id = apns_id(0, PushId(base + i));
                let deadline = Instant::now() + Duration::from_secs(30);
                let token = &tokens[(i % TOKENS) as usize];
                if client.send(token, &req, &id, deadline).await == Outcome::Accepted {
                    ok += 1;
                }
            }
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += t.await.expect("sender task");
    }
    Run {
        ok,
        n,
        took: t0.elapsed(),
        sender_cpu: cpu_times("self").0.saturating_sub(cpu0),
        mock_cpu: mock.cpu().saturating_sub(mock0),
    }
}

fn h2load_run(args: &Args, mock: &Mock, body: &Path, jwt: &str) -> Option<Run> {
    let url = format!(
        "https://localhost:{}/3/device/{}",
        mock.addr.port(),
        apns_token(1).expose()
    );
    let per_conn = (args.concurrency / args.connections).max(1).to_string();
    let (child0, mock0) = (cpu_times("self").1, mock.cpu());
    let out = Command::new("h2load")
        .args(["-n", &args.pushes.to_string()])
        .args([
            "-c",
            &args.connections.to_string(),
            "-m",
            &per_conn,
            "-t",
            "1",
        ])
        .args(["-H", &format!("authorization: bearer {jwt}")])
        .args(["-H", "apns-push-type: voip"])
        .args(["-H", &format!("apns-topic: {BUNDLE}.voip")])
        .args(["-H", "apns-priority: 10", "-H", "apns-expiration: 0"])
        .args(["-H", "apns-id: 00000000-0000-4000-8000-0000000000aa"])
        .args(["-H", "content-type: application/json", "-d"])
        .arg(body)
        .arg(&url)
        .output();
    let o = match out {
        Ok(o) => o,
        Err(e) => {
            println!("  h2load not run: {e} (Debian package nghttp2-client)");
            return None;
        }
    };
    let text = String::from_utf8_lossy(&o.stdout);
    let finished = text.lines().find(|l| l.starts_with("finished in"))?;
    // "finished in 5.78s, 8647.02 req/s, 2.37MB/s"
    let took = finished
        .strip_prefix("finished in ")?
        .split(',')
        .next()?
        .trim();
    let took = if let Some(ms) = took.strip_suffix("ms") {
        Duration::from_secs_f64(ms.parse::<f64>().ok()? / 1e3)
    } else {
        Duration::from_secs_f64(took.strip_suffix('s')?.parse().ok()?)
    };
    let ok = text
        .lines()
        .find(|l| l.starts_with("status codes:"))
        .and_then(|l| l.split_once(':')?.1.split(',').next())
        .and_then(|s| s.trim().strip_suffix(" 2xx"))
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    Some(Run {
        ok,
        n: args.pushes,
        took,
        sender_cpu: cpu_times("self").1.saturating_sub(child0),
        mock_cpu: mock.cpu().saturating_sub(mock0),
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn print_hist(name: &str, h: &Histogram<u64>) {
    println!(
        "  {name}: n={} p50={}µs p90={}µs p99={}µs p99.9={}µs max={}µs",
        h.len(),
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.9),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max()
    );
}

async fn throughput(args: &Args, mock: &Mock, client: &Arc<ApnsClient>, req: &Arc<ApnsRequest>) {
    let body = mock.dir.join("body.json");
    std::fs::write(&body, &req.body).expect("body file");
    let (p8, team, kid) = &mock.keys[1];
    let h2load_key = vigil_sim::mock::ApnsSigningKey::from_p8_pem(
        team,
        kid,
        &std::fs::read_to_string(p8).expect(".p8 readable"),
    )
    .expect("second key");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let jwt = h2load_key.provider_token(now);
    println!(
        "throughput: {} pushes, concurrency {} over {} connections; vigil on {} tokio worker(s), h2load -t 1",
        args.pushes, args.concurrency, args.connections, args.threads
    );
    let _ = vigil_run(client, req, 2_000, args.concurrency, 1 << 40, mock).await; // warm-up
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 0..args.rounds {
        println!(" round {}", round + 1);
        let base = u64::from(round) * args.pushes;
        let v = vigil_run(client, req, args.pushes, args.concurrency, base, mock).await;
        v.print("vigil");
        ours.push(v.rate());
        if let Some(h) = h2load_run(args, mock, &body, &jwt) {
            h.print("h2load");
            println!("  ratio vigil/h2load = {:.2}", v.rate() / h.rate());
            theirs.push(h.rate());
        }
    }
    if !theirs.is_empty() {
        let (a, b) = (median(ours), median(theirs));
        println!(
            "median of {} rounds: vigil {a:.0}/s, h2load {b:.0}/s, ratio {:.2}",
            args.rounds,
            a / b
        );
    }
}

async fn latency(args: &Args, client: &Arc<ApnsClient>) {
    let total = (args.rate * args.secs) as usize;
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
        HashMap::from([(cred, PushClient::Apns(Arc::clone(client)))]),
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
                        let now = t_base.elapsed().as_nanos() as u64;
                        let _ = e2e.record(now.saturating_sub(at) / 1000);
                    }
                    Some(other) => println!("unexpected event {other:?}"),
                    None => break,
                }
            }
            (sent, e2e)
        })
    };
    // Submit on a 1 ms tick, `rate / 1000` pushes per tick.
    let per_tick = (args.rate / 1000).max(1);
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let mut n = 0usize;
    let (cpu0, t0) = (cpu_times("self").0, Instant::now());
    while n < total {
        tick.tick().await;
        for _ in 0..per_tick {
            if n >= total {
                break;
            }
            let now = Instant::now();
            // Ids are handed out in order from 1: record the submit time before submitting.
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
    let cpu = cpu_times("self").0.saturating_sub(cpu0);
    println!(
        "dispatch at {offered:.0} pushes/s offered for {}s: {sent}/{total} sent; gateway CPU {:.0}% of a core; load {}",
        args.secs,
        cpu.as_secs_f64() * 100.0 / t0.elapsed().as_secs_f64(),
        loadavg()
    );
    print_hist(
        "submit → handed to HTTP/2 connection",
        &queue_hist.lock().expect("not poisoned"),
    );
    print_hist("submit → 200 from mock APNs (end to end)", &e2e);
    h.shutdown();
}

fn main() {
    let args = parse_args();
    if let Some(cpus) = &args.bench_cpus {
        // Pin this process (and so h2load, its child) before any thread starts.
        let ok = Command::new("taskset")
            .args(["-a", "-p", "-c", cpus, &std::process::id().to_string()])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            usage("taskset failed");
        }
    }
    let mock = Mock::spawn(args.mock_cpus.as_deref());
    println!(
        "mock APNs pid {} on {} (cpus {}); bench cpus {}",
        mock.pid(),
        mock.addr,
        args.mock_cpus.as_deref().unwrap_or("any"),
        args.bench_cpus.as_deref().unwrap_or("any")
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads as usize)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let client = Arc::new(
            ApnsClient::connect(mock.client_config(args.connections as usize))
                .await
                .expect("client connects to the mock"),
        );
        let req =
            Arc::new(build_apns(&call("bench"), BUNDLE, Duration::from_secs(30)).expect("payload"));
        if args.throughput {
            throughput(&args, &mock, &client, &req).await;
        }
        if args.latency {
            latency(&args, &client).await;
        }
    });
}
