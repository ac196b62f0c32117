//! The registration side of the core driver: the sans-IO engine
//! [`vigil_proto::reg::Registrations`] wired to the intake API, the binding table, the store
//! and the transports.
//!
//! [`RegDriver`] lives inside the one core-driver task ([`crate::driver::CoreDriver`]), next
//! to the UAS transaction layer; there is no task per binding and no second timer structure.
//! Its inputs, all fed with the driver's clock reading:
//!
//! - [`RegCommand`]s from the API ([`RegDriver::handle_command`]): `Upsert` opens the sealed
//!   password, picks the upstream ([`Upstreams`]) and calls `add_binding`/`update_binding`;
//!   `Remove` calls `remove_binding` (an Expires: 0 REGISTER, then the binding is forgotten).
//! - Messages the driver routes here ([`RegDriver::wants`]): every response whose CSeq method
//!   is REGISTER (only the engine sends REGISTER), and OPTIONS pings from an upstream.
//! - Timeouts and transport errors.
//!
//! Its outputs, drained by [`RegDriver::drain`]: transmits go to the [`Transports`] (many
//! bindings share one TCP/TLS connection per upstream, through the connection table), and
//! every [`RegEvent`] goes to [`apply_event`] (binding state for the API, the store) and to
//! the Prometheus counters.
//!
//! Upstream selection is a seam: [`Upstreams::select`] maps a binding's domain, outbound
//! proxy and transport to a [`Route`] (the [`Peer`] its REGISTERs go to and the name that
//! peer's TLS certificate must carry), or says the answer is pending. [`StaticUpstream`] is
//! the configured `[reg] upstream` (or an IP-literal proxy/domain);
//! [`crate::resolve::ResolvingUpstreams`] locates names by RFC 3263 in spawned tasks:
//!
//! - A binding whose upstream is being looked up waits (no REGISTER, no engine entry) in
//!   `waiting`, keyed by the name, so a thousand bindings of one domain wait for one lookup.
//!   When it finishes ([`Upstreams::poll_resolved`]), its bindings go through `upsert`
//!   again, in batches of [`RESOLVED_BATCH`] per drain so a restart's million bindings do
//!   not stall the driver. A failed lookup reports them retrying (reason
//!   [`Reason::UpstreamNotFound`], next attempt at the lookup's retry time).
//! - Failover (RFC 3263 §4.3): a `Retrying` event caused by a timeout, a transport error or
//!   a 503 marks the target down ([`Upstreams::handle_failure`]) and moves the binding to
//!   the next target at once ([`Registrations::move_upstream`], which keeps the attempt
//!   count); when every target failed, the next one in turn is tried after the engine's
//!   backoff, so a dead domain is retried with growing pauses, never in a loop. A binding
//!   keeps the target it registered at until that fails or the device changes; a refreshed
//!   lookup only serves the bindings that select afterwards.
//! - TLS: the route's name is handed to the transports ([`Transports::set_tls_name`])
//!   before the first send to its peer, so the certificate is verified against the SIP
//!   domain that was resolved (RFC 5922 §4), not the address.
//!
//! Backpressure: a REGISTER that finds a shared TCP/TLS connection's write queue full is
//! kept (up to [`MAX_DEFERRED`]) and sent again when the queue has room, checked every
//! [`DEFERRED_RETRY`]; past that bound it is dropped and its own transaction's timeout
//! covers it. A full queue never fails the other bindings on that connection.
//!
//! Logs name bindings by Contact token only; the password is opened only to hand it to the
//! engine, which keeps it in its own zeroed-on-drop allocation.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics::{Counter, Histogram};
use tokio::sync::Notify;
use tracing::{debug, warn};
use vigil_proto::auth::Password;
use vigil_proto::msg::{Message, Method};
use vigil_proto::reg::{
    BindingConfig, BindingError, BindingId, RegConfig, RegConfigError, RegEvent, Registrations,
    RetryCause,
};
use vigil_proto::resolve::Failure;
use vigil_proto::rng::CoreRng;
use vigil_proto::txn::{Peer, Transmit, Transport, TxnStats};

