//! A seeded virtual network: many sans-IO endpoints on one virtual clock.
//!
//! After str0m's `netem`: the network is itself sans-IO. A [`World`] owns a virtual `now`,
//! the endpoint cores (anything implementing [`Node`]), and the messages in flight. Each
//! [`World::step`] jumps the clock straight to the next event — the earliest of every node's
//! `poll_timeout` and the next delivery — and runs it, so a 32-second Timer F takes
//! microseconds and every run with the same seed is identical, event for event.
//!
//! Links apply a [`LinkConfig`]: a latency distribution plus loss, duplication and reordering
//! for datagrams; reliable transports (TCP/TLS) get latency only and stay in order. A message
//! to an address no node owns is dropped (UDP) or reported to the sender through
//! [`Node::handle_unreachable`] (TCP/TLS: a refused connection).
//!
//! The transaction tests use it, and so will the registration and relay machines and the
//! simulator, which is why it lives in the library rather than under `tests/`.

mod link;

pub use link::{BurstLoss, Latency, LinkConfig};

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::rng::CoreRng;
use crate::timer::{TimerId, Timers};
use crate::txn::{Peer, Transmit};

/// The one real `Instant` a virtual world starts from. Tests and the simulator call this once
/// and from then on only add durations to it: the core itself never reads the clock.
pub fn test_epoch() -> Instant {
    #[allow(clippy::disallowed_methods)] // the virtual epoch; never read again
    Instant::now()
}

/// An endpoint core the world can drive: the usual sans-IO surface.
pub trait Node {
    /// A message arrived from `from` (its transport and the sender's address).
    fn handle_receive(&mut self, now: Instant, from: Peer, bytes: Bytes);
    /// The clock reached (or passed) the node's `poll_timeout`.
    fn handle_timeout(&mut self, now: Instant);
    /// The next message the node wants sent, if any.
    fn poll_transmit(&mut self) -> Option<Transmit>;
    /// When the node next needs `handle_timeout`.
    fn poll_timeout(&self) -> Option<Instant>;
    /// A message to `peer` over a reliable transport could not be delivered: nobody listens
    /// there (the shell's equivalent of a refused connection).
    fn handle_unreachable(&mut self, now: Instant, peer: Peer) {
        let _ = (now, peer);
    }
}

/// Lets one world hold different kinds of nodes (`World<Box<dyn Node>>`), e.g. a gateway core
/// next to mock SIP servers and phones in the simulator.
impl<T: Node + ?Sized> Node for Box<T> {
    fn handle_receive(&mut self, now: Instant, from: Peer, bytes: Bytes) {
        (**self).handle_receive(now, from, bytes);
    }
    fn handle_timeout(&mut self, now: Instant) {
        (**self).handle_timeout(now);
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        (**self).poll_transmit()
    }
    fn poll_timeout(&self) -> Option<Instant> {
        (**self).poll_timeout()
    }
    fn handle_unreachable(&mut self, now: Instant, peer: Peer) {
        (**self).handle_unreachable(now, peer);
    }
}

/// Index of a node in its [`World`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub usize);

/// What happened to one transmitted message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Scheduled for delivery (possibly late, see `delay`).
    Sent,
    /// Scheduled twice.
    Duplicated,
    /// Dropped by the link.
    Lost,
    /// No node owns the destination address.
    Unroutable,
}

/// One entry of the world's transmission log (see [`World::enable_log`]).
#[derive(Debug, Clone)]
pub struct LogEntry {
    /// Virtual time of the transmission.
    pub at: Instant,
    /// Sender's address.
    pub from: SocketAddr,
    /// Destination (transport and address).
    pub to: Peer,
    /// The bytes.
    pub bytes: Bytes,
    /// What the link did with them.
    pub fate: Fate,
}

/// Counters over the world's lifetime.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Messages handed to the network by nodes.
    pub sent: u64,
    /// Messages handed to receiving nodes (duplicates count twice).
    pub delivered: u64,
    /// Messages dropped by loss.
    pub lost: u64,
    /// Extra copies created by duplication.
    pub duplicated: u64,
    /// Messages to addresses no node owns.
    pub unroutable: u64,
}

