//! The `vigil-sim mock-apns` / `mock-fcm` binaries: they start, write the CA and keys where
//! they say, and serve pushes a client signed with those keys.

mod common;

use common::{connect_with, device_token, Client};
use http::{Method, Request, StatusCode};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use vigil_sim::mock::{ApnsSigningKey, FcmServiceAccount};

struct Running {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    printed: Vec<String>,
}

/// Starts the binary and reads its stdout until the "listening on" line.
async fn start(args: &[&str]) -> (Running, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vigil-sim"))
        .args(args)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn vigil-sim");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut run = Running {
        child,
        lines: BufReader::new(stdout).lines(),
        printed: Vec::new(),
    };
    loop {
        let line = tokio::time::timeout(std::time::Duration::from_secs(30), run.lines.next_line())
            .await
            .expect("the mock starts within 30 s")
            .expect("readable stdout")
            .expect("the mock prints where it listens before exiting");
        run.printed.push(line.clone());
        if let Some(rest) = line.split(" listening on ").nth(1) {
            let addr = rest.split_whitespace().next().expect("an address");
            return (run, addr.parse().expect("a socket address"));
        }
    }
}

impl Running {
    fn printed_value(&self, prefix: &str) -> Option<String> {
        self.printed
            .iter()
            .find_map(|l| l.strip_prefix(prefix).map(str::to_owned))
    }

    async fn stop(mut self) {
        self.child.kill().await.expect("kill our child");
    }
}

/// A client that trusts only the CA PEM the binary wrote.
async fn client_trusting(ca_file: &Path, addr: SocketAddr) -> Client {
    let pem_text = std::fs::read_to_string(ca_file).expect("CA file written");
    let block = pem::parse(&pem_text).expect("CA file is PEM");
    assert_eq!(block.tag(), "CERTIFICATE");
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(block.contents().to_vec().into())
        .expect("a CA certificate");
    let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    connect_with(addr, config).await
}

