//! TCP and TLS: the accept loop, outgoing dials, and the per-connection task.
//!
//! One task per connection owns both halves of the socket, its framer, its idle timer and its
//! write queue. The TLS handshake runs inside that task, under a timeout, so a slow or
//! malicious handshake never stalls the accept loop.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio::time::{sleep, timeout, Instant};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tracing::{debug, debug_span, trace, Instrument};
use vigil_proto::framing::{FramingError, StreamFramer, StreamItem};
use vigil_proto::txn::{Peer, Transport};

use super::{ConnId, Inbound, InboundKind, Shared, WRITE_QUEUE};

/// Bytes read per `read` call; with the framer's limit this bounds a connection's buffer.
const READ_CHUNK: usize = 8 * 1024;

/// RFC 5626 §3.5.1: the answer to a double-CRLF ping.
const PONG: &[u8] = b"\r\n";
/// Queued messages are joined into one write up to about this many bytes.
const COALESCE_MAX: usize = 64 * 1024;

/// Why a connection ended (logged at debug level).
#[derive(Debug)]
// The payloads are read only through `Debug`, in the close log line.
#[allow(dead_code)]
enum CloseReason {
    PeerClosed,
    Idle,
    Framing(FramingError),
    Read(std::io::ErrorKind),
    Write(std::io::ErrorKind),
    WriteTimeout,
    /// The table dropped this connection's queue: the gateway is stopping, or a newer
    /// connection to the same peer replaced this one.
    QueueClosed,
    DriverGone,
    Aborted,
}

pub(super) async fn accept_loop(listener: TcpListener, transport: Transport, shared: Arc<Shared>) {
    loop {
        let accepted = tokio::select! {
            _ = shared.life.shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        let (tcp, addr) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and similar: pause instead of spinning.
                debug!(error = %e, "accept failed");
                sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let peer = Peer { transport, addr };
        let Some(permit) = shared.conns.try_reserve() else {
            debug!(%peer, "connection limit reached: closing new connection");
            drop(tcp);
            continue;
        };
        // SIP messages are small and latency matters more than packet count.
        let _ = tcp.set_nodelay(true);
        let span = debug_span!("sip_conn", %peer, dir = "in");
        let task = inbound(tcp, peer, permit, Arc::clone(&shared)).instrument(span);
        shared.life.tracker.spawn(task);
    }
    debug!(%transport, "accept loop stopped");
}

async fn inbound(tcp: TcpStream, peer: Peer, permit: OwnedSemaphorePermit, shared: Arc<Shared>) {
    let _permit = permit;
    if peer.transport != Transport::Tls {
        register_and_serve(tcp, peer, &shared).await;
        return;
    }
    let Some(tls) = &shared.tls else { return };
    let acceptor = TlsAcceptor::from(Arc::clone(&tls.server));
    let handshake = tokio::select! {
        _ = shared.life.shutdown.cancelled() => return,
        r = timeout(shared.limits.handshake_timeout, acceptor.accept(tcp)) => r,
    };
    match handshake {
        Ok(Ok(stream)) => register_and_serve(stream, peer, &shared).await,
        Ok(Err(e)) => debug!(%peer, error = %e, "TLS handshake failed"),
        Err(_) => debug!(%peer, "TLS handshake timed out"),
    }
}

async fn register_and_serve<S>(stream: S, peer: Peer, shared: &Shared)
where
    S: AsyncRead + AsyncWrite + Send + Unpin,
{
    let (tx, rx) = mpsc::channel(WRITE_QUEUE);
    let id = shared.conns.next_id();
    shared.conns.insert(peer, id, tx);
    debug!(%peer, "connection accepted");
    let reason = serve(stream, peer, rx, shared).await;
    shared.conns.remove(&peer, id);
    debug!(%peer, ?reason, "connection closed");
}

/// An outgoing connection: the table already routes `peer` to `rx`, so messages queue up
/// while the connection is being set up.
pub(super) async fn dial(
    peer: Peer,
    id: ConnId,
    rx: mpsc::Receiver<Bytes>,
    permit: OwnedSemaphorePermit,
    shared: Arc<Shared>,
) {
    let _permit = permit;
    let send_buffer = shared.limits.send_buffer;
    let connect = async {
        let socket = if peer.addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if send_buffer > 0 {
            socket.set_send_buffer_size(send_buffer)?;
        }
        let tcp = socket.connect(peer.addr).await?;
        let _ = tcp.set_nodelay(true);
        Ok::<_, std::io::Error>(tcp)
    };
    let setup_time = shared.limits.handshake_timeout;
    let tcp = tokio::select! {
        _ = shared.life.abort.cancelled() => None,
        r = timeout(setup_time, connect) => match r {
            Ok(Ok(tcp)) => Some(tcp),
            Ok(Err(e)) => {
                debug!(%peer, error = %e, "connect failed");
                None
            }
            Err(_) => {
                debug!(%peer, "connect timed out");
                None
            }
        },
    };
    let reason = match (tcp, peer.transport, &shared.tls) {
        (None, _, _) => None,
        (Some(tcp), Transport::Tls, Some(tls)) => {
            let connector = TlsConnector::from(Arc::clone(&tls.client));
            // The name the peer's chooser registered (the resolved SIP domain, or a
            // configured name), else the address itself.
            let name = shared
                .tls_names
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&peer)
                .cloned()
                .unwrap_or_else(|| ServerName::IpAddress(peer.addr.ip().into()));
            match timeout(setup_time, connector.connect(name, tcp)).await {
                Ok(Ok(stream)) => Some(serve(stream, peer, rx, &shared).await),
                Ok(Err(e)) => {
                    debug!(%peer, error = %e, "outgoing TLS handshake failed");
                    None
                }
                Err(_) => None,
            }
        }
        (Some(tcp), Transport::Tcp, _) => Some(serve(tcp, peer, rx, &shared).await),
        (Some(_), _, _) => None,
    };
    shared.conns.remove(&peer, id);
    match reason {
        Some(reason) => debug!(%peer, ?reason, "outgoing connection closed"),
        None => {
            debug!(%peer, "outgoing connection could not be set up");
            let _ = shared.inbound.try_send(Inbound {
                peer,
                kind: InboundKind::TransportError,
            });
        }
    }
}

