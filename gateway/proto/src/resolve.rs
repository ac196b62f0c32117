//! Locating a SIP server (RFC 3263 §4): which transport, port and addresses to try, in which
//! order, and when to move on to the next one.
//!
//! This module is the decision logic only. A [`Resolution`] says which DNS questions to ask
//! ([`Resolution::poll_query`]), takes the answers ([`Resolution::handle_answer`]) and, once
//! nothing is outstanding, yields a [`TargetSet`] ([`Resolution::poll_result`]): the ordered
//! list of [`Peer`]s to send to, with a failover cursor and an expiry taken from the records'
//! TTLs. The shell runs the lookups (any DNS client) and owns the clock; randomness for the
//! RFC 2782 weighted order comes from the caller's [`CoreRng`], so a test is a pure function
//! of its seed.
//!
//! The procedure, for a URI `sip[s]:HOST[:PORT][;transport=T]`:
//!
//! ```text
//!  HOST numeric ───────────────────────────────► HOST:PORT (default 5060 / 5061 for TLS)
//!  PORT present ───────────────────────► A/AAAA HOST, PORT
//!  T explicit ─────────────► SRV _sip[s]._T.HOST ──(none)──► A/AAAA HOST, default port
//!  otherwise ── NAPTR HOST ─┬─ SIP+D2U / SIP+D2T / SIPS+D2T by order, preference
//!                           │     └─► SRV REPLACEMENT ──► A/AAAA of each SRV target
//!                           └─ (none usable) ─► SRV _sip._udp, _sip._tcp (_sips._tcp for
//!                                 sips) ──(none)──► A/AAAA HOST, default port and transport
//! ```
//!
//! SRV records are ordered by priority, then by weight with the RFC 2782 random selection;
//! every address of every target becomes one [`Peer`], so a timeout, a transport error or a
//! 503 moves to the next address (§4.3).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::rng::CoreRng;
use crate::txn::{Peer, Transport};

/// Default port for UDP and TCP (RFC 3261 §19.1.2).
pub const SIP_PORT: u16 = 5060;
/// Default port for TLS.
pub const SIPS_PORT: u16 = 5061;

/// The part of a SIP URI that decides where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipTarget {
    /// Host name or numeric address (an IPv6 address with or without brackets).
    pub host: String,
    /// Port from the URI, if any.
    pub port: Option<u16>,
    /// The URI's `transport` parameter, if any.
    pub transport: Option<Transport>,
    /// A `sips:` URI: only TLS may be used.
    pub sips: bool,
}

impl SipTarget {
    /// A target for `sip:HOST` with no port and no transport parameter.
    pub fn new(host: impl Into<String>) -> Self {
        Self {
            host: host.into(),
            port: None,
            transport: None,
            sips: false,
        }
    }

    /// Parses `host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6 address.
    pub fn parse_host_port(s: &str) -> Result<(String, Option<u16>), ResolveError> {
        let bad = || ResolveError::InvalidTarget;
        if let Some(rest) = s.strip_prefix('[') {
            let (ip, tail) = rest.split_once(']').ok_or_else(bad)?;
            ip.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
            let port = match tail {
                "" => None,
                t => Some(
                    t.strip_prefix(':')
                        .ok_or_else(bad)?
                        .parse()
                        .map_err(|_| bad())?,
                ),
            };
            return Ok((ip.to_owned(), port));
        }
        if s.parse::<std::net::Ipv6Addr>().is_ok() {
            return Ok((s.to_owned(), None));
        }
        let (host, port) = match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p.parse::<u16>().map_err(|_| bad())?)),
            None => (s, None),
        };
        let host_ok = !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !host_ok || port == Some(0) {
            return Err(bad());
        }
        Ok((host.to_owned(), port))
    }

    fn numeric(&self) -> Option<IpAddr> {
        let h = self.host.trim_start_matches('[').trim_end_matches(']');
        h.parse().ok()
    }

    /// The host with a trailing dot, as DNS names are asked for (no search-list expansion).
    fn fqdn(&self) -> String {
        fqdn(&self.host)
    }
}

fn default_port(t: Transport) -> u16 {
    if t == Transport::Tls {
        SIPS_PORT
    } else {
        SIP_PORT
    }
}

/// Orders SRV records as RFC 2782 prescribes: by priority, lowest first; within one
/// priority, repeatedly picks a record at random with probability proportional to its weight
/// (records of weight 0 first in the running sum, so they have a small chance too, and are
/// picked uniformly among themselves once only they are left).
pub fn order_srv(mut records: Vec<Srv>, rng: &mut CoreRng) -> Vec<Srv> {
    records.sort_by_key(|r| r.priority);
    let mut out = Vec::with_capacity(records.len());
    let mut rest = records.into_iter().peekable();
    while let Some(first) = rest.next() {
        let mut group = vec![first];
        while let Some(r) = rest.next_if(|r| r.priority == group[0].priority) {
            group.push(r);
        }
        // Stable: weight-0 records go to the beginning, the others keep their order.
        group.sort_by_key(|r| r.weight != 0);
        while !group.is_empty() {
            let sum: u64 = group.iter().map(|r| u64::from(r.weight)).sum();
            // RFC 2782 draws from 0..=sum so that weight-0 records, at the front, keep a
            // small chance. Without one at the front, 0 would favour the first record
            // (weights 1 and 2 would come out 50/50): draw from 1..=sum then.
            if sum == 0 {
                let idx = rng.below(group.len() as u64) as usize;
                out.push(group.remove(idx));
                continue;
            }
            let pick = if group[0].weight == 0 {
                rng.below(sum + 1)
            } else {
                1 + rng.below(sum)
            };
            let mut running = 0u64;
            let idx = group
                .iter()
                .position(|r| {
                    running += u64::from(r.weight);
                    running >= pick
                })
                .unwrap_or(group.len() - 1);
            out.push(group.remove(idx));
        }
    }
    out
}

fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_ascii_lowercase()
    } else {
        format!("{}.", name.to_ascii_lowercase())
    }
}

/// What the resolver may use.
#[derive(Debug, Clone)]
pub struct ResolveConfig {
    /// The transports the client supports, in the order it prefers them when the server
    /// states no preference (no NAPTR records).
    pub transports: Vec<Transport>,
    /// Look up AAAA records besides A.
    pub ipv6: bool,
    /// Bounds on how long a result is kept, whatever the TTLs say: a 0-second TTL would
    /// make every REGISTER wait for DNS, a week-long one would never notice a move.
    pub min_ttl: Duration,
    /// See [`Self::min_ttl`].
    pub max_ttl: Duration,
}

impl Default for ResolveConfig {
    fn default() -> Self {
        Self {
            transports: vec![Transport::Udp, Transport::Tcp, Transport::Tls],
            ipv6: true,
            min_ttl: Duration::from_secs(30),
            max_ttl: Duration::from_secs(86_400),
        }
    }
}

/// A DNS question the shell must ask.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Query {
    /// NAPTR records of a name.
    Naptr(String),
    /// SRV records of a name (`_sip._udp.example.com.`).
    Srv(String),
    /// A records of a name.
    A(String),
    /// AAAA records of a name.
    Aaaa(String),
}

impl Query {
    /// The name asked about (fully qualified, with a trailing dot).
    pub fn name(&self) -> &str {
        match self {
            Self::Naptr(n) | Self::Srv(n) | Self::A(n) | Self::Aaaa(n) => n,
        }
    }
}

/// Identifies a [`Query`] handed out by [`Resolution::poll_query`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QueryId(usize);

/// One NAPTR record (RFC 3403).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naptr {
    pub order: u16,
    pub preference: u16,
    /// Flags, e.g. `s` (the replacement is an SRV name).
    pub flags: String,
    /// Service field, e.g. `SIP+D2U`.
    pub services: String,
    /// Replacement domain name.
    pub replacement: String,
    pub ttl: u32,
}

/// One SRV record (RFC 2782).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Srv {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    /// Target host name; `.` means the service is decidedly not available.
    pub target: String,
    pub ttl: u32,
}

/// The outcome of one [`Query`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Answer {
    /// NAPTR records (for a [`Query::Naptr`]).
    Naptr(Vec<Naptr>),
    /// SRV records (for a [`Query::Srv`]).
    Srv(Vec<Srv>),
    /// Addresses with their TTL (for [`Query::A`] and [`Query::Aaaa`]).
    Addrs(Vec<(IpAddr, u32)>),
    /// The name exists but has no record of that type (NODATA).
    NoRecords,
    /// The name does not exist (NXDOMAIN).
    NxDomain,
    /// The lookup failed (SERVFAIL, REFUSED, timeout): nothing is known.
    Failed,
}

/// Why no target could be found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// The host is not a valid host name or address.
    #[error("invalid host")]
    InvalidTarget,
    /// The domain does not exist (NXDOMAIN).
    #[error("domain does not exist")]
    NoSuchDomain,
    /// The names exist but yield no address for a supported transport.
    #[error("no address for the SIP server")]
    NoAddresses,
    /// The domain says (SRV target `.`) that it offers no SIP service.
    #[error("SIP service not offered by the domain")]
    ServiceUnavailable,
    /// DNS lookups failed (server failure or timeout) and nothing usable was found.
    #[error("DNS lookup failed")]
    DnsFailure,
    /// The URI asks for a transport this client does not support (or UDP for `sips:`).
    #[error("transport not supported for this URI")]
    UnsupportedTransport,
}

/// Why a target did not work, for [`TargetSet::handle_failure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No answer to a request (transaction timeout).
    Timeout,
    /// The connection or the send failed.
    TransportError,
    /// The server answered 503 Service Unavailable.
    ServiceUnavailable,
}

impl Failure {
    /// The failure a final response status means for target selection, if any: only 503
    /// moves on to the next target (RFC 3263 §4.3); other statuses are the server's answer.
    pub fn from_status(status: u16) -> Option<Self> {
        (status == 503).then_some(Self::ServiceUnavailable)
    }
}

/// The ordered targets of one resolution, a cursor on the one in use, and when the set
/// expires (the smallest TTL of the records it was built from, within the configured
/// bounds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetSet {
    targets: Vec<Peer>,
    cursor: usize,
    expires_at: Instant,
}

