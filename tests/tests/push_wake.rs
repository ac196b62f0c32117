//! End to end: the QUIC wake channel: authentication and acknowledged delivery through the
//! dispatch pipeline. (Memory per idle connection: `push_wake_memory.rs`.)

// Helpers outside #[test] fns: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use vigil_gateway::push::wake_client::{client_endpoint, WakeError};
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
