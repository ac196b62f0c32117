//! The HTTPS listener of the intake API: accept, then in each connection's own task the TLS
//! handshake (bounded by a timeout) and HTTP/1.1 or HTTP/2 as ALPN chose, served by hyper
//! with the axum router. The accept loop never waits for a handshake, so a slow or hostile
//! client cannot stall everybody else's connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tracing::debug;

use super::ClientAddr;

/// A bound API listener, not yet serving.
pub struct ApiListener {
    listener: TcpListener,
    tls: TlsAcceptor,
    handshake_timeout: Duration,
}

/// Streams a connection may make the server reset before it is closed (see `serve`).
const LOCAL_RESET_CAP: usize = 1 << 16;

impl std::fmt::Debug for ApiListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiListener")
            .field("addr", &self.listener.local_addr().ok())
            .finish_non_exhaustive()
    }
}

impl ApiListener {
    /// Binds `addr`. The TLS server configuration is copied and given the ALPN protocols of
    /// HTTP/2 and HTTP/1.1.
    pub async fn bind(
        addr: SocketAddr,
        tls: &ServerConfig,
        handshake_timeout: Duration,
    ) -> std::io::Result<Self> {
        let mut config = tls.clone();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            listener: TcpListener::bind(addr).await?,
            tls: TlsAcceptor::from(Arc::new(config)),
            handshake_timeout,
        })
    }

    /// The bound address (with the actual port when 0 was asked for).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves `router` until `shutdown`; connections then finish their current requests.
    /// Connection tasks are tracked by `tracker`.
    pub async fn serve(self, router: Router, shutdown: CancellationToken, tracker: TaskTracker) {
        loop {
            let (tcp, peer) = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = self.listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(error) => {
                        // EMFILE and friends: back off instead of spinning.
                        debug!(%error, "API accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let tls = self.tls.clone();
            let router = router.clone();
            let shutdown = shutdown.clone();
            let timeout = self.handshake_timeout;
            tracker.spawn(async move {
                let _ = tcp.set_nodelay(true);
                let stream = match tokio::time::timeout(timeout, tls.accept(tcp)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(error)) => return debug!(%peer, %error, "API TLS handshake failed"),
                    Err(_) => return debug!(%peer, "API TLS handshake timed out"),
                };
                let svc = router.map_request(move |mut req: Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ClientAddr(peer));
                    req.map(axum::body::Body::new)
                });
                let mut builder = auto::Builder::new(TokioExecutor::new());
                // h2 ends a connection with GOAWAY `too_many_internal_resets` after 1,024
                // streams it reset itself over the connection's whole life, and since h2
                // 0.4.11 it counts resets of ordinary, completed requests (hyperium/h2#856):
                // a provisioning client on one HTTP/2 connection was cut off after some
                // 60,000 PUTs. The per-client rate limit bounds how fast a client can make
                // us reset streams, so the cap only needs to stop a runaway connection.
                builder
                    .http2()
                    .max_local_error_reset_streams(LOCAL_RESET_CAP);
                let conn =
                    builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc));
                tokio::pin!(conn);
                tokio::select! {
                    res = conn.as_mut() => {
                        if let Err(error) = res {
                            debug!(%peer, %error, "API connection ended with an error");
                        }
                    }
                    _ = shutdown.cancelled() => {
                        conn.as_mut().graceful_shutdown();
                        let _ = conn.await;
                    }
                }
            });
        }
    }
}
