//! SIP transports: UDP sockets and TCP/TLS connections, feeding one core-driver task.
//!
//! Data flow: the core driver reads the UDP sockets itself through the one [`UdpReceiver`]
//! that [`Transports::bind`] returns, so a datagram is handled in the turn that reads it.
//! Every TCP/TLS connection task frames what it reads (with `vigil_proto::framing`) and sends
//! [`Inbound`] items into one bounded channel read by the same driver. The driver answers
//! with [`Transports::send`], which never blocks: UDP goes straight to the non-blocking
//! socket, TCP/TLS into the bounded write queue of the connection found in the connection
//! table (dialling a new connection if none exists).
//!
//! Bounds: UDP reads at most a batch per driver turn and leaves the rest in the kernel's
//! socket buffer (which drops when full); one channel from the streams to the driver (a
//! stream waits when it is full, which pushes back on the peer through TCP flow control); a write queue per connection; at most
//! `max_connections` connections; at most `max_message_size` + one read chunk buffered per
//! connection; idle, handshake and write timeouts.
//!
//! A full write queue is [`SendFailure::QueueFull`], which the caller handles per message
//! (the registration driver keeps the REGISTER and offers it again): it says nothing about
//! the connection, so it must not fail the other transactions on it.
//!
//! Outgoing TLS verifies the peer's certificate against the name registered for that peer
//! with [`Transports::set_tls_name`] (the SIP domain that was resolved to it, RFC 5922 §4),
//! sent as SNI, and against its IP address when none is registered.
//!
//! Architecture invariant: transports make no protocol decision beyond framing and answering
//! keep-alive pings; everything else is the core's.

mod stream;
mod table;
mod udp;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use rustls::pki_types::ServerName;
use std::net::UdpSocket;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, Instrument};
use vigil_proto::framing::{FramerConfig, FramingError};
use vigil_proto::txn::{Peer, Transport};

use crate::config::{ListenSpec, SipConfig};
use crate::tls::TlsContext;

pub use table::ConnId;
use table::ConnTable;
pub use udp::UdpReceiver;

/// Capacity of each connection's write queue, in messages.
const WRITE_QUEUE: usize = 64;

/// What a transport hands the core driver.
#[derive(Debug)]
pub struct Inbound {
    /// Where it came from (or, for a transport error, the peer that failed).
    pub peer: Peer,
    /// What arrived.
    pub kind: InboundKind,
}

/// See [`Inbound`].
#[derive(Debug)]
#[non_exhaustive]
pub enum InboundKind {
    /// One framed message, not yet parsed.
    Message(Bytes),
    /// A UDP datagram that could not be framed; the driver may still answer 400 if it
    /// parses as a request (e.g. a body shorter than Content-Length).
    MalformedDatagram {
        /// The whole datagram.
        bytes: Bytes,
        /// Why framing failed.
        error: FramingError,
    },
    /// Sending to the peer failed (connect refused, handshake failed, write error), so the
    /// transactions with it should end (RFC 3261 §17.1.4).
    TransportError,
}

/// Why [`Transports::send`] could not queue a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendFailure {
    /// No UDP socket of the destination's address family is bound.
    #[error("no UDP socket for this address family")]
    NoUdpSocket,
    /// No listener of this transport, so no outgoing connection of it either.
    #[error("transport not configured")]
    TransportNotConfigured,
    /// The socket buffer or the connection's write queue is full.
    #[error("send queue full")]
    QueueFull,
    /// A new connection would exceed `max_connections`.
    #[error("connection limit reached")]
    ConnectionLimit,
    /// The connection closed or the gateway is shutting down.
    #[error("connection closed")]
    Closed,
    /// The socket reported an error.
    #[error("socket error: {0}")]
    Io(std::io::ErrorKind),
}

/// A TLS name that is neither a DNS name nor an IP address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a valid TLS server name")]
pub struct InvalidTlsName;

/// Settings every connection task needs; copied out of [`SipConfig`] once.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub(crate) framer: FramerConfig,
    pub(crate) idle_timeout: std::time::Duration,
    pub(crate) handshake_timeout: std::time::Duration,
    pub(crate) write_timeout: std::time::Duration,
    /// SO_SNDBUF of outgoing connections; 0: the kernel's.
    pub(crate) send_buffer: u32,
}

/// Cancellation and task bookkeeping shared by every transport task.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    /// Graceful shutdown: stop accepting and reading, flush queued writes, close.
    pub shutdown: CancellationToken,
    /// Hard stop at the end of the grace period: drop everything now.
    pub abort: CancellationToken,
    /// Every spawned task, so shutdown can wait for them.
    pub tracker: TaskTracker,
}