use crate::api::registrar::{apply_event, unix_ms_now, Applied, RegCommand};
use crate::bindings::{Binding, BindingTable, ContactToken, DeviceState, Reason, Status, Text};
use crate::config::split_host_port;
use crate::crypto::SecretBox;
use crate::resolve::ResolveError;
use crate::store::{WriteBatcher, WriteOp};
use crate::transport::{SendFailure, Transports};

/// Bindings whose lookup finished that are handed to the engine per drain at most.
pub const RESOLVED_BATCH: usize = 512;
/// REGISTERs kept while their connection's write queue is full, at most.
pub const MAX_DEFERRED: usize = 4096;
/// How often kept REGISTERs are offered to their connection again.
pub const DEFERRED_RETRY: Duration = Duration::from_millis(10);

/// What a binding asks of upstream selection.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamTarget<'a> {
    /// The SIP domain of the account (`host[:port]`).
    pub domain: &'a str,
    /// The device's outbound proxy, `host[:port]`, if it has one.
    pub proxy: Option<&'a str>,
    /// The transport the device asked for (explicitly, or through its proxy URI); UDP when
    /// it named none.
    pub transport: Transport,
    /// Whether the device named the transport (an RFC 3263 resolver may pick one otherwise).
    pub transport_explicit: bool,
}

/// Where a binding's REGISTERs go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The address and transport.
    pub peer: Peer,
    /// The name the peer's TLS certificate must carry (RFC 5922 §4: the SIP domain that
    /// was resolved); `None`: its IP address.
    pub tls_name: Option<Arc<str>>,
}

/// One upstream name being located (the resolved host, lower case, its port and transport),
/// which bindings can wait for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UpstreamKey {
    /// Host name.
    pub host: Arc<str>,
    /// Port, if the URI named one.
    pub port: Option<u16>,
    /// Transport, if the device named one.
    pub transport: Option<Transport>,
}

/// The answer of [`Upstreams::select`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Send here.
    Ready(Route),
    /// Being located; [`Upstreams::poll_resolved`] reports the key when the answer is in.
    Pending(UpstreamKey),
    /// Locating failed; it is tried again at `retry_at` and then reported through
    /// [`Upstreams::poll_resolved`].
    Failed {
        key: UpstreamKey,
        error: ResolveError,
        retry_at: Instant,
    },
    /// No way to reach it (no resolver for a name, or a malformed host).
    Unreachable,
}

/// The answer of [`Upstreams::handle_failure`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failover {
    /// Try this target at once.
    Next(Route),
    /// Every target failed lately: try this one when the backoff is over.
    Exhausted(Route),
    /// No alternative: retry the same target after the backoff.
    Stay,
}

/// Maps a binding to the route its REGISTERs take; see the module documentation.
///
/// Every method is called in the core driver's task, so none may block: a resolver answers
/// from its cache or says [`Selection::Pending`] and looks up elsewhere.
pub trait Upstreams: Send + 'static {
    /// The route for `target` now.
    fn select(&mut self, now: Instant, target: &UpstreamTarget<'_>) -> Selection;

    /// `failed` timed out, failed or answered 503 for a binding of `target`: where that
    /// binding goes next.
    fn handle_failure(
        &mut self,
        _now: Instant,
        _target: &UpstreamTarget<'_>,
        _failed: Peer,
        _why: Failure,
    ) -> Failover {
        Failover::Stay
    }

    /// The next name whose lookup finished (successfully or not) since the last call.
    fn poll_resolved(&mut self, _now: Instant) -> Option<UpstreamKey> {
        None
    }

    /// When [`Self::handle_timeout`] is next due (a failed lookup's retry).
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    /// Fires due deadlines.
    fn handle_timeout(&mut self, _now: Instant) {}

    /// Notified when a lookup finishes, so the driver wakes to call
    /// [`Self::poll_resolved`]; `None` if lookups never run in the background.
    fn waker(&self) -> Option<Arc<Notify>> {
        None
    }
}

/// Every REGISTER to one configured address (`[reg] upstream`), or, without one, to the
/// device's outbound proxy or domain when that is an IP address (RFC 3263 §4.2: a numeric
/// host is used as is, port 5060, or 5061 for TLS).
#[derive(Debug, Clone, Default)]
pub struct StaticUpstream {
    upstream: Option<(IpAddr, Option<u16>)>,
    tls_name: Option<Arc<str>>,
}

