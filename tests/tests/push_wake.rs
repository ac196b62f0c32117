//! End to end: the QUIC wake channel: authentication and acknowledged delivery through the
//! dispatch pipeline. (Memory per idle connection: `push_wake_memory.rs`.)

// Helpers outside #[test] fns: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use vigil_gateway::push::wake_client::{client_endpoint, client_endpoint_with, WakeError};
use vigil_gateway::push::{
    PushClient, PushDispatcher, Roots, Secret, WakeClient, WakeServer, WakeServerConfig,
};
use vigil_proto::push::{
    CredentialId, DeviceToken, DispatchConfig, FailReason, PushEvent, PushRequest, Target,
};
use vigil_tests::push::call;

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

#[tokio::test]
async fn wake_is_delivered_and_acknowledged() {
    let (srv, pem) = server();
    srv.register(&dev("phone-1"), &Secret::new("s3cret"));
    let addr = srv.local_addr().unwrap();
    let client = WakeClient::connect(
        addr,
        "localhost",
        &Roots::Pem(pem.clone()),
        "phone-1",
        &Secret::new("s3cret"),
    )
    .await
    .unwrap();
    // Authentication with a wrong token or unknown device is refused.
    let ep = client_endpoint(&Roots::Pem(pem)).unwrap();
    assert!(matches!(
        WakeClient::connect_on(&ep, addr, "localhost", "phone-1", &Secret::new("guess")).await,
        Err(WakeError::Denied)
    ));
    assert!(matches!(
        WakeClient::connect_on(&ep, addr, "localhost", "phone-9", &Secret::new("s3cret")).await,
        Err(WakeError::Denied)
    ));
    assert_eq!(srv.connected(), 1);

    let cred = CredentialId(9);
    let (h, mut events) = PushDispatcher::start(
        DispatchConfig::default(),
        5,
        HashMap::from([(cred, PushClient::Wake(Arc::clone(&srv)))]),
        16,
    );
    let phone = tokio::spawn(async move {
        let m = client.next_wake().await.unwrap();
        (m, client)
    });
    let p = h
        .submit(PushRequest {
            credential: cred,
            target: Target::Wake {
                device: dev("phone-1"),
            },
            notice: call("wake-1"),
            deadline: Instant::now() + Duration::from_secs(10),
        })
        .unwrap();
    let e = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e, PushEvent::Delivered { id: p.id });
    let (m, client) = phone.await.unwrap();
    let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
    assert_eq!(v["call_ref"], "wake-1");
    assert_eq!(v["type"], "incoming-call");

    // A device that receives but never acknowledges: the push fails at its deadline.
    let phone = tokio::spawn(async move {
        let pending = client.recv().await;
        // Hold the unacknowledged wake past the deadline (dropping it would finish the stream).
        tokio::time::sleep(Duration::from_secs(2)).await;
        pending.map(|p| p.message)
    });
    let q = h
        .submit(PushRequest {
            credential: cred,
            target: Target::Wake {
                device: dev("phone-1"),
            },
            notice: call("wake-2"),
            deadline: Instant::now() + Duration::from_millis(500),
        })
        .unwrap();
    let e = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        e,
        PushEvent::Failed {
            id: q.id,
            reason: FailReason::DeadlineExceeded
        }
    );
    assert!(
        phone.await.unwrap().is_ok(),
        "the message did arrive, only the ack is missing"
    );

    // A device that is not connected.
    let r = h
        .submit(PushRequest {
            credential: cred,
            target: Target::Wake {
                device: dev("phone-2"),
            },
            notice: call("wake-3"),
            deadline: Instant::now() + Duration::from_secs(5),
        })
        .unwrap();
    let e = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        e,
        PushEvent::Failed {
            id: r.id,
            reason: FailReason::NotConnected
        }
    );
    h.shutdown();
    srv.close();
}

