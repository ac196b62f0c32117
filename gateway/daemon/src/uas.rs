//! The minimal user agent server the gateway runs until registration and call relay exist.
//!
//! It decides the response to each request the transaction layer hands up: OPTIONS gets
//! 200 OK with Allow/Accept/Supported (RFC 3261 §11.2), a CANCEL 200 or 481 (§9.2), any other
//! method 501 Not Implemented (§8.2.1), a request requiring an unknown extension 420 (§8.2.2.3),
//! and a request that fails the parser's checks the parser's suggested status with the
//! problem named in a Warning header. ACK is never answered. Pure functions over messages: the
//! driver sends the results through the transaction layer.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash, Hasher};

use vigil_proto::msg::{quote, HeaderName, Message, Method, ParseError, ResponseBuilder};

/// Methods the gateway handles today.
pub const ALLOW: &str = "OPTIONS, ACK, CANCEL";
/// Bodies the gateway understands. None yet; the relay will add `application/sdp`.
/// RFC 3261 §11.2: an empty Accept says "no body is acceptable", which is the truth today.
pub const ACCEPT: &str = "";
/// Extensions the gateway supports: none yet (an empty list is valid, §20.37).
pub const SUPPORTED: &str = "";
/// Warn-agent for Warning headers (RFC 3261 §20.43: a host name or pseudonym).
const WARN_AGENT: &str = "vigil";
/// Product token for Server headers.
const SERVER: &str = concat!("Vigil/", env!("CARGO_PKG_VERSION"));

/// Answers requests; holds the key that makes To-tags stable per request.
#[derive(Debug)]
pub struct Uas {
    /// Random per process: To-tags derive from the request's identity under this key, so a
    /// retransmission that reaches a stateless path gets the same tag, and tags of different
    /// requests do not collide or reveal anything.
    tag_key: RandomState,
}

impl Default for Uas {
    fn default() -> Self {
        Self::new()
    }
}

impl Uas {
    /// A UAS with a fresh random tag key.
    pub fn new() -> Self {
        Self {
            tag_key: RandomState::new(),
        }
    }

    /// The response to a well-formed request, or `None` for ACK.
    ///
    /// `cancels_pending` is the transaction layer's verdict for a CANCEL: whether it matched
    /// an INVITE server transaction.
    pub fn respond(&self, request: &Message, cancels_pending: bool) -> Option<Message> {
        let method = request.method()?;
        if method == Method::Ack {
            return None;
        }
        let tag = self.to_tag(request);
        if method != Method::Cancel {
            let unknown: Vec<&str> = request.require().collect();
            if !unknown.is_empty() {
                // We support no extension, so every required one is unsupported.
                let list = unknown.join(", ");
                return Some(
                    self.base(request, 420, &tag)
                        .header(HeaderName::Unsupported, &list)
                        .build(),
                );
            }
        }
        let response = match method {
            Method::Options => self
                .base(request, 200, &tag)
                .header(HeaderName::Allow, ALLOW)
                .header(HeaderName::Accept, ACCEPT)
                .header(HeaderName::Supported, SUPPORTED),
            Method::Cancel if cancels_pending => self.base(request, 200, &tag),
            Method::Cancel => self.base(request, 481, &tag),
            _ => self
                .base(request, 501, &tag)
                .header(HeaderName::Allow, ALLOW),
        };
        Some(response.build())
    }

    /// The error response to a request that parsed but failed [`Message::check`], or `None`
    /// when the error warrants none (or the request is an ACK, which is never answered).
    pub fn reject(&self, request: &Message, error: &ParseError) -> Option<Message> {
        let status = error.suggested_status()?;
        self.reject_with(request, status, &error.to_string())
    }

    /// An error response with `status`, naming `problem` in the reason phrase and in a
    /// Warning header (code 399, "miscellaneous warning"). `None` for ACK and responses.
    pub fn reject_with(&self, request: &Message, status: u16, problem: &str) -> Option<Message> {
        if !request.is_request() || request.method() == Some(Method::Ack) {
            return None;
        }
        let warning = format!("399 {WARN_AGENT} {}", quote(problem));
        let reason = format!("{} ({problem})", vigil_proto::msg::default_reason(status));
        Some(
            self.base(request, status, &self.to_tag(request))
                .reason(&sanitize_reason(&reason))
                .header(HeaderName::Warning, &warning)
                .build(),
        )
    }

