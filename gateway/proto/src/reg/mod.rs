//! Registration on behalf of sleeping phones: the REGISTER client machine for every binding.
//!
//! [`Registrations`] keeps each binding (a SIP account the gateway registers for a phone that
//! went to the background) registered on the operator's server. It is sans-IO like the rest
//! of the crate: it owns a [`crate::txn::Transactions`] for its REGISTER client transactions,
//! one [`crate::timer::Timers`] for every refresh and retry deadline, and a global pace; the
//! shell feeds it messages, timeouts and transport errors and drains transmits and
//! [`RegEvent`]s.
//!
//! One binding's life (RFC 3261 §10.2, RFC 8760 digest, RFC 3261 §21.4.17 for 423):
//!
//! ```text
//!  add / update / timer due
//!          |
//!          v                         401/407: answer (stale: again, ≤ 3×), queue first
//!      [queued] --pace--> [in flight] ----------------------------------+
//!          ^                 |  |  |  423: Expires := Min-Expires, queue first
//!          |                 |  |  +------------------------------------+
//!          |           2xx   |  |  408, 5xx, timeout, transport error
//!          |                 v  v
//!          |      [registered]  [retrying] --backoff timer (full jitter, Retry-After)--+
//!          |            |                                                            |
//!          +-- refresh at U[50 %, 85 %] of the granted expiry ------------------------+
//!
//!  403, 404, other final 4xx/6xx, rejected credentials --> [failed] (until update)
//!  remove --> Expires: 0 REGISTER (with digest) --> forgotten, Unregistered
//! ```
//!
//! - Call-ID and From tag are fixed per binding, CSeq grows by one per REGISTER, each
//!   REGISTER has a fresh branch (RFC 3261 §10.2.4, §8.1.1.7).
//! - The Contact is `<sip:TOKEN@LOCAL;transport=…>`: TOKEN is the shell's per-binding token,
//!   so an INVITE for the binding is routed with one lookup. The granted expiry is our
//!   Contact's `expires` in the 200 (matched by TOKEN), else the Expires header.
//! - Digest state is kept between refreshes (nonce reuse with increasing nc), compactly (the
//!   private `digest` module); no message is stored per binding between refreshes.
//! - Every REGISTER waits for the global pace ([`RegConfig::max_registers_per_sec`]); answers
//!   to challenges jump the queue so a binding's exchange is not stretched by the backlog.
//! - Requests that reach the engine are answered: OPTIONS (keep-alive pings) with 200,
//!   anything else with 405. The shell routes INVITE and MESSAGE to the relay machine.
//!
//! Architecture Invariant: one timer entry per binding at most; no per-binding task, message
//! or timer beyond that entry.
//!
//! # Run loop
//!
//! ```
//! use vigil_proto::auth::Password;
//! use vigil_proto::msg::{HeaderName, Message, ResponseBuilder};
//! use vigil_proto::reg::{BindingConfig, BindingId, RegConfig, RegEvent, Registrations};
//! use vigil_proto::rng::CoreRng;
//! use vigil_proto::txn::Peer;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let now = vigil_proto::netem::test_epoch(); // the shell passes its clock reading
//! let mut reg = Registrations::new(RegConfig::new("gw.example.net:5060"), CoreRng::from_seed(1))?;
//! let upstream = Peer::udp("192.0.2.10:5060".parse()?);
//! reg.add_binding(now, BindingId(7), BindingConfig {
//!     user: "alice".into(),
//!     domain: "example.org".into(),
//!     auth_user: None,
//!     password: Password::new("secret"),
//!     outbound_proxy: None,
//!     upstream,
//!     expires: 3600,
//!     contact_token: "k7Qd2".into(),
//! })?;
//! // Drain outputs after every input: here, the first REGISTER.
//! let out = reg.poll_transmit().expect("the first REGISTER");
//! assert_eq!(out.peer, upstream);
//! let request = Message::parse(out.bytes)?;
//! // The registrar's answer comes back through handle_incoming.
//! let ok = ResponseBuilder::for_request(&request, 200, Some("r1"))
//!     .header(HeaderName::Contact, "<sip:k7Qd2@gw.example.net:5060>;expires=600")
//!     .build();
//! reg.handle_incoming(now, ok, upstream);
//! let Some(RegEvent::Registered { expires: 600, refresh_at, .. }) = reg.poll_event() else {
//!     panic!("registered")
//! };
//! // The shell sleeps until poll_timeout and calls handle_timeout then; the refresh is
//! // among those deadlines.
//! assert!(reg.poll_timeout().is_some_and(|t| t <= refresh_at));
//! # Ok(())
//! # }
//! ```

