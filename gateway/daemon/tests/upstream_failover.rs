//! The registration path with upstreams located by RFC 3263 through a local DNS responder
//! (the one of `upstream_resolve.rs`), against small mock registrars on loopback that answer
//! every REGISTER with 200:
//!
//! - SRV with two targets, the first dead (nothing listens): devices end up registered at
//!   the second, and a device added afterwards goes straight there (the dead target is
//!   marked down for every binding of the domain).
//! - Every target dead: devices are reported retrying, with backoff (a bounded number of
//!   attempts, not a loop); an unknown domain is reported "SIP server not found".
//! - TLS: the certificate is verified against the SIP domain (RFC 5922 §4), not the SRV
//!   target or the address: accepted when it names the domain, refused when it does not.
//! - Backpressure: an upstream that stops reading fills the shared connection's write queue;
//!   no binding is failed for it, and all register once it reads again.
//!
//! The tests share the process's metrics recorder, so they run one at a time (`SERIAL`) and
//! compare counters before and after.

// Tests panic on the unexpected: unwrap is the assertion.
#![allow(clippy::unwrap_used)]

mod common;
mod dns;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dns::*;
use hickory_proto::rr::RecordType;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use vigil_gateway::bindings::{DeviceState, Reason, Status};
use vigil_gateway::Gateway;
use vigil_proto::framing::{FramerConfig, StreamFramer, StreamItem};
use vigil_proto::msg::{HeaderName, Message, Method, ResponseBuilder};

use common::{api_client, TestGateway};

/// One test at a time: the metrics recorder is per process.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A registrar on 127.0.0.1 (TCP, or TLS with the given configuration) that answers every
/// REGISTER 200 with the request's Contact and `expires=60`, and records who registered.
struct Registrar {
    addr: SocketAddr,
    /// REGISTERs received.
    registers: Arc<AtomicUsize>,
    /// From headers of the REGISTERs answered.
    users: Arc<Mutex<HashSet<String>>>,
    /// While false, connections are not read (the peer's writes back up).
    reading: watch::Sender<bool>,
}

impl Registrar {
    async fn start(tls: Option<Arc<rustls::ServerConfig>>, recv_buffer: Option<u32>) -> Self {
        let socket = TcpSocket::new_v4().unwrap();
        if let Some(size) = recv_buffer {
            // Inherited by accepted sockets: little room before the sender's queue fills.
            socket.set_recv_buffer_size(size).unwrap();
        }
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(1024).unwrap();
        let addr = listener.local_addr().unwrap();
        let registers = Arc::new(AtomicUsize::new(0));
        let users = Arc::new(Mutex::new(HashSet::new()));
        let (reading, rx) = watch::channel(true);
        let (count, seen) = (registers.clone(), users.clone());
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (count, seen, rx) = (count.clone(), seen.clone(), rx.clone());
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        Some(cfg) => {
                            // A refused handshake just ends the connection.
                            if let Ok(s) = TlsAcceptor::from(cfg).accept(tcp).await {
                                serve(s, count, seen, rx).await;
                            }
                        }
                        None => serve(tcp, count, seen, rx).await,
                    }
                });
            }
        });
        Self {
            addr,
            registers,
            users,
            reading,
        }
    }

    fn registered(&self) -> usize {
        self.users.lock().unwrap().len()
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    count: Arc<AtomicUsize>,
    seen: Arc<Mutex<HashSet<String>>>,
    mut reading: watch::Receiver<bool>,
) {
    let mut framer = StreamFramer::new(FramerConfig::default());
    let mut buf = vec![0u8; 4096];
    loop {
        while !*reading.borrow_and_update() {
            if reading.changed().await.is_err() {
                return;
            }
        }
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if framer.handle_bytes(&buf[..n]).is_err() {
            return;
        }
        while let Ok(Some(item)) = framer.poll_item() {
            let StreamItem::Message(bytes) = item else {
                continue;
            };
            let Ok(req) = Message::parse(bytes) else {
                continue;
            };
            if req.method() != Some(Method::Register) {
                continue;
            }
            count.fetch_add(1, Ordering::Relaxed);
            let contact = req.header(HeaderName::Contact).unwrap_or_default();
            let ok = ResponseBuilder::for_request(&req, 200, Some("reg"))
                .header(HeaderName::Contact, &format!("{contact};expires=60"))
                .build();
            if stream.write_all(ok.as_bytes()).await.is_err() {
                return;
            }
            let from = req.header(HeaderName::From).unwrap_or_default().to_owned();
            seen.lock().unwrap().insert(from);
        }
    }
}

