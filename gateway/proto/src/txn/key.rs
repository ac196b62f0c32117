//! Transaction matching keys (RFC 3261 §17.1.3 and §17.2.3).
//!
//! A server transaction keeps its key in one allocation ([`ServerKey`]) so that the index does
//! not borrow from stored messages; incoming requests are matched with a borrowed
//! [`ServerKeyRef`] hashed once, so a retransmission or an ACK allocates nothing. Comparisons
//! follow the RFC: the branch is compared byte for byte, the sent-by host case-insensitively
//! with the port defaulted from the transport, and an ACK is looked up as the INVITE it
//! acknowledges. Client keys own their strings.

use std::hash::{BuildHasher, Hash, Hasher};

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
#[derive(Debug, Clone, PartialEq, Eq)]
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

    /// The key of a request we are about to send whose top Via branch the caller generated
    /// (`CoreRng::push_branch`) and so need not parse back out of the request.
    pub(crate) fn own(branch: Box<str>, method: Method) -> Self {
        Self { branch, method }
    }
}

// Hashed as [`ClientKeyRef`] hashes, so that either finds the other in a table.
impl Hash for ClientKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_client_key(&self.branch, &self.method, state);
    }
}

fn hash_client_key<H: Hasher>(branch: &str, method: &Method, state: &mut H) {
    branch.hash(state);
    method.hash(state);
}

/// A client key borrowed from a received response: what the index is probed with, so that
/// matching a response allocates nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientKeyRef<'a> {
    branch: &'a str,
    method: Method,
}

impl<'a> ClientKeyRef<'a> {
    /// The key a received response is looked up by.
    pub(crate) fn for_response(resp: &'a Message) -> Result<Self, KeyError> {
        // The shell's check parsed the top Via and the CSeq already.
        if let Some((branch, method)) = resp.checked_key() {
            return Ok(Self {
                branch: branch.ok_or(KeyError::NoBranch)?,
                method: method.clone(),
            });
        }
        let via = resp.top_via()?;
        let branch = via.branch().ok_or(KeyError::NoBranch)?;
        let cseq = resp.cseq()?;
        Ok(Self {
            branch,
            method: cseq.method,
        })
    }
}

impl Hash for ClientKeyRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_client_key(self.branch, &self.method, state);
    }
}

impl hashbrown::Equivalent<ClientKey> for ClientKeyRef<'_> {
    fn equivalent(&self, key: &ClientKey) -> bool {
        *key.branch == *self.branch && key.method == self.method
    }
}

/// §17.2.3: the key of a server transaction, as stored in the transaction.
///
/// One allocation per key: the RFC 3261 form keeps branch and sent-by host in one string.
/// Lookups never build this; they hash and compare a borrowed [`ServerKeyRef`].
#[derive(Debug, Clone)]
pub(crate) enum ServerKey {
    /// The branch carries the magic cookie: branch, sent-by and method identify it.
    Rfc3261 {
        /// The branch followed by the sent-by host (as received; compared ignoring case).
        text: Box<str>,
        branch_len: u32,
        port: u16,
        method: Method,
    },
    /// RFC 2543 peers (rare): boxed, so the common key stays small.
    Rfc2543(Box<LegacyKey>),
}

/// RFC 2543 peers: Request-URI, From tag, Call-ID, CSeq and the whole top Via. The To tag
/// is compared after the lookup ([`LegacyTags`]) because an ACK carries the tag of the
/// response rather than the one of the INVITE.
#[derive(Debug, Clone)]
pub(crate) struct LegacyKey {
    request_uri: Box<str>,
    from_tag: Option<Box<str>>,
    call_id: Box<str>,
    cseq: u32,
    method: Method,
    top_via: Box<str>,
}

/// A server key borrowed from a request: what the index is probed with, so that matching a
/// retransmission or an ACK allocates nothing.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ServerKeyRef<'a> {
    Rfc3261 {
        branch: &'a str,
        host: &'a str,
        port: u16,
        method: &'a Method,
    },
    Rfc2543 {
        request_uri: &'a str,
        from_tag: Option<&'a str>,
        call_id: &'a str,
        cseq: u32,
        method: &'a Method,
        top_via: &'a str,
    },
}

/// Feeds `s` to `h` with ASCII letters lowercased (the sent-by host compares ignoring
/// case), in stack-sized chunks so that no lowercased copy is allocated.
fn hash_lowercase<H: Hasher>(h: &mut H, s: &str) {
    let mut buf = [0u8; 64];
    for chunk in s.as_bytes().chunks(buf.len()) {
        let out = &mut buf[..chunk.len()];
        out.copy_from_slice(chunk);
        out.make_ascii_lowercase();
        h.write(out);
    }
    h.write_usize(s.len());
}

