//! UDP receive: the core driver reads the bound sockets itself; sends happen from the core
//! driver too ([`super::Transports::send`]).
//!
//! There is no receive task: a datagram read here is parsed and handled in the same turn of
//! the driver's loop. A task per socket feeding the driver through a channel cost a task wake
//! and a queue hop per datagram, i.e. per REGISTER answer.
//!
//! Interrupt moderation (Linux). The sockets are not registered with tokio's reactor, whose
//! edge-triggered interest would wake the runtime thread for every datagram even when nobody
//! waits for it. They sit in an epoll set of their own with `EPOLLONESHOT`, and that set's
//! descriptor is what tokio watches. A socket that was read until empty is *parked*: its
//! interest stays disarmed, so new datagrams wake nobody. The driver then either re-arms it
//! ([`UdpReceiver::rearm`], when it has nothing due soon) or, when it will wake within a
//! quantum anyway for its own deadlines, reads the parked sockets on that wake
//! ([`UdpReceiver::read_parked`]). Under load (a paced burst of REGISTERs every couple of
//! milliseconds, their answers arriving one by one) the answers are then read in one batch
//! per wake instead of waking the thread once or twice per burst; when idle, a datagram
//! wakes the driver at once as before. Elsewhere each socket is registered with tokio as
//! usual and parking is a no-op.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tracing::{debug, trace, warn};
use vigil_proto::framing::{check_datagram, DatagramKind};
use vigil_proto::txn::Peer;

use super::{Inbound, InboundKind};

/// The largest UDP payload: one read always holds a whole datagram.
const MAX_DATAGRAM: usize = 65_535;

/// Where a socket stands with respect to wake-ups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Interest armed: a datagram makes [`UdpReceiver::poll_ready`] ready.
    Armed,
    /// Known to hold datagrams (reported by the interest set, or left after a full batch).
    Ready,
    /// Read until empty with its interest disarmed: new datagrams wake nobody until
    /// [`UdpReceiver::rearm`]; [`UdpReceiver::read_parked`] reads them meanwhile.
    Parked,
}

/// The bound UDP sockets, read by the core driver; see the module documentation.
#[derive(Debug)]
pub struct UdpReceiver {
    socks: Vec<Arc<UdpSocket>>,
    state: Vec<State>,
    interest: Interest,
    buf: Box<[u8]>,
    /// The socket [`Self::poll_ready`] looks at first: the one after the last read, so a
    /// flooded socket cannot starve the others.
    next: usize,
}

impl UdpReceiver {
    /// Takes non-blocking sockets that no reactor watches yet. Needs a tokio runtime.
    pub(super) fn new(socks: Vec<Arc<UdpSocket>>) -> std::io::Result<Self> {
        Ok(Self {
            interest: Interest::new(&socks)?,
            state: vec![State::Armed; socks.len()],
            socks,
            buf: vec![0u8; MAX_DATAGRAM].into_boxed_slice(),
            next: 0,
        })
    }

    /// Ready when some socket has a datagram (or an error) to read; returns its index for
    /// [`Self::read`]. Pending forever without sockets; parked sockets never make it ready.
    /// Registers one waker that covers every armed socket.
    pub fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<usize> {
        loop {
            let n = self.socks.len();
            if let Some(i) = (0..n)
                .map(|k| (self.next + k) % n)
                .find(|&i| self.state[i] == State::Ready)
            {
                return Poll::Ready(i);
            }
            if self.interest.poll_harvest(cx, &mut self.state).is_pending() {
                return Poll::Pending;
            }
        }
    }

    /// Waits for [`Self::poll_ready`].
    pub async fn ready(&mut self) -> usize {
        std::future::poll_fn(|cx| self.poll_ready(cx)).await
    }

