//! Tests of the dispatch queue on virtual time.

use super::*;
use crate::push::payload::{CallEndReason, CallNotice, MessageNotice};
use crate::push::DeviceToken;

const S: Duration = Duration::from_secs(1);

fn disp(per_cred: usize, total: usize) -> Dispatcher {
    Dispatcher::new(
        DispatchConfig {
            per_credential_capacity: per_cred,
            total_capacity: total,
            retry: RetryPolicy::default(),
        },
        CoreRng::from_seed(9),
    )
}

fn apns(n: u32) -> Target {
    Target::Apns {
        token: DeviceToken::apns(&format!("{n:064x}")).unwrap(),
        bundle_id: "com.ex".into(),
    }
}

fn call(r: &str) -> Notice {
    Notice::IncomingCall(CallNotice {
        call_ref: r.into(),
        caller: "100".into(),
        caller_name: None,
        video: false,
    })
}

fn msg(r: &str) -> Notice {
    Notice::Message(MessageNotice {
        message_ref: r.into(),
        from: "a".into(),
        preview: None,
    })
}

fn req(cred: u32, target: Target, notice: Notice, deadline: Instant) -> PushRequest {
    PushRequest {
        credential: CredentialId(cred),
        target,
        notice,
        deadline,
    }
}

fn events(d: &mut Dispatcher) -> Vec<PushEvent> {
    std::iter::from_fn(|| d.poll_event()).collect()
}

#[test]
fn priorities_then_fifo() {
    let t0 = crate::netem::test_epoch();
    let mut d = disp(100, 100);
    let r = d
        .handle_submit(t0, req(1, apns(1), Notice::RenewReminder, t0 + 60 * S))
        .unwrap();
    let m = d
        .handle_submit(t0, req(1, apns(2), msg("m"), t0 + 60 * S))
        .unwrap();
    let c1 = d
        .handle_submit(t0, req(1, apns(3), call("a"), t0 + 30 * S))
        .unwrap();
    let c2 = d
        .handle_submit(t0, req(1, apns(4), call("b"), t0 + 30 * S))
        .unwrap();
    let order: Vec<_> = std::iter::from_fn(|| d.poll_transmit(t0))
        .map(|t| t.id)
        .collect();
    assert_eq!(order, vec![c1.id, c2.id, m.id, r.id]);
}

#[test]
fn round_robin_between_credentials() {
    let t0 = crate::netem::test_epoch();
    let mut d = disp(100, 100);
    for i in 0..4 {
        d.handle_submit(t0, req(1, apns(i), msg("x"), t0 + 60 * S))
            .unwrap();
    }
    d.handle_submit(t0, req(2, apns(10), msg("x"), t0 + 60 * S))
        .unwrap();
    d.handle_submit(t0, req(2, apns(11), msg("x"), t0 + 60 * S))
        .unwrap();
    let creds: Vec<_> = std::iter::from_fn(|| d.poll_transmit(t0))
        .map(|t| t.credential.0)
        .collect();
    assert_eq!(creds, vec![1, 2, 1, 2, 1, 1]);
}

#[test]
fn queue_full_and_eviction_by_urgency() {
    let t0 = crate::netem::test_epoch();
    let mut d = disp(2, 100);
    let r = d
        .handle_submit(t0, req(1, apns(1), Notice::RenewReminder, t0 + 60 * S))
        .unwrap();
    d.handle_submit(t0, req(1, apns(2), msg("m"), t0 + 60 * S))
        .unwrap();
    // Same class: refused, memory does not grow.
    assert_eq!(
        d.handle_submit(t0, req(1, apns(3), Notice::RenewReminder, t0 + 60 * S)),
        Err(SubmitError::QueueFull)
    );
    // Other credential unaffected by this one's limit.
    assert!(d
        .handle_submit(t0, req(2, apns(3), msg("m"), t0 + 60 * S))
        .is_ok());
    // A call evicts the reminder.
    let c = d
        .handle_submit(t0, req(1, apns(4), call("c"), t0 + 30 * S))
        .unwrap();
    assert_eq!(
        events(&mut d),
        vec![PushEvent::Failed {
            id: r.id,
            reason: FailReason::Evicted
        }]
    );
    assert_eq!(d.poll_transmit_for(t0, CredentialId(1)).unwrap().id, c.id);
    assert_eq!(d.len(), 3);
    // Global cap.
    let mut d = disp(10, 1);
    d.handle_submit(t0, req(1, apns(1), msg("m"), t0 + 60 * S))
        .unwrap();
    assert_eq!(
        d.handle_submit(t0, req(2, apns(1), msg("m"), t0 + 60 * S)),
        Err(SubmitError::QueueFull)
    );
}

