//! Server transactions on virtual time: 100 Trying, final-response retransmission (Timer G),
//! Timers H, I, J, L, request and ACK absorption, CANCEL matching, RFC 2543 matching, and the
//! overload 503 (RFC 3261 §17.2, RFC 6026).
// Test helpers outside #[test] functions: a panic there is a test failure too.
#![allow(clippy::unwrap_used)]

mod txn_support;

use txn_support::*;
use vigil_proto::msg::{cancel_for, HeaderName, Message, Method, ResponseBuilder};
use vigil_proto::txn::{
    Rejection, ResponseError, ServerState, ServerTxnId, Transport, TxnConfig, TxnEvent, TxnId,
    TxnTimer,
};

const BR: &str = "z9hG4bKserver1";

/// Feeds a request from 192.0.2.1 and returns the new transaction's id.
fn receive_new(d: &mut Driver, req: &Message, transport: Transport) -> ServerTxnId {
    d.incoming(req, peer(transport, 1));
    match d.take_events().pop() {
        Some((_, TxnEvent::Request { id, .. })) => id,
        other => panic!("expected a new request, got {other:?}"),
    }
}

fn statuses(sent: &[Sent]) -> Vec<(f64, u16)> {
    sent.iter()
        .filter_map(|s| Some((secs_f(s.at), s.status()?)))
        .collect()
}

fn kinds(d: &mut Driver) -> Vec<String> {
    d.take_events()
        .into_iter()
        .map(|(at, e)| {
            let name = match e {
                TxnEvent::Request { .. } => "request".to_string(),
                TxnEvent::Ack { txn, .. } => format!("ack:{}", txn.is_some()),
                TxnEvent::Timeout { timer, .. } => format!("timeout:{timer:?}"),
                TxnEvent::Terminated { .. } => "terminated".to_string(),
                other => format!("{other:?}"),
            };
            format!("{}@{}", name, secs_f(at))
        })
        .collect()
}

#[test]
fn invite_server_sends_100_trying_at_200ms_when_the_tu_is_silent() {
    let mut d = Driver::rfc();
    let invite = request(Method::Invite, Transport::Udp, BR);
    let id = receive_new(&mut d, &invite, Transport::Udp);
    d.run_until(ms(199));
    assert!(d.sent.is_empty());
    d.run_until(ms(1000));
    assert_eq!(statuses(&d.sent), vec![(0.2, 100)]);
    let trying = &d.sent[0].msg;
    assert_eq!(
        d.sent[0].peer,
        peer(Transport::Udp, 1),
        "back to the source"
    );
    assert_eq!(
        trying.to_hdr().unwrap().tag(),
        None,
        "100 Trying adds no To tag"
    );
    assert_eq!(trying.top_via().unwrap().branch(), Some(BR));
    assert_eq!(d.txns.server_state(id), Some(ServerState::Proceeding));
}

#[test]
fn invite_server_stays_quiet_when_the_tu_answers_within_200ms() {
    let mut d = Driver::rfc();
    let invite = request(Method::Invite, Transport::Udp, BR);
    let id = receive_new(&mut d, &invite, Transport::Udp);
    d.run_until(ms(150));
    d.txns
        .send_response(d.now, id, response(&invite, 180))
        .unwrap();
    d.drain();
    d.run_until(ms(5000));
    assert_eq!(statuses(&d.sent), vec![(0.15, 180)]);
    // A retransmitted INVITE gets the latest provisional again, and no new event.
    d.incoming(&invite, peer(Transport::Udp, 1));
    assert_eq!(statuses(&d.sent), vec![(0.15, 180), (5.0, 180)]);
    assert!(d.take_events().is_empty());
}

#[test]
fn invite_retransmission_before_any_answer_gets_100_at_once() {
    let mut d = Driver::rfc();
    let invite = request(Method::Invite, Transport::Udp, BR);
    receive_new(&mut d, &invite, Transport::Udp);
    d.run_until(ms(100));
    d.incoming(&invite, peer(Transport::Udp, 1));
    d.run_until(ms(1000));
    assert_eq!(
        statuses(&d.sent),
        vec![(0.1, 100)],
        "no second 100 from the timer"
    );
    assert!(d.take_events().is_empty(), "the retransmission is absorbed");
}

