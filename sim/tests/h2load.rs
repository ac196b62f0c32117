//! `h2load` (nghttp2) against the mock APNs: a real third-party HTTP/2 client over TLS sends
//! a few thousand pushes with the required headers and a pre-signed provider token.

use std::sync::Arc;
use vigil_sim::mock::{ApnsSigningKey, MockApns, MockApnsConfig, TestCa};

/// Reads `N <label>` out of h2load's summary line, e.g. "3000 succeeded".
fn count(summary: &str, label: &str) -> u64 {
    let (_, counts) = summary.split_once(':').expect("a 'name: counts' line");
    counts
        .split(',')
        .map(str::trim)
        .find_map(|part| part.strip_suffix(label).map(str::trim))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no '{label}' in {summary:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2load_pushes_to_mock_apns() {
    let ca = Arc::new(TestCa::generate().expect("CA"));
    let key = ApnsSigningKey::generate("TEAM000001", "KEY0000001").expect("key");
    let mock = MockApns::start(MockApnsConfig::new(ca, vec![key.public_key()]))
        .await
        .expect("mock");
    let jwt = key.provider_token(mock.clock().unix_secs());
    let dir = tempfile::tempdir().expect("tempdir");
    let body = dir.path().join("push.json");
    std::fs::write(&body, br#"{"aps":{},"call-id":"h2load"}"#).expect("write body");
    let url = format!(
        "https://127.0.0.1:{}/3/device/{}",
        mock.addr.port(),
        "0123456789abcdef".repeat(4)
    );
    let n = 3000;
    let output = tokio::process::Command::new("h2load")
        .args(["-n", &n.to_string(), "-c", "4", "-m", "32", "-d"])
        .arg(&body)
        .args(["-H", &format!("authorization: bearer {jwt}")])
        .args([
            "-H",
            "apns-topic: com.example.phone.voip",
            "-H",
            "apns-push-type: voip",
        ])
        .args(["-H", "apns-priority: 10", "-H", "apns-expiration: 0"])
        .arg(&url)
        .output()
        .await
        .expect("h2load must be installed (Debian package nghttp2-client)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "h2load failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("Application protocol: h2"), "{stdout}");
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("requests:"))
        .expect("a requests line");
    assert_eq!(count(summary, "succeeded"), n, "{stdout}");
    let codes = stdout
        .lines()
        .find(|l| l.starts_with("status codes:"))
        .expect("a status line");
    assert_eq!(count(codes, "2xx"), n, "{stdout}");
    let stats = mock.stats();
    assert_eq!(stats.accepted, n);
    assert_eq!(stats.connections, 4);
    assert_eq!(mock.accepted().len() as u64, n);
    mock.shutdown().await;
}
