//! A small pool of long-lived HTTP/2 connections to one push endpoint.
//!
//! Push services want few long-lived connections with many concurrent streams, not a
//! connection per push. The pool keeps `size` connections (opened by [`H2Pool::warm`] before
//! the first push, so the first call does not pay a TLS handshake) and spreads requests over
//! them round-robin.
//!
//! Concurrency follows the server: h2 never opens more streams than the peer's
//! `SETTINGS_MAX_CONCURRENT_STREAMS` allows, and queues the rest until a stream closes, so a
//! server that lowers its limit (APNs drops it to 1 after a rejection) slows us down instead
//! of getting refused streams. A connection that received GOAWAY or died is replaced on next
//! use; requests the server did not process (refused, or above the GOAWAY's last stream id)
//! are resent at once on a fresh connection, so a GOAWAY loses nothing. A request that may
//! have been processed (connection lost after it was written) is reported as
//! [`RequestError::Lost`] and left to the dispatcher's retry policy.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use h2::client::SendRequest;
use h2::Reason;
use http::uri::{Authority, Scheme};
use http::{HeaderMap, Method, Request, Uri};
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::{ClientError, HttpsUrl};

/// Largest response body read; push services answer with a few hundred bytes.
const MAX_RESPONSE_BODY: usize = 64 * 1024;
/// Resends of an unprocessed request on a fresh connection before giving up to the caller.
const UNPROCESSED_RETRIES: usize = 4;

/// Pool parameters.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// The endpoint (`https://host:port`).
    pub url: HttpsUrl,
    /// TLS configuration (must offer ALPN `h2`).
    pub tls: Arc<ClientConfig>,
    /// Connections kept.
    pub size: usize,
    /// Time allowed for TCP + TLS + HTTP/2 handshakes.
    pub connect_timeout: Duration,
    /// Override of the address to connect to (tests, pinned relays); default resolves the host.
    pub connect_to: Option<SocketAddr>,
}

/// A complete response.
#[derive(Debug, Clone)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// Body (at most 64 KiB).
    pub body: Bytes,
}

/// Why a request got no response.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The server certainly did not process it (no connection, refused, GOAWAY), even after
    /// resending on fresh connections.
    #[error("not processed by the server")]
    Unprocessed,
    /// The connection died after the request was written: it may have been processed.
    #[error("connection lost")]
    Lost,
    /// No response before the deadline.
    #[error("timed out")]
    Timeout,
}

#[derive(Clone)]
struct Conn {
    send: SendRequest<Bytes>,
    alive: Arc<AtomicBool>,
}

/// One connection of the pool. Every request reads `current` (a short synchronous lock to
/// clone the handle); only a request that finds it dead takes `connecting`, so one
/// handshake runs per slot while the other requests wait for it.
#[derive(Default)]
struct Slot {
    current: Mutex<Option<Conn>>,
    connecting: tokio::sync::Mutex<()>,
}

impl Slot {
    fn live(&self) -> Option<Conn> {
        let current = self
            .current
            .lock()
            .expect("pool slot lock is never poisoned: nothing panics while it is held");
        current
            .as_ref()
            .filter(|c| c.alive.load(Ordering::Acquire))
            .cloned()
    }

    fn set(&self, conn: Option<Conn>) {
        *self
            .current
            .lock()
            .expect("pool slot lock is never poisoned: nothing panics while it is held") = conn;
    }
}

struct Inner {
    cfg: PoolConfig,
    connector: TlsConnector,
    /// `:authority` of every request, parsed once.
    authority: Authority,
    slots: Vec<Slot>,
    next: AtomicUsize,
    connects: AtomicU64,
}

/// The pool; cheap to clone.
#[derive(Clone)]
pub struct H2Pool {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for H2Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Pool")
            .field("endpoint", &self.inner.cfg.url.authority())
            .field("size", &self.inner.slots.len())
            .finish()
    }
}

impl H2Pool {
    /// A pool with no connections yet.
    pub fn new(cfg: PoolConfig) -> Result<Self, ClientError> {
        let size = cfg.size.max(1);
        let connector = TlsConnector::from(Arc::clone(&cfg.tls));
        let authority = Authority::try_from(cfg.url.authority())
            .map_err(|_| ClientError::BadUrl("host is not a valid URL authority"))?;
        Ok(Self {
            inner: Arc::new(Inner {
                cfg,
                connector,
                authority,
                slots: (0..size).map(|_| Slot::default()).collect(),
                next: AtomicUsize::new(0),
                connects: AtomicU64::new(0),
            }),
        })
    }

