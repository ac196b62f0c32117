//! UDP receive: the core driver reads the bound sockets itself; sends happen from the core
//! driver too ([`super::Transports::send`]).
//!
//! There is no receive task: a datagram read here is parsed and handled in the same turn of
//! the driver's loop. A task per socket feeding the driver through a channel cost a task wake
//! and a queue hop per datagram, i.e. per REGISTER answer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::net::UdpSocket;
use tracing::{debug, trace};
use vigil_proto::framing::{check_datagram, DatagramKind};
use vigil_proto::txn::Peer;

use super::{Inbound, InboundKind};

/// The largest UDP payload: one read always holds a whole datagram.
const MAX_DATAGRAM: usize = 65_535;

/// The bound UDP sockets, read by the core driver; see the module documentation.
#[derive(Debug)]
pub struct UdpReceiver {
    socks: Vec<Arc<UdpSocket>>,
    buf: Box<[u8]>,
    /// The socket [`Self::poll_ready`] looks at first: the one after the last read, so a
    /// flooded socket cannot starve the others.
    next: usize,
}

impl UdpReceiver {
    pub(super) fn new(socks: Vec<Arc<UdpSocket>>) -> Self {
        Self {
            socks,
            buf: vec![0u8; MAX_DATAGRAM].into_boxed_slice(),
            next: 0,
        }
    }

    /// Ready when some socket has a datagram (or an error) to read; returns its index for
    /// [`Self::read`]. Pending forever without sockets. Registers the waker of every socket
    /// that is not ready, so one wake covers them all.
    pub fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<usize> {
        let n = self.socks.len();
        for i in (0..n).map(|k| (self.next + k) % n) {
            if self.socks[i].poll_recv_ready(cx).is_ready() {
                return Poll::Ready(i);
            }
        }
        Poll::Pending
    }

    /// Waits for [`Self::poll_ready`].
    pub async fn ready(&self) -> usize {
        std::future::poll_fn(|cx| self.poll_ready(cx)).await
    }

    /// Reads up to `max` datagrams from socket `index` without waiting and hands each framed
    /// one to `handle`. Returns how many datagrams were read (keep-alives and unframable
    /// ones included); fewer than `max` means the socket is drained.
    pub fn read(&mut self, index: usize, max: usize, mut handle: impl FnMut(Inbound)) -> usize {
        let Some(sock) = self.socks.get(index) else {
            return 0;
        };
        self.next = (index + 1) % self.socks.len();
        let mut read = 0;
        while read < max {
            match sock.try_recv_from(&mut self.buf) {
                Ok((n, from)) => {
                    read += 1;
                    if let Some(item) = frame(&self.buf[..n], from) {
                        handle(item);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                // On Linux an ICMP port-unreachable for an earlier send surfaces here as
                // ConnectionRefused; it concerns that send, not this socket, so keep reading.
                Err(e) => {
                    read += 1;
                    debug!(error = %e, "UDP receive error");
                }
            }
        }
        read
    }
}

/// What the driver gets from one datagram: `None` for a keep-alive (nothing to handle).
fn frame(data: &[u8], from: SocketAddr) -> Option<Inbound> {
    let peer = Peer::udp(from);
    let kind = match check_datagram(data) {
        DatagramKind::KeepAlive => {
            trace!(%peer, "UDP keep-alive");
            return None;
        }
        DatagramKind::Message(range) => InboundKind::Message(Bytes::copy_from_slice(&data[range])),
        DatagramKind::Error(error) => {
            debug!(%peer, %error, len = data.len(), "unframable datagram");
            InboundKind::MalformedDatagram {
                bytes: Bytes::copy_from_slice(data),
                error,
            }
        }
        _ => return None,
    };
    Some(Inbound { peer, kind })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_messages_and_skips_keep_alives() {
        let from: SocketAddr = "192.0.2.1:5060".parse().unwrap();
        assert!(frame(b"\r\n\r\n", from).is_none());
        let msg = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 0\r\n\r\n";
        match frame(msg, from).map(|i| (i.peer, i.kind)) {
            Some((peer, InboundKind::Message(bytes))) => {
                assert_eq!(peer, Peer::udp(from));
                assert_eq!(&bytes[..], &msg[..]);
            }
            other => panic!("expected a message, got {other:?}"),
        }
        let short = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 10\r\n\r\nab";
        assert!(matches!(
            frame(short, from).map(|i| i.kind),
            Some(InboundKind::MalformedDatagram { .. })
        ));
    }

    #[tokio::test]
    async fn reads_what_arrived_then_reports_drained() {
        let sock = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let to = sock.local_addr().unwrap();
        let mut rx = UdpReceiver::new(vec![Arc::clone(&sock)]);
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for i in 0..3 {
            let m = format!("OPTIONS sip:{i}@b SIP/2.0\r\nContent-Length: 0\r\n\r\n");
            sender.send_to(m.as_bytes(), to).unwrap();
        }
        sender.send_to(b"\r\n\r\n", to).unwrap();
        let mut got = Vec::new();
        let mut read = 0;
        while read < 4 {
            let i = rx.ready().await;
            assert_eq!(i, 0);
            read += rx.read(i, 2, |item| got.push(item));
        }
        assert_eq!(read, 4, "two reads of at most two datagrams each");
        assert_eq!(got.len(), 3, "the keep-alive is not handed on");
        for (i, item) in got.iter().enumerate() {
            match &item.kind {
                InboundKind::Message(b) => {
                    assert!(b.starts_with(format!("OPTIONS sip:{i}@").as_bytes()))
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(rx.read(0, 8, |_| panic!("nothing is left")), 0);
    }

    #[tokio::test]
    async fn a_busy_socket_does_not_starve_the_other() {
        let a = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let b = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let (to_a, to_b) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let mut rx = UdpReceiver::new(vec![a, b]);
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let m = b"OPTIONS sip:x@b SIP/2.0\r\nContent-Length: 0\r\n\r\n";
        for _ in 0..4 {
            sender.send_to(m, to_a).unwrap();
        }
        sender.send_to(m, to_b).unwrap();
        // Wait until both sockets have their datagrams, then read one at a time.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let first = rx.ready().await;
        assert_eq!(first, 0);
        assert_eq!(rx.read(first, 1, |_| {}), 1);
        assert_eq!(
            rx.ready().await,
            1,
            "the other socket's turn, though the first is busy"
        );
    }
}