#[test]
fn invite_final_over_udp_retransmits_on_g_capped_at_t2_until_h() {
    let mut d = Driver::rfc();
    let invite = request(Method::Invite, Transport::Udp, BR);
    let id = receive_new(&mut d, &invite, Transport::Udp);
    d.run_until(ms(1000));
    d.take_sent(); // the 100 Trying
    d.txns
        .send_response(d.now, id, response(&invite, 486))
        .unwrap();
    d.drain();
    assert_eq!(d.txns.server_state(id), Some(ServerState::Completed));
    d.run_to_end();
    let times: Vec<f64> = statuses(&d.sent)
        .into_iter()
        .map(|(t, s)| {
            assert_eq!(s, 486);
            t - 1.0
        })
        .collect();
    assert_eq!(
        times,
        schedule(&[0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0])
    );
    assert_eq!(kinds(&mut d), vec!["timeout:H@33", "terminated@33"]);
}

#[test]
fn ack_confirms_then_timer_i_and_ack_retransmissions_are_absorbed() {
    let mut d = Driver::rfc();
    let invite = request(Method::Invite, Transport::Udp, BR);
    let id = receive_new(&mut d, &invite, Transport::Udp);
    d.txns
        .send_response(d.now, id, response(&invite, 486))
        .unwrap();
    d.drain();
    d.run_until(ms(1000)); // G fired at 0.5
    let ack = vigil_proto::msg::ack_for_non_2xx(&invite, &d.sent[0].msg);
    d.incoming(&ack, peer(Transport::Udp, 1));
    assert_eq!(d.txns.server_state(id), Some(ServerState::Confirmed));
    d.run_until(ms(2000));
    d.incoming(&ack, peer(Transport::Udp, 1));
    d.run_to_end();
    assert_eq!(
        statuses(&d.sent),
        vec![(0.0, 486), (0.5, 486)],
        "G stops at the ACK"
    );
    assert_eq!(
        kinds(&mut d),
        vec!["terminated@6"],
        "Timer I = T4; ACKs never reach the TU"
    );
}

#[test]
fn invite_final_over_tcp_has_no_g_and_no_i() {
    let mut d = Driver::rfc();
    let invite = request(Method::Invite, Transport::Tcp, BR);
    let id = receive_new(&mut d, &invite, Transport::Tcp);
    d.txns
        .send_response(d.now, id, response(&invite, 404))
        .unwrap();
    d.drain();
    d.run_until(ms(3000));
    assert_eq!(statuses(&d.sent), vec![(0.0, 404)]);
    let ack = vigil_proto::msg::ack_for_non_2xx(&invite, &d.sent[0].msg);
    d.incoming(&ack, peer(Transport::Tcp, 1));
    assert_eq!(kinds(&mut d), vec!["terminated@3"]);
    assert_eq!(d.txns.poll_timeout(), None);
}

#[test]
fn accepted_absorbs_invites_passes_2xx_and_acks_then_ends_on_l() {
    let mut d = Driver::rfc();
    let invite = request(Method::Invite, Transport::Udp, BR);
    let id = receive_new(&mut d, &invite, Transport::Udp);
    let ok = response(&invite, 200);
    d.txns.send_response(d.now, id, ok.clone()).unwrap();
    d.drain();
    assert_eq!(d.txns.server_state(id), Some(ServerState::Accepted));
    d.run_until(ms(500));
    d.incoming(&invite, peer(Transport::Udp, 1)); // absorbed: the TU retransmits 2xx
    d.txns.send_response(d.now, id, ok.clone()).unwrap(); // the TU's retransmission
    d.drain();
    assert_eq!(
        d.txns.send_response(d.now, id, response(&invite, 486)),
        Err(ResponseError::InvalidState)
    );
    // An ACK for the 2xx normally has its own branch: it matches nothing and goes to the TU.
    let ack2xx = raw("ACK sip:bob@192.0.2.2 SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKack\nFrom: <sip:alice@example.com>;tag=fromtag1\nTo: <sip:bob@example.com>;tag=totag1\nCall-ID: call-1@192.0.2.1\nCSeq: 1 ACK\nMax-Forwards: 70\nContent-Length: 0\n\n");
    d.incoming(&ack2xx, peer(Transport::Udp, 1));
    // One reusing the INVITE's branch matches the transaction and still reaches the TU.
    let ack_same = raw(&String::from_utf8_lossy(ack2xx.as_bytes())
        .replace("z9hG4bKack", BR)
        .replace("\r\n", "\n"));
    d.incoming(&ack_same, peer(Transport::Udp, 1));
    d.run_to_end();
    assert_eq!(statuses(&d.sent), vec![(0.0, 200), (0.5, 200)]);
    assert_eq!(
        kinds(&mut d),
        vec!["ack:false@0.5", "ack:true@0.5", "terminated@32"]
    );
}

