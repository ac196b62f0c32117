//! [`Transactions`]: every client and server transaction of one core instance, their
//! matching indexes and their timers, behind a quinn-proto style surface.

use std::collections::hash_map::{Entry, RandomState};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::time::Instant;

use hashbrown::HashTable;

use crate::msg::{HeaderName, Message, Method, ResponseBuilder};
use crate::timer::Timers;

use super::client::{ClientState, ClientTxn};
use super::io::{Io, Step, TimerEntry};
use super::key::{to_tag, ClientKey, LegacyTags, ServerKeyRef};
use super::server::{ServerState, ServerTxn};
use super::{
    ClientTxnId, Peer, Rejection, ResponseError, SendError, ServerTxnId, Transmit, TxnConfig,
    TxnEvent, TxnId, TxnStats,
};

/// The transaction layer of one core instance.
///
/// - Inputs (`handle_*`, `send_*`): [`Transactions::handle_incoming`] for every parsed
///   message from the network, [`Transactions::handle_timeout`] when the clock reaches
///   [`Transactions::poll_timeout`], [`Transactions::handle_transport_error`] when a
///   connection or send fails, and the TU's [`Transactions::send_request`] /
///   [`Transactions::send_response`].
/// - Outputs (`poll_*`): [`Transactions::poll_transmit`] (bytes for the shell to send),
///   [`Transactions::poll_event`] (what the TU must know), [`Transactions::poll_timeout`].
/// - Getters: [`Transactions::len`], [`Transactions::client_state`],
///   [`Transactions::server_state`].
///
/// After any input, drain `poll_transmit` and `poll_event`, then sleep until `poll_timeout`.
#[derive(Debug)]
pub struct Transactions {
    config: TxnConfig,
    timers: Timers<TimerEntry>,
    clients: HashMap<ClientTxnId, ClientTxn, IdHash>,
    client_index: HashMap<ClientKey, ClientTxnId>,
    /// Server transactions by id; handlers run on them in place (`get_mut`), never moving
    /// them out and back in.
    servers: HashMap<ServerTxnId, ServerTxn, IdHash>,
    /// §17.2.3 matching: `(key hash, id)`. The key itself lives only in the transaction, so
    /// a lookup hashes a borrowed key once and compares candidates against their owner.
    server_index: HashTable<(u64, ServerTxnId)>,
    /// Keyed hasher (random keys, SipHash) for peer-chosen strings: a peer cannot aim its
    /// branches at one bucket without knowing the keys.
    key_hasher: RandomState,
    next_id: u64,
    transmits: VecDeque<Transmit>,
    events: VecDeque<TxnEvent>,
    stats: TxnStats,
    /// Live transactions ordered by peer, so a transport error (a phone's TCP connection
    /// dropping, which happens all the time) costs O(log n) plus that peer's transactions,
    /// not a scan. A B-tree rather than per-peer lists because one peer (the upstream proxy)
    /// may hold almost every transaction.
    by_peer: BTreeSet<(Peer, TxnId)>,
}