    /// Reads up to `max` datagrams from socket `index` without waiting and hands each framed
    /// one to `handle`. Returns how many datagrams were read (keep-alives and unframable
    /// ones included). Fewer than `max` means the socket is drained: it is then parked until
    /// [`Self::rearm`].
    pub fn read(&mut self, index: usize, max: usize, handle: impl FnMut(Inbound)) -> usize {
        if index >= self.socks.len() {
            return 0;
        }
        self.next = (index + 1) % self.socks.len();
        let sock = (&self.interest, &*self.socks[index], index);
        let (read, drained) = drain(sock, &mut self.buf, max, handle);
        self.state[index] = if !drained {
            State::Ready
        } else if self.interest.parks() {
            State::Parked
        } else {
            State::Armed
        };
        read
    }

    /// Whether some socket is parked: the driver must either wake within its quantum and
    /// [`Self::read_parked`], or [`Self::rearm`] before it sleeps.
    pub fn has_parked(&self) -> bool {
        self.state.contains(&State::Parked)
    }

    /// Reads every parked socket (up to `max` datagrams each) without re-arming it. A socket
    /// that still holds datagrams after `max` becomes ready. Returns the datagrams read.
    pub fn read_parked(&mut self, max: usize, mut handle: impl FnMut(Inbound)) -> usize {
        let mut total = 0;
        for i in 0..self.socks.len() {
            if self.state[i] == State::Parked {
                let sock = (&self.interest, &*self.socks[i], i);
                let (read, drained) = drain(sock, &mut self.buf, max, &mut handle);
                total += read;
                if !drained {
                    self.state[i] = State::Ready;
                }
            }
        }
        total
    }

    /// Re-arms the interest of every parked socket; one holding datagrams already makes
    /// [`Self::poll_ready`] ready at once. A socket that cannot be re-armed stays parked
    /// (logged): [`Self::has_parked`] stays true, and the driver polls it on its quantum.
    pub fn rearm(&mut self) {
        for i in 0..self.socks.len() {
            if self.state[i] == State::Parked {
                match self.interest.rearm(&self.socks[i], i) {
                    Ok(()) => self.state[i] = State::Armed,
                    Err(error) => warn!(%error, "UDP socket not re-armed: polled instead"),
                }
            }
        }
    }
}

