//! Where a request really came from, recorded in its top Via (RFC 3261 §18.2.1, RFC 3581).
//!
//! The server transport adds `received` when the Via's sent-by host is not the packet's
//! source address, and fills in an empty `rport` with the source port (and then always adds
//! `received`). Responses copy the Vias, so a NATed client and every proxy on the way back see
//! the address the gateway saw. The transaction layer already sends responses back to the
//! source address and port; this only keeps the Via truthful.

use std::net::{IpAddr, SocketAddr};

use vigil_proto::msg::{HeaderName, Message};

/// The request with its top Via stamped, or `None` when nothing needs to change (or the
/// message is a response, or its Via cannot be read).
pub fn stamp_top_via(msg: &Message, source: SocketAddr) -> Option<Message> {
    if !msg.is_request() {
        return None;
    }
    let via = msg.top_via().ok()?;
    let host = via.host().trim_start_matches('[').trim_end_matches(']');
    let host_is_source = host.parse::<IpAddr>().ok() == Some(source.ip());
    let rport_requested = matches!(via.rport(), Some(None));
    if host_is_source && !rport_requested {
        return None;
    }
    let raw = msg.header_values(HeaderName::Via).next()?.trim();
    // Via parameters are tokens and addresses: no quoted strings, so ';' splits safely.
    let mut parts = raw.split(';');
    let mut stamped = parts.next()?.trim_end().to_owned();
    for param in parts {
        let name = param.split('=').next().unwrap_or("").trim();
        if name.eq_ignore_ascii_case("received") {
            continue;
        }
        stamped.push(';');
        if name.eq_ignore_ascii_case("rport") && rport_requested {
            stamped.push_str(&format!("rport={}", source.port()));
        } else {
            stamped.push_str(param.trim());
        }
    }
    stamped.push_str(&format!(";received={}", source.ip()));
    Some(
        msg.edit()
            .remove_top_via()
            .prepend_header(HeaderName::Via, &stamped)
            .finish(),
    )
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn req(via: &str) -> Message {
        let text = format!(
            "OPTIONS sip:gw@127.0.0.1 SIP/2.0\r\n\
             Via: {via}\r\n\
             Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKp\r\n\
             From: <sip:a@example.com>;tag=1\r\nTo: <sip:gw@127.0.0.1>\r\n\
             Call-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        Message::parse(Bytes::from(text)).unwrap()
    }

    fn top(m: &Message) -> String {
        m.header_values(HeaderName::Via).next().unwrap().to_owned()
    }

    #[test]
    fn adds_received_when_sent_by_differs() {
        let src: SocketAddr = "198.51.100.7:6000".parse().unwrap();
        let m = stamp_top_via(&req("SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKa"), src).unwrap();
        assert_eq!(
            top(&m),
            "SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKa;received=198.51.100.7"
        );
        let v = m.top_via().unwrap();
        assert_eq!(v.branch(), Some("z9hG4bKa"));
        assert_eq!(m.vias().count(), 2, "other Vias kept");
        assert_eq!(m.call_id().unwrap(), "c");
    }

    #[test]
    fn fills_rport_and_always_adds_received_then() {
        let src: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let m = stamp_top_via(
            &req("SIP/2.0/UDP 127.0.0.1:5060;rport;branch=z9hG4bKb"),
            src,
        )
        .unwrap();
        let v = m.top_via().unwrap();
        assert_eq!(v.rport(), Some(Some(40000)));
        assert_eq!(v.received(), Some("127.0.0.1"));
        assert_eq!(v.branch(), Some("z9hG4bKb"));
    }

    #[test]
    fn leaves_matching_sources_alone() {
        let src: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        assert!(stamp_top_via(&req("SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKc"), src).is_none());
        let v6: SocketAddr = "[2001:db8::1]:5060".parse().unwrap();
        assert!(
            stamp_top_via(&req("SIP/2.0/TCP [2001:db8::1]:5060;branch=z9hG4bKd"), v6).is_none()
        );
    }
}
