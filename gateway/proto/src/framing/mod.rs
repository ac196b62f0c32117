//! Framing: where one SIP message ends and the next begins, before any parsing.
//!
//! SIP over a stream transport (TCP, TLS) is a byte stream with no record boundaries, so each
//! message must say how long its body is: RFC 3261 §18.3 makes `Content-Length` mandatory on
//! streams and uses it to find the end of the body. Between messages a peer may send the
//! RFC 5626 §3.5.1 keep-alives: a double CRLF "ping" that must be answered with a single CRLF
//! "pong". Over UDP each datagram is one message, trailing octets beyond `Content-Length` are
//! ignored, and a datagram holding only CRLFs is a keep-alive.
//!
//! - [`StreamFramer`]: feed it the bytes read from a connection and pop [`StreamItem`]s: whole
//!   messages (as zero-copy [`Bytes`]), pings and pongs. It never buffers more than the
//!   configured maximum message size plus one read chunk; a peer that breaks the framing rules
//!   gets a [`FramingError`], which always means "close this connection", because once the
//!   length of one message is unknown the start of the next cannot be found.
//! - [`check_datagram`]: classifies one UDP datagram as a message (with the byte range to
//!   parse), a keep-alive, or an error.
//!
//! Why not use the `msg` parser here: framing runs on every read, before the shell has decided
//! to spend anything on a message, and must bound memory for peers that never finish a header
//! section. It only needs the end of the header section and the `Content-Length` value, which a
//! `memchr` scan finds without allocating (see [`scan`]). The full parser then runs once on the
//! framed bytes. The scan follows the grammar rules that matter for framing: case-insensitive
//! names, the compact form `l`, whitespace before the colon, and folded (continuation) lines.
//!
//! Architecture invariant: nothing here reads the clock or performs I/O; idle timeouts and the
//! answer to a ping are the shell's job.

mod datagram;
mod scan;
mod stream;
#[cfg(test)]
mod tests;

pub use bytes::Bytes;
pub use datagram::{check_datagram, DatagramKind};
pub use scan::{find_header_end, scan_content_length};
pub use stream::{StreamFramer, StreamItem};

/// The largest SIP message Vigil accepts by default, header section plus body.
///
/// 64 KiB is the largest message a UDP datagram can carry, so a stream peer gets the same room.
/// Vigil's own traffic (REGISTER, INVITE with SDP, MESSAGE) is a few kilobytes at most.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 65_535;

/// Limits that bound what one peer can make the framer buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FramerConfig {
    /// Maximum size of one message: start line, header section, the empty line and the body.
    /// A message whose header section or declared total exceeds it is rejected with
    /// [`FramingError::MessageTooLarge`] as soon as that is known, before the body arrives.
    pub max_message_size: usize,
}

impl Default for FramerConfig {
    fn default() -> Self {
        Self {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
        }
    }
}

/// Why a stream or datagram cannot be framed.
///
/// On a stream every variant means the connection must be closed: the framer cannot know where
/// the next message starts. On UDP the datagram is dropped (or answered with 400 if it can
/// still be parsed as a request).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FramingError {
    /// A stream message without a `Content-Length` header (RFC 3261 §18.3 requires it on
    /// stream transports).
    #[error("Content-Length is required on stream transports")]
    MissingContentLength,
    /// `Content-Length` with a minus sign (RFC 4475 §3.1.2.7, "ncl").
    #[error("negative Content-Length")]
    NegativeContentLength,
    /// `Content-Length` that is empty, not decimal digits, or too large to represent.
    #[error("Content-Length is not a decimal number")]
    InvalidContentLength,
    /// Several `Content-Length` headers with different values (RFC 4475 §3.1.2.9, "mcl01").
    #[error("conflicting Content-Length values {first} and {second}")]
    ConflictingContentLength {
        /// The first value seen.
        first: usize,
        /// The first value that differs from it.
        second: usize,
    },
    /// The header section, or the header section plus the declared body, exceeds the limit.
    #[error("message exceeds the {limit}-byte limit")]
    MessageTooLarge {
        /// The configured maximum message size.
        limit: usize,
    },
    /// The stream ended, or the datagram ended, in the middle of a message: the header section
    /// is unterminated or the body is shorter than `Content-Length` (RFC 4475 "clerr").
    #[error("message truncated: {missing} more bytes were expected")]
    Truncated {
        /// How many more bytes were needed at least (for an unterminated header section: the
        /// two or four bytes of the missing empty line).
        missing: usize,
    },
    /// A datagram whose header section never ends (no empty line after the headers).
    #[error("header section is not terminated by an empty line")]
    UnterminatedHeaders,
}
