//! Framing tests: RFC 4475 framing cases, keep-alives, limits, and chunking invariance.

use proptest::prelude::*;

use super::*;

const OPTIONS: &[u8] = b"OPTIONS sip:vigil.example.com SIP/2.0\r\n\
Via: SIP/2.0/TCP client.example.com:5060;branch=z9hG4bK74bf9\r\n\
Max-Forwards: 70\r\n\
To: <sip:vigil.example.com>\r\n\
From: <sip:alice@example.com>;tag=9fxced76sl\r\n\
Call-ID: 3848276298220188511@client.example.com\r\n\
CSeq: 1 OPTIONS\r\n\
Content-Length: 0\r\n\r\n";

/// A message with a body made of `body`, declaring its length with the given header line.
fn with_body(cl_line: &str, body: &[u8]) -> Vec<u8> {
    let mut m = format!(
        "MESSAGE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bKx\r\nCSeq: 2 MESSAGE\r\n{cl_line}\r\n\r\n"
    )
    .into_bytes();
    m.extend_from_slice(body);
    m
}

fn framer() -> StreamFramer {
    StreamFramer::new(FramerConfig::default())
}

/// Feeds `chunks` in order, draining after each, the way the shell does.
fn run(framer: &mut StreamFramer, chunks: &[&[u8]]) -> Result<Vec<StreamItem>, FramingError> {
    let mut out = Vec::new();
    for chunk in chunks {
        framer.handle_bytes(chunk)?;
        while let Some(item) = framer.poll_item()? {
            out.push(item);
        }
    }
    Ok(out)
}

fn msg(b: &[u8]) -> StreamItem {
    StreamItem::Message(Bytes::copy_from_slice(b))
}

#[test]
fn one_message_then_waits() {
    let mut f = framer();
    let items = run(&mut f, &[OPTIONS]).unwrap();
    assert_eq!(items, vec![msg(OPTIONS)]);
    assert_eq!(f.buffered(), 0);
    assert!(f.handle_eof().is_ok());
}

#[test]
fn body_is_cut_at_content_length_and_next_message_follows() {
    let first = with_body("Content-Length: 5", b"hello");
    let mut stream = first.clone();
    stream.extend_from_slice(OPTIONS);
    let items = run(&mut framer(), &[&stream]).unwrap();
    assert_eq!(items, vec![msg(&first), msg(OPTIONS)]);
}

#[test]
fn compact_form_case_folding_and_whitespace() {
    for line in [
        "l: 5",
        "L:5",
        "content-length   :   5  ",
        "CONTENT-LENGTH: 5",
        "Content-Length:\r\n   5",
        "Content-Length: 5\r\nl: 5",
    ] {
        let m = with_body(line, b"hello");
        let items = run(&mut framer(), &[&m]).unwrap();
        assert_eq!(items, vec![msg(&m)], "header line {line:?}");
    }
}

#[test]
fn content_length_in_a_body_or_other_header_is_not_used() {
    // A body that looks like a header section must not confuse the scan, and a header whose
    // name merely contains "l" is not the compact form.
    let m = with_body("X-l: 99\r\nContent-Length: 20", b"Content-Length: 9999");
    let items = run(&mut framer(), &[&m]).unwrap();
    assert_eq!(items, vec![msg(&m)]);
}

#[test]
fn keepalives_between_messages() {
    let mut stream = Vec::new();
    stream.extend_from_slice(b"\r\n\r\n");
    stream.extend_from_slice(OPTIONS);
    stream.extend_from_slice(b"\r\n");
    stream.extend_from_slice(OPTIONS);
    stream.extend_from_slice(b"\r\n\r\n\r\n\r\n");
    let items = run(&mut framer(), &[&stream]).unwrap();
    assert_eq!(
        items,
        vec![
            StreamItem::Ping,
            msg(OPTIONS),
            StreamItem::Pong,
            msg(OPTIONS),
            StreamItem::Ping,
            StreamItem::Ping
        ]
    );
}

