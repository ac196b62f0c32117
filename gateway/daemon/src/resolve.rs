//! Locating the upstream SIP server (RFC 3263) over real DNS.
//!
//! The decisions (which records to ask for, in which order to try the answers, when a set
//! expires) are the core's: [`vigil_proto::resolve::Resolution`]. This module only runs the
//! NAPTR, SRV, A and AAAA lookups it asks for with hickory-resolver, feeds the answers back,
//! and caches each finished [`TargetSet`] until the smallest TTL of its records has passed
//! (on the caller's `now`, so the cache is as testable as the core).
//!
//! An outbound proxy, per binding or configured for the whole gateway, takes precedence over
//! the account's domain and is located the same way.
//!
//! [`ResolvingUpstreams`] plugs this into the registration engine's driver through the
//! [`Upstreams`] seam, without ever blocking the driver: a lookup runs in a spawned task and
//! its result comes back on a channel (the driver is woken through a [`Notify`]). One lookup
//! serves every binding of the same domain (or proxy) and transport; bindings wait for it
//! ([`Selection::Pending`]) and are started when it arrives. A failed lookup is retried with
//! exponential backoff, per name, on one [`Timers`] structure. A set whose TTL passed keeps
//! serving while it is refreshed in the background. A target that timed out, failed or
//! answered 503 is marked down for a while, so every binding skips it (RFC 3263 §4.3).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::TokioResolver;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinSet;
use tracing::debug;
use vigil_proto::resolve::{self as core, Answer, Naptr, Query, Resolution, SipTarget, Srv};
use vigil_proto::rng::CoreRng;
use vigil_proto::timer::Timers;
use vigil_proto::txn::{Peer, Transport};

use crate::regdriver::{Failover, Route, Selection, UpstreamKey, UpstreamTarget, Upstreams};

pub use vigil_proto::resolve::{Failure, TargetSet};

/// Settings of the upstream resolver.
#[derive(Debug, Clone)]
pub struct UpstreamResolverConfig {
    /// DNS servers to ask (UDP, with TCP for truncated answers); empty: the system's
    /// (`/etc/resolv.conf`).
    pub name_servers: Vec<SocketAddr>,
    /// Time for one DNS query before it is retried or given up.
    pub timeout: Duration,
    /// Tries per query.
    pub attempts: usize,
    /// A gateway-wide outbound proxy (`host[:port]`); a binding's own proxy wins over it.
    pub outbound_proxy: Option<String>,
    /// Transport to reach the outbound proxy with, if not DNS's choice.
    pub outbound_proxy_transport: Option<Transport>,
    /// Target selection: supported transports, IPv6, TTL bounds.
    pub selection: core::ResolveConfig,
    /// Most cached target sets (distinct upstream names); beyond it expired ones are dropped
    /// and, if none expired, the new set is not cached.
    pub max_cached: usize,
}

impl Default for UpstreamResolverConfig {
    fn default() -> Self {
        Self {
            name_servers: Vec::new(),
            timeout: Duration::from_secs(3),
            attempts: 2,
            outbound_proxy: None,
            outbound_proxy_transport: None,
            selection: core::ResolveConfig::default(),
            max_cached: 10_000,
        }
    }
}

/// Why no upstream could be located.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// RFC 3263 found nothing usable (no such domain, no address, service refused, DNS
    /// failure, unsupported transport, malformed host).
    #[error(transparent)]
    Locate(#[from] core::ResolveError),
    /// The DNS client could not be set up (no usable system configuration).
    #[error("DNS resolver setup failed: {reason}")]
    Setup {
        /// What went wrong, in words.
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    host: String,
    port: Option<u16>,
    transport: Option<Transport>,
    sips: bool,
}

/// Runs RFC 3263 resolutions over DNS; see the module documentation. Cheap to share behind
/// an `Arc`; lookups of one resolution run concurrently.
pub struct UpstreamResolver {
    dns: TokioResolver,
    config: UpstreamResolverConfig,
    cache: Mutex<HashMap<CacheKey, TargetSet>>,
    rng: Mutex<CoreRng>,
}

impl std::fmt::Debug for UpstreamResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamResolver")
            .field("name_servers", &self.config.name_servers)
            .finish_non_exhaustive()
    }
}