#[test]
fn non_invite_server_absorbs_then_resends_final_and_lingers_j() {
    let mut d = Driver::rfc();
    let req = request(Method::Message, Transport::Udp, BR);
    let id = receive_new(&mut d, &req, Transport::Udp);
    assert_eq!(d.txns.server_state(id), Some(ServerState::Trying));
    d.run_until(ms(500));
    d.incoming(&req, peer(Transport::Udp, 1));
    assert!(
        d.sent.is_empty() && d.events.is_empty(),
        "Trying absorbs retransmissions"
    );
    d.txns
        .send_response(d.now, id, response(&req, 100))
        .unwrap();
    d.drain();
    d.run_until(ms(1500));
    d.incoming(&req, peer(Transport::Udp, 1));
    d.run_until(ms(2000));
    d.txns
        .send_response(d.now, id, response(&req, 202))
        .unwrap();
    d.drain();
    assert_eq!(
        d.txns.send_response(d.now, id, response(&req, 200)),
        Err(ResponseError::InvalidState)
    );
    d.run_until(ms(6000));
    d.incoming(&req, peer(Transport::Udp, 1));
    d.run_to_end();
    assert_eq!(
        statuses(&d.sent),
        vec![(0.5, 100), (1.5, 100), (2.0, 202), (6.0, 202)]
    );
    assert_eq!(
        kinds(&mut d),
        vec!["terminated@34"],
        "Timer J = 64·T1 after the final"
    );
    assert_eq!(
        d.txns.send_response(d.now, id, response(&req, 200)),
        Err(ResponseError::UnknownTransaction)
    );
}

#[test]
fn non_invite_server_over_tcp_ends_with_the_final_response() {
    let mut d = Driver::rfc();
    let req = request(Method::Register, Transport::Tcp, BR);
    let id = receive_new(&mut d, &req, Transport::Tcp);
    d.txns
        .send_response(d.now, id, response(&req, 200))
        .unwrap();
    d.drain();
    assert_eq!(
        kinds(&mut d),
        vec!["terminated@0"],
        "Timer J = 0 on reliable transports"
    );
    assert_eq!(d.txns.server_state(id), None);
}

#[test]
fn send_response_checks_the_transaction() {
    let mut d = Driver::rfc();
    let req = request(Method::Options, Transport::Udp, BR);
    let id = receive_new(&mut d, &req, Transport::Udp);
    let other = request(Method::Message, Transport::Udp, BR);
    assert_eq!(
        d.txns.send_response(d.now, id, response(&other, 200)),
        Err(ResponseError::WrongTransaction)
    );
    assert_eq!(
        d.txns.send_response(d.now, id, req.clone()),
        Err(ResponseError::NotAResponse)
    );
    assert!(d.txns.send_response(d.now, id, response(&req, 200)).is_ok());
}