/// Runs one established connection until it closes; see [`CloseReason`].
async fn serve<S>(
    stream: S,
    peer: Peer,
    mut rx: mpsc::Receiver<Bytes>,
    shared: &Shared,
) -> CloseReason
where
    S: AsyncRead + AsyncWrite + Send + Unpin,
{
    let limits = &shared.limits;
    let life = &shared.life;
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut framer = StreamFramer::new(limits.framer);
    let mut buf = vec![0u8; READ_CHUNK];
    let idle = sleep(limits.idle_timeout);
    tokio::pin!(idle);
    // Cleared at graceful shutdown: stop reading, keep flushing the write queue until the
    // driver closes it (or the grace period ends and `abort` fires).
    let mut reading = true;

    let reason = loop {
        tokio::select! {
            biased;
            _ = life.abort.cancelled() => return CloseReason::Aborted,
            _ = life.shutdown.cancelled(), if reading => reading = false,
            out = rx.recv() => match out {
                Some(bytes) => {
                    // Messages queued behind this one go out in the same write: one
                    // syscall (and one TLS flush) for a burst of REGISTERs on a shared
                    // upstream connection instead of one each.
                    // The joined buffer lives only for this write, so an idle connection
                    // holds no burst-sized allocation.
                    let joined;
                    let mut out: &[u8] = &bytes;
                    if let Ok(next) = rx.try_recv() {
                        let mut j = Vec::with_capacity(4 * (bytes.len() + next.len()));
                        j.extend_from_slice(&bytes);
                        j.extend_from_slice(&next);
                        while j.len() < COALESCE_MAX {
                            match rx.try_recv() {
                                Ok(more) => j.extend_from_slice(&more),
                                Err(_) => break,
                            }
                        }
                        joined = j;
                        out = &joined;
                    }
                    if let Err(r) = write(&mut wr, out, limits.write_timeout).await {
                        break r;
                    }
                    idle.as_mut().reset(Instant::now() + limits.idle_timeout);
                }
                None => break CloseReason::QueueClosed,
            },
            _ = &mut idle, if reading => break CloseReason::Idle,
            r = rd.read(&mut buf), if reading => match r {
                Ok(0) => match framer.handle_eof() {
                    Ok(()) => break CloseReason::PeerClosed,
                    Err(e) => break CloseReason::Framing(e),
                },
                Ok(n) => {
                    idle.as_mut().reset(Instant::now() + limits.idle_timeout);
                    if let Err(r) = on_read(&buf[..n], &mut framer, &mut wr, peer, shared).await {
                        break r;
                    }
                }
                Err(e) => break CloseReason::Read(e.kind()),
            },
        }
    };
    if matches!(
        reason,
        CloseReason::Write(_) | CloseReason::WriteTimeout | CloseReason::Read(_)
    ) {
        // Transactions waiting on this peer should learn now rather than by timeout.
        let _ = shared.inbound.try_send(Inbound {
            peer,
            kind: InboundKind::TransportError,
        });
    }
    let _ = timeout(limits.write_timeout, wr.shutdown()).await;
    reason
}

async fn on_read<S>(
    data: &[u8],
    framer: &mut StreamFramer,
    wr: &mut WriteHalf<S>,
    peer: Peer,
    shared: &Shared,
) -> Result<(), CloseReason>
where
    S: AsyncRead + AsyncWrite + Send + Unpin,
{
    framer.handle_bytes(data).map_err(CloseReason::Framing)?;
    loop {
        match framer.poll_item().map_err(CloseReason::Framing)? {
            None => break,
            Some(StreamItem::Message(bytes)) => {
                let item = Inbound {
                    peer,
                    kind: InboundKind::Message(bytes),
                };
                // Waiting here is the back-pressure: a peer that outruns the core stops
                // being read, and TCP flow control slows it down.
                tokio::select! {
                    _ = shared.life.abort.cancelled() => return Err(CloseReason::Aborted),
                    r = shared.inbound.send(item) => r.map_err(|_| CloseReason::DriverGone)?,
                }
            }
            Some(StreamItem::Ping) => {
                trace!(%peer, "keep-alive ping: sending pong");
                write(wr, PONG, shared.limits.write_timeout).await?;
            }
            Some(StreamItem::Pong) => trace!(%peer, "keep-alive pong"),
            Some(_) => {}
        }
    }
    if framer.poll_lone_crlf().is_some() {
        trace!(%peer, "keep-alive pong");
    }
    Ok(())
}

async fn write<S>(wr: &mut WriteHalf<S>, bytes: &[u8], limit: Duration) -> Result<(), CloseReason>
where
    S: AsyncRead + AsyncWrite + Send + Unpin,
{
    let io = async {
        wr.write_all(bytes).await?;
        // TLS buffers records until flushed.
        wr.flush().await
    };
    match timeout(limit, io).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(CloseReason::Write(e.kind())),
        Err(_) => Err(CloseReason::WriteTimeout),
    }
}
