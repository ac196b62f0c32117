//! A small authoritative DNS responder for tests (hickory-proto messages over UDP on
//! 127.0.0.1) serving a table of NAPTR, SRV, A and AAAA records, and helpers to build one.

#![allow(dead_code)] // Each test binary uses a different subset.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, NAPTR, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::net::UdpSocket;
use vigil_gateway::resolve::{UpstreamResolver, UpstreamResolverConfig};
use vigil_proto::txn::{Peer, Transport};

/// Records by (lower-case name with trailing dot, type).
pub type Zone = HashMap<(String, RecordType), Vec<(RData, u32)>>;

/// The responder: answers from the zone, NXDOMAIN for names it does not hold at all,
/// NODATA for other types of names it holds. Logs every question.
pub struct Dns {
    pub addr: SocketAddr,
    asked: Arc<Mutex<Vec<(String, RecordType)>>>,
}

impl Dns {
    pub async fn start(zone: Zone) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let log = asked.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(query) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let reply = answer(&zone, &query, &log);
                let _ = socket.send_to(&reply, from).await;
            }
        });
        Self { addr, asked }
    }

    pub fn asked(&self) -> Vec<(String, RecordType)> {
        self.asked.lock().unwrap().clone()
    }

    pub fn resolver(&self) -> UpstreamResolver {
        UpstreamResolver::new(
            UpstreamResolverConfig {
                name_servers: vec![self.addr],
                timeout: Duration::from_secs(2),
                ..UpstreamResolverConfig::default()
            },
            7,
        )
        .unwrap()
    }
}

pub fn answer(zone: &Zone, query: &Message, log: &Mutex<Vec<(String, RecordType)>>) -> Vec<u8> {
    let mut reply = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.metadata.authoritative = true;
    for q in &query.queries {
        let name = q.name.to_ascii().to_ascii_lowercase();
        log.lock().unwrap().push((name.clone(), q.query_type));
        reply.queries.push(q.clone());
        match zone.get(&(name.clone(), q.query_type)) {
            Some(records) => {
                for (data, ttl) in records {
                    reply
                        .answers
                        .push(Record::from_rdata(q.name.clone(), *ttl, data.clone()));
                }
            }
            None if zone.keys().any(|(n, _)| *n == name) => {}
            None => reply.metadata.response_code = ResponseCode::NXDomain,
        }
    }
    reply.to_vec().unwrap()
}

pub fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

pub fn naptr(order: u16, service: &str, replacement: &str) -> (RData, u32) {
    (
        RData::NAPTR(NAPTR::new(
            order,
            10,
            b"s".to_vec().into_boxed_slice(),
            service.as_bytes().to_vec().into_boxed_slice(),
            Vec::new().into_boxed_slice(),
            name(replacement),
        )),
        3600,
    )
}

pub fn srv(priority: u16, weight: u16, port: u16, target: &str) -> (RData, u32) {
    (
        RData::SRV(SRV::new(priority, weight, port, name(target))),
        600,
    )
}

pub fn a(ip: &str, ttl: u32) -> (RData, u32) {
    match ip.parse::<IpAddr>().unwrap() {
        IpAddr::V4(v4) => (RData::A(A(v4)), ttl),
        IpAddr::V6(v6) => (RData::AAAA(AAAA(v6)), ttl),
    }
}

pub fn peer(t: Transport, addr: &str) -> Peer {
    Peer {
        transport: t,
        addr: addr.parse().unwrap(),
    }
}

/// One name's records of one type, with their TTLs.
pub type ZoneEntry<'a> = (&'a str, RecordType, Vec<(RData, u32)>);

pub fn zone(entries: Vec<ZoneEntry<'_>>) -> Zone {
    entries
        .into_iter()
        .map(|(n, t, r)| ((n.to_owned(), t), r))
        .collect()
}
