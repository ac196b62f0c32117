//! The registration engine and a registrar with its own transaction layer, as two nodes of a
//! netem [`World`] with seeded latency and loss: every binding registers and stays registered
//! through an hour of refreshes, with retransmissions absorbing the loss.
#![allow(clippy::unwrap_used)]

mod reg_support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reg_support::*;
use vigil_proto::auth::Algorithm;
use vigil_proto::msg::Message;
use vigil_proto::netem::{test_epoch, Latency, LinkConfig, Node, World};
use vigil_proto::reg::{BindingId, BindingPhase, RegConfig, RegEvent, Registrations};
use vigil_proto::rng::CoreRng;
use vigil_proto::txn::{Peer, Transactions, Transmit, TxnConfig, TxnEvent};

const GW_ADDR: &str = "198.51.100.1:5070";

struct Gateway {
    engine: Registrations,
    events: Vec<(Instant, RegEvent)>,
}

impl Gateway {
    fn collect(&mut self, now: Instant) {
        while let Some(e) = self.engine.poll_event() {
            self.events.push((now, e));
        }
    }
}

/// The fake registrar behind a real server transaction layer, so retransmitted REGISTERs
/// get the same answer instead of being checked twice (which digest replay protection would
/// refuse).
struct RegistrarNode {
    txns: Transactions,
    registrar: Registrar,
}

enum N {
    Gw(Gateway),
    Reg(RegistrarNode),
}

impl Node for N {
    fn handle_receive(&mut self, now: Instant, from: Peer, bytes: Bytes) {
        let Ok(msg) = Message::parse(bytes) else {
            return;
        };
        match self {
            N::Gw(g) => {
                g.engine.handle_incoming(now, msg, from);
                g.collect(now);
            }
            N::Reg(r) => {
                r.txns.handle_incoming(now, msg, from);
                while let Some(ev) = r.txns.poll_event() {
                    if let TxnEvent::Request { id, request, .. } = ev {
                        if let Action::Respond(resp) = r.registrar.handle(now, &request) {
                            r.txns.send_response(now, id, resp).unwrap();
                        }
                    }
                }
            }
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        match self {
            N::Gw(g) => {
                g.engine.handle_timeout(now);
                g.collect(now);
            }
            N::Reg(r) => {
                r.txns.handle_timeout(now);
                while r.txns.poll_event().is_some() {}
            }
        }
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        match self {
            N::Gw(g) => g.engine.poll_transmit(),
            N::Reg(r) => r.txns.poll_transmit(),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            N::Gw(g) => g.engine.poll_timeout(),
            N::Reg(r) => r.txns.poll_timeout(),
        }
    }

    fn handle_unreachable(&mut self, now: Instant, peer: Peer) {
        if let N::Gw(g) = self {
            g.engine.handle_transport_error(now, peer);
            g.collect(now);
        }
    }
}

fn gw(world: &mut World<N>, id: vigil_proto::netem::NodeId) -> &mut Gateway {
    match world.node_mut(id) {
        N::Gw(g) => g,
        N::Reg(_) => unreachable!(),
    }
}

#[test]
fn bindings_stay_registered_for_an_hour_over_a_lossy_link() {
    const COUNT: u64 = 200;
    let epoch = test_epoch();
    let link = LinkConfig::fixed(Duration::from_millis(30))
        .latency(Latency::Uniform {
            min: Duration::from_millis(10),
            max: Duration::from_millis(80),
        })
        .loss(0.1);
    let mut world: World<N> = World::new(epoch, 7, link);
    let mut cfg = RegConfig::new(GW_ADDR);
    cfg.max_registers_per_sec = 50;
    let g = world.add_node(
        GW_ADDR.parse::<SocketAddr>().unwrap(),
        N::Gw(Gateway {
            engine: Registrations::new(cfg, CoreRng::from_seed(1)).unwrap(),
            events: Vec::new(),
        }),
    );
    let mut registrar = Registrar::new(epoch, 2).with_auth(&[Algorithm::Sha256]);
    registrar.grant = Some(300);
    let r = world.add_node(
        upstream(vigil_proto::txn::Transport::Udp).addr,
        N::Reg(RegistrarNode {
            txns: Transactions::new(TxnConfig::default()),
            registrar,
        }),
    );
    for i in 0..COUNT {
        let now = world.now();
        gw(&mut world, g)
            .engine
            .add_binding(now, BindingId(i), binding(i, 300))
            .unwrap();
    }
    world.run_for(Duration::from_secs(3600));
    let end = world.now();
    let (engine_ok, events) = {
        let g = gw(&mut world, g);
        let ok = (0..COUNT)
            .filter(|&i| g.engine.status(BindingId(i)).unwrap().phase == BindingPhase::Registered)
            .count();
        (ok, std::mem::take(&mut g.events))
    };
    let N::Reg(reg) = world.node(r) else {
        unreachable!()
    };
    let bound_now = reg.registrar.bound.values().filter(|&&t| t > end).count();
    let registered = events
        .iter()
        .filter(|e| matches!(e.1, RegEvent::Registered { .. }))
        .count();
    let failed = events
        .iter()
        .filter(|e| matches!(e.1, RegEvent::Failed { .. }))
        .count();
    let stats = world.stats();
    println!(
        "{COUNT} bindings, 1 h, 10 % loss: {registered} Registered events, {} REGISTERs at the registrar, {bound_now} bound at the end, net {stats:?}",
        reg.registrar.received.len()
    );
    assert_eq!(failed, 0);
    assert_eq!(
        engine_ok, COUNT as usize,
        "every binding registered at the end"
    );
    assert_eq!(bound_now, COUNT as usize, "and the registrar agrees");
    // Refreshes every 150–255 s for an hour: at least 14 per binding.
    assert!(registered >= 14 * COUNT as usize, "{registered}");
    // Never a lapse: each binding's successive 200s are closer than its granted 300 s.
    for i in 0..COUNT {
        let times: Vec<Instant> = events
            .iter()
            .filter(|e| matches!(e.1, RegEvent::Registered { id, .. } if id == BindingId(i)))
            .map(|e| e.0)
            .collect();
        for w in times.windows(2) {
            assert!(w[1] - w[0] < Duration::from_secs(300), "binding {i} lapsed");
        }
    }
}
