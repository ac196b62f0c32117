//! [`Registrations`]: every binding of one core instance, their refresh and retry timers, the
//! global pace and the REGISTER transactions, behind a quinn-proto style surface.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::mem::size_of;
use std::time::{Duration, Instant};

use crate::auth::ChallengeKind;
use crate::msg::{HeaderName, Message, Method, ResponseBuilder};
use crate::rng::CoreRng;
use crate::timer::Timers;
use crate::txn::{ClientTxnId, IdHash, Peer, Transactions, Transmit, TxnEvent, TxnId};

use super::binding::{
    self, granted_expiry, retry_after, Binding, Scratch, IN_FLIGHT, MAYBE_BOUND, QUEUED, REMOVING,
    RESTART,
};
use super::digest::{self, ChallengeError};
use super::pacer::Pacer;
use super::peers::Peers;
use super::table::Table;
use super::{
    BindingConfig, BindingError, BindingId, BindingPhase, BindingStatus, FailReason, RegConfig,
    RegConfigError, RegEvent, RetryCause,
};

/// The registration engine of one core instance.
///
/// - Inputs (`handle_*`): [`Registrations::handle_incoming`] for every parsed message the
///   shell routes here (responses to REGISTER, requests to the gateway that are not calls),
///   [`Registrations::handle_timeout`] when the clock reaches
///   [`Registrations::poll_timeout`], [`Registrations::handle_transport_error`]; and the
///   binding operations [`Registrations::add_binding`], [`Registrations::update_binding`],
///   [`Registrations::remove_binding`].
/// - Outputs (`poll_*`): [`Registrations::poll_transmit`], [`Registrations::poll_event`],
///   [`Registrations::poll_timeout`].
/// - Getters: [`Registrations::status`], [`Registrations::len`],
///   [`Registrations::transactions`], [`Registrations::memory_report`].
///
/// After any input, drain `poll_transmit` and `poll_event`, then sleep until `poll_timeout`.
///
/// `Debug` prints counts only: bindings hold personal data (AORs, tokens) and secrets.
pub struct Registrations {
    config: RegConfig,
    txns: Transactions,
    bindings: Table,
    /// The sites (upstream address, domain, outbound proxy) the bindings use, interned.
    peers: Peers,
    /// Live REGISTER transactions and the binding each belongs to.
    /// Keyed by the layer's sequential ids, which no peer chooses: a multiply hashes them.
    in_flight: HashMap<ClientTxnId, BindingId, IdHash>,
    /// One entry per binding at most: its refresh or retry deadline.
    timers: Timers<BindingId>,
    /// Bindings waiting for the pace. May hold ids that left the queue since (removed or
    /// re-queued at the front); the `QUEUED` flag decides.
    queue: VecDeque<BindingId>,
    pacer: Pacer,
    rng: CoreRng,
    events: VecDeque<RegEvent>,
    /// Reused buffers for printing REGISTERs.
    scratch: Scratch,
}

impl fmt::Debug for Registrations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registrations")
            .field("bindings", &self.bindings.len())
            .field("in_flight", &self.in_flight.len())
            .field("queued", &self.queue.len())
            .field("timers", &self.timers.len())
            .finish_non_exhaustive()
    }
}

/// Rough memory use of an engine's bindings, for reports and tests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemoryReport {
    /// Live bindings.
    pub bindings: usize,
    /// `size_of` one binding's fixed state.
    pub binding_size: usize,
    /// Table bytes: the binding slab and the id index at their capacity.
    pub table_bytes: usize,
    /// Heap blocks of all bindings (strings, digest state), with malloc's chunk rounding.
    pub heap_bytes: usize,
    /// Timer entries (slot, heap index).
    pub timer_bytes: usize,
    /// Distinct sites: upstream address, domain and outbound proxy (interned, shared by the
    /// bindings).
    pub upstreams: usize,
}

impl MemoryReport {
    /// Average bytes per binding.
    pub fn per_binding(&self) -> f64 {
        let total = self.table_bytes + self.heap_bytes + self.timer_bytes;
        total as f64 / self.bindings.max(1) as f64
    }
}

/// glibc malloc's chunk for a request of `n` bytes (8-byte header, 16-byte alignment,
/// 32-byte minimum).
fn chunk(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        ((n + 8 + 15) & !15).max(32)
    }
}