fn apns_push(jwt: &str) -> Request<()> {
    Request::builder()
        .method(Method::POST)
        .uri(format!("https://localhost/3/device/{}", device_token(1)))
        .header("authorization", format!("bearer {jwt}"))
        .header("apns-topic", "com.example.phone.voip")
        .header("apns-push-type", "voip")
        .header("apns-priority", "10")
        .header("apns-expiration", "0")
        .body(())
        .expect("request")
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

#[tokio::test]
async fn mock_apns_binary_writes_ca_and_key_and_serves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca.pem");
    let (run, addr) = start(&[
        "mock-apns",
        "--listen",
        "127.0.0.1:0",
        "--ca-out",
        ca.to_str().expect("utf-8"),
    ])
    .await;
    let p8 = dir.path().join("AuthKey_VIGILKEY01.p8");
    assert!(
        run.printed
            .iter()
            .any(|l| l.contains(&p8.display().to_string())),
        "{:?}",
        run.printed
    );
    let key = ApnsSigningKey::from_p8_pem(
        "VIGILTEAM1",
        "VIGILKEY01",
        &std::fs::read_to_string(&p8).expect(".p8 written"),
    )
    .expect("a P-256 .p8");
    let mut c = client_trusting(&ca, addr).await;
    let a = c
        .request(apns_push(&key.provider_token(now())), br#"{"aps":{}}"#)
        .await
        .expect("answer");
    assert_eq!(a.status, StatusCode::OK);
    // The printed example token is valid too: as a second token within 20 minutes it is
    // refused as an update, not as a bad signature.
    let printed = run
        .printed_value("provider token valid for 60 minutes: ")
        .expect("a printed token");
    let a = c
        .request(apns_push(&printed), br#"{"aps":{}}"#)
        .await
        .expect("answer");
    assert_eq!(
        (a.status, a.reason()),
        (
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyProviderTokenUpdates".to_owned()
        )
    );
    run.stop().await;
}

/// `--keys 2`: two keys of two teams, each accepted on a connection of its own, so two
/// senders (a gateway and h2load in the push benchmark) never trip the token-update rule.
#[tokio::test]
async fn mock_apns_binary_generates_several_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca.pem");
    let (run, addr) = start(&[
        "mock-apns",
        "--listen",
        "127.0.0.1:0",
        "--ca-out",
        ca.to_str().expect("utf-8"),
        "--keys",
        "2",
    ])
    .await;
    for (team, kid) in [("VIGILTEAM1", "VIGILKEY01"), ("VIGILTEAM2", "VIGILKEY02")] {
        let p8 = dir.path().join(format!("AuthKey_{kid}.p8"));
        let line = format!(
            "APNs signing key: {} (team {team}, key {kid})",
            p8.display()
        );
        assert!(run.printed.contains(&line), "{:?}", run.printed);
        let key = ApnsSigningKey::from_p8_pem(
            team,
            kid,
            &std::fs::read_to_string(&p8).expect(".p8 written"),
        )
        .expect("a P-256 .p8");
        let mut c = client_trusting(&ca, addr).await;
        let a = c
            .request(apns_push(&key.provider_token(now())), br#"{"aps":{}}"#)
            .await
            .expect("answer");
        assert_eq!(a.status, StatusCode::OK, "{team}: {}", a.reason());
    }
    run.stop().await;
}

#[tokio::test]
async fn mock_apns_binary_trusts_a_given_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = ApnsSigningKey::generate("ABCDE12345", "KID1234567").expect("key");
    let p8 = dir.path().join("mine.p8");
    std::fs::write(&p8, key.p8_pem()).expect("write key");
    let ca = dir.path().join("ca.pem");
    let (run, addr) = start(&[
        "mock-apns",
        "--listen",
        "127.0.0.1:0",
        "--ca-out",
        ca.to_str().expect("utf-8"),
        "--trust-key",
        p8.to_str().expect("utf-8"),
        "--team-id",
        "ABCDE12345",
        "--key-id",
        "KID1234567",
    ])
    .await;
    assert!(
        !dir.path().join("AuthKey_KID1234567.p8").exists(),
        "no key generated"
    );
    let mut c = client_trusting(&ca, addr).await;
    let a = c
        .request(apns_push(&key.provider_token(now())), br#"{"aps":{}}"#)
        .await
        .expect("answer");
    assert_eq!(a.status, StatusCode::OK);
    let other = ApnsSigningKey::generate("ABCDE12345", "KID1234567").expect("key");
    let mut c2 = client_trusting(&ca, addr).await;
    let a = c2
        .request(apns_push(&other.provider_token(now())), br#"{"aps":{}}"#)
        .await
        .expect("answer");
    assert_eq!(
        (a.status, a.reason()),
        (StatusCode::FORBIDDEN, "InvalidProviderToken".to_owned())
    );
    run.stop().await;
}

#[tokio::test]
async fn mock_fcm_binary_writes_service_account_and_serves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca.pem");
    let (run, addr) = start(&[
        "mock-fcm",
        "--listen",
        "127.0.0.1:0",
        "--ca-out",
        ca.to_str().expect("utf-8"),
        "--project-id",
        "cli-proj",
    ])
    .await;
    let json = std::fs::read_to_string(dir.path().join("service-account.json"))
        .expect("service account written");
    let account = FcmServiceAccount::from_json(&json).expect("a usable service account");
    assert_eq!(account.project_id, "cli-proj");
    let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    let token_uri = v["token_uri"].as_str().expect("token_uri");
    assert_eq!(
        token_uri,
        format!("https://localhost:{}/token", addr.port())
    );

    let mut c = client_trusting(&ca, addr).await;
    let grant = account.grant_assertion(token_uri, now(), now() + 3600);
    let body = format!(
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={grant}"
    );
    let req = Request::builder()
        .method(Method::POST)
        .uri(token_uri)
        .body(())
        .expect("request");
    let a = c.request(req, body.as_bytes()).await.expect("answer");
    assert_eq!(a.status, StatusCode::OK);
    let access = a.json()["access_token"].as_str().expect("token").to_owned();
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!(
            "https://localhost:{}/v1/projects/cli-proj/messages:send",
            addr.port()
        ))
        .header("authorization", format!("Bearer {access}"))
        .body(())
        .expect("request");
    let a = c
        .request(req, br#"{"message":{"token":"abc:def","data":{"k":"v"}}}"#)
        .await
        .expect("answer");
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    run.stop().await;
}
