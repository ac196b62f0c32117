//! Client transactions: INVITE (RFC 3261 §17.1.1 with RFC 6026) and non-INVITE (§17.1.2).
//!
//! ```text
//!  INVITE client                               non-INVITE client
//!
//!  send INVITE, A (UDP), B                     send request, E (UDP), F
//!        |                                            |
//!   +---------+ A: resend, A*=2             +--------+ E: resend, E=min(2E,T2)
//!   | Calling |---- B: timeout -->+         | Trying |---- F: timeout ------>+
//!   +---------+                   |         +--------+                       |
//!     | 1xx  \ 2xx      300-699   |            | 1xx  \ 200-699              |
//!     v       \--------+  ACK, D  |            v       \                     |
//!  +------------+      |     |    |     +------------+  \  E: resend, E=T2   |
//!  | Proceeding |--2xx-+     |    |     | Proceeding |---+-- F: timeout ---->+
//!  +------------+      |     |    |     +------------+   |                   |
//!   C: timeout   300-699: ACK, D  |          200-699: K  |                   |
//!                      v     v    |                  v   v                   |
//!              +----------+ +-----------+          +-----------+             |
//!   2xx to TU  | Accepted | | Completed | resend   | Completed | absorb      |
//!   (RFC 6026) +----------+ +-----------+ ACK on   +-----------+ responses   |
//!               M: end       D: end       final     K: end                   |
//!                     \         |                      |                     |
//!                      +--------+---- Terminated ------+---------------------+
//! ```
//!
//! On reliable transports A and E are never armed, and D and K are zero: the transaction
//! ends as soon as it reaches Completed.

use std::time::Duration;

use bytes::Bytes;

use crate::msg::{ack_for_non_2xx, Message};
use crate::timer::TimerId;

use super::io::{Io, Step};
use super::key::ClientKey;
use super::{ClientTxnId, Peer, TxnEvent, TxnId, TxnTimer};

/// The state of a client transaction (RFC 3261 Figures 5 and 6, RFC 6026 Figure 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientState {
    /// INVITE sent, nothing heard yet.
    Calling,
    /// Non-INVITE request sent, nothing heard yet.
    Trying,
    /// A provisional response arrived.
    Proceeding,
    /// INVITE answered with a 2xx; absorbing 2xx retransmissions for the TU (RFC 6026).
    Accepted,
    /// Final (non-2xx for INVITE) response received; absorbing its retransmissions.
    Completed,
}

#[derive(Debug)]
pub(crate) struct ClientTxn {
    pub(crate) id: ClientTxnId,
    pub(crate) key: ClientKey,
    pub(crate) peer: Peer,
    /// `peer`'s hash in the layer's by-peer index, kept so that it is computed once.
    pub(crate) peer_hash: u64,
    pub(crate) state: ClientState,
    invite: bool,
    request: Sent,
    /// The ACK sent for a non-2xx final response, resent on each retransmission of it: its
    /// bytes only, so that a transaction (every one, most of them not INVITEs) does not carry
    /// an inline `Message` through the layer's table.
    ack: Option<Bytes>,
    /// Timer A or E.
    retransmit: Option<TimerId>,
    interval: Duration,
    /// Timer B, C, D, F, K or M.
    deadline: Option<TimerId>,
}

/// What a client transaction keeps of its request: the bytes for retransmissions, and for
/// an INVITE the parsed message too (the ACK to a non-2xx is built from it). Boxed, so that a
/// transaction, which the layer's table moves around, stays a few dozen bytes rather than a
/// whole inline [`Message`].
#[derive(Debug)]
pub(crate) enum Sent {
    Invite(Box<Message>),
    Other(Bytes),
}

impl Sent {
    /// What to keep of `request`.
    pub(crate) fn of(request: Message) -> Self {
        if key_is_invite(&request) {
            Sent::Invite(Box::new(request))
        } else {
            Sent::Other(request.as_bytes().clone())
        }
    }

    fn bytes(&self) -> &Bytes {
        match self {
            Sent::Invite(m) => m.as_bytes(),
            Sent::Other(b) => b,
        }
    }
}

impl ClientTxn {
    /// Creates the transaction and sends the request.
    pub(crate) fn start(
        io: &mut Io<'_>,
        id: ClientTxnId,
        key: ClientKey,
        peer: Peer,
        request: Sent,
    ) -> Self {
        let invite = matches!(request, Sent::Invite(_));
        let mut txn = ClientTxn {
            id,
            key,
            peer,
            peer_hash: 0,
            state: if invite {
                ClientState::Calling
            } else {
                ClientState::Trying
            },
            invite,
            request,
            ack: None,
            retransmit: None,
            interval: io.config.t1,
            deadline: None,
        };
        io.send(peer, txn.request.bytes().clone());
        let tid = TxnId::Client(id);
        if !peer.transport.is_reliable() {
            let timer = if invite { TxnTimer::A } else { TxnTimer::E };
            io.arm(&mut txn.retransmit, tid, timer, txn.interval);
        }
        let timer = if invite { TxnTimer::B } else { TxnTimer::F };
        io.arm(&mut txn.deadline, tid, timer, io.config.timeout_64t1());
        txn
    }

    /// Cancels every timer; called once when the transaction ends.
    pub(crate) fn disarm_all(&mut self, io: &mut Io<'_>) {
        io.disarm(&mut self.retransmit);
        io.disarm(&mut self.deadline);
    }