impl<'a> ServerKeyRef<'a> {
    /// The key of `req` when looked up as a request of `method`: the request's own method
    /// for retransmissions, INVITE for an ACK or for the INVITE a CANCEL targets.
    pub(crate) fn for_request(req: &'a Message, method: &'a Method) -> Result<Self, KeyError> {
        let via = req.top_via()?;
        if via.has_rfc3261_branch() {
            let branch = via.branch().ok_or(KeyError::NoBranch)?;
            let (host, port) = via.sent_by();
            let port = port.unwrap_or(if via.transport().eq_ignore_ascii_case("TLS") {
                5061
            } else {
                5060
            });
            return Ok(ServerKeyRef::Rfc3261 {
                branch,
                host,
                port,
                method,
            });
        }
        let top_via = req
            .header_values(HeaderName::Via)
            .next()
            .ok_or(ParseError::MissingHeader(HeaderName::Via))?;
        Ok(ServerKeyRef::Rfc2543 {
            request_uri: req.request_uri_str().ok_or(KeyError::BadRequestLine)?,
            from_tag: req.checked_from_hdr()?.tag(),
            call_id: req.call_id()?,
            cseq: req.cseq()?.seq,
            method,
            top_via: top_via.trim(),
        })
    }

    pub(crate) fn is_legacy(&self) -> bool {
        matches!(self, ServerKeyRef::Rfc2543 { .. })
    }

    /// The index hash: one pass of the layer's keyed hasher, computed once per request.
    pub(crate) fn hash_with(&self, state: &impl BuildHasher) -> u64 {
        let mut h = state.build_hasher();
        match self {
            ServerKeyRef::Rfc3261 {
                branch,
                host,
                port,
                method,
            } => {
                h.write_u8(0);
                branch.hash(&mut h);
                hash_lowercase(&mut h, host);
                port.hash(&mut h);
                method.hash(&mut h);
            }
            ServerKeyRef::Rfc2543 {
                request_uri,
                from_tag,
                call_id,
                cseq,
                method,
                top_via,
            } => {
                h.write_u8(1);
                (request_uri, from_tag, call_id, cseq, method, top_via).hash(&mut h);
            }
        }
        h.finish()
    }

    /// §17.2.3 equality: branch, port and method byte for byte, the host ignoring case.
    pub(crate) fn matches(&self, other: &ServerKeyRef<'_>) -> bool {
        match (self, other) {
            (
                ServerKeyRef::Rfc3261 {
                    branch,
                    host,
                    port,
                    method,
                },
                ServerKeyRef::Rfc3261 {
                    branch: b2,
                    host: h2,
                    port: p2,
                    method: m2,
                },
            ) => branch == b2 && port == p2 && method == m2 && host.eq_ignore_ascii_case(h2),
            (
                ServerKeyRef::Rfc2543 {
                    request_uri,
                    from_tag,
                    call_id,
                    cseq,
                    method,
                    top_via,
                },
                ServerKeyRef::Rfc2543 {
                    request_uri: r2,
                    from_tag: f2,
                    call_id: c2,
                    cseq: s2,
                    method: m2,
                    top_via: t2,
                },
            ) => {
                request_uri == r2
                    && from_tag == f2
                    && call_id == c2
                    && cseq == s2
                    && method == m2
                    && top_via == t2
            }
            _ => false,
        }
    }

    /// The owned key a new transaction keeps.
    pub(crate) fn to_owned_key(self) -> ServerKey {
        match self {
            ServerKeyRef::Rfc3261 {
                branch,
                host,
                port,
                method,
            } => {
                let mut text = String::with_capacity(branch.len() + host.len());
                text.push_str(branch);
                text.push_str(host);
                ServerKey::Rfc3261 {
                    text: text.into_boxed_str(),
                    // A header value is far shorter than 4 GiB (MAX_MESSAGE_LEN).
                    branch_len: branch.len() as u32,
                    port,
                    method: method.clone(),
                }
            }
            ServerKeyRef::Rfc2543 {
                request_uri,
                from_tag,
                call_id,
                cseq,
                method,
                top_via,
            } => ServerKey::Rfc2543(Box::new(LegacyKey {
                request_uri: request_uri.into(),
                from_tag: from_tag.map(Into::into),
                call_id: call_id.into(),
                cseq,
                method: method.clone(),
                top_via: top_via.into(),
            })),
        }
    }
}

