//! The device side of the QUIC wake channel (see [`super::wake`] for the protocol).
//!
//! Used by the simulator's virtual phones and by tests; a real app implements the same few
//! frames. Many clients can share one [`quinn::Endpoint`] (one UDP socket), which is how the
//! simulator and the memory measurement hold thousands of devices in one process.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use quinn::crypto::rustls::QuicClientConfig;
use quinn::{Connection, Endpoint, RecvStream, SendStream, VarInt};

use super::tls::{client_config, Roots};
use super::wake::{transport_config, ALPN, MAGIC, MAX_MESSAGE};
use super::{ClientError, Secret};

/// Errors of the device side.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WakeError {
    /// Could not set up the endpoint or TLS.
    #[error("setup: {0}")]
    Setup(#[from] ClientError),
    /// Connecting failed.
    #[error("connect: {0}")]
    Connect(String),
    /// The server refused the device id or token.
    #[error("device refused")]
    Denied,
    /// The server broke the protocol.
    #[error("protocol violation")]
    Protocol,
    /// The connection is gone.
    #[error("connection closed")]
    Closed,
    /// The server stopped the stream before the acknowledgement arrived (it had already
    /// given up on that wake-up).
    #[error("acknowledgement refused by the server")]
    Refused,
}

/// A received wake-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WakeMessage {
    /// The server's wake id.
    pub id: u64,
    /// The payload (JSON data object).
    pub payload: Bytes,
}

/// A wake-up not yet acknowledged.
#[derive(Debug)]
pub struct PendingWake {
    /// The message.
    pub message: WakeMessage,
    send: SendStream,
}

impl PendingWake {
    /// Acknowledges it to the server and returns once the server has received the ack.
    ///
    /// Writing and finishing the stream only queue the ack locally; it counts as delivered
    /// when the server has acknowledged every byte of the stream (`stopped` yields `None`).
    /// The server stopping the stream (it gave up on this wake) or the connection dying
    /// first (up to the idle timeout when the server went silent) is an error, so a device
    /// never believes an ack arrived that did not.
    pub async fn ack(mut self) -> Result<WakeMessage, WakeError> {
        self.send
            .write_all(&self.message.id.to_be_bytes())
            .await
            .map_err(|_| WakeError::Closed)?;
        self.send.finish().map_err(|_| WakeError::Closed)?;
        match self.send.stopped().await {
            Ok(None) => Ok(self.message),
            Ok(Some(_)) => Err(WakeError::Refused),
            Err(_) => Err(WakeError::Closed),
        }
    }
}

/// One device's connection to the wake server.
#[derive(Debug)]
pub struct WakeClient {
    conn: Connection,
}

/// A client endpoint (one UDP socket) trusting `roots`, usable for many devices.
pub fn client_endpoint(roots: &Roots) -> Result<Endpoint, WakeError> {
    client_endpoint_with(roots, Duration::from_secs(25), Duration::from_secs(90))
}

/// Like [`client_endpoint`] with its own keep-alive interval and idle timeout (the smaller
/// of the two ends' idle timeouts applies to a connection).
pub fn client_endpoint_with(
    roots: &Roots,
    keep_alive: Duration,
    idle_timeout: Duration,
) -> Result<Endpoint, WakeError> {
    let tls = client_config(roots, &[ALPN], None)?;
    let tls = Arc::try_unwrap(tls).unwrap_or_else(|a| (*a).clone());
    let crypto = QuicClientConfig::try_from(tls)
        .map_err(|_| ClientError::Credential("TLS config unusable for QUIC"))?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
    cfg.transport_config(Arc::new(transport_config(keep_alive, idle_timeout)));
    let mut ep =
        Endpoint::client(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).map_err(ClientError::Io)?;
    ep.set_default_client_config(cfg);
    Ok(ep)
}

impl WakeClient {
    /// Connects on `endpoint` to `server` (TLS name `server_name`) and authenticates.
    pub async fn connect_on(
        endpoint: &Endpoint,
        server: SocketAddr,
        server_name: &str,
        device: &str,
        token: &Secret,
    ) -> Result<Self, WakeError> {
        let conn = endpoint
            .connect(server, server_name)
            .map_err(|e| WakeError::Connect(e.to_string()))?
            .await
            .map_err(|e| WakeError::Connect(e.to_string()))?;
        let (mut send, mut recv) = conn.open_bi().await.map_err(|_| WakeError::Closed)?;
        let (d, t) = (device.as_bytes(), token.expose().as_bytes());
        let (Ok(dl), Ok(tl)) = (u16::try_from(d.len()), u16::try_from(t.len())) else {
            return Err(WakeError::Protocol);
        };
        let mut msg = MAGIC.to_vec();
        msg.extend_from_slice(&dl.to_be_bytes());
        msg.extend_from_slice(d);
        msg.extend_from_slice(&tl.to_be_bytes());
        msg.extend_from_slice(t);
        send.write_all(&msg).await.map_err(|_| WakeError::Closed)?;
        send.finish().map_err(|_| WakeError::Closed)?;
        match recv.read_to_end(1).await.as_deref() {
            Ok([0]) => Ok(Self { conn }),
            Ok([1]) | Err(_) => Err(WakeError::Denied),
            Ok(_) => Err(WakeError::Protocol),
        }
    }

    /// Connects with its own endpoint.
    pub async fn connect(
        server: SocketAddr,
        server_name: &str,
        roots: &Roots,
        device: &str,
        token: &Secret,
    ) -> Result<Self, WakeError> {
        let ep = client_endpoint(roots)?;
        Self::connect_on(&ep, server, server_name, device, token).await
    }

    /// Waits for the next wake-up without acknowledging it.
    pub async fn recv(&self) -> Result<PendingWake, WakeError> {
        let (send, mut recv): (SendStream, RecvStream) =
            self.conn.accept_bi().await.map_err(|_| WakeError::Closed)?;
        let msg = recv
            .read_to_end(MAX_MESSAGE)
            .await
            .map_err(|_| WakeError::Protocol)?;
        if msg.len() < 8 {
            return Err(WakeError::Protocol);
        }
        let mut id = [0; 8];
        id.copy_from_slice(&msg[..8]);
        let message = WakeMessage {
            id: u64::from_be_bytes(id),
            payload: Bytes::copy_from_slice(&msg[8..]),
        };
        Ok(PendingWake { message, send })
    }

    /// Waits for the next wake-up and acknowledges it.
    pub async fn next_wake(&self) -> Result<WakeMessage, WakeError> {
        self.recv().await?.ack().await
    }

    /// Closes the connection.
    pub fn close(&self) {
        self.conn.close(VarInt::from_u32(0), b"bye");
    }
}
