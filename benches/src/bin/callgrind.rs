//! A driver for instruction counts: runs one benchmark body `N` times so that
//! `valgrind --tool=callgrind` sees the same work as the criterion benches.
//!
//! ```text
//! cargo build --release -p vigil-benches --bin callgrind
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out \
//!     target/release/callgrind register 10000
//! callgrind_annotate /tmp/cg.out
//! ```
//!
//! Cases: `register`, `register_auth`, `invite`, `txn_tcp`, `txn_udp`, `reg_cycle`. The
//! transaction cases first run 40,000 requests (UDP: enough for Timer J to keep ~32,000 live
//! transactions), then the measured ones; subtract a run with `N = 0` to get the per-request
//! cost.
//!
//! `reg_cycle` runs the registration engine against an in-process registrar until N upstream
//! registrations (REGISTER, 401, REGISTER with digest, 200) are done, with 20,000 + N
//! bindings waiting under the pace; count only the engine with
//! `--toggle-collect='*RegCycle*engine_*'` and divide by N.

use std::hint::black_box;

use bytes::Bytes;
use vigil_benches::reg::RegCycle;
use vigil_benches::vigil::{self, Arrivals, TxnServer};
use vigil_benches::{INVITE, REGISTER};

fn main() {
    let mut args = std::env::args().skip(1);
    let case = args.next().unwrap_or_default();
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let mut total = 0usize;
    match case.as_str() {
        "register" | "register_auth" | "invite" => {
            let (raw, body): (&'static [u8], fn(&Bytes) -> usize) = match case.as_str() {
                "register" => (REGISTER, vigil::register),
                "register_auth" => (REGISTER, vigil::register_auth),
                _ => (INVITE, vigil::invite),
            };
            let buf = Bytes::from_static(raw);
            for _ in 0..n {
                total += body(black_box(&buf));
            }
        }
        "txn_tcp" | "txn_udp" => {
            let udp = case == "txn_udp";
            let mut arrivals = Arrivals::new(REGISTER, if udp { "UDP" } else { "TCP" });
            let mut server = TxnServer::new(udp);
            let warm = 40_000;
            for _ in 0..warm + n {
                total += server.serve(black_box(&arrivals.next_request()));
            }
        }
        "reg_cycle" => {
            let mut reg = RegCycle::new(20_000 + n as u64);
            while reg.registered() < n {
                total += reg.cycle();
            }
        }
        _ => {
            eprintln!(
                "usage: callgrind register|register_auth|invite|txn_tcp|txn_udp|reg_cycle [N]"
            );
            std::process::exit(2);
        }
    }
    println!("{case} x{n}: {total}");
}