#[test]
fn lone_crlf_waits_then_resolves_as_pong_at_read_end() {
    let mut f = framer();
    assert!(run(&mut f, &[b"\r\n"]).unwrap().is_empty());
    assert_eq!(f.poll_lone_crlf(), Some(StreamItem::Pong));
    assert_eq!(f.buffered(), 0);
    // A split ping is not mistaken for a pong while its second half is in flight.
    let mut f = framer();
    assert!(run(&mut f, &[b"\r\n\r"]).unwrap().is_empty());
    assert_eq!(f.poll_lone_crlf(), None);
    assert_eq!(run(&mut f, &[b"\n"]).unwrap(), vec![StreamItem::Ping]);
}

#[test]
fn missing_content_length_closes() {
    let m = b"OPTIONS sip:a@b SIP/2.0\r\nCSeq: 1 OPTIONS\r\n\r\n";
    let mut f = framer();
    assert_eq!(
        run(&mut f, &[m]).unwrap_err(),
        FramingError::MissingContentLength
    );
    // The error is sticky: the connection must close.
    assert_eq!(
        f.handle_bytes(OPTIONS).unwrap_err(),
        FramingError::MissingContentLength
    );
    assert!(f.poll_item().is_err());
}

#[test]
fn bad_values_are_typed_errors() {
    for (line, want) in [
        ("Content-Length: abc", FramingError::InvalidContentLength),
        ("Content-Length: ", FramingError::InvalidContentLength),
        ("Content-Length: 5 5", FramingError::InvalidContentLength),
        ("Content-Length: 5, 5", FramingError::InvalidContentLength),
        ("Content-Length: 0x10", FramingError::InvalidContentLength),
        ("Content-Length: -1", FramingError::NegativeContentLength),
        (
            "Content-Length: 5\r\nl: 6",
            FramingError::ConflictingContentLength {
                first: 5,
                second: 6,
            },
        ),
        (
            "Content-Length: 99999999999999999999999999",
            FramingError::MessageTooLarge {
                limit: DEFAULT_MAX_MESSAGE_SIZE,
            },
        ),
    ] {
        let m = with_body(line, b"hello");
        assert_eq!(run(&mut framer(), &[&m]).unwrap_err(), want, "{line:?}");
    }
}

/// RFC 4475 §3.1.2.7 "ncl": negative Content-Length.
const NCL: &[u8] = b"INVITE sip:user@example.com SIP/2.0\r\n\
Max-Forwards: 254\r\n\
To: sip:j.user@example.com\r\n\
From: sip:caller@example.net;tag=32394234\r\n\
Call-ID: ncl.0ha0isndaksdj2193423r542w35\r\n\
CSeq: 0 INVITE\r\n\
Via: SIP/2.0/UDP 192.0.2.53;branch=z9hG4bKkdjuw\r\n\
Contact: <sip:caller@example53.example.net>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: -999\r\n\
\r\n\
v=0\r\n\
o=mhandley 29739 7272939 IN IP4 192.0.2.53\r\n\
s=-\r\n";

/// RFC 4475 §3.1.2.9 "mcl01": several conflicting Content-Length values.
const MCL01: &[u8] = b"OPTIONS sip:user@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bK293423\r\n\
To: sip:user@example.com\r\n\
From: sip:other@example.net;tag=3923942\r\n\
Call-ID: mcl01.fhn2323orihawfdoa3o4r52o3irsdf\r\n\
CSeq: 15932 OPTIONS\r\n\
Content-Length: 13\r\n\
Max-Forwards: 60\r\n\
Content-Length: 5\r\n\
Content-Type: text/plain\r\n\
\r\n\
There's no way to know how many octets are supposed to be here.\r\n";

/// RFC 4475 §3.1.2.6 "clerr": Content-Length larger than the message.
const CLERR: &[u8] = b"INVITE sip:user@example.com SIP/2.0\r\n\
Max-Forwards: 80\r\n\
To: sip:j.user@example.com\r\n\
From: sip:caller@example.net;tag=93942939o2\r\n\
Contact: <sip:caller@hungry.example.net>\r\n\
Call-ID: clerr.0ha0isndaksdjweiafasdk3\r\n\
CSeq: 8 INVITE\r\n\
Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bK-39234-23523\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 9999\r\n\
\r\n\
v=0\r\n\
o=mhandley 29739 7272939 IN IP4 192.0.2.155\r\n";