impl Lifecycle {
    /// Fresh tokens and an empty tracker.
    pub fn new() -> Self {
        Self {
            shutdown: CancellationToken::new(),
            abort: CancellationToken::new(),
            tracker: TaskTracker::new(),
        }
    }
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug)]
pub(crate) struct Shared {
    /// Bound UDP sockets with their local addresses (looked up once, not per send).
    pub(crate) udp: Vec<(SocketAddr, Arc<UdpSocket>)>,
    pub(crate) has_tcp: bool,
    pub(crate) tls: Option<TlsContext>,
    pub(crate) conns: ConnTable,
    /// The name each outgoing TLS peer's certificate must carry (RFC 5922 §4: the SIP
    /// domain that was resolved to it), sent as SNI; peers without one are verified by
    /// their IP address. Set by whoever chose the peer, before the first send to it.
    pub(crate) tls_names: std::sync::Mutex<HashMap<Peer, ServerName<'static>>>,
    pub(crate) limits: Limits,
    pub(crate) inbound: mpsc::Sender<Inbound>,
    pub(crate) life: Lifecycle,
}

/// The handle the core driver (and tests) use to send; cheap to clone.
#[derive(Debug, Clone)]
pub struct Transports {
    shared: Arc<Shared>,
    listeners: Arc<[ListenSpec]>,
}

