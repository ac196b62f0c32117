//! Vigil's sans-IO SIP core.
//!
//! Everything in this crate is a deterministic state machine or a pure function over bytes.
//! It depends on no async runtime, opens no socket, spawns nothing, takes no lock and never
//! reads the clock: time comes in as `now: Instant` arguments and randomness from a seeded RNG
//! ([`rng::CoreRng`]) handed in by the shell. The async shell in `vigil-gateway` moves bytes and
//! timeouts in and out; tests drive the same code on virtual time, faster than real time.
//!
//! Layers, bottom up:
//! - [`msg`]: the zero-copy SIP message parser, printer and builders.
//! - [`framing`]: stream (TCP/TLS) framing by Content-Length, keep-alives, datagram checks.
//! - [`auth`]: HTTP digest (RFC 7616 / RFC 8760), client and server sides.
//! - [`timer`]: one timer structure per core instance for all deadlines.
//! - [`txn`]: RFC 3261 §17 client and server transactions.
//! - [`netem`]: a seeded virtual network for deterministic multi-endpoint tests.
//! - [`resolve`]: RFC 3263 server location (NAPTR/SRV/A) decisions and failover order.

pub mod auth;
pub mod framing;
pub mod fuzzing;
pub mod msg;
pub mod netem;
pub mod push;
pub mod reg;
pub mod resolve;
pub mod rng;
pub mod timer;
pub mod txn;
