//! Parse + typed access of a typical REGISTER and INVITE: Vigil's parser side by side with
//! `rsip` and `ezk-sip-types` in the same run, so the ratios are meaningful on a noisy machine.
//!
//! "Typed access" means what a gateway routes and authenticates on: the top Via's branch,
//! From tag, To URI, Call-ID, CSeq, the first Contact and its `expires`, Expires, and (for the
//! `+auth` variants) the digest credentials; for the INVITE also Record-Route, Content-Type
//! and the body. Vigil's side lives in `vigil_benches::vigil`, shared with the callgrind
//! driver (`src/bin/callgrind.rs`) so instruction counts measure the same work.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use vigil_benches::vigil;
use vigil_benches::{INVITE, REGISTER};

mod rsip_side {
    use rsip::prelude::*;

    pub fn register(buf: &[u8], with_auth: bool) -> usize {
        let req = rsip::Request::try_from(buf).expect("rsip parses");
        let via = req.via_header().expect("via").typed().expect("typed via");
        let from = req
            .from_header()
            .expect("from")
            .typed()
            .expect("typed from");
        let to = req.to_header().expect("to").typed().expect("typed to");
        let call_id = req.call_id_header().expect("call-id").value().len();
        let cseq = req
            .cseq_header()
            .expect("cseq")
            .typed()
            .expect("typed cseq");
        // rsip 0.4 cannot type this Contact (it fails on the quoted `+sip.instance`
        // parameter); count the untyped value so the work done stays comparable.
        let contact = req.contact_header().expect("contact");
        let contact_n = contact.typed().map_or(contact.value().len(), |c| {
            c.expires().map_or(0, |e| e.to_string().len())
        });
        let expires: u32 = req
            .expires_header()
            .expect("expires")
            .seconds()
            .expect("seconds");
        let mut n = via.branch().map_or(0, |b| b.to_string().len())
            + from.tag().map_or(0, |t| t.to_string().len())
            + to.uri.host_with_port.to_string().len()
            + call_id
            + cseq.seq as usize
            + contact_n
            + expires as usize;
        if with_auth {
            let auth = req
                .authorization_header()
                .expect("authorization")
                .typed()
                .expect("typed authorization");
            n += auth.response.len() + auth.nonce.len();
        }
        n
    }

    pub fn invite(buf: &[u8]) -> usize {
        let req = rsip::Request::try_from(buf).expect("rsip parses");
        let via = req.via_header().expect("via").typed().expect("typed via");
        let from = req
            .from_header()
            .expect("from")
            .typed()
            .expect("typed from");
        let to = req.to_header().expect("to").typed().expect("typed to");
        let call_id = req.call_id_header().expect("call-id").value().len();
        let cseq = req
            .cseq_header()
            .expect("cseq")
            .typed()
            .expect("typed cseq");
        let contact = req
            .contact_header()
            .expect("contact")
            .typed()
            .expect("typed contact");
        let rr = req
            .record_route_header()
            .map_or(0, |h| h.typed().expect("typed record-route").uris().len());
        let ct = req
            .headers()
            .iter()
            .find_map(|h| match h {
                rsip::Header::ContentType(ct) => Some(ct.value().len()),
                _ => None,
            })
            .expect("content-type");
        via.branch().map_or(0, |b| b.to_string().len())
            + from.tag().map_or(0, |t| t.to_string().len())
            + to.uri.host_with_port.to_string().len()
            + call_id
            + cseq.seq as usize
            + contact.uri.host_with_port.to_string().len()
            + rr
            + ct
            + req.body().len()
    }
}

mod ezk_side {
    use bytes::Bytes;
    use ezk_sip_types::header::typed::{AuthResponse, CSeq, CallID, Contact, Expires, FromTo, Via};
    use ezk_sip_types::msg::{Line, MessageLine, PullParser};
    use ezk_sip_types::parse::Parse;
    use ezk_sip_types::{Headers, Name};

    /// ezk-sip-types has no one-call message parser (ezk-sip-core frames and assembles);
    /// this is that assembly: start line, header lines, then typed access.
    fn parse(buf: &Bytes) -> (MessageLine, Headers, usize) {
        let mut lines = PullParser::new(buf, 0);
        let first = lines.next().expect("start line").expect("complete");
        let first = std::str::from_utf8(first).expect("utf-8");
        let (_, start) = MessageLine::parse(buf)(first).expect("start line parses");
        let mut headers = Headers::with_capacity(16);
        for line in &mut lines {
            let line = std::str::from_utf8(line.expect("complete")).expect("utf-8");
            let (_, line) = Line::parse(buf, line).expect("header line parses");
            headers.insert(line.name, line.value);
        }
        let head_end = lines.head_end();
        (start, headers, head_end)
    }