impl UpstreamResolver {
    /// A resolver asking `config.name_servers` (or the system's); `seed` seeds the RFC 2782
    /// weighted choice among SRV records.
    pub fn new(config: UpstreamResolverConfig, seed: u64) -> Result<Self, ResolveError> {
        let setup = |e: NetError| ResolveError::Setup {
            reason: e.to_string(),
        };
        let mut builder = if config.name_servers.is_empty() {
            TokioResolver::builder_tokio().map_err(setup)?
        } else {
            let servers = config
                .name_servers
                .iter()
                .map(|addr| {
                    let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
                    for c in &mut ns.connections {
                        c.port = addr.port();
                    }
                    ns
                })
                .collect();
            TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(servers),
                TokioRuntimeProvider::default(),
            )
        };
        let opts: &mut ResolverOpts = builder.options_mut();
        opts.timeout = config.timeout;
        opts.attempts = config.attempts;
        // Names are asked fully qualified: no search list.
        opts.ndots = 0;
        // Results are cached here, as target sets with their TTL; a second cache below
        // would only make a changed zone take longer to be seen.
        opts.cache_size = 0;
        let dns = builder.build().map_err(setup)?;
        Ok(Self {
            dns,
            config,
            cache: Mutex::new(HashMap::new()),
            rng: Mutex::new(CoreRng::from_seed(seed)),
        })
    }

    /// The targets for the upstream of an account: its outbound proxy if it has one, else
    /// the gateway's configured outbound proxy, else its domain. `domain` and
    /// `outbound_proxy` are `host[:port]`; `transport` is the account's preference (it
    /// applies to the proxy too, unless the configured proxy has its own).
    pub async fn resolve_upstream(
        &self,
        domain: &str,
        outbound_proxy: Option<&str>,
        transport: Option<Transport>,
        now: Instant,
    ) -> Result<TargetSet, ResolveError> {
        let (target, transport) = match (outbound_proxy, &self.config.outbound_proxy) {
            (Some(p), _) => (p, transport),
            (None, Some(p)) => (
                p.as_str(),
                self.config.outbound_proxy_transport.or(transport),
            ),
            (None, None) => (domain, transport),
        };
        let (host, port) = SipTarget::parse_host_port(target)?;
        self.resolve(&host, port, transport, false, now).await
    }

    /// The targets for `sip[s]:HOST[:PORT][;transport=T]`, from the cache while its TTL
    /// lasts, else from DNS. The set returned starts at its first target.
    pub async fn resolve(
        &self,
        host: &str,
        port: Option<u16>,
        transport: Option<Transport>,
        sips: bool,
        now: Instant,
    ) -> Result<TargetSet, ResolveError> {
        let key = CacheKey {
            host: host.trim_end_matches('.').to_ascii_lowercase(),
            port,
            transport,
            sips,
        };
        if let Some(set) = self.cached(&key, now) {
            return Ok(set);
        }
        let target = SipTarget {
            host: host.to_owned(),
            port,
            transport,
            sips,
        };
        let mut resolution = {
            let mut rng = self.rng.lock().expect("resolver rng lock poisoned");
            Resolution::new(target, self.config.selection.clone(), &mut rng)
        };
        loop {
            let mut lookups = JoinSet::new();
            while let Some((id, query)) = resolution.poll_query() {
                let dns = self.dns.clone();
                lookups.spawn(async move { (id, lookup(&dns, &query).await) });
            }
            if lookups.is_empty() {
                break;
            }
            while let Some(done) = lookups.join_next().await {
                // A panicked lookup task leaves its query unanswered: the resolution then
                // ends with what the other answers gave.
                if let Ok((id, answer)) = done {
                    resolution.handle_answer(id, answer);
                }
            }
            if resolution.is_done() {
                break;
            }
        }
        let set = resolution
            .poll_result(now)
            .unwrap_or(Err(core::ResolveError::DnsFailure))?;
        self.store(key, &set, now);
        Ok(set)
    }

    fn cached(&self, key: &CacheKey, now: Instant) -> Option<TargetSet> {
        let cache = self.cache.lock().expect("resolver cache lock poisoned");
        let set = cache.get(key).filter(|s| !s.is_expired(now))?;
        let mut set = set.clone();
        set.rewind();
        Some(set)
    }

    fn store(&self, key: CacheKey, set: &TargetSet, now: Instant) {
        let mut cache = self.cache.lock().expect("resolver cache lock poisoned");
        if cache.len() >= self.config.max_cached && !cache.contains_key(&key) {
            cache.retain(|_, s| !s.is_expired(now));
            if cache.len() >= self.config.max_cached {
                return;
            }
        }
        cache.insert(key, set.clone());
    }

    /// Forgets every cached target set (after a configuration change).
    pub fn clear_cache(&self) {
        self.cache
            .lock()
            .expect("resolver cache lock poisoned")
            .clear();
    }
}

