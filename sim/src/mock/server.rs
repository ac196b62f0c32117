//! The shared HTTP/2-over-TLS server both mocks run on: accept loop, per-connection state,
//! request bodies with a size bound, fault injection and recording.
//!
//! Each connection is one task that drives `h2` and accepts streams; each stream is its own
//! task so latency injection on one push does not hold up others. A service (APNs or FCM)
//! only turns a request into a [`Reply`]; everything about the transport lives here.

use crate::mock::faults::{FaultReason, FaultRng, Faults};
use crate::mock::record::{lock, AcceptedPush, Recorder};
use crate::mock::settings_io::{SettingsIo, StreamLimit};
use crate::mock::MockClock;
use bytes::{Bytes, BytesMut};
use h2::server::SendResponse;
use h2::{Reason, RecvStream};
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

/// How long a connection being reset keeps flushing responses that were already sent, so
/// that an injected reset loses only unanswered requests (a push answered 200 must reach
/// the client, or the client would resend a push the mock already counted).
const RESET_FLUSH_WINDOW: Duration = Duration::from_millis(20);

/// State shared by all connections of one mock.
pub(crate) struct Core {
    pub(crate) clock: MockClock,
    pub(crate) recorder: Recorder,
    faults: Mutex<(Arc<Faults>, FaultRng)>,
    /// Dead device tokens and when they died (Unix ms).
    dead: Mutex<HashMap<String, u64>>,
    requests: AtomicU64,
    connection_ids: AtomicU64,
}

impl Core {
    pub(crate) fn new(clock: MockClock, faults: Faults, record_capacity: usize) -> Self {
        let rng = FaultRng::new(faults.seed);
        Self {
            clock,
            recorder: Recorder::new(record_capacity),
            faults: Mutex::new((Arc::new(faults), rng)),
            dead: Mutex::new(HashMap::new()),
            requests: AtomicU64::new(0),
            connection_ids: AtomicU64::new(0),
        }
    }

    /// Replaces the faults and reseeds the generator from the new seed.
    pub(crate) fn set_faults(&self, faults: Faults) {
        let rng = FaultRng::new(faults.seed);
        *lock(&self.faults) = (Arc::new(faults), rng);
    }

    fn faults(&self) -> Arc<Faults> {
        lock(&self.faults).0.clone()
    }

    fn draw<R>(&self, f: impl FnOnce(&Faults, &mut FaultRng) -> R) -> R {
        let mut guard = lock(&self.faults);
        let (faults, rng) = &mut *guard;
        f(faults, rng)
    }

    pub(crate) fn mark_dead(&self, token: &str) {
        let now = self.clock.unix_millis();
        lock(&self.dead).entry(token.to_owned()).or_insert(now);
    }

    /// When `token` was marked dead (Unix ms), if it was.
    pub(crate) fn dead_since(&self, token: &str) -> Option<u64> {
        lock(&self.dead).get(token).copied()
    }
}

/// A request body, read up to the service's limit.
pub(crate) enum Body {
    Complete(Bytes),
    TooLarge,
}

/// What a service answers to one request.
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) body: Bytes,
    /// The error reason for statistics (APNs `reason`, FCM `errorCode`/`status`).
    pub(crate) reason: Option<String>,
    /// Set on success: the push to record and deliver once the answer is sent.
    pub(crate) accepted: Option<AcceptedPush>,
}

impl Reply {
    pub(crate) fn json(status: StatusCode, body: &serde_json::Value, reason: Option<&str>) -> Self {
        Self {
            status,
            headers: vec![(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json; charset=UTF-8"),
            )],
            body: Bytes::from(body.to_string()),
            reason: reason.map(str::to_owned),
            accepted: None,
        }
    }

    pub(crate) fn empty(status: StatusCode) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
            reason: None,
            accepted: None,
        }
    }

    pub(crate) fn header(mut self, name: HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.push((name, v));
        }
        self
    }
}

