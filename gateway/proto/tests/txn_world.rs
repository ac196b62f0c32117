//! End-to-end transaction exchanges between several endpoints in a [`World`] with seeded
//! loss, duplication and reordering: everything still completes, exactly once.
// Test helpers outside #[test] functions: a panic there is a test failure too.
#![allow(clippy::unwrap_used)]

mod txn_support;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use txn_support::{ms, secs_f};
use vigil_proto::msg::{HeaderName, Message, Method, RequestBuilder, ResponseBuilder};
use vigil_proto::netem::{test_epoch, BurstLoss, Latency, LinkConfig, Node, NodeId, World};
use vigil_proto::rng::CoreRng;
use vigil_proto::txn::{
    ClientTxnId, Peer, Transactions, Transmit, Transport, TxnConfig, TxnEvent, TxnId, TxnTimer,
};

/// How an endpoint's toy TU answers requests.
#[derive(Clone, Copy)]
enum Answer {
    /// Final status for every request; INVITEs get a 180 first.
    Final(u16),
}

/// A 2xx the UA core retransmits until the ACK arrives (RFC 3261 §13.3.1.4).
struct Pending2xx {
    response: Message,
    peer: Peer,
    call_id: String,
    next: Instant,
    interval: Duration,
    give_up: Instant,
}

#[derive(Default, Debug)]
struct Outcome {
    finals: Vec<u16>,
    timeout: Option<TxnTimer>,
    transport_error: bool,
    terminated: bool,
}

/// A transaction layer plus a toy TU, as one netem node.
struct Endpoint {
    addr: SocketAddr,
    txns: Transactions,
    rng: CoreRng,
    answer: Answer,
    pending_2xx: Vec<Pending2xx>,
    out: VecDeque<Transmit>,
    outcomes: HashMap<ClientTxnId, Outcome>,
    /// (method, Call-ID) of every request the TU was handed.
    requests_seen: Vec<(Method, String)>,
    acks_for_2xx: usize,
    server_timeouts: usize,
    server_terminated: usize,
}

impl Endpoint {
    fn new(addr: SocketAddr, seed: u64, answer: Answer) -> Self {
        Self {
            addr,
            txns: Transactions::new(TxnConfig::default()),
            rng: CoreRng::from_seed(seed),
            answer,
            pending_2xx: Vec::new(),
            out: VecDeque::new(),
            outcomes: HashMap::new(),
            requests_seen: Vec::new(),
            acks_for_2xx: 0,
            server_timeouts: 0,
            server_terminated: 0,
        }
    }

    /// Starts a client transaction to `to`.
    fn call(&mut self, now: Instant, method: Method, to: Peer) -> ClientTxnId {
        let branch = self.rng.branch();
        let call_id = self.rng.call_id();
        let tag = self.rng.tag();
        let req = RequestBuilder::new(method, &format!("sip:svc@{}", to.addr))
            .via(to.transport.via_token(), &self.addr.to_string(), &branch)
            .from(&format!("sip:ua@{}", self.addr), &tag)
            .to(&format!("sip:svc@{}", to.addr), None)
            .call_id(&call_id)
            .cseq(1)
            .build();
        let id = self
            .txns
            .send_request(now, req, to)
            .expect("room for the transaction");
        self.outcomes.insert(id, Outcome::default());
        self.pump(now);
        id
    }