#[test]
fn dedupe_identical_pushes_while_live() {
    let t0 = crate::netem::test_epoch();
    let mut d = disp(10, 10);
    let a = d
        .handle_submit(t0, req(1, apns(1), call("c"), t0 + 30 * S))
        .unwrap();
    let b = d
        .handle_submit(t0, req(1, apns(1), call("c"), t0 + 30 * S))
        .unwrap();
    assert_eq!(
        b,
        Submitted {
            id: a.id,
            duplicate: true
        }
    );
    // A different notice to the same device is a different push.
    let c = d
        .handle_submit(t0, req(1, apns(1), call("d"), t0 + 30 * S))
        .unwrap();
    assert!(!c.duplicate);
    assert_eq!(d.len(), 2);
    let t = d.poll_transmit(t0).unwrap();
    d.handle_outcome(t0, t.id, Outcome::Accepted);
    // Once done, the same notice can be sent again.
    let e = d
        .handle_submit(t0, req(1, apns(1), call("c"), t0 + 30 * S))
        .unwrap();
    assert!(!e.duplicate);
    assert_ne!(e.id, a.id);
}

#[test]
fn retry_with_backoff_until_accepted() {
    let t0 = crate::netem::test_epoch();
    let mut d = disp(10, 10);
    let p = d
        .handle_submit(t0, req(1, apns(1), call("c"), t0 + 30 * S))
        .unwrap();
    let mut now = t0;
    let mut delays = vec![];
    for attempt in 1..=4 {
        let t = d.poll_transmit(now).unwrap();
        assert_eq!(t.attempt, attempt);
        d.handle_outcome(
            now,
            p.id,
            Verdict::Retry {
                retry_after: None,
                min_delay: Duration::ZERO,
            }
            .into(),
        );
        assert!(d.poll_transmit(now).is_none(), "waits for backoff");
        let at = d.poll_timeout().unwrap();
        delays.push(at - now);
        now = at;
        d.handle_timeout(now);
    }
    // Nominal 100, 200, 400, 800 ms with equal jitter.
    for (i, dl) in delays.iter().enumerate() {
        let nominal = Duration::from_millis(100 << i);
        assert!(*dl >= nominal / 2 && *dl <= nominal, "{i}: {dl:?}");
    }
    let t = d.poll_transmit(now).unwrap();
    d.handle_outcome(now, t.id, Outcome::Accepted);
    assert_eq!(events(&mut d), vec![PushEvent::Sent { id: p.id }]);
    assert!(d.is_empty());
    assert_eq!(d.poll_timeout(), None, "deadline timer cancelled");
}

#[test]
fn retry_after_is_honoured_and_deadline_bounds_retries() {
    let t0 = crate::netem::test_epoch();
    let mut d = disp(10, 10);
    let p = d
        .handle_submit(t0, req(1, apns(1), msg("m"), t0 + 30 * S))
        .unwrap();
    d.poll_transmit(t0).unwrap();
    d.handle_outcome(
        t0,
        p.id,
        Outcome::Retry {
            retry_after: Some(10 * S),
            min_delay: Duration::ZERO,
        },
    );
    assert_eq!(d.poll_timeout(), Some(t0 + 10 * S));
    d.handle_timeout(t0 + 10 * S);
    d.poll_transmit(t0 + 10 * S).unwrap();
    // FCM quota: at least 60 s, past the 30 s deadline → fails now, not later.
    d.handle_outcome(
        t0 + 10 * S,
        p.id,
        Outcome::Retry {
            retry_after: None,
            min_delay: 60 * S,
        },
    );
    assert_eq!(
        events(&mut d),
        vec![PushEvent::Failed {
            id: p.id,
            reason: FailReason::DeadlineExceeded
        }]
    );
    assert!(d.is_empty());
}