/// Per-connection state a service may keep (APNs pins a connection to one team).
pub(crate) struct ConnCtx {
    pub(crate) id: u64,
    pub(crate) team: Mutex<Option<String>>,
    /// The client certificate (DER) the peer presented, if any.
    pub(crate) client_cert: Option<Vec<u8>>,
    dead: AtomicBool,
    /// Held while a stream checks `dead`, sends its answer and records the push, so a reset
    /// never cuts between "recorded" and "answered".
    send_lock: Mutex<()>,
    limit: Arc<StreamLimit>,
    active: AtomicUsize,
}

/// A service plugged into the server: turns a request into a reply.
pub(crate) trait Service: Send + Sync + 'static {
    /// Largest request body read; longer ones reach `handle` as [`Body::TooLarge`].
    fn body_limit(&self) -> usize;
    fn handle(&self, conn: &ConnCtx, req: &http::request::Parts, body: Body) -> Reply;
    /// The reply for an injected fault, or None if the fault does not apply to this service.
    fn fault_reply(&self, fault: &FaultReason, push: &AcceptedPush) -> Option<Reply>;
}

/// A running server.
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Server {
    /// Serves on an already bound listener (bound by the caller, which may need the port
    /// before the service exists).
    pub(crate) fn start<S: Service>(
        listener: TcpListener,
        tls: Arc<rustls::ServerConfig>,
        max_concurrent_streams: u32,
        core: Arc<Core>,
        service: Arc<S>,
    ) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let acceptor = TlsAcceptor::from(tls);
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    accepted = listener.accept() => {
                        if let Ok((tcp, _)) = accepted {
                            conns.spawn(serve_connection(
                                tcp,
                                acceptor.clone(),
                                max_concurrent_streams,
                                core.clone(),
                                service.clone(),
                            ));
                        }
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
            conns.shutdown().await;
        });
        Ok(Self { addr, stop, task })
    }

    /// Stops accepting and closes every connection.
    pub(crate) async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

async fn serve_connection<S: Service>(
    tcp: TcpStream,
    acceptor: TlsAcceptor,
    max_concurrent_streams: u32,
    core: Arc<Core>,
    service: Arc<S>,
) {
    let _ = tcp.set_nodelay(true);
    let Ok(tls) = acceptor.accept(tcp).await else {
        return;
    };
    // HTTP/2 only, as at Apple: a client that did not negotiate h2 is dropped.
    if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
        return;
    }
    let client_cert = tls.get_ref().1.peer_certificates().and_then(|c| c.first());
    let ctx = Arc::new(ConnCtx {
        id: core.connection_ids.fetch_add(1, Ordering::Relaxed) + 1,
        team: Mutex::new(None),
        client_cert: client_cert.map(|c| c.as_ref().to_vec()),
        dead: AtomicBool::new(false),
        send_lock: Mutex::new(()),
        limit: Arc::new(StreamLimit::default()),
        active: AtomicUsize::new(0),
    });
    let io = SettingsIo::new(tls, ctx.limit.clone());
    let handshake = h2::server::Builder::new()
        .max_concurrent_streams(max_concurrent_streams)
        .handshake::<_, Bytes>(io);
    let Ok(mut conn) = handshake.await else {
        return;
    };
    core.recorder.stats(|s| s.connections += 1);
    tracing::debug!(conn = ctx.id, "connection open");
    let mut streams = JoinSet::new();
    loop {
        let next = tokio::select! {
            next = conn.accept() => next,
            Some(_) = streams.join_next(), if !streams.is_empty() => continue,
        };
        let Some(Ok((request, mut respond))) = next else {
            break;
        };
        let n = core.requests.fetch_add(1, Ordering::SeqCst) + 1;
        core.recorder.stats(|s| s.requests += 1);
        let faults = core.faults();
        if every(faults.reset_every, n) {
            core.recorder.stats(|s| s.resets_sent += 1);
            tracing::debug!(conn = ctx.id, request = n, "injecting connection reset");
            ctx.dead.store(true, Ordering::SeqCst);
            // Wait out any stream that is between "answered" and "recorded".
            drop(lock(&ctx.send_lock));
            drop((request, respond));
            let _ = tokio::time::timeout(
                RESET_FLUSH_WINDOW,
                std::future::poll_fn(|cx| conn.poll_closed(cx)),
            )
            .await;
            // Dropping the connection closes TCP without GOAWAY or TLS close_notify.
            return;
        }
        if ctx.limit.in_force() && ctx.active.load(Ordering::SeqCst) >= 1 {
            core.recorder.stats(|s| s.refused_streams += 1);
            respond.send_reset(Reason::REFUSED_STREAM);
            continue;
        }
        ctx.active.fetch_add(1, Ordering::SeqCst);
        streams.spawn(handle_stream(
            request,
            respond,
            ctx.clone(),
            core.clone(),
            service.clone(),
            faults.clone(),
        ));
        if every(faults.goaway_every, n) {
            core.recorder.stats(|s| s.goaways_sent += 1);
            tracing::debug!(conn = ctx.id, request = n, "injecting GOAWAY");
            conn.graceful_shutdown();
        }
    }
    // The connection is closed; let handlers that still run finish (their sends fail).
    while streams.join_next().await.is_some() {}
    tracing::debug!(conn = ctx.id, "connection closed");
}

