//! A full non-INVITE server transaction through the sans-IO core: parse the request bytes,
//! match/create the server transaction, build the 200 with `ResponseBuilder` (copying Via,
//! From, To + tag, Call-ID, CSeq), print it, and drain the bytes to send. Goal: ≤ 2 µs.
//!
//! Two cases: TCP (Timer J = 0, the transaction ends at once) and UDP, where each transaction
//! lingers for Timer J = 32 s of virtual time; virtual time advances 1 ms per request, so the
//! UDP case runs with ~32,000 live transactions in the table and the timer structure busy.
//!
//! Each request arrives as the UDP loop hands it over: a fresh copy (allocation + 700-byte
//! copy, counted in the time) of the fixture with a new branch ([`Arrivals`]).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use vigil_benches::vigil::{Arrivals, TxnServer};
use vigil_benches::REGISTER;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("non_invite_server_transaction");
    g.throughput(Throughput::Elements(1));
    for (name, transport, udp) in [("tcp", "TCP", false), ("udp_32k_live", "UDP", true)] {
        let mut arrivals = Arrivals::new(REGISTER, transport);
        let mut server = TxnServer::new(udp);
        // The response must really be produced: check one before measuring.
        assert!(
            server.serve(&arrivals.next_request()) > 200,
            "no response was sent"
        );
        g.bench_function(name, |b| {
            b.iter(|| black_box(server.serve(&black_box(arrivals.next_request()))))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