impl TargetSet {
    /// A set of fixed targets (a numeric address, tests) that expires at `expires_at`.
    pub fn fixed(targets: Vec<Peer>, expires_at: Instant) -> Self {
        Self {
            targets,
            cursor: 0,
            expires_at,
        }
    }

    /// The target to use now, or `None` once every target failed.
    pub fn current(&self) -> Option<Peer> {
        self.targets.get(self.cursor).copied()
    }

    /// Every target, in order.
    pub fn targets(&self) -> &[Peer] {
        &self.targets
    }

    /// Targets left to try, the current one included.
    pub fn remaining(&self) -> usize {
        self.targets.len().saturating_sub(self.cursor)
    }

    /// When the DNS data behind the set expires.
    pub fn expires_at(&self) -> Instant {
        self.expires_at
    }

    /// Whether the set should be resolved again before use.
    pub fn is_expired(&self, now: Instant) -> bool {
        now >= self.expires_at
    }

    /// `peer` failed: if it is the current target, move to the next one. Returns the
    /// target to use now (`None`: all failed). A failure reported for a target that is no
    /// longer current (several requests in flight to it) does not skip a second target.
    pub fn handle_failure(&mut self, peer: Peer, _why: Failure) -> Option<Peer> {
        if self.current() == Some(peer) {
            self.cursor += 1;
        }
        self.current()
    }

    /// Starts over at the first target (after every target failed and a pause passed).
    pub fn rewind(&mut self) {
        self.cursor = 0;
    }
}

/// Which step of §4 a resolution is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Naptr,
    Srv,
    Addr,
    Done,
}

/// One address lookup group: the name, the port and transport its addresses get.
#[derive(Debug, Clone)]
struct Host {
    name: String,
    port: u16,
    transport: Transport,
}

/// One resolution in progress; see the module documentation.
#[derive(Debug)]
pub struct Resolution {
    target: SipTarget,
    config: ResolveConfig,
    stage: Stage,
    /// Every query asked in this resolution with its answer once known.
    queries: Vec<(Query, Option<Answer>)>,
    /// Next query to hand out.
    next: usize,
    /// SRV queries of the SRV stage, in preference order, with their transport.
    srv: Vec<(QueryId, Transport)>,
    /// Address groups of the address stage, in order, with their A/AAAA queries.
    hosts: Vec<(Host, Vec<QueryId>)>,
    /// An SRV target of `.` was seen and nothing else.
    refused: bool,
    /// The address stage looks up the URI's host itself (no SRV targets).
    host_only: bool,
    /// Orders SRV records of equal priority by weight (RFC 2782).
    rng: CoreRng,
    min_ttl: Option<u32>,
    result: Option<Result<Vec<Peer>, ResolveError>>,
}

impl Resolution {
    /// Starts resolving `target`. `rng` seeds the resolution's own generator for the
    /// RFC 2782 weighted order of SRV records.
    pub fn new(target: SipTarget, config: ResolveConfig, rng: &mut CoreRng) -> Self {
        let mut r = Self {
            target,
            config,
            stage: Stage::Naptr,
            queries: Vec::new(),
            next: 0,
            srv: Vec::new(),
            hosts: Vec::new(),
            refused: false,
            host_only: false,
            rng: CoreRng::from_seed(rng.next_u64()),
            min_ttl: None,
            result: None,
        };
        r.start();
        r
    }

    fn supports(&self, t: Transport) -> bool {
        self.config.transports.contains(&t)
    }

    /// The transport when the URI and DNS say nothing: UDP for `sip:`, TLS for `sips:`
    /// (§4.1), or the client's first supported choice if it lacks that.
    fn default_transport(&self) -> Option<Transport> {
        let wanted = if self.target.sips {
            Transport::Tls
        } else {
            Transport::Udp
        };
        if self.supports(wanted) {
            Some(wanted)
        } else if self.target.sips {
            None
        } else {
            self.config.transports.first().copied()
        }
    }

    /// The transport an explicit `transport` parameter means: with `sips:`, TCP is TLS and
    /// UDP is not allowed.
    fn explicit_transport(&self, t: Transport) -> Result<Transport, ResolveError> {
        let t = match (self.target.sips, t) {
            (true, Transport::Udp) => return Err(ResolveError::UnsupportedTransport),
            (true, _) => Transport::Tls,
            (false, t) => t,
        };
        if self.supports(t) {
            Ok(t)
        } else {
            Err(ResolveError::UnsupportedTransport)
        }
    }

