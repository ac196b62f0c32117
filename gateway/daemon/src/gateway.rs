//! A running gateway: transports, the core driver, and their orderly shutdown.
//!
//! Shutdown order: (1) the `shutdown` token stops the accept loops and UDP receive loops, and
//! every connection stops reading; (2) the core driver answers what was already queued,
//! flushes, and closes every connection's write queue; (3) connections write out what they
//! hold and close; (4) whatever is still running when the grace period ends is aborted.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use tokio::sync::mpsc;
use tracing::{info, warn};
use vigil_proto::txn::{Transport, TxnConfig};

use crate::api::registrar::{ChannelRegistrar, RegCommand};
use crate::api::server::ApiListener;
use crate::api::ApiState;
use crate::bindings::{Binding, BindingTable};
use crate::config::{Config, ListenSpec};
use crate::crypto::{KeyError, SecretBox};
use crate::driver::CoreDriver;
use crate::store::{BatchConfig, Store, StoreError, WriteBatcher};
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
    /// The key for secrets at rest is missing or unusable.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The device store could not be opened or read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The API listener could not be bound.
    #[error("cannot bind the API listener: {0}")]
    ApiBind(std::io::Error),
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
    api_addr: Option<SocketAddr>,
    api: Option<Arc<ApiState>>,
    store: Option<Arc<dyn Store>>,
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
        let needs_tls = config.api.enabled
            || config
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
        let (api_addr, api, store) = match (&tls, config.api.enabled) {
            (Some(tls), true) => {
                let (addr, state, store) = start_api(config, tls, &life).await?;
                (Some(addr), Some(state), Some(store))
            }
            _ => (None, None, None),
        };
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
            api_addr,
            api,
            store,
        })
    }

    /// The bound address of the HTTPS intake API, if it runs.
    pub fn api_addr(&self) -> Option<SocketAddr> {
        self.api_addr
    }

    /// The intake API's shared state (binding table, store writer), if it runs.
    pub fn api_state(&self) -> Option<&Arc<ApiState>> {
        self.api.as_ref()
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
        if let Some(store) = &self.store {
            store.close().await;
        }
        info!(graceful, "gateway stopped");
        ShutdownReport { graceful }
    }
}

/// Opens the key, the store and the binding table, re-submits every stored binding to the
/// registration engine (which paces them), and starts the HTTPS intake API and its idle sweep.
async fn start_api(
    config: &Config,
    tls: &TlsContext,
    life: &Lifecycle,
) -> Result<(SocketAddr, Arc<ApiState>, Arc<dyn Store>), StartError> {
    let env_key = std::env::var(crate::crypto::KEY_ENV).ok();
    let secrets = SecretBox::load(
        env_key.as_deref(),
        config.crypto.key_file.as_deref(),
        &config.data_dir,
        config.crypto.production,
    )?;
    let store = crate::store::open(config.store.url.as_deref(), &config.data_dir).await?;
    let batcher = WriteBatcher::spawn(
        store.clone(),
        BatchConfig {
            window: Duration::from_millis(config.store.batch_window_ms),
            max_batch: config.store.max_batch,
            ..BatchConfig::default()
        },
    );
    let table = Arc::new(BindingTable::new());
    // The engine seam: commands queue here until the core driver takes them (see
    // `api::registrar`). Until the driver consumes this channel, a drain task counts them.
    let (registrar, mut commands) = ChannelRegistrar::new();
    let mut restored = 0usize;
    for record in store.load_all().await? {
        match Binding::from_record(&record) {
            Ok(b) => {
                let b = Arc::new(b);
                table.insert(b.clone());
                let _ = crate::api::registrar::Registrar::submit(&registrar, RegCommand::Upsert(b));
                restored += 1;
            }
            Err(error) => warn!(%error, "stored device skipped"),
        }
    }
    let shutdown = life.shutdown.clone();
    life.tracker.spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                cmd = commands.recv() => match cmd {
                    Some(_) => metrics::counter!("vigil_reg_commands_unrouted_total").increment(1),
                    None => return,
                },
            }
        }
    });
    let state = ApiState::new(
        table,
        batcher,
        secrets,
        Arc::new(registrar),
        config.api.clone(),
    );
    let listener = ApiListener::bind(
        config.api.listen,
        &tls.server,
        Duration::from_secs(config.api.tls_handshake_timeout_secs),
    )
    .await
    .map_err(StartError::ApiBind)?;
    let addr = listener.local_addr().map_err(StartError::ApiBind)?;
    crate::api::spawn_idle_sweep(state.clone(), life.shutdown.clone());
    life.tracker.spawn(listener.serve(
        crate::api::router(state.clone()),
        life.shutdown.clone(),
        life.tracker.clone(),
    ));
    info!(%addr, backend = store.backend(), restored, "intake API started");
    Ok((addr, state, store))
}