#[derive(Debug)]
struct InFlight {
    at: Instant,
    seq: u64,
    from: Peer,
    to: NodeId,
    bytes: Bytes,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for InFlight {
    /// Reversed, so the std max-heap pops the earliest delivery first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

struct Slot<N> {
    addr: SocketAddr,
    node: N,
    /// The node's wake-up registered in `World::wakeups`.
    wake: Option<TimerId>,
}

/// A virtual network of [`Node`]s on one virtual clock; see the module documentation.
pub struct World<N> {
    epoch: Instant,
    now: Instant,
    rng: CoreRng,
    default_link: LinkConfig,
    links: HashMap<(SocketAddr, SocketAddr), LinkConfig>,
    nodes: Vec<Slot<N>>,
    by_addr: HashMap<SocketAddr, NodeId>,
    in_flight: BinaryHeap<InFlight>,
    next_seq: u64,
    /// Each node's `poll_timeout`, kept in one timer structure so finding the next event costs
    /// O(log n) in the number of nodes rather than a scan.
    wakeups: Timers<NodeId>,
    /// Nodes touched since their wake-up was last refreshed.
    dirty: Vec<NodeId>,
    /// Gilbert–Elliott state (bad = true) per directed link with burst loss.
    burst_state: HashMap<(SocketAddr, SocketAddr), bool>,
    /// Latest scheduled delivery per reliable flow, to keep streams in order.
    stream_tail: HashMap<(SocketAddr, Peer), Instant>,
    stats: NetStats,
    log: Option<Vec<LogEntry>>,
    /// Steps run without the clock advancing (see [`MAX_STEPS_AT_ONE_INSTANT`]).
    steps_at_now: u64,
}

/// Steps the world may take without its clock advancing before it declares a livelock.
pub const MAX_STEPS_AT_ONE_INSTANT: u64 = 1_000_000;

impl<N: Node> World<N> {
    /// An empty world whose clock starts at `epoch`, with `default_link` on every link and all
    /// randomness drawn from `seed`.
    pub fn new(epoch: Instant, seed: u64, default_link: LinkConfig) -> Self {
        Self {
            epoch,
            now: epoch,
            rng: CoreRng::from_seed(seed),
            default_link,
            links: HashMap::new(),
            nodes: Vec::new(),
            by_addr: HashMap::new(),
            in_flight: BinaryHeap::new(),
            next_seq: 0,
            wakeups: Timers::new(),
            dirty: Vec::new(),
            burst_state: HashMap::new(),
            stream_tail: HashMap::new(),
            stats: NetStats::default(),
            log: None,
            steps_at_now: 0,
        }
    }

    /// Adds a node that owns `addr` (for every transport). Panics if the address is taken:
    /// that is a bug in the test, not network input.
    pub fn add_node(&mut self, addr: SocketAddr, node: N) -> NodeId {
        let id = NodeId(self.nodes.len());
        let prev = self.by_addr.insert(addr, id);
        assert!(prev.is_none(), "two nodes at {addr}");
        self.nodes.push(Slot {
            addr,
            node,
            wake: None,
        });
        self.dirty.push(id);
        id
    }

    /// Overrides the link from `from` to `to` (one direction).
    pub fn set_link(&mut self, from: SocketAddr, to: SocketAddr, config: LinkConfig) {
        self.links.insert((from, to), config);
    }

    /// Starts recording every transmission (for tests that assert exact schedules).
    pub fn enable_log(&mut self) {
        self.log.get_or_insert_with(Vec::new);
    }

    /// Takes the transmissions recorded so far.
    pub fn take_log(&mut self) -> Vec<LogEntry> {
        self.log.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// The virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Virtual time elapsed since the world's epoch.
    pub fn elapsed(&self) -> Duration {
        self.now - self.epoch
    }

    /// Lifetime counters.
    pub fn stats(&self) -> NetStats {
        self.stats
    }

    /// Number of messages in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// The node with this id.
    pub fn node(&self, id: NodeId) -> &N {
        &self.nodes[id.0].node
    }

    /// The node with this id, for a test to act on it; what it queues is sent at the current
    /// virtual time by the next [`World::step`].
    pub fn node_mut(&mut self, id: NodeId) -> &mut N {
        self.dirty.push(id);
        &mut self.nodes[id.0].node
    }

    /// The address of a node.
    pub fn addr(&self, id: NodeId) -> SocketAddr {
        self.nodes[id.0].addr
    }

    /// The earliest pending event (delivery or node timeout), after flushing what nodes have
    /// queued.
    pub fn next_event(&mut self) -> Option<Instant> {
        self.settle();
        let delivery = self.in_flight.peek().map(|f| f.at);
        let wake = self.wakeups.poll_timeout();
        match (delivery, wake) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Advances the clock to the next event and runs everything due then. Returns `false` if
    /// nothing is pending at all.
    pub fn step(&mut self) -> bool {
        let Some(next) = self.next_event() else {
            return false;
        };
        if next <= self.now {
            self.steps_at_now += 1;
            // A node whose poll_timeout stays at or before `now` after handle_timeout would
            // spin here forever; name the bug instead of hanging the test or the simulator.
            assert!(
                self.steps_at_now < MAX_STEPS_AT_ONE_INSTANT,
                "no progress: {MAX_STEPS_AT_ONE_INSTANT} steps without the clock moving"
            );
        } else {
            self.steps_at_now = 0;
        }
        self.now = self.now.max(next);
        let now = self.now;
        while self.in_flight.peek().is_some_and(|f| f.at <= now) {
            let f = self.in_flight.pop().expect("peeked just above");
            self.stats.delivered += 1;
            self.nodes[f.to.0].node.handle_receive(now, f.from, f.bytes);
            self.dirty.push(f.to);
            self.flush(f.to);
        }
        let due: Vec<NodeId> = self.wakeups.expire(now).map(|(_, _, id)| id).collect();
        for id in due {
            self.nodes[id.0].wake = None;
            self.nodes[id.0].node.handle_timeout(now);
            self.dirty.push(id);
            self.flush(id);
        }
        true
    }

    /// Runs every event up to and including `deadline`, then sets the clock to `deadline`.
    pub fn run_until(&mut self, deadline: Instant) {
        while self.next_event().is_some_and(|t| t <= deadline) {
            self.step();
        }
        self.now = self.now.max(deadline);
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    /// Runs until `done` holds for the world (checked after every step) or until `limit` of
    /// virtual time passed. Returns whether `done` held.
    pub fn run_while_not(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&mut Self) -> bool,
    ) -> bool {
        let deadline = self.now + limit;
        loop {
            if done(self) {
                return true;
            }
            match self.next_event() {
                Some(t) if t <= deadline => {
                    self.step();
                }
                _ => {
                    self.now = self.now.max(deadline);
                    return done(self);
                }
            }
        }
    }

    /// Flushes queued transmissions of touched nodes and refreshes their wake-ups.
    fn settle(&mut self) {
        while let Some(id) = self.dirty.pop() {
            self.flush(id);
            let slot = &mut self.nodes[id.0];
            if let Some(w) = slot.wake.take() {
                self.wakeups.cancel(w);
            }
            if let Some(t) = slot.node.poll_timeout() {
                slot.wake = Some(self.wakeups.insert(t, id));
            }
        }
    }

    /// Sends everything node `id` has queued, at the current time.
    fn flush(&mut self, id: NodeId) {
        while let Some(t) = self.nodes[id.0].node.poll_transmit() {
            let from_addr = self.nodes[id.0].addr;
            self.transmit(id, from_addr, t);
        }
    }

    fn transmit(&mut self, sender: NodeId, from_addr: SocketAddr, t: Transmit) {
        self.stats.sent += 1;
        let now = self.now;
        let from = Peer {
            transport: t.peer.transport,
            addr: from_addr,
        };
        let fate = match self.by_addr.get(&t.peer.addr).copied() {
            None => {
                self.stats.unroutable += 1;
                if t.peer.transport.is_reliable() {
                    self.nodes[sender.0].node.handle_unreachable(now, t.peer);
                    self.dirty.push(sender);
                }
                Fate::Unroutable
            }
            Some(to) => {
                let link = *self
                    .links
                    .get(&(from_addr, t.peer.addr))
                    .unwrap_or(&self.default_link);
                if t.peer.transport.is_reliable() {
                    self.schedule_stream(from, to, t.peer, &link, t.bytes.clone());
                    Fate::Sent
                } else {
                    let bad = self
                        .burst_state
                        .entry((from_addr, t.peer.addr))
                        .or_insert(false);
                    if link::lose(&mut self.rng, &link, bad) {
                        self.stats.lost += 1;
                        Fate::Lost
                    } else {
                        self.schedule_datagram(from, to, &link, t.bytes.clone())
                    }
                }
            }
        };
        if let Some(log) = self.log.as_mut() {
            log.push(LogEntry {
                at: now,
                from: from_addr,
                to: t.peer,
                bytes: t.bytes,
                fate,
            });
        }
    }

    fn schedule_datagram(
        &mut self,
        from: Peer,
        to: NodeId,
        link: &LinkConfig,
        bytes: Bytes,
    ) -> Fate {
        let copies = if link::chance(&mut self.rng, link.duplicate) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut delay = link.latency.sample(&mut self.rng);
            if link::chance(&mut self.rng, link.reorder) {
                delay += link.reorder_delay;
            }
            self.push(self.now + delay, from, to, bytes.clone());
        }
        if copies == 2 {
            Fate::Duplicated
        } else {
            Fate::Sent
        }
    }

    fn schedule_stream(
        &mut self,
        from: Peer,
        to: NodeId,
        dest: Peer,
        link: &LinkConfig,
        bytes: Bytes,
    ) {
        let delay = link.latency.sample(&mut self.rng);
        let tail = self
            .stream_tail
            .entry((from.addr, dest))
            .or_insert(self.now);
        // A stream never delivers out of order: a later message waits for the earlier ones.
        let at = (self.now + delay).max(*tail);
        *tail = at;
        self.push(at, from, to, bytes);
    }

    fn push(&mut self, at: Instant, from: Peer, to: NodeId, bytes: Bytes) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.in_flight.push(InFlight {
            at,
            seq,
            from,
            to,
            bytes,
        });
    }
}

#[cfg(test)]
mod tests;