#[test]
fn rfc4475_ncl() {
    assert_eq!(
        run(&mut framer(), &[NCL]).unwrap_err(),
        FramingError::NegativeContentLength
    );
    assert_eq!(
        check_datagram(NCL),
        DatagramKind::Error(FramingError::NegativeContentLength)
    );
}

#[test]
fn rfc4475_mcl01() {
    let want = FramingError::ConflictingContentLength {
        first: 13,
        second: 5,
    };
    assert_eq!(run(&mut framer(), &[MCL01]).unwrap_err(), want);
    assert_eq!(check_datagram(MCL01), DatagramKind::Error(want));
}

#[test]
fn rfc4475_clerr_waits_then_errors_at_eof() {
    let mut f = framer();
    assert!(
        run(&mut f, &[CLERR]).unwrap().is_empty(),
        "must wait for the body"
    );
    let header_len = find_header_end(CLERR, 0).unwrap();
    let missing = header_len + 9999 - CLERR.len();
    assert_eq!(f.handle_eof(), Err(FramingError::Truncated { missing }));
    // On UDP the datagram is all there is.
    assert_eq!(
        check_datagram(CLERR),
        DatagramKind::Error(FramingError::Truncated { missing })
    );
}

#[test]
fn eof_inside_header_section() {
    let mut f = framer();
    run(&mut f, &[b"OPTIONS sip:a@b SIP/2.0\r\nCSeq: 1 OPTIONS\r\n"]).unwrap();
    assert_eq!(f.handle_eof(), Err(FramingError::Truncated { missing: 2 }));
    let mut f = framer();
    run(&mut f, &[b"\r\n\r\n"]).unwrap();
    assert!(f.handle_eof().is_ok());
}

#[test]
fn oversized_header_section_fails_once_limit_is_passed() {
    let limit = 200;
    let mut f = StreamFramer::new(FramerConfig {
        max_message_size: limit,
    });
    let mut total = 0;
    let chunk = [b'a'; 64];
    let err = loop {
        match run(&mut f, &[&chunk]) {
            Ok(items) => assert!(items.is_empty()),
            Err(e) => break e,
        }
        total += chunk.len();
        assert!(f.buffered() <= limit, "buffer grew past the limit");
    };
    assert_eq!(err, FramingError::MessageTooLarge { limit });
    assert!(total <= limit + chunk.len());
    assert_eq!(f.buffered(), 0, "buffer freed on failure");
}

#[test]
fn oversized_declared_body_fails_before_the_body_arrives() {
    let m = with_body("Content-Length: 100000", b"");
    assert_eq!(
        run(&mut framer(), &[&m]).unwrap_err(),
        FramingError::MessageTooLarge {
            limit: DEFAULT_MAX_MESSAGE_SIZE
        }
    );
    // Exactly at the limit is fine.
    let body = vec![b'x'; 10];
    let m = with_body("Content-Length: 10", &body);
    let mut f = StreamFramer::new(FramerConfig {
        max_message_size: m.len(),
    });
    assert_eq!(run(&mut f, &[&m]).unwrap(), vec![msg(&m)]);
}

#[test]
fn every_two_way_split_and_byte_at_a_time() {
    let mut stream = Vec::new();
    stream.extend_from_slice(OPTIONS);
    stream.extend_from_slice(b"\r\n\r\n");
    stream.extend_from_slice(&with_body("l:\r\n 4", b"\r\n\r\n"));
    stream.extend_from_slice(b"\r\n");
    stream.extend_from_slice(OPTIONS);
    let whole = run(&mut framer(), &[&stream]).unwrap();
    assert_eq!(whole.len(), 5);
    for i in 0..=stream.len() {
        let (a, b) = stream.split_at(i);
        assert_eq!(run(&mut framer(), &[a, b]).unwrap(), whole, "split at {i}");
    }
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(run(&mut framer(), &bytes).unwrap(), whole);
}

