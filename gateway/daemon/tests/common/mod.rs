//! Helpers for the socket-level tests: a gateway on ephemeral loopback ports and small SIP
//! clients over UDP, TCP and TLS that frame with the same `vigil_proto::framing` code.

#![allow(dead_code)] // Each test binary uses a different subset.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use vigil_gateway::config::Config;
use vigil_gateway::Gateway;
use vigil_proto::framing::{FramerConfig, StreamFramer, StreamItem};
use vigil_proto::msg::{HeaderName, Message};
use vigil_proto::txn::Transport;

/// How long a test waits for any single network event before failing.
pub const WAIT: Duration = Duration::from_secs(5);

/// A running gateway and the temporary data directory it uses.
pub struct TestGateway {
    pub gateway: Gateway,
    pub dir: tempfile::TempDir,
}

impl TestGateway {
    pub fn addr(&self, t: Transport) -> SocketAddr {
        self.gateway
            .local_addr(t)
            .expect("listener of this transport")
    }
}

/// Starts a gateway on `udp`, `tcp` and `tls` listeners on 127.0.0.1 port 0, after letting
/// `tweak` change the configuration.
pub async fn start(tweak: impl FnOnce(&mut Config)) -> TestGateway {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config {
        data_dir: dir.path().to_owned(),
        ..Config::default()
    };
    config.sip.listen = ["udp:127.0.0.1:0", "tcp:127.0.0.1:0", "tls:127.0.0.1:0"]
        .iter()
        .map(|s| s.parse().expect("valid spec"))
        .collect();
    config.sip.shutdown_grace_secs = 2;
    // The intake API runs by default; an ephemeral port lets tests run side by side.
    config.api.listen = "127.0.0.1:0".parse().expect("valid address");
    tweak(&mut config);
    let gateway = Gateway::start(&config).await.expect("gateway starts");
    TestGateway { gateway, dir }
}

