//! Property tests of the message layer: messages generated through the builders print,
//! parse back to the same typed fields, and print again to identical bytes; parsing never
//! panics on arbitrary or mutated input; URIs round-trip.

use bytes::Bytes;
use proptest::prelude::*;
use vigil_proto::fuzzing;
use vigil_proto::msg::{
    ack_for_non_2xx, cancel_for, default_reason, name_addr, HeaderName, Message, Method,
    RequestBuilder, ResponseBuilder, SipUriBuilder, Uri,
};

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9.!%*_+`'~-]{1,12}"
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,8}(\\.[a-z][a-z0-9-]{0,8}){0,2}",
        (any::<u8>(), any::<u8>(), any::<u8>(), any::<u8>())
            .prop_map(|(a, b, c, d)| format!("{a}.{b}.{c}.{d}")),
        (any::<u16>(), any::<u16>()).prop_map(|(a, b)| format!("[2001:db8::{a:x}:{b:x}]")),
    ]
}

#[derive(Clone, Debug)]
struct GenUri {
    user: Option<String>,
    host: String,
    port: Option<u16>,
    params: Vec<(String, Option<String>)>,
}

impl GenUri {
    fn build(&self) -> String {
        let mut b = SipUriBuilder::new(&self.host);
        if let Some(u) = &self.user {
            b = b.user(u);
        }
        if let Some(p) = self.port {
            b = b.port(p);
        }
        for (n, v) in &self.params {
            b = b.param(n, v.as_deref());
        }
        b.build()
    }
}

fn gen_uri() -> impl Strategy<Value = GenUri> {
    (
        proptest::option::of("\\PC{1,12}"),
        host(),
        proptest::option::of(any::<u16>()),
        proptest::collection::vec(
            ("[a-z][a-z0-9-]{0,6}", proptest::option::of("\\PC{1,8}")),
            0..3,
        ),
    )
        .prop_map(|(user, host, port, params)| GenUri {
            user,
            host,
            port,
            params,
        })
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::Invite),
        Just(Method::Register),
        Just(Method::Options),
        Just(Method::Message),
        Just(Method::Bye),
        "[A-Z][A-Z-]{2,10}".prop_filter_map("extension", |s| Method::parse(&s)),
    ]
}

#[derive(Clone, Debug)]
struct GenContact {
    display: Option<String>,
    uri: GenUri,
    expires: Option<u32>,
    instance: Option<String>,
}

fn contact() -> impl Strategy<Value = GenContact> {
    (
        proptest::option::of("[^\r\n]{0,12}"),
        gen_uri(),
        proptest::option::of(any::<u32>()),
        proptest::option::of("[0-9a-f]{8}"),
    )
        .prop_map(|(display, uri, expires, instance)| GenContact {
            display,
            uri,
            expires,
            instance,
        })
}

#[derive(Clone, Debug)]
struct GenRequest {
    method: Method,
    ruri: GenUri,
    vias: Vec<(String, String, Option<u16>, String)>,
    from_display: Option<String>,
    from: GenUri,
    from_tag: String,
    to: GenUri,
    to_tag: Option<String>,
    call_id: String,
    cseq: u32,
    max_forwards: u8,
    contacts: Vec<GenContact>,
    expires: Option<u32>,
    extra: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

fn request() -> impl Strategy<Value = GenRequest> {
    let vias = proptest::collection::vec(
        (
            prop_oneof![Just("UDP"), Just("TCP"), Just("TLS"), Just("WS")].prop_map(str::to_owned),
            host(),
            proptest::option::of(1u16..),
            token(),
        ),
        1..4,
    );
    (
        (
            method(),
            gen_uri(),
            vias,
            proptest::option::of("[^\r\n]{0,16}"),
            gen_uri(),
            token(),
            gen_uri(),
        ),
        (
            proptest::option::of(token()),
            (token(), host()).prop_map(|(a, h)| format!("{a}@{h}")),
            0u32..=0x7fff_ffff,
            any::<u8>(),
            proptest::collection::vec(contact(), 0..3),
            proptest::option::of(any::<u32>()),
            proptest::collection::vec(("X-[A-Za-z0-9-]{1,10}", "[ -~]{0,20}"), 0..3),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200)),
        ),
    )
        .prop_map(
            |(
                (method, ruri, vias, from_display, from, from_tag, to),
                (to_tag, call_id, cseq, max_forwards, contacts, expires, extra, body),
            )| GenRequest {
                method,
                ruri,
                vias,
                from_display,
                from,
                from_tag,
                to,
                to_tag,
                call_id,
                cseq,
                max_forwards,
                contacts,
                expires,
                extra,
                body,
            },
        )
}

fn build(g: &GenRequest) -> Message {
    let mut b = RequestBuilder::new(g.method.clone(), &g.ruri.build());
    // `via` prepends, so push bottom-up to keep `g.vias[0]` on top.
    for (t, h, p, branch) in g.vias.iter().rev() {
        let sent_by = match p {
            Some(p) => format!("{h}:{p}"),
            None => h.clone(),
        };
        b = b.via(t, &sent_by, &format!("z9hG4bK{branch}"));
    }
    b = b
        .from(
            &name_addr(g.from_display.as_deref(), &g.from.build(), &[]),
            &g.from_tag,
        )
        .to(&g.to.build(), g.to_tag.as_deref())
        .call_id(&g.call_id)
        .cseq(g.cseq)
        .max_forwards(g.max_forwards);
    for c in &g.contacts {
        let expires = c.expires.map(|e| e.to_string());
        let instance = c.instance.as_ref().map(|i| format!("<urn:uuid:{i}>"));
        let mut params = Vec::new();
        if let Some(e) = &expires {
            params.push(("expires", Some(e.as_str())));
        }
        if let Some(i) = &instance {
            params.push(("+sip.instance", Some(i.as_str())));
        }
        b = b.header(
            HeaderName::Contact,
            &name_addr(c.display.as_deref(), &c.uri.build(), &params),
        );
    }
    if let Some(e) = g.expires {
        b = b.header(HeaderName::Expires, &e.to_string());
    }
    for (n, v) in &g.extra {
        b = b.header(HeaderName::parse(n).expect("generated token"), v);
    }
    if let Some(body) = &g.body {
        b = b.body("application/octet-stream", Bytes::from(body.clone()));
    }
    b.build()
}

fn assert_uri(u: &Uri<'_>, g: &GenUri) {
    assert_eq!(u.user().as_deref(), g.user.as_deref());
    assert_eq!(u.host(), Some(g.host.as_str()));
    assert_eq!(u.port(), g.port);
    let params: Vec<(String, Option<String>)> = u
        .params()
        .map(|(n, v)| (n.into_owned(), v.map(|v| v.into_owned())))
        .collect();
    assert_eq!(params, g.params);
}

proptest! {

    #[test]
    fn built_requests_parse_to_their_fields_and_print_identically(g in request()) {
        let built = build(&g);
        let m = Message::parse(built.as_bytes().clone()).expect("builder output parses");
        prop_assert_eq!(m.print(), built.as_bytes().clone());
        prop_assert_eq!(built.print(), built.as_bytes().clone());
        prop_assert_eq!(m.method(), Some(g.method.clone()));
        assert_uri(&m.request_uri().expect("request").expect("uri"), &g.ruri);
        let vias: Vec<_> = m.vias().map(|v| v.expect("via")).collect();
        prop_assert_eq!(vias.len(), g.vias.len());
        for (v, (t, h, p, branch)) in vias.iter().zip(&g.vias) {
            prop_assert_eq!(v.transport(), t.as_str());
            prop_assert_eq!(v.sent_by(), (h.as_str(), *p));
            prop_assert_eq!(v.branch().map(str::to_owned), Some(format!("z9hG4bK{branch}")));
        }
        let from = m.from_hdr().expect("from");
        prop_assert_eq!(from.display_name().map(|d| d.into_owned()), g.from_display.clone());
        prop_assert_eq!(from.tag(), Some(g.from_tag.as_str()));
        assert_uri(&from.uri().expect("uri"), &g.from);
        let to = m.to_hdr().expect("to");
        prop_assert_eq!(to.tag(), g.to_tag.as_deref());
        assert_uri(&to.uri().expect("uri"), &g.to);
        prop_assert_eq!(m.call_id(), Ok(g.call_id.as_str()));
        let cseq = m.cseq().expect("cseq");
        prop_assert_eq!((cseq.seq, cseq.method), (g.cseq, g.method.clone()));
        prop_assert_eq!(m.max_forwards(), Ok(Some(g.max_forwards)));
        prop_assert_eq!(m.expires(), Ok(g.expires));
        let contacts = m.contacts().expect("contacts");
        prop_assert_eq!(contacts.as_slice().len(), g.contacts.len());
        for (c, gc) in contacts.as_slice().iter().zip(&g.contacts) {
            prop_assert_eq!(c.display_name().map(|d| d.into_owned()), gc.display.clone());
            assert_uri(&c.uri().expect("uri"), &gc.uri);
            prop_assert_eq!(c.expires(), Ok(gc.expires));
            prop_assert_eq!(c.instance().map(|i| i.into_owned()), gc.instance.as_ref().map(|i| format!("<urn:uuid:{i}>")));
        }
        for (n, v) in &g.extra {
            let name = HeaderName::parse(n).expect("token");
            prop_assert!(m.header_lines(name).any(|x| x == v.trim()));
        }
        prop_assert_eq!(m.body(), g.body.as_deref().unwrap_or(&[]));
        prop_assert_eq!(m.content_length(), Some(g.body.as_ref().map_or(0, Vec::len)));
        prop_assert_eq!(m.check(), Ok(()));
    }

    #[test]
    fn responses_ack_and_cancel_follow_their_request(g in request(), status in 100u16..700, tag in token()) {
        let req = build(&g);
        let resp = ResponseBuilder::for_request(&req, status, Some(&tag)).build();
        let r = Message::parse(resp.as_bytes().clone()).expect("response parses");
        prop_assert_eq!(r.print(), resp.as_bytes().clone());
        prop_assert_eq!(r.status(), Some(status));
        prop_assert_eq!(r.reason(), Some(default_reason(status)));
        prop_assert!(r.vias().eq(req.vias()));
        prop_assert_eq!(r.from_hdr(), req.from_hdr());
        prop_assert_eq!(r.to_hdr().expect("to").tag(), Some(g.to_tag.as_deref().unwrap_or(&tag)));
        prop_assert_eq!(r.call_id(), req.call_id());
        prop_assert_eq!(r.cseq(), Ok(req.cseq().expect("cseq")));
        prop_assert_eq!(r.check(), Ok(()));
        if g.method == Method::Invite {
            let ack = Message::parse(ack_for_non_2xx(&req, &r).as_bytes().clone()).expect("ACK parses");
            prop_assert_eq!(ack.method(), Some(Method::Ack));
            prop_assert_eq!(ack.vias().count(), 1);
            prop_assert_eq!(ack.top_via(), req.top_via());
            prop_assert_eq!(ack.to_hdr(), r.to_hdr());
            prop_assert_eq!(ack.cseq().map(|c| c.seq), Ok(g.cseq));
            prop_assert_eq!(ack.check(), Ok(()));
            let cancel = Message::parse(cancel_for(&req).as_bytes().clone()).expect("CANCEL parses");
            prop_assert_eq!(cancel.method(), Some(Method::Cancel));
            prop_assert_eq!(cancel.to_hdr(), req.to_hdr());
            prop_assert_eq!(cancel.request_uri_str(), req.request_uri_str());
            prop_assert_eq!(cancel.check(), Ok(()));
        }
    }

    #[test]
    fn edits_keep_messages_parseable(g in request(), branch in token(), mf in any::<u8>()) {
        let m = build(&g);
        let edited = m
            .edit()
            .prepend_via("TCP", "vigil.example.net", &format!("z9hG4bK{branch}"))
            .set_header(HeaderName::MaxForwards, &mf.to_string())
            .finish();
        let p = Message::parse(edited.as_bytes().clone()).expect("edited output parses");
        prop_assert_eq!(p.vias().count(), g.vias.len() + 1);
        prop_assert_eq!(p.top_via().expect("via").host(), "vigil.example.net");
        let popped = p.edit().remove_top_via().finish();
        prop_assert!(popped.vias().eq(m.vias()));
        match p.edit().decrement_max_forwards() {
            Ok(e) => prop_assert_eq!(e.finish().max_forwards(), Ok(Some(mf - 1))),
            Err(_) => prop_assert_eq!(mf, 0),
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..1500)) {
        fuzzing::message(&data);
        fuzzing::uri(&data);
    }

    #[test]
    fn mutated_messages_never_panic(
        g in request(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..4, prop::sample::select(
            vec![b':', b';', b',', b'"', b'<', b'>', b'\r', b'\n', b' ', b'%', 0u8, 0xff, b'\\', b'=', b'@', b'0'])), 1..6),
    ) {
        let mut data = build(&g).as_bytes().to_vec();
        for (at, op, byte) in edits {
            if data.is_empty() {
                break;
            }
            let i = at.index(data.len());
            match op {
                0 => data[i] = byte,
                1 => data.insert(i, byte),
                2 => { data.remove(i); }
                _ => data.truncate(i),
            }
        }
        fuzzing::message(&data);
    }

    #[test]
    fn uris_round_trip(g in gen_uri(), sips in any::<bool>()) {
        let mut b = SipUriBuilder::new(&g.host).sips(sips);
        if let Some(u) = &g.user { b = b.user(u); }
        if let Some(p) = g.port { b = b.port(p); }
        for (n, v) in &g.params { b = b.param(n, v.as_deref()); }
        let s = b.build();
        let u = Uri::parse(&s).expect("builder URI parses");
        assert_uri(&u, &g);
        prop_assert_eq!(u.to_string(), s.clone());
        fuzzing::uri(s.as_bytes());
    }

    #[test]
    fn arbitrary_uri_text_never_panics(s in "(sips?|tel|[a-z]{1,5}):[ -~]{0,40}") {
        fuzzing::uri(s.as_bytes());
    }
}
