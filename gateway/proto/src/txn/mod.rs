//! RFC 3261 §17 transactions, with the RFC 6026 corrections, as one sans-IO layer.
//!
//! [`Transactions`] holds every client and server transaction of a core instance. It takes
//! parsed messages, timeouts and transport errors in, and hands bytes to send
//! ([`Transmit`]) and events for the transaction user ([`TxnEvent`]) out; time comes in as
//! `now`, and all deadlines live in one [`crate::timer::Timers`].
//!
//! - Client transactions (state diagram in `client.rs`, states in [`ClientState`]): INVITE
//!   with Timers A, B, D and the RFC 6026 Accepted state (Timer M); non-INVITE with Timers
//!   E, F, K. A bound on INVITE Proceeding (Timer "C", [`TxnConfig::invite_proceeding_limit`])
//!   keeps a silent server from pinning a transaction forever.
//! - Server transactions (`server.rs`, [`ServerState`]): INVITE with the 200 ms 100 Trying,
//!   Timers G, H, I and Accepted with Timer L; non-INVITE with Timer J.
//! - Matching: responses by top Via branch and CSeq method (§17.1.3); requests by branch,
//!   sent-by and method, with ACK matching its INVITE, or the RFC 2543 rules when the branch
//!   lacks the `z9hG4bK` cookie (§17.2.3). A CANCEL gets its own server transaction and the
//!   event names the INVITE transaction it targets.
//! - Reliable transports (TCP, TLS) arm no retransmission timer and linger for zero time.
//! - Bounded: at [`TxnConfig::max_transactions`] the layer answers new requests 503 with
//!   Retry-After itself and allocates nothing. A new request whose mandatory headers are
//!   malformed gets a stateless 400 (or the status its error suggests) the same way.
//!
//! Architecture Invariant: the layer never originates a request of its own (the one it builds
//! is the ACK for a non-2xx, which RFC 3261 §17.1.1.3 assigns to it), never picks a branch,
//! and never retransmits a 2xx to an INVITE: those belong to the TU (§13.3.1.4). The only
//! responses it makes are 100 Trying and its stateless 503/400 rejections.
//!
//! # Run loop
//!
//! ```
//! use vigil_proto::msg::{Method, RequestBuilder};
//! use vigil_proto::rng::CoreRng;
//! use vigil_proto::txn::{Peer, Transactions, TxnConfig, TxnEvent};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let now = vigil_proto::netem::test_epoch(); // the shell passes its clock reading
//! let mut txns = Transactions::new(TxnConfig::default());
//! let mut rng = CoreRng::from_seed(1);
//! let server = Peer::udp("192.0.2.10:5060".parse()?);
//! let options = RequestBuilder::new(Method::Options, "sip:example.com")
//!     .via("UDP", "192.0.2.1:5060", &rng.branch())
//!     .from("sip:me@example.com", &rng.tag())
//!     .to("sip:example.com", None)
//!     .call_id(&rng.call_id())
//!     .cseq(1)
//!     .build();
//! let id = txns.send_request(now, options, server)?;
//! // Drain outputs after every input: here, the request itself.
//! let first = txns.poll_transmit().expect("the request");
//! assert_eq!(first.peer, server);
//! // The shell sleeps until poll_timeout, then calls handle_timeout: Timer E retransmits.
//! let deadline = txns.poll_timeout().expect("Timer E and F are armed");
//! assert_eq!(deadline - now, std::time::Duration::from_millis(500));
//! txns.handle_timeout(deadline);
//! assert_eq!(txns.poll_transmit().map(|t| t.bytes), Some(first.bytes));
//! // Received messages go to handle_incoming; what the TU must know comes from poll_event.
//! assert!(txns.poll_event().is_none());
//! # let _ = (id, TxnEvent::Terminated { id: id.into() });
//! # Ok(())
//! # }
//! ```

mod client;
mod config;
mod event;
mod io;
mod key;
mod layer;
mod peer;
mod server;

pub use client::ClientState;
pub use config::{TxnConfig, TxnTimer};
pub use event::{
    ClientTxnId, Rejection, ResponseError, SendError, ServerTxnId, TxnEvent, TxnId, TxnStats,
};
pub use key::KeyError;
pub(crate) use layer::IdHash;
pub use layer::Transactions;
pub use peer::{Peer, Transmit, Transport};
pub use server::ServerState;
