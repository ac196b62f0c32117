//! The bodies of Vigil's side of the benchmarks, shared by the criterion benches and the
//! callgrind driver (`src/bin/callgrind.rs`), so that instruction counts and wall times
//! measure exactly the same work.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
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

/// Distinct requests (distinct branches) so that each is a new transaction, not a
/// retransmission of an earlier one.
pub const TXN_VARIANTS: usize = 1 << 16;

/// [`TXN_VARIANTS`] copies of `template` with distinct branches and `transport` in the Via.
pub fn txn_variants(template: &[u8], transport: &str) -> Vec<Bytes> {
    let text = std::str::from_utf8(template).expect("fixture is UTF-8");
    let text = text.replace("SIP/2.0/TCP", &format!("SIP/2.0/{transport}"));
    let branch = "z9hG4bKPjq3Xs7w0pNQ2fV1a8";
    assert!(text.contains(branch), "fixture branch changed");
    (0..TXN_VARIANTS)
        .map(|i| Bytes::from(text.replace(branch, &format!("z9hG4bK{i:016x}"))))
        .collect()
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
