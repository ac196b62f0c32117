//! End to end: APNs certificate (mTLS) authentication. The mock APNs speaks token auth only,
//! so this test runs a minimal HTTP/2 server that requires a client certificate from a test
//! CA, as Apple's certificate-auth endpoint does.

// Helpers outside #[test] fns: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use vigil_gateway::push::{ApnsAuth, ApnsClient, ApnsConfig, Roots, Secret};
use vigil_proto::push::payload::build_apns;
use vigil_proto::push::Outcome;
use vigil_tests::push::{apns_token, call, BUNDLE};

struct Pki {
    ca_pem: String,
    server: (CertificateDer<'static>, PrivateKeyDer<'static>),
    client_pem: (String, String),
    roots: rustls::RootCertStore,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let skey = KeyPair::generate().unwrap();
    let scert = CertificateParams::new(vec!["localhost".into()])
        .unwrap()
        .signed_by(&skey, &ca_cert, &ca_key)
        .unwrap();
    let ckey = KeyPair::generate().unwrap();
    let mut cp = CertificateParams::new(vec!["org.vigil.test".into()]).unwrap();
    cp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let ccert = cp.signed_by(&ckey, &ca_cert, &ca_key).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_cert.der().clone()).unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        server: (
            scert.der().clone(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(skey.serialize_der())),
        ),
        client_pem: (ccert.pem(), ckey.serialize_pem()),
        roots,
    }
}

/// Serves one connection per accept: answers every request 200 and records (path,
/// authorization present, apns-topic).
async fn serve(pki: &Pki, seen: Arc<Mutex<Vec<(String, bool, String)>>>) -> std::net::SocketAddr {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(pki.roots.clone()), provider.clone())
            .build()
            .unwrap();
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![pki.server.0.clone()], pki.server.1.clone_key())
        .unwrap();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, seen) = (acceptor.clone(), Arc::clone(&seen));
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                assert!(tls.get_ref().1.peer_certificates().is_some());
                let mut conn = h2::server::handshake(tls).await.unwrap();
                while let Some(Ok((req, mut respond))) = conn.accept().await {
                    let h = req.headers();
                    let topic = h
                        .get("apns-topic")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    seen.lock().unwrap().push((
                        req.uri().path().to_owned(),
                        h.contains_key("authorization"),
                        topic,
                    ));
                    let id = h.get("apns-id").cloned();
                    let mut resp = http::Response::builder().status(200);
                    if let Some(id) = id {
                        resp = resp.header("apns-id", id);
                    }
                    let mut send = respond
                        .send_response(resp.body(()).unwrap(), false)
                        .unwrap();
                    send.send_data(Bytes::new(), true).unwrap();
                }
            });
        }
    });
    addr
}

fn config(pki: &Pki, addr: std::net::SocketAddr, auth: ApnsAuth) -> ApnsConfig {
    let mut cfg = ApnsConfig::new(format!("https://localhost:{}", addr.port()), auth);
    cfg.roots = Roots::Pem(pki.ca_pem.clone());
    cfg.connect_to = Some(addr);
    cfg.pool_size = 1;
    cfg.connect_timeout = Duration::from_secs(5);
    cfg
}

#[tokio::test]
async fn certificate_auth_presents_the_client_certificate() {
    let pki = pki();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let addr = serve(&pki, Arc::clone(&seen)).await;
    let auth = ApnsAuth::Certificate {
        cert_chain_pem: pki.client_pem.0.clone(),
        key_pem: Secret::new(pki.client_pem.1.clone()),
    };
    let client = ApnsClient::connect(config(&pki, addr, auth)).await.unwrap();
    let req = build_apns(&call("c"), BUNDLE, Duration::from_secs(30)).unwrap();
    let out = client
        .send(
            &apns_token(1),
            &req,
            "00000000-0000-4000-8000-000000000001",
            Instant::now() + Duration::from_secs(5),
        )
        .await;
    assert_eq!(out, Outcome::Accepted);
    let got = seen.lock().unwrap().clone();
    assert_eq!(
        got,
        vec![(
            format!("/3/device/{}", apns_token(1).expose()),
            false,
            format!("{BUNDLE}.voip")
        )]
    );
    assert_eq!(client.tokens_minted(), 0);

    // Without the certificate the server refuses the TLS session (in TLS 1.3 after the
    // client's Finished): nothing reaches it, and the push is left to retry.
    let key = vigil_sim::mock::ApnsSigningKey::generate("TEAM000001", "KEY0000001").unwrap();
    let token_auth = ApnsAuth::Token {
        p8_pem: Secret::new(key.p8_pem()),
        key_id: "KEY0000001".into(),
        team_id: "TEAM000001".into(),
    };
    let c2 = ApnsClient::new(config(&pki, addr, token_auth)).unwrap();
    let out = c2
        .send(
            &apns_token(2),
            &req,
            "00000000-0000-4000-8000-000000000002",
            Instant::now() + Duration::from_secs(2),
        )
        .await;
    assert_eq!(out, Outcome::TRANSPORT);
    assert_eq!(seen.lock().unwrap().len(), 1);
}
