//! Client transactions on virtual time: exact retransmission schedules, timeouts, linger
//! timers, ACK generation and response matching (RFC 3261 §17.1, RFC 6026).
// Test helpers outside #[test] functions: a panic there is a test failure too.
#![allow(clippy::unwrap_used)]

mod txn_support;

use std::time::Duration;

use txn_support::*;
use vigil_proto::msg::{cancel_for, HeaderName, Method, RequestBuilder, ResponseBuilder};
use vigil_proto::txn::{
    ClientState, KeyError, SendError, Transport, TxnConfig, TxnEvent, TxnId, TxnTimer,
};

const BR: &str = "z9hG4bKclient1";

fn timeouts(d: &Driver) -> Vec<(f64, TxnTimer)> {
    d.events
        .iter()
        .filter_map(|(at, e)| match e {
            TxnEvent::Timeout { timer, .. } => Some((secs_f(*at), *timer)),
            _ => None,
        })
        .collect()
}

fn terminated_at(d: &Driver) -> Vec<f64> {
    d.events
        .iter()
        .filter(|(_, e)| matches!(e, TxnEvent::Terminated { .. }))
        .map(|(at, _)| secs_f(*at))
        .collect()
}

fn responses(d: &Driver) -> Vec<(f64, u16)> {
    d.events
        .iter()
        .filter_map(|(at, e)| match e {
            TxnEvent::Response { response, .. } => Some((secs_f(*at), response.status().unwrap())),
            _ => None,
        })
        .collect()
}

#[test]
fn non_invite_over_udp_retransmits_on_timer_e_and_times_out_at_32s() {
    let mut d = Driver::rfc();
    let p = peer(Transport::Udp, 2);
    let id = d
        .txns
        .send_request(d.now, request(Method::Options, Transport::Udp, BR), p)
        .unwrap();
    d.drain();
    d.run_to_end();
    // Intervals 0.5, 1, 2, 4, 4, 4 ... (capped at T2), until Timer F at 64·T1.
    let expect = schedule(&[0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0]);
    assert_eq!(d.times(|s| s.method() == Some(Method::Options)), expect);
    assert!(d.sent.iter().all(|s| s.peer == p));
    assert_eq!(timeouts(&d), vec![(32.0, TxnTimer::F)]);
    assert_eq!(terminated_at(&d), vec![32.0]);
    assert!(
        matches!(d.events.last(), Some((_, TxnEvent::Terminated { id: TxnId::Client(x) })) if *x == id)
    );
    assert!(d.txns.is_empty());
}

#[test]
fn non_invite_over_tcp_never_retransmits_and_times_out_at_32s() {
    let mut d = Driver::rfc();
    d.txns
        .send_request(
            d.now,
            request(Method::Message, Transport::Tcp, BR),
            peer(Transport::Tcp, 2),
        )
        .unwrap();
    d.drain();
    d.run_to_end();
    assert_eq!(d.times(|_| true), vec![0.0]);
    assert_eq!(timeouts(&d), vec![(32.0, TxnTimer::F)]);
}

#[test]
fn invite_over_udp_doubles_timer_a_without_cap_and_times_out_on_b() {
    let mut d = Driver::rfc();
    d.txns
        .send_request(
            d.now,
            request(Method::Invite, Transport::Udp, BR),
            peer(Transport::Udp, 2),
        )
        .unwrap();
    d.drain();
    d.run_to_end();
    assert_eq!(
        d.times(|_| true),
        schedule(&[0.5, 1.0, 2.0, 4.0, 8.0, 16.0])
    );
    assert_eq!(timeouts(&d), vec![(32.0, TxnTimer::B)]);
    assert_eq!(terminated_at(&d), vec![32.0]);
}

#[test]
fn custom_t1_scales_every_timer() {
    let config = TxnConfig {
        t1: ms(100),
        t2: ms(400),
        ..TxnConfig::default()
    };
    let mut d = Driver::new(config);
    d.txns
        .send_request(
            d.now,
            request(Method::Options, Transport::Udp, BR),
            peer(Transport::Udp, 2),
        )
        .unwrap();
    d.drain();
    d.run_to_end();
    let times = d.times(|_| true);
    // 0.1, 0.2, then every T2 = 0.4 s while before Timer F at 6.4 s: 3 + 14 intervals.
    let mut intervals = vec![0.1, 0.2];
    intervals.extend([0.4; 15]);
    let expect = schedule(&intervals);
    assert_eq!(times.len(), expect.len());
    for (a, b) in times.iter().zip(&expect) {
        assert!((a - b).abs() < 1e-9, "{times:?}");
    }
    assert_eq!(timeouts(&d), vec![(6.4, TxnTimer::F)]);
}

