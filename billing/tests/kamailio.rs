//! A stock Kamailio (auth_db + db_postgres, `examples/kamailio/kamailio.cfg`) authenticates an
//! app user that vigil-billing provisioned, through the `subscriber` view, with SIP digest over
//! UDP. PostgreSQL only (the view is a PostgreSQL feature here).
//!
//! Needs /usr/sbin/kamailio and its PostgreSQL module (Debian: kamailio-postgres-modules). The
//! test fails if they are missing, unless VIGIL_SKIP_KAMAILIO=1 says to skip it on purpose.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Backend, Harness};
use md5::{Digest, Md5};
use tokio::net::UdpSocket;

const KAMAILIO: &str = "/usr/sbin/kamailio";

/// Stops Kamailio with SIGTERM (so its main process reaps its children) when the test ends.
struct Kamailio(Child);

impl Drop for Kamailio {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let _ = self.0.wait();
    }
}

fn md5_hex(s: &str) -> String {
    hex::encode(Md5::digest(s.as_bytes()))
}

fn param<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    let start = header.find(&format!("{name}="))? + name.len() + 1;
    let rest = &header[start..];
    if let Some(r) = rest.strip_prefix('"') {
        r.split('"').next()
    } else {
        rest.split([',', ' ', '\r']).next()
    }
}

struct Reg<'a> {
    sock: &'a UdpSocket,
    user: &'a str,
    domain: &'a str,
}

impl Reg<'_> {
    async fn send(&self, cseq: u32, auth: Option<String>) -> Option<String> {
        let local = self.sock.local_addr().unwrap();
        let (user, domain) = (self.user, self.domain);
        let mut msg = format!(
            "REGISTER sip:{domain} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{cseq}x{}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{user}@{domain}>;tag=t1\r\nTo: <sip:{user}@{domain}>\r\n\
             Call-ID: kamailio-test-{user}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{user}@{local}>\r\n\
             Expires: 60\r\n",
            rand::random::<u32>()
        );
        if let Some(a) = auth {
            msg.push_str(&format!("Authorization: {a}\r\n"));
        }
        msg.push_str("Content-Length: 0\r\n\r\n");
        self.sock.send(msg.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_millis(500), self.sock.recv(&mut buf))
            .await
            .ok()?
            .ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    fn authorization(&self, challenge: &str, password: &str) -> String {
        let line = challenge
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("www-authenticate:"))
            .expect("a digest challenge");
        let realm = param(line, "realm").unwrap();
        let nonce = param(line, "nonce").unwrap();
        let uri = format!("sip:{}", self.domain);
        let ha1 = md5_hex(&format!("{}:{realm}:{password}", self.user));
        let ha2 = md5_hex(&format!("REGISTER:{uri}"));
        let (cnonce, nc) = ("0a4f113b", "00000001");
        if line.contains("qop") {
            let resp = md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
            format!(
                "Digest username=\"{}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
                 response=\"{resp}\", algorithm=MD5, qop=auth, nc={nc}, cnonce=\"{cnonce}\"",
                self.user
            )
        } else {
            let resp = md5_hex(&format!("{ha1}:{nonce}:{ha2}"));
            format!(
                "Digest username=\"{}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{resp}\", algorithm=MD5",
                self.user
            )
        }
    }
}

fn status(resp: &str) -> u16 {
    resp.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_kamailio_authenticates_provisioned_user() {
    if std::env::var("VIGIL_SKIP_KAMAILIO").as_deref() == Ok("1") {
        eprintln!("VIGIL_SKIP_KAMAILIO=1: skipping the Kamailio interop test");
        return;
    }
    assert!(
        std::path::Path::new(KAMAILIO).exists(),
        "{KAMAILIO} missing (or set VIGIL_SKIP_KAMAILIO=1)"
    );
    let h = Harness::start(Backend::Postgres).await;
    h.import_dids(100, 1).await;
    let me = h.signup("+12065551300").await;
    let user = me["username"].as_str().unwrap().to_owned();
    let password = me["password"].as_str().unwrap().to_owned();
    let domain = me["domain"].as_str().unwrap().to_owned();
    let schema = h.state.cfg.pg_schema.clone().unwrap();

    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let run = tempfile::tempdir().unwrap();
    let pg = url_for_kamailio(&common::pg_url());
    let cfg = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/kamailio/kamailio.cfg"
    );
    let child = Command::new(KAMAILIO)
        .args(["-DD", "-E", "-f", cfg, "-Y"])
        .arg(run.path())
        .arg("-P")
        .arg(run.path().join("kamailio.pid"))
        .arg("-A")
        .arg(format!("DBURL=\"{pg}\""))
        .arg("-A")
        .arg(format!("LISTEN=udp:127.0.0.1:{port}"))
        .env("PGOPTIONS", format!("-c search_path={schema}"))
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(run.path().join("kamailio.log")).unwrap(),
        ))
        .spawn()
        .expect("start kamailio");
    let _guard = Kamailio(child);

    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.connect(("127.0.0.1", port)).await.unwrap();
    let reg = Reg {
        sock: &sock,
        user: &user,
        domain: &domain,
    };
    // Kamailio takes a moment to start; retry the first REGISTER.
    let mut challenge = None;
    for i in 0..40 {
        if let Some(r) = reg.send(1 + i, None).await {
            challenge = Some(r);
            break;
        }
        // A refused or unanswered datagram comes back at once; pace the retries.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let log = || std::fs::read_to_string(run.path().join("kamailio.log")).unwrap_or_default();
    let challenge = challenge.unwrap_or_else(|| panic!("Kamailio did not answer; log:\n{}", log()));
    assert_eq!(status(&challenge), 401, "{challenge}\nlog:\n{}", log());

    // Wrong password: challenged again (or refused), never 200.
    let bad = reg
        .send(100, Some(reg.authorization(&challenge, "wrong-password")))
        .await
        .unwrap();
    assert_ne!(status(&bad), 200, "{bad}");
    let fresh = reg.send(101, None).await.unwrap();
    let ok = reg
        .send(102, Some(reg.authorization(&fresh, &password)))
        .await
        .unwrap();
    assert_eq!(status(&ok), 200, "{ok}\nlog:\n{}", log());
    drop(_guard);
    h.finish().await;
}

/// db_postgres wants `postgres://user:password@host:port/db`; trust auth ignores the password.
fn url_for_kamailio(url: &str) -> String {
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .unwrap_or(url);
    match rest.split_once('@') {
        Some((user, host)) if !user.contains(':') => format!("postgres://{user}:unused@{host}"),
        Some(_) => format!("postgres://{rest}"),
        None => format!("postgres://postgres:unused@{rest}"),
    }
}