    pub fn register(buf: &Bytes, with_auth: bool) -> usize {
        let (_start, headers, _) = parse(buf);
        let via: Via = headers.get_named().expect("via");
        let from: FromTo = headers.get(Name::FROM).expect("from");
        let to: FromTo = headers.get(Name::TO).expect("to");
        let call_id: CallID = headers.get_named().expect("call-id");
        let cseq: CSeq = headers.get_named().expect("cseq");
        let contact: Contact = headers.get_named().expect("contact");
        let expires: Expires = headers.get_named().expect("expires");
        let mut n = via.params.get_val("branch").map_or(0, |b| b.len())
            + from.tag.as_ref().map_or(0, |t| t.len())
            + format!("{:?}", to.uri).len().min(1)
            + call_id.0.len()
            + cseq.cseq as usize
            + contact.params.get_val("expires").map_or(0, |e| e.len())
            + expires.0 as usize;
        if with_auth {
            let auth: AuthResponse = headers.get(Name::AUTHORIZATION).expect("authorization");
            n += match auth {
                AuthResponse::Digest(d) => d.response.len() + d.nonce.len(),
                _ => 0,
            };
        }
        n
    }

    pub fn invite(buf: &Bytes) -> usize {
        let (_start, headers, head_end) = parse(buf);
        let via: Via = headers.get_named().expect("via");
        let from: FromTo = headers.get(Name::FROM).expect("from");
        let to: FromTo = headers.get(Name::TO).expect("to");
        let call_id: CallID = headers.get_named().expect("call-id");
        let cseq: CSeq = headers.get_named().expect("cseq");
        let contact: Contact = headers.get_named().expect("contact");
        let rr: Vec<ezk_sip_types::header::typed::Routing> =
            headers.get(Name::RECORD_ROUTE).expect("record-route");
        let ct: ezk_sip_types::header::typed::ContentType =
            headers.get_named().expect("content-type");
        via.params.get_val("branch").map_or(0, |b| b.len())
            + from.tag.as_ref().map_or(0, |t| t.len())
            + format!("{:?}", to.uri).len().min(1)
            + call_id.0.len()
            + cseq.cseq as usize
            + contact.params.get_val("expires").map_or(1, |e| e.len())
            + rr.len()
            + ct.0.len()
            + (buf.len() - head_end)
    }
}

fn bench_register(c: &mut Criterion) {
    let buf = Bytes::from_static(REGISTER);
    // The fixture must really carry the fields the bench reads: CSeq 4712, Expires 3600 and
    // the Contact's expires=3600 alone add up to more than 11,000.
    assert!(vigil::register(&buf) > 11_000);
    let mut g = c.benchmark_group("register_parse_typed");
    g.throughput(Throughput::Bytes(REGISTER.len() as u64));
    g.bench_function("vigil", |b| b.iter(|| vigil::register(black_box(&buf))));
    g.bench_function("rsip", |b| {
        b.iter(|| rsip_side::register(black_box(REGISTER), false))
    });
    g.bench_function("ezk-sip-types", |b| {
        b.iter(|| ezk_side::register(black_box(&buf), false))
    });
    g.finish();

    let mut g = c.benchmark_group("register_parse_typed_auth");
    g.throughput(Throughput::Bytes(REGISTER.len() as u64));
    g.bench_function("vigil", |b| {
        b.iter(|| vigil::register_auth(black_box(&buf)))
    });
    g.bench_function("rsip", |b| {
        b.iter(|| rsip_side::register(black_box(REGISTER), true))
    });
    g.bench_function("ezk-sip-types", |b| {
        b.iter(|| ezk_side::register(black_box(&buf), true))
    });
    g.finish();
}

fn bench_invite(c: &mut Criterion) {
    let buf = Bytes::from_static(INVITE);
    let mut g = c.benchmark_group("invite_parse_typed");
    g.throughput(Throughput::Bytes(INVITE.len() as u64));
    g.bench_function("vigil", |b| b.iter(|| vigil::invite(black_box(&buf))));
    g.bench_function("rsip", |b| b.iter(|| rsip_side::invite(black_box(INVITE))));
    g.bench_function("ezk-sip-types", |b| {
        b.iter(|| ezk_side::invite(black_box(&buf)))
    });
    g.finish();
}

criterion_group!(benches, bench_register, bench_invite);
criterion_main!(benches);