#[test]
fn datagram_kinds() {
    assert_eq!(check_datagram(b""), DatagramKind::KeepAlive);
    assert_eq!(check_datagram(b"\r\n\r\n"), DatagramKind::KeepAlive);
    assert_eq!(check_datagram(b"\r\n"), DatagramKind::KeepAlive);
    assert_eq!(
        check_datagram(OPTIONS),
        DatagramKind::Message(0..OPTIONS.len())
    );
    // Trailing octets beyond Content-Length are ignored.
    let mut padded = OPTIONS.to_vec();
    padded.extend_from_slice(b"garbage after the message");
    assert_eq!(
        check_datagram(&padded),
        DatagramKind::Message(0..OPTIONS.len())
    );
    // Leading CRLFs are skipped.
    let mut led = b"\r\n".to_vec();
    led.extend_from_slice(OPTIONS);
    assert_eq!(check_datagram(&led), DatagramKind::Message(2..led.len()));
    // No Content-Length on UDP: the body is the rest of the datagram.
    let m = b"MESSAGE sip:a@b SIP/2.0\r\nCSeq: 1 MESSAGE\r\n\r\nhello";
    assert_eq!(check_datagram(m), DatagramKind::Message(0..m.len()));
    // Garbage and a STUN binding request are errors, not panics.
    assert_eq!(
        check_datagram(b"\x00\x01\x00\x00\x21\x12\xa4\x42abcdefghijkl"),
        DatagramKind::Error(FramingError::UnterminatedHeaders)
    );
}

/// One item of a generated stream.
#[derive(Debug, Clone)]
enum Gen {
    Message(Vec<u8>),
    Ping,
    /// A pong immediately followed by a message, the only position where a lone CRLF is
    /// unambiguous without [`StreamFramer::poll_lone_crlf`].
    PongThen(Vec<u8>),
}

fn arb_message() -> impl Strategy<Value = Vec<u8>> {
    let header = prop_oneof![
        Just("Content-Length: "),
        Just("l: "),
        Just("content-length:"),
        Just("CONTENT-LENGTH :\r\n\t"),
    ];
    (
        header,
        proptest::collection::vec(any::<u8>(), 0..300),
        0u32..100,
    )
        .prop_map(|(h, body, seq)| {
            let mut m = format!(
                "MESSAGE sip:u@example.com SIP/2.0\r\nCSeq: {seq} MESSAGE\r\n{h}{}\r\nX-Pad: \r\n\r\n",
                body.len()
            )
            .into_bytes();
            m.extend_from_slice(&body);
            m
        })
}

fn arb_stream() -> impl Strategy<Value = Vec<Gen>> {
    let item = prop_oneof![
        4 => arb_message().prop_map(Gen::Message),
        1 => Just(Gen::Ping),
        1 => arb_message().prop_map(Gen::PongThen),
    ];
    proptest::collection::vec(item, 0..12)
}

proptest! {
    #[test]
    fn any_chunking_yields_the_same_items(
        stream in arb_stream(),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..40),
    ) {
        let mut bytes = Vec::new();
        let mut want = Vec::new();
        for g in &stream {
            match g {
                Gen::Message(m) => {
                    bytes.extend_from_slice(m);
                    want.push(msg(m));
                }
                Gen::Ping => {
                    bytes.extend_from_slice(b"\r\n\r\n");
                    want.push(StreamItem::Ping);
                }
                Gen::PongThen(m) => {
                    bytes.extend_from_slice(b"\r\n");
                    bytes.extend_from_slice(m);
                    want.push(StreamItem::Pong);
                    want.push(msg(m));
                }
            }
        }
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        points.push(0);
        points.push(bytes.len());
        points.sort_unstable();
        let chunks: Vec<&[u8]> = points.windows(2).map(|w| &bytes[w[0]..w[1]]).collect();
        let mut f = framer();
        let got = run(&mut f, &chunks).unwrap();
        prop_assert_eq!(got, want);
        prop_assert!(f.handle_eof().is_ok());
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_stay_bounded(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..20),
    ) {
        let limit = 256;
        let mut f = StreamFramer::new(FramerConfig { max_message_size: limit });
        for c in &chunks {
            if f.handle_bytes(c).is_err() {
                break;
            }
            while let Ok(Some(_)) = f.poll_item() {}
            f.poll_lone_crlf();
            prop_assert!(f.buffered() <= limit + 64);
        }
        let _ = f.handle_eof();
        for c in &chunks {
            let _ = check_datagram(c);
        }
    }
}
