//! Memory per idle QUIC wake-channel connection, server side, by RSS delta.
//!
//! Its own test binary (so its own process): other tests running in parallel would pollute
//! the RSS numbers. The devices live in a child process (`wake_load`), so only the server's
//! memory is counted here; the child reports its own.

// Helpers outside #[test] fns: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use vigil_gateway::push::{Roots, Secret, WakeClient, WakeServer, WakeServerConfig};
use vigil_proto::push::DeviceToken;

fn server() -> (Arc<WakeServer>, String) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let pem = cert.cert.pem();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der()));
    let cfg = WakeServerConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        vec![CertificateDer::from(cert.cert.der().to_vec())],
        key,
    );
    (WakeServer::bind(cfg).unwrap(), pem)
}

fn dev(s: &str) -> DeviceToken {
    DeviceToken::opaque(s).unwrap()
}

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let l = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    l.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Server-side memory per idle connection, by RSS delta with the devices in another process.
/// `VIGIL_WAKE_CONNS=10000` runs the same measurement at 10,000 devices.
#[tokio::test]
async fn idle_connection_memory_at_2000_devices() {
    let n_env = std::env::var("VIGIL_WAKE_CONNS")
        .ok()
        .and_then(|v| v.parse().ok());
    let n: usize = n_env.unwrap_or(2000);
    let (srv, pem) = server();
    for i in 0..n {
        srv.register(&dev(&format!("dev-{i}")), &Secret::new(format!("tok-{i}")));
    }
    let dir = std::env::temp_dir().join(format!("vigil-wake-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &pem).unwrap();
    let addr = srv.local_addr().unwrap();
    // Warm the server's allocator and runtime with one connection first.
    let warm = WakeClient::connect(
        addr,
        "localhost",
        &Roots::Pem(pem),
        "dev-0",
        &Secret::new("tok-0"),
    )
    .await
    .unwrap();
    warm.close();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = rss_kib();
    let mut child = Command::new(env!("CARGO_BIN_EXE_wake_load"))
        .args([addr.to_string(), ca.display().to_string(), n.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut l = String::new();
        BufReader::new(stdout).read_line(&mut l).unwrap();
        l
    })
    .await
    .unwrap();
    assert!(line.starts_with(&format!("connected {n}")), "{line}");
    let t0 = Instant::now();
    while srv.connected() < n && t0.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(srv.connected(), n);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib();
    let per_conn = (after.saturating_sub(before)) * 1024 / n as u64;
    eprintln!("wake channel: {n} idle connections, server RSS {before} → {after} KiB, {per_conn} bytes per connection; device side: {}", line.trim());
    drop(child.stdin.take());
    let _ = child.wait();
    std::fs::remove_dir_all(&dir).ok();
    // Goal ≤ 32 KiB; fail loudly if a change makes idle connections balloon.
    assert!(
        per_conn <= 48 * 1024,
        "{per_conn} bytes per idle connection"
    );
    srv.close();
}
