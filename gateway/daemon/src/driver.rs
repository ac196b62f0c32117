//! The core driver: the one task that owns the sans-IO transaction layer and, when the
//! intake API runs, the registration engine ([`RegDriver`]).
//!
//! Run loop (str0m style): wait for the first of a readable UDP socket (read here, without a
//! task or queue in between), an inbound item from a TCP/TLS connection task, a registration
//! command, the next deadline of either core, or shutdown; feed it in with the current time
//! (`handle_incoming` / `handle_timeout` / `handle_transport_error` / the binding operations);
//! then drain `poll_event` into the UAS (or the API's binding state) and `poll_transmit` into
//! the transports. The driver reads the clock; the cores never do. It never awaits anything
//! but its inputs: sends are non-blocking queue operations.
//!
//! Under load the loop wakes about once per `TIMER_QUANTUM`: a UDP socket read until empty
//! is parked (its interest disarmed, see [`crate::transport::UdpReceiver`]) while the next
//! deadline is within a quantum, and read on that wake; otherwise it is re-armed before the
//! driver sleeps, so an idle gateway still answers a datagram at once.
//!
//! Routing between the two cores: a response whose CSeq method is REGISTER, and an OPTIONS
//! ping from an upstream registrar, go to the engine (which alone sends REGISTERs); every
//! other message goes to the UAS transaction layer. A transport error goes to both.

use std::time::Instant;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, trace, warn};
use vigil_proto::msg::Message;
use vigil_proto::txn::{Peer, Rejection, Transactions, Transport, TxnConfig, TxnEvent};

use crate::api::registrar::RegCommand;
use crate::regdriver::RegDriver;
use crate::transport::{Inbound, InboundKind, SendFailure, Transports, UdpReceiver};
use crate::uas::Uas;

/// Registration commands applied per loop turn at most, so that a restart's backlog of a
/// million re-registrations does not keep inbound messages and timers waiting.
const COMMAND_BATCH: usize = 512;

/// Inbound messages (from the stream channel, and datagrams from a UDP socket) handled per
/// wake before the outputs are drained: a burst of responses costs one pass over the queues
/// and one timer re-arm, not one each.
const INBOUND_BATCH: usize = 256;

/// The shortest time between two rounds of deadline handling. Deadlines are paced sends
/// (hundreds to thousands a second) and transaction timers (≥ 500 ms): waking at most this
/// often lets one wake send a few paced REGISTERs together, at a delay nobody notices.
const TIMER_QUANTUM: std::time::Duration = std::time::Duration::from_millis(2);

/// Owns the transaction layer, the UAS and the registration engine; see the module
/// documentation.
#[derive(Debug)]
pub struct CoreDriver {
    txns: Transactions,
    uas: Uas,
    transports: Transports,
    reg: Option<RegDriver>,
}

impl CoreDriver {
    /// A driver with the RFC's transaction timers and no registration engine.
    pub fn new(transports: Transports, config: TxnConfig) -> Self {
        Self {
            txns: Transactions::new(config),
            uas: Uas::new(),
            transports,
            reg: None,
        }
    }

    /// Adds the registration engine; its commands come through the channel given to
    /// [`Self::run`].
    pub fn with_registrations(mut self, reg: RegDriver) -> Self {
        self.reg = Some(reg);
        self
    }

    /// The earliest deadline of either core.
    fn poll_timeout(&self) -> Option<Instant> {
        let reg = self.reg.as_ref().and_then(RegDriver::poll_timeout);
        match (self.txns.poll_timeout(), reg) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.txns.handle_timeout(now);
        if let Some(reg) = &mut self.reg {
            reg.handle_timeout(now);
        }
    }