impl Transactions {
    /// An empty layer.
    pub fn new(config: TxnConfig) -> Self {
        Self {
            config,
            timers: Timers::new(),
            clients: HashMap::default(),
            client_index: HashMap::new(),
            servers: HashMap::default(),
            server_index: HashTable::new(),
            key_hasher: RandomState::new(),
            next_id: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: TxnStats::default(),
            by_peer: BTreeSet::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &TxnConfig {
        &self.config
    }

    /// Number of live transactions (client and server).
    pub fn len(&self) -> usize {
        self.clients.len() + self.servers.len()
    }

    /// Whether no transaction is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The state of a live client transaction.
    pub fn client_state(&self, id: ClientTxnId) -> Option<ClientState> {
        self.clients.get(&id).map(|t| t.state)
    }

    /// The state of a live server transaction.
    pub fn server_state(&self, id: ServerTxnId) -> Option<ServerState> {
        self.servers.get(&id).map(|t| t.state)
    }

    /// Returns memory left over from a burst to the allocator (hash tables and the timer
    /// structure keep their peak capacity otherwise). Cheap enough to call when idle.
    pub fn shrink_to_fit(&mut self) {
        self.clients.shrink_to_fit();
        self.client_index.shrink_to_fit();
        self.servers.shrink_to_fit();
        self.server_index.shrink_to_fit(|&(h, _)| h);
        self.timers.shrink_to_fit();
        self.transmits.shrink_to_fit();
        self.events.shrink_to_fit();
    }

    /// Lifetime counters.
    pub fn stats(&self) -> TxnStats {
        self.stats
    }

    /// The earliest deadline of any transaction timer, in O(1).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.poll_timeout()
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event for the TU.
    pub fn poll_event(&mut self) -> Option<TxnEvent> {
        self.events.pop_front()
    }

    /// Sends `request` to `peer` in a new client transaction. The request's top Via must
    /// carry a fresh RFC 3261 branch (`CoreRng::branch`). ACK is not a transaction: use
    /// [`Transactions::send_stateless`] for an ACK to a 2xx.
    pub fn send_request(
        &mut self,
        now: Instant,
        request: Message,
        peer: Peer,
    ) -> Result<ClientTxnId, SendError> {
        match request.method() {
            None => return Err(SendError::NotARequest),
            Some(Method::Ack) => return Err(SendError::Ack),
            Some(_) => {}
        }
        let key = ClientKey::for_request(&request).map_err(SendError::Key)?;
        if self.client_index.contains_key(&key) {
            return Err(SendError::DuplicateBranch);
        }
        if self.len() >= self.config.max_transactions {
            return Err(SendError::Overloaded);
        }
        let id = ClientTxnId(self.alloc_id());
        self.stats.client_started += 1;
        let mut io = self.io(now);
        let txn = ClientTxn::start(&mut io, id, key.clone(), peer, request);
        self.client_index.insert(key, id);
        self.clients.insert(id, txn);
        self.by_peer.insert((peer, id.into()));
        Ok(id)
    }

    /// Sends `response` in server transaction `id`. Provisional responses keep the
    /// transaction in Proceeding; the final one moves it on (see the module diagrams).
    pub fn send_response(
        &mut self,
        now: Instant,
        id: ServerTxnId,
        response: Message,
    ) -> Result<(), ResponseError> {
        if response.is_request() {
            return Err(ResponseError::NotAResponse);
        }
        let (servers, mut io) = self.server_io(now);
        let txn = servers
            .get_mut(&id)
            .ok_or(ResponseError::UnknownTransaction)?;
        let result = txn.send_response(&mut io, response);
        if let Ok(Step::Terminated) = result {
            self.end_server(now, id);
        }
        result.map(|_| ())
    }

    /// Queues a message outside any transaction: an ACK for a 2xx, a stateless response.
    pub fn send_stateless(&mut self, peer: Peer, message: Message) {
        self.transmits.push_back(Transmit {
            peer,
            bytes: message.as_bytes().clone(),
        });
    }

    /// Handles one parsed message that arrived from `peer`.
    pub fn handle_incoming(&mut self, now: Instant, message: Message, peer: Peer) {
        if message.is_request() {
            self.handle_request(now, message, peer);
        } else {
            self.handle_response(now, message, peer);
        }
    }

    /// Fires every timer due at `now`, in deadline order.
    pub fn handle_timeout(&mut self, now: Instant) {
        // One at a time: a handler may arm a new timer that is itself already due.
        while let Some((_, _, entry)) = self.timers.pop_expired(now) {
            match entry.txn {
                TxnId::Client(id) => {
                    let Some(mut txn) = self.clients.remove(&id) else {
                        continue;
                    };
                    let mut io = self.io(now);
                    let step = txn.handle_timer(&mut io, entry.timer);
                    self.finish_client(now, txn, step);
                }
                TxnId::Server(id) => {
                    let (servers, mut io) = self.server_io(now);
                    let Some(txn) = servers.get_mut(&id) else {
                        continue;
                    };
                    if txn.handle_timer(&mut io, entry.timer) == Step::Terminated {
                        self.end_server(now, id);
                    }
                }
            }
        }
    }

    /// The transport to `peer` failed (connection refused or reset, ICMP unreachable): every
    /// transaction with that peer ends with [`TxnEvent::TransportError`] (RFC 3261 §17.1.4,
    /// §17.2.4).
    pub fn handle_transport_error(&mut self, now: Instant, peer: Peer) {
        let first = (peer, TxnId::Client(ClientTxnId(0)));
        let last = (peer, TxnId::Server(ServerTxnId(u64::MAX)));
        // In id order (oldest client first, then oldest server), so events are stable.
        let ids: Vec<TxnId> = self
            .by_peer
            .range(first..=last)
            .map(|&(_, id)| id)
            .collect();
        for id in ids {
            self.emit(TxnEvent::TransportError { id });
            match id {
                TxnId::Client(c) => {
                    let txn = self
                        .clients
                        .remove(&c)
                        .expect("by_peer names only live transactions");
                    self.finish_client(now, txn, Step::Terminated);
                }
                TxnId::Server(sv) => self.end_server(now, sv),
            }
        }
    }

    fn handle_response(&mut self, now: Instant, response: Message, peer: Peer) {
        let key = match ClientKey::for_response(&response) {
            Ok(k) => k,
            Err(reason) => {
                self.emit(TxnEvent::Discarded { peer, reason });
                return;
            }
        };
        let Some(&id) = self.client_index.get(&key) else {
            self.emit(TxnEvent::StrayResponse { response, peer });
            return;
        };
        let mut txn = self
            .clients
            .remove(&id)
            .expect("the index names only live transactions");
        let mut io = self.io(now);
        let step = txn.handle_response(&mut io, response);
        self.finish_client(now, txn, step);
    }

    fn handle_request(&mut self, now: Instant, request: Message, peer: Peer) {
        let Some(method) = request.method() else {
            return;
        };
        let invite = Method::Invite;
        let is_ack = method == Method::Ack;
        let lookup = if is_ack { &invite } else { &method };
        let key = match ServerKeyRef::for_request(&request, lookup) {
            Ok(k) => k,
            Err(reason) => {
                self.emit(TxnEvent::Discarded { peer, reason });
                return;
            }
        };
        let key_hash = key.hash_with(&self.key_hasher);
        if let Some(id) = self.matching_server(&key, key_hash, &request, is_ack) {
            let (servers, mut io) = self.server_io(now);
            let txn = servers
                .get_mut(&id)
                .expect("the index names only live transactions");
            let step = if is_ack && txn.is_invite() {
                txn.handle_ack(&mut io, request, peer)
            } else {
                txn.handle_retransmission(&mut io);
                Step::Live
            };
            if step == Step::Terminated {
                self.end_server(now, id);
            }
            return;
        }
        if is_ack {
            // An ACK for a 2xx is its own end-to-end transaction; the TU (dialog) owns it.
            self.emit(TxnEvent::Ack {
                request,
                peer,
                txn: None,
            });
            return;
        }
        // Overload first: under a flood, refusing is cheaper than checking every header.
        if self.len() >= self.config.max_transactions {
            self.reject(request, peer, 503, Rejection::Overloaded);
            return;
        }
        if let Err(e) = request.check() {
            let status = e.suggested_status().unwrap_or(400);
            self.reject(request, peer, status, Rejection::Malformed(e));
            return;
        }
        let cancels = if method == Method::Cancel {
            ServerKeyRef::for_request(&request, &invite)
                .ok()
                .and_then(|k| {
                    let h = k.hash_with(&self.key_hasher);
                    self.matching_server(&k, h, &request, false)
                })
        } else {
            None
        };
        let id = ServerTxnId(self.alloc_id());
        // The To tag is only compared for RFC 2543 keys (see `matching_server`).
        let legacy = LegacyTags {
            request: if key.is_legacy() {
                to_tag(&request)
            } else {
                None
            },
            response: None,
        };
        let owned = key.to_owned_key();
        // A legacy key that matched on everything but the To tag is a different request;
        // the newer transaction takes over the index entry. (An RFC 3261 key that matched
        // was handled above as a retransmission, so it is not in the index.)
        let servers = &self.servers;
        let taken_over = key.is_legacy()
            && self
                .server_index
                .find_mut(key_hash, |&(h, other)| {
                    h == key_hash
                        && servers
                            .get(&other)
                            .is_some_and(|t| t.key.view().matches(&key))
                })
                .map(|entry| entry.1 = id)
                .is_some();
        if !taken_over {
            self.server_index
                .insert_unique(key_hash, (key_hash, id), |&(h, _)| h);
        }
        let mut io = self.io(now);
        let txn = ServerTxn::start(&mut io, id, (owned, key_hash), peer, &request, legacy);
        self.servers.insert(id, txn);
        self.by_peer.insert((peer, id.into()));
        self.emit(TxnEvent::Request {
            id,
            request,
            peer,
            cancels,
        });
    }

    /// Looks a request up in the server index; RFC 2543 keys also compare the To tag.
    fn matching_server(
        &self,
        key: &ServerKeyRef<'_>,
        key_hash: u64,
        request: &Message,
        is_ack: bool,
    ) -> Option<ServerTxnId> {
        let &(_, id) = self.server_index.find(key_hash, |&(h, id)| {
            h == key_hash
                && self
                    .servers
                    .get(&id)
                    .is_some_and(|t| t.key.view().matches(key))
        })?;
        if key.is_legacy() {
            let txn = self.servers.get(&id)?;
            let tag = to_tag(request);
            let expected = if is_ack {
                &txn.legacy.response
            } else {
                &txn.legacy.request
            };
            if &tag != expected {
                return None;
            }
        }
        Some(id)
    }

    /// Answers a new request statelessly, without allocating a transaction.
    ///
    /// At the transaction limit this is a 503 with Retry-After: it keeps memory bounded under
    /// a flood while telling well-behaved clients when to come back, instead of letting them
    /// time out and retransmit into the overload. Being stateless, a retransmission of the
    /// request simply gets another identical answer (same To tag, see [`stateless_tag`]).
    fn reject(&mut self, request: Message, peer: Peer, status: u16, why: Rejection) {
        let tag = stateless_tag(&request);
        let mut builder = ResponseBuilder::for_request(&request, status, Some(&tag));
        if why == Rejection::Overloaded {
            let retry = self.config.overload_retry_after.to_string();
            builder = builder.header(HeaderName::RetryAfter, &retry);
        }
        self.transmits.push_back(Transmit {
            peer,
            bytes: builder.build().as_bytes().clone(),
        });
        self.emit(TxnEvent::Rejected { peer, status, why });
    }

    fn finish_client(&mut self, now: Instant, mut txn: ClientTxn, step: Step) {
        match step {
            Step::Live => {
                self.clients.insert(txn.id, txn);
            }
            Step::Terminated => {
                let mut io = self.io(now);
                txn.disarm_all(&mut io);
                if let Entry::Occupied(e) = self.client_index.entry(txn.key.clone()) {
                    if *e.get() == txn.id {
                        e.remove();
                    }
                }
                self.forget_peer(txn.peer, txn.id.into());
                self.emit(TxnEvent::Terminated { id: txn.id.into() });
            }
        }
    }

    /// Ends server transaction `id`: disarms its timers, drops its index entry (unless a
    /// newer legacy transaction took it over) and reports [`TxnEvent::Terminated`].
    fn end_server(&mut self, now: Instant, id: ServerTxnId) {
        let Some(mut txn) = self.servers.remove(&id) else {
            return;
        };
        let mut io = self.io(now);
        txn.disarm_all(&mut io);
        if let Ok(entry) = self
            .server_index
            .find_entry(txn.key_hash, |&(_, other)| other == id)
        {
            entry.remove();
        }
        self.forget_peer(txn.peer, id.into());
        self.emit(TxnEvent::Terminated { id: id.into() });
    }

    fn forget_peer(&mut self, peer: Peer, id: TxnId) {
        self.by_peer.remove(&(peer, id));
    }

    fn emit(&mut self, event: TxnEvent) {
        self.stats.record(&event);
        self.events.push_back(event);
    }

    fn alloc_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// The server table and an [`Io`] at once (disjoint fields), so a handler runs on a
    /// transaction in place.
    fn server_io(
        &mut self,
        now: Instant,
    ) -> (&mut HashMap<ServerTxnId, ServerTxn, IdHash>, Io<'_>) {
        (
            &mut self.servers,
            Io {
                now,
                config: &self.config,
                timers: &mut self.timers,
                transmits: &mut self.transmits,
                events: &mut self.events,
                stats: &mut self.stats,
            },
        )
    }

    fn io(&mut self, now: Instant) -> Io<'_> {
        Io {
            now,
            config: &self.config,
            timers: &mut self.timers,
            transmits: &mut self.transmits,
            events: &mut self.events,
            stats: &mut self.stats,
        }
    }
}

/// A To tag for a stateless response that is the same for every retransmission of the
/// request (RFC 3261 §8.2.7), derived from what identifies it. FNV-1a: no randomness needed,
/// and the tag reveals nothing a peer did not send.
fn stateless_tag(request: &Message) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let branch = request
        .top_via()
        .ok()
        .and_then(|v| v.branch())
        .unwrap_or("");
    for part in [request.call_id().unwrap_or(""), branch] {
        for b in part.bytes().chain(std::iter::once(0)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("sl{h:016x}")
}

/// Hasher for the layer's own transaction ids: sequential numbers the layer allocates, which
/// no peer chooses, so a multiply (Fibonacci hashing) spreads them well enough and costs
/// next to nothing compared with SipHash.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Ids hash through `write_u64`; anything else is folded in byte by byte.
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type IdHash = BuildHasherDefault<IdHasher>;
