//! SIP request methods and the CSeq header value.

use std::fmt;

/// A SIP method. Methods are case-sensitive (RFC 3261 §7.1): `invite` is an extension
/// method, not INVITE.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Register,
    Options,
    Message,
    Info,
    Prack,
    Update,
    Subscribe,
    Notify,
    Refer,
    Publish,
    /// An extension method, kept as written (a token).
    Other(Box<str>),
}

impl Method {
    /// Parses a method token. Returns `None` if `s` is empty or not a token.
    pub fn parse(s: &str) -> Option<Method> {
        if let Some(m) = Self::known(s.as_bytes()) {
            return Some(m);
        }
        if s.is_empty() || !s.bytes().all(super::scan::is_token) {
            return None;
        }
        Some(Method::Other(s.into()))
    }

    /// The standard methods, matched without allocating.
    pub(crate) fn known(s: &[u8]) -> Option<Method> {
        Some(match s {
            b"INVITE" => Method::Invite,
            b"ACK" => Method::Ack,
            b"BYE" => Method::Bye,
            b"CANCEL" => Method::Cancel,
            b"REGISTER" => Method::Register,
            b"OPTIONS" => Method::Options,
            b"MESSAGE" => Method::Message,
            b"INFO" => Method::Info,
            b"PRACK" => Method::Prack,
            b"UPDATE" => Method::Update,
            b"SUBSCRIBE" => Method::Subscribe,
            b"NOTIFY" => Method::Notify,
            b"REFER" => Method::Refer,
            b"PUBLISH" => Method::Publish,
            _ => return None,
        })
    }

    /// The method as it appears on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Register => "REGISTER",
            Method::Options => "OPTIONS",
            Method::Message => "MESSAGE",
            Method::Info => "INFO",
            Method::Prack => "PRACK",
            Method::Update => "UPDATE",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Publish => "PUBLISH",
            Method::Other(s) => s,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The CSeq header value: a sequence number below 2^31 (RFC 3261 §8.1.1.5) and a method.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

/// Largest CSeq number RFC 3261 §8.1.1.5 allows.
pub const MAX_CSEQ: u32 = (1 << 31) - 1;

impl CSeq {
    /// Parses `1*DIGIT LWS Method`, with leading zeros allowed (RFC 4475 §3.1.1.1).
    pub fn parse(value: &str) -> Result<CSeq, super::ValueError> {
        use super::ValueError;
        let v = super::scan::trim_lws(value);
        // One pass over the digits; the value saturates just above the limit, so any
        // number of digits (leading zeros included) neither overflows nor passes.
        let mut seq: u64 = 0;
        let mut end = 0;
        for &b in v.as_bytes() {
            let d = b.wrapping_sub(b'0');
            if d > 9 {
                break;
            }
            seq = (seq * 10 + u64::from(d)).min(u64::from(MAX_CSEQ) + 1);
            end += 1;
        }
        if end == 0 {
            return Err(ValueError::BadNumber);
        }
        if seq > u64::from(MAX_CSEQ) {
            return Err(ValueError::NumberTooLarge);
        }
        let rest = &v[end..];
        let method_str = super::scan::skip_lws(rest);
        if method_str.len() == rest.len() {
            // No LWS between the number and the method.
            return Err(ValueError::BadToken);
        }
        let method = Method::parse(method_str).ok_or(ValueError::BadToken)?;
        Ok(CSeq {
            // At most MAX_CSEQ, checked above.
            seq: seq as u32,
            method,
        })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::ValueError;

    #[test]
    fn methods_are_case_sensitive() {
        assert_eq!(Method::parse("INVITE"), Some(Method::Invite));
        assert_eq!(
            Method::parse("invite"),
            Some(Method::Other("invite".into()))
        );
        assert_eq!(
            Method::parse("RE%47IST%45R").map(|m| m.to_string()),
            Some("RE%47IST%45R".into())
        );
        assert_eq!(Method::parse("BAD METHOD"), None);
        assert_eq!(Method::parse(""), None);
    }

    #[test]
    fn cseq_values() {
        let c = CSeq::parse("0009\r\n  INVITE").expect("folded cseq");
        assert_eq!(
            c,
            CSeq {
                seq: 9,
                method: Method::Invite
            }
        );
        assert_eq!(
            CSeq::parse("36893488147419103232 REGISTER"),
            Err(ValueError::NumberTooLarge)
        );
        assert_eq!(
            CSeq::parse("2147483648 REGISTER"),
            Err(ValueError::NumberTooLarge)
        );
        assert_eq!(
            CSeq::parse("2147483647 REGISTER").map(|c| c.seq),
            Ok(MAX_CSEQ)
        );
        assert_eq!(CSeq::parse("12INVITE"), Err(ValueError::BadToken));
        assert_eq!(CSeq::parse("INVITE"), Err(ValueError::BadNumber));
        assert_eq!(CSeq::parse("1 INVITE x"), Err(ValueError::BadToken));
    }
}
