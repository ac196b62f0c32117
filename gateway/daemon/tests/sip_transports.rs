//! The gateway on real loopback sockets: OPTIONS over UDP, TCP and TLS, retransmissions,
//! malformed input, stream limits, keep-alives, connection reuse and graceful shutdown.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{sleep, timeout, Instant};
use vigil_proto::framing::StreamItem;
use vigil_proto::msg::HeaderName;
use vigil_proto::txn::{Peer, Transport};

#[tokio::test]
async fn options_over_udp_gets_200() {
    let gw = start(|_| {}).await;
    let sock = udp_client().await;
    let req = options(
        "UDP",
        sock.local_addr().unwrap(),
        "z9hG4bKudp1",
        "udp-1@test",
        1,
    );
    sock.send_to(req.as_bytes(), gw.addr(Transport::Udp))
        .await
        .unwrap();
    let resp = recv_udp(&sock).await;
    assert_eq!(resp.status(), Some(200));
    assert_echoes(&req, &resp);
    assert!(resp.header(HeaderName::Allow).unwrap().contains("OPTIONS"));
    assert!(resp.header(HeaderName::Accept).is_some());
    assert!(resp.header(HeaderName::Supported).is_some());
    assert_eq!(resp.content_length(), Some(0));
    gw.gateway.shutdown().await;
}

#[tokio::test]
async fn options_over_tcp_gets_200_on_the_same_connection() {
    let gw = start(|_| {}).await;
    let mut c = tcp_client(gw.addr(Transport::Tcp)).await;
    let local = c.stream.local_addr().unwrap();
    for cseq in 1..=3 {
        let req = options(
            "TCP",
            local,
            &format!("z9hG4bKtcp{cseq}"),
            "tcp-1@test",
            cseq,
        );
        c.send(req.as_bytes()).await;
        let resp = c.recv().await;
        assert_eq!(resp.status(), Some(200));
        assert_echoes(&req, &resp);
    }
    assert_eq!(gw.gateway.transports().connection_count(), 1);
    gw.gateway.shutdown().await;
}

#[tokio::test]
async fn options_over_tls_with_the_dev_certificate() {
    let gw = start(|_| {}).await;
    let mut c = tls_client(&gw).await;
    let local = c.stream.get_ref().0.local_addr().unwrap();
    let req = options("TLS", local, "z9hG4bKtls1", "tls-1@test", 1);
    c.send(req.as_bytes()).await;
    let resp = c.recv().await;
    assert_eq!(resp.status(), Some(200));
    assert_echoes(&req, &resp);
    // The certificate is stored so that the next start presents the same one.
    assert!(gw.dir.path().join("tls/dev-cert.pem").exists());
    gw.gateway.shutdown().await;
}

#[tokio::test]
async fn udp_retransmission_gets_the_same_response() {
    let gw = start(|_| {}).await;
    let sock = udp_client().await;
    let req = options(
        "UDP",
        sock.local_addr().unwrap(),
        "z9hG4bKretx",
        "retx@test",
        5,
    );
    sock.send_to(req.as_bytes(), gw.addr(Transport::Udp))
        .await
        .unwrap();
    let first = recv_udp(&sock).await;
    sock.send_to(req.as_bytes(), gw.addr(Transport::Udp))
        .await
        .unwrap();
    let second = recv_udp(&sock).await;
    assert_eq!(
        first.as_bytes(),
        second.as_bytes(),
        "the server transaction resends its response"
    );
    // A new transaction (new branch) gets its own To-tag.
    let other = options(
        "UDP",
        sock.local_addr().unwrap(),
        "z9hG4bKretx2",
        "retx@test",
        6,
    );
    sock.send_to(other.as_bytes(), gw.addr(Transport::Udp))
        .await
        .unwrap();
    let third = recv_udp(&sock).await;
    assert_eq!(third.cseq().unwrap().seq, 6);
    assert_ne!(third.to_hdr().unwrap().tag(), first.to_hdr().unwrap().tag());
    gw.gateway.shutdown().await;
}