/// Runs one query and translates its outcome for the core.
async fn lookup(dns: &TokioResolver, query: &Query) -> Answer {
    let record_type = match query {
        Query::Naptr(_) => RecordType::NAPTR,
        Query::Srv(_) => RecordType::SRV,
        Query::A(_) => RecordType::A,
        Query::Aaaa(_) => RecordType::AAAA,
    };
    let found = match dns.lookup(query.name(), record_type).await {
        Ok(found) => found,
        Err(e) if e.is_nx_domain() => return Answer::NxDomain,
        Err(e) if e.is_no_records_found() => return Answer::NoRecords,
        Err(_) => return Answer::Failed,
    };
    let records = found.answers();
    match query {
        Query::Naptr(_) => Answer::Naptr(
            records
                .iter()
                .filter_map(|r| match &r.data {
                    RData::NAPTR(n) => Some(Naptr {
                        order: n.order,
                        preference: n.preference,
                        flags: String::from_utf8_lossy(&n.flags).into_owned(),
                        services: String::from_utf8_lossy(&n.services).into_owned(),
                        replacement: n.replacement.to_ascii(),
                        ttl: r.ttl,
                    }),
                    _ => None,
                })
                .collect(),
        ),
        Query::Srv(_) => Answer::Srv(
            records
                .iter()
                .filter_map(|r| match &r.data {
                    RData::SRV(s) => Some(Srv {
                        priority: s.priority,
                        weight: s.weight,
                        port: s.port,
                        target: s.target.to_ascii(),
                        ttl: r.ttl,
                    }),
                    _ => None,
                })
                .collect(),
        ),
        Query::A(_) | Query::Aaaa(_) => Answer::Addrs(
            records
                .iter()
                .filter_map(|r| match &r.data {
                    RData::A(a) => Some((IpAddr::V4(a.0), r.ttl)),
                    RData::AAAA(a) => Some((IpAddr::V6(a.0), r.ttl)),
                    _ => None,
                })
                .collect(),
        ),
    }
}

/// First pause before a failed lookup is asked again; doubles per failure.
const LOOKUP_RETRY_BASE: Duration = Duration::from_secs(2);
/// Longest pause between lookups of a name that keeps failing.
const LOOKUP_RETRY_CAP: Duration = Duration::from_secs(300);
/// Down marks kept before expired ones are swept.
const MAX_DOWN_MARKS: usize = 4096;

/// What one upstream name is known to resolve to.
#[derive(Debug)]
struct Entry {
    host: String,
    port: Option<u16>,
    transport: Option<Transport>,
    /// The last good set (kept past its TTL while a refresh runs or fails).
    set: Option<TargetSet>,
    resolving: bool,
    /// Consecutive failed lookups.
    failures: u32,
    /// The last failure and when the name is asked again.
    error: Option<(ResolveError, Instant)>,
}

/// A lookup's outcome, sent back from its task.
type Done = (UpstreamKey, Result<TargetSet, ResolveError>);