/// A loopback port nothing listens on.
async fn dead_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

async fn gateway(
    dns: Option<SocketAddr>,
    tweak: impl FnOnce(&mut vigil_gateway::config::Config),
) -> TestGateway {
    common::start(|c| {
        c.api.rate_per_sec = 0.0;
        c.reg.max_registers_per_sec = 0;
        c.reg.dns_servers = dns.into_iter().collect();
        tweak(c);
    })
    .await
}

fn device(i: usize, domain: &str, transport: &str) -> Value {
    json!({
        "sip": {
            "username": format!("user{i}"),
            "password": format!("pw-{i}"),
            "domain": domain,
            "transport": transport,
        },
        "push": {"fcm": {"token": format!("fcm-token-{i}"), "project_id": "proj-1"}},
        "app": {"id": "com.example.app", "version": "2.0"},
        "expires": 60
    })
}

async fn put(gw: &Gateway, ids: impl Iterator<Item = usize>, domain: &str, transport: &str) {
    let http = api_client(gw);
    let base = format!("https://localhost:{}", gw.api_addr().unwrap().port());
    for i in ids {
        let resp = http
            .put(format!("{base}/v1/devices/dev-{i}"))
            .json(&device(i, domain, transport))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "PUT dev-{i}: {}", resp.status());
    }
}

fn status(gw: &Gateway, i: usize) -> Status {
    let table = &gw.api_state().unwrap().table;
    table.get(&format!("dev-{i}")).unwrap().status()
}

