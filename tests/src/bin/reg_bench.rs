//! Registration benchmarks for the closing note of the registration issue.
//!
//! `reg_bench sipp` (the default): CPU per upstream registration (401 challenge + 200),
//! Vigil against SIPp, both registering against the same Kamailio in the same run.
//! 1. Kamailio (Debian's package) starts on loopback with digest auth (qop=auth) and an
//!    in-memory location table, so it is never the bottleneck of either side.
//! 2. The real `vigil-gateway` binary starts on a fresh data directory; `--devices` devices
//!    are PUT through its HTTPS API (each a distinct AOR `userN@vigil.test`) and registered.
//! 3. The gateway is stopped and started again on the same data directory: it re-registers
//!    every stored device under its global pace (`--rate` registrations per second, i.e.
//!    twice that many REGISTER requests). The gateway process's CPU time (user + system, from
//!    `/proc`) from its start until its `vigil_register_ok_total` reaches the device count is
//!    Vigil's cost. It includes the start-up (opening the store, loading and decrypting every
//!    device), so it overstates the per-registration cost slightly; the start-up part is
//!    printed separately (CPU at the first `/metrics` answer).
//! 4. SIPp (`sip-tester`) runs the same scenario (REGISTER, 401, REGISTER with digest
//!    Authorization, 200; one AOR per call) for the same number of AORs at the same rate, on
//!    one UDP (or TCP) socket like the gateway. Its CPU is the bench's children CPU around
//!    the run.
//!
//! The goal in the issue: Vigil ≤ 0.5× SIPp's CPU per registration.
//!
//! `reg_bench scale`: intake rate and steady-state CPU at large binding counts, against a
//! lab registrar in this process (one UDP thread; it challenges every REGISTER without a
//! fresh nonce (`--nonce-life`, default 30 s: shorter than any refresh interval, so every
//! refresh is a 401 + 200 exchange as an hourly refresh against a 300 s nonce life is), accepts a digest answer without
//! checking the hash (the Kamailio runs check it), and grants the first registration of each
//! Call-ID an expiry spread uniformly over [`--spread-min`, 3600] s and 3600 s afterwards, so
//! refreshes arrive spread out as they would in a long-running node).
//! 1. Intake: `--devices` PUTs with `--concurrency` in flight over HTTP/2; PUTs/s, the
//!    gateway's CPU per PUT and the store transactions (fsyncs) they took.
//! 2. The registration wave under the pace (`--rate`), then RSS per binding.
//! 3. Steady state: for `--window` seconds, the refreshes that happened, the gateway's CPU as
//!    a fraction of one core and per refresh, and that fraction scaled to exactly hourly
//!    refreshes of every binding.
//!
//! ```text
//! cargo build --release -p vigil-gateway -p vigil-tests
//! target/release/reg_bench [sipp] [--devices 20000] [--rate 2000] [--transport udp|tcp] [--rounds 1]
//! target/release/reg_bench scale [--devices 1000000] [--rate 20000] [--concurrency 256]
//!     [--window 120] [--spread-min 60] [--nonce-life 30]
//! ```
//! The gateway binary is looked up next to this one, or at `$VIGIL_GATEWAY`.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use vigil_proto::msg::{HeaderName, Message, ResponseBuilder};
use vigil_tests::procstat::{cpu_split, cpu_times, loadavg, rss_bytes};
use vigil_tests::TempDir;

const KAMAILIO: &str = "/usr/sbin/kamailio";
const DOMAIN: &str = "vigil.test";
const PASSWORD: &str = "secret";

/// What one run measures, whichever mode; see the module documentation.
#[derive(Debug, Clone)]
struct Args {
    scale: bool,
    devices: u64,
    rate: u64,
    transport: String,
    rounds: u32,
    concurrency: usize,
    window: u64,
    spread_min: u64,
    nonce_life: u64,
}

/// Registration benchmarks; see the module documentation of `tests/src/bin/reg_bench.rs`.
#[derive(clap::Parser)]
#[command(name = "reg_bench", args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    mode: Option<Mode>,
    /// `sipp` is the default mode: its flags may follow `reg_bench` directly.
    #[command(flatten)]
    sipp: SippArgs,
}

#[derive(clap::Subcommand)]
enum Mode {
    /// CPU per upstream registration, Vigil against SIPp on one Kamailio (the default).
    Sipp(SippArgs),
    /// Intake rate, memory and steady-state CPU at large binding counts (lab registrar).
    Scale(ScaleArgs),
}

