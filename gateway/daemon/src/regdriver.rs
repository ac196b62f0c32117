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
//! Upstream selection is a seam: [`Upstreams::peer_for`] maps a binding's domain, outbound
//! proxy and transport to the [`Peer`] its REGISTERs go to. [`StaticUpstream`] is the
//! configured `[reg] upstream` (or an IP-literal proxy/domain); an RFC 3263 resolver plugs in
//! through the same trait.
//!
//! Logs name bindings by Contact token only; the password is opened only to hand it to the
//! engine, which keeps it in its own zeroed-on-drop allocation.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use metrics::{Counter, Histogram};
use tracing::{debug, warn};
use vigil_proto::auth::Password;
use vigil_proto::msg::{Message, Method};
use vigil_proto::reg::{
    BindingConfig, BindingError, BindingId, RegConfig, RegConfigError, RegEvent, Registrations,
    RetryCause,
};
use vigil_proto::rng::CoreRng;
use vigil_proto::txn::{Peer, Transport, TxnStats};

use crate::api::registrar::{apply_event, unix_ms_now, RegCommand};
use crate::bindings::{Binding, BindingTable, DeviceState, Reason, Status, Text};
use crate::config::split_host_port;
use crate::crypto::SecretBox;
use crate::store::{WriteBatcher, WriteOp};
use crate::transport::{SendFailure, Transports};

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

/// Maps a binding to the peer its REGISTERs go to; see the module documentation.
///
/// Called in the core driver's task for every added or changed binding, so it must not
/// block: a resolver that needs DNS answers from its cache and refreshes it elsewhere.
pub trait Upstreams: Send + 'static {
    /// The peer for `target`, or `None` when it cannot be reached (the binding is then
    /// reported failed with a transport error).
    fn peer_for(&mut self, target: &UpstreamTarget<'_>) -> Option<Peer>;
}

/// Every REGISTER to one configured address (`[reg] upstream`), or, without one, to the
/// device's outbound proxy or domain when that is an IP address (RFC 3263 §4.2: a numeric
/// host is used as is, port 5060, or 5061 for TLS).
#[derive(Debug, Clone, Copy, Default)]
pub struct StaticUpstream {
    upstream: Option<(IpAddr, Option<u16>)>,
}