/// The client transactions live at once when the upstream answers at the full pace: over
/// UDP each stays for T4 (Timer K) after its answer, so about `pace × T4`, plus a second of
/// pace for those in flight; capped, so that a very high pace does not reserve more than a
/// few megabytes up front. The engine makes room for them when it is created, so that the
/// wave after a restart does not regrow the transaction tables while it runs.
fn expected_live_clients(config: &RegConfig) -> usize {
    const CAP: usize = 1 << 16;
    let secs = config.txn.t4.as_secs().saturating_add(1);
    usize::try_from(u64::from(config.max_registers_per_sec).saturating_mul(secs))
        .unwrap_or(CAP)
        .min(CAP)
}

impl Registrations {
    /// An engine with no bindings; `rng` supplies Call-IDs, tags, branches, cnonces and jitter.
    /// Fails if the configuration would put unsafe text into headers.
    pub fn new(config: RegConfig, rng: CoreRng) -> Result<Self, RegConfigError> {
        config.validate()?;
        let mut txns = Transactions::new(config.txn.clone());
        txns.reserve_clients(expected_live_clients(&config));
        Ok(Self {
            txns,
            pacer: Pacer::new(config.max_registers_per_sec, config.pace_burst),
            config,
            bindings: Table::default(),
            peers: Peers::default(),
            in_flight: HashMap::default(),
            timers: Timers::new(),
            queue: VecDeque::new(),
            rng,
            events: VecDeque::new(),
            scratch: Scratch::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &RegConfig {
        &self.config
    }

    /// Number of bindings (including those being removed).
    pub fn len(&self) -> usize {
        self.bindings.len()
    }

    /// Whether there are no bindings.
    pub fn is_empty(&self) -> bool {
        self.bindings.is_empty()
    }

    /// The transaction layer (for its stats).
    pub fn transactions(&self) -> &Transactions {
        &self.txns
    }

    /// A snapshot of one binding.
    pub fn status(&self, id: BindingId) -> Option<BindingStatus> {
        let b = self.bindings.get(&id)?;
        Some(BindingStatus {
            phase: b.phase,
            granted_expires: b.granted,
            next_at: b.timer.and_then(|t| self.timers.deadline(t)),
            last_status: b.last_status,
            attempt: u32::from(b.attempt),
        })
    }

    /// Estimated memory of the bindings (not of in-flight transactions).
    pub fn memory_report(&self) -> MemoryReport {
        let heap_bytes = self
            .bindings
            .values()
            .map(|b| {
                chunk(b.strings.heap_len()) + digest::heap_blocks(&b.auth).map(chunk).sum::<usize>()
            })
            .sum();
        // Timer slot: generation, heap position, value; plus its heap entry: deadline,
        // sequence, slot.
        let timer_entry = size_of::<(u32, u32, Option<BindingId>)>() + size_of::<(u64, u64, u32)>();
        MemoryReport {
            bindings: self.bindings.len(),
            binding_size: size_of::<Binding>(),
            table_bytes: self.bindings.bytes(),
            heap_bytes,
            timer_bytes: self.timers.len() * timer_entry,
            upstreams: self.peers.len(),
        }
    }

    /// Makes room for `additional` more bindings, so that a restart loading a known number
    /// of stored bindings sizes the table once instead of doubling it (a doubled table may
    /// sit half empty: up to 2× the memory of the entries).
    pub fn reserve(&mut self, additional: usize) {
        self.bindings.reserve(additional);
    }

    /// Returns memory left over from a burst (a restart's queue, transaction tables) to the
    /// allocator. Cheap enough to call when idle.
    pub fn shrink_to_fit(&mut self) {
        self.txns.shrink_to_fit();
        self.in_flight.shrink_to_fit();
        self.queue.shrink_to_fit();
        self.timers.shrink_to_fit();
        self.events.shrink_to_fit();
    }

    /// Starts keeping `cfg`'s account registered: the first REGISTER goes as soon as the pace
    /// allows.
    pub fn add_binding(
        &mut self,
        now: Instant,
        id: BindingId,
        cfg: BindingConfig,
    ) -> Result<(), BindingError> {
        if self.bindings.contains_key(&id) {
            return Err(BindingError::Duplicate);
        }
        // On the stack: `pack` copies them into the binding's one allocation.
        let call_id = self.rng.call_id_token();
        let tag = self.rng.tag_token();
        let (strings, site) =
            binding::pack_ref(id, &cfg, &self.config, call_id.as_str(), tag.as_str(), "")?;
        let upstream = self.peers.intern_ref(site);
        self.bindings
            .insert(id, Binding::new(strings, upstream, cfg.expires));
        self.enqueue(id, false);
        self.flush(now);
        Ok(())
    }

    /// Replaces a binding's configuration. Returns `false` (and does nothing) when nothing
    /// changed; otherwise forgets the digest nonces if the credentials or upstream changed,
    /// clears a permanent failure, and registers again (after the REGISTER in flight, if any).
    /// Call-ID and CSeq continue. When the contact token changed, the next REGISTER also
    /// carries the old Contact with `expires=0`, so the upstream drops it at once.
    pub fn update_binding(
        &mut self,
        now: Instant,
        id: BindingId,
        cfg: BindingConfig,
    ) -> Result<bool, BindingError> {
        let b = match self.bindings.get_mut(&id) {
            Some(b) if b.phase != BindingPhase::Unregistering => b,
            _ => return Err(BindingError::Unknown),
        };
        let call_id = b.strings.get(binding::CALL_ID).to_owned();
        let tag = b.strings.get(binding::TAG).to_owned();
        let token = b.token(id);
        // A new token replaces a Contact the upstream may hold: remove that one with the
        // next REGISTER rather than letting it ring into nowhere until it lapses.
        let old_token = if cfg.contact_token != token && b.flags & MAYBE_BOUND != 0 {
            token.into_owned()
        } else {
            b.strings.get(binding::OLD_TOKEN).to_owned()
        };
        let (strings, site) = binding::pack(id, &cfg, &self.config, &call_id, &tag, &old_token)?;
        let same = |i: usize| strings.get(i) == b.strings.get(i);
        let same_all = (0..binding::CONFIG_FIELDS).all(same);
        let old_site = self.peers.get(b.upstream);
        let same_site = *old_site == site;
        if same_all && same_site && b.expires == cfg.expires {
            return Ok(false);
        }
        let creds_same =
            old_site.domain == site.domain && same(binding::AUTH_USER) && same(binding::PASSWORD);
        if !creds_same || old_site.peer != site.peer {
            b.auth = None;
        }
        if !same_site {
            self.peers.release(b.upstream);
            b.upstream = self.peers.intern(site);
        }
        b.strings = strings;
        b.expires = cfg.expires;
        b.attempt = 0;
        b.phase = BindingPhase::Registering;
        if b.flags & IN_FLIGHT != 0 {
            b.flags |= RESTART;
        } else {
            self.enqueue(id, false);
            self.flush(now);
        }
        Ok(true)
    }

    /// Where `id`'s REGISTERs go now.
    pub fn upstream(&self, id: BindingId) -> Option<Peer> {
        let b = self.bindings.get(&id)?;
        Some(self.peers.get(b.upstream).peer)
    }

    /// Sends `id`'s REGISTERs to `upstream` from now on: RFC 3263 §4.3 failover to the next
    /// target of the same resolution, so domain, credentials, Call-ID and CSeq stay. Digest
    /// state is dropped (the nonce was the old server's). Unlike
    /// [`Self::update_binding`], the attempt count is kept, so cycling through dead targets
    /// still backs off. With `at_once`, a binding waiting for its retry timer is queued now
    /// (a failover need not wait for the backoff); otherwise the next attempt, when due,
    /// goes to `upstream`. Returns whether anything changed.
    pub fn move_upstream(
        &mut self,
        now: Instant,
        id: BindingId,
        upstream: Peer,
        at_once: bool,
    ) -> Result<bool, BindingError> {
        let b = self.bindings.get_mut(&id).ok_or(BindingError::Unknown)?;
        let old = self.peers.get(b.upstream);
        if old.peer == upstream {
            return Ok(false);
        }
        let mut site = old.clone();
        site.peer = upstream;
        self.peers.release(b.upstream);
        b.upstream = self.peers.intern(site);
        b.auth = None;
        let waiting = b.phase == BindingPhase::Retrying && b.flags & (IN_FLIGHT | QUEUED) == 0;
        if at_once && waiting {
            self.enqueue(id, false);
            self.flush(now);
        }
        Ok(true)
    }

    /// Unregisters (REGISTER with Expires: 0) and forgets the binding; reports
    /// [`RegEvent::Unregistered`] when done. A binding that cannot be registered upstream
    /// (never sent, or failed) is forgotten at once.
    pub fn remove_binding(&mut self, now: Instant, id: BindingId) -> Result<(), BindingError> {
        let b = self.bindings.get_mut(&id).ok_or(BindingError::Unknown)?;
        if b.phase == BindingPhase::Unregistering {
            return Ok(());
        }
        if b.flags & IN_FLIGHT != 0 {
            b.flags |= REMOVING;
            b.phase = BindingPhase::Unregistering;
            return Ok(());
        }
        if b.flags & MAYBE_BOUND != 0 && b.phase != BindingPhase::Failed {
            b.phase = BindingPhase::Unregistering;
            self.enqueue(id, false);
            self.flush(now);
        } else {
            self.forget(id, false);
        }
        Ok(())
    }

    /// Handles one parsed message from `peer`: a response to one of our REGISTERs, or a
    /// request (OPTIONS is answered 200, anything else 405).
    pub fn handle_incoming(&mut self, now: Instant, message: Message, peer: Peer) {
        self.txns.handle_incoming(now, message, peer);
        self.pump(now);
        self.flush(now);
    }

    /// Fires transaction timers, refresh and retry deadlines, and the pace, as due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.txns.handle_timeout(now);
        self.pump(now);
        while let Some((tid, _, id)) = self.timers.pop_expired(now) {
            if let Some(b) = self.bindings.get_mut(&id) {
                if b.timer == Some(tid) {
                    b.timer = None;
                    self.enqueue(id, false);
                }
            }
        }
        self.flush(now);
    }

    /// The transport to `peer` failed: REGISTERs in flight to it are retried with backoff.
    pub fn handle_transport_error(&mut self, now: Instant, peer: Peer) {
        self.txns.handle_transport_error(now, peer);
        self.pump(now);
        self.flush(now);
    }

    /// The earliest deadline: a transaction timer, a refresh or retry, or the pace.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let pace = if self.queue.is_empty() {
            None
        } else {
            self.pacer.next_allowed()
        };
        [self.txns.poll_timeout(), self.timers.poll_timeout(), pace]
            .into_iter()
            .flatten()
            .min()
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.txns.poll_transmit()
    }

