//! Where a message comes from or goes to: plain data, no sockets.
//!
//! The core never owns a socket. It names the far end of a flow as a [`Peer`] (transport plus
//! socket address) and hands outgoing bytes to the shell as a [`Transmit`]; the shell owns the
//! UDP sockets and the TCP/TLS connections behind each peer.

use std::fmt;
use std::net::SocketAddr;

use bytes::Bytes;

/// The transport a message travels on. Reliability changes the transaction timers
/// (RFC 3261 §17: no retransmission timers, zero linger on reliable transports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Transport {
    /// Datagrams: the transaction layer retransmits.
    Udp,
    /// A TCP connection: reliable, in order.
    Tcp,
    /// A TLS connection over TCP: reliable, in order.
    Tls,
}

impl Transport {
    /// Whether the transport delivers reliably (RFC 3261 §17: "reliable transport").
    pub fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// The token used in a Via header's sent-protocol (`SIP/2.0/UDP`).
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }

    /// Parses a Via transport token, case-insensitively. Unknown transports yield `None`.
    pub fn from_via_token(token: &str) -> Option<Self> {
        if token.eq_ignore_ascii_case("UDP") {
            Some(Transport::Udp)
        } else if token.eq_ignore_ascii_case("TCP") {
            Some(Transport::Tcp)
        } else if token.eq_ignore_ascii_case("TLS") {
            Some(Transport::Tls)
        } else {
            None
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.via_token())
    }
}

/// The far end of a flow: a transport and a socket address. Plain data; the shell maps it to
/// a socket or a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Peer {
    /// The transport used to reach the peer.
    pub transport: Transport,
    /// The peer's address (for received messages: the packet's source address).
    pub addr: SocketAddr,
}

impl Peer {
    /// A peer over UDP.
    pub fn udp(addr: SocketAddr) -> Self {
        Self {
            transport: Transport::Udp,
            addr,
        }
    }

    /// A peer over TCP.
    pub fn tcp(addr: SocketAddr) -> Self {
        Self {
            transport: Transport::Tcp,
            addr,
        }
    }

    /// A peer over TLS.
    pub fn tls(addr: SocketAddr) -> Self {
        Self {
            transport: Transport::Tls,
            addr,
        }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.transport, self.addr)
    }
}

/// Bytes the core wants sent: one datagram (UDP) or one framed message (TCP/TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send them.
    pub peer: Peer,
    /// The wire form of one SIP message.
    pub bytes: Bytes,
}