    fn start(&mut self) {
        let transport = match self.target.transport.map(|t| self.explicit_transport(t)) {
            Some(Err(e)) => return self.finish(Err(e)),
            Some(Ok(t)) => Some(t),
            None => None,
        };
        let Some(fallback) = transport.or_else(|| self.default_transport()) else {
            return self.finish(Err(ResolveError::UnsupportedTransport));
        };
        // §4.2: a numeric address is used as is, with the URI's port or the default.
        if let Some(ip) = self.target.numeric() {
            let port = self.target.port.unwrap_or(default_port(fallback));
            return self.finish(Ok(vec![Peer {
                transport: fallback,
                addr: SocketAddr::new(ip, port),
            }]));
        }
        if SipTarget::parse_host_port(&self.target.host).is_err() {
            return self.finish(Err(ResolveError::InvalidTarget));
        }
        if let Some(p) = self.target.port {
            // §4.2: a port in the URI means an A/AAAA lookup, no NAPTR or SRV.
            self.host_only = true;
            let host = Host {
                name: self.target.fqdn(),
                port: p,
                transport: fallback,
            };
            return self.ask_addresses(vec![host]);
        }
        if let Some(t) = transport {
            // §4.2: an explicit transport and no port: SRV for that transport.
            self.ask_srv(&[t]);
            return;
        }
        self.stage = Stage::Naptr;
        self.ask(Query::Naptr(self.target.fqdn()));
    }

    fn ask(&mut self, q: Query) -> QueryId {
        self.queries.push((q, None));
        QueryId(self.queries.len() - 1)
    }

    /// SRV queries for the given transports under the host's `_sip`/`_sips` names (§4.1 with
    /// no NAPTR, §4.2 with an explicit transport).
    fn ask_srv(&mut self, transports: &[Transport]) {
        self.stage = Stage::Srv;
        let host = self.target.fqdn();
        for &t in transports {
            let name = match (self.target.sips, t) {
                (true, Transport::Tls) | (false, Transport::Tls) => format!("_sips._tcp.{host}"),
                (false, Transport::Tcp) => format!("_sip._tcp.{host}"),
                (false, Transport::Udp) => format!("_sip._udp.{host}"),
                (true, _) => continue,
            };
            let id = self.ask(Query::Srv(name));
            self.srv.push((id, t));
        }
        if self.srv.is_empty() {
            self.finish(Err(ResolveError::UnsupportedTransport));
        }
    }

    fn ask_addresses(&mut self, hosts: Vec<Host>) {
        if hosts.is_empty() {
            return self.finish(Err(ResolveError::NoAddresses));
        }
        self.stage = Stage::Addr;
        for h in hosts {
            // Several SRV records may name the same host and port (one per transport): one
            // lookup serves them all.
            let known = self
                .hosts
                .iter()
                .find(|(k, _)| k.name == h.name)
                .map(|(_, q)| q.clone());
            let ids = match known {
                Some(ids) => ids,
                None => {
                    let mut ids = vec![self.ask(Query::A(h.name.clone()))];
                    if self.config.ipv6 {
                        ids.push(self.ask(Query::Aaaa(h.name.clone())));
                    }
                    ids
                }
            };
            self.hosts.push((h, ids));
        }
    }

    fn finish(&mut self, result: Result<Vec<Peer>, ResolveError>) {
        self.stage = Stage::Done;
        self.result = Some(result);
    }

    /// The next DNS question to ask, if any. The shell may ask all questions handed out so
    /// far at once; more may follow once they are answered.
    pub fn poll_query(&mut self) -> Option<(QueryId, Query)> {
        if self.stage == Stage::Done || self.next >= self.queries.len() {
            return None;
        }
        let id = QueryId(self.next);
        self.next += 1;
        Some((id, self.queries[id.0].0.clone()))
    }

    /// The answer to a query handed out by [`Self::poll_query`]. An answer of the wrong
    /// kind for its query counts as a failed lookup; a second answer is ignored.
    pub fn handle_answer(&mut self, id: QueryId, answer: Answer) {
        let Some((query, slot)) = self.queries.get_mut(id.0) else {
            return;
        };
        if slot.is_some() || id.0 >= self.next {
            return;
        }
        let fits = matches!(
            (&*query, &answer),
            (Query::Naptr(_), Answer::Naptr(_))
                | (Query::Srv(_), Answer::Srv(_))
                | (Query::A(_) | Query::Aaaa(_), Answer::Addrs(_))
                | (_, Answer::NoRecords | Answer::NxDomain | Answer::Failed)
        );
        *slot = Some(if fits { answer } else { Answer::Failed });
        if self.queries.iter().all(|(_, a)| a.is_some()) {
            self.advance();
        }
    }

    /// The resolution's outcome once every query is answered: the targets in order, with
    /// an expiry at `now` plus the smallest TTL seen (within the configured bounds).
    pub fn poll_result(&mut self, now: Instant) -> Option<Result<TargetSet, ResolveError>> {
        if self.stage != Stage::Done {
            return None;
        }
        let result = self.result.take()?;
        let ttl = self
            .min_ttl
            .map_or(self.config.max_ttl, |t| Duration::from_secs(u64::from(t)))
            .clamp(self.config.min_ttl, self.config.max_ttl);
        Some(result.map(|targets| TargetSet::fixed(targets, now + ttl)))
    }

    /// Whether the resolution ended (its result may already be taken).
    pub fn is_done(&self) -> bool {
        self.stage == Stage::Done
    }

    fn note_ttl(&mut self, ttl: u32) {
        self.min_ttl = Some(self.min_ttl.map_or(ttl, |m| m.min(ttl)));
    }