    /// Plays the TU: handles every event the layer produced.
    fn pump(&mut self, now: Instant) {
        while let Some(ev) = self.txns.poll_event() {
            match ev {
                TxnEvent::Request {
                    id,
                    request,
                    peer,
                    cancels,
                } => {
                    let method = request.method().expect("requests have methods");
                    let call_id = request
                        .call_id()
                        .expect("matched requests have a Call-ID")
                        .to_owned();
                    self.requests_seen.push((method.clone(), call_id.clone()));
                    assert!(cancels.is_none());
                    let Answer::Final(status) = self.answer;
                    let tag = self.rng.tag();
                    if method == Method::Invite {
                        let ringing =
                            ResponseBuilder::for_request(&request, 180, Some(&tag)).build();
                        self.txns
                            .send_response(now, id, ringing)
                            .expect("180 in Proceeding");
                    }
                    let fin = ResponseBuilder::for_request(&request, status, Some(&tag)).build();
                    if method == Method::Invite && status < 300 {
                        let interval = self.txns.config().t1;
                        self.pending_2xx.push(Pending2xx {
                            response: fin.clone(),
                            peer,
                            call_id,
                            next: now + interval,
                            interval,
                            give_up: now + self.txns.config().timeout_64t1(),
                        });
                    }
                    self.txns
                        .send_response(now, id, fin)
                        .expect("first final response");
                }
                TxnEvent::Response { id, response } => {
                    let status = response.status().expect("responses have a status");
                    if status >= 200 {
                        self.outcomes
                            .get_mut(&id)
                            .expect("our own transaction")
                            .finals
                            .push(status);
                    }
                    if (200..300).contains(&status)
                        && response.cseq().map(|c| c.method) == Ok(Method::Invite)
                    {
                        let ack = self.ack_for_2xx(&response);
                        let peer = self.txns_peer_of(&response);
                        self.txns.send_stateless(peer, ack);
                    }
                }
                TxnEvent::Ack { request, txn, .. } => {
                    let call_id = request.call_id().expect("ACK has a Call-ID");
                    let before = self.pending_2xx.len();
                    self.pending_2xx.retain(|p| p.call_id != call_id);
                    if self.pending_2xx.len() < before {
                        self.acks_for_2xx += 1;
                    }
                    let _ = txn;
                }
                TxnEvent::Timeout {
                    id: TxnId::Client(id),
                    timer,
                } => {
                    self.outcomes.get_mut(&id).expect("ours").timeout = Some(timer);
                }
                TxnEvent::Timeout {
                    id: TxnId::Server(_),
                    ..
                } => self.server_timeouts += 1,
                TxnEvent::TransportError {
                    id: TxnId::Client(id),
                } => {
                    self.outcomes.get_mut(&id).expect("ours").transport_error = true;
                }
                TxnEvent::Terminated {
                    id: TxnId::Client(id),
                } => {
                    self.outcomes.get_mut(&id).expect("ours").terminated = true;
                }
                TxnEvent::Terminated {
                    id: TxnId::Server(_),
                } => self.server_terminated += 1,
                // Stray responses are 2xx retransmissions after Timer M; the ACK was sent.
                _ => {}
            }
        }
        while let Some(t) = self.txns.poll_transmit() {
            self.out.push_back(t);
        }
    }

    /// The ACK for a 2xx: a new transaction of its own (new branch), To from the response.
    fn ack_for_2xx(&mut self, response: &Message) -> Message {
        let via = response.top_via().expect("matched responses have a Via");
        let transport = via.transport().to_owned();
        RequestBuilder::new(Method::Ack, "sip:svc@callee")
            .via(&transport, &self.addr.to_string(), &self.rng.branch())
            .header(
                HeaderName::From,
                response.header(HeaderName::From).expect("From"),
            )
            .header(HeaderName::To, response.header(HeaderName::To).expect("To"))
            .call_id(response.call_id().expect("Call-ID"))
            .cseq(response.cseq().expect("CSeq").seq)
            .build()
    }

    /// Where the 2xx came from: the request URI host in this toy is the peer address.
    fn txns_peer_of(&self, response: &Message) -> Peer {
        let to = response.to_hdr().expect("To");
        let host = to.uri().expect("uri").host().expect("host").to_owned();
        let port = to.uri().expect("uri").port().expect("port");
        let addr: SocketAddr = format!("{host}:{port}").parse().expect("address");
        let transport = Transport::from_via_token(response.top_via().expect("Via").transport())
            .expect("known transport");
        Peer { transport, addr }
    }
}