impl StaticUpstream {
    /// Sends everything to `ip` (on `port`, or the transport's default port).
    pub fn new(upstream: Option<(IpAddr, Option<u16>)>) -> Self {
        Self { upstream }
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
    fn peer_for(&mut self, target: &UpstreamTarget<'_>) -> Option<Peer> {
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// The sealed password cannot be opened (was the secret key changed?).
    Sealed,
    /// No upstream for it.
    NoUpstream,
    /// The engine refused a field.
    Invalid,
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

    /// Fires the engine's due deadlines.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.engine.handle_timeout(now);
    }

    /// The transport to `peer` failed.
    pub fn handle_transport_error(&mut self, now: Instant, peer: Peer) {
        self.engine.handle_transport_error(now, peer);
    }

    /// The engine's next deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.engine.poll_timeout()
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
        let cfg = match self.binding_config(b) {
            Ok(cfg) => cfg,
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

    fn binding_config(&mut self, b: &Binding) -> Result<BindingConfig, Refusal> {
        let proxy_field = b.text(Text::OutboundProxy);
        let (proxy, proxy_transport) = if proxy_field.is_empty() {
            (None, None)
        } else {
            let (hostport, t) = parse_proxy(proxy_field).ok_or(Refusal::Invalid)?;
            (Some(hostport), t)
        };
        let explicit = Transport::from_via_token(b.text(Text::Transport)).or(proxy_transport);
        let target = UpstreamTarget {
            domain: b.text(Text::Domain),
            proxy,
            transport: explicit.unwrap_or(Transport::Udp),
            transport_explicit: explicit.is_some(),
        };
        let upstream = self
            .upstreams
            .peer_for(&target)
            .ok_or(Refusal::NoUpstream)?;
        self.upstream_ips.insert(upstream.addr.ip());
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
        };
        self.meters.failed("local", true);
        b.set_status(Status {
            state: DeviceState::Failed,
            last_status: 0,
            granted_expires: 0,
            next_at_ms: 0,
            reason,
        });
        let op = WriteOp::SetState {
            device_id: b.device_id().to_owned(),
            state: DeviceState::Failed.as_str(),
            last_status: 0,
        };
        if self.batcher.submit(op).is_err() {
            debug!(token = %b.token, "store queue full: state update skipped");
        }
    }

    /// Sends the engine's transmits and applies its events; returns whether there were any.
    pub fn drain(&mut self, now: Instant, transports: &Transports) -> bool {
        let mut progressed = false;
        loop {
            let mut round = false;
            while let Some(t) = self.engine.poll_transmit() {
                round = true;
                match transports.send(t.peer, t.bytes) {
                    Ok(()) => {}
                    // A full UDP socket buffer is packet loss: retransmission covers it.
                    Err(SendFailure::QueueFull) if t.peer.transport == Transport::Udp => {
                        debug!(peer = %t.peer, "UDP send buffer full: REGISTER datagram dropped")
                    }
                    Err(error) => {
                        debug!(peer = %t.peer, %error, "send to upstream failed");
                        self.engine.handle_transport_error(now, t.peer);
                    }
                }
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

    fn on_event(&self, now: Instant, event: &RegEvent) {
        match *event {
            RegEvent::Registered { id, .. } => {
                self.meters.ok.increment(1);
                self.record_refresh_lag(id);
            }
            RegEvent::Retrying { cause, .. } => {
                let status = match cause {
                    RetryCause::Status { status, .. } => status.to_string(),
                    RetryCause::Timeout => "timeout".to_owned(),
                    RetryCause::TransportError => "transport".to_owned(),
                    RetryCause::NotBound => "not_bound".to_owned(),
                    _ => "local".to_owned(),
                };
                self.meters.failed(&status, false);
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

    /// How late a refresh came: from the refresh time the previous 2xx scheduled (still in
    /// the table, not yet overwritten) to this 2xx. Pace backlog, upstream latency and
    /// challenges all show here; a lag near the granted expiry means registrations lapse.
    fn record_refresh_lag(&self, id: BindingId) {
        let Some(b) = self.table.by_token(crate::bindings::ContactToken(id.0)) else {
            return;
        };
        let before = b.status();
        if before.state != DeviceState::Registered || before.next_at_ms == 0 {
            return; // a first registration, or one after a failure: not a refresh
        }
        let now_ms = unix_ms_now();
        // Earlier than scheduled: a changed binding re-registered at once; not a refresh.
        if let Some(late) = now_ms.checked_sub(before.next_at_ms) {
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
        let mut fixed = StaticUpstream::new(Some(("192.0.2.7".parse().unwrap(), Some(5080))));
        let p = fixed
            .peer_for(&target("example.com", None, Transport::Tcp))
            .unwrap();
        assert_eq!(p, Peer::tcp("192.0.2.7:5080".parse().unwrap()));

        let mut none = StaticUpstream::new(None);
        assert_eq!(
            none.peer_for(&target("example.com", None, Transport::Udp)),
            None,
            "a DNS name needs the resolver"
        );
        assert_eq!(
            none.peer_for(&target(
                "example.com",
                Some("[2001:db8::1]"),
                Transport::Tls
            )),
            Some(Peer::tls("[2001:db8::1]:5061".parse().unwrap()))
        );
        assert_eq!(
            none.peer_for(&target("198.51.100.2:5099", None, Transport::Udp)),
            Some(Peer::udp("198.51.100.2:5099".parse().unwrap()))
        );
        let mut port_only = StaticUpstream::new(Some(("192.0.2.7".parse().unwrap(), None)));
        assert_eq!(
            port_only
                .peer_for(&target("x", None, Transport::Tls))
                .unwrap()
                .addr
                .port(),
            5061
        );
    }
}