    fn answer(&self, id: QueryId) -> &Answer {
        self.queries[id.0]
            .1
            .as_ref()
            .expect("a stage advances only once every query is answered")
    }

    /// Every query of the current stage is answered: decide the next stage.
    fn advance(&mut self) {
        match self.stage {
            Stage::Naptr => self.after_naptr(),
            Stage::Srv => self.after_srv(),
            Stage::Addr => self.after_addresses(),
            Stage::Done => {}
        }
    }

    /// The NAPTR service field's transport, if the record is one this URI may use.
    fn naptr_transport(&self, services: &str) -> Option<Transport> {
        let t = match services.to_ascii_uppercase().as_str() {
            "SIP+D2U" if !self.target.sips => Transport::Udp,
            "SIP+D2T" if !self.target.sips => Transport::Tcp,
            "SIPS+D2T" => Transport::Tls,
            _ => return None,
        };
        self.supports(t).then_some(t)
    }

    fn after_naptr(&mut self) {
        let id = QueryId(0);
        let records = match self.answer(id) {
            Answer::NxDomain => return self.finish(Err(ResolveError::NoSuchDomain)),
            Answer::Naptr(r) => r.clone(),
            _ => Vec::new(),
        };
        // §4.1: keep the records whose service we support, with the `s` flag (the
        // replacement is an SRV name), in order, then preference.
        let mut usable: Vec<(Naptr, Transport)> = records
            .into_iter()
            .filter(|r| r.flags.eq_ignore_ascii_case("s"))
            .filter_map(|r| self.naptr_transport(&r.services).map(|t| (r, t)))
            .collect();
        usable.sort_by_key(|(r, _)| (r.order, r.preference));
        if usable.is_empty() {
            // §4.1: no (usable) NAPTR: SRV for each supported transport, in our order.
            let mut transports = self.config.transports.clone();
            transports.retain(|&t| !self.target.sips || t == Transport::Tls);
            return self.ask_srv(&transports);
        }
        self.stage = Stage::Srv;
        for (r, t) in usable {
            self.note_ttl(r.ttl);
            let id = self.ask(Query::Srv(fqdn(&r.replacement)));
            self.srv.push((id, t));
        }
    }

    fn after_srv(&mut self) {
        let mut hosts = Vec::new();
        for (id, t) in self.srv.clone() {
            let Answer::Srv(records) = self.answer(id).clone() else {
                continue;
            };
            for r in &records {
                self.note_ttl(r.ttl);
            }
            // RFC 2782: a single record with target `.` means the service is decidedly
            // not offered under this name.
            let (dot, real): (Vec<Srv>, Vec<Srv>) = records
                .into_iter()
                .partition(|r| r.target == "." || r.target.is_empty());
            if !dot.is_empty() && real.is_empty() {
                self.refused = true;
                continue;
            }
            for r in order_srv(real, &mut self.rng) {
                hosts.push(Host {
                    name: fqdn(&r.target),
                    port: r.port,
                    transport: t,
                });
            }
        }
        if !hosts.is_empty() {
            return self.ask_addresses(hosts);
        }
        if self.refused {
            return self.finish(Err(ResolveError::ServiceUnavailable));
        }
        // §4.2: no SRV records: the host's own addresses, with the transport chosen so far
        // (explicit, or the default for the scheme) and its default port.
        let transport = match self.target.transport {
            Some(t) => self.explicit_transport(t),
            None => self
                .default_transport()
                .ok_or(ResolveError::UnsupportedTransport),
        };
        match transport {
            Ok(t) => {
                self.host_only = true;
                let host = Host {
                    name: self.target.fqdn(),
                    port: default_port(t),
                    transport: t,
                };
                self.ask_addresses(vec![host]);
            }
            Err(e) => self.finish(Err(e)),
        }
    }

