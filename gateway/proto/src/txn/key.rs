//! Transaction matching keys (RFC 3261 §17.1.3 and §17.2.3).
//!
//! Keys own their strings (a few short allocations per message) so that the indexes do not
//! borrow from stored messages. Comparisons follow the RFC: the branch is compared byte for
//! byte, the sent-by host case-insensitively (stored lowercased) with the port defaulted from
//! the transport, and an ACK is looked up as the INVITE it acknowledges.

use crate::msg::{HeaderName, Message, Method, ParseError};

/// Why a message cannot be matched to any transaction; it is dropped (and reported as
/// [`super::TxnEvent::Discarded`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A mandatory header (Via, CSeq, Call-ID, From, To) is missing or malformed.
    #[error("unusable header: {0}")]
    BadHeader(ParseError),
    /// A response whose top Via has no branch: it cannot belong to any transaction we sent.
    #[error("response without a Via branch")]
    NoBranch,
    /// The request line is malformed.
    #[error("malformed request line")]
    BadRequestLine,
}

impl From<ParseError> for KeyError {
    fn from(e: ParseError) -> Self {
        KeyError::BadHeader(e)
    }
}

/// §17.1.3: a response matches a client transaction by the branch of its top Via and the
/// method of its CSeq (so a CANCEL, which shares the INVITE's branch, has its own).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ClientKey {
    branch: Box<str>,
    method: Method,
}

impl ClientKey {
    /// The key of a request we are about to send. Our own requests always carry an RFC 3261
    /// branch: the TU builds them with `CoreRng::branch`.
    pub(crate) fn for_request(req: &Message) -> Result<Self, KeyError> {
        let via = req.top_via()?;
        let branch = via
            .branch()
            .filter(|_| via.has_rfc3261_branch())
            .ok_or(KeyError::NoBranch)?;
        let method = req.method().ok_or(KeyError::BadRequestLine)?;
        Ok(Self {
            branch: branch.into(),
            method,
        })
    }

    /// The key a received response is looked up by.
    pub(crate) fn for_response(resp: &Message) -> Result<Self, KeyError> {
        let via = resp.top_via()?;
        let branch = via.branch().ok_or(KeyError::NoBranch)?;
        let cseq = resp.cseq()?;
        Ok(Self {
            branch: branch.into(),
            method: cseq.method,
        })
    }
}

/// §17.2.3: the key of a server transaction.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum ServerKey {
    /// The branch carries the magic cookie: branch, sent-by and method identify it.
    Rfc3261 {
        branch: Box<str>,
        host: Box<str>,
        port: u16,
        method: Method,
    },
    /// RFC 2543 peers: Request-URI, From tag, Call-ID, CSeq and the whole top Via. The To tag
    /// is compared after the lookup ([`LegacyTags`]) because an ACK carries the tag of the
    /// response rather than the one of the INVITE.
    Rfc2543 {
        request_uri: Box<str>,
        from_tag: Option<Box<str>>,
        call_id: Box<str>,
        cseq: u32,
        method: Method,
        top_via: Box<str>,
    },
}

impl ServerKey {
    /// The key of `req` when looked up as a request of `method`: the request's own method
    /// for retransmissions, INVITE for an ACK or for the INVITE a CANCEL targets.
    pub(crate) fn for_request(req: &Message, method: Method) -> Result<Self, KeyError> {
        let via = req.top_via()?;
        if via.has_rfc3261_branch() {
            let branch = via.branch().ok_or(KeyError::NoBranch)?;
            let (host, port) = via.sent_by();
            let port = port.unwrap_or(if via.transport().eq_ignore_ascii_case("TLS") {
                5061
            } else {
                5060
            });
            return Ok(ServerKey::Rfc3261 {
                branch: branch.into(),
                host: host.to_ascii_lowercase().into(),
                port,
                method,
            });
        }
        let top_via = req
            .header_values(HeaderName::Via)
            .next()
            .ok_or(ParseError::MissingHeader(HeaderName::Via))?;
        Ok(ServerKey::Rfc2543 {
            request_uri: req
                .request_uri_str()
                .ok_or(KeyError::BadRequestLine)?
                .into(),
            from_tag: req.checked_from_hdr()?.tag().map(Into::into),
            call_id: req.call_id()?.into(),
            cseq: req.cseq()?.seq,
            method,
            top_via: top_via.trim().into(),
        })
    }

    pub(crate) fn is_legacy(&self) -> bool {
        matches!(self, ServerKey::Rfc2543 { .. })
    }
}

/// To tags an RFC 2543 server transaction is matched by: a retransmitted request must carry
/// the To tag of the original, an ACK the To tag of the final response we sent.
#[derive(Debug, Clone, Default)]
pub(crate) struct LegacyTags {
    pub(crate) request: Option<Box<str>>,
    pub(crate) response: Option<Box<str>>,
}

/// The To tag of a message, if it has a usable To header.
pub(crate) fn to_tag(msg: &Message) -> Option<Box<str>> {
    msg.checked_to_hdr()
        .ok()
        .and_then(|t| t.tag().map(Into::into))
}