impl Node for Endpoint {
    fn handle_receive(&mut self, now: Instant, from: Peer, bytes: Bytes) {
        if let Ok(msg) = Message::parse(bytes) {
            self.txns.handle_incoming(now, msg, from);
        }
        self.pump(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.txns.handle_timeout(now);
        let t2 = self.txns.config().t2;
        let mut resend = Vec::new();
        self.pending_2xx.retain_mut(|p| {
            if p.give_up <= now {
                return false;
            }
            if p.next <= now {
                resend.push(Transmit {
                    peer: p.peer,
                    bytes: p.response.as_bytes().clone(),
                });
                p.interval = (p.interval * 2).min(t2);
                p.next = now + p.interval;
            }
            true
        });
        self.out.extend(resend);
        self.pump(now);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let tu = self.pending_2xx.iter().map(|p| p.next.min(p.give_up)).min();
        match (self.txns.poll_timeout(), tu) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn handle_unreachable(&mut self, now: Instant, peer: Peer) {
        self.txns.handle_transport_error(now, peer);
        self.pump(now);
    }
}

fn addr(last: u8) -> SocketAddr {
    SocketAddr::from(([198, 51, 100, last], 5060))
}

fn lossy() -> LinkConfig {
    LinkConfig::fixed(ms(20))
        .latency(Latency::ShiftedExp {
            min: ms(20),
            mean_extra: ms(30),
        })
        .loss(0.2)
        .duplicate(0.05)
        .reorder(0.2, ms(150))
}

/// Two clients and one server; each client starts `calls` transactions of `method`, 10 ms
/// apart, then the world runs until every transaction has ended.
fn run(
    seed: u64,
    link: LinkConfig,
    transport: Transport,
    method: Method,
    answer: Answer,
    calls: usize,
) -> (World<Endpoint>, [NodeId; 3]) {
    let t0 = test_epoch();
    let mut w = World::new(t0, seed, link);
    let server = w.add_node(addr(1), Endpoint::new(addr(1), seed + 1, answer));
    let c1 = w.add_node(addr(2), Endpoint::new(addr(2), seed + 2, answer));
    let c2 = w.add_node(addr(3), Endpoint::new(addr(3), seed + 3, answer));
    let to = Peer {
        transport,
        addr: addr(1),
    };
    for _ in 0..calls {
        for c in [c1, c2] {
            let now = w.now();
            w.node_mut(c).call(now, method.clone(), to);
        }
        w.run_for(ms(10));
    }
    let done = w.run_while_not(Duration::from_secs(300), |w| {
        [server, c1, c2]
            .iter()
            .all(|&n| w.node(n).txns.is_empty() && w.node(n).pending_2xx.is_empty())
    });
    assert!(done, "every transaction ends");
    (w, [server, c1, c2])
}

fn assert_each_call_got_exactly_one(
    w: &World<Endpoint>,
    clients: &[NodeId],
    status: u16,
    calls: usize,
) {
    for &c in clients {
        let outcomes = &w.node(c).outcomes;
        assert_eq!(outcomes.len(), calls);
        for o in outcomes.values() {
            assert!(o.timeout.is_none() && !o.transport_error, "{o:?}");
            assert!(o.terminated);
            assert_eq!(o.finals.first(), Some(&status), "{o:?}");
        }
    }
}

/// The server's TU saw each request exactly once despite retransmission and duplication.
fn assert_server_saw_each_once(w: &World<Endpoint>, server: NodeId, calls: usize) {
    let seen = &w.node(server).requests_seen;
    let mut ids: Vec<&String> = seen.iter().map(|(_, c)| c).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 2 * calls);
    assert_eq!(seen.len(), 2 * calls);
}

#[test]
fn non_invite_exchanges_complete_over_20_percent_loss_and_reordering() {
    let (w, [server, c1, c2]) = run(
        11,
        lossy(),
        Transport::Udp,
        Method::Message,
        Answer::Final(200),
        40,
    );
    assert_each_call_got_exactly_one(&w, &[c1, c2], 200, 40);
    for c in [c1, c2] {
        assert!(
            w.node(c).outcomes.values().all(|o| o.finals == vec![200]),
            "retransmitted finals are absorbed"
        );
    }
    assert_server_saw_each_once(&w, server, 40);
    let s = w.stats();
    assert!(s.lost > 20 && s.duplicated > 0, "{s:?}");
    assert!(s.sent > 160, "losses forced retransmissions: {s:?}");
    // The layers' own counters agree: 80 client transactions, 80 server transactions, all
    // ended, and retransmissions on both sides.
    let (cs, ss) = (w.node(c1).txns.stats(), w.node(server).txns.stats());
    assert_eq!(cs.client_started, 40);
    assert_eq!(cs.terminated, 40);
    assert_eq!(ss.server_started, 80);
    assert_eq!(ss.terminated, 80);
    assert_eq!(cs.timeouts + ss.timeouts, 0);
    assert!(
        cs.retransmissions > 0 && ss.retransmissions > 0,
        "{cs:?} {ss:?}"
    );
}

#[test]
fn exchanges_complete_over_bursty_loss() {
    let burst = BurstLoss {
        enter_bad: 0.05,
        leave_bad: 0.25,
        loss_in_bad: 0.9,
    };
    let link = lossy().loss(0.05).burst(burst);
    let (w, [server, c1, c2]) = run(
        14,
        link,
        Transport::Udp,
        Method::Register,
        Answer::Final(200),
        40,
    );
    assert_each_call_got_exactly_one(&w, &[c1, c2], 200, 40);
    assert_server_saw_each_once(&w, server, 40);
    assert!(w.stats().lost > 10, "{:?}", w.stats());
}

#[test]
fn rejected_invites_complete_over_loss_with_acks_from_the_transaction() {
    let (w, [server, c1, c2]) = run(
        12,
        lossy(),
        Transport::Udp,
        Method::Invite,
        Answer::Final(486),
        30,
    );
    assert_each_call_got_exactly_one(&w, &[c1, c2], 486, 30);
    for c in [c1, c2] {
        assert!(w.node(c).outcomes.values().all(|o| o.finals == vec![486]));
    }
    assert_server_saw_each_once(&w, server, 30);
    assert_eq!(w.node(server).server_terminated, 60);
    // Timer H fires only if every ACK for a transaction was lost; with 20 % loss and ACKs
    // re-sent on each 486 retransmission that is rare.
    assert!(
        w.node(server).server_timeouts <= 2,
        "{}",
        w.node(server).server_timeouts
    );
}

#[test]
fn answered_invites_complete_over_loss_with_2xx_retransmitted_by_the_tu() {
    let (w, [server, c1, c2]) = run(
        13,
        lossy(),
        Transport::Udp,
        Method::Invite,
        Answer::Final(200),
        30,
    );
    assert_each_call_got_exactly_one(&w, &[c1, c2], 200, 30);
    assert_server_saw_each_once(&w, server, 30);
    // Every 2xx was acknowledged (the ACK is end-to-end and reaches the TU).
    assert_eq!(w.node(server).acks_for_2xx, 60);
    assert_eq!(w.node(server).server_timeouts, 0);
}

#[test]
fn tcp_exchanges_send_each_message_exactly_once() {
    let t0 = test_epoch();
    let mut w = World::new(t0, 5, LinkConfig::fixed(ms(15)));
    w.enable_log();
    let server = w.add_node(addr(1), Endpoint::new(addr(1), 1, Answer::Final(486)));
    let client = w.add_node(addr(2), Endpoint::new(addr(2), 2, Answer::Final(486)));
    let id = w
        .node_mut(client)
        .call(t0, Method::Invite, Peer::tcp(addr(1)));
    while w.step() {}
    let log = w.take_log();
    let summary: Vec<(f64, String)> = log
        .iter()
        .map(|e| {
            let m = Message::parse(e.bytes.clone()).unwrap();
            let what = m
                .method()
                .map(|m| m.to_string())
                .or(m.status().map(|s| s.to_string()))
                .unwrap();
            (secs_f(e.at - t0), what)
        })
        .collect();
    let expect = [
        (0.0, "INVITE"),
        (0.015, "180"),
        (0.015, "486"),
        (0.03, "ACK"),
    ];
    assert_eq!(summary.len(), expect.len(), "{summary:?}");
    for ((t, what), (et, ew)) in summary.iter().zip(expect) {
        assert!((t - et).abs() < 1e-9 && what == ew, "{summary:?}");
    }
    assert_eq!(w.node(client).outcomes[&id].finals, vec![486]);
    assert!(w.node(server).txns.is_empty() && w.node(client).txns.is_empty());
    assert_eq!(
        w.now() - t0,
        ms(45),
        "nothing lingers on TCP: the last event is the ACK"
    );
}

#[test]
fn unreachable_tcp_peer_is_a_transport_error() {
    let t0 = test_epoch();
    let mut w = World::new(t0, 5, LinkConfig::default());
    let client = w.add_node(addr(2), Endpoint::new(addr(2), 2, Answer::Final(200)));
    let id = w
        .node_mut(client)
        .call(t0, Method::Options, Peer::tcp(addr(99)));
    while w.step() {}
    let o = &w.node(client).outcomes[&id];
    assert!(
        o.transport_error && o.terminated && o.timeout.is_none(),
        "{o:?}"
    );
    assert_eq!(w.now(), t0, "reported at once, not after Timer F");
}

#[test]
fn lossy_runs_are_reproducible_per_seed() {
    let summary = |seed| {
        let (w, [server, ..]) = run(
            seed,
            lossy(),
            Transport::Udp,
            Method::Message,
            Answer::Final(200),
            10,
        );
        (w.stats(), w.elapsed(), w.node(server).requests_seen.clone())
    };
    assert_eq!(summary(21), summary(21));
    assert_ne!(summary(21).0, summary(22).0);
}