    /// Runs until `shutdown` fires; then answers what is already queued, flushes, and closes
    /// every connection's write queue so the connection tasks can finish. `commands` feeds
    /// the registration engine (ignored without one).
    pub async fn run(
        mut self,
        udp: UdpReceiver,
        mut inbound: mpsc::Receiver<Inbound>,
        mut commands: Option<mpsc::UnboundedReceiver<RegCommand>>,
        shutdown: CancellationToken,
    ) {
        if self.reg.is_none() {
            commands = None;
        }
        let mut udp = Some(udp);
        // One timer, re-armed only when the deadline moves (creating a sleep per loop would
        // register and cancel a timer entry per message).
        let sleep = tokio::time::sleep_until(tokio::time::Instant::now());
        tokio::pin!(sleep);
        let mut armed: Option<Instant> = None;
        // Quantised against the last time deadlines were handled (not the last wake), so a
        // steady stream of inbound messages never starves the timers.
        let mut last_timeout = Instant::now();
        loop {
            let mut deadline = self
                .poll_timeout()
                .map(|d| d.max(last_timeout + TIMER_QUANTUM));
            // A socket still parked here is one whose re-arm failed: poll it on the quantum.
            // (Otherwise the deadline is within the quantum already, see the end of the loop.)
            if udp.as_ref().is_some_and(UdpReceiver::has_parked) {
                let poll_at = Instant::now() + TIMER_QUANTUM;
                deadline = Some(deadline.map_or(poll_at, |d| d.min(poll_at)));
            }
            if deadline != armed {
                if let Some(d) = deadline {
                    sleep.as_mut().reset(d.into());
                }
                armed = deadline;
            }
            let timer = async {
                match deadline {
                    Some(_) => (&mut sleep).await,
                    None => std::future::pending().await,
                }
            };
            let command = async {
                match commands.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            // An upstream lookup finished: the drain below starts the bindings waiting for it.
            let wake = self.reg.as_ref().and_then(RegDriver::wake_signal);
            let resolved = async {
                match &wake {
                    Some(n) => n.notified().await,
                    None => std::future::pending().await,
                }
            };
            let mut read_udp = false;
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                item = inbound.recv() => match item {
                    Some(item) => {
                        let now = Instant::now();
                        self.handle_inbound(now, item);
                        for _ in 1..INBOUND_BATCH {
                            match inbound.try_recv() {
                                Ok(item) => self.handle_inbound(now, item),
                                Err(_) => break,
                            }
                        }
                    }
                    None => break,
                },
                index = async {
                    match udp.as_mut() {
                        Some(rx) => rx.ready().await,
                        None => std::future::pending().await,
                    }
                } => {
                    if let Some(rx) = udp.as_mut() {
                        let now = Instant::now();
                        rx.read(index, INBOUND_BATCH, |item| self.handle_inbound(now, item));
                        read_udp = true;
                    }
                }
                cmd = command => match cmd {
                    Some(cmd) => self.handle_commands(cmd, &mut commands),
                    // The API is gone (shutdown): keep serving SIP until told to stop.
                    None => commands = None,
                },
                _ = resolved => {}
                _ = timer => {}
            }
            let now = Instant::now();
            // Parked UDP sockets (drained, interest disarmed) are read on any wake that did
            // not read UDP already.
            if let Some(rx) = udp.as_mut().filter(|rx| !read_udp && rx.has_parked()) {
                rx.read_parked(INBOUND_BATCH, |item| self.handle_inbound(now, item));
            }
            // Also when busy inputs won the biased select: deadlines must not starve.
            if deadline.is_some_and(|d| d <= now) {
                self.handle_timeout(now);
                last_timeout = now;
            }
            self.drain(now);
            // Interrupt moderation (transport::udp): drained sockets stay parked, and their
            // datagrams wait for the next wake, only while that wake is due within a quantum
            // anyway; otherwise a datagram must wake the driver, so their interest is re-armed.
            if let Some(rx) = udp.as_mut().filter(|rx| rx.has_parked()) {
                let next = self
                    .poll_timeout()
                    .map(|d| d.max(last_timeout + TIMER_QUANTUM));
                if next.is_none_or(|d| d > now + TIMER_QUANTUM) {
                    rx.rearm();
                }
            }
        }
        // Requests that were already read get their answers before the connections close.
        while let Ok(item) = inbound.try_recv() {
            self.handle_inbound(Instant::now(), item);
            self.drain(Instant::now());
        }
        self.transports.close_all();
        debug!(live_transactions = self.txns.len(), "core driver stopped");
    }

    /// Applies `first` and whatever else is queued, up to [`COMMAND_BATCH`].
    fn handle_commands(
        &mut self,
        first: RegCommand,
        commands: &mut Option<mpsc::UnboundedReceiver<RegCommand>>,
    ) {
        let Some(reg) = &mut self.reg else { return };
        let now = Instant::now();
        reg.handle_command(now, first);
        let Some(rx) = commands.as_mut() else { return };
        for _ in 1..COMMAND_BATCH {
            match rx.try_recv() {
                Ok(cmd) => reg.handle_command(now, cmd),
                Err(_) => break,
            }
        }
    }

