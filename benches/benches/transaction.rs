//! A full non-INVITE server transaction through the sans-IO core: parse the request bytes,
//! match/create the server transaction, build the 200 with `ResponseBuilder` (copying Via,
//! From, To + tag, Call-ID, CSeq), print it, and drain the bytes to send. Goal: ≤ 2 µs.
//!
//! Two cases: TCP (Timer J = 0, the transaction ends at once) and UDP, where each transaction
//! lingers for Timer J = 32 s of virtual time; virtual time advances 1 ms per request, so the
//! UDP case runs with ~32,000 live transactions in the table and the timer structure busy.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use vigil_benches::REGISTER;
use vigil_proto::msg::{Message, ResponseBuilder};
use vigil_proto::txn::{Peer, Transactions, TxnConfig, TxnEvent};

/// Distinct requests (distinct branches) so that each is a new transaction, not a
/// retransmission of an earlier one.
const VARIANTS: usize = 1 << 16;

fn variants(template: &[u8], transport: &str) -> Vec<Bytes> {
    let text = std::str::from_utf8(template).expect("fixture is UTF-8");
    let text = text.replace("SIP/2.0/TCP", &format!("SIP/2.0/{transport}"));
    let branch = "z9hG4bKPjq3Xs7w0pNQ2fV1a8";
    assert!(text.contains(branch), "fixture branch changed");
    (0..VARIANTS)
        .map(|i| Bytes::from(text.replace(branch, &format!("z9hG4bK{i:016x}"))))
        .collect()
}

struct Server {
    txns: Transactions,
    now: Instant,
    step: Duration,
    peer: Peer,
}

impl Server {
    /// One request in, one response out; returns the response's length.
    fn serve(&mut self, bytes: &Bytes) -> usize {
        self.now += self.step;
        if self.txns.poll_timeout().is_some_and(|t| t <= self.now) {
            self.txns.handle_timeout(self.now);
        }
        let msg = Message::parse(bytes.clone()).expect("variant parses");
        self.txns.handle_incoming(self.now, msg, self.peer);
        let mut sent = 0;
        while let Some(event) = self.txns.poll_event() {
            if let TxnEvent::Request { id, request, .. } = event {
                let response =
                    ResponseBuilder::for_request(&request, 200, Some("vgl7q2x9")).build();
                self.txns
                    .send_response(self.now, id, response)
                    .expect("transaction accepts its response");
            }
        }
        while let Some(t) = self.txns.poll_transmit() {
            sent += t.bytes.len();
        }
        sent
    }
}

fn bench(c: &mut Criterion) {
    let addr: SocketAddr = "192.0.2.10:50632".parse().expect("literal address");
    let mut g = c.benchmark_group("non_invite_server_transaction");
    g.throughput(Throughput::Elements(1));
    for (name, transport, peer) in [
        ("tcp", "TCP", Peer::tcp(addr)),
        ("udp_32k_live", "UDP", Peer::udp(addr)),
    ] {
        let requests = variants(REGISTER, transport);
        let mut server = Server {
            txns: Transactions::new(TxnConfig::default()),
            now: Instant::now(),
            step: Duration::from_millis(1),
            peer,
        };
        // The response must really be produced: check one before measuring.
        assert!(server.serve(&requests[0]) > 200, "no response was sent");
        let mut i = 1usize;
        g.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) % VARIANTS;
                black_box(server.serve(black_box(&requests[i])))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
