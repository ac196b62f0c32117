//! A running gateway: transports, the core driver with the registration engine, the intake
//! API, and their orderly shutdown.
//!
//! Start-up order: TLS, the SIP listeners, then (with the API enabled) the key, the store and
//! the binding table; every stored device is queued for the registration engine, which
//! re-registers them under its global pace; then the core driver starts, and the API listener
//! last, so no device can be PUT before the engine runs.
//!
//! Shutdown order: (1) the `shutdown` token stops the accept loops and UDP receive loops, and
//! every connection stops reading; (2) the core driver answers what was already queued,
//! flushes, and closes every connection's write queue; (3) connections write out what they
//! hold and close; (4) whatever is still running when the grace period ends is aborted.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use tokio::sync::mpsc;
use tracing::{info, warn};
use vigil_proto::reg::RegConfig;
use vigil_proto::txn::{Transport, TxnConfig};

use crate::api::registrar::{ChannelRegistrar, RegCommand, Registrar};
use crate::api::server::ApiListener;
use crate::api::ApiState;
use crate::bindings::{Binding, BindingTable};
use crate::config::{split_host_port, Config, ListenSpec};
use crate::crypto::{KeyError, SecretBox};
use crate::driver::CoreDriver;
use crate::regdriver::{RegDriver, StaticUpstream, Upstreams};
use crate::resolve::{ResolvingUpstreams, UpstreamResolver, UpstreamResolverConfig};
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
    /// The registration settings are unusable.
    #[error("registration: {0}")]
    Reg(String),
    /// A configured push channel could not start (unreadable key, bad URL, wake bind).
    #[error("push: {0}")]
    Push(#[from] crate::push::PushStartError),
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
    push: Option<crate::push::PushService>,
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
        let (transports, udp) = Transports::bind(&config.sip, tls.clone(), tx, life.clone())
            .await
            .map_err(StartError::Bind)?;
        let (push, push_events) = start_push(config, tls.as_ref())?;
        let driver = CoreDriver::new(transports.clone(), TxnConfig::default());
        let (api_addr, api, store) = match (&tls, config.api.enabled) {
            (Some(tls), true) => {
                let api = prepare_api(config, &transports).await?;
                let (driver, commands) = (driver.with_registrations(api.reg), api.commands);
                life.tracker
                    .spawn(driver.run(udp, rx, Some(commands), life.shutdown.clone()));
                let addr = serve_api(config, tls, &life, &api.state, api.store.backend()).await?;
                (Some(addr), Some(api.state), Some(api.store))
            }
            _ => {
                life.tracker
                    .spawn(driver.run(udp, rx, None, life.shutdown.clone()));
                (None, None, None)
            }
        };
        if let Some(events) = push_events {
            tokio::spawn(drain_push_events(events, api.clone()));
        }
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
            push,
        })
    }

    /// The push service, when `[push]` configures a channel.
    pub fn push(&self) -> Option<&crate::push::PushService> {
        self.push.as_ref()
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
        if let Some(push) = &self.push {
            push.shutdown();
        }
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

/// The push service's outcome events, for [`drain_push_events`].
type PushEvents = tokio::sync::mpsc::UnboundedReceiver<vigil_proto::push::PushEvent>;

/// Starts the push service when `[push]` configures a channel; returns it with its outcome
/// events, which [`drain_push_events`] consumes once the binding table exists.
fn start_push(
    config: &Config,
    tls: Option<&TlsContext>,
) -> Result<(Option<crate::push::PushService>, Option<PushEvents>), StartError> {
    if config.push.is_empty() {
        return Ok((None, None));
    }
    let (service, events) = crate::push::PushService::start(&config.push, tls.map(|t| &*t.server))?;
    info!("push service started");
    Ok((Some(service), Some(events)))
}

/// Drains the push service's outcome events. A dead token (APNs 410, FCM UNREGISTERED) is
/// counted, logged without the token, and dropped from the bindings holding it, in memory
/// and in the store (see [`crate::push::dead_token`]), so no further push goes to it.
/// Without the intake API there are no bindings to drop it from.
async fn drain_push_events(mut events: PushEvents, api: Option<Arc<ApiState>>) {
    use vigil_proto::push::PushEvent;
    while let Some(event) = events.recv().await {
        if let PushEvent::DeadToken {
            credential, target, ..
        } = &event
        {
            metrics::counter!("vigil_push_dead_tokens_total").increment(1);
            warn!(?credential, "push token reported dead by the provider");
            if let Some(api) = &api {
                crate::push::dead_token::drop_dead_token(api, target).await;
            }
        }
    }
}

/// The API's state and the registration engine, ready to run.
struct PreparedApi {
    state: Arc<ApiState>,
    store: Arc<dyn Store>,
    reg: RegDriver,
    commands: mpsc::UnboundedReceiver<RegCommand>,
}

/// Opens the key, the store and the binding table, builds the registration engine, and
/// queues every stored binding for it (the engine re-registers them under its global pace).
async fn prepare_api(config: &Config, transports: &Transports) -> Result<PreparedApi, StartError> {
    let env_key = std::env::var(crate::crypto::KEY_ENV).ok();
    let secrets = SecretBox::load(
        env_key.as_deref(),
        config.crypto.key_file.as_deref(),
        &config.data_dir,
        config.crypto.production,
    )?;
    let reg_config = reg_config(config, transports)?;
    let upstreams = upstreams(config).await?;
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
    let (registrar, commands) = ChannelRegistrar::new();
    let mut restored = 0usize;
    // Page by page: a page is dropped before the next is read.
    crate::store::for_each_page(&*store, |page| {
        for device in page {
            match Binding::from_view(device) {
                Ok(b) => {
                    let b = Arc::new(b);
                    table.insert(b.clone());
                    // The driver has not started: the channel is open and unbounded.
                    let _ = Registrar::submit(&registrar, RegCommand::Upsert(b));
                    restored += 1;
                }
                Err(error) => warn!(%error, "stored device skipped"),
            }
        }
    })
    .await?;
    // Installs the metrics recorder, which the engine's counters need.
    let state = ApiState::new(
        table.clone(),
        batcher.clone(),
        secrets.clone(),
        Arc::new(registrar),
        config.api.clone(),
    );
    let mut reg = RegDriver::new(reg_config, table, batcher, secrets, upstreams)
        .map_err(|e| StartError::Reg(e.to_string()))?;
    reg.reserve(restored);
    if restored > 0 {
        info!(
            restored,
            pace = config.reg.max_registers_per_sec,
            "re-registering stored devices"
        );
    }
    Ok(PreparedApi {
        state,
        store,
        reg,
        commands,
    })
}

/// The engine's settings: `[reg]`, with the Contact address defaulting to a listener's.
fn reg_config(config: &Config, transports: &Transports) -> Result<RegConfig, StartError> {
    let local_addr = match &config.reg.contact_addr {
        Some(a) => a.clone(),
        None => {
            let listener = transports
                .local_addr(Transport::Udp)
                .or_else(|| transports.local_addr(Transport::Tcp))
                .ok_or_else(|| {
                    StartError::Reg("registering needs a UDP or TCP listener".to_owned())
                })?;
            if listener.ip().is_unspecified() {
                return Err(StartError::Reg(format!(
                    "the SIP listener {listener} is a wildcard address: set [reg] contact_addr \
                     to the address the upstream reaches the gateway at"
                )));
            }
            listener.to_string()
        }
    };
    let mut reg = RegConfig::new(local_addr);
    reg.max_registers_per_sec = config.reg.max_registers_per_sec;
    reg.pace_burst = config.reg.pace_burst;
    reg.user_agent = Some(concat!("Vigil/", env!("CARGO_PKG_VERSION")).to_owned());
    Ok(reg)
}

/// Upstream selection: the configured `[reg] upstream`, else RFC 3263 over `[reg]
/// dns_servers` (or the system's), else only IP-literal domains and proxies.
async fn upstreams(config: &Config) -> Result<Box<dyn Upstreams>, StartError> {
    let reg = &config.reg;
    if let Some(u) = &reg.upstream {
        let fixed = StaticUpstream::new(Some(resolve_upstream(u).await?))
            .with_tls_name(reg.upstream_tls_name.as_deref());
        return Ok(Box::new(fixed));
    }
    let resolver_config = UpstreamResolverConfig {
        name_servers: reg.dns_servers.clone(),
        ..UpstreamResolverConfig::default()
    };
    match UpstreamResolver::new(resolver_config, rand::random()) {
        Ok(resolver) => {
            info!("no [reg] upstream: devices' domains and proxies are located by RFC 3263");
            Ok(Box::new(ResolvingUpstreams::new(
                Arc::new(resolver),
                Duration::from_secs(reg.upstream_down_secs),
            )))
        }
        Err(error) => {
            warn!(%error, "no DNS resolver: only devices whose proxy or domain is an IP address can register");
            Ok(Box::new(StaticUpstream::new(None)))
        }
    }
}

/// `[reg] upstream` to an address, looked up once at start-up when it is a name.
async fn resolve_upstream(spec: &str) -> Result<(IpAddr, Option<u16>), StartError> {
    let (host, port) = split_host_port(spec)
        .ok_or_else(|| StartError::Reg(format!("invalid [reg] upstream {spec:?}")))?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok((ip, port));
    }
    let found = tokio::net::lookup_host((bare, port.unwrap_or(5060)))
        .await
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| StartError::Reg(format!("[reg] upstream {host} does not resolve")))?;
    Ok((found.ip(), port))
}

/// Binds the HTTPS intake API and starts serving it and its idle sweep.
async fn serve_api(
    config: &Config,
    tls: &TlsContext,
    life: &Lifecycle,
    state: &Arc<ApiState>,
    backend: &str,
) -> Result<SocketAddr, StartError> {
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
    info!(%addr, backend, devices = state.table.len(), "intake API started");
    Ok(addr)
}