impl StaticUpstream {
    /// Sends everything to `ip` (on `port`, or the transport's default port).
    pub fn new(upstream: Option<(IpAddr, Option<u16>)>) -> Self {
        Self {
            upstream,
            tls_name: None,
        }
    }

    /// Verifies the configured upstream's TLS certificate against `name` (`[reg]
    /// upstream_tls_name`) instead of its address.
    pub fn with_tls_name(mut self, name: Option<&str>) -> Self {
        self.tls_name = name.map(Arc::from);
        self
    }

    fn peer_for(&self, target: &UpstreamTarget<'_>) -> Option<Peer> {
        let transport = target.transport;
        let (ip, port) = match self.upstream {
            Some(u) => u,
            None => {
                let (host, port) = split_host_port(target.proxy.unwrap_or(target.domain))?;
                let ip = host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse()
                    .ok()?;
                (ip, port)
            }
        };
        let addr = SocketAddr::new(ip, port.unwrap_or_else(|| default_port(transport)));
        Some(Peer { transport, addr })
    }
}

fn default_port(t: Transport) -> u16 {
    if t == Transport::Tls {
        5061
    } else {
        5060
    }
}

impl Upstreams for StaticUpstream {
    fn select(&mut self, _now: Instant, target: &UpstreamTarget<'_>) -> Selection {
        match self.peer_for(target) {
            Some(peer) => Selection::Ready(Route {
                peer,
                // The configured name belongs to the configured address only.
                tls_name: self.upstream.and(self.tls_name.clone()),
            }),
            None => Selection::Unreachable,
        }
    }
}

/// What `b` asks of upstream selection: its domain, its outbound proxy (without the URI
/// scheme and parameters) and its transport; `None` when the proxy is malformed.
fn target_of(b: &Binding) -> Option<UpstreamTarget<'_>> {
    let proxy_field = b.text(Text::OutboundProxy);
    let (proxy, proxy_transport) = if proxy_field.is_empty() {
        (None, None)
    } else {
        let (hostport, t) = parse_proxy(proxy_field)?;
        (Some(hostport), t)
    };
    let explicit = Transport::from_via_token(b.text(Text::Transport)).or(proxy_transport);
    Some(UpstreamTarget {
        domain: b.text(Text::Domain),
        proxy,
        transport: explicit.unwrap_or(Transport::Udp),
        transport_explicit: explicit.is_some(),
    })
}

/// A device's outbound proxy as the engine puts it in its Route (`host[:port]`), and the
/// transport its URI names: from the API's `host[:port]` or `sip:`/`sips:` URI forms
/// (`sips:` means TLS).
fn parse_proxy(p: &str) -> Option<(&str, Option<Transport>)> {
    let (rest, mut transport) = if let Some(r) = p.strip_prefix("sips:") {
        (r, Some(Transport::Tls))
    } else if let Some(r) = p.strip_prefix("sip:") {
        (r, None)
    } else {
        (p, None)
    };
    let mut parts = rest.split(';');
    let hostport = parts.next()?;
    for param in parts {
        if let Some(("transport", t)) = param.split_once('=') {
            transport = transport.or(Transport::from_via_token(t));
        }
    }
    split_host_port(hostport)?;
    Some((hostport, transport))
}

/// Why a binding could not be handed to the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Refusal {
    /// The sealed password cannot be opened (was the secret key changed?).
    Sealed,
    /// No upstream for it.
    NoUpstream,
    /// The engine refused a field.
    Invalid,
    /// Its upstream is being located: it waits.
    Pending(UpstreamKey),
    /// Locating its upstream failed; it waits for the next lookup at `retry_at`.
    Unresolved {
        key: UpstreamKey,
        error: ResolveError,
        retry_at: Instant,
    },
}

/// Prometheus handles resolved once (a counter lookup per REGISTER would cost more than
/// the REGISTER's bookkeeping).
#[derive(Debug)]
struct Meters {
    sent: Counter,
    retransmitted: Counter,
    ok: Counter,
    refresh_lag: Histogram,
}

impl Meters {
    fn new() -> Self {
        Self {
            sent: metrics::counter!("vigil_register_sent_total"),
            retransmitted: metrics::counter!("vigil_register_retransmitted_total"),
            ok: metrics::counter!("vigil_register_ok_total"),
            refresh_lag: metrics::histogram!("vigil_register_refresh_lag_seconds"),
        }
    }

