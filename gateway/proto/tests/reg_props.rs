//! Random sequences of binding operations, registrar misbehaviour, loss, transport errors and
//! time jumps: the engine never panics, its bindings match a model, every binding has the
//! timer its phase calls for, and removing everything leaves nothing behind.
#![allow(clippy::unwrap_used)]

mod reg_support;

use std::collections::HashSet;
use std::time::Duration;

use proptest::prelude::*;
use reg_support::*;
use vigil_proto::auth::{Algorithm, Password};
use vigil_proto::msg::HeaderName;
use vigil_proto::reg::{BindingError, BindingId, BindingPhase, RegEvent};
use vigil_proto::txn::Transport;

#[derive(Debug, Clone)]
enum Op {
    Add(u64),
    Remove(u64),
    Update(u64, bool, u32),
    Script(u16),
    Drop(u8),
    TransportError,
    Advance(u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u64..6).prop_map(Op::Add),
        2 => (0u64..6).prop_map(Op::Remove),
        1 => (0u64..6, any::<bool>(), prop_oneof![Just(60u32), Just(600), Just(3600)])
            .prop_map(|(i, p, e)| Op::Update(i, p, e)),
        2 => prop_oneof![
            Just(401u16), Just(403), Just(404), Just(408), Just(423), Just(480), Just(500),
            Just(503), Just(200), Just(302)
        ].prop_map(Op::Script),
        1 => (1u8..12).prop_map(Op::Drop),
        1 => Just(Op::TransportError),
        4 => (1u32..900_000).prop_map(Op::Advance),
    ]
}

fn cfg(i: u64, good_password: bool, expires: u32) -> vigil_proto::reg::BindingConfig {
    let mut c = binding(i, expires);
    if !good_password {
        c.password = Password::new("wrong");
    }
    if i % 2 == 1 {
        c.upstream = upstream(Transport::Tcp);
    }
    c
}

fn check(h: &Harness, live: &HashSet<u64>) -> Result<(), TestCaseError> {
    prop_assert_eq!(h.engine.len(), live.len());
    for &i in live {
        let st = h.engine.status(BindingId(i));
        prop_assert!(st.is_some(), "binding {} vanished", i);
        let st = st.unwrap();
        match st.phase {
            BindingPhase::Failed => prop_assert_eq!(st.next_at, None),
            BindingPhase::Registered | BindingPhase::Retrying => {
                // Scheduled, or already queued/in flight at this instant.
                if let Some(t) = st.next_at {
                    prop_assert!(t >= h.now);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_keep_the_engine_consistent(ops in proptest::collection::vec(op(), 1..60)) {
        let mut h = Harness::new(config(), |e| {
            let mut r = Registrar::new(e, 9).with_auth(&[Algorithm::Md5]);
            r.grant = Some(300);
            r
        });
        let mut live: HashSet<u64> = HashSet::new();
        let mut removing: HashSet<u64> = HashSet::new();
        let mut seen = 0;
        for op in ops {
            match op {
                Op::Add(i) => {
                    let r = h.engine.add_binding(h.now, BindingId(i), cfg(i, true, 600));
                    prop_assert_eq!(r.is_ok(), !live.contains(&i));
                    live.insert(i);
                }
                Op::Remove(i) => {
                    let r = h.engine.remove_binding(h.now, BindingId(i));
                    prop_assert_eq!(r.is_ok(), live.contains(&i));
                    if live.contains(&i) {
                        removing.insert(i);
                    }
                }
                Op::Update(i, good, expires) => {
                    let r = h.engine.update_binding(h.now, BindingId(i), cfg(i, good, expires));
                    if !live.contains(&i) || removing.contains(&i) {
                        prop_assert_eq!(r, Err(BindingError::Unknown));
                    } else {
                        prop_assert!(r.is_ok());
                    }
                }
                Op::Script(status) => {
                    let mut s = Scripted::status(status);
                    match status {
                        401 => s = s.with(HeaderName::WwwAuthenticate, "Digest realm=\"example.org\", nonce=\"fixed\""),
                        423 => s = s.with(HeaderName::MinExpires, "1200"),
                        503 => s = s.with(HeaderName::RetryAfter, "30"),
                        _ => {}
                    }
                    h.registrar.script.push_back(s);
                }
                Op::Drop(n) => h.registrar.drop += usize::from(n),
                Op::TransportError => {
                    h.engine.handle_transport_error(h.now, upstream(Transport::Tcp));
                }
                Op::Advance(ms) => h.run_for(Duration::from_millis(ms.into())),
            }
            h.drain();
            for (_, e) in &h.events[seen..] {
                if let RegEvent::Unregistered { id, .. } = e {
                    prop_assert!(removing.remove(&id.0), "unasked removal of {:?}", id);
                    live.remove(&id.0);
                }
            }
            seen = h.events.len();
            check(&h, &live)?;
        }
        // Remove everything; with a well-behaved registrar it all goes away.
        h.registrar.script.clear();
        h.registrar.drop = 0;
        for &i in &live {
            let _ = h.engine.remove_binding(h.now, BindingId(i));
        }
        h.drain();
        h.run_for(Duration::from_secs(86_400));
        prop_assert!(h.engine.is_empty(), "{:?}", h.engine);
        prop_assert_eq!(h.engine.poll_timeout(), None);
        let gone: HashSet<u64> = h.events[seen..]
            .iter()
            .filter_map(|e| match e.1 {
                RegEvent::Unregistered { id, .. } => Some(id.0),
                _ => None,
            })
            .collect();
        prop_assert_eq!(gone, live);
    }
}