#[derive(clap::Args)]
struct SippArgs {
    /// Devices (AORs) registered by each side.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
    devices: u64,
    /// Registrations per second (the gateway's pace and SIPp's call rate).
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(1..))]
    rate: u64,
    /// Transport to Kamailio.
    #[arg(long, default_value = "udp", value_parser = ["udp", "tcp"])]
    transport: String,
    /// Gateway restarts measured.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
}

#[derive(clap::Args)]
struct ScaleArgs {
    /// Devices PUT through the API.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    devices: u64,
    /// The gateway's registration pace, per second.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
    rate: u64,
    /// PUTs in flight during intake.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    concurrency: u64,
    /// Seconds of steady state measured.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    window: u64,
    /// Shortest first expiry the lab registrar grants, in seconds.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(60..=3600))]
    spread_min: u64,
    /// Seconds a nonce of the lab registrar stays fresh.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    nonce_life: u64,
}

/// A failure before or during the run that is the caller's to fix: said, and exit 2.
fn usage(msg: &str) -> ! {
    eprintln!("reg_bench: {msg}");
    std::process::exit(2)
}

fn parse_args() -> Args {
    let cli = <Cli as clap::Parser>::parse();
    let defaults = Args {
        scale: false,
        devices: 0,
        rate: 0,
        transport: "udp".to_owned(),
        rounds: 1,
        concurrency: 256,
        window: 120,
        spread_min: 60,
        nonce_life: 30,
    };
    let a = match cli.mode {
        Some(Mode::Scale(a)) => {
            return Args {
                scale: true,
                devices: a.devices,
                rate: a.rate,
                concurrency: a.concurrency as usize,
                window: a.window,
                spread_min: a.spread_min,
                nonce_life: a.nonce_life,
                ..defaults
            }
        }
        Some(Mode::Sipp(a)) => a,
        None => cli.sipp,
    };
    Args {
        devices: a.devices,
        rate: a.rate,
        transport: a.transport,
        rounds: a.rounds,
        ..defaults
    }
}

fn main() {
    let args = parse_args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        if args.scale {
            scale(&args).await
        } else {
            versus_sipp(&args).await
        }
    });
}