mod binding;
mod digest;
mod engine;
mod pacer;
mod peers;
mod strings;
mod table;

use std::fmt;
use std::time::{Duration, Instant};

use crate::auth::Password;
use crate::txn::{Peer, TxnConfig};

pub use engine::{MemoryReport, Registrations};

/// Identifies one binding; chosen by the shell (e.g. the storage row id of the device).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BindingId(pub u64);

impl fmt::Display for BindingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b{}", self.0)
    }
}

/// Settings shared by every binding of an engine.
#[derive(Debug, Clone)]
pub struct RegConfig {
    /// `host:port` of the gateway as the upstream must reach it (its public address behind
    /// NAT or a load balancer): the Contact host and the Via sent-by.
    pub local_addr: String,
    /// Refreshes happen at a uniformly random point in this fraction of the granted expiry.
    pub refresh_window: (f64, f64),
    /// First retry ceiling of the exponential backoff (full jitter: uniform in `[0, ceiling]`).
    pub retry_base: Duration,
    /// Largest backoff ceiling.
    pub retry_cap: Duration,
    /// Largest Retry-After honoured, so a broken server cannot park a binding for days.
    pub max_retry_after: Duration,
    /// Global pace of REGISTER requests (every REGISTER counts, challenge answers included);
    /// 0 means unlimited.
    pub max_registers_per_sec: u32,
    /// How many REGISTERs may go at once after an idle period.
    pub pace_burst: u32,
    /// Largest expiry accepted from a 423's Min-Expires.
    pub max_expires: u32,
    /// `User-Agent` header value, if any.
    pub user_agent: Option<String>,
    /// Timers and limits of the REGISTER transactions.
    pub txn: TxnConfig,
}

impl RegConfig {
    /// Defaults for a gateway reachable at `local_addr` (`host:port`): refresh in
    /// [50 %, 85 %], backoff 2 s doubling to 5 min, 500 REGISTER/s, burst 1.
    pub fn new(local_addr: impl Into<String>) -> Self {
        Self {
            local_addr: local_addr.into(),
            refresh_window: (0.5, 0.85),
            retry_base: Duration::from_secs(2),
            retry_cap: Duration::from_secs(300),
            max_retry_after: Duration::from_secs(3600),
            max_registers_per_sec: 500,
            pace_burst: 1,
            max_expires: 86_400,
            user_agent: None,
            txn: TxnConfig::default(),
        }
    }
}

/// One SIP account to keep registered. `Debug` prints no personal data and no secret.
#[derive(Clone)]
pub struct BindingConfig {
    /// User part of the address of record (`sip:USER@DOMAIN`), as it goes in the URI.
    pub user: String,
    /// Domain of the address of record (`host` or `host:port`); the Request-URI is
    /// `sip:DOMAIN`.
    pub domain: String,
    /// Digest username, when it differs from `user`.
    pub auth_user: Option<String>,
    /// The digest password.
    pub password: Password,
    /// An outbound proxy (`host[:port]`), put in a loose Route. The shell sends to
    /// `upstream` either way.
    pub outbound_proxy: Option<String>,
    /// Where the shell sends this binding's REGISTERs (resolved by RFC 3263 or from the
    /// outbound proxy), with the transport to use.
    pub upstream: Peer,
    /// Preferred registration expiry in seconds (raised by a 423's Min-Expires).
    pub expires: u32,
    /// The Contact user part that identifies the binding on incoming requests.
    pub contact_token: String,
}

impl fmt::Debug for BindingConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BindingConfig")
            .field("upstream", &self.upstream)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// Why [`Registrations::new`] refused a [`RegConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegConfigError {
    /// `local_addr` is not a `host[:port]` (it goes into every Via and Contact).
    #[error("local_addr must be host[:port]")]
    LocalAddr,
    /// `user_agent` holds control characters.
    #[error("user_agent must be printable")]
    UserAgent,
    /// `refresh_window` is not `0 < lo <= hi < 1`.
    #[error("refresh_window must satisfy 0 < lo <= hi < 1")]
    RefreshWindow,
}