    /// The next event for the shell.
    pub fn poll_event(&mut self) -> Option<RegEvent> {
        self.events.pop_front()
    }

    /// Queues `id` to send; `front` for the continuation of an exchange (a challenge's answer,
    /// a 423 retry), which should not wait behind the whole backlog.
    fn enqueue(&mut self, id: BindingId, front: bool) {
        let Some(b) = self.bindings.get_mut(&id) else {
            return;
        };
        if let Some(t) = b.timer.take() {
            self.timers.cancel(t);
        }
        if front {
            b.flags |= QUEUED;
            self.queue.push_front(id);
        } else if b.flags & QUEUED == 0 {
            b.flags |= QUEUED;
            self.queue.push_back(id);
        }
    }

    /// Sends queued REGISTERs as far as the pace allows.
    fn flush(&mut self, now: Instant) {
        while let Some(&id) = self.queue.front() {
            let live = self
                .bindings
                .get(&id)
                .is_some_and(|b| b.flags & (QUEUED | IN_FLIGHT) == QUEUED);
            if !live {
                self.queue.pop_front();
                continue;
            }
            if !self.pacer.try_take(now) {
                break;
            }
            self.queue.pop_front();
            self.send(now, id);
        }
    }

    fn send(&mut self, now: Instant, id: BindingId) {
        let Some(b) = self.bindings.get_mut(&id) else {
            return;
        };
        b.flags &= !QUEUED;
        let unregister = b.phase == BindingPhase::Unregistering;
        let site = self.peers.get(b.upstream);
        let peer = site.peer;
        let (request, branch) = b.register_request(
            id,
            site,
            &self.config,
            &mut self.rng,
            unregister,
            &mut self.scratch,
        );
        match self
            .txns
            .send_own_request(now, request, Method::Register, peer, branch)
        {
            Ok(t) => {
                b.flags |= IN_FLIGHT;
                if !unregister {
                    b.flags |= MAYBE_BOUND;
                }
                self.in_flight.insert(t, id);
            }
            Err(_) if unregister => self.forget(id, false),
            // Our requests always carry a fresh branch; the layer refuses only when full.
            Err(_) => self.retry(now, id, RetryCause::LocalOverload),
        }
    }

