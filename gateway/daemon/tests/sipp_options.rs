//! Interop: SIPp (Debian's `sip-tester`) sends OPTIONS over UDP (and TCP) and expects 200 OK.
//!
//! This test fails, loudly, when `sipp` is not installed: interop is part of what CI checks,
//! and a skipped test would hide a broken CI image.

mod common;

use std::process::Stdio;
use std::time::Duration;

use vigil_proto::txn::Transport;

/// Calls SIPp makes; each is one OPTIONS transaction.
const CALLS: u32 = 20;

const SCENARIO: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="Vigil OPTIONS">
  <send retrans="500">
    <![CDATA[

      OPTIONS sip:vigil@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      Max-Forwards: 70
      From: "sipp" <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:vigil@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 OPTIONS
      Contact: <sip:sipp@[local_ip]:[local_port]>
      Accept: application/sdp
      Content-Length: 0

    ]]>
  </send>

  <recv response="200" />
</scenario>
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_options_over_udp() {
    let gw = common::start(|_| {}).await;
    run_sipp(gw.addr(Transport::Udp), "u1").await;
    gw.gateway.shutdown().await;
}

/// Runs the scenario against `target` with SIPp transport mode `mode` and asserts that every
/// call succeeded (SIPp exits 0 only then).
async fn run_sipp(target: std::net::SocketAddr, mode: &str) {
    let work = tempfile::tempdir().expect("temp dir");
    let scenario = work.path().join("options.xml");
    std::fs::write(&scenario, SCENARIO).expect("write scenario");
    // SIPp binds its own port; pick a free one (a race with another process would fail
    // loudly, not silently).
    let local_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free port")
        .port();

    let mut cmd = tokio::process::Command::new("sipp");
    cmd.current_dir(work.path())
        .arg("-sf")
        .arg(&scenario)
        .args(["-t", mode, "-i", "127.0.0.1", "-p"])
        .arg(local_port.to_string())
        .args(["-m", &CALLS.to_string(), "-r", "50", "-nostdin"])
        .args(["-timeout", "20s", "-timeout_error", "-max_retrans", "3"])
        .arg(target.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => panic!(
            "cannot run `sipp` ({e}): install Debian's sip-tester package \
             (apt-get install sip-tester); this interop test must not be skipped"
        ),
    };
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("sipp finishes")
        .expect("sipp output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "sipp -t {mode} failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
}

/// The same scenario over TCP: SIPp keeps one connection for all calls, so this also checks
/// that responses go back over the connection each request arrived on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_options_over_tcp() {
    let gw = common::start(|_| {}).await;
    run_sipp(gw.addr(Transport::Tcp), "t1").await;
    gw.gateway.shutdown().await;
}