#[test]
fn deadline_expires_queued_push() {
    let t0 = crate::netem::test_epoch();
    let mut d = disp(10, 10);
    let p = d
        .handle_submit(t0, req(1, apns(1), call("c"), t0 + 5 * S))
        .unwrap();
    let q = d
        .handle_submit(t0, req(1, apns(2), call("d"), t0 + 50 * S))
        .unwrap();
    assert_eq!(d.poll_timeout(), Some(t0 + 5 * S));
    d.handle_timeout(t0 + 5 * S);
    assert_eq!(
        events(&mut d),
        vec![PushEvent::Failed {
            id: p.id,
            reason: FailReason::DeadlineExceeded
        }]
    );
    assert_eq!(d.poll_transmit(t0 + 5 * S).unwrap().id, q.id);
    assert_eq!(
        d.handle_submit(t0 + 60 * S, req(1, apns(3), call("e"), t0 + 60 * S)),
        Err(SubmitError::DeadlinePassed)
    );
}

#[test]
fn dead_token_and_permanent_failures() {
    let t0 = crate::netem::test_epoch();
    let mut d = disp(10, 10);
    let p = d
        .handle_submit(t0, req(3, apns(7), call("c"), t0 + 30 * S))
        .unwrap();
    d.poll_transmit(t0).unwrap();
    d.handle_outcome(t0, p.id, Outcome::DeadToken);
    assert_eq!(
        events(&mut d),
        vec![
            PushEvent::DeadToken {
                id: p.id,
                credential: CredentialId(3),
                target: apns(7)
            },
            PushEvent::Failed {
                id: p.id,
                reason: FailReason::DeadToken
            },
        ]
    );
    let q = d
        .handle_submit(t0, req(3, apns(8), call("c"), t0 + 30 * S))
        .unwrap();
    d.poll_transmit(t0).unwrap();
    let reason = FailReason::Apns {
        status: 400,
        reason: crate::push::ApnsReason::BadDeviceToken,
    };
    d.handle_outcome(t0, q.id, Outcome::Fail(reason.clone()));
    assert_eq!(events(&mut d), vec![PushEvent::Failed { id: q.id, reason }]);
    // Stale outcomes are ignored.
    d.handle_outcome(t0, q.id, Outcome::Accepted);
    assert!(events(&mut d).is_empty());
}

#[test]
fn retries_exhausted() {
    let t0 = crate::netem::test_epoch();
    let mut d = disp(10, 10);
    let p = d
        .handle_submit(t0, req(1, apns(1), msg("m"), t0 + 3600 * S))
        .unwrap();
    let mut now = t0;
    while d.poll_transmit(now).is_some() {
        d.handle_outcome(now, p.id, Outcome::TRANSPORT);
        if let Some(at) = d.poll_timeout().filter(|_| !d.is_empty()) {
            now = at;
            d.handle_timeout(now);
        }
    }
    let ev = events(&mut d);
    assert_eq!(
        ev,
        vec![PushEvent::Failed {
            id: p.id,
            reason: FailReason::RetriesExhausted(12)
        }]
    );
}

#[test]
fn payload_errors_refused_at_submit() {
    let t0 = crate::netem::test_epoch();
    let mut d = disp(10, 10);
    let big = Notice::CallEnded {
        call_ref: "c".into(),
        caller: "x".repeat(5000),
        reason: CallEndReason::Missed,
    };
    assert!(matches!(
        d.handle_submit(t0, req(1, apns(1), big, t0 + S)),
        Err(SubmitError::Payload(PayloadError::TooLarge { .. }))
    ));
    assert!(d.is_empty());
}