    /// Opens every connection of the pool; fails if none could be opened.
    pub async fn warm(&self) -> Result<(), ClientError> {
        let mut first_err = None;
        let mut ok = 0;
        for i in 0..self.inner.slots.len() {
            match self.conn(i).await {
                Ok(_) => ok += 1,
                Err(e) => first_err = first_err.or(Some(e)),
            }
        }
        match first_err {
            Some(e) if ok == 0 => Err(e),
            _ => Ok(()),
        }
    }

    /// Connections opened so far (reconnects included).
    pub fn connects(&self) -> u64 {
        self.inner.connects.load(Ordering::Relaxed)
    }

    /// The live connection of slot `i`, opening one if needed.
    async fn conn(&self, i: usize) -> Result<Conn, ClientError> {
        let slot = &self.inner.slots[i];
        if let Some(c) = slot.live() {
            return Ok(c);
        }
        let _connecting = slot.connecting.lock().await;
        // Another request may have reconnected the slot while this one waited.
        if let Some(c) = slot.live() {
            return Ok(c);
        }
        slot.set(None);
        let c = tokio::time::timeout(self.inner.cfg.connect_timeout, self.connect())
            .await
            .map_err(|_| ClientError::Timeout)??;
        slot.set(Some(c.clone()));
        Ok(c)
    }

    async fn connect(&self) -> Result<Conn, ClientError> {
        let cfg = &self.inner.cfg;
        let tcp = match cfg.connect_to {
            Some(addr) => TcpStream::connect(addr).await?,
            None => TcpStream::connect((cfg.url.host.as_str(), cfg.url.port)).await?,
        };
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from(cfg.url.host.clone())
            .map_err(|_| ClientError::BadUrl("host is not a valid TLS server name"))?;
        let tls = self.inner.connector.connect(name, tcp).await?;
        if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
            return Err(ClientError::NoH2);
        }
        let (send, connection) = h2::client::Builder::new()
            .initial_window_size(1 << 20)
            .initial_connection_window_size(4 << 20)
            .handshake::<_, Bytes>(tls)
            .await?;
        let alive = Arc::new(AtomicBool::new(true));
        let flag = Arc::clone(&alive);
        tokio::spawn(async move {
            // Runs until GOAWAY completes or the socket dies; then the slot reconnects.
            if let Err(e) = (YieldFirst {
                inner: connection,
                yielded: false,
            })
            .await
            {
                tracing::debug!(error = %e, "push connection ended");
            }
            flag.store(false, Ordering::Release);
        });
        self.inner.connects.fetch_add(1, Ordering::Relaxed);
        Ok(Conn { send, alive })
    }

    /// Sends `method path` with `headers` and `body`, waiting for the full response until
    /// `deadline`.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &HeaderMap,
        body: Bytes,
        deadline: Instant,
    ) -> Result<Response, RequestError> {
        self.request_observed(method, path, headers, body, deadline, &|| {})
            .await
    }

    /// Like [`H2Pool::request`], calling `handed_off` each time the request has been handed
    /// to an HTTP/2 connection (headers and body queued for its writer), which is where a
    /// push leaves Vigil's own code.
    pub async fn request_observed(
        &self,
        method: Method,
        path: &str,
        headers: &HeaderMap,
        body: Bytes,
        deadline: Instant,
        handed_off: &(dyn Fn() + Sync),
    ) -> Result<Response, RequestError> {
        let uri = Uri::builder()
            .scheme(Scheme::HTTPS)
            .authority(self.inner.authority.clone())
            .path_and_query(path)
            .build()
            .map_err(|_| RequestError::Unprocessed)?;
        let build = |_: &Authority| {
            let mut req = Request::new(());
            *req.method_mut() = method.clone();
            *req.uri_mut() = uri.clone();
            *req.headers_mut() = headers.clone();
            Some(req)
        };
        self.send(&build, body, deadline, handed_off).await
    }

    /// Sends the request `build` makes (from the pool's `:authority`) with `body`, waiting
    /// for the full response until `deadline`; `handed_off` as in
    /// [`H2Pool::request_observed`]. `build` runs once per attempt, so the common single
    /// attempt moves its headers into the connection instead of copying them, and a resend
    /// after GOAWAY gets its own. `None` from `build` is reported as unprocessed.
    pub async fn send(
        &self,
        build: &(dyn Fn(&Authority) -> Option<Request<()>> + Sync),
        body: Bytes,
        deadline: Instant,
        handed_off: &(dyn Fn() + Sync),
    ) -> Result<Response, RequestError> {
        let fut = self.request_inner(build, body, handed_off);
        match tokio::time::timeout_at(deadline.into(), fut).await {
            Ok(r) => r,
            Err(_) => Err(RequestError::Timeout),
        }
    }

    async fn request_inner(
        &self,
        build: &(dyn Fn(&Authority) -> Option<Request<()>> + Sync),
        body: Bytes,
        handed_off: &(dyn Fn() + Sync),
    ) -> Result<Response, RequestError> {
        let n = self.inner.slots.len();
        let start = self.inner.next.fetch_add(1, Ordering::Relaxed);
        for attempt in 0..UNPROCESSED_RETRIES {
            let slot = (start + attempt) % n;
            let Ok(conn) = self.conn(slot).await else {
                // Could not connect: nothing was sent; the next slot (or try) reconnects.
                tokio::time::sleep(Duration::from_millis(10 << attempt)).await;
                continue;
            };
            let mut send = match conn.send.ready().await {
                Ok(s) => s,
                Err(_) => {
                    // GOAWAY received or connection gone: nothing sent on it.
                    conn.alive.store(false, Ordering::Release);
                    continue;
                }
            };
            let req = build(&self.inner.authority).ok_or(RequestError::Unprocessed)?;
            let (resp, mut stream) = match send.send_request(req, body.is_empty()) {
                Ok(x) => x,
                Err(_) => {
                    conn.alive.store(false, Ordering::Release);
                    continue;
                }
            };
            if !body.is_empty() && stream.send_data(body.clone(), true).is_err() {
                conn.alive.store(false, Ordering::Release);
                continue;
            }
            handed_off();
            match resp.await {
                Ok(resp) => return read_body(resp).await,
                Err(e) if unprocessed(&e) => {
                    if e.is_go_away() {
                        conn.alive.store(false, Ordering::Release);
                    }
                    continue;
                }
                Err(_) => {
                    conn.alive.store(false, Ordering::Release);
                    return Err(RequestError::Lost);
                }
            }
        }
        Err(RequestError::Unprocessed)
    }
}

