//! Server transactions: INVITE (RFC 3261 §17.2.1 with RFC 6026) and non-INVITE (§17.2.2).
//!
//! ```text
//!  INVITE server                               non-INVITE server
//!
//!  INVITE -> TU, arm "Trying" (200 ms)         request -> TU
//!        |                                            |
//!  +------------+ Trying: send 100 if the      +--------+ request retransmission:
//!  | Proceeding | TU has not answered;         | Trying | absorbed
//!  +------------+ INVITE: resend last 1xx      +--------+
//!    | 2xx         \ 300-699 from TU              | 1xx   \ 200-699 from TU
//!    v              \  G (UDP), H                 v        \
//!  +----------+   +-----------+ G: resend,   +------------+ \ request: resend 1xx
//!  | Accepted |   | Completed | G=min(2G,T2) | Proceeding |--+
//!  +----------+   +-----------+              +------------+  |  200-699 from TU: J
//!  INVITE: absorb  | ACK: I  | H: timeout                     v
//!  ACK: to TU      v         |               +-----------+ request: resend final
//!  2xx from TU:  +-----------+               | Completed | J: end
//!   sent         | Confirmed | ACK: absorb   +-----------+
//!  L: end        +-----------+ I: end
//! ```
//!
//! Responses go back to the peer the request came from (its transport and source address),
//! which is what RFC 3581 `rport` asks for and what reaches phones behind NAT.

use std::time::Duration;

use bytes::Bytes;

use crate::msg::{Message, ResponseBuilder};
use crate::timer::TimerId;

use super::io::{Io, Step};
use super::key::{LegacyTags, ServerKey};
use super::{Peer, ResponseError, ServerTxnId, TxnEvent, TxnId, TxnTimer};

/// The state of a server transaction (RFC 3261 Figures 7 and 8, RFC 6026 Figure 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerState {
    /// Non-INVITE request received, no response yet.
    Trying,
    /// INVITE received (or a provisional sent for a non-INVITE); waiting for a final response.
    Proceeding,
    /// A 2xx to the INVITE was sent; absorbing INVITE retransmissions (RFC 6026).
    Accepted,
    /// A final (non-2xx for INVITE) response was sent; retransmitting it / waiting for ACK.
    Completed,
    /// The ACK arrived; absorbing its retransmissions.
    Confirmed,
}

/// One server transaction. Kept small (no inline [`Message`]) because the layer holds tens
/// of thousands of them while Timer J runs, and they live in a hash table.
#[derive(Debug)]
pub(crate) struct ServerTxn {
    pub(crate) id: ServerTxnId,
    pub(crate) key: ServerKey,
    /// `key`'s index hash, so the index entry is found again without rehashing the key.
    pub(crate) key_hash: u64,
    pub(crate) peer: Peer,
    /// `peer`'s hash in the layer's by-peer index, kept so that it is computed once.
    pub(crate) peer_hash: u64,
    pub(crate) state: ServerState,
    pub(crate) legacy: LegacyTags,
    invite: bool,
    /// The INVITE, kept only by INVITE transactions, for the 100 Trying they may send; the
    /// request method of every transaction is in `key`.
    request: Option<Box<Message>>,
    /// The bytes of the most recent response sent, resent on request retransmissions.
    last: Option<Bytes>,
    /// Timer G (or the 100 Trying timer before any response).
    retransmit: Option<TimerId>,
    interval: Duration,
    /// Timer H, I, J or L.
    deadline: Option<TimerId>,
}

impl ServerTxn {
    /// A new transaction for a request with `key`; `request` is read (and kept) only for an
    /// INVITE.
    pub(crate) fn start(
        io: &mut Io<'_>,
        id: ServerTxnId,
        (key, key_hash): (ServerKey, u64),
        peer: Peer,
        request: &Message,
        legacy: LegacyTags,
    ) -> Self {
        let invite = *key.method() == crate::msg::Method::Invite;
        let mut txn = ServerTxn {
            id,
            key,
            key_hash,
            peer,
            peer_hash: 0,
            state: if invite {
                ServerState::Proceeding
            } else {
                ServerState::Trying
            },
            legacy,
            invite,
            request: invite.then(|| Box::new(request.clone())),
            last: None,
            retransmit: None,
            interval: io.config.t1,
            deadline: None,
        };
        if invite {
            io.arm(
                &mut txn.retransmit,
                TxnId::Server(id),
                TxnTimer::Trying,
                io.config.trying_delay,
            );
        }
        txn
    }

    pub(crate) fn is_invite(&self) -> bool {
        self.invite
    }

    pub(crate) fn disarm_all(&mut self, io: &mut Io<'_>) {
        io.disarm(&mut self.retransmit);
        io.disarm(&mut self.deadline);
    }

    /// A retransmission of the request that created the transaction.
    pub(crate) fn handle_retransmission(&mut self, io: &mut Io<'_>) {
        match self.state {
            ServerState::Proceeding if self.invite && self.last.is_none() => {
                // The client is retransmitting before the TU said anything: answer now rather
                // than at the Trying timer.
                io.disarm(&mut self.retransmit);
                self.send_trying(io);
            }
            ServerState::Proceeding | ServerState::Completed => self.resend_last(io),
            // Trying has nothing to resend; Accepted absorbs (RFC 6026 §8.7: the TU resends
            // the 2xx); Confirmed absorbs.
            _ => {}
        }
    }