    fn after_addresses(&mut self) {
        let mut peers = Vec::new();
        let mut nx = 0;
        let mut failed = 0;
        let mut lookups = 0;
        let hosts = std::mem::take(&mut self.hosts);
        for (h, ids) in &hosts {
            for &id in ids {
                lookups += 1;
                match self.answer(id).clone() {
                    Answer::Addrs(addrs) => {
                        for (ip, ttl) in addrs {
                            self.note_ttl(ttl);
                            let p = Peer {
                                transport: h.transport,
                                addr: SocketAddr::new(ip, h.port),
                            };
                            if !peers.contains(&p) {
                                peers.push(p);
                            }
                        }
                    }
                    Answer::NxDomain => nx += 1,
                    Answer::Failed => failed += 1,
                    _ => {}
                }
            }
        }
        self.hosts = hosts;
        let result = if !peers.is_empty() {
            Ok(peers)
        } else if self.refused {
            Err(ResolveError::ServiceUnavailable)
        } else if lookups > 0 && nx == lookups && self.host_only {
            // Only the host itself was asked about, and it does not exist.
            Err(ResolveError::NoSuchDomain)
        } else if failed > 0 {
            Err(ResolveError::DnsFailure)
        } else {
            Err(ResolveError::NoAddresses)
        };
        self.finish(result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    type Dns = HashMap<Query, Answer>;

    /// One fixed instant for the whole test run, so expiries compare exactly.
    fn epoch() -> Instant {
        static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *EPOCH.get_or_init(crate::netem::test_epoch)
    }

    /// Runs a resolution against a table of answers (absent: NXDOMAIN), asking every query
    /// handed out at once as a shell would. Returns the result and the queries asked.
    fn run_with(
        target: SipTarget,
        config: ResolveConfig,
        dns: &Dns,
        seed: u64,
    ) -> (Result<TargetSet, ResolveError>, Vec<Query>) {
        let mut rng = CoreRng::from_seed(seed);
        let mut r = Resolution::new(target, config, &mut rng);
        let mut asked = Vec::new();
        loop {
            let mut batch = Vec::new();
            while let Some(q) = r.poll_query() {
                batch.push(q);
            }
            if batch.is_empty() {
                break;
            }
            for (id, q) in batch {
                let a = dns.get(&q).cloned().unwrap_or(Answer::NxDomain);
                asked.push(q);
                r.handle_answer(id, a);
            }
        }
        let result = r
            .poll_result(epoch())
            .expect("done once nothing is outstanding");
        (result, asked)
    }

    fn run(target: SipTarget, dns: &Dns) -> (Result<TargetSet, ResolveError>, Vec<Query>) {
        run_with(target, ResolveConfig::default(), dns, 1)
    }

    fn naptr(order: u16, services: &str, replacement: &str) -> Naptr {
        Naptr {
            order,
            preference: 50,
            flags: "s".into(),
            services: services.into(),
            replacement: replacement.into(),
            ttl: 3600,
        }
    }

    fn srv(priority: u16, weight: u16, port: u16, target: &str) -> Srv {
        Srv {
            priority,
            weight,
            port,
            target: target.into(),
            ttl: 600,
        }
    }

    fn a(ip: &str, ttl: u32) -> Answer {
        Answer::Addrs(vec![(ip.parse().unwrap(), ttl)])
    }

    fn peer(t: Transport, addr: &str) -> Peer {
        Peer {
            transport: t,
            addr: addr.parse().unwrap(),
        }
    }

    /// RFC 3263 §4.1's example zone: NAPTR for TLS, TCP and UDP in that order, one server
    /// per SRV name.
    fn rfc_zone() -> Dns {
        let mut dns = Dns::new();
        dns.insert(
            Query::Naptr("example.com.".into()),
            Answer::Naptr(vec![
                naptr(100, "SIP+D2U", "_sip._udp.example.com."),
                naptr(50, "SIPS+D2T", "_sips._tcp.example.com."),
                naptr(90, "SIP+D2T", "_sip._tcp.example.com"),
            ]),
        );
        for (name, port, host) in [
            ("_sips._tcp.example.com.", 5061, "tls.example.com"),
            ("_sip._tcp.example.com.", 5060, "tcp.example.com"),
            ("_sip._udp.example.com.", 5060, "udp.example.com"),
        ] {
            dns.insert(
                Query::Srv(name.into()),
                Answer::Srv(vec![srv(0, 1, port, host)]),
            );
        }
        dns.insert(Query::A("tls.example.com.".into()), a("192.0.2.1", 300));
        dns.insert(Query::A("tcp.example.com.".into()), a("192.0.2.2", 300));
        dns.insert(Query::A("udp.example.com.".into()), a("192.0.2.3", 300));
        dns.insert(
            Query::Aaaa("udp.example.com.".into()),
            a("2001:db8::3", 300),
        );
        dns
    }

    #[test]
    fn naptr_order_picks_transports_then_srv_then_addresses() {
        let (set, asked) = run(SipTarget::new("example.com"), &rfc_zone());
        let set = set.unwrap();
        assert_eq!(
            set.targets(),
            &[
                peer(Transport::Tls, "192.0.2.1:5061"),
                peer(Transport::Tcp, "192.0.2.2:5060"),
                peer(Transport::Udp, "192.0.2.3:5060"),
                peer(Transport::Udp, "[2001:db8::3]:5060"),
            ]
        );
        assert_eq!(asked[0], Query::Naptr("example.com.".into()));
        assert_eq!(asked[1], Query::Srv("_sips._tcp.example.com.".into()));
        // The smallest TTL of the chain (the A records' 300 s) bounds the set's life.
        assert_eq!(set.expires_at(), epoch() + Duration::from_secs(300));
        assert!(!set.is_expired(epoch() + Duration::from_secs(299)));
        assert!(set.is_expired(epoch() + Duration::from_secs(300)));
    }

    #[test]
    fn sips_uses_only_sips_services_and_unsupported_transports_are_skipped() {
        let mut t = SipTarget::new("example.com");
        t.sips = true;
        let (set, _) = run(t, &rfc_zone());
        assert_eq!(
            set.unwrap().targets(),
            &[peer(Transport::Tls, "192.0.2.1:5061")]
        );
        // A client without TLS starts with the server's second choice.
        let cfg = ResolveConfig {
            transports: vec![Transport::Udp, Transport::Tcp],
            ..ResolveConfig::default()
        };
        let (set, asked) = run_with(SipTarget::new("example.com"), cfg, &rfc_zone(), 1);
        assert_eq!(
            set.unwrap().targets()[0],
            peer(Transport::Tcp, "192.0.2.2:5060")
        );
        assert!(!asked.contains(&Query::Srv("_sips._tcp.example.com.".into())));
    }

    #[test]
    fn without_naptr_srv_is_asked_per_supported_transport() {
        // RFC 3263 §4.2's example: two UDP servers of equal priority.
        let mut dns = Dns::new();
        dns.insert(Query::Naptr("example.com.".into()), Answer::NoRecords);
        dns.insert(
            Query::Srv("_sip._udp.example.com.".into()),
            Answer::Srv(vec![
                srv(0, 1, 5060, "server1.example.com"),
                srv(0, 2, 5060, "server2.example.com"),
            ]),
        );
        dns.insert(
            Query::Srv("_sip._tcp.example.com.".into()),
            Answer::Srv(vec![srv(0, 0, 5070, "server1.example.com")]),
        );
        dns.insert(Query::A("server1.example.com.".into()), a("192.0.2.10", 60));
        dns.insert(Query::A("server2.example.com.".into()), a("192.0.2.20", 60));
        let (set, asked) = run(SipTarget::new("example.com"), &dns);
        let set = set.unwrap();
        assert_eq!(set.targets().len(), 3);
        // UDP first (the client's order), then TCP; server1's address is looked up once.
        assert_eq!(set.targets()[2], peer(Transport::Tcp, "192.0.2.10:5070"));
        assert_eq!(
            asked
                .iter()
                .filter(|q| **q == Query::A("server1.example.com.".into()))
                .count(),
            1
        );
        assert!(asked.contains(&Query::Srv("_sips._tcp.example.com.".into())));
        // Weighted choice: server2 (weight 2) comes first about two times in three.
        let first2 = (0..3000)
            .filter(|&seed| {
                let (s, _) = run_with(
                    SipTarget::new("example.com"),
                    ResolveConfig::default(),
                    &dns,
                    seed,
                );
                s.unwrap().targets()[0] == peer(Transport::Udp, "192.0.2.20:5060")
            })
            .count();
        assert!((1850..2150).contains(&first2), "{first2}");
    }

    #[test]
    fn srv_priority_beats_weight_and_zero_weights_still_get_picked() {
        let mut rng = CoreRng::from_seed(3);
        let recs = vec![
            srv(20, 100, 1, "c"),
            srv(10, 0, 2, "a"),
            srv(10, 0, 3, "b"),
            srv(30, 0, 4, "d"),
        ];
        for _ in 0..20 {
            let o = order_srv(recs.clone(), &mut rng);
            let names: Vec<&str> = o.iter().map(|r| r.target.as_str()).collect();
            assert!(
                names[..2].contains(&"a") && names[..2].contains(&"b"),
                "{names:?}"
            );
            assert_eq!(&names[2..], &["c", "d"]);
        }
        // Weight 0 beside weight 9: chosen first with probability 1/10.
        let recs = vec![srv(0, 9, 1, "heavy"), srv(0, 0, 2, "zero")];
        let zero_first = (0..5000)
            .filter(|_| order_srv(recs.clone(), &mut rng)[0].target == "zero")
            .count();
        assert!((350..650).contains(&zero_first), "{zero_first}");
    }

    #[test]
    fn a_records_with_default_port_when_no_naptr_or_srv() {
        let mut dns = Dns::new();
        dns.insert(Query::Naptr("sip.example.org.".into()), Answer::NoRecords);
        dns.insert(Query::A("sip.example.org.".into()), a("198.51.100.7", 120));
        dns.insert(Query::Aaaa("sip.example.org.".into()), Answer::NoRecords);
        let (set, _) = run(SipTarget::new("sip.example.org"), &dns);
        assert_eq!(
            set.unwrap().targets(),
            &[peer(Transport::Udp, "198.51.100.7:5060")]
        );
        let mut t = SipTarget::new("sip.example.org");
        t.sips = true;
        let (set, asked) = run(t, &dns);
        assert_eq!(
            set.unwrap().targets(),
            &[peer(Transport::Tls, "198.51.100.7:5061")]
        );
        assert!(asked.contains(&Query::Srv("_sips._tcp.sip.example.org.".into())));
        assert!(!asked.contains(&Query::Srv("_sip._udp.sip.example.org.".into())));
    }

    #[test]
    fn numeric_hosts_and_explicit_ports_skip_naptr_and_srv() {
        let dns = rfc_zone();
        let mut t = SipTarget::new("192.0.2.55");
        let (set, asked) = run(t.clone(), &dns);
        assert!(asked.is_empty());
        assert_eq!(
            set.unwrap().targets(),
            &[peer(Transport::Udp, "192.0.2.55:5060")]
        );
        t.port = Some(5080);
        t.transport = Some(Transport::Tcp);
        assert_eq!(
            run(t, &dns).0.unwrap().targets(),
            &[peer(Transport::Tcp, "192.0.2.55:5080")]
        );
        let (host, port) = SipTarget::parse_host_port("[2001:db8::9]:5062").unwrap();
        let mut t = SipTarget::new(host);
        t.port = port;
        t.sips = true;
        assert_eq!(
            run(t, &dns).0.unwrap().targets(),
            &[peer(Transport::Tls, "[2001:db8::9]:5062")]
        );
        // A name with a port: A/AAAA only.
        let mut t = SipTarget::new("udp.example.com");
        t.port = Some(5999);
        let (set, asked) = run(t, &dns);
        assert!(asked
            .iter()
            .all(|q| matches!(q, Query::A(_) | Query::Aaaa(_))));
        assert_eq!(
            set.unwrap().targets()[0],
            peer(Transport::Udp, "192.0.2.3:5999")
        );
    }

    #[test]
    fn explicit_transport_asks_only_its_srv() {
        let mut t = SipTarget::new("example.com");
        t.transport = Some(Transport::Tcp);
        let (set, asked) = run(t, &rfc_zone());
        assert_eq!(asked[0], Query::Srv("_sip._tcp.example.com.".into()));
        assert_eq!(
            set.unwrap().targets(),
            &[peer(Transport::Tcp, "192.0.2.2:5060")]
        );
        // sips with transport=tcp means TLS; sips with UDP is refused.
        let mut t = SipTarget::new("example.com");
        t.sips = true;
        t.transport = Some(Transport::Tcp);
        assert_eq!(
            run(t.clone(), &rfc_zone()).0.unwrap().targets(),
            &[peer(Transport::Tls, "192.0.2.1:5061")]
        );
        t.transport = Some(Transport::Udp);
        assert_eq!(
            run(t, &rfc_zone()).0,
            Err(ResolveError::UnsupportedTransport)
        );
    }

    #[test]
    fn failures_are_told_apart() {
        let empty = Dns::new();
        assert_eq!(
            run(SipTarget::new("nowhere.invalid"), &empty).0,
            Err(ResolveError::NoSuchDomain)
        );
        let mut dns = Dns::new();
        dns.insert(Query::Naptr("example.net.".into()), Answer::NoRecords);
        dns.insert(
            Query::Srv("_sip._udp.example.net.".into()),
            Answer::Srv(vec![srv(0, 0, 0, ".")]),
        );
        assert_eq!(
            run(SipTarget::new("example.net"), &dns).0,
            Err(ResolveError::ServiceUnavailable)
        );
        let mut dns = Dns::new();
        for q in [
            Query::Naptr("example.net.".into()),
            Query::Srv("_sip._udp.example.net.".into()),
            Query::A("example.net.".into()),
        ] {
            dns.insert(q, Answer::Failed);
        }
        assert_eq!(
            run(SipTarget::new("example.net"), &dns).0,
            Err(ResolveError::DnsFailure)
        );
        assert_eq!(
            run(SipTarget::new("bad_host!"), &dns).0,
            Err(ResolveError::InvalidTarget)
        );
        // An answer of the wrong kind is a failed lookup, not a panic.
        let mut rng = CoreRng::from_seed(1);
        let mut r = Resolution::new(
            SipTarget::new("x.example"),
            ResolveConfig::default(),
            &mut rng,
        );
        let (id, _) = r.poll_query().unwrap();
        r.handle_answer(id, Answer::Srv(vec![srv(0, 0, 1, "y")]));
        assert!(r.poll_query().is_some(), "went on to SRV");
    }

    #[test]
    fn target_set_fails_over_in_order_and_ignores_stale_reports() {
        let (set, _) = run(SipTarget::new("example.com"), &rfc_zone());
        let mut set = set.unwrap();
        let first = set.current().unwrap();
        let second = set.targets()[1];
        assert_eq!(set.handle_failure(first, Failure::Timeout), Some(second));
        // A second request that was in flight to the first target fails too: no skip.
        assert_eq!(
            set.handle_failure(first, Failure::TransportError),
            Some(second)
        );
        assert_eq!(
            set.handle_failure(second, Failure::from_status(503).unwrap()),
            Some(set.targets()[2])
        );
        assert_eq!(Failure::from_status(500), None);
        assert_eq!(set.remaining(), 2);
        let third = set.current().unwrap();
        let fourth = set.handle_failure(third, Failure::Timeout).unwrap();
        assert_eq!(set.handle_failure(fourth, Failure::Timeout), None);
        assert_eq!(set.remaining(), 0);
        set.rewind();
        assert_eq!(set.current(), Some(first));
    }

    #[test]
    fn ttl_is_clamped_to_the_configured_bounds() {
        let mut dns = Dns::new();
        dns.insert(Query::Naptr("example.org.".into()), Answer::NoRecords);
        dns.insert(Query::A("example.org.".into()), a("192.0.2.9", 0));
        let (set, _) = run(SipTarget::new("example.org"), &dns);
        assert_eq!(set.unwrap().expires_at(), epoch() + Duration::from_secs(30));
        dns.insert(Query::A("example.org.".into()), a("192.0.2.9", 10_000_000));
        let (set, _) = run(SipTarget::new("example.org"), &dns);
        assert_eq!(
            set.unwrap().expires_at(),
            epoch() + Duration::from_secs(86_400)
        );
    }
}