#[test]
fn non_invite_provisional_switches_to_t2_retransmissions_then_final_lingers_k() {
    let mut d = Driver::rfc();
    let req = request(Method::Register, Transport::Udp, BR);
    let p = peer(Transport::Udp, 2);
    let id = d.txns.send_request(d.now, req.clone(), p).unwrap();
    d.drain();
    d.run_until(ms(1000));
    d.incoming(&response(&req, 100), p);
    assert_eq!(d.txns.client_state(id), Some(ClientState::Proceeding));
    d.run_until(ms(10_000));
    // Trying: 0, 0.5; the E armed at 0.5 (interval 1) fires at 1.5, then every T2.
    assert_eq!(d.times(|_| true), vec![0.0, 0.5, 1.5, 5.5, 9.5]);
    d.incoming(&response(&req, 200), p);
    assert_eq!(d.txns.client_state(id), Some(ClientState::Completed));
    // Retransmissions of the final response are absorbed in Completed.
    d.run_until(ms(12_000));
    d.incoming(&response(&req, 200), p);
    d.run_to_end();
    assert_eq!(
        d.times(|_| true),
        vec![0.0, 0.5, 1.5, 5.5, 9.5],
        "no request after the final"
    );
    assert_eq!(responses(&d), vec![(1.0, 100), (10.0, 200)]);
    assert!(timeouts(&d).is_empty());
    assert_eq!(
        terminated_at(&d),
        vec![15.0],
        "Timer K = T4 after the final response"
    );
}

#[test]
fn non_invite_over_tcp_terminates_at_once_on_final() {
    let mut d = Driver::rfc();
    let req = request(Method::Options, Transport::Tcp, BR);
    let p = peer(Transport::Tcp, 2);
    d.txns.send_request(d.now, req.clone(), p).unwrap();
    d.drain();
    d.run_until(ms(300));
    d.incoming(&response(&req, 200), p);
    assert_eq!(
        terminated_at(&d),
        vec![0.3],
        "Timer K = 0 on reliable transports"
    );
    assert!(d.txns.is_empty());
    assert_eq!(d.txns.poll_timeout(), None, "every timer was cancelled");
    d.incoming(&response(&req, 200), p);
    assert!(matches!(
        d.events.last(),
        Some((_, TxnEvent::StrayResponse { .. }))
    ));
}

#[test]
fn invite_non_2xx_is_acked_by_the_transaction_and_lingers_d() {
    let mut d = Driver::rfc();
    let invite = request(Method::Invite, Transport::Udp, BR);
    let p = peer(Transport::Udp, 2);
    let id = d.txns.send_request(d.now, invite.clone(), p).unwrap();
    d.drain();
    d.run_until(ms(100));
    d.incoming(&response(&invite, 180), p);
    d.run_until(ms(2000));
    let busy = response(&invite, 486);
    d.incoming(&busy, p);
    assert_eq!(d.txns.client_state(id), Some(ClientState::Completed));
    let sent = d.take_sent();
    assert_eq!(
        sent.len(),
        2,
        "the INVITE once (180 stopped Timer A), then the ACK"
    );
    let ack = &sent[1].msg;
    assert_eq!(ack.method(), Some(Method::Ack));
    assert_eq!(secs_f(sent[1].at), 2.0);
    assert_eq!(
        ack.top_via().unwrap().branch(),
        Some(BR),
        "same branch as the INVITE"
    );
    assert_eq!(
        ack.to_hdr().unwrap().tag(),
        Some("totag1"),
        "To tag of the response"
    );
    assert_eq!(ack.cseq().unwrap().seq, 1);
    assert_eq!(ack.request_uri_str(), invite.request_uri_str());
    // A retransmitted 486 is answered with the same ACK and not passed up again.
    d.run_until(ms(3000));
    d.incoming(&busy, p);
    let again = d.take_sent();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].msg.as_bytes(), ack.as_bytes());
    d.run_to_end();
    assert_eq!(responses(&d), vec![(0.1, 180), (2.0, 486)]);
    assert_eq!(
        terminated_at(&d),
        vec![34.0],
        "Timer D = 32 s after the final response"
    );
    assert!(
        timeouts(&d).is_empty(),
        "Timer B does not run in Proceeding"
    );
}

#[test]
fn invite_non_2xx_over_tcp_acks_and_terminates_at_once() {
    let mut d = Driver::rfc();
    let invite = request(Method::Invite, Transport::Tcp, BR);
    let p = peer(Transport::Tcp, 2);
    d.txns.send_request(d.now, invite.clone(), p).unwrap();
    d.drain();
    d.run_until(ms(50));
    d.incoming(&response(&invite, 603), p);
    assert_eq!(d.sent.len(), 2);
    assert_eq!(d.sent[1].method(), Some(Method::Ack));
    assert_eq!(terminated_at(&d), vec![0.05]);
    assert!(d.txns.is_empty());
}

