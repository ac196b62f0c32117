//! [`Transactions`]: every client and server transaction of one core instance, their
//! matching indexes and their timers, behind a quinn-proto style surface.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

use std::time::Instant;

use bytes::Bytes;
use hashbrown::HashTable;
use smallvec::SmallVec;

use crate::msg::{HeaderName, Message, Method, ResponseBuilder};
use crate::timer::Timers;

use super::client::{ClientState, ClientTxn, Sent};
use super::io::{Io, Step, TimerEntry};
use super::key::{to_tag, ClientKey, ClientKeyRef, LegacyTags, ServerKeyRef};
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
    /// Our own branches (see [`OwnKeyHash`]).
    client_index: hashbrown::HashMap<ClientKey, ClientTxnId, OwnKeyHash>,
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
    /// Live transactions by peer, so a transport error (a phone's TCP connection dropping,
    /// which happens all the time) costs that peer's transactions, not a scan. A set per
    /// peer rather than a list because one peer (the upstream proxy) may hold almost every
    /// transaction, and rather than one ordered tree because insert and remove run for every
    /// transaction while a transport error is rare: hashing is O(1) where a B-tree of
    /// 30,000 entries costs ~15 comparisons of `(Peer, TxnId)` per insert and per remove.
    /// A peer's entry is dropped with its last transaction. Peers are hashed with the keyed
    /// `key_hasher` (see [`peer_hash`]), since a peer picks its own source port.
    by_peer: HashTable<(u64, Peer, PeerTxns)>,
    /// The last peer hashed for `by_peer` and its hash: consecutive transactions mostly
    /// share a peer (the upstream proxy, a phone's retransmissions), so its SipHash is
    /// computed once rather than per transaction.
    last_peer: Option<(Peer, u64)>,
}