fn every(period: Option<u32>, n: u64) -> bool {
    matches!(period, Some(k) if k > 0 && n.is_multiple_of(u64::from(k)))
}

/// Decrements the connection's active-stream count once: just before the answer is sent
/// (a client may open its next stream as soon as it sees this one end, so the count must
/// drop first), or when the stream task ends without answering.
struct ActiveGuard(Option<Arc<ConnCtx>>);

impl ActiveGuard {
    fn release(&mut self) {
        if let Some(ctx) = self.0.take() {
            ctx.active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.release();
    }
}

async fn handle_stream<S: Service>(
    request: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    ctx: Arc<ConnCtx>,
    core: Arc<Core>,
    service: Arc<S>,
    faults: Arc<Faults>,
) {
    let mut active = ActiveGuard(Some(ctx.clone()));
    let (parts, mut recv) = request.into_parts();
    let Some(body) = read_body(&mut recv, service.body_limit()).await else {
        return;
    };
    let mut reply = service.handle(&ctx, &parts, body);
    let mut injected = false;
    if let Some(push) = &reply.accepted {
        let fault = core.draw(|f, rng| rng.pick_error(f));
        if let Some(fault_reply) = fault.and_then(|f| service.fault_reply(&f, push)) {
            reply = fault_reply;
            injected = true;
        }
    }
    let delay = core.draw(|f, rng| rng.latency(&f.latency));
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if reply.status != StatusCode::OK
        && faults.drop_stream_limit_to_1_after_rejection
        && ctx.limit.request_drop_to_one()
    {
        core.recorder.stats(|s| s.stream_limit_drops += 1);
        tracing::debug!(conn = ctx.id, "lowering the stream limit to 1");
    }

    let _send = lock(&ctx.send_lock);
    if ctx.dead.load(Ordering::SeqCst) {
        return;
    }
    let mut response = Response::new(());
    *response.status_mut() = reply.status;
    for (name, value) in reply.headers {
        response.headers_mut().append(name, value);
    }
    let end_stream = reply.body.is_empty();
    active.release();
    let Ok(mut send) = respond.send_response(response, end_stream) else {
        return; // the client reset the stream: nothing was delivered
    };
    if !end_stream && send.send_data(reply.body, true).is_err() {
        return;
    }
    core.recorder.stats(|s| {
        *s.by_status.entry(reply.status.as_u16()).or_default() += 1;
        if let Some(reason) = &reply.reason {
            *s.by_reason.entry(reason.clone()).or_default() += 1;
        }
        if injected {
            s.injected_faults += 1;
        }
    });
    if let Some(push) = reply.accepted {
        core.recorder.record(push);
    }
    // `recv` lives until here so an unread request body is reset with NO_ERROR after the
    // answer, not cancelled before it.
    drop(recv);
}

/// Reads the body up to `limit` bytes; None if the client reset the stream.
async fn read_body(recv: &mut RecvStream, limit: usize) -> Option<Body> {
    let mut buf = BytesMut::new();
    while let Some(chunk) = recv.data().await {
        let chunk = chunk.ok()?;
        let _ = recv.flow_control().release_capacity(chunk.len());
        if buf.len() + chunk.len() > limit {
            return Some(Body::TooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
    Some(Body::Complete(buf.freeze()))
}