/// Drives a connection, going to the back of the run queue once each time it is woken
/// before polling it.
///
/// Every request wakes the connection's task. On tokio's multi-thread runtime a task woken
/// by another task runs next (the LIFO slot), so without this each request would be encoded
/// and written alone: one TLS record, one `writev` and one wake-up of the server per push.
/// Letting the request tasks that are already runnable go first means the connection finds
/// all of their requests queued and writes them together, as h2load does, at the cost of
/// one extra (cheap) poll per wake-up.
struct YieldFirst<F> {
    inner: F,
    yielded: bool,
}

impl<F: Future + Unpin> Future for YieldFirst<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        if !self.yielded {
            self.yielded = true;
            // A task that wakes itself while running is rescheduled behind the tasks
            // already queued (tokio treats it as a yield, never as a LIFO-slot wake).
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.yielded = false;
        Pin::new(&mut self.inner).poll(cx)
    }
}

/// Whether the server guarantees it did not act on the stream (RFC 9113 §8.7).
fn unprocessed(e: &h2::Error) -> bool {
    (e.is_go_away() && e.is_remote()) || e.reason() == Some(Reason::REFUSED_STREAM)
}

async fn read_body(resp: http::Response<h2::RecvStream>) -> Result<Response, RequestError> {
    let (parts, mut body) = resp.into_parts();
    let mut buf = BytesMut::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|_| RequestError::Lost)?;
        let _ = body.flow_control().release_capacity(chunk.len());
        if buf.len() + chunk.len() <= MAX_RESPONSE_BODY {
            buf.extend_from_slice(&chunk);
        }
    }
    Ok(Response {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: buf.freeze(),
    })
}
