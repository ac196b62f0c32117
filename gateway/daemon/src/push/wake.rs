//! The QUIC wake channel, server side: devices without APNs/FCM (or on networks that block
//! them) keep one QUIC connection to the gateway and are woken over it.
//!
//! Wire protocol (ALPN `vigil-wake/1`), all integers big-endian:
//! - The device opens the first bidirectional stream and sends `"VW1"`, `u16` length + device
//!   id, `u16` length + device token, then finishes the stream. The server answers one byte
//!   (`0` accepted, `1` refused) and, if refused, closes the connection with code 1.
//! - To wake a device the server opens a bidirectional stream and sends `u64` wake id +
//!   payload, then finishes. The device answers with the same `u64` and finishes: that is the
//!   acknowledgement, reported as [`Outcome::Delivered`].
//!
//! Idle connections are the common case (millions of phones, few wake-ups), so the transport
//! is tuned for memory: small flow-control windows (a wake message is under 5 KiB), few
//! concurrent streams, no datagrams, and a keep-alive just under common NAT timeouts. Device
//! tokens are stored as SHA-256 digests and never logged.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quinn::crypto::rustls::QuicServerConfig;
use quinn::{Connection, Endpoint, IdleTimeout, TransportConfig, VarInt};
use ring::digest::{digest, SHA256};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use vigil_proto::push::{DeviceToken, FailReason, Outcome};

use super::{ClientError, Secret};

/// ALPN of the wake protocol.
pub const ALPN: &[u8] = b"vigil-wake/1";
/// Auth preamble.
pub(crate) const MAGIC: &[u8; 3] = b"VW1";
/// Largest auth message / wake message accepted.
pub(crate) const MAX_MESSAGE: usize = 8 * 1024;
/// Close code for a refused device.
pub const CLOSE_DENIED: u32 = 1;

/// Transport settings shared by both ends, sized for idle connections.
pub fn transport_config(keep_alive: Duration, idle_timeout: Duration) -> TransportConfig {
    let mut t = TransportConfig::default();
    t.keep_alive_interval(Some(keep_alive));
    t.max_idle_timeout(IdleTimeout::try_from(idle_timeout).ok());
    // A wake message is at most ~5 KiB; 16 KiB windows hold a few in flight.
    t.stream_receive_window(VarInt::from_u32(16 * 1024));
    t.receive_window(VarInt::from_u32(32 * 1024));
    t.send_window(32 * 1024);
    t.max_concurrent_bidi_streams(VarInt::from_u32(4));
    t.max_concurrent_uni_streams(VarInt::from_u32(0));
    t.datagram_receive_buffer_size(None);
    t.datagram_send_buffer_size(0);
    t.crypto_buffer_size(8 * 1024);
    t
}

/// Configuration of the wake server.
#[derive(Debug)]
pub struct WakeServerConfig {
    /// UDP address to listen on.
    pub listen: SocketAddr,
    /// Server certificate chain.
    pub cert_chain: Vec<CertificateDer<'static>>,
    /// Its private key.
    pub key: PrivateKeyDer<'static>,
    /// Keep-alive interval (below NAT binding timeouts; 25 s by default).
    pub keep_alive: Duration,
    /// Idle timeout after which a silent device is dropped.
    pub idle_timeout: Duration,
    /// Time a device has to authenticate after connecting.
    pub auth_timeout: Duration,
}

impl WakeServerConfig {
    /// Defaults around the given identity.
    pub fn new(
        listen: SocketAddr,
        cert_chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Self {
        Self {
            listen,
            cert_chain,
            key,
            keep_alive: Duration::from_secs(25),
            idle_timeout: Duration::from_secs(90),
            auth_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Default)]
struct State {
    /// Device id → SHA-256 of its token.
    tokens: HashMap<String, [u8; 32]>,
    /// Device id → its current connection.
    conns: HashMap<String, Connection>,
}

/// The wake server; see the module documentation.
pub struct WakeServer {
    endpoint: Endpoint,
    state: Arc<Mutex<State>>,
    next_wake: AtomicU64,
}

impl std::fmt::Debug for WakeServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WakeServer")
            .field("addr", &self.endpoint.local_addr().ok())
            .finish()
    }
}

