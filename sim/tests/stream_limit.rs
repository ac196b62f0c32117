//! The stream limit dropping to 1, seen on the wire by a hand-rolled HTTP/2 client that,
//! unlike `h2`, will break the rule: the mock must announce
//! `SETTINGS_MAX_CONCURRENT_STREAMS = 1` after a rejection and, once acknowledged, refuse a
//! second concurrent stream with `REFUSED_STREAM`.

use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use vigil_sim::mock::{Faults, LatencyDist, MockApns, MockApnsConfig, TestCa};

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;
const REFUSED_STREAM: u32 = 0x7;

struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

async fn write_frame(
    io: &mut TlsStream<TcpStream>,
    kind: u8,
    flags: u8,
    stream: u32,
    payload: &[u8],
) {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    io.write_all(&f).await.expect("write frame");
    io.flush().await.expect("flush");
}

async fn read_frame(io: &mut TlsStream<TcpStream>) -> Frame {
    let mut h = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(5), io.read_exact(&mut h))
        .await
        .expect("a frame within 5 s")
        .expect("read frame header");
    let len = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
    let mut payload = vec![0u8; len];
    io.read_exact(&mut payload)
        .await
        .expect("read frame payload");
    let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
    Frame {
        kind: h[3],
        flags: h[4],
        stream,
        payload,
    }
}

/// HPACK "literal header field without indexing, new name" with raw (non-Huffman) strings,
/// all shorter than 127 bytes.
fn hpack(headers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in headers {
        out.push(0x00);
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
        out.push(value.len() as u8);
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// A bodiless POST to a path the mock rejects with 404 `BadPath` (no token needed).
fn bad_path_request() -> Vec<u8> {
    hpack(&[
        (":method", "POST"),
        (":scheme", "https"),
        (":authority", "localhost"),
        (":path", "/4/device/x"),
    ])
}

#[tokio::test]
async fn a_client_exceeding_the_lowered_limit_is_refused() {
    let ca = Arc::new(TestCa::generate().expect("CA"));
    let mut cfg = MockApnsConfig::new(ca.clone(), Vec::new());
    cfg.faults = Faults {
        drop_stream_limit_to_1_after_rejection: true,
        latency: LatencyDist::Fixed(Duration::from_millis(300)),
        ..Faults::default()
    };
    let mock = MockApns::start(cfg).await.expect("mock");
    let tcp = TcpStream::connect(mock.addr).await.expect("connect");
    let tls = ca.client_config().expect("client config");
    let mut io = TlsConnector::from(Arc::new(tls))
        .connect("localhost".try_into().expect("name"), tcp)
        .await
        .expect("TLS");
    io.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .expect("preface");
    write_frame(&mut io, SETTINGS, 0, 0, &[]).await;

    // The server's own SETTINGS first: it advertises 1000 streams. Acknowledge it.
    let first = read_frame(&mut io).await;
    assert_eq!((first.kind, first.flags & ACK), (SETTINGS, 0));
    assert!(
        first
            .payload
            .chunks(6)
            .any(|s| s == [0, 3, 0, 0, 0x03, 0xe8]),
        "max streams 1000"
    );
    write_frame(&mut io, SETTINGS, ACK, 0, &[]).await;

    // A rejected request on stream 1.
    write_frame(
        &mut io,
        HEADERS,
        END_STREAM | END_HEADERS,
        1,
        &bad_path_request(),
    )
    .await;
    let mut saw_limit = false;
    let mut answered = false;
    while !answered {
        let f = read_frame(&mut io).await;
        match f.kind {
            SETTINGS if f.flags & ACK == 0 => {
                assert_eq!(
                    f.payload,
                    [0, 3, 0, 0, 0, 1],
                    "SETTINGS_MAX_CONCURRENT_STREAMS = 1"
                );
                assert!(!answered, "the new limit precedes the rejection's answer");
                saw_limit = true;
                write_frame(&mut io, SETTINGS, ACK, 0, &[]).await;
            }
            HEADERS | DATA if f.stream == 1 => answered = f.flags & END_STREAM != 0,
            _ => {}
        }
    }
    assert!(saw_limit);

    // Now two streams at once: the second exceeds the acknowledged limit.
    write_frame(
        &mut io,
        HEADERS,
        END_STREAM | END_HEADERS,
        3,
        &bad_path_request(),
    )
    .await;
    write_frame(
        &mut io,
        HEADERS,
        END_STREAM | END_HEADERS,
        5,
        &bad_path_request(),
    )
    .await;
    let (mut refused, mut answered) = (false, false);
    while !(refused && answered) {
        let f = read_frame(&mut io).await;
        match (f.kind, f.stream) {
            (RST_STREAM, 5) => {
                assert_eq!(f.payload, REFUSED_STREAM.to_be_bytes());
                assert!(!answered, "refused at once, not after stream 3's latency");
                refused = true;
            }
            (HEADERS | DATA, 3) => answered |= f.flags & END_STREAM != 0,
            (RST_STREAM, s) => panic!("unexpected reset of stream {s}"),
            _ => {}
        }
    }
    let stats = mock.stats();
    assert_eq!(stats.stream_limit_drops, 1);
    assert_eq!(stats.refused_streams, 1);
    assert_eq!(stats.by_reason.get("BadPath"), Some(&2));
    mock.shutdown().await;
}