#[tokio::test]
async fn garbage_is_dropped_and_malformed_requests_get_400() {
    let gw = start(|_| {}).await;
    let sock = udp_client().await;
    let to = gw.addr(Transport::Udp);
    for junk in [
        &b"\x00\x01\x00\x00\x21\x12\xa4\x42garbage"[..],
        b"hello\r\n\r\n",
        b"SIP/2.0 200 OK\r\n\r\n",
        b"\r\n\r\n",
        &[0xffu8; 1500][..],
    ] {
        sock.send_to(junk, to).await.unwrap();
    }
    assert_no_udp(&sock, Duration::from_millis(300)).await;

    // A request that parses but has a broken CSeq.
    let local = sock.local_addr().unwrap();
    let bad = options("UDP", local, "z9hG4bKbad", "bad@test", 1)
        .replace("CSeq: 1 OPTIONS", "CSeq: one OPTIONS");
    sock.send_to(bad.as_bytes(), to).await.unwrap();
    let resp = recv_udp(&sock).await;
    assert_eq!(resp.status(), Some(400));
    let warning = resp
        .header(HeaderName::Warning)
        .expect("Warning names the problem");
    assert!(warning.starts_with("399 vigil "), "{warning}");
    assert!(warning.to_ascii_lowercase().contains("cseq"), "{warning}");
    assert_eq!(resp.call_id().unwrap(), "bad@test");

    // RFC 4475 "ncl": a negative Content-Length on UDP still gets a 400.
    let ncl = options("UDP", local, "z9hG4bKncl", "ncl@test", 2)
        .replace("Content-Length: 0", "Content-Length: -999");
    sock.send_to(ncl.as_bytes(), to).await.unwrap();
    let resp = recv_udp(&sock).await;
    assert_eq!(resp.status(), Some(400));
    assert_eq!(resp.call_id().unwrap(), "ncl@test");

    // The gateway still serves.
    let ok = options("UDP", local, "z9hG4bKok", "ok@test", 3);
    sock.send_to(ok.as_bytes(), to).await.unwrap();
    assert_eq!(recv_udp(&sock).await.status(), Some(200));
    gw.gateway.shutdown().await;
}

#[tokio::test]
async fn other_methods_get_501_and_ack_is_swallowed() {
    let gw = start(|_| {}).await;
    let sock = udp_client().await;
    let local = sock.local_addr().unwrap();
    let to = gw.addr(Transport::Udp);
    let msg = options("UDP", local, "z9hG4bKmsg", "msg@test", 1).replace("OPTIONS", "MESSAGE");
    sock.send_to(msg.as_bytes(), to).await.unwrap();
    let resp = recv_udp(&sock).await;
    assert_eq!(resp.status(), Some(501));
    assert_echoes(&msg, &resp);
    let ack = options("UDP", local, "z9hG4bKack", "ack@test", 1).replace("OPTIONS", "ACK");
    sock.send_to(ack.as_bytes(), to).await.unwrap();
    assert_no_udp(&sock, Duration::from_millis(300)).await;
    gw.gateway.shutdown().await;
}

#[tokio::test]
async fn oversized_stream_message_closes_the_connection() {
    let gw = start(|c| c.sip.max_message_size = 2048).await;
    // Declared too large: closed as soon as the header section is in.
    let mut c = tcp_client(gw.addr(Transport::Tcp)).await;
    let local = c.stream.local_addr().unwrap();
    let req = options("TCP", local, "z9hG4bKbig", "big@test", 1)
        .replace("Content-Length: 0", "Content-Length: 100000");
    c.send(req.as_bytes()).await;
    c.assert_closed().await;
    // A header section that never ends: closed once it passes the limit.
    let mut c = tcp_client(gw.addr(Transport::Tcp)).await;
    c.send(b"OPTIONS sip:vigil@127.0.0.1 SIP/2.0\r\n").await;
    let filler = vec![b'X'; 1024];
    for _ in 0..3 {
        if c.stream.write_all(&filler).await.is_err() {
            break;
        }
    }
    c.assert_closed().await;
    // Missing Content-Length on a stream also closes it.
    let mut c = tcp_client(gw.addr(Transport::Tcp)).await;
    c.send(b"OPTIONS sip:vigil@127.0.0.1 SIP/2.0\r\nCSeq: 1 OPTIONS\r\n\r\n")
        .await;
    c.assert_closed().await;
    gw.gateway.shutdown().await;
}