    pub(crate) fn handle_response(&mut self, io: &mut Io<'_>, response: Box<Message>) -> Step {
        let Some(status) = response.status() else {
            return Step::Live;
        };
        if self.invite {
            self.invite_response(io, status, response)
        } else {
            self.non_invite_response(io, status, response)
        }
    }

    fn invite_response(&mut self, io: &mut Io<'_>, status: u16, response: Box<Message>) -> Step {
        let tid = TxnId::Client(self.id);
        match (self.state, status) {
            (ClientState::Calling | ClientState::Proceeding, 100..=199) => {
                if self.state == ClientState::Calling {
                    // A provisional stops retransmissions and Timer B; only our own bound on
                    // Proceeding remains (see `TxnConfig::invite_proceeding_limit`).
                    io.disarm(&mut self.retransmit);
                    self.state = ClientState::Proceeding;
                    io.arm(
                        &mut self.deadline,
                        tid,
                        TxnTimer::C,
                        io.config.invite_proceeding_limit,
                    );
                }
                io.emit(TxnEvent::Response {
                    id: self.id,
                    response,
                });
                Step::Live
            }
            (ClientState::Calling | ClientState::Proceeding, 200..=299) => {
                io.disarm(&mut self.retransmit);
                self.state = ClientState::Accepted;
                io.arm(
                    &mut self.deadline,
                    tid,
                    TxnTimer::M,
                    io.config.timeout_64t1(),
                );
                io.emit(TxnEvent::Response {
                    id: self.id,
                    response,
                });
                Step::Live
            }
            (ClientState::Calling | ClientState::Proceeding, _) => {
                let Sent::Invite(request) = &self.request else {
                    // `invite_response` runs only for an INVITE, kept as `Sent::Invite`.
                    return Step::Live;
                };
                io.disarm(&mut self.retransmit);
                let ack = ack_for_non_2xx(request, &response).as_bytes().clone();
                io.send(self.peer, ack.clone());
                self.ack = Some(ack);
                self.state = ClientState::Completed;
                io.emit(TxnEvent::Response {
                    id: self.id,
                    response,
                });
                io.linger(
                    &mut self.deadline,
                    tid,
                    TxnTimer::D,
                    io.config.timer_d(self.peer.transport),
                )
            }
            // RFC 6026 §8.4: every 2xx in Accepted goes to the TU, which ACKs each one.
            (ClientState::Accepted, 200..=299) => {
                io.emit(TxnEvent::Response {
                    id: self.id,
                    response,
                });
                Step::Live
            }
            (ClientState::Completed, 300..) => {
                if let Some(ack) = &self.ack {
                    io.resend(self.peer, ack.clone());
                }
                Step::Live
            }
            // Late provisionals, or a 2xx after a non-2xx: nothing the RFC lets us act on.
            _ => Step::Live,
        }
    }

    fn non_invite_response(
        &mut self,
        io: &mut Io<'_>,
        status: u16,
        response: Box<Message>,
    ) -> Step {
        let tid = TxnId::Client(self.id);
        match (self.state, status) {
            (ClientState::Trying | ClientState::Proceeding, 100..=199) => {
                self.state = ClientState::Proceeding;
                io.emit(TxnEvent::Response {
                    id: self.id,
                    response,
                });
                Step::Live
            }
            (ClientState::Trying | ClientState::Proceeding, _) => {
                io.disarm(&mut self.retransmit);
                self.state = ClientState::Completed;
                io.emit(TxnEvent::Response {
                    id: self.id,
                    response,
                });
                io.linger(
                    &mut self.deadline,
                    tid,
                    TxnTimer::K,
                    io.config.timer_k_i(self.peer.transport),
                )
            }
            // Completed absorbs retransmissions of the final response.
            _ => Step::Live,
        }
    }

    pub(crate) fn handle_timer(&mut self, io: &mut Io<'_>, timer: TxnTimer) -> Step {
        let tid = TxnId::Client(self.id);
        match timer {
            TxnTimer::A => {
                self.retransmit = None;
                if self.state == ClientState::Calling {
                    io.resend(self.peer, self.request.bytes().clone());
                    // Timer A doubles without the T2 cap (RFC 3261 §17.1.1.2).
                    self.interval *= 2;
                    io.arm(&mut self.retransmit, tid, TxnTimer::A, self.interval);
                }
                Step::Live
            }
            TxnTimer::E => {
                self.retransmit = None;
                match self.state {
                    ClientState::Trying => self.interval = (self.interval * 2).min(io.config.t2),
                    // §17.1.2.2: in Proceeding, retransmit every T2.
                    ClientState::Proceeding => self.interval = io.config.t2,
                    _ => return Step::Live,
                }
                io.resend(self.peer, self.request.bytes().clone());
                io.arm(&mut self.retransmit, tid, TxnTimer::E, self.interval);
                Step::Live
            }
            TxnTimer::B | TxnTimer::C | TxnTimer::F => {
                self.deadline = None;
                io.emit(TxnEvent::Timeout { id: tid, timer });
                Step::Terminated
            }
            TxnTimer::D | TxnTimer::K | TxnTimer::M => {
                self.deadline = None;
                Step::Terminated
            }
            _ => Step::Live,
        }
    }
}

fn key_is_invite(request: &Message) -> bool {
    matches!(request.method(), Some(crate::msg::Method::Invite))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transaction_stays_small() {
        // The layer's table holds one per live transaction (tens of thousands during a
        // registration wave) and moves them on every regrowth: no inline `Message` here.
        let size = std::mem::size_of::<ClientTxn>();
        assert!(size <= 200, "ClientTxn is {size} bytes");
    }
}