    /// Handles what the transaction layer reported.
    fn pump(&mut self, now: Instant) {
        while let Some(event) = self.txns.poll_event() {
            match event {
                TxnEvent::Request { id, request, .. } => {
                    let status = if request.method() == Some(Method::Options) {
                        200
                    } else {
                        405
                    };
                    let tag = self.rng.tag();
                    let response = ResponseBuilder::for_request(&request, status, Some(&tag))
                        .header(HeaderName::Allow, "OPTIONS")
                        .build();
                    // Fails only if the transaction is gone, and then there is no one to answer.
                    let _ = self.txns.send_response(now, id, response);
                }
                // Provisional responses change nothing for a REGISTER.
                TxnEvent::Response { id, response }
                    if response.status().is_some_and(|s| s >= 200) =>
                {
                    if let Some(bid) = self.in_flight.remove(&id) {
                        self.handle_final(now, bid, &response);
                    }
                }
                TxnEvent::Timeout {
                    id: TxnId::Client(c),
                    ..
                }
                | TxnEvent::Terminated {
                    id: TxnId::Client(c),
                } => {
                    // Terminated while still in flight means it ended without a final answer.
                    if let Some(bid) = self.in_flight.remove(&c) {
                        self.handle_failure(now, bid, RetryCause::Timeout);
                    }
                }
                TxnEvent::TransportError {
                    id: TxnId::Client(c),
                } => {
                    if let Some(bid) = self.in_flight.remove(&c) {
                        self.handle_failure(now, bid, RetryCause::TransportError);
                    }
                }
                _ => {}
            }
        }
    }