/// An OPTIONS request as a client at `local` would send it over `transport`.
pub fn options(
    transport: &str,
    local: SocketAddr,
    branch: &str,
    call_id: &str,
    cseq: u32,
) -> String {
    format!(
        "OPTIONS sip:vigil@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/{transport} {local};branch={branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: \"Alice\" <sip:alice@example.com>;tag=fromtag{cseq}\r\n\
         To: <sip:vigil@127.0.0.1>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} OPTIONS\r\n\
         Contact: <sip:alice@{local}>\r\n\
         Accept: application/sdp\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// Checks the RFC 3261 §8.2.6 echo of `request` in `response` and returns the To-tag.
pub fn assert_echoes(request: &str, response: &Message) -> String {
    let req = Message::parse(Bytes::from(request.to_owned())).expect("test request parses");
    let lines = |m: &Message| -> Vec<String> {
        m.header_values(HeaderName::Via)
            .map(str::to_owned)
            .collect()
    };
    let (req_vias, resp_vias) = (lines(&req), lines(response));
    assert_eq!(resp_vias.len(), req_vias.len(), "every Via copied");
    assert_eq!(resp_vias[1..], req_vias[1..], "lower Vias copied verbatim");
    let (rv, qv) = (
        response.top_via().expect("via"),
        req.top_via().expect("via"),
    );
    assert_eq!(rv.branch(), qv.branch());
    assert_eq!(rv.sent_by(), qv.sent_by());
    assert_eq!(rv.transport(), qv.transport());
    if qv.rport().is_some() {
        // RFC 3581: the gateway reports the source port it saw (the tests' sent-by port).
        assert_eq!(rv.rport(), Some(qv.port()), "rport filled in");
        assert_eq!(rv.received(), Some("127.0.0.1"));
    }
    assert_eq!(
        response.call_id().expect("Call-ID"),
        req.call_id().expect("Call-ID")
    );
    assert_eq!(response.cseq().expect("CSeq"), req.cseq().expect("CSeq"));
    assert_eq!(
        response.header(HeaderName::From),
        req.header(HeaderName::From),
        "From copied"
    );
    let to = response.to_hdr().expect("To");
    assert_eq!(
        to.uri().expect("uri").to_string(),
        req.to_hdr().expect("To").uri().expect("uri").to_string()
    );
    let tag = to.tag().expect("the UAS adds a To-tag");
    assert!(!tag.is_empty());
    tag.to_owned()
}

/// A UDP client socket on loopback.
pub async fn udp_client() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind UDP client")
}

/// Receives one datagram within [`WAIT`] and parses it.
pub async fn recv_udp(sock: &UdpSocket) -> Message {
    let mut buf = vec![0u8; 65_535];
    let (n, _) = timeout(WAIT, sock.recv_from(&mut buf))
        .await
        .expect("a UDP response in time")
        .expect("recv");
    Message::parse(Bytes::copy_from_slice(&buf[..n])).expect("response parses")
}

/// Asserts no datagram arrives within `wait`.
pub async fn assert_no_udp(sock: &UdpSocket, wait: Duration) {
    let mut buf = vec![0u8; 65_535];
    if let Ok(r) = timeout(wait, sock.recv_from(&mut buf)).await {
        let (n, _) = r.expect("recv");
        panic!(
            "unexpected datagram: {:?}",
            String::from_utf8_lossy(&buf[..n])
        );
    }
}

/// A stream client (TCP or TLS) that frames what it reads with the gateway's own framer.
pub struct StreamClient<S> {
    pub stream: S,
    framer: StreamFramer,
}

impl<S: AsyncRead + AsyncWrite + Unpin> StreamClient<S> {
    pub fn new(stream: S) -> Self {
        Self {
            stream,
            framer: StreamFramer::new(FramerConfig::default()),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
        self.stream.flush().await.expect("flush");
    }

    /// The next framed item, or `None` if the gateway closed the connection.
    pub async fn next_item(&mut self) -> Option<StreamItem> {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(item) = self.framer.poll_item().expect("gateway frames correctly") {
                return Some(item);
            }
            if let Some(pong) = self.framer.poll_lone_crlf() {
                return Some(pong);
            }
            // A reset counts as a close.
            let n: usize = timeout(WAIT, self.stream.read(&mut buf))
                .await
                .expect("data in time")
                .unwrap_or_default();
            if n == 0 {
                return None;
            }
            self.framer.handle_bytes(&buf[..n]).expect("buffer");
        }
    }

    /// The next message, parsed.
    pub async fn recv(&mut self) -> Message {
        match self.next_item().await {
            Some(StreamItem::Message(b)) => Message::parse(b).expect("response parses"),
            other => panic!("expected a message, got {other:?}"),
        }
    }

    /// Asserts the gateway closes the connection within [`WAIT`] (reading past anything it
    /// still sends).
    pub async fn assert_closed(&mut self) {
        let mut buf = [0u8; 4096];
        loop {
            match timeout(WAIT, self.stream.read(&mut buf)).await {
                Err(_) => panic!("connection still open"),
                Ok(Ok(0)) | Ok(Err(_)) => return,
                Ok(Ok(_)) => {}
            }
        }
    }
}

pub async fn tcp_client(addr: SocketAddr) -> StreamClient<TcpStream> {
    StreamClient::new(TcpStream::connect(addr).await.expect("TCP connect"))
}

/// A TLS client that trusts only the gateway's (development) certificate and checks the
/// name `localhost` against it.
pub async fn tls_client(gw: &TestGateway) -> StreamClient<TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in gw.gateway.tls_certificates().expect("TLS listener") {
        roots.add(cert.clone()).expect("trust the dev cert");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(gw.addr(Transport::Tls))
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let tls = timeout(
        WAIT,
        TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .expect("handshake in time")
    .expect("handshake verifies the dev cert");
    StreamClient::new(tls)
}

/// An HTTPS client for the intake API that trusts the gateway's (development) certificate.
#[allow(clippy::unwrap_used)] // Test set-up: a failure here is the test's failure.
pub fn api_client(gw: &Gateway) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(gw.tls_certificates().unwrap()[0].clone())
        .unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(cfg)
        .build()
        .unwrap()
}
