//! RFC 3263 upstream location against a real DNS server: a small authoritative responder
//! (hickory-proto messages over UDP on 127.0.0.1) serving a table of NAPTR, SRV, A and AAAA
//! records, started inside each test. Covers NAPTR → SRV → A, SRV only, A only, the failover
//! order, the outbound proxy's precedence, the TTL cache, and NXDOMAIN.

// Tests panic on the unexpected: unwrap is the assertion.
#![allow(clippy::unwrap_used)]

mod dns;

use std::time::{Duration, Instant};

use dns::*;
use hickory_proto::rr::RecordType;
use vigil_gateway::resolve::{Failure, ResolveError, UpstreamResolver, UpstreamResolverConfig};
use vigil_proto::resolve::ResolveError as Locate;
use vigil_proto::txn::Transport;

/// RFC 3263's example: NAPTR prefers TCP over UDP; SRV gives two TCP servers by priority.
fn operator_zone() -> Zone {
    zone(vec![
        (
            "example.com.",
            RecordType::NAPTR,
            vec![
                naptr(100, "SIP+D2U", "_sip._udp.example.com."),
                naptr(90, "SIP+D2T", "_sip._tcp.example.com."),
            ],
        ),
        (
            "_sip._tcp.example.com.",
            RecordType::SRV,
            vec![
                srv(20, 0, 5070, "backup.example.com."),
                srv(10, 0, 5060, "primary.example.com."),
            ],
        ),
        (
            "_sip._udp.example.com.",
            RecordType::SRV,
            vec![srv(10, 0, 5060, "primary.example.com.")],
        ),
        (
            "primary.example.com.",
            RecordType::A,
            vec![a("192.0.2.1", 300)],
        ),
        (
            "primary.example.com.",
            RecordType::AAAA,
            vec![a("2001:db8::1", 300)],
        ),
        (
            "backup.example.com.",
            RecordType::A,
            vec![a("192.0.2.2", 120)],
        ),
    ])
}

#[tokio::test]
async fn naptr_then_srv_then_addresses_with_failover_in_order() {
    let dns = Dns::start(operator_zone()).await;
    let resolver = dns.resolver();
    let now = Instant::now();
    let mut set = resolver
        .resolve_upstream("example.com", None, None, now)
        .await
        .unwrap();
    assert_eq!(
        set.targets(),
        &[
            peer(Transport::Tcp, "192.0.2.1:5060"),
            peer(Transport::Tcp, "[2001:db8::1]:5060"),
            peer(Transport::Tcp, "192.0.2.2:5070"),
            peer(Transport::Udp, "192.0.2.1:5060"),
            peer(Transport::Udp, "[2001:db8::1]:5060"),
        ]
    );
    let asked = dns.asked();
    assert_eq!(asked[0], ("example.com.".into(), RecordType::NAPTR));
    // The TTL bound is the backup's 120 s A record.
    assert_eq!(set.expires_at(), now + Duration::from_secs(120));
    // A timeout, a transport error and a 503 each move to the next target, in order.
    let first = set.current().unwrap();
    let second = set.handle_failure(first, Failure::Timeout).unwrap();
    let third = set.handle_failure(second, Failure::TransportError).unwrap();
    assert_eq!(third, peer(Transport::Tcp, "192.0.2.2:5070"));
    let fourth = set
        .handle_failure(third, Failure::from_status(503).unwrap())
        .unwrap();
    assert_eq!(fourth.transport, Transport::Udp);
}