/// Waits until the server tracks `device`'s connection (it does so only after the device
/// has read the server's acceptance).
async fn connected(srv: &WakeServer, device: &str) {
    let t0 = Instant::now();
    while !srv.is_connected(&dev(device)) {
        assert!(t0.elapsed() < Duration::from_secs(5), "{device} connected");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A UDP relay between a device and the wake server that can be cut: after the cut it drops
/// every datagram in both directions, like a phone whose network vanished.
async fn relay(server: std::net::SocketAddr) -> (std::net::SocketAddr, Arc<AtomicBool>) {
    let sock = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = sock.local_addr().unwrap();
    let cut = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&cut);
    tokio::spawn(async move {
        let mut device = None;
        let mut buf = vec![0u8; 65_536];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            if flag.load(Ordering::SeqCst) {
                continue;
            }
            let to = if from == server {
                match device {
                    Some(d) => d,
                    None => continue,
                }
            } else {
                device = Some(from);
                server
            };
            let _ = sock.send_to(&buf[..n], to).await;
        }
    });
    (addr, cut)
}

#[tokio::test]
async fn ack_reports_an_error_when_it_cannot_be_delivered() {
    let (srv, pem) = server();
    srv.register(&dev("phone-1"), &Secret::new("s3cret"));
    let (via, cut) = relay(srv.local_addr().unwrap()).await;
    // A short idle timeout, so a connection whose peer went silent is declared dead in a
    // second rather than the default 90 s.
    let ep = client_endpoint_with(
        &Roots::Pem(pem),
        Duration::from_millis(200),
        Duration::from_secs(1),
    )
    .unwrap();
    let client = WakeClient::connect_on(&ep, via, "localhost", "phone-1", &Secret::new("s3cret"))
        .await
        .unwrap();
    connected(&srv, "phone-1").await;
    let waker = {
        let srv = Arc::clone(&srv);
        tokio::spawn(async move {
            srv.wake(
                &dev("phone-1"),
                b"{}",
                Instant::now() + Duration::from_secs(5),
            )
            .await
        })
    };
    let pending = tokio::time::timeout(Duration::from_secs(5), client.recv())
        .await
        .unwrap()
        .unwrap();
    // The network goes away between receiving the wake and acknowledging it: writing the
    // ack succeeds locally, but it never reaches the server.
    cut.store(true, Ordering::SeqCst);
    let t0 = Instant::now();
    let ack = tokio::time::timeout(Duration::from_secs(10), pending.ack())
        .await
        .expect("ack resolves once the connection times out");
    assert!(
        matches!(ack, Err(WakeError::Closed)),
        "an undelivered ack is an error, got {ack:?}"
    );
    assert!(
        t0.elapsed() >= Duration::from_millis(500),
        "the error comes from the idle timeout, not from a local write failure"
    );
    // The server never saw the ack either.
    let outcome = waker.await.unwrap();
    assert_ne!(outcome, vigil_proto::push::Outcome::Delivered);
    srv.close();
}

#[tokio::test]
async fn ack_returns_after_the_server_received_it() {
    let (srv, pem) = server();
    srv.register(&dev("phone-1"), &Secret::new("s3cret"));
    let addr = srv.local_addr().unwrap();
    let client = WakeClient::connect(
        addr,
        "localhost",
        &Roots::Pem(pem),
        "phone-1",
        &Secret::new("s3cret"),
    )
    .await
    .unwrap();
    connected(&srv, "phone-1").await;
    let waker = {
        let srv = Arc::clone(&srv);
        tokio::spawn(async move {
            srv.wake(
                &dev("phone-1"),
                b"{\"x\":1}",
                Instant::now() + Duration::from_secs(5),
            )
            .await
        })
    };
    let pending = client.recv().await.unwrap();
    let m = pending.ack().await.unwrap();
    assert_eq!(&m.payload[..], b"{\"x\":1}");
    // The ack was acknowledged at the QUIC level, so the server's wake completes as
    // delivered.
    let outcome = tokio::time::timeout(Duration::from_secs(5), waker)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(outcome, vigil_proto::push::Outcome::Delivered);
    srv.close();
}
