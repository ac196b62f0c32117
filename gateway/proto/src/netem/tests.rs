//! Tests of the virtual network itself, with toy nodes.

use super::*;
use std::collections::VecDeque;

fn addr(n: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, n], 5060))
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Sends numbered messages to a target every `period`, `count` times; records what arrives.
struct Ticker {
    target: Option<Peer>,
    period: Duration,
    next: Option<Instant>,
    left: u32,
    sent: u32,
    out: VecDeque<Transmit>,
    received: Vec<(Instant, Peer, Bytes)>,
    unreachable: Vec<Peer>,
}

impl Ticker {
    fn new(start: Instant, target: Option<Peer>, period: Duration, count: u32) -> Self {
        Self {
            target,
            period,
            next: target.map(|_| start),
            left: count,
            sent: 0,
            out: VecDeque::new(),
            received: Vec::new(),
            unreachable: Vec::new(),
        }
    }
}

impl Node for Ticker {
    fn handle_receive(&mut self, now: Instant, from: Peer, bytes: Bytes) {
        self.received.push((now, from, bytes));
    }
    fn handle_timeout(&mut self, now: Instant) {
        let (Some(next), Some(target)) = (self.next, self.target) else {
            return;
        };
        if next > now {
            return;
        }
        self.out.push_back(Transmit {
            peer: target,
            bytes: Bytes::from(self.sent.to_string()),
        });
        self.sent += 1;
        self.left -= 1;
        self.next = (self.left > 0).then(|| now + self.period);
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.next
    }
    fn handle_unreachable(&mut self, _now: Instant, peer: Peer) {
        self.unreachable.push(peer);
    }
}

fn received_numbers(t: &Ticker) -> Vec<u32> {
    t.received
        .iter()
        .map(|(_, _, b)| std::str::from_utf8(b).unwrap().parse().unwrap())
        .collect()
}

#[test]
fn fixed_latency_delivers_at_exact_times() {
    let t0 = test_epoch();
    let mut w = World::new(t0, 1, LinkConfig::fixed(ms(30)));
    let a = w.add_node(
        addr(1),
        Ticker::new(t0, Some(Peer::udp(addr(2))), ms(100), 3),
    );
    let b = w.add_node(addr(2), Ticker::new(t0, None, ms(0), 0));
    while w.step() {}
    let times: Vec<Duration> = w.node(b).received.iter().map(|r| r.0 - t0).collect();
    assert_eq!(times, vec![ms(30), ms(130), ms(230)]);
    assert_eq!(
        w.node(b).received[0].1,
        Peer::udp(addr(1)),
        "the receiver sees the sender"
    );
    assert_eq!(w.now() - t0, ms(230));
    assert_eq!(w.stats().delivered, 3);
    let _ = a;
}

#[test]
fn same_seed_same_run_and_impairments_happen() {
    let run = |seed| {
        let t0 = test_epoch();
        let link = LinkConfig::fixed(ms(10))
            .latency(Latency::Uniform {
                min: ms(5),
                max: ms(50),
            })
            .loss(0.2)
            .duplicate(0.1)
            .reorder(0.2, ms(40));
        let mut w = World::new(t0, seed, link);
        w.add_node(
            addr(1),
            Ticker::new(t0, Some(Peer::udp(addr(2))), ms(5), 500),
        );
        let b = w.add_node(addr(2), Ticker::new(t0, None, ms(0), 0));
        while w.step() {}
        (received_numbers(w.node(b)), w.stats())
    };
    let (got, stats) = run(42);
    assert_eq!(run(42).0, got, "deterministic per seed");
    assert_ne!(run(43).0, got);
    assert_eq!(stats.sent, 500);
    assert!((60..140).contains(&stats.lost), "{stats:?}");
    assert!(stats.duplicated > 10, "{stats:?}");
    assert_eq!(stats.delivered, 500 - stats.lost + stats.duplicated);
    assert!(
        got.windows(2).any(|w| w[0] > w[1]),
        "some datagrams arrive out of order"
    );
}