#[test]
fn invite_2xx_goes_to_tu_and_accepted_absorbs_retransmissions_for_timer_m() {
    let mut d = Driver::rfc();
    let invite = request(Method::Invite, Transport::Udp, BR);
    let p = peer(Transport::Udp, 2);
    let id = d.txns.send_request(d.now, invite.clone(), p).unwrap();
    d.drain();
    d.run_until(ms(700));
    let ok = response(&invite, 200);
    d.incoming(&ok, p);
    assert_eq!(d.txns.client_state(id), Some(ClientState::Accepted));
    d.run_until(ms(1700));
    d.incoming(&ok, p);
    d.run_to_end();
    // The INVITE at 0 and 0.5 (Timer A), nothing else: the ACK for a 2xx is the TU's.
    assert_eq!(d.times(|_| true), vec![0.0, 0.5]);
    // RFC 6026: both 2xx reach the TU so it can ACK each.
    assert_eq!(responses(&d), vec![(0.7, 200), (1.7, 200)]);
    assert_eq!(terminated_at(&d), vec![32.7], "Timer M = 64·T1");
}

#[test]
fn invite_stuck_in_proceeding_is_bounded_by_timer_c() {
    let mut d = Driver::rfc();
    let invite = request(Method::Invite, Transport::Udp, BR);
    let p = peer(Transport::Udp, 2);
    d.txns.send_request(d.now, invite.clone(), p).unwrap();
    d.drain();
    d.incoming(&response(&invite, 180), p);
    d.run_to_end();
    assert_eq!(d.times(|_| true), vec![0.0]);
    assert_eq!(timeouts(&d), vec![(181.0, TxnTimer::C)]);
}

#[test]
fn responses_match_by_branch_and_cseq_method() {
    let mut d = Driver::rfc();
    let invite = request(Method::Invite, Transport::Udp, BR);
    let p = peer(Transport::Udp, 2);
    let inv = d.txns.send_request(d.now, invite.clone(), p).unwrap();
    d.incoming(&response(&invite, 180), p);
    // The CANCEL shares the INVITE's branch but is its own transaction (§17.1.3).
    let cancel = cancel_for(&invite);
    assert_eq!(cancel.top_via().unwrap().branch(), Some(BR));
    let can = d.txns.send_request(d.now, cancel.clone(), p).unwrap();
    d.take_events();
    d.incoming(&response(&cancel, 200), p);
    let ev = d.take_events();
    assert!(
        matches!(&ev[0].1, TxnEvent::Response { id, response } if *id == can && response.status() == Some(200))
    );
    assert_eq!(
        d.txns.client_state(inv),
        Some(ClientState::Proceeding),
        "the INVITE is untouched"
    );
    d.incoming(&response(&invite, 487), p);
    let ev = d.take_events();
    assert!(matches!(&ev[0].1, TxnEvent::Response { id, .. } if *id == inv));
    // Another branch matches nothing.
    let other = request(Method::Invite, Transport::Udp, "z9hG4bKother");
    d.incoming(&response(&other, 200), p);
    assert!(matches!(
        &d.take_events()[0].1,
        TxnEvent::StrayResponse { .. }
    ));
}

#[test]
fn transport_error_ends_the_peers_transactions_only() {
    let mut d = Driver::rfc();
    let a = peer(Transport::Tcp, 2);
    let b = peer(Transport::Tcp, 3);
    let ta = d
        .txns
        .send_request(
            d.now,
            request(Method::Options, Transport::Tcp, "z9hG4bKa"),
            a,
        )
        .unwrap();
    let tb = d
        .txns
        .send_request(
            d.now,
            request(Method::Options, Transport::Tcp, "z9hG4bKb"),
            b,
        )
        .unwrap();
    d.drain();
    d.txns.handle_transport_error(d.now, a);
    d.drain();
    let ev: Vec<_> = d.take_events().into_iter().map(|(_, e)| e).collect();
    assert!(matches!(ev[0], TxnEvent::TransportError { id: TxnId::Client(x) } if x == ta));
    assert!(matches!(ev[1], TxnEvent::Terminated { id: TxnId::Client(x) } if x == ta));
    assert_eq!(ev.len(), 2);
    assert_eq!(d.txns.client_state(tb), Some(ClientState::Trying));
}

