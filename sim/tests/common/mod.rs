//! Test client for the mocks: a plain `h2` client over rustls that trusts only the test CA,
//! so every test goes through real TLS and HTTP/2 framing.
#![allow(dead_code)] // each test binary uses a different subset

pub mod apns;

use bytes::Bytes;
use h2::client::SendRequest;
use http::{HeaderMap, Request, StatusCode};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use vigil_sim::mock::TestCa;

/// A device token of 64 hex digits, distinct per `n`.
pub fn device_token(n: u32) -> String {
    format!("{n:08x}{}", "ab".repeat(28))
}

pub struct Client {
    pub send: SendRequest<Bytes>,
    pub conn: JoinHandle<Result<(), h2::Error>>,
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    /// APNs error reason.
    pub fn reason(&self) -> String {
        self.json()["reason"].as_str().expect("a reason").to_owned()
    }
}

pub async fn connect_with(addr: SocketAddr, config: rustls::ClientConfig) -> Client {
    let tcp = TcpStream::connect(addr).await.expect("connect to the mock");
    let tls = TlsConnector::from(Arc::new(config))
        .connect("localhost".try_into().expect("a valid name"), tcp)
        .await
        .expect("TLS handshake with the test CA");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (send, conn) = h2::client::handshake(tls).await.expect("h2 handshake");
    Client {
        send,
        conn: tokio::spawn(conn),
    }
}

pub async fn connect(addr: SocketAddr, ca: &TestCa) -> Client {
    connect_with(addr, ca.client_config().expect("client config")).await
}

impl Client {
    /// Sends one request and reads the whole answer.
    pub async fn request(&mut self, req: Request<()>, body: &[u8]) -> Result<Answer, h2::Error> {
        request(&self.send, req, body).await
    }
}

/// Sends one request on a (shared) connection and reads the whole answer.
pub async fn request(
    send: &SendRequest<Bytes>,
    req: Request<()>,
    body: &[u8],
) -> Result<Answer, h2::Error> {
    {
        let mut send = send.clone().ready().await?;
        let (response, mut stream) = send.send_request(req, body.is_empty())?;
        if !body.is_empty() {
            stream.send_data(Bytes::copy_from_slice(body), true)?;
        }
        let response = response.await?;
        let (parts, mut recv) = response.into_parts();
        let mut body = Vec::new();
        while let Some(chunk) = recv.data().await {
            let chunk = chunk?;
            let _ = recv.flow_control().release_capacity(chunk.len());
            body.extend_from_slice(&chunk);
        }
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body: body.into(),
        })
    }
}
