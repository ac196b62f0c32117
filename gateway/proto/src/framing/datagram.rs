//! Datagram checks: one UDP datagram is one message, a keep-alive, or garbage.

use std::ops::Range;

use super::scan::scan_head;
use super::FramingError;

/// What one UDP datagram holds; see [`check_datagram`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DatagramKind {
    /// A message occupying this byte range of the datagram: leading CRLFs (RFC 3261 §7.5) are
    /// skipped, and octets beyond `Content-Length` are excluded (RFC 3261 §18.3 says to
    /// ignore them).
    Message(Range<usize>),
    /// Only CRLFs, or nothing: a keep-alive (RFC 5626 §3.5.1 style on UDP; NAT keep-alives).
    /// No answer is expected.
    KeepAlive,
    /// Not a framable message. The shell drops it, or answers 400 when the parser can still
    /// make a request out of it (e.g. the body is shorter than `Content-Length`).
    Error(FramingError),
}

/// Classifies one received UDP datagram.
///
/// A missing `Content-Length` is allowed on UDP: the body is the rest of the datagram.
/// A body shorter than `Content-Length` is [`FramingError::Truncated`] (RFC 4475 "clerr").
/// STUN keep-alives (RFC 5389, used on UDP by RFC 5626 §4.4.2) are not SIP and come out as
/// [`FramingError::UnterminatedHeaders`]; Vigil does not answer them.
pub fn check_datagram(data: &[u8]) -> DatagramKind {
    let start = data
        .iter()
        .position(|b| *b != b'\r' && *b != b'\n')
        .unwrap_or(data.len());
    if start == data.len() {
        return DatagramKind::KeepAlive;
    }
    match scan_head(&data[start..]) {
        Ok((_, None)) => DatagramKind::Message(start..data.len()),
        Ok((head_len, Some(len))) => match (start + head_len).checked_add(len) {
            Some(end) if end <= data.len() => DatagramKind::Message(start..end),
            Some(end) => DatagramKind::Error(FramingError::Truncated {
                missing: end - data.len(),
            }),
            None => DatagramKind::Error(FramingError::MessageTooLarge { limit: data.len() }),
        },
        Err(err) => DatagramKind::Error(err),
    }
}
