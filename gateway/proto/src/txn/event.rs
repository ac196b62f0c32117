//! Identifiers, events and errors of the transaction layer: its whole observable surface.

use std::fmt;

use crate::msg::{Message, ParseError};

use super::key::KeyError;
use super::{Peer, TxnTimer};

/// A client transaction (a request we sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientTxnId(pub(crate) u64);

/// A server transaction (a request we received).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerTxnId(pub(crate) u64);

/// Either kind of transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TxnId {
    /// A client transaction.
    Client(ClientTxnId),
    /// A server transaction.
    Server(ServerTxnId),
}

impl fmt::Display for ClientTxnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}", self.0)
    }
}

impl fmt::Display for ServerTxnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s{}", self.0)
    }
}

impl From<ClientTxnId> for TxnId {
    fn from(id: ClientTxnId) -> Self {
        TxnId::Client(id)
    }
}

impl From<ServerTxnId> for TxnId {
    fn from(id: ServerTxnId) -> Self {
        TxnId::Server(id)
    }
}

/// What the transaction layer tells its TU; drained with
/// [`super::Transactions::poll_event`]. Events are also the layer's observability: it has no
/// logging of its own.
///
/// Messages are boxed so that an event is a few words: every event is moved into the queue
/// and out again, and most (`Terminated`, `Timeout`) carry no message at all.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum TxnEvent {
    /// A new request created server transaction `id`. Answer it with
    /// [`super::Transactions::send_response`]. For a CANCEL, `cancels` names the INVITE
    /// server transaction it matches (RFC 3261 §9.2); `None` means the TU should answer 481.
    Request {
        id: ServerTxnId,
        request: Box<Message>,
        peer: Peer,
        cancels: Option<ServerTxnId>,
    },
    /// A response for client transaction `id` (provisional or final; for an INVITE also every
    /// 2xx retransmission while the transaction is Accepted, RFC 6026 §8.4, because the TU
    /// acknowledges each one).
    Response {
        id: ClientTxnId,
        response: Box<Message>,
    },
    /// An ACK the TU must handle: an ACK for a 2xx (it matches no transaction, `txn` is
    /// `None`) or an ACK matching an INVITE server transaction in Accepted (RFC 6026 §8.7).
    Ack {
        request: Box<Message>,
        peer: Peer,
        txn: Option<ServerTxnId>,
    },
    /// A response matching no client transaction (RFC 3261 §18.1.2), e.g. a 2xx
    /// retransmission after the INVITE transaction ended, or a fork's second 2xx.
    StrayResponse { response: Box<Message>, peer: Peer },
    /// A transaction timed out: Timer B, F or C for a client (no final response), Timer H
    /// for an INVITE server (no ACK for its final response).
    Timeout { id: TxnId, timer: TxnTimer },
    /// The shell reported that the transport to the transaction's peer failed
    /// ([`super::Transactions::handle_transport_error`]).
    TransportError { id: TxnId },
    /// The transaction ended and its id is no longer valid. Every transaction reports this
    /// exactly once.
    Terminated { id: TxnId },
    /// A message was dropped because it cannot be matched (missing or malformed Via, CSeq,
    /// Call-ID, From or To).
    Discarded { peer: Peer, reason: KeyError },
    /// The layer answered a new request itself, statelessly, without creating a
    /// transaction: see [`Rejection`].
    Rejected {
        peer: Peer,
        status: u16,
        why: Rejection,
    },
}

/// Why the layer answered a request itself.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// The layer holds [`super::TxnConfig::max_transactions`]: 503 with Retry-After.
    Overloaded,
    /// A mandatory header is malformed (RFC 3261 §8.2, checked with `Message::check`): 400,
    /// or the status the error suggests (505 for another SIP version, ...).
    Malformed(ParseError),
}

/// Why [`super::Transactions::send_request`] refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The message is a response.
    #[error("not a request")]
    NotARequest,
    /// ACK is not a transaction: an ACK for a 2xx is sent with `send_stateless`, an ACK for a
    /// non-2xx by the INVITE client transaction itself.
    #[error("ACK does not create a transaction")]
    Ack,
    /// The request's top Via lacks an RFC 3261 branch, or its headers cannot be read.
    #[error("request cannot be keyed: {0}")]
    Key(KeyError),
    /// A live client transaction already uses this branch and method.
    #[error("branch already in use by a live transaction")]
    DuplicateBranch,
    /// The layer holds [`super::TxnConfig::max_transactions`] transactions.
    #[error("too many live transactions")]
    Overloaded,
}

/// Why [`super::Transactions::send_response`] refused a response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResponseError {
    /// No live server transaction has this id (it terminated, or never existed).
    #[error("unknown or terminated transaction")]
    UnknownTransaction,
    /// The message is a request.
    #[error("not a response")]
    NotAResponse,
    /// The response's CSeq method differs from the transaction's request method.
    #[error("response does not belong to this transaction")]
    WrongTransaction,
    /// The transaction's state allows no such response (e.g. a second final response, or a
    /// provisional response after the final one).
    #[error("transaction already sent its final response")]
    InvalidState,
}

/// Lifetime counters of a transaction layer, for metrics. Derived from the same events the TU
/// sees, plus retransmissions, which produce no event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TxnStats {
    /// Client transactions started.
    pub client_started: u64,
    /// Server transactions started (new requests handed to the TU).
    pub server_started: u64,
    /// Transactions ended, for any reason.
    pub terminated: u64,
    /// Timer B, C, F or H expiries.
    pub timeouts: u64,
    /// Transactions ended by a transport error.
    pub transport_errors: u64,
    /// Messages sent again: requests on Timer A/E, responses on Timer G or on a request
    /// retransmission, ACKs on a final-response retransmission.
    pub retransmissions: u64,
    /// Requests answered statelessly (overload 503, malformed 400).
    pub rejected: u64,
    /// Messages dropped because they could not be matched.
    pub discarded: u64,
    /// Responses matching no client transaction.
    pub stray_responses: u64,
}

impl TxnStats {
    pub(crate) fn record(&mut self, event: &TxnEvent) {
        match event {
            TxnEvent::Request { .. } => self.server_started += 1,
            TxnEvent::Timeout { .. } => self.timeouts += 1,
            TxnEvent::TransportError { .. } => self.transport_errors += 1,
            TxnEvent::Terminated { .. } => self.terminated += 1,
            TxnEvent::Discarded { .. } => self.discarded += 1,
            TxnEvent::Rejected { .. } => self.rejected += 1,
            TxnEvent::StrayResponse { .. } => self.stray_responses += 1,
            TxnEvent::Response { .. } | TxnEvent::Ack { .. } => {}
        }
    }
}