/// Waits until every device in `ids` satisfies `done`, or fails with the states seen.
async fn wait_all(
    gw: &Gateway,
    ids: std::ops::Range<usize>,
    limit: Duration,
    what: &str,
    done: impl Fn(&Status) -> bool,
) {
    let start = Instant::now();
    loop {
        let states: Vec<Status> = ids.clone().map(|i| status(gw, i)).collect();
        if states.iter().all(&done) {
            return;
        }
        if start.elapsed() > limit {
            let odd: Vec<_> = states.iter().filter(|s| !done(s)).take(3).collect();
            panic!("{what}: not within {limit:?}; e.g. {odd:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The sum of a counter's series whose labels contain every one of `labels`.
async fn counter(gw: &Gateway, name: &str, labels: &[&str]) -> f64 {
    let url = format!(
        "https://localhost:{}/metrics",
        gw.api_addr().unwrap().port()
    );
    let text = api_client(gw)
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

const TRANSPORT_FAILURES: &str = "vigil_register_failed_total";

#[tokio::test]
async fn dead_first_srv_target_fails_over_to_the_second() {
    let _serial = SERIAL.lock().await;
    let live = Registrar::start(None, None).await;
    let dead = dead_port().await;
    let dns = Dns::start(zone(vec![
        (
            "_sip._tcp.failover.test.",
            RecordType::SRV,
            vec![
                srv(10, 0, dead, "dead.failover.test."),
                srv(20, 0, live.addr.port(), "live.failover.test."),
            ],
        ),
        (
            "dead.failover.test.",
            RecordType::A,
            vec![a("127.0.0.1", 600)],
        ),
        (
            "live.failover.test.",
            RecordType::A,
            vec![a("127.0.0.1", 600)],
        ),
    ]))
    .await;
    let gw = gateway(Some(dns.addr), |_| {}).await;
    let failed_before = counter(&gw.gateway, TRANSPORT_FAILURES, &["transport"]).await;

    put(&gw.gateway, 0..20, "failover.test", "tcp").await;
    wait_all(
        &gw.gateway,
        0..20,
        Duration::from_secs(10),
        "registered at the second target",
        |s| s.state == DeviceState::Registered,
    )
    .await;
    assert_eq!(
        live.registered(),
        20,
        "every device registered at the live target"
    );
    let failed = counter(&gw.gateway, TRANSPORT_FAILURES, &["transport"]).await - failed_before;
    assert!(
        failed >= 1.0,
        "the dead first target was tried ({failed} transport failures)"
    );
    // One lookup served every device of the domain.
    let srv_asked = dns
        .asked()
        .iter()
        .filter(|(n, t)| n == "_sip._tcp.failover.test." && *t == RecordType::SRV)
        .count();
    assert_eq!(
        srv_asked,
        1,
        "one SRV lookup for 20 devices: {:?}",
        dns.asked()
    );

    // A device added now skips the target that is marked down.
    put(&gw.gateway, 20..25, "failover.test", "tcp").await;
    wait_all(
        &gw.gateway,
        20..25,
        Duration::from_secs(10),
        "late devices registered",
        |s| s.state == DeviceState::Registered,
    )
    .await;
    let failed_after =
        counter(&gw.gateway, TRANSPORT_FAILURES, &["transport"]).await - failed_before;
    assert_eq!(failed_after, failed, "no late device tried the dead target");
    assert_eq!(live.registered(), 25);
    gw.gateway.shutdown().await;
}

#[tokio::test]
async fn all_targets_down_retries_with_backoff_and_unknown_domains_are_reported() {
    let _serial = SERIAL.lock().await;
    let (d1, d2) = (dead_port().await, dead_port().await);
    let dns = Dns::start(zone(vec![
        (
            "_sip._tcp.down.test.",
            RecordType::SRV,
            vec![
                srv(10, 0, d1, "a.down.test."),
                srv(20, 0, d2, "b.down.test."),
            ],
        ),
        ("a.down.test.", RecordType::A, vec![a("127.0.0.1", 600)]),
        ("b.down.test.", RecordType::A, vec![a("127.0.0.1", 600)]),
    ]))
    .await;
    let gw = gateway(Some(dns.addr), |_| {}).await;
    let failed_before = counter(&gw.gateway, TRANSPORT_FAILURES, &["transport"]).await;
    const N: usize = 10;
    put(&gw.gateway, 0..N, "down.test", "tcp").await;
    put(&gw.gateway, N..N + 1, "missing.test", "tcp").await;

    wait_all(
        &gw.gateway,
        0..N,
        Duration::from_secs(5),
        "reported retrying",
        |s| s.state == DeviceState::Retrying && s.reason == Reason::TransportError,
    )
    .await;
    wait_all(
        &gw.gateway,
        N..N + 1,
        Duration::from_secs(5),
        "unknown domain reported",
        |s| {
            s.state == DeviceState::Retrying
                && s.reason == Reason::UpstreamNotFound
                && s.next_at_ms > 0
        },
    )
    .await;
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let failed = counter(&gw.gateway, TRANSPORT_FAILURES, &["transport"]).await - failed_before;
    // Each device tries both targets at once (2 failures), then one target per backoff
    // pause (uniform in [0, 4 s], then [0, 8 s], …): a handful in 5 s, never a loop.
    assert!(
        failed >= (2 * N) as f64,
        "both targets tried by every device: {failed} failures"
    );
    assert!(
        failed <= (8 * N) as f64,
        "{failed} failures in {:?} for {N} devices: not backing off",
        t0.elapsed()
    );
    for i in 0..N {
        let s = status(&gw.gateway, i);
        assert_eq!(s.state, DeviceState::Retrying, "dev-{i}: {s:?}");
        assert!(s.next_at_ms > 0, "dev-{i} has its next attempt scheduled");
    }
    gw.gateway.shutdown().await;
}

/// A self-signed certificate for `name`, as a server configuration and its PEM.
fn certificate(name: &str) -> (Arc<rustls::ServerConfig>, String) {
    let generated = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
    let cert = generated.cert.der().clone();
    let key =
        rustls::pki_types::PrivateKeyDer::try_from(generated.key_pair.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    (Arc::new(config), generated.cert.pem())
}

#[tokio::test]
async fn tls_upstream_is_verified_against_the_sip_domain() {
    let _serial = SERIAL.lock().await;
    // Both registrars present a certificate for `good.test` (trusted by the gateway). The
    // SRV targets have other names: RFC 5922 verifies the domain that was resolved.
    let (server, pem) = certificate("good.test");
    let good = Registrar::start(Some(server.clone()), None).await;
    let bad = Registrar::start(Some(server), None).await;
    let dns = Dns::start(zone(vec![
        (
            "_sips._tcp.good.test.",
            RecordType::SRV,
            vec![srv(10, 0, good.addr.port(), "edge1.good.test.")],
        ),
        ("edge1.good.test.", RecordType::A, vec![a("127.0.0.1", 600)]),
        (
            "_sips._tcp.bad.test.",
            RecordType::SRV,
            vec![srv(10, 0, bad.addr.port(), "edge2.bad.test.")],
        ),
        ("edge2.bad.test.", RecordType::A, vec![a("127.0.0.1", 600)]),
    ]))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, pem).unwrap();
    let gw = gateway(Some(dns.addr), |c| c.sip.tls.ca_file = Some(ca)).await;

    put(&gw.gateway, 0..1, "good.test", "tls").await;
    put(&gw.gateway, 1..2, "bad.test", "tls").await;
    wait_all(
        &gw.gateway,
        0..1,
        Duration::from_secs(10),
        "registered over TLS",
        |s| s.state == DeviceState::Registered,
    )
    .await;
    assert_eq!(good.registered(), 1);
    wait_all(
        &gw.gateway,
        1..2,
        Duration::from_secs(10),
        "refused: wrong name",
        |s| s.state == DeviceState::Retrying && s.reason == Reason::TransportError,
    )
    .await;
    assert_eq!(
        bad.registers.load(Ordering::Relaxed),
        0,
        "no REGISTER crosses a connection whose certificate names another domain"
    );
    gw.gateway.shutdown().await;
}

#[tokio::test]
async fn a_full_connection_queue_fails_no_binding() {
    let _serial = SERIAL.lock().await;
    // Tiny socket buffers on both ends and no reading: the kernel holds a few dozen
    // REGISTERs, the connection's write queue 64, and the rest must wait.
    let upstream = Registrar::start(None, Some(4096)).await;
    upstream.reading.send(false).unwrap();
    let addr = upstream.addr;
    let gw = gateway(None, |c| {
        c.reg.upstream = Some(addr.to_string());
        c.sip.send_buffer_bytes = 4096;
    })
    .await;
    let deferred_before = counter(&gw.gateway, "vigil_register_send_deferred_total", &[]).await;
    let failed_before = counter(&gw.gateway, TRANSPORT_FAILURES, &[]).await;
    const N: usize = 600;
    put(&gw.gateway, 0..N, "vigil.test", "tcp").await;

    // Until the queue was full at least once, the test would prove nothing.
    let start = Instant::now();
    loop {
        let deferred = counter(&gw.gateway, "vigil_register_send_deferred_total", &[]).await;
        if deferred > deferred_before {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the write queue never filled: {} REGISTERs read, {:?}, {:?}, conns {}",
            upstream.registers.load(Ordering::Relaxed),
            status(&gw.gateway, 0),
            status(&gw.gateway, N - 1),
            gw.gateway.transports().connection_count()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..N {
        let s = status(&gw.gateway, i);
        assert_eq!(
            s.state,
            DeviceState::Registering,
            "dev-{i} while the upstream does not read: {s:?}"
        );
    }
    upstream.reading.send(true).unwrap();
    wait_all(
        &gw.gateway,
        0..N,
        Duration::from_secs(20),
        "all registered",
        |s| s.state == DeviceState::Registered,
    )
    .await;
    assert_eq!(upstream.registered(), N);
    assert_eq!(
        counter(&gw.gateway, TRANSPORT_FAILURES, &[]).await,
        failed_before,
        "no attempt failed"
    );
    gw.gateway.shutdown().await;
}
