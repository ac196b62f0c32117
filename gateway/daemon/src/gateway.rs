//! A running gateway: transports, the core driver, and their orderly shutdown.
//!
//! Shutdown order: (1) the `shutdown` token stops the accept loops and UDP receive loops, and
//! every connection stops reading; (2) the core driver answers what was already queued,
//! flushes, and closes every connection's write queue; (3) connections write out what they
//! hold and close; (4) whatever is still running when the grace period ends is aborted.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use tokio::sync::mpsc;
use tracing::{info, warn};
use vigil_proto::txn::{Transport, TxnConfig};

use crate::config::{Config, ListenSpec};
use crate::driver::CoreDriver;
use crate::tls::{TlsContext, TlsSetupError};
use crate::transport::{Lifecycle, Transports};

/// Capacity of the channel from all transports to the core driver.
const INBOUND_QUEUE: usize = 4096;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The data directory could not be created.
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    /// A listener could not be bound.
    #[error("cannot bind SIP listeners: {0}")]
    Bind(std::io::Error),
}

/// How shutdown went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Every task finished within the grace period (nothing was aborted).
    pub graceful: bool,
}

/// A running gateway; see the module documentation.
#[derive(Debug)]
pub struct Gateway {
    transports: Transports,
    life: Lifecycle,
    grace: Duration,
    tls: Option<TlsContext>,
}

impl Gateway {
    /// Validates `config`, prepares the data directory and TLS, binds every listener and
    /// starts the core driver.
    pub async fn start(config: &Config) -> Result<Self, StartError> {
        config.validate()?;
        std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let needs_tls = config
            .sip
            .listen
            .iter()
            .any(|l| l.transport == Transport::Tls);
        let tls = if needs_tls {
            Some(TlsContext::load(&config.sip.tls, &config.data_dir)?)
        } else {
            None
        };
        let life = Lifecycle::new();
        let (tx, rx) = mpsc::channel(INBOUND_QUEUE);
        let transports = Transports::bind(&config.sip, tls.clone(), tx, life.clone())
            .await
            .map_err(StartError::Bind)?;
        let driver = CoreDriver::new(transports.clone(), TxnConfig::default());
        life.tracker.spawn(driver.run(rx, life.shutdown.clone()));
        info!(
            listeners = transports.listeners().len(),
            data_dir = %config.data_dir.display(),
            "gateway started"
        );
        Ok(Self {
            transports,
            life,
            grace: config.sip.shutdown_grace(),
            tls,
        })
    }

    /// The bound listeners, with actual ports.
    pub fn listeners(&self) -> &[ListenSpec] {
        self.transports.listeners()
    }

    /// The first bound address of `transport`.
    pub fn local_addr(&self, transport: Transport) -> Option<SocketAddr> {
        self.transports.local_addr(transport)
    }

    /// The TLS server certificate chain, if a TLS listener runs.
    pub fn tls_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        self.tls.as_ref().map(|t| t.cert_chain.as_slice())
    }

    /// The transports handle (connection counts, sending).
    pub fn transports(&self) -> &Transports {
        &self.transports
    }

    /// A token that starts a graceful shutdown when cancelled (e.g. from a signal handler).
    pub fn shutdown_token(&self) -> tokio_util::sync::CancellationToken {
        self.life.shutdown.clone()
    }

    /// Stops gracefully: see the module documentation. Returns once every task has ended.
    pub async fn shutdown(self) -> ShutdownReport {
        self.life.shutdown.cancel();
        self.wait().await
    }

    /// Waits until shutdown has been requested through [`Self::shutdown_token`], then
    /// completes it.
    pub async fn run_until_shutdown(self) -> ShutdownReport {
        self.life.shutdown.cancelled().await;
        self.wait().await
    }

    async fn wait(self) -> ShutdownReport {
        info!(grace = ?self.grace, "shutting down");
        self.life.tracker.close();
        let graceful = tokio::time::timeout(self.grace, self.life.tracker.wait())
            .await
            .is_ok();
        if !graceful {
            warn!("grace period over: aborting remaining connections");
            self.life.abort.cancel();
            self.life.tracker.wait().await;
        }
        info!(graceful, "gateway stopped");
        ShutdownReport { graceful }
    }
}