    /// The in-flight REGISTER of `id` got no final answer.
    fn handle_failure(&mut self, now: Instant, id: BindingId, cause: RetryCause) {
        let Some(b) = self.bindings.get_mut(&id) else {
            return;
        };
        b.flags &= !IN_FLIGHT;
        if b.flags & REMOVING != 0 {
            b.flags &= !REMOVING;
            self.enqueue(id, false);
        } else if b.phase == BindingPhase::Unregistering {
            self.forget(id, false);
        } else if b.flags & RESTART != 0 {
            b.flags &= !RESTART;
            self.enqueue(id, false);
        } else {
            self.retry(now, id, cause);
        }
    }

    /// The in-flight REGISTER of `id` got its final response.
    fn handle_final(&mut self, now: Instant, id: BindingId, response: &Message) {
        let Some(b) = self.bindings.get_mut(&id) else {
            return;
        };
        b.flags &= !IN_FLIGHT;
        let status = response.status().unwrap_or(0);
        b.last_status = status;
        let challenge = match status {
            401 => Some((ChallengeKind::Www, HeaderName::WwwAuthenticate)),
            407 => Some((ChallengeKind::Proxy, HeaderName::ProxyAuthenticate)),
            _ => None,
        };
        let domain = &self.peers.get(b.upstream).domain;
        let challenged = challenge.map(|(kind, header)| {
            digest::handle_challenge(&mut b.auth, domain, kind, response.header_lines(header))
        });
        if challenged.is_none() {
            digest::handle_success(&mut b.auth);
        }
        // Removal or a new configuration arrived while this REGISTER was in flight: whatever
        // it was answered, start the next step afresh (a challenge is kept for it).
        if b.flags & REMOVING != 0 {
            b.flags &= !REMOVING;
            if matches!(status, 403 | 404) {
                self.forget(id, false);
            } else {
                self.enqueue(id, false);
            }
            return;
        }
        if b.flags & RESTART != 0 {
            b.flags &= !RESTART;
            self.enqueue(id, false);
            return;
        }
        let unregistering = b.phase == BindingPhase::Unregistering;
        match (status, challenged) {
            (_, Some(Ok(()))) => self.enqueue(id, true),
            (_, Some(Err(_))) if unregistering => self.forget(id, false),
            (_, Some(Err(e))) => {
                let reason = match e {
                    ChallengeError::NoUsable => FailReason::UnsupportedChallenge,
                    ChallengeError::Rejected | ChallengeError::TooManyStale => {
                        FailReason::AuthRejected
                    }
                };
                self.fail(id, status, reason);
            }
            (200..=299, None) if unregistering => self.forget(id, true),
            (200..=299, None) => {
                b.clear_old_token();
                let granted = granted_expiry(response, b.token_in(id, &mut [0; 16]), b.expires);
                if granted == 0 {
                    self.retry(now, id, RetryCause::NotBound);
                } else {
                    self.registered(now, id, granted);
                }
            }
            (_, None) if unregistering => self.forget(id, false),
            (423, None) => {
                let min = response.min_expires().ok().flatten().unwrap_or(0);
                // Raise at once, but only upwards and within bounds: a server that keeps
                // answering 423 to its own Min-Expires gets backoff, not a tight loop.
                if min > self.config.max_expires {
                    // The server wants longer registrations than we are configured to
                    // hold: retrying cannot help.
                    self.fail(id, status, FailReason::Rejected);
                } else if min > b.expires {
                    b.expires = min;
                    self.enqueue(id, true);
                } else {
                    let cause = RetryCause::Status {
                        status,
                        retry_after: None,
                    };
                    self.retry(now, id, cause);
                }
            }
            (403, None) => self.fail(id, status, FailReason::Forbidden),
            (404, None) => self.fail(id, status, FailReason::NotFound),
            (408 | 429 | 480 | 500..=599, None) => {
                let cause = RetryCause::Status {
                    status,
                    retry_after: retry_after(response),
                };
                self.retry(now, id, cause);
            }
            (_, None) => self.fail(id, status, FailReason::Rejected),
        }
    }

