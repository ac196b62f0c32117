//! Shared helpers of the `txn_*` integration tests: message builders and a driver that runs
//! one [`Transactions`] on virtual time and records what it sends, and when.
#![allow(dead_code)] // each test file uses a different subset

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use vigil_proto::msg::{Message, Method, RequestBuilder, ResponseBuilder};
use vigil_proto::netem::test_epoch;
use vigil_proto::txn::{Peer, Transactions, Transport, TxnConfig, TxnEvent};

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub fn secs_f(d: Duration) -> f64 {
    d.as_secs_f64()
}

pub fn addr(last: u8) -> SocketAddr {
    SocketAddr::from(([192, 0, 2, last], 5060))
}

pub fn peer(transport: Transport, last: u8) -> Peer {
    Peer {
        transport,
        addr: addr(last),
    }
}

/// A request as a UA at 192.0.2.`from` would send it, with an RFC 3261 branch.
pub fn request(method: Method, transport: Transport, branch: &str) -> Message {
    RequestBuilder::new(method, "sip:bob@example.com")
        .via(transport.via_token(), "192.0.2.1:5060", branch)
        .from("sip:alice@example.com", "fromtag1")
        .to("sip:bob@example.com", None)
        .call_id("call-1@192.0.2.1")
        .cseq(1)
        .build()
}

/// Parses raw wire text (with `\n` line ends turned into CRLF): for legacy (RFC 2543) forms
/// the builders deliberately do not produce.
pub fn raw(text: &str) -> Message {
    let wire = text.replace('\n', "\r\n");
    Message::parse(Bytes::from(wire)).expect("test message parses")
}

pub fn response(req: &Message, status: u16) -> Message {
    ResponseBuilder::for_request(req, status, Some("totag1")).build()
}

/// Wire-format round trip, as a message crossing the network would take.
pub fn reparse(m: &Message) -> Message {
    Message::parse(m.as_bytes().clone()).expect("what we print parses")
}

/// One sent message, with its virtual send time as an offset from the epoch.
#[derive(Debug, Clone)]
pub struct Sent {
    pub at: Duration,
    pub peer: Peer,
    pub msg: Message,
}

impl Sent {
    pub fn status(&self) -> Option<u16> {
        self.msg.status()
    }
    pub fn method(&self) -> Option<Method> {
        self.msg.method()
    }
}

/// Runs a [`Transactions`] alone on virtual time: the test plays the network and the TU.
pub struct Driver {
    pub txns: Transactions,
    pub t0: Instant,
    pub now: Instant,
    pub sent: Vec<Sent>,
    pub events: Vec<(Duration, TxnEvent)>,
}

impl Driver {
    pub fn new(config: TxnConfig) -> Self {
        let t0 = test_epoch();
        Self {
            txns: Transactions::new(config),
            t0,
            now: t0,
            sent: Vec::new(),
            events: Vec::new(),
        }
    }

    pub fn rfc() -> Self {
        Self::new(TxnConfig::default())
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.t0
    }

    /// Moves what the layer queued into `sent` and `events`, stamped with the current time.
    pub fn drain(&mut self) {
        let at = self.elapsed();
        while let Some(t) = self.txns.poll_transmit() {
            let msg = Message::parse(t.bytes).expect("the layer sends parseable messages");
            self.sent.push(Sent {
                at,
                peer: t.peer,
                msg,
            });
        }
        while let Some(e) = self.txns.poll_event() {
            self.events.push((at, e));
        }
    }

    /// Runs every timer up to and including `t0 + until`, then sets the clock there.
    pub fn run_until(&mut self, until: Duration) {
        let deadline = self.t0 + until;
        while let Some(t) = self.txns.poll_timeout() {
            if t > deadline {
                break;
            }
            assert!(t >= self.now, "poll_timeout went back in time");
            self.now = t;
            self.txns.handle_timeout(t);
            self.drain();
        }
        self.now = self.now.max(deadline);
    }

    /// Runs until no timer is left (every transaction ended).
    pub fn run_to_end(&mut self) {
        self.run_until(Duration::from_secs(3600));
        assert!(
            self.txns.poll_timeout().is_none(),
            "timers left after an hour"
        );
    }

    pub fn incoming(&mut self, msg: &Message, from: Peer) {
        self.txns.handle_incoming(self.now, reparse(msg), from);
        self.drain();
    }

    /// Send times (seconds) of messages matching `pred`.
    pub fn times(&self, pred: impl Fn(&Sent) -> bool) -> Vec<f64> {
        self.sent
            .iter()
            .filter(|s| pred(s))
            .map(|s| secs_f(s.at))
            .collect()
    }

    pub fn take_sent(&mut self) -> Vec<Sent> {
        std::mem::take(&mut self.sent)
    }

    pub fn take_events(&mut self) -> Vec<(Duration, TxnEvent)> {
        std::mem::take(&mut self.events)
    }
}

/// Expected retransmission schedule: the request at 0, then at the running sum of
/// `intervals`.
pub fn schedule(intervals: &[f64]) -> Vec<f64> {
    let mut t = 0.0;
    let mut out = vec![0.0];
    for i in intervals {
        t += i;
        out.push(t);
    }
    out
}