impl RegConfig {
    fn validate(&self) -> Result<(), RegConfigError> {
        let host_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 260
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        };
        if !host_ok(&self.local_addr) {
            return Err(RegConfigError::LocalAddr);
        }
        if let Some(ua) = &self.user_agent {
            if ua.bytes().any(|b| b < 0x20 || b == 0x7f) {
                return Err(RegConfigError::UserAgent);
            }
        }
        let (lo, hi) = self.refresh_window;
        if !(lo > 0.0 && lo <= hi && hi < 1.0) {
            return Err(RegConfigError::RefreshWindow);
        }
        Ok(())
    }
}

/// A field of [`BindingConfig`], named in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BindingField {
    User,
    Domain,
    AuthUser,
    Password,
    OutboundProxy,
    Expires,
    ContactToken,
}

/// Why [`Registrations::add_binding`] or [`Registrations::update_binding`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BindingError {
    /// A field is empty, too long or holds characters that cannot go where it is used.
    #[error("invalid {0:?}")]
    InvalidField(BindingField),
    /// `add_binding` with an id that is already live.
    #[error("binding already exists")]
    Duplicate,
    /// `update_binding` or `remove_binding` with an unknown id.
    #[error("unknown binding")]
    Unknown,
}

/// What the engine reports to the shell (storage, the HTTP API, metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegEvent {
    /// The upstream accepted a REGISTER (initial or refresh).
    Registered {
        id: BindingId,
        /// Granted expiry in seconds.
        expires: u32,
        /// When the next refresh is due.
        refresh_at: Instant,
    },
    /// A REGISTER failed for a reason worth retrying; another attempt is scheduled.
    Retrying {
        id: BindingId,
        /// Consecutive failed attempts, 1 for the first.
        attempt: u32,
        next_attempt_at: Instant,
        cause: RetryCause,
    },
    /// The upstream refused for good; nothing more happens until `update_binding`.
    Failed {
        id: BindingId,
        /// The final status received (401/407 for rejected credentials).
        status: u16,
        reason: FailReason,
    },
    /// The binding was removed and forgotten.
    Unregistered {
        id: BindingId,
        /// The upstream accepted the Expires: 0 REGISTER (false: it was never registered,
        /// had failed, or the removal REGISTER got no 2xx; the upstream binding then lapses).
        upstream: bool,
    },
}

/// Why a REGISTER will be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryCause {
    /// A final response such as 408, 480, 5xx; `retry_after` in seconds when given.
    Status {
        status: u16,
        retry_after: Option<u32>,
    },
    /// The transaction timed out (Timer F): no answer at all.
    Timeout,
    /// The shell reported that the transport to the upstream failed.
    TransportError,
    /// A 2xx that does not list our Contact with a non-zero expiry.
    NotBound,
    /// The local transaction layer is full.
    LocalOverload,
}

/// Why a binding failed permanently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailReason {
    /// 403: the account may not register.
    Forbidden,
    /// 404: no such user.
    NotFound,
    /// Credentials were rejected (a second challenge without `stale`, or too many stale).
    AuthRejected,
    /// A challenge we cannot answer (scheme, algorithm or qop we do not implement).
    UnsupportedChallenge,
    /// Another final 4xx/6xx that retrying will not fix.
    Rejected,
}

/// The externally visible state of a binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BindingPhase {
    /// Waiting for the pace or for an answer, never registered since the last change.
    Registering,
    /// The last REGISTER was accepted.
    Registered,
    /// The last attempt failed; another is scheduled.
    Retrying,
    /// Failed permanently.
    Failed,
    /// Being removed (Expires: 0 pending).
    Unregistering,
}

/// A snapshot of one binding, for the intake API's GET.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindingStatus {
    pub phase: BindingPhase,
    /// Last granted expiry in seconds (0 before the first 2xx).
    pub granted_expires: u32,
    /// Next refresh or retry, if one is scheduled.
    pub next_at: Option<Instant>,
    /// Status of the last final response (0 if none yet).
    pub last_status: u16,
    /// Consecutive failed attempts.
    pub attempt: u32,
}