#[test]
fn matching_uses_branch_sent_by_and_method() {
    let mut d = Driver::rfc();
    let invite = request(Method::Invite, Transport::Udp, BR);
    let inv = receive_new(&mut d, &invite, Transport::Udp);
    // Same branch from another sent-by: a different transaction (§17.2.3).
    let spoof = raw(&String::from_utf8_lossy(invite.as_bytes())
        .replace("192.0.2.1:5060;", "192.0.2.9:5060;")
        .replace("\r\n", "\n"));
    let other = receive_new(&mut d, &spoof, Transport::Udp);
    assert_ne!(inv, other);
    // Same branch and sent-by, method CANCEL: its own transaction, naming the INVITE's.
    let cancel = cancel_for(&invite);
    d.incoming(&cancel, peer(Transport::Udp, 1));
    let ev = d.take_events();
    let TxnEvent::Request {
        id: can,
        cancels,
        request: got,
        ..
    } = &ev[0].1
    else {
        panic!("{ev:?}")
    };
    assert_eq!(*cancels, Some(inv));
    assert_eq!(got.method(), Some(Method::Cancel));
    assert_ne!(*can, inv);
    // The TU answers the CANCEL and then 487s the INVITE.
    d.txns
        .send_response(d.now, *can, response(&cancel, 200))
        .unwrap();
    d.txns
        .send_response(d.now, inv, response(&invite, 487))
        .unwrap();
    d.drain();
    assert_eq!(d.txns.server_state(inv), Some(ServerState::Completed));
    // A CANCEL for an INVITE we never saw names nothing: the TU answers 481.
    let stray = cancel_for(&request(Method::Invite, Transport::Udp, "z9hG4bKnever"));
    d.incoming(&stray, peer(Transport::Udp, 1));
    assert!(matches!(
        &d.take_events()[0].1,
        TxnEvent::Request { cancels: None, .. }
    ));
}

const LEGACY_INVITE: &str = "INVITE sip:bob@example.com SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.1:5060\nFrom: <sip:alice@example.com>;tag=ft\nTo: <sip:bob@example.com>\nCall-ID: legacy@192.0.2.1\nCSeq: 7 INVITE\nMax-Forwards: 70\nContent-Length: 0\n\n";

#[test]
fn rfc2543_requests_match_without_a_cookie() {
    let mut d = Driver::rfc();
    let invite = raw(LEGACY_INVITE);
    let id = receive_new(&mut d, &invite, Transport::Udp);
    // The same request again is a retransmission.
    d.incoming(&invite, peer(Transport::Udp, 1));
    assert!(d.take_events().is_empty());
    assert_eq!(statuses(&d.sent), vec![(0.0, 100)]);
    // A new CSeq is a new transaction.
    let next = raw(&LEGACY_INVITE.replace("CSeq: 7", "CSeq: 8"));
    let id2 = receive_new(&mut d, &next, Transport::Udp);
    assert_ne!(id, id2);
    // A CANCEL matches the INVITE by the legacy rules too.
    let cancel = raw(&LEGACY_INVITE
        .replace("INVITE sip", "CANCEL sip")
        .replace("7 INVITE", "7 CANCEL"));
    d.incoming(&cancel, peer(Transport::Udp, 1));
    assert!(
        matches!(&d.take_events()[0].1, TxnEvent::Request { cancels: Some(x), .. } if *x == id)
    );
    // The ACK must carry the To tag of our final response.
    d.txns
        .send_response(
            d.now,
            id,
            ResponseBuilder::for_request(&invite, 486, Some("ourtag")).build(),
        )
        .unwrap();
    d.drain();
    let ack = |tag: &str| {
        raw(&LEGACY_INVITE
            .replace("INVITE sip", "ACK sip")
            .replace("7 INVITE", "7 ACK")
            .replace(
                "To: <sip:bob@example.com>",
                &format!("To: <sip:bob@example.com>;tag={tag}"),
            ))
    };
    d.incoming(&ack("wrongtag"), peer(Transport::Udp, 1));
    assert!(matches!(
        &d.take_events()[0].1,
        TxnEvent::Ack { txn: None, .. }
    ));
    assert_eq!(d.txns.server_state(id), Some(ServerState::Completed));
    d.incoming(&ack("ourtag"), peer(Transport::Udp, 1));
    assert!(d.take_events().is_empty());
    assert_eq!(d.txns.server_state(id), Some(ServerState::Confirmed));
}