    fn base(&self, request: &Message, status: u16, tag: &str) -> ResponseBuilder {
        ResponseBuilder::for_request(request, status, Some(tag)).header(HeaderName::Server, SERVER)
    }

    /// A To-tag derived from the request's transaction identity (Call-ID, From tag, top Via
    /// branch, CSeq) under the per-process key.
    fn to_tag(&self, request: &Message) -> String {
        let mut h = self.tag_key.build_hasher();
        request.header(HeaderName::CallId).hash(&mut h);
        request.from_hdr().ok().and_then(|f| f.tag()).hash(&mut h);
        request.top_via().ok().and_then(|v| v.branch()).hash(&mut h);
        request.header(HeaderName::CSeq).hash(&mut h);
        format!("{:016x}", h.finish())
    }
}

/// A reason phrase may hold any UTF-8 except CR and LF (RFC 3261 §25.1); keep it short.
fn sanitize_reason(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(120)
        .collect()
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn req(method: &str, extra: &str) -> Message {
        let text = format!(
            "{method} sip:gw@127.0.0.1 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:alice@example.com>;tag=a1\r\n\
             To: <sip:gw@127.0.0.1>\r\n\
             Call-ID: c1@example.com\r\n\
             CSeq: 7 {method}\r\n{extra}\
             Content-Length: 0\r\n\r\n"
        );
        Message::parse(Bytes::from(text)).unwrap()
    }

    #[test]
    fn options_gets_200_with_capabilities_and_a_stable_tag() {
        let uas = Uas::new();
        let r = uas.respond(&req("OPTIONS", ""), false).unwrap();
        assert_eq!(r.status(), Some(200));
        assert_eq!(r.header(HeaderName::Allow), Some(ALLOW));
        assert!(r.header(HeaderName::Accept).is_some());
        assert!(r.header(HeaderName::Supported).is_some());
        assert_eq!(r.call_id().unwrap(), "c1@example.com");
        assert_eq!(r.cseq().unwrap().seq, 7);
        let tag = r.to_hdr().unwrap().tag().unwrap().to_owned();
        let again = uas.respond(&req("OPTIONS", ""), false).unwrap();
        assert_eq!(again.to_hdr().unwrap().tag(), Some(tag.as_str()));
        assert_ne!(
            tag,
            Uas::new().to_tag(&req("OPTIONS", "")),
            "key is per instance"
        );
    }

    #[test]
    fn other_methods() {
        let uas = Uas::new();
        assert_eq!(
            uas.respond(&req("INVITE", ""), false).unwrap().status(),
            Some(501)
        );
        assert_eq!(
            uas.respond(&req("MESSAGE", ""), false).unwrap().status(),
            Some(501)
        );
        assert!(uas.respond(&req("ACK", ""), false).is_none());
        assert_eq!(
            uas.respond(&req("CANCEL", ""), false).unwrap().status(),
            Some(481)
        );
        assert_eq!(
            uas.respond(&req("CANCEL", ""), true).unwrap().status(),
            Some(200)
        );
        let r = uas
            .respond(&req("OPTIONS", "Require: foo, bar\r\n"), false)
            .unwrap();
        assert_eq!(r.status(), Some(420));
        assert_eq!(r.header(HeaderName::Unsupported), Some("foo, bar"));
    }

    #[test]
    fn malformed_request_gets_the_suggested_status_and_a_warning() {
        let uas = Uas::new();
        let bad = req("OPTIONS", "Max-Forwards: many\r\n");
        let err = bad.check().unwrap_err();
        let r = uas.reject(&bad, &err).unwrap();
        assert_eq!(Some(r.status().unwrap()), err.suggested_status());
        let warning = r.header(HeaderName::Warning).unwrap();
        assert!(warning.starts_with("399 vigil \""), "{warning}");
        assert!(r.reason().unwrap().contains(&err.to_string()));
        assert!(uas.reject(&req("ACK", ""), &err).is_none());
    }
}