/// A port free for both UDP and TCP on loopback.
fn free_port_pair() -> u16 {
    for _ in 0..50 {
        let Ok(udp) = UdpSocket::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(addr) = udp.local_addr() else { continue };
        if std::net::TcpListener::bind(("127.0.0.1", addr.port())).is_ok() {
            return addr.port();
        }
    }
    panic!("no port free for both UDP and TCP");
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

// ---------------------------------------------------------------------------------------
// Kamailio

struct Kamailio {
    child: Child,
    port: u16,
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

fn kamailio_config(port: u16) -> String {
    format!(
        r#"#!KAMAILIO
debug=1
log_stderror=yes
children=2
tcp_children=2
auto_aliases=no
listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}

loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"

modparam("usrloc", "db_mode", 0)
modparam("registrar", "max_expires", 3600)

request_route {{
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    if (is_method("OPTIONS")) {{
        sl_send_reply("200", "OK");
        exit;
    }}
    if (is_method("REGISTER")) {{
        if (!pv_auth_check("$fd", "{PASSWORD}", "0", "0")) {{
            auth_challenge("$fd", "1");
            exit;
        }}
        consume_credentials();
        if (!save("location")) {{
            sl_reply_error();
        }}
        exit;
    }}
    sl_send_reply("405", "Method Not Allowed");
}}
"#
    )
}

fn start_kamailio(dir: &Path) -> Kamailio {
    if !Path::new(KAMAILIO).exists() {
        usage(&format!(
            "{KAMAILIO} is missing: install Debian's kamailio (bash .ci/install-deps)"
        ));
    }
    let port = free_port_pair();
    let cfg = dir.join("kamailio.cfg");
    std::fs::write(&cfg, kamailio_config(port)).expect("write kamailio.cfg");
    let log = std::fs::File::create(dir.join("kamailio.log")).expect("kamailio log");
    let child = Command::new(KAMAILIO)
        .args(["-DD", "-E", "-f"])
        .arg(&cfg)
        .arg("-Y")
        .arg(dir)
        .arg("-P")
        .arg(dir.join("kamailio.pid"))
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start kamailio");
    let k = Kamailio { child, port };
    let sock = UdpSocket::bind("127.0.0.1:0").expect("udp socket");
    sock.set_read_timeout(Some(Duration::from_millis(250)))
        .expect("timeout");
    let local = sock.local_addr().expect("local addr");
    for n in 0..80 {
        let req = format!(
            "OPTIONS sip:ping@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKready{n}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:bench@{DOMAIN}>;tag=r{n}\r\nTo: <sip:ping@{DOMAIN}>\r\n\
             Call-ID: ready-{n}\r\nCSeq: {n} OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        let _ = sock.send_to(req.as_bytes(), ("127.0.0.1", port));
        let mut buf = [0u8; 2048];
        match sock.recv(&mut buf) {
            Ok(len) if buf[..len].starts_with(b"SIP/2.0 200") => return k,
            Ok(_) => {}
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    panic!(
        "Kamailio did not start; see {}",
        dir.join("kamailio.log").display()
    );
}

// ---------------------------------------------------------------------------------------
// The gateway as its own process

struct Gateway {
    child: Child,
    api: SocketAddr,
    http: reqwest::Client,
    started: Instant,
}

fn gateway_exe() -> PathBuf {
    let exe = std::env::var_os("VIGIL_GATEWAY")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::current_exe()
                .expect("own path")
                .with_file_name("vigil-gateway")
        });
    if !exe.exists() {
        usage(&format!(
            "{} not found: build it (cargo build --release -p vigil-gateway) or set VIGIL_GATEWAY",
            exe.display()
        ));
    }
    exe
}

struct GatewaySetup {
    data: PathBuf,
    sip_port: u16,
    api_port: u16,
    upstream: SocketAddr,
    rate: u64,
}

impl GatewaySetup {
    fn write_config(&self, path: &Path) {
        // The pace counts REGISTER requests, challenge answers included: two per registration.
        let toml = format!(
            r#"data_dir = "{data}"
log = "warn"

[sip]
listen = ["udp:127.0.0.1:{sip}", "tcp:127.0.0.1:{sip}"]
shutdown_grace_secs = 2

[api]
listen = "127.0.0.1:{api}"
rate_per_sec = 0.0

[reg]
upstream = "{up}"
max_registers_per_sec = {pace}
pace_burst = 50
"#,
            data = self.data.display(),
            sip = self.sip_port,
            api = self.api_port,
            up = self.upstream,
            pace = self.rate * 2,
        );
        std::fs::write(path, toml).expect("write gateway config");
    }
}

impl Gateway {
    async fn start(setup: &GatewaySetup, config: &Path) -> Gateway {
        let started = Instant::now();
        let child = Command::new(gateway_exe())
            .arg("--config")
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn vigil-gateway");
        let api = SocketAddr::from(([127, 0, 0, 1], setup.api_port));
        // The development certificate appears in the data directory at start-up.
        let cert = setup.data.join("tls/dev-cert.pem");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !cert.exists() {
            assert!(
                Instant::now() < deadline,
                "the gateway wrote no certificate"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let http = http_client(&cert);
        let g = Gateway {
            child,
            api,
            http,
            started,
        };
        while g.metrics().await.is_none() {
            assert!(
                Instant::now() < deadline,
                "the gateway's API did not come up"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        g
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    fn cpu(&self) -> Duration {
        cpu_times(&self.pid()).0
    }

    /// The Prometheus text, parsed into `name{labels} -> value`.
    async fn metrics(&self) -> Option<HashMap<String, f64>> {
        let resp = self
            .http
            .get(format!("https://localhost:{}/metrics", self.api.port()))
            .send()
            .await
            .ok()?;
        let text = resp.text().await.ok()?;
        Some(
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| {
                    let (k, v) = l.rsplit_once(' ')?;
                    Some((k.to_owned(), v.parse().ok()?))
                })
                .collect(),
        )
    }

    async fn metric(&self, name: &str) -> f64 {
        self.metrics()
            .await
            .and_then(|m| m.get(name).copied())
            .unwrap_or(0.0)
    }

    /// Waits until counter `name` reaches `target`; panics after `limit`.
    async fn wait_for(&self, name: &str, target: f64, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let v = self.metric(name).await;
            if v >= target {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name} reached only {v} of {target} within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn stop(mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.pid()).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn http_client(cert: &Path) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(cert).expect("readable certificate") {
        roots.add(c.expect("a PEM certificate")).expect("a root");
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    // HTTP/2 (the API offers it): every request in flight on one connection, as a
    // provisioning back end would send them.
    let mut cfg = cfg;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .use_preconfigured_tls(cfg)
        .pool_max_idle_per_host(64)
        .build()
        .expect("HTTP client")
}

fn device_body(i: u64, transport: &str) -> String {
    serde_json::json!({
        "sip": {
            "username": format!("user{i}"),
            "password": PASSWORD,
            "domain": DOMAIN,
            "transport": transport,
        },
        "push": {"fcm": {"token": format!("fcm-token-{i}"), "project_id": "bench"}},
        "app": {"id": "com.example.bench", "version": "1.0"},
        "expires": 3600
    })
    .to_string()
}

/// PUTs devices `0..n` with `concurrency` requests in flight; returns the wall time.
async fn put_devices(g: &Gateway, n: u64, concurrency: usize, transport: &str) -> Duration {
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    let retried = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let next = Arc::clone(&next);
        let failed = Arc::clone(&failed);
        let retried = Arc::clone(&retried);
        let http = g.http.clone();
        let port = g.api.port();
        let transport = transport.to_owned();
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n || failed.load(Ordering::Relaxed) {
                    return;
                }
                let put = || {
                    http.put(format!("https://localhost:{port}/v1/devices/dev-{i:08}"))
                        .header("content-type", "application/json")
                        .body(device_body(i, &transport))
                        .send()
                };
                // PUT is idempotent: a request lost with its connection (a GOAWAY, see
                // api::server's LOCAL_RESET_CAP) is sent again once, as a client would.
                let resp = match put().await {
                    Err(e) if e.is_request() || e.is_connect() => {
                        retried.fetch_add(1, Ordering::Relaxed);
                        put().await
                    }
                    other => other,
                };
                match resp {
                    Ok(r) if r.status().is_success() => {}
                    Ok(r) => {
                        failed.store(true, Ordering::Relaxed);
                        let status = r.status();
                        let text = r.text().await.unwrap_or_default();
                        eprintln!("PUT dev-{i}: {status} {text}");
                    }
                    Err(e) => {
                        if !failed.swap(true, Ordering::Relaxed) {
                            eprintln!("PUT dev-{i}: {e:?}");
                        }
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("PUT task");
    }
    assert!(!failed.load(Ordering::Relaxed), "a PUT failed");
    let retried = retried.load(Ordering::Relaxed);
    if retried > 0 {
        println!("  ({retried} PUTs sent again after their connection was closed)");
    }
    t0.elapsed()
}

/// CPU time split into user and kernel (system) time.
#[derive(Debug, Clone, Copy)]
struct KernelShare {
    user: Duration,
    system: Duration,
}

impl KernelShare {
    fn total(self) -> Duration {
        self.user + self.system
    }

    /// `user µs + kernel µs` per operation.
    fn describe(self, n: u64) -> String {
        format!(
            "user {:.1} µs + kernel {:.1} µs",
            us_per(self.user, n),
            us_per(self.system, n)
        )
    }
}

fn us_per(cpu: Duration, n: u64) -> f64 {
    cpu.as_secs_f64() * 1e6 / n.max(1) as f64
}

// ---------------------------------------------------------------------------------------
// Vigil against SIPp

const SIPP_SCENARIO: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="REGISTER with digest (401 + 200)">
  <send retrans="500">
    <![CDATA[

      REGISTER sip:vigil.test SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      Max-Forwards: 70
      From: <sip:[field0]@vigil.test>;tag=[pid]T[call_number]
      To: <sip:[field0]@vigil.test>
      Call-ID: [call_id]
      CSeq: 1 REGISTER
      Contact: <sip:[field0]@[local_ip]:[local_port];transport=[transport]>
      Expires: 3600
      Content-Length: 0

    ]]>
  </send>
  <recv response="401" auth="true" />
  <send retrans="500">
    <![CDATA[

      REGISTER sip:vigil.test SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      Max-Forwards: 70
      From: <sip:[field0]@vigil.test>;tag=[pid]T[call_number]
      To: <sip:[field0]@vigil.test>
      Call-ID: [call_id]
      CSeq: 2 REGISTER
      Contact: <sip:[field0]@[local_ip]:[local_port];transport=[transport]>
      [authentication]
      Expires: 3600
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" />
</scenario>
"#;

/// Runs SIPp for `n` registrations at `rate`; returns (successful calls, wall time, CPU).
fn run_sipp(
    dir: &Path,
    kamailio_port: u16,
    n: u64,
    rate: u64,
    transport: &str,
) -> (u64, Duration, KernelShare) {
    let scenario = dir.join("reg.xml");
    std::fs::write(&scenario, SIPP_SCENARIO).expect("write scenario");
    // Users from n upward, so SIPp's AORs never collide with the gateway's.
    let mut csv = String::from("SEQUENTIAL\n");
    for i in 0..n {
        csv.push_str(&format!("sippuser{i};{PASSWORD}\n"));
    }
    let users = dir.join("users.csv");
    std::fs::write(&users, csv).expect("write users");
    let mode = if transport == "tcp" { "t1" } else { "u1" };
    let before = cpu_split("self");
    let t0 = Instant::now();
    let out = Command::new("sipp")
        .current_dir(dir)
        .arg("-sf")
        .arg(&scenario)
        .arg("-inf")
        .arg(&users)
        .args(["-t", mode, "-i", "127.0.0.1", "-p"])
        .arg(free_tcp_port().to_string())
        .args(["-m", &n.to_string(), "-r", &rate.to_string()])
        // Digest credentials: the same MD5 + qop=auth computation as the gateway's.
        .args(["-au", "sipp", "-ap", PASSWORD])
        .args([
            "-nostdin",
            "-timeout",
            "300s",
            "-timeout_error",
            "-max_retrans",
            "5",
        ])
        .arg(format!("127.0.0.1:{kamailio_port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output();
    let took = t0.elapsed();
    let after = cpu_split("self");
    let cpu = KernelShare {
        user: after.child_user.saturating_sub(before.child_user),
        system: after.child_system.saturating_sub(before.child_system),
    };
    let out = match out {
        Ok(o) => o,
        Err(e) => usage(&format!(
            "cannot run sipp ({e}): install Debian's sip-tester (bash .ci/install-deps)"
        )),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let ok = stdout
        .lines()
        .find(|l| l.contains("Successful call"))
        .and_then(|l| l.rsplit('|').map(str::trim).find(|s| !s.is_empty()))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if !out.status.success() {
        eprintln!(
            "sipp exited with {}:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (ok, took, cpu)
}

async fn versus_sipp(args: &Args) {
    let scratch = TempDir::new("reg-bench");
    let kam = start_kamailio(&scratch.0);
    println!(
        "CPU per registration (REGISTER, 401, REGISTER with digest, 200), {} AORs over {} at {} registrations/s, against one Kamailio (load {})",
        args.devices,
        args.transport,
        args.rate,
        loadavg()
    );
    let setup = GatewaySetup {
        data: scratch.0.join("gw"),
        sip_port: free_port_pair(),
        api_port: free_tcp_port(),
        upstream: SocketAddr::from(([127, 0, 0, 1], kam.port)),
        rate: args.rate,
    };
    let config = scratch.0.join("gateway.toml");
    setup.write_config(&config);

    // Load the devices through the API once.
    let g = Gateway::start(&setup, &config).await;
    let took = put_devices(&g, args.devices, 64, &args.transport).await;
    println!(
        "  loaded {} devices through the API in {:.1} s",
        args.devices,
        took.as_secs_f64()
    );
    g.wait_for(
        "vigil_register_ok_total",
        args.devices as f64,
        Duration::from_secs(60 + 4 * args.devices / args.rate),
    )
    .await;
    g.stop().await;

    let mut vigil_us = Vec::new();
    let mut sipp_us = Vec::new();
    for round in 1..=args.rounds {
        // Vigil: a restart re-registers every stored device.
        let g = Gateway::start(&setup, &config).await;
        let startup_cpu = g.cpu();
        g.wait_for(
            "vigil_register_ok_total",
            args.devices as f64,
            Duration::from_secs(60 + 4 * args.devices / args.rate),
        )
        .await;
        let took = g.started.elapsed();
        let cpu = g.cpu();
        let split = cpu_split(&g.pid());
        let m = g.metrics().await.unwrap_or_default();
        let sent = m.get("vigil_register_sent_total").copied().unwrap_or(0.0);
        let retrans = m
            .get("vigil_register_retransmitted_total")
            .copied()
            .unwrap_or(0.0);
        g.stop().await;
        let v = us_per(cpu, args.devices);
        vigil_us.push(v);
        println!(
            "  round {round} vigil: {} registrations ({sent} REGISTERs sent, {retrans} retransmitted) in {:.1} s; \
             CPU {:.2} s = {v:.1} µs/registration (start-up and load {:.2} s; without it {:.1} µs; \
             {} with start-up)",
            args.devices,
            took.as_secs_f64(),
            cpu.as_secs_f64(),
            startup_cpu.as_secs_f64(),
            us_per(cpu.saturating_sub(startup_cpu), args.devices),
            KernelShare {
                user: split.user,
                system: split.system
            }
            .describe(args.devices),
        );

        let (ok, took, cpu) = run_sipp(
            &scratch.0,
            kam.port,
            args.devices,
            args.rate,
            &args.transport,
        );
        let s = us_per(cpu.total(), args.devices);
        sipp_us.push(s);
        println!(
            "  round {round} sipp:  {ok} of {} registrations in {:.1} s; CPU {:.2} s = {s:.1} µs/registration ({})",
            args.devices,
            took.as_secs_f64(),
            cpu.total().as_secs_f64(),
            cpu.describe(args.devices),
        );
        assert_eq!(ok, args.devices, "SIPp did not complete every registration");
        println!(
            "  round {round} ratio vigil/sipp CPU per registration: {:.2} (goal ≤ 0.5; load {})",
            v / s,
            loadavg()
        );
    }
    if args.rounds > 1 {
        let med = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (v, s) = (med(&mut vigil_us), med(&mut sipp_us));
        println!(
            "median: vigil {v:.1} µs, sipp {s:.1} µs, ratio {:.2}",
            v / s
        );
    }
}

// ---------------------------------------------------------------------------------------
// Scale: intake, the registration wave, steady state

/// A lab registrar on one UDP socket: see the module documentation.
struct LabRegistrar {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    requests: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LabRegistrar {
    fn start(spread_min: u64, nonce_life: u64) -> LabRegistrar {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind registrar");
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let addr = sock.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicU64::new(0));
        let (s2, r2) = (Arc::clone(&stop), Arc::clone(&requests));
        let thread =
            std::thread::spawn(move || registrar_loop(&sock, &s2, &r2, spread_min, nonce_life));
        LabRegistrar {
            addr,
            stop,
            requests,
            thread: Some(thread),
        }
    }
}

impl Drop for LabRegistrar {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A cheap deterministic mix (splitmix64), for spreading expiries by Call-ID.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn registrar_loop(
    sock: &UdpSocket,
    stop: &AtomicBool,
    requests: &AtomicU64,
    spread_min: u64,
    nonce_life: u64,
) {
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Ordering::Relaxed) {
        let Ok((len, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let Ok(req) = Message::parse(Bytes::copy_from_slice(&buf[..len])) else {
            continue;
        };
        if !req.is_request() {
            continue;
        }
        requests.fetch_add(1, Ordering::Relaxed);
        let now = unix_secs();
        let fresh_nonce = req
            .header(HeaderName::Authorization)
            .and_then(|a| a.split("nonce=\"").nth(1))
            .and_then(|n| n.split('"').next())
            .and_then(|n| n.strip_prefix('n'))
            .and_then(|n| n.parse::<u64>().ok())
            .map(|issued| now.saturating_sub(issued) < nonce_life);
        let resp = match fresh_nonce {
            Some(true) => {
                let call_id = req.call_id().unwrap_or("");
                let first = req.cseq().map(|c| c.seq <= 2).unwrap_or(true);
                let expires = if first {
                    let h = mix(call_id.bytes().fold(0u64, |h, b| h * 31 + u64::from(b)));
                    spread_min + h % (3600 - spread_min + 1)
                } else {
                    3600
                };
                let contact = req.header(HeaderName::Contact).unwrap_or("<sip:x@invalid>");
                let contact = contact.split(";expires=").next().unwrap_or(contact);
                ResponseBuilder::for_request(&req, 200, Some("lab"))
                    .header(HeaderName::Contact, &format!("{contact};expires={expires}"))
                    .build()
            }
            stale => {
                let mut challenge = format!(
                    "Digest realm=\"{DOMAIN}\", nonce=\"n{now}\", qop=\"auth\", algorithm=MD5"
                );
                if stale == Some(false) {
                    challenge.push_str(", stale=true");
                }
                ResponseBuilder::for_request(&req, 401, Some("lab"))
                    .header(HeaderName::WwwAuthenticate, &challenge)
                    .build()
            }
        };
        let _ = sock.send_to(&resp.print(), from);
    }
}

async fn scale(args: &Args) {
    let scratch = TempDir::new("reg-scale");
    let lab = LabRegistrar::start(args.spread_min, args.nonce_life);
    let setup = GatewaySetup {
        data: scratch.0.join("gw"),
        sip_port: free_port_pair(),
        api_port: free_tcp_port(),
        upstream: lab.addr,
        rate: args.rate,
    };
    let config = scratch.0.join("gateway.toml");
    setup.write_config(&config);
    let g = Gateway::start(&setup, &config).await;
    let rss0 = rss_bytes(&g.pid());
    println!(
        "scale: {} devices, registration pace {}/s, lab registrar on UDP (load {})",
        args.devices,
        args.rate,
        loadavg()
    );

    // 1. Intake.
    let cpu0 = g.cpu();
    let batches0 = g.metric("vigil_store_batch_size_count").await;
    let took = put_devices(&g, args.devices, args.concurrency, "udp").await;
    let cpu = g.cpu().saturating_sub(cpu0);
    let batches = g.metric("vigil_store_batch_size_count").await - batches0;
    println!(
        "  intake: {} PUTs in {:.1} s = {:.0} PUT/s ({} in flight, HTTP/2); gateway CPU {:.1} µs/PUT \
         (registrations running alongside); {batches} store transactions ({:.1} PUTs per fsync) (load {})",
        args.devices,
        took.as_secs_f64(),
        args.devices as f64 / took.as_secs_f64(),
        args.concurrency,
        us_per(cpu, args.devices),
        args.devices as f64 / batches.max(1.0),
        loadavg()
    );

    // 2. The registration wave.
    g.wait_for(
        "vigil_register_ok_total",
        args.devices as f64,
        Duration::from_secs(120 + 4 * args.devices / args.rate),
    )
    .await;
    let rss = rss_bytes(&g.pid());
    println!(
        "  all {} registered {:.1} s after start; RSS {} MiB = {:.0} B per binding over the idle process",
        args.devices,
        g.started.elapsed().as_secs_f64(),
        rss >> 20,
        rss.saturating_sub(rss0) as f64 / args.devices as f64
    );

    // 3. Steady state. Refreshes start at half the shortest granted expiry; wait for the
    // earliest ones so the window sees the spread-out refresh traffic.
    let settle = args.spread_min;
    println!("  waiting {settle} s for refreshes to begin");
    tokio::time::sleep(Duration::from_secs(settle)).await;
    let ok0 = g.metric("vigil_register_ok_total").await;
    let sent0 = g.metric("vigil_register_sent_total").await;
    let cpu0 = g.cpu();
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.window)).await;
    let cpu = g.cpu().saturating_sub(cpu0);
    let secs = t0.elapsed().as_secs_f64();
    let refreshes = g.metric("vigil_register_ok_total").await - ok0;
    let sent = g.metric("vigil_register_sent_total").await - sent0;
    let core = cpu.as_secs_f64() / secs;
    let rate = refreshes / secs;
    let hourly = args.devices as f64 / 3600.0;
    println!(
        "  steady state over {secs:.0} s: {refreshes} refreshes ({rate:.0}/s; {sent} REGISTERs), \
         gateway CPU {:.2}% of a core, {:.1} µs per refresh; lab registrar answered {} requests in all",
        core * 100.0,
        cpu.as_secs_f64() * 1e6 / refreshes.max(1.0),
        lab.requests.load(Ordering::Relaxed)
    );
    if rate < hourly {
        // The window saw fewer refreshes than an hourly refresh of every binding brings.
        println!(
            "  at exactly hourly refreshes ({hourly:.0}/s) that is {:.2}% of a core (per-refresh CPU x rate)",
            cpu.as_secs_f64() / refreshes.max(1.0) * hourly * 100.0
        );
    } else {
        println!("  (that window refreshed at {rate:.0}/s, at least the hourly {hourly:.0}/s; goal < 10% of a core)");
    }
    g.stop().await;
}
