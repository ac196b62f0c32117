//! The registration engine at scale, on virtual time: refresh jitter spread over 10,000
//! bindings, the global pace under a restart of 100,000 stored bindings, and memory per
//! binding.
#![allow(clippy::unwrap_used)]

mod reg_support;

use std::collections::HashMap;
use std::time::Duration;

use reg_support::*;
use vigil_proto::auth::Algorithm;
use vigil_proto::reg::{BindingId, BindingPhase, RegEvent};

#[test]
fn refreshes_of_10k_simultaneous_bindings_spread_over_the_window() {
    const N: u64 = 10_000;
    let mut h = Harness::new(config(), |e| {
        let mut r = Registrar::new(e, 1);
        r.grant = Some(3600);
        r
    });
    h.record = false;
    for i in 0..N {
        h.add(i, binding(i, 3600));
    }
    h.run_for(secs(1));
    let mut refresh = Vec::new();
    for (t, e) in &h.events {
        if let RegEvent::Registered { refresh_at, .. } = e {
            let after = (*refresh_at - *t).as_secs_f64();
            assert!((1800.0..=3060.0).contains(&after), "{after}");
            refresh.push(h.at(*refresh_at));
        }
    }
    assert_eq!(refresh.len(), N as usize);
    // 1-second buckets over the 1260 s window: mean ≈ 7.9 per bucket.
    let mut buckets: HashMap<u64, u32> = HashMap::new();
    for r in &refresh {
        *buckets.entry(*r as u64).or_default() += 1;
    }
    let mean = N as f64 / 1260.0;
    let max = *buckets.values().max().unwrap();
    println!(
        "refresh buckets: {} used, mean {mean:.1}, max {max}",
        buckets.len()
    );
    assert!(
        f64::from(max) <= 3.0 * mean,
        "max bucket {max} vs mean {mean:.1}"
    );
    assert!(
        buckets.len() > 1200,
        "the window is covered: {}",
        buckets.len()
    );
    // Deciles of the window each hold about a tenth.
    for d in 0..10 {
        let lo = 1800.0 + 126.0 * d as f64;
        let n = refresh
            .iter()
            .filter(|r| (lo..lo + 126.0).contains(&(*r - 0.04)))
            .count();
        assert!((800..1200).contains(&n), "decile {d}: {n}");
    }
    // And the refreshes really go out spread: run through the window and bucket the sends.
    h.events.clear();
    h.run_for(secs(3100));
    let refreshed = h
        .events
        .iter()
        .filter(|e| matches!(e.1, RegEvent::Registered { .. }))
        .count();
    assert_eq!(refreshed, N as usize);
    assert_eq!(h.registrar.received.len(), 2 * N as usize);
    let mut sent: HashMap<u64, u32> = HashMap::new();
    for (t, _) in &h.registrar.received[N as usize..] {
        *sent.entry(h.at(*t) as u64).or_default() += 1;
    }
    assert!(*sent.values().max().unwrap() <= 3 * mean as u32 + 1);
}

#[test]
fn restart_of_100k_bindings_is_paced_and_all_register() {
    let mem = restart(100_000, 2_000);
    assert!(mem.per_binding() < 400.0, "{mem:?}");
}

/// The 1,000,000-binding version, for the memory figure at the gateway's target scale
/// (about two minutes of CPU): `cargo test -p vigil-proto --test reg_scale -- --ignored`.
#[test]
#[ignore]
fn restart_of_1m_bindings_memory() {
    let mem = restart(1_000_000, 20_000);
    assert!(mem.per_binding() < 400.0, "{mem:?}");
}

/// Re-adds `n` stored bindings at once (a restart) against a registrar requiring SHA-256
/// digest, with the pace at `pace` REGISTERs per second; checks the pace, that all register,
/// and the total time; returns the memory report.
fn restart(n: u64, pace: u32) -> vigil_proto::reg::MemoryReport {
    let mut cfg = config();
    cfg.max_registers_per_sec = pace;
    cfg.txn.max_transactions = 1_000_000;
    let mut h = Harness::new(cfg, |e| {
        Registrar::new(e, 2).with_auth(&[Algorithm::Sha256])
    });
    h.record = false;
    h.latency = Duration::from_millis(5);
    // After a restart the shell re-adds every stored binding at once.
    h.engine.reserve(n as usize);
    for i in 0..n {
        h.add(i, binding(i, 3600));
    }
    let deadline = h.now + secs(600);
    while h.registrar.registered_ok < n as usize {
        assert!(
            h.step(deadline),
            "stalled at {} registered",
            h.registrar.registered_ok
        );
    }
    // The last 200s are still on their way to the engine.
    h.run_for(secs(1));
    let registered = h
        .events
        .iter()
        .filter(|e| matches!(e.1, RegEvent::Registered { .. }))
        .count();
    assert_eq!(registered, n as usize);
    assert!((0..n)
        .step_by(997)
        .all(|i| { h.engine.status(BindingId(i)).unwrap().phase == BindingPhase::Registered }));
    // Every binding: one unauthenticated REGISTER (401), one answer (200).
    assert_eq!(h.registrar.received.len(), 2 * n as usize);
    let mut per_sec: HashMap<u64, u32> = HashMap::new();
    for (t, _) in &h.registrar.received {
        let sent = *t - h.latency;
        *per_sec.entry((sent - h.epoch).as_secs()).or_default() += 1;
    }
    let max = *per_sec.values().max().unwrap();
    let last = (h.registrar.received.last().unwrap().0 - h.latency - h.epoch).as_secs_f64();
    let ideal = 2.0 * n as f64 / f64::from(pace);
    println!("{n} bindings, pace {pace}/s: busiest second {max}, last REGISTER at {last:.3} s (ideal {ideal} s)");
    assert!(max <= pace, "a second carried {max} REGISTERs");
    assert!((ideal - 1.0..=ideal + 0.5).contains(&last), "{last}");
    assert_eq!(h.engine.transactions().stats().retransmissions, 0);
    h.engine.shrink_to_fit();
    let mem = h.engine.memory_report();
    println!(
        "memory after restart: {mem:?}, {:.0} bytes per binding",
        mem.per_binding()
    );
    mem
}

#[test]
fn memory_per_binding_is_small() {
    const N: u64 = 20_000;
    let mut h = Harness::new(config(), |e| {
        Registrar::new(e, 3).with_auth(&[Algorithm::Sha256])
    });
    h.record = false;
    h.engine.reserve(N as usize);
    for i in 0..N {
        h.add(i, binding(i, 3600));
    }
    h.run_for(secs(5));
    assert_eq!(h.registrar.registered_ok, N as usize);
    let m = h.engine.memory_report();
    let strings = "u12345".len() * 2 + "example.org".len() + PASSWORD.len() + "t12345".len() + 30;
    println!(
        "size_of binding state {} B; per binding {:.0} B (table {} B, heap {} B, timers {} B for {} bindings); strings ~{strings} B",
        m.binding_size,
        m.per_binding(),
        m.table_bytes,
        m.heap_bytes,
        m.timer_bytes,
        m.bindings
    );
    assert_eq!(m.bindings, N as usize);
    assert!(m.binding_size <= 128, "{}", m.binding_size);
    // Heap: one strings block plus one digest block per binding.
    let heap = m.heap_bytes as f64 / N as f64;
    assert!((100.0..300.0).contains(&heap), "{heap}");
    assert!(m.per_binding() < 512.0, "{m:?}");
}