/// [`Upstreams`] by RFC 3263; see the module documentation.
pub struct ResolvingUpstreams {
    resolver: Arc<UpstreamResolver>,
    entries: HashMap<UpstreamKey, Entry>,
    /// Retry deadlines of failed lookups, one per name at most.
    retries: Timers<UpstreamKey>,
    /// Targets that failed, and until when every binding skips them.
    down: HashMap<Peer, Instant>,
    down_for: Duration,
    done_tx: mpsc::UnboundedSender<Done>,
    done_rx: mpsc::UnboundedReceiver<Done>,
    /// Names whose lookup finished, for [`Upstreams::poll_resolved`].
    resolved: VecDeque<UpstreamKey>,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for ResolvingUpstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolvingUpstreams")
            .field("names", &self.entries.len())
            .field("down", &self.down.len())
            .finish_non_exhaustive()
    }
}

impl ResolvingUpstreams {
    /// Selection over `resolver`; a failed target is skipped for `down_for`.
    pub fn new(resolver: Arc<UpstreamResolver>, down_for: Duration) -> Self {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        Self {
            resolver,
            entries: HashMap::new(),
            retries: Timers::new(),
            down: HashMap::new(),
            down_for,
            done_tx,
            done_rx,
            resolved: VecDeque::new(),
            wake: Arc::new(Notify::new()),
        }
    }

    /// The name and transport `target` resolves through: its own proxy, else the gateway's
    /// configured proxy, else its domain.
    fn name_of<'a>(&'a self, target: &UpstreamTarget<'a>) -> (&'a str, Option<Transport>) {
        let transport = target.transport_explicit.then_some(target.transport);
        match (target.proxy, &self.resolver.config.outbound_proxy) {
            (Some(p), _) => (p, transport),
            (None, Some(p)) => (
                p.as_str(),
                self.resolver.config.outbound_proxy_transport.or(transport),
            ),
            (None, None) => (target.domain, transport),
        }
    }

    fn is_down(&self, peer: &Peer, now: Instant) -> bool {
        self.down.get(peer).is_some_and(|&until| until > now)
    }

    fn route(key: &UpstreamKey, peer: Peer) -> Route {
        Route {
            peer,
            tls_name: Some(Arc::clone(&key.host)),
        }
    }

    /// Starts a lookup of `key` in a task; its result arrives through `done_rx`.
    fn spawn(&mut self, key: &UpstreamKey, now: Instant) {
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // Only outside a runtime (a unit test): fail the lookup like a DNS failure.
            let _ = self.done_tx.send((
                key.clone(),
                Err(ResolveError::Setup {
                    reason: "no async runtime".to_owned(),
                }),
            ));
            entry.resolving = true;
            return;
        };
        entry.resolving = true;
        let (host, port, transport) = (entry.host.clone(), entry.port, entry.transport);
        let resolver = Arc::clone(&self.resolver);
        let (tx, wake, key) = (self.done_tx.clone(), Arc::clone(&self.wake), key.clone());
        debug!(transport = ?transport, "resolving an upstream");
        runtime.spawn(async move {
            let result = resolver.resolve(&host, port, transport, false, now).await;
            // The driver is gone only at shutdown.
            let _ = tx.send((key, result));
            wake.notify_one();
        });
    }

    /// Applies a finished lookup.
    fn finish(&mut self, now: Instant, key: UpstreamKey, result: Result<TargetSet, ResolveError>) {
        let Some(entry) = self.entries.get_mut(&key) else {
            return;
        };
        entry.resolving = false;
        match result {
            Ok(set) => {
                entry.set = Some(set);
                entry.failures = 0;
                entry.error = None;
            }
            Err(error) => {
                entry.failures = entry.failures.saturating_add(1);
                let pause = LOOKUP_RETRY_BASE
                    .saturating_mul(1u32 << (entry.failures - 1).min(16))
                    .min(LOOKUP_RETRY_CAP);
                let at = now + pause;
                debug!(%error, failures = entry.failures, "upstream lookup failed");
                entry.error = Some((error, at));
                self.retries.insert(at, key.clone());
            }
        }
        self.resolved.push_back(key);
    }
}