#[test]
fn overload_answers_503_with_retry_after_without_a_transaction() {
    let mut d = Driver::new(TxnConfig {
        max_transactions: 1,
        overload_retry_after: 7,
        ..TxnConfig::default()
    });
    receive_new(
        &mut d,
        &request(Method::Options, Transport::Udp, "z9hG4bKa"),
        Transport::Udp,
    );
    let second = request(Method::Register, Transport::Udp, "z9hG4bKb");
    d.incoming(&second, peer(Transport::Udp, 1));
    d.incoming(&second, peer(Transport::Udp, 1));
    let ev = d.take_events();
    assert_eq!(ev.len(), 2);
    assert!(ev.iter().all(|(_, e)| matches!(
        e,
        TxnEvent::Rejected {
            status: 503,
            why: Rejection::Overloaded,
            ..
        }
    )));
    assert_eq!(d.txns.len(), 1);
    let sent = d.take_sent();
    assert_eq!(sent.len(), 2);
    let r = &sent[0].msg;
    assert_eq!(r.status(), Some(503));
    assert_eq!(r.header(HeaderName::RetryAfter), Some("7"));
    assert_eq!(r.top_via().unwrap().branch(), Some("z9hG4bKb"));
    let tag = r.to_hdr().unwrap().tag().map(str::to_owned);
    assert!(tag.is_some());
    assert_eq!(
        sent[1].msg.to_hdr().unwrap().tag().map(str::to_owned),
        tag,
        "stable per request"
    );
    // ACKs are never answered.
    let ack = vigil_proto::msg::ack_for_non_2xx(&second, r);
    d.incoming(&ack, peer(Transport::Udp, 1));
    assert!(d.take_sent().is_empty());
}

#[test]
fn requests_without_usable_headers_are_discarded_and_reported() {
    let mut d = Driver::rfc();
    let no_via = raw("OPTIONS sip:bob@example.com SIP/2.0\nFrom: <sip:a@x>;tag=1\nTo: <sip:b@x>\nCall-ID: c\nCSeq: 1 OPTIONS\nContent-Length: 0\n\n");
    d.incoming(&no_via, peer(Transport::Udp, 1));
    assert!(matches!(&d.take_events()[0].1, TxnEvent::Discarded { .. }));
    assert!(d.txns.is_empty());
    assert!(d.sent.is_empty());
    let _ = TxnTimer::H;
}

#[test]
fn new_requests_with_malformed_headers_get_a_stateless_400() {
    let mut d = Driver::rfc();
    let bad = raw("OPTIONS sip:bob@example.com SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKbad\nFrom: <sip:a@x>;tag=1\nTo: <sip:b@x>\nCall-ID: c\nCSeq: one OPTIONS\nContent-Length: 0\n\n");
    d.incoming(&bad, peer(Transport::Udp, 1));
    let ev = d.take_events();
    assert_eq!(ev.len(), 1);
    assert!(
        matches!(
            &ev[0].1,
            TxnEvent::Rejected {
                status: 400,
                why: Rejection::Malformed(_),
                ..
            }
        ),
        "{ev:?}"
    );
    assert!(d.txns.is_empty());
    let sent = d.take_sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].status(), Some(400));
    assert_eq!(sent[0].msg.top_via().unwrap().branch(), Some("z9hG4bKbad"));
}

#[test]
fn transport_error_ends_server_transactions_of_that_peer() {
    let mut d = Driver::rfc();
    let invite = request(Method::Invite, Transport::Tcp, BR);
    let id = receive_new(&mut d, &invite, Transport::Tcp);
    d.txns
        .handle_transport_error(d.now, peer(Transport::Udp, 1));
    d.drain();
    assert!(
        d.events.is_empty(),
        "same address, other transport: not this flow"
    );
    d.txns
        .handle_transport_error(d.now, peer(Transport::Tcp, 1));
    d.drain();
    let ev: Vec<TxnEvent> = d.take_events().into_iter().map(|(_, e)| e).collect();
    assert!(matches!(ev[0], TxnEvent::TransportError { id: TxnId::Server(x) } if x == id));
    assert!(matches!(ev[1], TxnEvent::Terminated { id: TxnId::Server(x) } if x == id));
    assert_eq!(
        d.txns.poll_timeout(),
        None,
        "the 100 Trying timer went with it"
    );
    assert_eq!(
        d.txns.send_response(d.now, id, response(&invite, 200)),
        Err(ResponseError::UnknownTransaction)
    );
}