impl Transports {
    /// Binds every listener in `config.listen` and spawns the TCP/TLS accept tasks; the UDP
    /// sockets are read through the returned [`UdpReceiver`], the one reader of them all (two
    /// would split the datagrams between them). `tls` is required when a TLS listener is
    /// configured. Port 0 binds an ephemeral port; [`Self::listeners`] reports the bound
    /// addresses.
    pub async fn bind(
        config: &SipConfig,
        tls: Option<TlsContext>,
        inbound: mpsc::Sender<Inbound>,
        life: Lifecycle,
    ) -> std::io::Result<(Self, UdpReceiver)> {
        let mut udp = Vec::new();
        let mut tcp = Vec::new();
        let mut bound = Vec::new();
        for spec in &config.listen {
            match spec.transport {
                Transport::Udp => {
                    // Not registered with tokio: the core driver watches it (`UdpReceiver`).
                    let sock = UdpSocket::bind(spec.addr)?;
                    sock.set_nonblocking(true)?;
                    let sock = Arc::new(sock);
                    let addr = sock.local_addr()?;
                    bound.push(ListenSpec {
                        transport: spec.transport,
                        addr,
                    });
                    udp.push((addr, sock));
                }
                Transport::Tls if tls.is_none() => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        "a TLS listener needs a TLS context",
                    ));
                }
                t => {
                    let l = TcpListener::bind(spec.addr).await?;
                    bound.push(ListenSpec {
                        transport: t,
                        addr: l.local_addr()?,
                    });
                    tcp.push((t, l));
                }
            }
        }
        let shared = Arc::new(Shared {
            has_tcp: tcp.iter().any(|(t, _)| *t == Transport::Tcp),
            tls: if tcp.iter().any(|(t, _)| *t == Transport::Tls) {
                tls
            } else {
                None
            },
            udp,
            conns: ConnTable::new(config.max_connections),
            tls_names: std::sync::Mutex::new(HashMap::new()),
            limits: Limits {
                framer: FramerConfig {
                    max_message_size: config.max_message_size,
                },
                idle_timeout: config.idle_timeout(),
                handshake_timeout: config.tls_handshake_timeout(),
                write_timeout: config.write_timeout(),
                send_buffer: config.send_buffer_bytes,
            },
            inbound,
            life,
        });
        let udp_receiver =
            UdpReceiver::new(shared.udp.iter().map(|(_, s)| Arc::clone(s)).collect())?;
        for (transport, listener) in tcp {
            let task = stream::accept_loop(listener, transport, Arc::clone(&shared));
            shared.life.tracker.spawn(task);
        }
        for spec in &bound {
            info!(listen = %spec, "SIP listener ready");
        }
        let transports = Self {
            shared,
            listeners: bound.into(),
        };
        Ok((transports, udp_receiver))
    }

    /// The bound listeners (with the actual ports when port 0 was configured).
    pub fn listeners(&self) -> &[ListenSpec] {
        &self.listeners
    }

    /// The first bound address of `transport`.
    pub fn local_addr(&self, transport: Transport) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|l| l.transport == transport)
            .map(|l| l.addr)
    }

    /// Open TCP/TLS connections, handshakes included.
    pub fn connection_count(&self) -> usize {
        self.shared.conns.open()
    }

    /// Connections refused at the `max_connections` cap since start.
    pub fn refused_connections(&self) -> u64 {
        self.shared.conns.refused()
    }

    /// Queues one message for `peer` without waiting.
    ///
    /// UDP: sent at once from the first socket of the destination's address family. TCP/TLS:
    /// queued on the existing connection to `peer` (inbound or outbound, RFC 3261 §18), or on
    /// a new outgoing connection dialled in the background; a failed dial comes back as
    /// [`InboundKind::TransportError`].
    pub fn send(&self, peer: Peer, bytes: Bytes) -> Result<(), SendFailure> {
        match peer.transport {
            Transport::Udp => self.send_udp(peer.addr, &bytes),
            Transport::Tcp | Transport::Tls => self.send_stream(peer, bytes),
            _ => Err(SendFailure::TransportNotConfigured),
        }
    }

    fn send_udp(&self, to: SocketAddr, bytes: &[u8]) -> Result<(), SendFailure> {
        let (_, sock) = self
            .shared
            .udp
            .iter()
            .find(|(local, _)| local.is_ipv4() == to.is_ipv4())
            .ok_or(SendFailure::NoUdpSocket)?;
        match sock.send_to(bytes, to) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Err(SendFailure::QueueFull),
            Err(e) => Err(SendFailure::Io(e.kind())),
        }
    }

    fn send_stream(&self, peer: Peer, bytes: Bytes) -> Result<(), SendFailure> {
        let shared = &self.shared;
        if shared.life.shutdown.is_cancelled() {
            // Existing connections still flush; no new ones are dialled.
            let tx = shared.conns.get(&peer).ok_or(SendFailure::Closed)?;
            return queue(&tx, bytes);
        }
        if let Some(tx) = shared.conns.get(&peer) {
            return queue(&tx, bytes);
        }
        let configured = match peer.transport {
            Transport::Tls => shared.tls.is_some(),
            _ => shared.has_tcp,
        };
        if !configured {
            return Err(SendFailure::TransportNotConfigured);
        }
        let permit = shared
            .conns
            .try_reserve()
            .ok_or(SendFailure::ConnectionLimit)?;
        let mut dial = None;
        let (tx, created) = shared.conns.get_or_insert(peer, || {
            let (tx, rx) = mpsc::channel(WRITE_QUEUE);
            let id = shared.conns.next_id();
            dial = Some((id, rx));
            (id, tx)
        });
        if let (true, Some((id, rx))) = (created, dial) {
            debug!(%peer, "dialling new connection");
            let span = tracing::debug_span!("sip_conn", %peer, dir = "out");
            let task = stream::dial(peer, id, rx, permit, Arc::clone(shared)).instrument(span);
            shared.life.tracker.spawn(task);
        }
        queue(&tx, bytes)
    }

    /// Verifies the certificate of future outgoing TLS connections to `peer` against
    /// `name` (a DNS name, sent as SNI, or an IP address) instead of the peer's address.
    /// A connection that is already open is kept: connections are shared per peer, so two
    /// SIP domains served from one address share the verification of whichever dialled
    /// first. Fails when `name` is neither a DNS name nor an IP address.
    pub fn set_tls_name(&self, peer: Peer, name: &str) -> Result<(), InvalidTlsName> {
        let name = ServerName::try_from(name.to_owned()).map_err(|_| InvalidTlsName)?;
        let mut names = self
            .shared
            .tls_names
            .lock()
            // Every critical section is one map operation: a poisoned map is consistent.
            .unwrap_or_else(|p| p.into_inner());
        if names.get(&peer) != Some(&name) {
            debug!(%peer, "TLS name set for peer");
            names.insert(peer, name);
        }
        Ok(())
    }

    /// Drops every connection's write queue: each connection flushes what it holds and closes.
    /// Called by the core driver when it stops.
    pub fn close_all(&self) {
        self.shared.conns.close_all();
    }
}

fn queue(tx: &mpsc::Sender<Bytes>, bytes: Bytes) -> Result<(), SendFailure> {
    tx.try_send(bytes).map_err(|e| match e {
        mpsc::error::TrySendError::Full(_) => SendFailure::QueueFull,
        mpsc::error::TrySendError::Closed(_) => SendFailure::Closed,
    })
}