impl ServerKey {
    /// The borrowed form, for comparing with a probe.
    pub(crate) fn view(&self) -> ServerKeyRef<'_> {
        match self {
            ServerKey::Rfc3261 {
                text,
                branch_len,
                port,
                method,
            } => {
                let (branch, host) = text.split_at(*branch_len as usize);
                ServerKeyRef::Rfc3261 {
                    branch,
                    host,
                    port: *port,
                    method,
                }
            }
            ServerKey::Rfc2543(k) => ServerKeyRef::Rfc2543 {
                request_uri: &k.request_uri,
                from_tag: k.from_tag.as_deref(),
                call_id: &k.call_id,
                cseq: k.cseq,
                method: &k.method,
                top_via: &k.top_via,
            },
        }
    }

    /// The method of the request that created the transaction (never ACK: an ACK creates no
    /// server transaction).
    pub(crate) fn method(&self) -> &Method {
        match self {
            ServerKey::Rfc3261 { method, .. } => method,
            ServerKey::Rfc2543(k) => &k.method,
        }
    }

    pub(crate) fn is_legacy(&self) -> bool {
        matches!(self, ServerKey::Rfc2543(_))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::{RequestBuilder, ResponseBuilder};
    use crate::txn::layer::OwnKeyHash;

    /// A response's borrowed key finds the owned key its request was filed under (standard
    /// and extension methods alike), and nothing else.
    #[test]
    fn borrowed_response_key_finds_the_request_key() {
        let mut index: hashbrown::HashMap<ClientKey, u32, OwnKeyHash> = Default::default();
        let methods = [
            Method::Register,
            Method::Options,
            Method::Other("FOO".into()),
        ];
        let mut requests = Vec::new();
        for (i, m) in methods.iter().enumerate() {
            let req = RequestBuilder::new(m.clone(), "sip:x@example.com")
                .via("UDP", "192.0.2.1:5060", &format!("z9hG4bK-{i}"))
                .from("sip:a@example.com", "f")
                .to("sip:x@example.com", None)
                .call_id("c")
                .cseq(1)
                .build();
            index.insert(ClientKey::for_request(&req).unwrap(), i as u32);
            requests.push(req);
        }
        for (i, req) in requests.iter().enumerate() {
            let resp = ResponseBuilder::for_request(req, 200, Some("t")).build();
            let key = ClientKeyRef::for_response(&resp).unwrap();
            assert_eq!(index.get(&key), Some(&(i as u32)));
            let other = ClientKeyRef {
                branch: key.branch,
                method: Method::Bye,
            };
            assert_eq!(index.get(&other), None);
        }
    }

    /// A response's key is the same whether or not the shell's `check` ran first (which
    /// notes the top Via's branch and the CSeq for it), and a response `check` rejects
    /// is still rejected, with the same error, by both.
    #[test]
    fn response_key_is_the_same_checked_or_not() {
        let resp = |vias: &str, cseq: &str| {
            let text = format!(
                "SIP/2.0 200 OK\r\n{vias}From: <sip:a@b>;tag=1\r\nTo: <sip:a@b>;tag=2\r\n\
                 Call-ID: c@h\r\n{cseq}Content-Length: 0\r\n\r\n"
            );
            Message::parse(bytes::Bytes::from(text)).expect("frames")
        };
        let cases = [
            (
                "Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\n",
                "CSeq: 1 REGISTER\r\n",
            ),
            (
                "Via: SIP/2.0/UDP h;rport=5;BRANCH=z9hG4bK2;received=192.0.2.1\r\n",
                "CSeq: 7 FOO\r\n",
            ),
            (
                "Via: SIP/2.0/UDP h;branch=z9hG4bK3 , SIP/2.0/TCP p;branch=z9hG4bK4\r\n",
                "CSeq: 2 OPTIONS\r\n",
            ),
            (
                "Via: SIP/2.0/UDP h;branch=z9hG4bK5\r\nVia: SIP/2.0/UDP p;branch=z9hG4bK6\r\n",
                "CSeq: 1 REGISTER\r\n",
            ),
            // No branch: checks, but matches nothing.
            ("Via: SIP/2.0/UDP h\r\n", "CSeq: 1 REGISTER\r\n"),
            // Rejected by the check and by the key alike.
            (
                "Via: SIP/2.0/UDP h;branch=z9hG4bK1;\r\n",
                "CSeq: 1 REGISTER\r\n",
            ),
            ("Via: SIP/2.0 h;branch=z9hG4bK1\r\n", "CSeq: 1 REGISTER\r\n"),
            ("", "CSeq: 1 REGISTER\r\n"),
            (
                "Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\n",
                "CSeq: x REGISTER\r\n",
            ),
            ("Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\n", ""),
            (
                "Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\n",
                "CSeq: 1 REGISTER\r\nCSeq: 1 REGISTER\r\n",
            ),
        ];
        for (vias, cseq) in cases {
            let unchecked = resp(vias, cseq);
            let checked = unchecked.clone();
            let verdict = checked.check();
            assert_eq!(
                checked.checked_key().is_some(),
                verdict.is_ok(),
                "{vias}{cseq}"
            );
            let key = ClientKeyRef::for_response(&unchecked);
            assert_eq!(ClientKeyRef::for_response(&checked), key, "{vias}{cseq}");
            assert_eq!(checked.cseq(), unchecked.cseq(), "{vias}{cseq}");
            if verdict.is_err() {
                assert!(key.is_err(), "{vias}{cseq}");
            }
        }
    }
}
