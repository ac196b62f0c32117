//! Holds many idle wake-channel devices connected to a server, for memory measurements.
//!
//! `wake_load ADDR CA_PEM_FILE N` connects devices `dev-0 … dev-(N-1)` (tokens `tok-i`) over
//! one shared QUIC endpoint, prints `connected N rss_kib=BEFORE,AFTER` and keeps them open
//! until stdin closes.

use std::io::Read;
use std::net::SocketAddr;

use vigil_gateway::push::wake_client::{client_endpoint, WakeClient};
use vigil_gateway::push::{Roots, Secret};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, addr, ca, n] = args.as_slice() else {
        eprintln!("usage: wake_load ADDR CA_PEM_FILE N");
        std::process::exit(2);
    };
    let addr: SocketAddr = addr.parse().expect("ADDR is ip:port");
    let ca = std::fs::read_to_string(ca).expect("CA PEM file readable");
    let n: usize = n.parse().expect("N is a number");
    let ep = client_endpoint(&Roots::Pem(ca)).expect("client endpoint");
    let before = rss_kib();
    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        let c = WakeClient::connect_on(
            &ep,
            addr,
            "localhost",
            &format!("dev-{i}"),
            &Secret::new(format!("tok-{i}")),
        )
        .await
        .expect("device connects");
        clients.push(c);
    }
    println!("connected {n} rss_kib={before},{}", rss_kib());
    // Keep the connections (and their keep-alives) running until the parent closes stdin.
    tokio::task::spawn_blocking(|| {
        let mut buf = [0u8; 1];
        let _ = std::io::stdin().read(&mut buf);
    })
    .await
    .expect("stdin reader");
    drop(clients);
}