    fn failed(&self, status: &str, permanent: bool) {
        let kind = if permanent { "permanent" } else { "retry" };
        metrics::counter!("vigil_register_failed_total", "status" => status.to_owned(), "kind" => kind)
            .increment(1);
    }
}

/// The registration engine and its bindings to the rest of the shell; see the module
/// documentation.
pub struct RegDriver {
    engine: Registrations,
    table: Arc<BindingTable>,
    batcher: WriteBatcher,
    secrets: SecretBox,
    upstreams: Box<dyn Upstreams>,
    /// Addresses of every upstream a binding was sent to: OPTIONS from them are the
    /// engine's keep-alive pings.
    upstream_ips: HashSet<IpAddr>,
    /// Bindings waiting for their upstream's lookup, by name.
    waiting: HashMap<UpstreamKey, Vec<BindingId>>,
    /// Bindings whose lookup finished, to go through `upsert` again.
    resolved: VecDeque<BindingId>,
    /// TLS names of routes chosen since the last drain, for the transports.
    tls_names: Vec<(Peer, Arc<str>)>,
    /// REGISTERs that found their connection's write queue full.
    deferred: VecDeque<Transmit>,
    /// The peers of `deferred`.
    deferred_peers: HashSet<Peer>,
    /// When the deferred REGISTERs are offered again.
    deferred_at: Option<Instant>,
    /// The engine's transaction counters at the last drain (metrics are deltas).
    last_stats: TxnStats,
    meters: Meters,
}

impl std::fmt::Debug for RegDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegDriver")
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

impl RegDriver {
    /// A driver for an engine with `config`, seeded from the OS. Install the metrics
    /// recorder (the API state does) before calling this, or the counters go nowhere.
    pub fn new(
        config: RegConfig,
        table: Arc<BindingTable>,
        batcher: WriteBatcher,
        secrets: SecretBox,
        upstreams: Box<dyn Upstreams>,
    ) -> Result<Self, RegConfigError> {
        let engine = Registrations::new(config, CoreRng::from_seed(rand::random()))?;
        Ok(Self {
            engine,
            table,
            batcher,
            secrets,
            upstreams,
            upstream_ips: HashSet::new(),
            waiting: HashMap::new(),
            resolved: VecDeque::new(),
            tls_names: Vec::new(),
            deferred: VecDeque::new(),
            deferred_peers: HashSet::new(),
            deferred_at: None,
            last_stats: TxnStats::default(),
            meters: Meters::new(),
        })
    }

    /// The engine (for its status snapshots and memory report).
    pub fn engine(&self) -> &Registrations {
        &self.engine
    }

    /// Sizes the engine for `additional` more bindings at once (a restart loading the store).
    pub fn reserve(&mut self, additional: usize) {
        self.engine.reserve(additional);
    }

    /// Whether an incoming message is the engine's: a response to a REGISTER, or an OPTIONS
    /// ping from one of the upstreams.
    pub fn wants(&self, msg: &Message, peer: &Peer) -> bool {
        if msg.is_request() {
            msg.method() == Some(Method::Options) && self.upstream_ips.contains(&peer.addr.ip())
        } else {
            msg.cseq().is_ok_and(|c| c.method == Method::Register)
        }
    }

    /// Feeds a message that [`Self::wants`].
    pub fn handle_incoming(&mut self, now: Instant, msg: Message, peer: Peer) {
        self.engine.handle_incoming(now, msg, peer);
    }