#[test]
fn streams_stay_ordered_and_lossless() {
    let t0 = test_epoch();
    let link = LinkConfig::fixed(ms(10))
        .latency(Latency::Uniform {
            min: ms(1),
            max: ms(80),
        })
        .loss(0.5)
        .reorder(0.5, ms(100));
    let mut w = World::new(t0, 7, link);
    w.add_node(
        addr(1),
        Ticker::new(t0, Some(Peer::tcp(addr(2))), ms(2), 200),
    );
    let b = w.add_node(addr(2), Ticker::new(t0, None, ms(0), 0));
    while w.step() {}
    assert_eq!(received_numbers(w.node(b)), (0..200).collect::<Vec<_>>());
    assert!(w.node(b).received.iter().all(|r| r.1 == Peer::tcp(addr(1))));
}

#[test]
fn unroutable_streams_report_unreachable_and_datagrams_vanish() {
    let t0 = test_epoch();
    let mut w = World::new(t0, 1, LinkConfig::default());
    let a = w.add_node(addr(1), Ticker::new(t0, Some(Peer::tcp(addr(9))), ms(1), 2));
    let b = w.add_node(addr(2), Ticker::new(t0, Some(Peer::udp(addr(9))), ms(1), 2));
    w.enable_log();
    while w.step() {}
    assert_eq!(w.node(a).unreachable, vec![Peer::tcp(addr(9)); 2]);
    assert!(w.node(b).unreachable.is_empty());
    assert_eq!(w.stats().unroutable, 4);
    let log = w.take_log();
    assert_eq!(log.len(), 4);
    assert!(log.iter().all(|e| e.fate == Fate::Unroutable));
}

#[test]
fn run_until_stops_at_deadline() {
    let t0 = test_epoch();
    let mut w = World::new(t0, 1, LinkConfig::fixed(ms(1)));
    w.add_node(
        addr(1),
        Ticker::new(t0, Some(Peer::udp(addr(2))), ms(100), 10),
    );
    let b = w.add_node(addr(2), Ticker::new(t0, None, ms(0), 0));
    w.run_until(t0 + ms(250));
    assert_eq!(w.now(), t0 + ms(250));
    assert_eq!(received_numbers(w.node(b)), vec![0, 1, 2]);
    let done = w.run_while_not(Duration::from_secs(10), |w| w.node(b).received.len() == 10);
    assert!(done);
    assert_eq!(w.now(), t0 + ms(901));
}

#[test]
fn boxed_nodes_of_different_kinds_share_a_world() {
    /// Answers every message with "pong" to its sender.
    struct Echo(VecDeque<Transmit>);
    impl Node for Echo {
        fn handle_receive(&mut self, _now: Instant, from: Peer, _bytes: Bytes) {
            self.0.push_back(Transmit {
                peer: from,
                bytes: Bytes::from_static(b"pong"),
            });
        }
        fn handle_timeout(&mut self, _now: Instant) {}
        fn poll_transmit(&mut self) -> Option<Transmit> {
            self.0.pop_front()
        }
        fn poll_timeout(&self) -> Option<Instant> {
            None
        }
    }
    let t0 = test_epoch();
    let mut w: World<Box<dyn Node>> = World::new(t0, 1, LinkConfig::fixed(ms(10)));
    let ticker = Ticker::new(t0, Some(Peer::udp(addr(2))), ms(100), 2);
    w.add_node(addr(1), Box::new(ticker));
    w.add_node(addr(2), Box::new(Echo(VecDeque::new())));
    while w.step() {}
    // Two pings out, two pongs back; the last pong lands at 100 + 10 + 10 ms.
    assert_eq!(w.stats().delivered, 4);
    assert_eq!(w.elapsed(), ms(120));
}

#[test]
#[should_panic(expected = "no progress")]
fn a_node_that_never_lets_time_pass_is_reported() {
    /// Always due, never satisfied.
    struct Stuck(Instant);
    impl Node for Stuck {
        fn handle_receive(&mut self, _: Instant, _: Peer, _: Bytes) {}
        fn handle_timeout(&mut self, _: Instant) {}
        fn poll_transmit(&mut self) -> Option<Transmit> {
            None
        }
        fn poll_timeout(&self) -> Option<Instant> {
            Some(self.0)
        }
    }
    let t0 = test_epoch();
    let mut w = World::new(t0, 1, LinkConfig::default());
    w.add_node(addr(1), Stuck(t0));
    while w.step() {}
}