    fn handle_inbound(&mut self, now: Instant, item: Inbound) {
        let peer = item.peer;
        match item.kind {
            InboundKind::Message(bytes) => match Message::parse(bytes) {
                Ok(msg) => self.handle_message(now, msg, peer),
                // Without a start line and the headers a response needs, there is nobody
                // and nothing to answer.
                Err(error) => debug!(%peer, %error, "dropped unparsable message"),
            },
            InboundKind::MalformedDatagram { bytes, error } => {
                // A request whose Content-Length is wrong still gets a 400 naming the framing
                // problem (RFC 4475 "clerr", "ncl", "mcl01"); anything else is dropped.
                match crate::salvage::without_body(&bytes).map(Message::parse) {
                    Some(Ok(msg)) if msg.is_request() => {
                        self.answer_malformed(msg, peer, &error.to_string(), 400)
                    }
                    _ => debug!(%peer, %error, "dropped unframable datagram"),
                }
            }
            InboundKind::TransportError => {
                self.txns.handle_transport_error(now, peer);
                if let Some(reg) = &mut self.reg {
                    reg.handle_transport_error(now, peer);
                }
            }
        }
    }

    fn handle_message(&mut self, now: Instant, msg: Message, peer: Peer) {
        if let Err(error) = msg.check() {
            if msg.is_request() {
                match self.uas.reject(&msg, &error) {
                    Some(response) => self.txns.send_stateless(peer, response),
                    None => debug!(%peer, %error, "dropped malformed request"),
                }
            } else {
                debug!(%peer, %error, "dropped malformed response");
            }
            return;
        }
        let msg = crate::received::stamp_top_via(&msg, peer.addr).unwrap_or(msg);
        match &mut self.reg {
            Some(reg) if reg.wants(&msg, &peer) => reg.handle_incoming(now, msg, peer),
            _ => self.txns.handle_incoming(now, msg, peer),
        }
    }

    fn answer_malformed(&mut self, msg: Message, peer: Peer, problem: &str, status: u16) {
        let response = self.uas.reject_with(&msg, status, problem);
        match response {
            Some(r) => self.txns.send_stateless(peer, r),
            None => debug!(%peer, problem, "dropped malformed request"),
        }
    }

    /// Drains the core's outputs until both queues are empty (answering a request queues a
    /// transmit; nothing queues an event in return, so this terminates).
    fn drain(&mut self, now: Instant) {
        loop {
            let mut progressed = false;
            while let Some(event) = self.txns.poll_event() {
                progressed = true;
                self.handle_event(now, event);
            }
            while let Some(t) = self.txns.poll_transmit() {
                progressed = true;
                match self.transports.send(t.peer, t.bytes) {
                    Ok(()) => {}
                    // A full UDP socket buffer is packet loss: retransmission covers it.
                    Err(SendFailure::QueueFull) if t.peer.transport == Transport::Udp => {
                        debug!(peer = %t.peer, "UDP send buffer full: datagram dropped")
                    }
                    Err(error) => {
                        debug!(peer = %t.peer, %error, "send failed");
                        self.txns.handle_transport_error(now, t.peer);
                    }
                }
            }
            if let Some(reg) = &mut self.reg {
                progressed |= reg.drain(now, &self.transports);
            }
            if !progressed {
                break;
            }
        }
    }

    fn handle_event(&mut self, now: Instant, event: TxnEvent) {
        match event {
            TxnEvent::Request {
                id,
                request,
                peer,
                cancels,
            } => {
                let Some(response) = self.uas.respond(&request, cancels.is_some()) else {
                    return;
                };
                if let Err(error) = self.txns.send_response(now, id, response) {
                    warn!(%peer, %id, %error, "response refused by the transaction layer");
                }
            }
            TxnEvent::Ack { peer, .. } => trace!(%peer, "ACK absorbed"),
            TxnEvent::StrayResponse { peer, .. } => debug!(%peer, "stray response dropped"),
            TxnEvent::Discarded { peer, reason } => {
                debug!(%peer, %reason, "message discarded by the transaction layer")
            }
            TxnEvent::Rejected {
                peer,
                status,
                why: Rejection::Overloaded,
            } => {
                // Debug, not warn: under overload a line per request would add to the load.
                debug!(%peer, status, "transaction table full: request rejected")
            }
            TxnEvent::Rejected { peer, status, why } => {
                debug!(%peer, status, ?why, "request answered by the transaction layer")
            }
            other => trace!(event = ?other, "transaction event"),
        }
    }
}