#[test]
fn send_request_rejects_what_is_not_a_transaction() {
    let mut d = Driver::new(TxnConfig {
        max_transactions: 2,
        ..TxnConfig::default()
    });
    let p = peer(Transport::Udp, 2);
    let invite = request(Method::Invite, Transport::Udp, BR);
    let ack = vigil_proto::msg::ack_for_non_2xx(&invite, &response(&invite, 486));
    assert_eq!(d.txns.send_request(d.now, ack, p), Err(SendError::Ack));
    assert_eq!(
        d.txns.send_request(d.now, response(&invite, 200), p),
        Err(SendError::NotARequest)
    );
    let legacy = RequestBuilder::new(Method::Options, "sip:bob@example.com")
        .via("UDP", "192.0.2.1", "1234")
        .from("sip:alice@example.com", "t")
        .to("sip:bob@example.com", None)
        .call_id("c")
        .cseq(1)
        .build();
    assert_eq!(
        d.txns.send_request(d.now, legacy, p),
        Err(SendError::Key(KeyError::NoBranch))
    );
    d.txns.send_request(d.now, invite.clone(), p).unwrap();
    assert_eq!(
        d.txns.send_request(d.now, invite, p),
        Err(SendError::DuplicateBranch)
    );
    d.txns
        .send_request(
            d.now,
            request(Method::Options, Transport::Udp, "z9hG4bK2"),
            p,
        )
        .unwrap();
    assert_eq!(
        d.txns.send_request(
            d.now,
            request(Method::Options, Transport::Udp, "z9hG4bK3"),
            p
        ),
        Err(SendError::Overloaded)
    );
    // A response without a Via branch cannot be matched and is reported, not dropped silently.
    let bad = raw("SIP/2.0 200 OK\nVia: SIP/2.0/UDP 192.0.2.1\nFrom: <sip:a@x>;tag=1\nTo: <sip:b@x>\nCall-ID: c\nCSeq: 1 OPTIONS\nContent-Length: 0\n\n");
    d.take_events();
    d.incoming(&bad, p);
    assert!(matches!(
        &d.take_events()[0].1,
        TxnEvent::Discarded {
            reason: KeyError::NoBranch,
            ..
        }
    ));
}

#[test]
fn poll_timeout_stays_correct_with_200k_pending_client_transactions() {
    const N: u64 = 200_000;
    let mut d = Driver::new(TxnConfig {
        max_transactions: 300_000,
        ..TxnConfig::default()
    });
    let p = peer(Transport::Udp, 2);
    let req = |i: u64| {
        RequestBuilder::new(Method::Options, "sip:bob@example.com")
            .via("UDP", "192.0.2.1:5060", &format!("z9hG4bK{i}"))
            .from("sip:alice@example.com", "t")
            .to("sip:bob@example.com", None)
            .call_id(&format!("c{i}"))
            .cseq(1)
            .build()
    };
    for i in 0..N {
        d.now = d.t0 + Duration::from_micros(i);
        d.txns.send_request(d.now, req(i), p).unwrap();
    }
    while d.txns.poll_transmit().is_some() {}
    assert_eq!(d.txns.len(), N as usize);
    assert_eq!(
        d.txns.poll_timeout(),
        Some(d.t0 + ms(500)),
        "the first Timer E"
    );
    // Fire the first transaction's Timer E: the next deadline is the second one's.
    d.now = d.t0 + ms(500);
    d.txns.handle_timeout(d.now);
    assert_eq!(d.txns.poll_transmit().map(|t| t.peer), Some(p));
    assert_eq!(
        d.txns.poll_timeout(),
        Some(d.t0 + ms(500) + Duration::from_micros(1))
    );
    // Final responses for transactions 1..100_000 cancel their E and F timers.
    for i in 1..100_000 {
        let resp = ResponseBuilder::for_request(&req(i), 200, Some("x")).build();
        d.txns.handle_incoming(d.now, resp, p);
    }
    while d.txns.poll_event().is_some() {}
    assert_eq!(
        d.txns.poll_timeout(),
        Some(d.t0 + ms(500) + Duration::from_micros(100_000))
    );
    assert_eq!(
        d.txns.len(),
        N as usize,
        "Completed transactions linger for Timer K"
    );
    // Everything ends by Timer F of the last one at 32 s + 0.2 s (K fired at 5.5 s).
    d.now = d.t0 + Duration::from_secs(33);
    d.txns.handle_timeout(d.now);
    assert!(d.txns.is_empty());
    assert_eq!(d.txns.poll_timeout(), None);
    let mut timeouts = 0;
    while let Some(e) = d.txns.poll_event() {
        if let TxnEvent::Timeout {
            timer: TxnTimer::F, ..
        } = e
        {
            timeouts += 1;
        }
    }
    assert_eq!(timeouts, N - 99_999);
    let _ = HeaderName::Via;
}