impl Upstreams for ResolvingUpstreams {
    fn select(&mut self, now: Instant, target: &UpstreamTarget<'_>) -> Selection {
        let (name, transport) = self.name_of(target);
        let Ok((host, port)) = SipTarget::parse_host_port(name) else {
            return Selection::Unreachable;
        };
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            // RFC 3263 §4.2: a numeric host is used as is; its certificate names the address.
            let t = transport.unwrap_or(target.transport);
            let port = port.unwrap_or(if t == Transport::Tls {
                core::SIPS_PORT
            } else {
                core::SIP_PORT
            });
            return Selection::Ready(Route {
                peer: Peer {
                    transport: t,
                    addr: SocketAddr::new(ip, port),
                },
                tls_name: None,
            });
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let key = UpstreamKey {
            host: Arc::from(host.as_str()),
            port,
            transport,
        };
        if !self.entries.contains_key(&key) {
            if self.entries.len() >= self.resolver.config.max_cached {
                // Names no binding waits for and nothing good is known about.
                self.entries.retain(|_, e| e.resolving || e.set.is_some());
            }
            self.entries.insert(
                key.clone(),
                Entry {
                    host,
                    port,
                    transport,
                    set: None,
                    resolving: false,
                    failures: 0,
                    error: None,
                },
            );
        }
        let entry = &self.entries[&key];
        let may_ask = !entry.resolving && entry.error.as_ref().is_none_or(|(_, at)| *at <= now);
        let Some(set) = &entry.set else {
            if let Some((error, at)) = &entry.error {
                if !may_ask {
                    return Selection::Failed {
                        key,
                        error: error.clone(),
                        retry_at: *at,
                    };
                }
            }
            if may_ask {
                self.spawn(&key, now);
            }
            return Selection::Pending(key);
        };
        let stale = set.is_expired(now);
        let peer = set
            .targets()
            .iter()
            .find(|p| !self.is_down(p, now))
            .or(set.targets().first())
            .copied();
        if stale && may_ask {
            self.spawn(&key, now);
        }
        match peer {
            Some(peer) => Selection::Ready(Self::route(&key, peer)),
            None => Selection::Unreachable,
        }
    }

    fn handle_failure(
        &mut self,
        now: Instant,
        target: &UpstreamTarget<'_>,
        failed: Peer,
        why: Failure,
    ) -> Failover {
        if self.down.len() >= MAX_DOWN_MARKS {
            self.down.retain(|_, until| *until > now);
        }
        self.down.insert(failed, now + self.down_for);
        let (name, transport) = self.name_of(target);
        let Ok((host, port)) = SipTarget::parse_host_port(name) else {
            return Failover::Stay;
        };
        let key = UpstreamKey {
            host: Arc::from(host.trim_end_matches('.').to_ascii_lowercase().as_str()),
            port,
            transport,
        };
        let Some(set) = self.entries.get(&key).and_then(|e| e.set.as_ref()) else {
            return Failover::Stay;
        };
        let targets = set.targets();
        let n = targets.len();
        // Continue after the failed target (from the start if the set changed since),
        // wrapping round so that a target marked down earlier and up again is found.
        let start = targets
            .iter()
            .position(|p| *p == failed)
            .map_or(0, |i| i + 1);
        let candidates = (0..n).map(|i| targets[(start + i) % n]);
        let mut next_in_turn = None;
        for peer in candidates {
            if peer == failed {
                continue;
            }
            next_in_turn.get_or_insert(peer);
            if !self.is_down(&peer, now) {
                debug!(?why, "upstream failed: moving to the next target");
                return Failover::Next(Self::route(&key, peer));
            }
        }
        match next_in_turn {
            Some(peer) => Failover::Exhausted(Self::route(&key, peer)),
            None => Failover::Stay,
        }
    }

    fn poll_resolved(&mut self, now: Instant) -> Option<UpstreamKey> {
        while let Ok((key, result)) = self.done_rx.try_recv() {
            self.finish(now, key, result);
        }
        self.resolved.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.retries.poll_timeout()
    }

    fn handle_timeout(&mut self, now: Instant) {
        while let Some((_, _, key)) = self.retries.pop_expired(now) {
            if self.entries.get(&key).is_some_and(|e| !e.resolving) {
                self.spawn(&key, now);
            }
        }
    }

    fn waker(&self) -> Option<Arc<Notify>> {
        Some(Arc::clone(&self.wake))
    }
}