    /// An ACK matching this (INVITE) transaction.
    pub(crate) fn handle_ack(&mut self, io: &mut Io<'_>, ack: Message, from: Peer) -> Step {
        match self.state {
            ServerState::Completed => {
                io.disarm(&mut self.retransmit);
                self.state = ServerState::Confirmed;
                let tid = TxnId::Server(self.id);
                io.linger(
                    &mut self.deadline,
                    tid,
                    TxnTimer::I,
                    io.config.timer_k_i(self.peer.transport),
                )
            }
            ServerState::Accepted => {
                io.emit(TxnEvent::Ack {
                    request: Box::new(ack),
                    peer: from,
                    txn: Some(self.id),
                });
                Step::Live
            }
            // An ACK before any final response is a peer's mistake; ACKs in Confirmed are
            // retransmissions. Both are absorbed.
            _ => Step::Live,
        }
    }

    pub(crate) fn send_response(
        &mut self,
        io: &mut Io<'_>,
        response: Message,
    ) -> Result<Step, ResponseError> {
        let status = response.status().ok_or(ResponseError::NotAResponse)?;
        let cseq = response
            .cseq()
            .map_err(|_| ResponseError::WrongTransaction)?;
        if cseq.method != *self.key.method() {
            return Err(ResponseError::WrongTransaction);
        }
        let tid = TxnId::Server(self.id);
        let provisional = status < 200;
        let step = match (self.state, self.invite) {
            (ServerState::Trying | ServerState::Proceeding, _) if provisional => {
                self.state = ServerState::Proceeding;
                io.disarm(&mut self.retransmit);
                Step::Live
            }
            (ServerState::Proceeding, true) if status < 300 => {
                io.disarm(&mut self.retransmit);
                self.state = ServerState::Accepted;
                io.arm(
                    &mut self.deadline,
                    tid,
                    TxnTimer::L,
                    io.config.timeout_64t1(),
                );
                Step::Live
            }
            (ServerState::Proceeding, true) => {
                io.disarm(&mut self.retransmit);
                self.state = ServerState::Completed;
                if !self.peer.transport.is_reliable() {
                    self.interval = io.config.t1;
                    io.arm(&mut self.retransmit, tid, TxnTimer::G, self.interval);
                }
                io.arm(
                    &mut self.deadline,
                    tid,
                    TxnTimer::H,
                    io.config.timeout_64t1(),
                );
                Step::Live
            }
            // RFC 6026 §8.7: 2xx retransmissions from the TU pass through in Accepted.
            (ServerState::Accepted, _) if (200..300).contains(&status) => Step::Live,
            (ServerState::Trying | ServerState::Proceeding, false) => {
                self.state = ServerState::Completed;
                io.linger(
                    &mut self.deadline,
                    tid,
                    TxnTimer::J,
                    io.config.timer_j(self.peer.transport),
                )
            }
            _ => return Err(ResponseError::InvalidState),
        };
        // Only RFC 2543 keys compare To tags (see `Transactions::matching_server`); for
        // RFC 3261 keys the branch is enough, so the To header is not parsed again.
        if !provisional && self.key.is_legacy() {
            self.legacy.response = super::key::to_tag(&response);
        }
        let bytes = response.as_bytes().clone();
        io.send(self.peer, bytes.clone());
        self.last = Some(bytes);
        // A 100 Trying is sent only before any response: the INVITE is not needed again.
        self.request = None;
        Ok(step)
    }

    pub(crate) fn handle_timer(&mut self, io: &mut Io<'_>, timer: TxnTimer) -> Step {
        let tid = TxnId::Server(self.id);
        match timer {
            TxnTimer::Trying => {
                self.retransmit = None;
                if self.state == ServerState::Proceeding && self.last.is_none() {
                    self.send_trying(io);
                }
                Step::Live
            }
            TxnTimer::G => {
                self.retransmit = None;
                if self.state == ServerState::Completed {
                    self.resend_last(io);
                    self.interval = (self.interval * 2).min(io.config.t2);
                    io.arm(&mut self.retransmit, tid, TxnTimer::G, self.interval);
                }
                Step::Live
            }
            TxnTimer::H => {
                self.deadline = None;
                io.emit(TxnEvent::Timeout { id: tid, timer });
                Step::Terminated
            }
            TxnTimer::I | TxnTimer::J | TxnTimer::L => {
                self.deadline = None;
                Step::Terminated
            }
            _ => Step::Live,
        }
    }

    fn send_trying(&mut self, io: &mut Io<'_>) {
        let Some(request) = &self.request else {
            return;
        };
        let trying = ResponseBuilder::for_request(request, 100, None).build();
        let bytes = trying.as_bytes().clone();
        io.send(self.peer, bytes.clone());
        self.last = Some(bytes);
    }

    fn resend_last(&self, io: &mut Io<'_>) {
        if let Some(last) = &self.last {
            io.resend(self.peer, last.clone());
        }
    }
}