#[tokio::test]
async fn srv_only_a_only_and_explicit_port() {
    let dns = Dns::start(zone(vec![
        (
            "_sip._udp.srv-only.example.",
            RecordType::SRV,
            vec![srv(0, 5, 5080, "sip1.srv-only.example.")],
        ),
        ("srv-only.example.", RecordType::SOA, vec![]),
        (
            "sip1.srv-only.example.",
            RecordType::A,
            vec![a("192.0.2.10", 60)],
        ),
        ("a-only.example.", RecordType::A, vec![a("192.0.2.20", 60)]),
    ]))
    .await;
    let resolver = dns.resolver();
    let now = Instant::now();
    let set = resolver
        .resolve_upstream("srv-only.example", None, None, now)
        .await
        .unwrap();
    assert_eq!(set.targets(), &[peer(Transport::Udp, "192.0.2.10:5080")]);
    let set = resolver
        .resolve_upstream("a-only.example", None, None, now)
        .await
        .unwrap();
    assert_eq!(set.targets(), &[peer(Transport::Udp, "192.0.2.20:5060")]);
    // A port in the URI: only A/AAAA are asked.
    let before = dns.asked().len();
    let set = resolver
        .resolve_upstream("a-only.example:5099", None, Some(Transport::Tcp), now)
        .await
        .unwrap();
    assert_eq!(set.targets(), &[peer(Transport::Tcp, "192.0.2.20:5099")]);
    assert!(dns.asked()[before..]
        .iter()
        .all(|(_, t)| matches!(t, RecordType::A | RecordType::AAAA)));
}

#[tokio::test]
async fn outbound_proxy_wins_and_results_are_cached_for_their_ttl() {
    let mut z = operator_zone();
    z.insert(
        ("sbc.example.net.".into(), RecordType::A),
        vec![a("198.51.100.5", 60)],
    );
    let dns = Dns::start(z).await;
    let resolver = dns.resolver();
    let now = Instant::now();
    let set = resolver
        .resolve_upstream("example.com", Some("sbc.example.net:5062"), None, now)
        .await
        .unwrap();
    assert_eq!(set.targets(), &[peer(Transport::Udp, "198.51.100.5:5062")]);
    assert!(dns.asked().iter().all(|(n, _)| n == "sbc.example.net."));
    // A gateway-wide proxy applies when the account has none.
    let gw = UpstreamResolver::new(
        UpstreamResolverConfig {
            name_servers: vec![dns.addr],
            outbound_proxy: Some("sbc.example.net".into()),
            outbound_proxy_transport: Some(Transport::Tcp),
            ..UpstreamResolverConfig::default()
        },
        1,
    )
    .unwrap();
    let set = gw
        .resolve_upstream("example.com", None, None, now)
        .await
        .unwrap();
    assert_eq!(set.targets(), &[peer(Transport::Tcp, "198.51.100.5:5060")]);
    // Within the TTL, a second resolution asks nothing; after it, DNS is asked again.
    let asked = dns.asked().len();
    resolver
        .resolve_upstream("example.com", None, None, now)
        .await
        .unwrap();
    let after_first = dns.asked().len();
    assert!(after_first > asked);
    let again = resolver
        .resolve_upstream("example.com", None, None, now + Duration::from_secs(119))
        .await
        .unwrap();
    assert_eq!(dns.asked().len(), after_first, "served from the cache");
    assert_eq!(
        again.current(),
        Some(peer(Transport::Tcp, "192.0.2.1:5060"))
    );
    resolver
        .resolve_upstream("example.com", None, None, now + Duration::from_secs(121))
        .await
        .unwrap();
    assert!(dns.asked().len() > after_first, "expired: asked again");
}

#[tokio::test]
async fn nxdomain_is_a_clear_error() {
    let dns = Dns::start(operator_zone()).await;
    let resolver = dns.resolver();
    let err = resolver
        .resolve_upstream("no-such-operator.example", None, None, Instant::now())
        .await
        .unwrap_err();
    assert_eq!(err, ResolveError::Locate(Locate::NoSuchDomain));
    assert_eq!(err.to_string(), "domain does not exist");
    let err = resolver
        .resolve_upstream("bad host", None, None, Instant::now())
        .await
        .unwrap_err();
    assert_eq!(err, ResolveError::Locate(Locate::InvalidTarget));
}