/// Reads `sock` until it is empty or `max` datagrams were read; returns the count and
/// whether the socket was found empty.
fn drain(
    (interest, sock, index): (&Interest, &UdpSocket, usize),
    buf: &mut [u8],
    max: usize,
    mut handle: impl FnMut(Inbound),
) -> (usize, bool) {
    let mut read = 0;
    while read < max {
        match interest.recv_from(sock, index, buf) {
            Ok((n, from)) => {
                read += 1;
                if let Some(item) = frame(&buf[..n], from) {
                    handle(item);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return (read, true),
            // On Linux an ICMP port-unreachable for an earlier send surfaces here as
            // ConnectionRefused; it concerns that send, not this socket, so keep reading.
            Err(e) => {
                read += 1;
                debug!(error = %e, "UDP receive error");
            }
        }
    }
    (read, false)
}

/// The sockets' one-shot epoll set, watched by tokio through its descriptor.
#[cfg(target_os = "linux")]
#[derive(Debug)]
struct Interest {
    epoll: tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>,
}

#[cfg(target_os = "linux")]
impl Interest {
    fn flags() -> rustix::event::epoll::EventFlags {
        use rustix::event::epoll::EventFlags;
        EventFlags::IN | EventFlags::ONESHOT
    }

    fn new(socks: &[Arc<UdpSocket>]) -> std::io::Result<Self> {
        use rustix::event::epoll;
        let fd = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        for (i, s) in socks.iter().enumerate() {
            epoll::add(
                &fd,
                s.as_ref(),
                epoll::EventData::new_u64(i as u64),
                Self::flags(),
            )?;
        }
        // `with_interest` is deprecated because an arbitrary `AsRawFd` may change or close
        // its descriptor behind tokio's back; an `OwnedFd` owns its descriptor for exactly
        // the `AsyncFd`'s lifetime, which is what the unsafe replacement asks its caller to
        // promise (and the workspace forbids `unsafe`).
        #[allow(deprecated)]
        let epoll = tokio::io::unix::AsyncFd::with_interest(fd, tokio::io::Interest::READABLE)?;
        Ok(Self { epoll })
    }

    fn parks(&self) -> bool {
        true
    }

    fn recv_from(
        &self,
        sock: &UdpSocket,
        _index: usize,
        buf: &mut [u8],
    ) -> std::io::Result<(usize, SocketAddr)> {
        sock.recv_from(buf)
    }

    /// Moves the sockets the set reports (disarming them: one-shot) to `Ready`. Pending,
    /// with a wake registered, when the set has nothing to report; ready when it looked
    /// (the caller checks the states and asks again if none became ready).
    fn poll_harvest(&self, cx: &mut Context<'_>, state: &mut [State]) -> Poll<()> {
        use rustix::event::epoll;
        let mut guard = match self.epoll.poll_read_ready(cx) {
            Poll::Ready(Ok(g)) => g,
            Poll::Ready(Err(error)) => {
                // Only when the runtime is shutting down.
                debug!(%error, "UDP interest set unusable");
                return Poll::Pending;
            }
            Poll::Pending => return Poll::Pending,
        };
        let empty = epoll::Event {
            flags: epoll::EventFlags::empty(),
            data: epoll::EventData::new_u64(0),
        };
        let mut events = [empty; 8];
        let zero = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        loop {
            let n = match epoll::wait(self.epoll.get_ref(), &mut events[..], Some(&zero)) {
                Ok(n) => n,
                Err(error) => {
                    debug!(%error, "UDP interest set not read");
                    break;
                }
            };
            for e in &events[..n] {
                if let Some(s) = state.get_mut(e.data.u64() as usize) {
                    *s = State::Ready;
                }
            }
            if n < events.len() {
                break;
            }
        }
        // Every reported socket is disarmed now: the set stays quiet until one is re-armed,
        // and a re-arm or a datagram after this point signals tokio afresh.
        guard.clear_ready();
        Poll::Ready(())
    }

    fn rearm(&self, sock: &UdpSocket, index: usize) -> std::io::Result<()> {
        use rustix::event::epoll;
        epoll::modify(
            self.epoll.get_ref(),
            sock,
            epoll::EventData::new_u64(index as u64),
            Self::flags(),
        )?;
        Ok(())
    }
}

/// Elsewhere: each socket registered with tokio (a clone of the descriptor that sends).
#[cfg(not(target_os = "linux"))]
#[derive(Debug)]
struct Interest {
    socks: Vec<tokio::net::UdpSocket>,
}

#[cfg(not(target_os = "linux"))]
impl Interest {
    fn new(socks: &[Arc<UdpSocket>]) -> std::io::Result<Self> {
        let socks = socks
            .iter()
            .map(|s| tokio::net::UdpSocket::from_std(s.try_clone()?))
            .collect::<std::io::Result<_>>()?;
        Ok(Self { socks })
    }

    fn parks(&self) -> bool {
        false
    }

    /// Through tokio's handle, so that running dry clears its readiness.
    fn recv_from(
        &self,
        _sock: &UdpSocket,
        index: usize,
        buf: &mut [u8],
    ) -> std::io::Result<(usize, SocketAddr)> {
        self.socks[index].try_recv_from(buf)
    }

    fn poll_harvest(&self, cx: &mut Context<'_>, state: &mut [State]) -> Poll<()> {
        let mut found = false;
        for (s, st) in self.socks.iter().zip(state.iter_mut()) {
            if s.poll_recv_ready(cx).is_ready() {
                *st = State::Ready;
                found = true;
            }
        }
        if found {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    fn rearm(&self, _sock: &UdpSocket, _index: usize) -> std::io::Result<()> {
        Ok(())
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
    use std::time::Duration;

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

    fn bound() -> (Arc<UdpSocket>, SocketAddr) {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_nonblocking(true).unwrap();
        let addr = sock.local_addr().unwrap();
        (Arc::new(sock), addr)
    }

    fn options(i: usize) -> String {
        format!("OPTIONS sip:{i}@b SIP/2.0\r\nContent-Length: 0\r\n\r\n")
    }

    #[tokio::test]
    async fn reads_what_arrived_then_reports_drained() {
        let (sock, to) = bound();
        let mut rx = UdpReceiver::new(vec![sock]).unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        for i in 0..3 {
            sender.send_to(options(i).as_bytes(), to).unwrap();
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
        let (a, to_a) = bound();
        let (b, to_b) = bound();
        let mut rx = UdpReceiver::new(vec![a, b]).unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let m = options(0);
        for _ in 0..4 {
            sender.send_to(m.as_bytes(), to_a).unwrap();
        }
        sender.send_to(m.as_bytes(), to_b).unwrap();
        // Wait until both sockets have their datagrams, then read one at a time.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let first = rx.ready().await;
        assert_eq!(first, 0);
        assert_eq!(rx.read(first, 1, |_| {}), 1);
        assert_eq!(
            rx.ready().await,
            1,
            "the other socket's turn, though the first is busy"
        );
    }

    /// Whether `ready` resolves within a short wait.
    async fn wakes(rx: &mut UdpReceiver) -> Option<usize> {
        tokio::time::timeout(Duration::from_millis(100), rx.ready())
            .await
            .ok()
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_drained_socket_is_parked_until_rearmed() {
        let (sock, to) = bound();
        let mut rx = UdpReceiver::new(vec![sock]).unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let count = |rx: &mut UdpReceiver| {
            let mut n = 0;
            rx.read_parked(8, |_| n += 1);
            n
        };

        sender.send_to(options(1).as_bytes(), to).unwrap();
        assert_eq!(
            wakes(&mut rx).await,
            Some(0),
            "an armed socket wakes the reader"
        );
        assert_eq!(rx.read(0, 8, |_| {}), 1);
        assert!(rx.has_parked(), "read until empty: parked");

        // Parked: a datagram wakes nobody, but a poll on the driver's own wake reads it.
        sender.send_to(options(2).as_bytes(), to).unwrap();
        assert_eq!(
            wakes(&mut rx).await,
            None,
            "a parked socket must not wake the reader"
        );
        assert_eq!(count(&mut rx), 1);
        assert!(rx.has_parked(), "reading a parked socket leaves it parked");

        // Re-armed while a datagram waits: the reader wakes at once.
        sender.send_to(options(3).as_bytes(), to).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        rx.rearm();
        assert!(!rx.has_parked());
        assert_eq!(
            wakes(&mut rx).await,
            Some(0),
            "re-armed with a datagram pending"
        );
        assert_eq!(rx.read(0, 8, |_| {}), 1);

        // Re-armed when empty: the next datagram wakes it.
        rx.rearm();
        assert_eq!(wakes(&mut rx).await, None);
        sender.send_to(options(4).as_bytes(), to).unwrap();
        assert_eq!(wakes(&mut rx).await, Some(0));
        assert_eq!(rx.read(0, 8, |_| {}), 1);
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_parked_socket_with_more_than_a_batch_becomes_ready() {
        let (sock, to) = bound();
        let mut rx = UdpReceiver::new(vec![sock]).unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        sender.send_to(options(0).as_bytes(), to).unwrap();
        assert_eq!(wakes(&mut rx).await, Some(0));
        assert_eq!(rx.read(0, 8, |_| {}), 1);
        for i in 1..=5 {
            sender.send_to(options(i).as_bytes(), to).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(rx.read_parked(3, |_| {}), 3);
        assert!(
            !rx.has_parked(),
            "left over after a batch: no longer parked"
        );
        assert_eq!(wakes(&mut rx).await, Some(0), "and ready without an event");
        assert_eq!(rx.read(0, 8, |_| {}), 2);
        assert!(rx.has_parked());
    }
}