    /// Fires the engine's and upstream selection's due deadlines.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.engine.handle_timeout(now);
        self.upstreams.handle_timeout(now);
    }

    /// The transport to `peer` failed.
    pub fn handle_transport_error(&mut self, now: Instant, peer: Peer) {
        // Their transactions end now; sending them later would only draw stray answers.
        self.deferred.retain(|t| t.peer != peer);
        self.deferred_peers.remove(&peer);
        self.engine.handle_transport_error(now, peer);
    }

    /// The next deadline: the engine's, a lookup retry, deferred sends, or at once when
    /// resolved bindings wait for their turn.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let resolved = self.resolved.front().map(|_| Instant::now());
        [
            self.engine.poll_timeout(),
            self.upstreams.poll_timeout(),
            self.deferred_at,
            resolved,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Notified when an upstream lookup finishes: the driver then wakes and drains, which
    /// starts the bindings that waited for it. `None` without background lookups.
    pub fn wake_signal(&self) -> Option<Arc<Notify>> {
        self.upstreams.waker()
    }

    /// Applies one command from the API.
    pub fn handle_command(&mut self, now: Instant, cmd: RegCommand) {
        match cmd {
            RegCommand::Upsert(b) => self.upsert(now, &b),
            RegCommand::Remove(token) => {
                // Unknown: it never reached the engine (refused) or is already gone.
                let _ = self.engine.remove_binding(now, BindingId(token.0));
            }
        }
    }

    fn upsert(&mut self, now: Instant, b: &Binding) {
        let id = BindingId(b.token.0);
        let known = self.engine.status(id).is_some();
        let cfg = match self.binding_config(now, b) {
            Ok(cfg) => cfg,
            Err(Refusal::Pending(key)) => {
                // A known binding keeps its current upstream until the answer is in.
                self.waiting.entry(key).or_default().push(id);
                return;
            }
            Err(Refusal::Unresolved {
                key,
                error,
                retry_at,
            }) => {
                self.waiting.entry(key).or_default().push(id);
                if !known {
                    debug!(token = %b.token, %error, "upstream not found: waiting for the next lookup");
                    self.unresolved(now, b, retry_at);
                }
                return;
            }
            Err(why) => {
                if known {
                    // The old settings must not keep registering after a change that
                    // cannot be applied.
                    let _ = self.engine.remove_binding(now, id);
                }
                self.refuse(b, why);
                return;
            }
        };
        let result = if known {
            self.engine.update_binding(now, id, cfg).map(|_| ())
        } else {
            self.engine.add_binding(now, id, cfg)
        };
        match result {
            Ok(()) => {}
            Err(BindingError::InvalidField(field)) => {
                debug!(token = %b.token, ?field, "binding refused by the engine");
                self.refuse(b, Refusal::Invalid);
            }
            // Being removed: the API forgot this token already, so its DELETE wins.
            Err(error) => debug!(token = %b.token, %error, "binding change ignored"),
        }
    }

    fn binding_config(&mut self, now: Instant, b: &Binding) -> Result<BindingConfig, Refusal> {
        let target = target_of(b).ok_or(Refusal::Invalid)?;
        let proxy = target.proxy;
        let route = match self.upstreams.select(now, &target) {
            Selection::Ready(route) => route,
            Selection::Pending(key) => return Err(Refusal::Pending(key)),
            Selection::Failed {
                key,
                error,
                retry_at,
            } => {
                return Err(Refusal::Unresolved {
                    key,
                    error,
                    retry_at,
                })
            }
            Selection::Unreachable => return Err(Refusal::NoUpstream),
        };
        let upstream = route.peer;
        self.use_route(route);
        let plain = self
            .secrets
            .open(b.password_sealed())
            .map_err(|_| Refusal::Sealed)?;
        let password = String::from_utf8(plain).map_err(|_| Refusal::Sealed)?;
        let auth_user = b.text(Text::AuthUsername);
        Ok(BindingConfig {
            user: b.text(Text::Username).to_owned(),
            domain: b.text(Text::Domain).to_owned(),
            auth_user: (!auth_user.is_empty()).then(|| auth_user.to_owned()),
            password: Password::new(password),
            outbound_proxy: proxy.map(str::to_owned),
            upstream,
            expires: b.expires,
            contact_token: b.token.to_string(),
        })
    }

    /// Remembers what a route needs before the first send over it: its address for the
    /// OPTIONS routing, its TLS name for the transports.
    fn use_route(&mut self, route: Route) {
        self.upstream_ips.insert(route.peer.addr.ip());
        if let (Transport::Tls, Some(name)) = (route.peer.transport, route.tls_name) {
            self.tls_names.push((route.peer, name));
        }
    }

    /// Reports a binding whose upstream could not be located as retrying, in the table and
    /// the store; the next lookup is at `retry_at`.
    fn unresolved(&self, now: Instant, b: &Binding, retry_at: Instant) {
        self.meters.failed("dns", false);
        let in_ms = retry_at.saturating_duration_since(now).as_millis() as u64;
        self.table.set_status(
            b,
            Status {
                state: DeviceState::Retrying,
                last_status: 0,
                granted_expires: 0,
                next_at_ms: unix_ms_now() + in_ms,
                reason: Reason::UpstreamNotFound,
            },
        );
        let op = WriteOp::SetState {
            device_id: b.device_id().to_owned(),
            state: DeviceState::Retrying.as_str(),
            last_status: 0,
        };
        if self.batcher.submit(op).is_err() {
            debug!(token = %b.token, "store queue full: state update skipped");
        }
    }

    /// Hands up to [`RESOLVED_BATCH`] bindings whose lookup finished to `upsert` again.
    fn start_resolved(&mut self, now: Instant) {
        while let Some(key) = self.upstreams.poll_resolved(now) {
            if let Some(ids) = self.waiting.remove(&key) {
                self.resolved.extend(ids);
            }
        }
        for _ in 0..RESOLVED_BATCH {
            let Some(id) = self.resolved.pop_front() else {
                break;
            };
            // Deleted while it waited: the API forgot it, and so do we.
            if let Some(b) = self.table.by_token(ContactToken(id.0)) {
                self.upsert(now, &b);
            }
        }
    }

    /// Reports a binding the engine cannot take as failed, in the table and the store.
    fn refuse(&self, b: &Binding, why: Refusal) {
        let reason = match why {
            Refusal::NoUpstream => {
                debug!(token = %b.token, "no upstream for this binding");
                Reason::TransportError
            }
            Refusal::Sealed => {
                warn!(token = %b.token, "stored password cannot be opened: was the secret key changed?");
                Reason::Rejected
            }
            Refusal::Invalid => Reason::Rejected,
            // Handled by `upsert`; listed for exhaustiveness.
            Refusal::Pending(_) | Refusal::Unresolved { .. } => Reason::UpstreamNotFound,
        };
        self.meters.failed("local", true);
        self.table.set_status(
            b,
            Status {
                state: DeviceState::Failed,
                last_status: 0,
                granted_expires: 0,
                next_at_ms: 0,
                reason,
            },
        );
        let op = WriteOp::SetState {
            device_id: b.device_id().to_owned(),
            state: DeviceState::Failed.as_str(),
            last_status: 0,
        };
        if self.batcher.submit(op).is_err() {
            debug!(token = %b.token, "store queue full: state update skipped");
        }
    }

    /// Starts bindings whose upstream lookup finished, sends the engine's transmits (and
    /// those kept from a full queue) and applies its events; returns whether there were any.
    pub fn drain(&mut self, now: Instant, transports: &Transports) -> bool {
        let mut progressed = self.send_deferred(now, transports);
        self.start_resolved(now);
        loop {
            let mut round = false;
            for (peer, name) in self.tls_names.drain(..) {
                if let Err(error) = transports.set_tls_name(peer, &name) {
                    debug!(%peer, %error, "TLS name unusable: the address is verified instead");
                }
            }
            while let Some(t) = self.engine.poll_transmit() {
                round = true;
                self.send(now, transports, t);
            }
            while let Some(event) = self.engine.poll_event() {
                round = true;
                self.on_event(now, &event);
            }
            if !round {
                break;
            }
            progressed = true;
        }
        // Set when the first REGISTER waits, not pushed back by every busy drain.
        if self.deferred.is_empty() {
            self.deferred_at = None;
        } else if self.deferred_at.is_none() {
            self.deferred_at = Some(now + DEFERRED_RETRY);
        }
        if progressed {
            let stats = self.engine.transactions().stats();
            self.meters
                .sent
                .increment(stats.client_started - self.last_stats.client_started);
            self.meters
                .retransmitted
                .increment(stats.retransmissions - self.last_stats.retransmissions);
            self.last_stats = stats;
        }
        progressed
    }

    /// Sends one transmit; a full TCP/TLS write queue keeps it for later (see the module
    /// documentation) instead of failing every binding on that connection.
    fn send(&mut self, now: Instant, transports: &Transports, t: Transmit) {
        // Behind REGISTERs already waiting for the same connection: keep their order.
        if !self.deferred.is_empty() && self.deferred_peers.contains(&t.peer) {
            self.defer(t);
            return;
        }
        let peer = t.peer;
        match transports.send(peer, t.bytes.clone()) {
            Ok(()) => {}
            // A full UDP socket buffer is packet loss: retransmission covers it.
            Err(SendFailure::QueueFull) if peer.transport == Transport::Udp => {
                debug!(%peer, "UDP send buffer full: REGISTER datagram dropped")
            }
            Err(SendFailure::QueueFull) => self.defer(t),
            Err(error) => {
                debug!(%peer, %error, "send to upstream failed");
                self.engine.handle_transport_error(now, peer);
            }
        }
    }

    fn defer(&mut self, t: Transmit) {
        if self.deferred.len() >= MAX_DEFERRED {
            // Its transaction's timeout (Timer F) covers the loss, for this binding only.
            debug!(peer = %t.peer, "too many REGISTERs waiting for full queues: one dropped");
            metrics::counter!("vigil_register_send_dropped_total").increment(1);
            return;
        }
        metrics::counter!("vigil_register_send_deferred_total").increment(1);
        self.deferred_peers.insert(t.peer);
        self.deferred.push_back(t);
    }

    /// Offers the kept REGISTERs to their connections again, in order; returns whether any
    /// went out.
    fn send_deferred(&mut self, now: Instant, transports: &Transports) -> bool {
        if self.deferred.is_empty() || self.deferred_at.is_some_and(|at| at > now) {
            return false;
        }
        let mut sent = false;
        // Peers still full (keep the rest of theirs) and peers that failed (whose
        // transactions just ended: drop the rest of theirs).
        let mut full: Vec<Peer> = Vec::new();
        let mut failed: Vec<Peer> = Vec::new();
        let mut keep = VecDeque::with_capacity(self.deferred.len());
        while let Some(t) = self.deferred.pop_front() {
            if full.contains(&t.peer) {
                keep.push_back(t);
                continue;
            }
            if failed.contains(&t.peer) {
                continue;
            }
            match transports.send(t.peer, t.bytes.clone()) {
                Ok(()) => sent = true,
                Err(SendFailure::QueueFull) => {
                    full.push(t.peer);
                    keep.push_back(t);
                }
                Err(error) => {
                    debug!(peer = %t.peer, %error, "send to upstream failed");
                    failed.push(t.peer);
                    self.engine.handle_transport_error(now, t.peer);
                }
            }
        }
        self.deferred_peers = keep.iter().map(|t| t.peer).collect();
        self.deferred = keep;
        self.deferred_at = (!self.deferred.is_empty()).then(|| now + DEFERRED_RETRY);
        sent
    }

    /// RFC 3263 §4.3: after a timeout, a transport error or a 503, the binding moves on to
    /// the next target of its upstream's set; see the module documentation.
    fn fail_over(&mut self, now: Instant, id: BindingId, why: Failure) {
        let Some(failed) = self.engine.upstream(id) else {
            return;
        };
        let Some(b) = self.table.by_token(ContactToken(id.0)) else {
            return;
        };
        let Some(target) = target_of(&b) else {
            return;
        };
        let (route, at_once) = match self.upstreams.handle_failure(now, &target, failed, why) {
            Failover::Next(route) => (route, true),
            Failover::Exhausted(route) => (route, false),
            Failover::Stay => return,
        };
        let peer = route.peer;
        self.use_route(route);
        match self.engine.move_upstream(now, id, peer, at_once) {
            Ok(true) => debug!(token = %b.token, %peer, at_once, "binding moved to another target"),
            Ok(false) => {}
            Err(error) => debug!(token = %b.token, %error, "failover ignored"),
        }
    }

    fn on_event(&mut self, now: Instant, event: &RegEvent) {
        match *event {
            RegEvent::Registered { .. } => {
                self.meters.ok.increment(1);
                if let Some(applied) = apply_event(&self.table, &self.batcher, event, now) {
                    self.record_refresh_lag(&applied);
                }
                return;
            }
            RegEvent::Retrying { id, cause, .. } => {
                let status = match cause {
                    RetryCause::Status { status, .. } => status.to_string(),
                    RetryCause::Timeout => "timeout".to_owned(),
                    RetryCause::TransportError => "transport".to_owned(),
                    RetryCause::NotBound => "not_bound".to_owned(),
                    _ => "local".to_owned(),
                };
                self.meters.failed(&status, false);
                let why = match cause {
                    RetryCause::Timeout => Some(Failure::Timeout),
                    RetryCause::TransportError => Some(Failure::TransportError),
                    RetryCause::Status { status, .. } => Failure::from_status(status),
                    _ => None,
                };
                if let Some(why) = why {
                    // The event is applied first, so the table shows this attempt's failure.
                    apply_event(&self.table, &self.batcher, event, now);
                    self.fail_over(now, id, why);
                    return;
                }
            }
            RegEvent::Failed { status, .. } => self.meters.failed(&status.to_string(), true),
            RegEvent::Unregistered { upstream, .. } => {
                metrics::counter!("vigil_register_removed_total", "upstream" => if upstream { "ok" } else { "lapsed" })
                    .increment(1);
            }
            _ => {}
        }
        apply_event(&self.table, &self.batcher, event, now);
    }

    /// How late a refresh came: from the refresh time the previous 2xx scheduled (the
    /// status this 2xx replaced) to this 2xx. Pace backlog, upstream latency and challenges
    /// all show here; a lag near the granted expiry means registrations lapse.
    fn record_refresh_lag(&self, applied: &Applied) {
        let before = applied.before;
        if before.state != DeviceState::Registered || before.next_at_ms == 0 {
            return; // a first registration, or one after a failure: not a refresh
        }
        // Earlier than scheduled: a changed binding re-registered at once; not a refresh.
        if let Some(late) = applied.now_ms.checked_sub(before.next_at_ms) {
            self.meters.refresh_lag.record(late as f64 / 1000.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxies_in_both_api_forms() {
        assert_eq!(
            parse_proxy("proxy.example.com:5070"),
            Some(("proxy.example.com:5070", None))
        );
        assert_eq!(
            parse_proxy("sip:10.0.0.1:5070;transport=tcp;lr"),
            Some(("10.0.0.1:5070", Some(Transport::Tcp)))
        );
        assert_eq!(
            parse_proxy("sips:edge.example.com"),
            Some(("edge.example.com", Some(Transport::Tls)))
        );
        assert_eq!(parse_proxy("sip:bad host"), None);
    }

    #[test]
    fn static_upstream_prefers_the_configured_address_then_ip_literals() {
        let target = |domain, proxy, transport| UpstreamTarget {
            domain,
            proxy,
            transport,
            transport_explicit: true,
        };
        let now = Instant::now();
        let ready = |u: &mut StaticUpstream, t: &UpstreamTarget<'_>| match u.select(now, t) {
            Selection::Ready(route) => Some(route),
            Selection::Unreachable => None,
            other => panic!("a static upstream never waits: {other:?}"),
        };
        let mut fixed = StaticUpstream::new(Some(("192.0.2.7".parse().unwrap(), Some(5080))))
            .with_tls_name(Some("sip.example.com"));
        let r = ready(&mut fixed, &target("example.com", None, Transport::Tcp)).unwrap();
        assert_eq!(r.peer, Peer::tcp("192.0.2.7:5080".parse().unwrap()));
        assert_eq!(r.tls_name.as_deref(), Some("sip.example.com"));

        let mut none = StaticUpstream::new(None).with_tls_name(Some("sip.example.com"));
        assert_eq!(
            ready(&mut none, &target("example.com", None, Transport::Udp)),
            None,
            "a DNS name needs the resolver"
        );
        let v6 = ready(
            &mut none,
            &target("example.com", Some("[2001:db8::1]"), Transport::Tls),
        )
        .unwrap();
        assert_eq!(v6.peer, Peer::tls("[2001:db8::1]:5061".parse().unwrap()));
        assert_eq!(
            v6.tls_name, None,
            "the configured name is the upstream's only"
        );
        assert_eq!(
            ready(
                &mut none,
                &target("198.51.100.2:5099", None, Transport::Udp)
            )
            .unwrap()
            .peer,
            Peer::udp("198.51.100.2:5099".parse().unwrap())
        );
        let mut port_only = StaticUpstream::new(Some(("192.0.2.7".parse().unwrap(), None)));
        let r = ready(&mut port_only, &target("x", None, Transport::Tls)).unwrap();
        assert_eq!((r.peer.addr.port(), r.tls_name), (5061, None));
    }
}