fn hash(token: &str) -> [u8; 32] {
    let mut out = [0; 32];
    out.copy_from_slice(digest(&SHA256, token.as_bytes()).as_ref());
    out
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state
        .lock()
        .expect("wake state lock is never poisoned: no panics while held")
}

impl WakeServer {
    /// Binds the endpoint and starts accepting devices.
    pub fn bind(cfg: WakeServerConfig) -> Result<Arc<Self>, ClientError> {
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(cfg.cert_chain, cfg.key)?;
        Self::bind_with_tls(
            cfg.listen,
            tls,
            cfg.keep_alive,
            cfg.idle_timeout,
            cfg.auth_timeout,
        )
    }

    /// Binds with an existing rustls server configuration (the gateway's own certificate);
    /// its ALPN list is replaced by the wake protocol's, and QUIC uses only its TLS 1.3
    /// part. Timing as in [`WakeServerConfig`].
    pub fn bind_with_tls(
        listen: SocketAddr,
        mut tls: rustls::ServerConfig,
        keep_alive: Duration,
        idle_timeout: Duration,
        auth_timeout: Duration,
    ) -> Result<Arc<Self>, ClientError> {
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let crypto = QuicServerConfig::try_from(tls)
            .map_err(|_| ClientError::Credential("TLS config unusable for QUIC"))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        server.transport_config(Arc::new(transport_config(keep_alive, idle_timeout)));
        let endpoint = Endpoint::server(server, listen)?;
        let this = Arc::new(Self {
            endpoint: endpoint.clone(),
            state: Arc::default(),
            next_wake: AtomicU64::new(1),
        });
        let state = Arc::clone(&this.state);
        tokio::spawn(async move {
            while let Some(incoming) = endpoint.accept().await {
                let state = Arc::clone(&state);
                tokio::spawn(async move {
                    if let Ok(conn) = incoming.await {
                        if let Ok(Ok(Some(device))) =
                            tokio::time::timeout(auth_timeout, authenticate(&conn, &state)).await
                        {
                            track(conn, device, state).await;
                        } else {
                            conn.close(VarInt::from_u32(CLOSE_DENIED), b"auth");
                        }
                    }
                });
            }
        });
        Ok(this)
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Allows `device` to connect with `token` (replacing an earlier token).
    pub fn register(&self, device: &DeviceToken, token: &Secret) {
        lock(&self.state)
            .tokens
            .insert(device.expose().to_owned(), hash(token.expose()));
    }

    /// Forgets `device` and drops its connection.
    pub fn unregister(&self, device: &DeviceToken) {
        let mut st = lock(&self.state);
        st.tokens.remove(device.expose());
        if let Some(c) = st.conns.remove(device.expose()) {
            c.close(VarInt::from_u32(CLOSE_DENIED), b"unregistered");
        }
    }

    /// Devices currently connected and authenticated.
    pub fn connected(&self) -> usize {
        lock(&self.state).conns.len()
    }

    /// Whether `device` is connected.
    pub fn is_connected(&self, device: &DeviceToken) -> bool {
        lock(&self.state).conns.contains_key(device.expose())
    }

    /// Wakes `device` with `payload` and waits for its acknowledgement until `deadline`.
    pub async fn wake(&self, device: &DeviceToken, payload: &[u8], deadline: Instant) -> Outcome {
        let Some(conn) = lock(&self.state).conns.get(device.expose()).cloned() else {
            return Outcome::Fail(FailReason::NotConnected);
        };
        let id = self.next_wake.fetch_add(1, Ordering::Relaxed);
        let exchange = async {
            let (mut send, mut recv) = conn.open_bi().await.ok()?;
            let mut msg = Vec::with_capacity(8 + payload.len());
            msg.extend_from_slice(&id.to_be_bytes());
            msg.extend_from_slice(payload);
            send.write_all(&msg).await.ok()?;
            send.finish().ok()?;
            let ack = recv.read_to_end(8).await.ok()?;
            Some(ack == id.to_be_bytes())
        };
        match tokio::time::timeout_at(deadline.into(), exchange).await {
            Ok(Some(true)) => Outcome::Delivered,
            // A wrong ack is a broken client; retrying will not fix it before the deadline,
            // but a lost connection may be re-established by the device.
            Ok(Some(false)) => Outcome::Fail(FailReason::NotConnected),
            Ok(None) => Outcome::Retry {
                retry_after: Some(Duration::from_millis(200)),
                min_delay: Duration::ZERO,
            },
            Err(_) => Outcome::Fail(FailReason::DeadlineExceeded),
        }
    }

    /// Closes every connection and the endpoint.
    pub fn close(&self) {
        self.endpoint.close(VarInt::from_u32(0), b"shutdown");
    }
}

/// Reads the device's auth stream; returns the device id if its token matches.
async fn authenticate(conn: &Connection, state: &Mutex<State>) -> Result<Option<String>, ()> {
    let (mut send, mut recv) = conn.accept_bi().await.map_err(|_| ())?;
    let msg = recv.read_to_end(MAX_MESSAGE).await.map_err(|_| ())?;
    let parsed = parse_auth(&msg);
    let ok = parsed.is_some_and(|(device, token)| {
        lock(state)
            .tokens
            .get(device)
            .is_some_and(|h| *h == hash(token))
    });
    send.write_all(&[if ok { 0 } else { 1 }])
        .await
        .map_err(|_| ())?;
    send.finish().map_err(|_| ())?;
    // Let the answer reach the device before a refusal closes the connection.
    let _ = tokio::time::timeout(Duration::from_secs(1), send.stopped()).await;
    Ok(if ok {
        parsed.map(|(d, _)| d.to_owned())
    } else {
        None
    })
}

/// Parses `"VW1" u16 len device u16 len token`.
pub(crate) fn parse_auth(msg: &[u8]) -> Option<(&str, &str)> {
    let rest = msg.strip_prefix(MAGIC.as_slice())?;
    let (device, rest) = take_str(rest)?;
    let (token, rest) = take_str(rest)?;
    rest.is_empty().then_some((device, token))
}

fn take_str(b: &[u8]) -> Option<(&str, &[u8])> {
    let len = u16::from_be_bytes([*b.first()?, *b.get(1)?]) as usize;
    let s = b.get(2..2 + len)?;
    Some((std::str::from_utf8(s).ok()?, &b[2 + len..]))
}

/// Keeps `conn` as `device`'s connection until it closes.
async fn track(conn: Connection, device: String, state: Arc<Mutex<State>>) {
    let id = conn.stable_id();
    if let Some(old) = lock(&state).conns.insert(device.clone(), conn.clone()) {
        old.close(VarInt::from_u32(0), b"replaced");
    }
    let _ = conn.closed().await;
    let mut st = lock(&state);
    if st.conns.get(&device).is_some_and(|c| c.stable_id() == id) {
        st.conns.remove(&device);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_frames() {
        let mut m = MAGIC.to_vec();
        m.extend_from_slice(&3u16.to_be_bytes());
        m.extend_from_slice(b"dev");
        m.extend_from_slice(&2u16.to_be_bytes());
        m.extend_from_slice(b"tk");
        assert_eq!(parse_auth(&m), Some(("dev", "tk")));
        assert_eq!(parse_auth(&m[..m.len() - 1]), None);
        let mut extra = m.clone();
        extra.push(0);
        assert_eq!(parse_auth(&extra), None);
        assert_eq!(parse_auth(b"XX1"), None);
    }
}