    fn registered(&mut self, now: Instant, id: BindingId, granted: u32) {
        let (lo, hi) = self.config.refresh_window;
        // Clamped so that a misconfigured window can neither refresh in a tight loop nor
        // after the registration lapsed.
        let frac = (lo + (hi - lo) * self.rng.unit()).clamp(0.05, 0.95);
        let refresh_at = now + Duration::from_secs(u64::from(granted)).mul_f64(frac);
        let Some(b) = self.bindings.get_mut(&id) else {
            return;
        };
        b.phase = BindingPhase::Registered;
        b.attempt = 0;
        b.granted = granted;
        b.timer = Some(self.timers.insert(refresh_at, id));
        self.events.push_back(RegEvent::Registered {
            id,
            expires: granted,
            refresh_at,
        });
    }

    /// Schedules the next attempt with exponential backoff and full jitter: uniform in
    /// `[0, min(cap, base · 2^(attempt-1))]`, after the Retry-After if the server gave one.
    fn retry(&mut self, now: Instant, id: BindingId, cause: RetryCause) {
        let Some(b) = self.bindings.get_mut(&id) else {
            return;
        };
        b.attempt = b.attempt.saturating_add(1);
        let attempt = u32::from(b.attempt);
        let ceiling = self
            .config
            .retry_base
            .saturating_mul(1u32 << (attempt - 1).min(20))
            .min(self.config.retry_cap);
        let jitter_ms = self.rng.below(ceiling.as_millis() as u64 + 1);
        let mut delay = Duration::from_millis(jitter_ms);
        if let RetryCause::Status {
            retry_after: Some(s),
            ..
        } = cause
        {
            delay += Duration::from_secs(u64::from(s)).min(self.config.max_retry_after);
        }
        let at = now + delay;
        b.phase = BindingPhase::Retrying;
        if let Some(t) = b.timer.take() {
            self.timers.cancel(t);
        }
        b.timer = Some(self.timers.insert(at, id));
        self.events.push_back(RegEvent::Retrying {
            id,
            attempt,
            next_attempt_at: at,
            cause,
        });
    }

    fn fail(&mut self, id: BindingId, status: u16, reason: FailReason) {
        let Some(b) = self.bindings.get_mut(&id) else {
            return;
        };
        b.phase = BindingPhase::Failed;
        if let Some(t) = b.timer.take() {
            self.timers.cancel(t);
        }
        self.events
            .push_back(RegEvent::Failed { id, status, reason });
    }

    /// Drops a binding. Never called with a REGISTER in flight (removal waits for it), so no
    /// `in_flight` entry can outlive its binding.
    fn forget(&mut self, id: BindingId, upstream: bool) {
        if let Some(mut b) = self.bindings.remove(&id) {
            debug_assert!(b.flags & IN_FLIGHT == 0);
            if let Some(t) = b.timer.take() {
                self.timers.cancel(t);
            }
            self.peers.release(b.upstream);
            self.events
                .push_back(RegEvent::Unregistered { id, upstream });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_for_the_transactions_of_pace_times_t4_capped() {
        let mut config = RegConfig::new("192.0.2.1:5060");
        config.max_registers_per_sec = 500;
        // T4 is 5 s: five seconds of answered transactions plus one in flight.
        assert_eq!(expected_live_clients(&config), 3_000);
        config.max_registers_per_sec = 4_000;
        assert_eq!(expected_live_clients(&config), 24_000);
        config.max_registers_per_sec = u32::MAX;
        assert_eq!(expected_live_clients(&config), 1 << 16);
    }
}
