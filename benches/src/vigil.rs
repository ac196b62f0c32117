//! The bodies of Vigil's side of the benchmarks, shared by the criterion benches and the
//! callgrind driver (`src/bin/callgrind.rs`), so that instruction counts and wall times
//! measure exactly the same work.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use vigil_proto::msg::{HeaderName, Message, ResponseBuilder};
use vigil_proto::txn::{Peer, Transactions, TxnConfig, TxnEvent};

/// Parse + the fields a registrar routes on: the top Via's branch, From tag, To host,
/// Call-ID, CSeq, the first Contact and its `expires`, Expires.
pub fn register(buf: &Bytes) -> usize {
    let msg = Message::parse(buf.clone()).expect("fixture parses");
    register_fields(&msg)
}

/// [`register`] plus the digest credentials a registrar authenticates on.
pub fn register_auth(buf: &Bytes) -> usize {
    let msg = Message::parse(buf.clone()).expect("fixture parses");
    let n = register_fields(&msg);
    let value = msg
        .header(HeaderName::Authorization)
        .expect("authorization");
    let creds = vigil_proto::auth::Credentials::parse(value).expect("digest credentials");
    n + creds.response.len() + creds.nonce.len()
}

fn register_fields(msg: &Message) -> usize {
    let via = msg.top_via().expect("via");
    let from = msg.from_hdr().expect("from");
    let to = msg.to_hdr().expect("to");
    let cseq = msg.cseq().expect("cseq");
    let contacts = msg.contacts().expect("contact");
    let contact = &contacts.as_slice()[0];
    via.branch().map_or(0, str::len)
        + from.tag().map_or(0, str::len)
        + to.uri().expect("uri").host().map_or(0, str::len)
        + msg.call_id().expect("call-id").len()
        + cseq.seq as usize
        + contact.expires().expect("contact expires").unwrap_or(0) as usize
        + msg.expires().expect("expires").unwrap_or(0) as usize
}

/// Parse + typed access of an INVITE: the REGISTER fields plus Record-Route, Content-Type
/// and the body.
pub fn invite(buf: &Bytes) -> usize {
    let msg = Message::parse(buf.clone()).expect("fixture parses");
    let via = msg.top_via().expect("via");
    let from = msg.from_hdr().expect("from");
    let to = msg.to_hdr().expect("to");
    let cseq = msg.cseq().expect("cseq");
    let contacts = msg.contacts().expect("contact");
    let rr = msg.record_routes().count();
    let ct = msg.content_type().expect("content-type").expect("present");
    via.branch().map_or(0, str::len)
        + from.tag().map_or(0, str::len)
        + to.uri().expect("uri").host().map_or(0, str::len)
        + msg.call_id().expect("call-id").len()
        + cseq.seq as usize
        + contacts.as_slice().len()
        + rr
        + ct.subtype.len()
        + msg.body().len()
}

/// Requests as a receive loop hands them to the core: each a fresh copy of one template
/// with its own branch, just written, so it is in cache as a datagram is after `recv_from`
/// (`Bytes::copy_from_slice` in the UDP loop). The copy is part of the measured work.
///
/// An earlier version cycled through 65,536 pre-built variants (46 MB): every request then
/// came cold from memory, which no server sees and which made the bench measure the
/// machine's memory latency as much as the code.
pub struct Arrivals {
    template: Vec<u8>,
    /// Where the 16 hex digits of the branch go.
    digits: usize,
    n: u64,
}

impl Arrivals {
    /// Copies of `template` with `transport` in the Via and branch `z9hG4bK` + 16 hex digits
    /// counting up from 0, so no two requests are retransmissions of each other.
    pub fn new(template: &[u8], transport: &str) -> Self {
        let text = std::str::from_utf8(template).expect("fixture is UTF-8");
        let text = text.replace("SIP/2.0/TCP", &format!("SIP/2.0/{transport}"));
        let branch = "z9hG4bKPjq3Xs7w0pNQ2fV1a8";
        assert!(text.contains(branch), "fixture branch changed");
        let text = text.replace(branch, "z9hG4bK0000000000000000");
        let digits = text
            .find("z9hG4bK0000000000000000")
            .expect("just put there")
            + 7;
        Arrivals {
            template: text.into_bytes(),
            digits,
            n: 0,
        }
    }

    /// The next request.
    pub fn next_request(&mut self) -> Bytes {
        let mut b = BytesMut::from(&self.template[..]);
        let hex = b"0123456789abcdef";
        let n = self.n;
        for (k, d) in b[self.digits..self.digits + 16].iter_mut().enumerate() {
            *d = hex[((n >> (60 - 4 * k)) & 0xf) as usize];
        }
        self.n += 1;
        b.freeze()
    }
}

/// A non-INVITE UAS on the sans-IO transaction layer, on virtual time that advances 1 ms
/// per request.
pub struct TxnServer {
    txns: Transactions,
    now: Instant,
    step: Duration,
    peer: Peer,
}

impl TxnServer {
    /// A server whose requests all come from `192.0.2.10:50632` over TCP or UDP.
    pub fn new(udp: bool) -> Self {
        let addr: SocketAddr = "192.0.2.10:50632".parse().expect("literal address");
        TxnServer {
            txns: Transactions::new(TxnConfig::default()),
            now: Instant::now(),
            step: Duration::from_millis(1),
            peer: if udp {
                Peer::udp(addr)
            } else {
                Peer::tcp(addr)
            },
        }
    }

    /// One request in (parse, match/create the server transaction), a 200 built with
    /// `ResponseBuilder`, printed and drained; returns the bytes sent.
    pub fn serve(&mut self, bytes: &Bytes) -> usize {
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