#[tokio::test]
async fn connection_limit_is_enforced() {
    let gw = start(|c| c.sip.max_connections = 2).await;
    let addr = gw.addr(Transport::Tcp);
    let mut a = tcp_client(addr).await;
    let mut b = tcp_client(addr).await;
    // A ping/pong round trip proves each connection was accepted and is being served.
    for c in [&mut a, &mut b] {
        c.send(b"\r\n\r\n").await;
        assert_eq!(c.next_item().await, Some(StreamItem::Pong));
    }
    let mut third = tcp_client(addr).await;
    third.assert_closed().await;
    assert_eq!(gw.gateway.transports().refused_connections(), 1);
    assert_eq!(gw.gateway.transports().connection_count(), 2);
    // Freeing a slot lets the next client in.
    drop(a);
    let deadline = Instant::now() + WAIT;
    while gw.gateway.transports().connection_count() > 1 {
        assert!(Instant::now() < deadline, "closed connection not released");
        sleep(Duration::from_millis(10)).await;
    }
    let mut d = tcp_client(addr).await;
    d.send(b"\r\n\r\n").await;
    assert_eq!(d.next_item().await, Some(StreamItem::Pong));
    gw.gateway.shutdown().await;
}

#[tokio::test]
async fn crlfcrlf_ping_gets_crlf_pong() {
    let gw = start(|_| {}).await;
    let mut tcp = TcpStream::connect(gw.addr(Transport::Tcp)).await.unwrap();
    tcp.write_all(b"\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 16];
    let n = timeout(WAIT, tcp.read(&mut buf)).await.unwrap().unwrap();
    assert_eq!(&buf[..n], b"\r\n", "exactly one CRLF");
    // Over TLS too.
    let mut c = tls_client(&gw).await;
    c.send(b"\r\n\r\n").await;
    assert_eq!(c.next_item().await, Some(StreamItem::Pong));
    gw.gateway.shutdown().await;
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let gw = start(|c| c.sip.idle_timeout_secs = 1).await;
    let mut c = tcp_client(gw.addr(Transport::Tcp)).await;
    let started = Instant::now();
    c.assert_closed().await;
    assert!(started.elapsed() >= Duration::from_millis(900));
    gw.gateway.shutdown().await;
}

#[tokio::test]
async fn outgoing_messages_reuse_inbound_connections_and_dial_new_ones() {
    let gw = start(|_| {}).await;
    // Reuse: the gateway reaches a client over the connection the client opened.
    let mut c = tcp_client(gw.addr(Transport::Tcp)).await;
    let local = c.stream.local_addr().unwrap();
    c.send(b"\r\n\r\n").await;
    assert_eq!(c.next_item().await, Some(StreamItem::Pong));
    let probe = options("TCP", gw.addr(Transport::Tcp), "z9hG4bKout1", "out@test", 1);
    gw.gateway
        .transports()
        .send(Peer::tcp(local), Bytes::from(probe.clone()))
        .unwrap();
    let got = c.recv().await;
    assert_eq!(got.call_id().unwrap(), "out@test");
    assert_eq!(gw.gateway.transports().connection_count(), 1);

    // Dial: no connection to this listener yet, so the gateway opens one, then reuses it.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = Peer::tcp(listener.local_addr().unwrap());
    gw.gateway
        .transports()
        .send(target, Bytes::from(probe.clone()))
        .unwrap();
    let (stream, _) = timeout(WAIT, listener.accept()).await.unwrap().unwrap();
    let mut server_side = common::StreamClient::new(stream);
    assert_eq!(server_side.recv().await.call_id().unwrap(), "out@test");
    gw.gateway
        .transports()
        .send(target, Bytes::from(probe))
        .unwrap();
    assert_eq!(server_side.recv().await.call_id().unwrap(), "out@test");
    assert!(
        timeout(Duration::from_millis(200), listener.accept())
            .await
            .is_err(),
        "second message must reuse the first connection"
    );
    gw.gateway.shutdown().await;
}

#[tokio::test]
async fn graceful_shutdown_completes_with_open_connections() {
    let gw = start(|c| c.sip.shutdown_grace_secs = 3).await;
    let mut tcp = tcp_client(gw.addr(Transport::Tcp)).await;
    let mut tls = tls_client(&gw).await;
    let local = tcp.stream.local_addr().unwrap();
    // One request answered before shutdown proves the connections are live.
    let req = options("TCP", local, "z9hG4bKsd", "sd@test", 1);
    tcp.send(req.as_bytes()).await;
    assert_eq!(tcp.recv().await.status(), Some(200));
    tls.send(b"\r\n\r\n").await;
    assert_eq!(tls.next_item().await, Some(StreamItem::Pong));
    let udp_addr = gw.addr(Transport::Udp);
    let tcp_addr = gw.addr(Transport::Tcp);

    let started = Instant::now();
    let report = timeout(Duration::from_secs(10), gw.gateway.shutdown())
        .await
        .expect("shutdown finishes");
    assert!(
        report.graceful,
        "idle connections close within the grace period"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    tcp.assert_closed().await;
    tls.assert_closed().await;
    // Listeners are gone.
    assert!(TcpStream::connect(tcp_addr).await.is_err());
    let _ = udp_addr;
}

#[tokio::test]
async fn stalled_tls_handshake_times_out_without_blocking_others() {
    let gw = start(|c| c.sip.tls_handshake_timeout_secs = 1).await;
    // A client that connects to the TLS port and never says hello.
    let mut stalled = TcpStream::connect(gw.addr(Transport::Tls)).await.unwrap();
    // Meanwhile a real client gets through: the handshake is not in the accept loop.
    let mut c = tls_client(&gw).await;
    let local = c.stream.get_ref().0.local_addr().unwrap();
    let req = options("TLS", local, "z9hG4bKstall", "stall@test", 1);
    c.send(req.as_bytes()).await;
    assert_eq!(c.recv().await.status(), Some(200));
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let n = timeout(WAIT, stalled.read(&mut buf))
        .await
        .expect("closed within the handshake timeout")
        .unwrap_or(0);
    assert_eq!(n, 0, "no data, just a close");
    assert!(started.elapsed() < Duration::from_secs(2));
    gw.gateway.shutdown().await;
}

#[tokio::test]
async fn outgoing_tls_verifies_the_peer_by_ip_address() {
    let gw = start(|_| {}).await;
    // A TLS server presenting the gateway's development certificate (valid for 127.0.0.1),
    // which a development gateway trusts.
    let tls_dir = gw.dir.path().join("tls");
    let certs: Vec<_> =
        rustls_pemfile::certs(&mut &std::fs::read(tls_dir.join("dev-cert.pem")).unwrap()[..])
            .collect::<Result<_, _>>()
            .unwrap();
    let key =
        rustls_pemfile::private_key(&mut &std::fs::read(tls_dir.join("dev-key.pem")).unwrap()[..])
            .unwrap()
            .unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = Peer::tls(listener.local_addr().unwrap());

    let probe = options(
        "TLS",
        gw.addr(Transport::Tls),
        "z9hG4bKtlsout",
        "tlsout@test",
        1,
    );
    gw.gateway
        .transports()
        .send(target, Bytes::from(probe))
        .unwrap();
    let (tcp, _) = timeout(WAIT, listener.accept()).await.unwrap().unwrap();
    let stream = timeout(WAIT, acceptor.accept(tcp)).await.unwrap().unwrap();
    let mut server_side = common::StreamClient::new(stream);
    assert_eq!(server_side.recv().await.call_id().unwrap(), "tlsout@test");
    gw.gateway.shutdown().await;
}

#[tokio::test]
async fn failed_dial_releases_its_slot_and_route() {
    let gw = start(|_| {}).await;
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let probe = options(
        "TCP",
        gw.addr(Transport::Tcp),
        "z9hG4bKdead",
        "dead@test",
        1,
    );
    let transports = gw.gateway.transports();
    transports
        .send(Peer::tcp(closed), Bytes::from(probe.clone()))
        .expect("queued while dialling");
    let deadline = Instant::now() + WAIT;
    while transports.connection_count() > 0 {
        assert!(Instant::now() < deadline, "slot not released");
        sleep(Duration::from_millis(10)).await;
    }
    // The route is gone too: the next send dials again instead of queueing on a dead entry.
    let l = TcpListener::bind(closed).await.unwrap();
    transports
        .send(Peer::tcp(closed), Bytes::from(probe))
        .unwrap();
    let (stream, _) = timeout(WAIT, l.accept()).await.unwrap().unwrap();
    let mut server_side = common::StreamClient::new(stream);
    assert_eq!(server_side.recv().await.call_id().unwrap(), "dead@test");
    gw.gateway.shutdown().await;
}
