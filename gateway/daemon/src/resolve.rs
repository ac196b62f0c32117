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
//! Plugging it in: before `add_binding`/`update_binding`, the engine's driver calls
//! [`UpstreamResolver::resolve_upstream`] with the device's domain, outbound proxy and
//! transport, uses [`TargetSet::current`] as `BindingConfig::upstream`, and on a timeout,
//! transport error or 503 calls [`TargetSet::handle_failure`] and updates the binding with
//! the next target.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::TokioResolver;
use tokio::task::JoinSet;
use vigil_proto::resolve::{self as core, Answer, Naptr, Query, Resolution, SipTarget, Srv};
use vigil_proto::rng::CoreRng;
use vigil_proto::txn::Transport;

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
