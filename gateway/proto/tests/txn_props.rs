//! Property tests over random sequences of operations on the transaction layer: whatever
//! the network and the TU do, the layer never panics, never schedules a timer in the past,
//! reports every transaction's end exactly once, and holds nothing once the TU has answered
//! and the timers have run out.

// Test helpers outside #[test] functions: a panic there is a test failure too.
#![allow(clippy::unwrap_used)]

mod txn_support;

use std::collections::HashSet;
use std::time::Duration;

use proptest::prelude::*;
use txn_support::*;
use vigil_proto::msg::{ack_for_non_2xx, cancel_for, Message, Method, ResponseBuilder};
use vigil_proto::txn::{ServerTxnId, Transport, TxnConfig, TxnEvent, TxnId};

#[derive(Debug, Clone)]
enum Op {
    /// The TU sends a request (INVITE or OPTIONS) with branch number `b`.
    Send { invite: bool, tcp: bool, b: u8 },
    /// A response to our request with branch `b` arrives.
    Response { invite: bool, b: u8, status: u16 },
    /// A request (fresh or retransmitted) arrives: INVITE, OPTIONS, ACK or CANCEL.
    Request { kind: u8, tcp: bool, b: u8 },
    /// The TU answers the `i`-th server transaction it was told about.
    Answer { i: usize, status: u16 },
    /// A transport failure towards the server we send to (`theirs` = false) or the client
    /// that sends to us.
    TransportError { tcp: bool, theirs: bool },
    /// Virtual time passes.
    Advance { ms: u32 },
}

fn op() -> impl Strategy<Value = Op> {
    let status = prop::sample::select(vec![100u16, 180, 200, 202, 404, 486, 503]);
    let flag = any::<bool>;
    prop_oneof![
        3 => (flag(), flag(), 0u8..6).prop_map(|(invite, tcp, b)| Op::Send { invite, tcp, b }),
        3 => (flag(), 0u8..6, status.clone())
            .prop_map(|(invite, b, status)| Op::Response { invite, b, status }),
        3 => (0u8..4, flag(), 0u8..6).prop_map(|(kind, tcp, b)| Op::Request { kind, tcp, b }),
        3 => (any::<usize>(), status).prop_map(|(i, status)| Op::Answer { i, status }),
        1 => (flag(), flag()).prop_map(|(tcp, theirs)| Op::TransportError { tcp, theirs }),
        3 => (0u32..40_000).prop_map(|ms| Op::Advance { ms }),
    ]
}

fn tr(tcp: bool) -> Transport {
    if tcp {
        Transport::Tcp
    } else {
        Transport::Udp
    }
}

fn our_request(invite: bool, b: u8) -> Message {
    let m = if invite {
        Method::Invite
    } else {
        Method::Options
    };
    request(m, Transport::Udp, &format!("z9hG4bKout{b}"))
}

fn their_request(kind: u8, tcp: bool, b: u8) -> Message {
    let invite = request(Method::Invite, tr(tcp), &format!("z9hG4bKin{b}"));
    match kind {
        0 => invite,
        1 => request(Method::Options, tr(tcp), &format!("z9hG4bKin{b}")),
        2 => ack_for_non_2xx(&invite, &response(&invite, 486)),
        _ => cancel_for(&invite),
    }
}

/// Checks what the layer reported since the last call.
#[derive(Default)]
struct Ledger {
    live: HashSet<TxnId>,
    ended: HashSet<TxnId>,
    server: Vec<(ServerTxnId, Message)>,
}

impl Ledger {
    fn absorb(&mut self, d: &mut Driver) -> Result<(), TestCaseError> {
        for (_, e) in d.take_events() {
            match e {
                TxnEvent::Request { id, request, .. } => {
                    prop_assert!(self.live.insert(id.into()), "id reused");
                    self.server.push((id, *request));
                }
                TxnEvent::Terminated { id } => {
                    prop_assert!(
                        self.live.remove(&id),
                        "end of an unknown or ended transaction"
                    );
                    prop_assert!(self.ended.insert(id));
                }
                TxnEvent::Response { id, .. } => prop_assert!(self.live.contains(&id.into())),
                TxnEvent::Timeout { id, .. } | TxnEvent::TransportError { id } => {
                    prop_assert!(self.live.contains(&id))
                }
                _ => {}
            }
        }
        prop_assert_eq!(d.txns.len(), self.live.len());
        if let Some(t) = d.txns.poll_timeout() {
            prop_assert!(t > d.now, "a due timer was left unfired");
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_keep_the_layer_consistent(ops in proptest::collection::vec(op(), 1..80)) {
        let mut d = Driver::new(TxnConfig::default());
        let mut ledger = Ledger::default();
        for op in ops {
            match op {
                Op::Send { invite, tcp, b } => {
                    let to = peer(tr(tcp), 2);
                    if let Ok(id) = d.txns.send_request(d.now, our_request(invite, b), to) {
                        prop_assert!(ledger.live.insert(id.into()));
                    }
                    d.drain();
                }
                Op::Response { invite, b, status } => {
                    let resp = response(&our_request(invite, b), status);
                    d.incoming(&resp, peer(Transport::Udp, 2));
                }
                Op::Request { kind, tcp, b } => {
                    d.incoming(&their_request(kind, tcp, b), peer(tr(tcp), 1))
                }
                Op::Answer { i, status } => {
                    if !ledger.server.is_empty() {
                        let (id, req) = ledger.server[i % ledger.server.len()].clone();
                        let resp = ResponseBuilder::for_request(&req, status, Some("t")).build();
                        // Errors (ended transaction, second final) are fine; panics are not.
                        let _ = d.txns.send_response(d.now, id, resp);
                        d.drain();
                    }
                }
                Op::TransportError { tcp, theirs } => {
                    d.txns.handle_transport_error(d.now, peer(tr(tcp), if theirs { 1 } else { 2 }));
                    d.drain();
                }
                Op::Advance { ms: n } => d.run_until(d.elapsed() + Duration::from_millis(n.into())),
            }
            ledger.absorb(&mut d)?;
        }
        // The TU's side of the contract: every server transaction gets a final response.
        for (id, req) in ledger.server.clone() {
            let answer = ResponseBuilder::for_request(&req, 500, Some("t")).build();
            let _ = d.txns.send_response(d.now, id, answer);
        }
        d.drain();
        ledger.absorb(&mut d)?;
        // Then every timer runs out and nothing is left.
        d.run_until(d.elapsed() + Duration::from_secs(600));
        ledger.absorb(&mut d)?;
        prop_assert!(d.txns.is_empty(), "left: {}", d.txns.len());
        prop_assert_eq!(d.txns.poll_timeout(), None);
        prop_assert!(ledger.live.is_empty());
    }
}
