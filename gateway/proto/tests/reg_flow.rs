//! The registration engine against a fake registrar on virtual time: digest (401/407, MD5,
//! SHA-256, nonce reuse, stale, loop prevention), 423, permanent failures, backoff,
//! Retry-After, timeouts, transport errors, request identity rules, removal and OPTIONS.
#![allow(clippy::unwrap_used)]

mod reg_support;

use std::time::Duration;

use reg_support::*;
use vigil_proto::auth::{Algorithm, Password};
use vigil_proto::msg::{HeaderName, Message, Method, RequestBuilder};
use vigil_proto::reg::{
    BindingError, BindingField, BindingId, BindingPhase, FailReason, RegEvent, RetryCause,
};
use vigil_proto::txn::{Peer, Transport};

const B: BindingId = BindingId(1);

fn is_registered(e: &RegEvent) -> bool {
    matches!(e, RegEvent::Registered { .. })
}

fn auth_header(m: &Message) -> Option<String> {
    hv(m, HeaderName::Authorization)
}

fn expires_of(m: &Message) -> u32 {
    m.expires().unwrap().unwrap()
}

#[test]
fn md5_digest_then_refresh_reuses_the_nonce_without_a_new_challenge() {
    let mut h = Harness::new(config(), |e| {
        let mut r = Registrar::new(e, 1).with_auth(&[Algorithm::Md5]);
        r.grant = Some(600);
        r
    });
    h.add(1, binding(1, 3600));
    let (t, ev) = h.run_until_event(secs(5), is_registered);
    let RegEvent::Registered {
        id,
        expires,
        refresh_at,
    } = ev
    else {
        unreachable!()
    };
    assert_eq!((id, expires), (B, 600));
    // Refresh at a point in [50 %, 85 %] of 600 s after the 200 arrived.
    let after = (refresh_at - t).as_secs_f64();
    assert!((300.0..=510.0).contains(&after), "refresh after {after}");
    let regs = h.registers();
    assert_eq!(regs.len(), 2, "one 401 round trip");
    assert!(auth_header(&regs[0].1).is_none());
    let a1 = auth_header(&regs[1].1).unwrap();
    assert!(
        a1.contains("algorithm=MD5") && a1.contains("nc=00000001"),
        "{a1}"
    );
    assert_eq!(
        expires_of(&regs[1].1),
        3600,
        "asked for the configured expiry"
    );

    let (t2, _) = h.run_until_event(secs(600), is_registered);
    let regs = h.registers();
    assert_eq!(regs.len(), 3, "the refresh needed no 401");
    assert_eq!(
        regs[2].0, refresh_at,
        "sent exactly at the scheduled refresh"
    );
    let a2 = auth_header(&regs[2].1).unwrap();
    assert!(a2.contains("nc=00000002"), "{a2}");
    let nonce = |a: &str| {
        a.split("nonce=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_owned()
    };
    assert_eq!(nonce(&a1), nonce(&a2));
    assert!(t2 > refresh_at);
    assert_eq!(h.engine.status(B).unwrap().phase, BindingPhase::Registered);
}

#[test]
fn sha256_is_preferred_and_verified() {
    let mut h = Harness::new(config(), |e| {
        Registrar::new(e, 2).with_auth(&[Algorithm::Md5, Algorithm::Sha256])
    });
    h.add(1, binding(1, 3600));
    let (_, ev) = h.run_until_event(secs(5), is_registered);
    assert!(matches!(ev, RegEvent::Registered { expires: 3600, .. }));
    let a = auth_header(&h.registers()[1].1).unwrap();
    assert!(
        a.contains("algorithm=SHA-256") && a.contains("qop=auth"),
        "{a}"
    );
}

#[test]
fn proxy_407_then_registrar_401_are_both_answered() {
    let mut h = Harness::new(config(), |e| {
        let mut r = Registrar::new(e, 3).with_auth(&[Algorithm::Sha256]);
        r.proxy_auth = Some(digest_server(
            &mut r.rng,
            "proxy.example.org",
            &[Algorithm::Md5],
        ));
        r
    });
    let mut cfg = binding(1, 3600);
    cfg.outbound_proxy = Some("proxy.example.org:5060".into());
    h.add(1, cfg);
    h.run_until_event(secs(5), is_registered);
    let regs = h.registers();
    assert_eq!(regs.len(), 3, "407, then 401, then 200");
    let last = &regs[2].1;
    assert!(hv(last, HeaderName::ProxyAuthorization)
        .unwrap()
        .contains("realm=\"proxy.example.org\""));
    assert!(auth_header(last).unwrap().contains("realm=\"example.org\""));
    assert_eq!(
        hv(last, HeaderName::Route).unwrap(),
        "<sip:proxy.example.org:5060;lr>"
    );
}

#[test]
fn stale_nonce_on_refresh_costs_one_retry() {
    let mut h = Harness::new(config(), |e| {
        let mut r = Registrar::new(e, 4);
        let mut cfg = vigil_proto::auth::ServerConfig::new("example.org");
        cfg.nonce_lifetime = secs(60);
        let key = vigil_proto::auth::ServerSecret::random(&mut r.rng);
        r.auth = Some(vigil_proto::auth::DigestServer::new(cfg, key).unwrap());
        r.grant = Some(600);
        r
    });
    h.add(1, binding(1, 600));
    h.run_until_event(secs(5), is_registered);
    h.run_until_event(secs(600), is_registered);
    let regs = h.registers();
    assert_eq!(regs.len(), 4, "401, 200, then refresh: 401 stale, 200");
    let a3 = auth_header(&regs[3].1).unwrap();
    assert!(a3.contains("nc=00000001"), "a new nonce starts at 1: {a3}");
    assert!(!h
        .events
        .iter()
        .any(|e| matches!(e.1, RegEvent::Failed { .. })));
}

#[test]
fn expired_nonce_rechallenged_without_stale_still_gets_one_retry() {
    // Registrars that do not set stale=true just challenge again with a fresh nonce; after
    // an accepted request that is not a rejection of the password.
    let mut h = Harness::new(config(), |e| {
        let mut r = Registrar::new(e, 24);
        let mut cfg = vigil_proto::auth::ServerConfig::new("example.org");
        cfg.nonce_lifetime = secs(60);
        let key = vigil_proto::auth::ServerSecret::random(&mut r.rng);
        r.auth = Some(vigil_proto::auth::DigestServer::new(cfg, key).unwrap());
        r.stale_flag = false;
        r.grant = Some(600);
        r
    });
    h.add(1, binding(1, 600));
    h.run_until_event(secs(5), is_registered);
    h.run_until_event(secs(600), is_registered);
    h.run_until_event(secs(600), is_registered);
    assert_eq!(h.registers().len(), 6, "each refresh: 401 (no stale), 200");
    assert!(!h
        .events
        .iter()
        .any(|e| matches!(e.1, RegEvent::Failed { .. })));
}

#[test]
fn wrong_password_fails_after_one_retry_and_never_loops() {
    let mut h = Harness::new(config(), |e| {
        Registrar::new(e, 5).with_auth(&[Algorithm::Md5])
    });
    let mut cfg = binding(1, 3600);
    cfg.password = Password::new("wrong");
    h.add(1, cfg);
    let (_, ev) = h.run_until_event(secs(5), |e| matches!(e, RegEvent::Failed { .. }));
    assert_eq!(
        ev,
        RegEvent::Failed {
            id: B,
            status: 401,
            reason: FailReason::AuthRejected
        }
    );
    h.run_for(secs(86_400));
    assert_eq!(h.registers().len(), 2, "no third attempt, ever");
    assert_eq!(h.engine.status(B).unwrap().phase, BindingPhase::Failed);
    assert_eq!(
        h.engine.poll_timeout(),
        None,
        "no timer left for a failed binding"
    );
}

#[test]
fn same_nonce_twice_without_stale_is_a_rejection() {
    let mut h = Harness::new(config(), |e| Registrar::new(e, 6));
    let ch = "Digest realm=\"example.org\", nonce=\"fixed\", qop=\"auth\"";
    for _ in 0..5 {
        h.registrar
            .script
            .push_back(Scripted::status(401).with(HeaderName::WwwAuthenticate, ch));
    }
    h.add(1, binding(1, 3600));
    let (_, ev) = h.run_until_event(secs(5), |e| matches!(e, RegEvent::Failed { .. }));
    assert!(matches!(
        ev,
        RegEvent::Failed {
            status: 401,
            reason: FailReason::AuthRejected,
            ..
        }
    ));
    assert_eq!(h.registers().len(), 2);
}

#[test]
fn unanswerable_challenge_is_a_permanent_failure() {
    let mut h = Harness::new(config(), |e| Registrar::new(e, 7));
    h.registrar.script.push_back(Scripted::status(401).with(
        HeaderName::WwwAuthenticate,
        "Digest realm=\"x\", nonce=\"n\", algorithm=AKAv1-MD5",
    ));
    h.add(1, binding(1, 3600));
    let (_, ev) = h.run_until_event(secs(5), |e| matches!(e, RegEvent::Failed { .. }));
    assert!(matches!(
        ev,
        RegEvent::Failed {
            reason: FailReason::UnsupportedChallenge,
            ..
        }
    ));
}

#[test]
fn interval_too_brief_retries_at_once_with_min_expires() {
    let mut h = Harness::new(config(), |e| {
        let mut r = Registrar::new(e, 8).with_auth(&[Algorithm::Md5]);
        r.min_expires = Some(900);
        r
    });
    h.add(1, binding(1, 60));
    let (t, ev) = h.run_until_event(secs(5), is_registered);
    assert!(matches!(ev, RegEvent::Registered { expires: 900, .. }));
    let regs = h.registers();
    // 401, 423 (with credentials), then 900 at once.
    assert_eq!(regs.len(), 3);
    assert_eq!(expires_of(&regs[1].1), 60);
    assert_eq!(expires_of(&regs[2].1), 900);
    assert!(hv(&regs[2].1, HeaderName::Contact)
        .unwrap()
        .ends_with(";expires=900"));
    assert_eq!(
        regs[2].0 - regs[1].0,
        2 * h.latency,
        "no delay beyond the round trip"
    );
    assert_eq!(t - h.epoch, 6 * h.latency);
}

#[test]
fn forbidden_and_not_found_are_permanent() {
    for (status, reason) in [(403, FailReason::Forbidden), (404, FailReason::NotFound)] {
        let mut h = Harness::new(config(), |e| Registrar::new(e, 9));
        h.registrar.script.push_back(Scripted::status(status));
        h.add(1, binding(1, 3600));
        let (_, ev) = h.run_until_event(secs(5), |e| matches!(e, RegEvent::Failed { .. }));
        assert_eq!(
            ev,
            RegEvent::Failed {
                id: B,
                status,
                reason
            }
        );
        h.run_for(secs(7200));
        assert_eq!(h.registers().len(), 1);
        let st = h.engine.status(B).unwrap();
        assert_eq!(
            (st.phase, st.last_status, st.next_at),
            (BindingPhase::Failed, status, None)
        );
    }
}

#[test]
fn server_errors_back_off_exponentially_with_full_jitter() {
    let mut h = Harness::new(config(), |e| Registrar::new(e, 10));
    for s in [500, 503, 408, 480, 500, 500, 500, 500, 500, 500] {
        h.registrar.script.push_back(Scripted::status(s));
    }
    h.add(1, binding(1, 3600));
    let (_, ev) = h.run_until_event(secs(3600), is_registered);
    assert!(matches!(ev, RegEvent::Registered { .. }));
    let retries: Vec<_> = h
        .events
        .iter()
        .filter_map(|(t, e)| match e {
            RegEvent::Retrying {
                attempt,
                next_attempt_at,
                cause,
                ..
            } => Some((*t, *attempt, *next_attempt_at, *cause)),
            _ => None,
        })
        .collect();
    assert_eq!(retries.len(), 10);
    let regs = h.registers();
    let mut total = 0.0;
    for (i, (t, attempt, next, cause)) in retries.iter().enumerate() {
        assert_eq!(*attempt as usize, i + 1);
        let ceiling = (2.0 * 2f64.powi(i as i32)).min(300.0);
        let delay = (*next - *t).as_secs_f64();
        assert!(
            delay <= ceiling + 1e-9,
            "attempt {attempt}: {delay} > {ceiling}"
        );
        total += delay / ceiling;
        assert!(matches!(
            cause,
            RetryCause::Status {
                retry_after: None,
                ..
            }
        ));
        assert_eq!(regs[i + 1].0, *next, "the retry went out when announced");
    }
    // Full jitter: the delays are spread over [0, ceiling], not pinned to either end.
    let mean = total / 10.0;
    assert!(
        (0.2..0.8).contains(&mean),
        "mean fraction of the ceiling {mean}"
    );
    assert_eq!(
        h.engine.status(B).unwrap().attempt,
        0,
        "success resets the backoff"
    );
}

#[test]
fn retry_after_on_503_is_honoured() {
    let mut h = Harness::new(config(), |e| Registrar::new(e, 11));
    h.registrar
        .script
        .push_back(Scripted::status(503).with(HeaderName::RetryAfter, "120"));
    h.add(1, binding(1, 3600));
    let (t, ev) = h.run_until_event(secs(5), |e| matches!(e, RegEvent::Retrying { .. }));
    let RegEvent::Retrying {
        next_attempt_at,
        cause,
        ..
    } = ev
    else {
        unreachable!()
    };
    assert_eq!(
        cause,
        RetryCause::Status {
            status: 503,
            retry_after: Some(120)
        }
    );
    let d = (next_attempt_at - t).as_secs_f64();
    assert!((120.0..=122.0).contains(&d), "{d}");
    h.run_until_event(secs(200), is_registered);
    assert_eq!(h.registers()[1].0, next_attempt_at);
}

#[test]
fn transaction_timeout_is_retried_after_retransmissions() {
    let mut h = Harness::new(config(), |e| {
        let mut r = Registrar::new(e, 12);
        r.drop = 11; // the request and all its Timer E retransmissions
        r
    });
    h.add(1, binding(1, 3600));
    let (t, ev) = h.run_until_event(secs(40), |e| matches!(e, RegEvent::Retrying { .. }));
    assert!(matches!(
        ev,
        RegEvent::Retrying {
            cause: RetryCause::Timeout,
            attempt: 1,
            ..
        }
    ));
    assert_eq!(t - h.epoch, secs(32), "Timer F = 64·T1");
    let regs = h.registers();
    assert_eq!(
        regs.len(),
        11,
        "request plus 10 Timer E retransmissions over UDP"
    );
    let branch = |m: &Message| m.top_via().unwrap().branch().unwrap().to_owned();
    assert!(regs.iter().all(|r| branch(&r.1) == branch(&regs[0].1)));
    h.run_until_event(secs(10), is_registered);
}

#[test]
fn transport_error_is_retried_with_backoff() {
    let mut h = Harness::new(config(), |e| {
        let mut r = Registrar::new(e, 13);
        r.drop = 1;
        r
    });
    let mut cfg = binding(1, 3600);
    cfg.upstream = upstream(Transport::Tcp);
    h.add(1, cfg);
    h.run_for(Duration::from_millis(100));
    h.engine
        .handle_transport_error(h.now, upstream(Transport::Tcp));
    h.drain();
    let ev = &h.events.last().unwrap().1;
    assert!(
        matches!(
            ev,
            RegEvent::Retrying {
                cause: RetryCause::TransportError,
                ..
            }
        ),
        "{ev:?}"
    );
    let (_, ev) = h.run_until_event(secs(10), is_registered);
    assert!(matches!(ev, RegEvent::Registered { .. }));
    let regs = h.registers();
    assert!(hv(&regs[1].1, HeaderName::Contact)
        .unwrap()
        .contains(";transport=tcp>"));
    assert!(regs[1]
        .1
        .top_via()
        .unwrap()
        .transport()
        .eq_ignore_ascii_case("TCP"));
}

#[test]
fn call_id_tag_cseq_and_branch_follow_rfc3261_10_2_4() {
    let mut h = Harness::new(config(), |e| {
        let mut r = Registrar::new(e, 14).with_auth(&[Algorithm::Sha256]);
        r.grant = Some(120);
        r
    });
    h.add(1, binding(1, 120));
    h.run_for(secs(600));
    let regs = h.registers();
    assert!(regs.len() >= 6, "{}", regs.len());
    let first = &regs[0].1;
    let mut branches = std::collections::HashSet::new();
    for (i, (_, m)) in regs.iter().enumerate() {
        assert_eq!(m.call_id().unwrap(), first.call_id().unwrap());
        assert_eq!(m.from_hdr().unwrap().tag(), first.from_hdr().unwrap().tag());
        assert_eq!(m.to_hdr().unwrap().tag(), None);
        assert_eq!(m.cseq().unwrap().seq, i as u32 + 1);
        let b = m.top_via().unwrap().branch().unwrap().to_owned();
        assert!(b.starts_with("z9hG4bK"));
        assert!(branches.insert(b), "fresh branch each time");
        assert_eq!(m.request_uri_str(), Some("sip:example.org"));
        assert_eq!(hv(m, HeaderName::To).unwrap(), "<sip:u1@example.org>");
        assert_eq!(
            hv(m, HeaderName::Contact).unwrap(),
            format!("<sip:t1@{GATEWAY};transport=udp>;expires=120")
        );
    }
}

#[test]
fn contact_expires_param_wins_over_expires_header() {
    let mut h = Harness::new(config(), |e| {
        let mut r = Registrar::new(e, 15);
        r.grant = Some(240);
        r.expires_header = Some(3600);
        r
    });
    h.add(1, binding(1, 3600));
    let (_, ev) = h.run_until_event(secs(5), is_registered);
    assert!(
        matches!(ev, RegEvent::Registered { expires: 240, .. }),
        "{ev:?}"
    );
    assert_eq!(h.engine.status(B).unwrap().granted_expires, 240);
}

#[test]
fn remove_unregisters_with_expires_zero_then_forgets() {
    let mut h = Harness::new(config(), |e| {
        Registrar::new(e, 16).with_auth(&[Algorithm::Md5])
    });
    h.add(1, binding(1, 3600));
    h.run_until_event(secs(5), is_registered);
    assert!(h.registrar.bound.contains_key("t1"));
    h.engine.remove_binding(h.now, B).unwrap();
    h.drain();
    assert_eq!(
        h.engine.status(B).unwrap().phase,
        BindingPhase::Unregistering
    );
    let (_, ev) = h.run_until_event(secs(5), |e| matches!(e, RegEvent::Unregistered { .. }));
    assert_eq!(
        ev,
        RegEvent::Unregistered {
            id: B,
            upstream: true
        }
    );
    let regs = h.registers();
    let last = &regs.last().unwrap().1;
    assert_eq!(regs.len(), 3, "the removal reused the nonce: no 401");
    assert_eq!(expires_of(last), 0);
    assert!(hv(last, HeaderName::Contact)
        .unwrap()
        .ends_with(";expires=0"));
    assert!(auth_header(last).unwrap().contains("nc=00000002"));
    assert!(!h.registrar.bound.contains_key("t1"));
    assert!(h.engine.status(B).is_none() && h.engine.is_empty());
    h.run_for(secs(60));
    assert_eq!(h.engine.poll_timeout(), None, "nothing left behind");
    assert_eq!(
        h.engine.remove_binding(h.now, B),
        Err(BindingError::Unknown)
    );
}

#[test]
fn remove_while_in_flight_unregisters_after_the_answer() {
    let mut h = Harness::new(config(), |e| Registrar::new(e, 17));
    h.add(1, binding(1, 3600));
    h.engine.remove_binding(h.now, B).unwrap();
    let (_, ev) = h.run_until_event(secs(5), |e| matches!(e, RegEvent::Unregistered { .. }));
    assert_eq!(
        ev,
        RegEvent::Unregistered {
            id: B,
            upstream: true
        }
    );
    let regs = h.registers();
    assert_eq!(
        regs.iter().map(|r| expires_of(&r.1)).collect::<Vec<_>>(),
        [3600, 0]
    );
    assert!(!h.events.iter().any(|e| is_registered(&e.1)));
}

#[test]
fn removing_a_binding_never_sent_or_failed_is_immediate() {
    let mut cfg = config();
    cfg.max_registers_per_sec = 1;
    let mut h = Harness::new(cfg, |e| Registrar::new(e, 18));
    h.add(1, binding(1, 3600));
    h.add(2, binding(2, 3600)); // waits for the pace
    h.engine.remove_binding(h.now, BindingId(2)).unwrap();
    h.drain();
    assert_eq!(
        h.events.last().unwrap().1,
        RegEvent::Unregistered {
            id: BindingId(2),
            upstream: false
        }
    );
    h.run_for(secs(5));
    assert_eq!(h.registers().len(), 1);
}

#[test]
fn update_reregisters_only_on_change() {
    let mut h = Harness::new(config(), |e| {
        Registrar::new(e, 19).with_auth(&[Algorithm::Md5])
    });
    let mut cfg = binding(1, 3600);
    cfg.password = Password::new("wrong");
    h.add(1, cfg.clone());
    h.run_until_event(secs(5), |e| matches!(e, RegEvent::Failed { .. }));
    // The same (still wrong) configuration again is idempotent: no new attempt.
    assert_eq!(h.engine.update_binding(h.now, B, cfg), Ok(false));
    assert_eq!(h.engine.status(B).unwrap().phase, BindingPhase::Failed);
    let good = binding(1, 3600);
    assert_eq!(h.engine.update_binding(h.now, B, good.clone()), Ok(true));
    h.drain();
    h.run_until_event(secs(5), is_registered);
    assert_eq!(
        h.engine.update_binding(h.now, B, good),
        Ok(false),
        "same config: no-op"
    );
    let n = h.registers().len();
    h.run_for(secs(1));
    assert_eq!(h.registers().len(), n);
}

#[test]
fn invalid_fields_are_typed_errors() {
    let mut h = Harness::new(config(), |e| Registrar::new(e, 20));
    type Edit = Box<dyn Fn(&mut vigil_proto::reg::BindingConfig)>;
    let cases: Vec<(Edit, BindingField)> = vec![
        (
            Box::new(|c| c.user = "a\r\nVia: x".into()),
            BindingField::User,
        ),
        (Box::new(|c| c.user = String::new()), BindingField::User),
        (
            Box::new(|c| c.domain = "exa mple.org".into()),
            BindingField::Domain,
        ),
        (
            Box::new(|c| c.auth_user = Some("x\ny".into())),
            BindingField::AuthUser,
        ),
        (Box::new(|c| c.expires = 0), BindingField::Expires),
        (
            Box::new(|c| c.contact_token = "a@b".into()),
            BindingField::ContactToken,
        ),
        (
            Box::new(|c| c.outbound_proxy = Some("p>x".into())),
            BindingField::OutboundProxy,
        ),
        (
            Box::new(|c| c.password = Password::new("a\r\nb")),
            BindingField::Password,
        ),
    ];
    for (i, (edit, field)) in cases.into_iter().enumerate() {
        let mut c = binding(1, 3600);
        edit(&mut c);
        assert_eq!(
            h.engine.add_binding(h.now, BindingId(i as u64), c),
            Err(BindingError::InvalidField(field))
        );
    }
    h.add(1, binding(1, 3600));
    assert_eq!(
        h.engine.add_binding(h.now, B, binding(1, 3600)),
        Err(BindingError::Duplicate)
    );
    let dbg = format!("{:?} {:?}", h.engine, binding(1, 3600));
    assert!(!dbg.contains(PASSWORD) && !dbg.contains("u1"), "{dbg}");
}

#[test]
fn options_from_the_upstream_are_answered_200() {
    let mut h = Harness::new(config(), |e| Registrar::new(e, 21));
    let ping = RequestBuilder::new(Method::Options, &format!("sip:t1@{GATEWAY}"))
        .via("UDP", "192.0.2.10:5060", "z9hG4bKping1")
        .from("<sip:example.org>", "ka")
        .to(&format!("<sip:t1@{GATEWAY}>"), None)
        .call_id("ping-1")
        .cseq(7)
        .build();
    h.engine
        .handle_incoming(h.now, ping, upstream(Transport::Udp));
    h.drain();
    let (_, peer, resp) = h.sent.last().unwrap().clone();
    assert_eq!(peer, upstream(Transport::Udp));
    assert_eq!(resp.status(), Some(200));
    assert_eq!(resp.call_id().unwrap(), "ping-1");
    assert_eq!(resp.cseq().unwrap().seq, 7);
    assert!(resp.to_hdr().unwrap().tag().is_some());
}

#[test]
fn inconsistent_or_excessive_min_expires_never_loops() {
    // 423 asking for what we already asked: backoff, not an immediate retry.
    let mut h = Harness::new(config(), |e| Registrar::new(e, 22));
    h.registrar
        .script
        .push_back(Scripted::status(423).with(HeaderName::MinExpires, "3600"));
    h.add(1, binding(1, 3600));
    let (_, ev) = h.run_until_event(secs(5), |e| !matches!(e, RegEvent::Registered { .. }));
    assert!(
        matches!(
            ev,
            RegEvent::Retrying {
                cause: RetryCause::Status { status: 423, .. },
                ..
            }
        ),
        "{ev:?}"
    );
    h.run_until_event(secs(10), is_registered);
    // Min-Expires beyond what we may hold: permanent.
    let mut h = Harness::new(config(), |e| Registrar::new(e, 23));
    h.registrar
        .script
        .push_back(Scripted::status(423).with(HeaderName::MinExpires, "100000"));
    h.add(1, binding(1, 3600));
    let (_, ev) = h.run_until_event(secs(5), |_| true);
    assert_eq!(
        ev,
        RegEvent::Failed {
            id: B,
            status: 423,
            reason: FailReason::Rejected
        }
    );
}

#[test]
fn unsafe_engine_configuration_is_refused() {
    use vigil_proto::reg::{RegConfig, RegConfigError, Registrations};
    use vigil_proto::rng::CoreRng;
    let rng = || CoreRng::from_seed(1);
    let bad = RegConfig::new("gw\r\nX-Injected: 1");
    assert_eq!(
        Registrations::new(bad, rng()).err(),
        Some(RegConfigError::LocalAddr)
    );
    let mut bad = RegConfig::new("gw:5060");
    bad.user_agent = Some("Vigil\r\n".into());
    assert_eq!(
        Registrations::new(bad, rng()).err(),
        Some(RegConfigError::UserAgent)
    );
    let mut bad = RegConfig::new("gw:5060");
    bad.refresh_window = (0.9, 0.5);
    assert_eq!(
        Registrations::new(bad, rng()).err(),
        Some(RegConfigError::RefreshWindow)
    );
    assert!(Registrations::new(RegConfig::new("[2001:db8::1]:5060"), rng()).is_ok());
}

#[test]
fn a_changed_contact_token_removes_the_old_contact_upstream() {
    let mut h = Harness::new(config(), |e| {
        Registrar::new(e, 25).with_auth(&[Algorithm::Md5])
    });
    h.add(1, binding(1, 3600));
    h.run_until_event(secs(5), is_registered);
    let mut cfg = binding(1, 3600);
    cfg.contact_token = "t9".into();
    assert_eq!(h.engine.update_binding(h.now, B, cfg), Ok(true));
    h.drain();
    h.run_until_event(secs(5), is_registered);
    let regs = h.registers();
    let contacts: Vec<&str> = regs[2].1.header_lines(HeaderName::Contact).collect();
    assert_eq!(
        contacts,
        [
            format!("<sip:t9@{GATEWAY};transport=udp>;expires=3600"),
            format!("<sip:t1@{GATEWAY};transport=udp>;expires=0"),
        ]
    );
    assert!(h.registrar.bound.contains_key("t9") && !h.registrar.bound.contains_key("t1"));
    // Once accepted, the old token is not sent again.
    h.engine.remove_binding(h.now, B).unwrap();
    h.drain();
    h.run_until_event(secs(5), |e| matches!(e, RegEvent::Unregistered { .. }));
    let last = h.registers().pop().unwrap().1;
    assert_eq!(last.header_lines(HeaderName::Contact).count(), 1);
    assert!(h.registrar.bound.is_empty());
}

#[test]
fn move_upstream_fails_over_at_once_and_keeps_the_attempt_count() {
    let mut h = Harness::new(config(), |e| {
        let mut r = Registrar::new(e, 17);
        r.drop = 1;
        r
    });
    let first = upstream(Transport::Tcp);
    let second = Peer::tcp("192.0.2.99:5060".parse().unwrap());
    let mut cfg = binding(1, 3600);
    cfg.upstream = first;
    h.add(1, cfg);
    h.run_for(Duration::from_millis(100));
    h.engine.handle_transport_error(h.now, first);
    h.drain();
    let Some((
        _,
        RegEvent::Retrying {
            attempt: 1,
            next_attempt_at,
            ..
        },
    )) = h.events.last().cloned()
    else {
        panic!("{:?}", h.events.last())
    };
    assert_eq!(h.engine.upstream(B), Some(first));
    let sent_before = h.sent.len();
    // Same peer: nothing to do.
    assert!(!h.engine.move_upstream(h.now, B, first, true).unwrap());
    assert!(h.engine.move_upstream(h.now, B, second, true).unwrap());
    h.drain();
    assert_eq!(h.engine.upstream(B), Some(second));
    let sent = &h.sent[sent_before..];
    assert_eq!(sent.len(), 1, "the failover REGISTER goes at once");
    assert_eq!(sent[0].1, second);
    assert!(sent[0].0 < next_attempt_at, "before the backoff timer");
    // The attempt count survives: a second failure is attempt 2.
    h.engine.handle_transport_error(h.now, second);
    h.drain();
    assert!(
        matches!(
            h.events.last(),
            Some((_, RegEvent::Retrying { attempt: 2, .. }))
        ),
        "{:?}",
        h.events.last()
    );
    // Without `at_once` the binding waits for its timer, then goes to the new peer.
    let sent_before = h.sent.len();
    assert!(h.engine.move_upstream(h.now, B, first, false).unwrap());
    h.drain();
    assert_eq!(h.sent.len(), sent_before, "nothing before the backoff");
    assert!(h.engine.status(B).unwrap().next_at.is_some());
    h.run_for(secs(5));
    assert_eq!(h.sent[sent_before].1, first);
    assert_eq!(
        h.engine.move_upstream(h.now, BindingId(99), first, true),
        Err(BindingError::Unknown)
    );
}