impl Transactions {
    /// An empty layer.
    pub fn new(config: TxnConfig) -> Self {
        // Timers E (first shot), A (first shot), F, B, H, J, K and I are set a fixed
        // interval from the moment they are set: a FIFO each keeps them in order without a
        // heap sift (see `crate::timer`).
        let mut timers = Timers::new();
        for after in [config.t1, config.timeout_64t1(), config.t4] {
            timers.add_lane(after);
        }
        Self {
            config,
            timers,
            clients: HashMap::default(),
            client_index: hashbrown::HashMap::default(),
            servers: HashMap::default(),
            server_index: HashTable::new(),
            key_hasher: RandomState::new(),
            next_id: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: TxnStats::default(),
            by_peer: HashTable::new(),
            last_peer: None,
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

    /// Makes room for `additional` more client transactions (their tables and timers), so
    /// that a burst of that size does not regrow them while it runs: each regrowth rehashes
    /// every entry into a table twice the size, and the kernel faults in its fresh pages.
    pub fn reserve_clients(&mut self, additional: usize) {
        self.clients.reserve(additional);
        self.client_index.reserve(additional);
        self.timers.reserve(additional);
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
        self.start_client(now, Sent::of(request), peer, key)
    }

    /// [`Self::send_request`] for a non-INVITE request printed as `bytes`, whose top Via
    /// carries `branch`, a fresh RFC 3261 branch the caller drew itself (the registration
    /// engine's REGISTERs): the key is built from it instead of parsing the request back,
    /// and a non-INVITE transaction keeps only the bytes anyway.
    pub(crate) fn send_own_request(
        &mut self,
        now: Instant,
        bytes: Bytes,
        method: Method,
        peer: Peer,
        branch: Box<str>,
    ) -> Result<ClientTxnId, SendError> {
        match method {
            Method::Ack => return Err(SendError::Ack),
            // An INVITE transaction needs the parsed request (for its ACK): `send_request`.
            Method::Invite => return Err(SendError::NotARequest),
            _ => {}
        }
        let key = ClientKey::own(branch, method);
        #[cfg(debug_assertions)]
        {
            let parsed = Message::parse(bytes.clone()).expect("our own request parses");
            debug_assert_eq!(
                ClientKey::for_request(&parsed).as_ref(),
                Ok(&key),
                "the branch and method given are the request's"
            );
        }
        self.start_client(now, Sent::Other(bytes), peer, key)
    }

    fn start_client(
        &mut self,
        now: Instant,
        request: Sent,
        peer: Peer,
        key: ClientKey,
    ) -> Result<ClientTxnId, SendError> {
        if self.client_index.contains_key(&key) {
            return Err(SendError::DuplicateBranch);
        }
        if self.len() >= self.config.max_transactions {
            return Err(SendError::Overloaded);
        }
        let id = ClientTxnId(self.alloc_id());
        self.stats.client_started += 1;
        let mut io = self.io(now);
        let mut txn = ClientTxn::start(&mut io, id, key.clone(), peer, request);
        txn.peer_hash = self.remember_peer(peer, id.into());
        self.client_index.insert(key, id);
        self.clients.insert(id, txn);
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
                    let (clients, mut io) = self.client_io(now);
                    let Some(txn) = clients.get_mut(&id) else {
                        continue;
                    };
                    if txn.handle_timer(&mut io, entry.timer) == Step::Terminated {
                        self.end_client(now, id);
                    }
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
        let h = peer_hash(&self.key_hasher, &peer);
        let Some((_, _, ids)) = self.by_peer.find(h, |e| e.1 == peer) else {
            return;
        };
        // In id order (oldest client first, then oldest server), so events are stable.
        let mut ids = ids.to_vec();
        ids.sort_unstable();
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
        let key = match ClientKeyRef::for_response(&response) {
            Ok(k) => k,
            Err(reason) => {
                self.emit(TxnEvent::Discarded { peer, reason });
                return;
            }
        };
        let Some(&id) = self.client_index.get(&key) else {
            self.emit(TxnEvent::StrayResponse {
                response: Box::new(response),
                peer,
            });
            return;
        };
        // In place: a live transaction is not moved out of the table and back.
        let (clients, mut io) = self.client_io(now);
        let txn = clients
            .get_mut(&id)
            .expect("the index names only live transactions");
        // Boxed once here, as the event that reports it carries it, rather than moved by
        // value through each handler.
        if txn.handle_response(&mut io, Box::new(response)) == Step::Terminated {
            self.end_client(now, id);
        }
    }

    fn handle_request(&mut self, now: Instant, mut request: Message, peer: Peer) {
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
                request: Box::new(request),
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
        // The key came from the top Via, so `check` need not parse it again.
        let to_has_tag = match request.check_to_tag(true) {
            Ok(t) => t,
            Err(e) => {
                let status = e.suggested_status().unwrap_or(400);
                self.reject(request, peer, status, Rejection::Malformed(e));
                return;
            }
        };
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
        let mut txn = ServerTxn::start(&mut io, id, (owned, key_hash), peer, &request, legacy);
        txn.peer_hash = self.remember_peer(peer, id.into());
        self.servers.insert(id, txn);
        // Checked above: the TU's response builder can skip parsing To again.
        request.note_to_tag_checked(to_has_tag);
        self.emit(TxnEvent::Request {
            id,
            request: Box::new(request),
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
                if self.client_index.get(&txn.key) == Some(&txn.id) {
                    self.client_index.remove(&txn.key);
                }
                self.forget_peer(txn.peer, txn.peer_hash, txn.id.into());
                self.emit(TxnEvent::Terminated { id: txn.id.into() });
            }
        }
    }

    /// Ends client transaction `id` (see [`Self::finish_client`]).
    fn end_client(&mut self, now: Instant, id: ClientTxnId) {
        if let Some(txn) = self.clients.remove(&id) {
            self.finish_client(now, txn, Step::Terminated);
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
        self.forget_peer(txn.peer, txn.peer_hash, id.into());
        self.emit(TxnEvent::Terminated { id: id.into() });
    }

    /// Adds `id` to `peer`'s transactions; returns the peer's hash for [`Self::forget_peer`].
    fn remember_peer(&mut self, peer: Peer, id: TxnId) -> u64 {
        let h = match self.last_peer {
            Some((p, h)) if p == peer => h,
            _ => {
                let h = peer_hash(&self.key_hasher, &peer);
                self.last_peer = Some((peer, h));
                h
            }
        };
        let entry = self
            .by_peer
            .entry(h, |e| e.1 == peer, |e| e.0)
            .or_insert_with(|| (h, peer, PeerTxns::default()));
        entry.into_mut().2.insert(id);
        h
    }

    fn forget_peer(&mut self, peer: Peer, h: u64, id: TxnId) {
        if let Ok(mut e) = self.by_peer.find_entry(h, |e| e.1 == peer) {
            let txns = &mut e.get_mut().2;
            txns.remove(id);
            if txns.is_empty() {
                e.remove();
            }
        }
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

    /// The client table and an [`Io`] at once, as [`Self::server_io`].
    fn client_io(
        &mut self,
        now: Instant,
    ) -> (&mut HashMap<ClientTxnId, ClientTxn, IdHash>, Io<'_>) {
        (
            &mut self.clients,
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

/// The `by_peer` hash of `peer`: one keyed SipHash over its fields packed into two words
/// (cheaper than the derived `Hash`, which feeds each field separately). Peers that are
/// equal have equal packed fields, so equal hashes; IPv6 flow label and scope id are left
/// out, which only makes such peers share a bucket.
fn peer_hash(hasher: &RandomState, peer: &Peer) -> u64 {
    let (ip, v6) = match peer.addr.ip() {
        std::net::IpAddr::V4(a) => (u128::from(a.to_bits()), 0u32),
        std::net::IpAddr::V6(a) => (a.to_bits(), 1u32),
    };
    let tail = u32::from(peer.addr.port()) | (v6 << 16) | (peer.transport as u32) << 17;
    let mut h = hasher.build_hasher();
    h.write_u128(ip);
    h.write_u32(tail);
    h.finish()
}

/// The transactions of one peer: inline while there are few (a phone has one or two at a
/// time, so no allocation), a hash set when there are many (the upstream proxy).
#[derive(Debug)]
enum PeerTxns {
    Few(SmallVec<[TxnId; 3]>),
    Many(HashSet<TxnId, IdHash>),
}

impl Default for PeerTxns {
    fn default() -> Self {
        PeerTxns::Few(SmallVec::new())
    }
}

impl PeerTxns {
    fn insert(&mut self, id: TxnId) {
        match self {
            PeerTxns::Few(v) if v.len() < v.inline_size() => v.push(id),
            PeerTxns::Few(v) => {
                let mut set: HashSet<TxnId, IdHash> = v.drain(..).collect();
                set.insert(id);
                *self = PeerTxns::Many(set);
            }
            PeerTxns::Many(set) => {
                set.insert(id);
            }
        }
    }

    fn remove(&mut self, id: TxnId) {
        match self {
            PeerTxns::Few(v) => {
                if let Some(i) = v.iter().position(|&x| x == id) {
                    v.swap_remove(i);
                }
            }
            PeerTxns::Many(set) => {
                set.remove(&id);
            }
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            PeerTxns::Few(v) => v.is_empty(),
            PeerTxns::Many(set) => set.is_empty(),
        }
    }

    fn to_vec(&self) -> Vec<TxnId> {
        match self {
            PeerTxns::Few(v) => v.to_vec(),
            PeerTxns::Many(set) => set.iter().copied().collect(),
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

    // `TxnId`'s derived `Hash` writes its discriminant as an `isize`: one word, not eight
    // bytes through `write`.
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn write_isize(&mut self, n: isize) {
        self.write_u64(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

pub(crate) type IdHash = BuildHasherDefault<IdHasher>;

/// Hasher for keys the core generates itself from its random source: the branches of our
/// own client transactions (with their method). A peer chooses none of the stored keys (its
/// responses only look them up), so it cannot aim them at one bucket, and the keys are
/// random already: a word-at-a-time multiply-rotate (FxHash style) spreads them, at a
/// fraction of SipHash's cost. Keys a peer picks (server transactions, peers) stay on the
/// keyed hasher.
#[derive(Default)]
pub(crate) struct OwnKeyHasher(u64);

impl OwnKeyHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for OwnKeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 59));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn write_isize(&mut self, n: isize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        // hashbrown takes the bucket from the low bits and the tag from the top seven: fold
        // the well-mixed high half down so both see it.
        self.0 ^ (self.0 >> 32)
    }
}

pub(crate) type OwnKeyHash = BuildHasherDefault<OwnKeyHasher>;

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::msg::RequestBuilder;
    use crate::txn::Transport;

    fn peer(transport: Transport, port: u16) -> Peer {
        Peer {
            transport,
            addr: SocketAddr::from(([192, 0, 2, 1], port)),
        }
    }

    /// Our own branches spread over the buckets hashbrown takes from the low bits, and the
    /// tags it takes from the top seven, about as evenly as random numbers would.
    #[test]
    fn own_key_hasher_spreads_generated_branches() {
        let mut rng = crate::rng::CoreRng::from_seed(11);
        let n = 8192;
        let mut low = vec![0u32; 1024];
        let mut top = [0u32; 128];
        for _ in 0..n {
            let mut h = OwnKeyHasher::default();
            std::hash::Hash::hash(&rng.branch(), &mut h);
            std::hash::Hash::hash(&Method::Register, &mut h);
            let v = h.finish();
            low[(v & 1023) as usize] += 1;
            top[(v >> 57) as usize] += 1;
        }
        // Expected 8 and 64 per bucket; a fair spread stays well within these.
        assert!(low.iter().all(|&c| c < 30), "{low:?}");
        assert!(top.iter().all(|&c| (20..130).contains(&c)), "{top:?}");
    }

    fn options(branch: &str) -> Message {
        RequestBuilder::new(Method::Options, "sip:gw@example.com")
            .via("UDP", "192.0.2.1:5060", branch)
            .from("sip:alice@example.com", "f1")
            .to("sip:gw@example.com", None)
            .call_id(&format!("{branch}@192.0.2.1"))
            .cseq(1)
            .build()
    }

    /// Feeds `n` new requests from `peer` and returns their ids, oldest first.
    fn receive(t: &mut Transactions, now: Instant, peer: Peer, tag: &str, n: usize) -> Vec<TxnId> {
        let mut ids = Vec::new();
        for i in 0..n {
            t.handle_incoming(now, options(&format!("z9hG4bK{tag}{i}")), peer);
            while let Some(e) = t.poll_event() {
                if let TxnEvent::Request { id, .. } = e {
                    ids.push(TxnId::Server(id));
                }
            }
        }
        assert_eq!(ids.len(), n, "every request opened a transaction");
        ids
    }

    fn transport_errors(t: &mut Transactions) -> Vec<TxnId> {
        std::iter::from_fn(|| t.poll_event())
            .filter_map(|e| match e {
                TxnEvent::TransportError { id } => Some(id),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn transport_error_ends_exactly_that_peers_transactions_in_id_order() {
        let now = crate::netem::test_epoch();
        let mut t = Transactions::new(TxnConfig::default());
        let (a, b, a_tcp) = (
            peer(Transport::Udp, 5060),
            peer(Transport::Udp, 5062),
            peer(Transport::Tcp, 5060),
        );
        // `a` grows past the inline few into a hash set; `b` stays inline.
        let mut on_a = receive(&mut t, now, a, "a", 3);
        let on_b = receive(&mut t, now, b, "b", 2);
        on_a.extend(receive(&mut t, now, a, "c", 7));
        assert_eq!(t.len(), 12);

        t.handle_transport_error(now, a_tcp);
        assert!(transport_errors(&mut t).is_empty(), "other transport");
        t.handle_transport_error(now, a);
        assert_eq!(transport_errors(&mut t), on_a);
        assert_eq!(t.len(), 2);
        t.handle_transport_error(now, a);
        assert!(transport_errors(&mut t).is_empty(), "nothing left on a");
        t.handle_transport_error(now, b);
        assert_eq!(transport_errors(&mut t), on_b);
        assert!(t.is_empty());
        assert!(
            t.by_peer.is_empty(),
            "a peer's entry goes with its last transaction"
        );
    }

    #[test]
    fn peer_txns_insert_and_remove_across_the_inline_limit() {
        let mut p = PeerTxns::default();
        let ids: Vec<TxnId> = (1..=6).map(|i| TxnId::Server(ServerTxnId(i))).collect();
        for &id in &ids {
            p.insert(id);
        }
        assert!(matches!(p, PeerTxns::Many(_)));
        p.remove(ids[2]);
        p.remove(TxnId::Client(ClientTxnId(3)));
        let mut left = p.to_vec();
        left.sort_unstable();
        assert_eq!(left, [ids[0], ids[1], ids[3], ids[4], ids[5]]);
        for &id in &ids {
            p.remove(id);
        }
        assert!(p.is_empty());

        let mut few = PeerTxns::default();
        few.insert(ids[0]);
        few.insert(ids[1]);
        few.remove(ids[0]);
        assert_eq!(few.to_vec(), [ids[1]]);
        few.remove(ids[1]);
        assert!(few.is_empty());
    }

    #[test]
    fn equal_peers_hash_alike() {
        let h = RandomState::new();
        let v4 = peer(Transport::Udp, 5060);
        assert_eq!(
            peer_hash(&h, &v4),
            peer_hash(&h, &peer(Transport::Udp, 5060))
        );
        let v6: SocketAddr = "[2001:db8::1]:5060".parse().expect("literal");
        let p6 = Peer::udp(v6);
        assert_eq!(peer_hash(&h, &p6), peer_hash(&h, &Peer::udp(v6)));
        assert_ne!(
            peer_hash(&h, &v4),
            peer_hash(&h, &peer(Transport::Tcp, 5060))
        );
    }
}
