//! The stream framer: bytes from a TCP or TLS connection in, whole messages and keep-alives out.

use bytes::{Bytes, BytesMut};

use super::scan::{find_header_end, scan_content_length};
use super::{FramerConfig, FramingError};

const CRLF: &[u8] = b"\r\n";
const CRLFCRLF: &[u8] = b"\r\n\r\n";

/// One unit popped from a [`StreamFramer`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamItem {
    /// One complete message, header section and exactly `Content-Length` body bytes. The
    /// bytes share the framer's buffer: no copy.
    Message(Bytes),
    /// A double-CRLF keep-alive ping (RFC 5626 §3.5.1): the shell should answer with a CRLF pong.
    Ping,
    /// A single-CRLF keep-alive pong: the answer to a ping this side sent.
    Pong,
}

/// Splits a byte stream into SIP messages by `Content-Length`; see the [module](super) docs.
///
/// Usage: after each read call [`handle_bytes`](Self::handle_bytes) with the bytes read, then
/// [`poll_item`](Self::poll_item) until it returns `Ok(None)`, then
/// [`poll_lone_crlf`](Self::poll_lone_crlf) once. At end of stream call
/// [`handle_eof`](Self::handle_eof). Any error is final: every later call returns it again and
/// the connection must be closed.
///
/// Memory bound: after a full drain the framer holds at most one incomplete message, which is
/// never longer than `max_message_size`; so the buffer never exceeds `max_message_size` plus
/// one read. Feeding more without draining counts against the same limit.
#[derive(Debug)]
pub struct StreamFramer {
    config: FramerConfig,
    buf: BytesMut,
    /// Where the search for the end of the pending header section resumes, so a header
    /// section arriving in many small reads is scanned once, not once per read.
    scan_from: usize,
    /// The total length of the pending message once its header section has been scanned.
    pending_len: Option<usize>,
    failed: Option<FramingError>,
}

impl StreamFramer {
    /// A framer with the given limits.
    pub fn new(config: FramerConfig) -> Self {
        Self {
            config,
            buf: BytesMut::new(),
            scan_from: 0,
            pending_len: None,
            failed: None,
        }
    }

    /// The limits this framer enforces.
    pub fn config(&self) -> FramerConfig {
        self.config
    }

    /// Bytes received but not yet returned as items.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Whether the framer sits between messages (nothing, or only part of a keep-alive,
    /// buffered), so closing the connection now loses no message.
    pub fn is_at_boundary(&self) -> bool {
        self.pending_len.is_none() && self.buf.iter().all(|b| *b == b'\r' || *b == b'\n')
    }

    /// Appends bytes read from the connection.
    ///
    /// Fails if the framer already failed, or if the undrained buffer already exceeds the
    /// maximum message size (which after a full drain only an oversized message can cause).
    pub fn handle_bytes(&mut self, data: &[u8]) -> Result<(), FramingError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        if self.buf.len() > self.config.max_message_size {
            return Err(self.fail(FramingError::MessageTooLarge {
                limit: self.config.max_message_size,
            }));
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    /// Pops the next complete item, `Ok(None)` if more bytes are needed.
    pub fn poll_item(&mut self) -> Result<Option<StreamItem>, FramingError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        if self.pending_len.is_none() {
            if let Some(item) = self.poll_keepalive() {
                return Ok(Some(item));
            }
            if self.buf.is_empty() || self.buf.as_ref() == b"\r" || self.buf.starts_with(CRLF) {
                // Nothing yet, or a keep-alive that the next bytes will disambiguate.
                return Ok(None);
            }
            match self.scan_header()? {
                Some(total) => self.pending_len = Some(total),
                None => return Ok(None),
            }
        }
        match self.pending_len {
            Some(total) if self.buf.len() >= total => {
                self.pending_len = None;
                self.scan_from = 0;
                Ok(Some(StreamItem::Message(self.buf.split_to(total).freeze())))
            }
            _ => Ok(None),
        }
    }

    /// Resolves a lone CRLF left at a message boundary after a read as a pong.
    ///
    /// On its own a CRLF is ambiguous: it may be a pong or the first half of a ping split
    /// across reads, so [`poll_item`](Self::poll_item) waits for the next bytes. A peer writes
    /// its 4-byte ping in one go, so when a read ends exactly after one CRLF the shell calls
    /// this to report the pong without waiting for more traffic.
    pub fn poll_lone_crlf(&mut self) -> Option<StreamItem> {
        if self.failed.is_none() && self.pending_len.is_none() && self.buf.as_ref() == CRLF {
            self.buf.clear();
            return Some(StreamItem::Pong);
        }
        None
    }

    /// Reports the end of the stream: an error if it ended inside a message.
    pub fn handle_eof(&mut self) -> Result<(), FramingError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        if self.is_at_boundary() {
            return Ok(());
        }
        let missing = match self.pending_len {
            Some(total) => total - self.buf.len(),
            None => missing_for_header_end(&self.buf),
        };
        Err(self.fail(FramingError::Truncated { missing }))
    }

    /// RFC 5626 §3.5.1 keep-alives at a message boundary (RFC 3261 §7.5 also asks servers
    /// to ignore CRLFs before a start line, which this covers).
    fn poll_keepalive(&mut self) -> Option<StreamItem> {
        if self.buf.starts_with(CRLFCRLF) {
            let _ = self.buf.split_to(CRLFCRLF.len());
            return Some(StreamItem::Ping);
        }
        // A CRLF followed by anything other than the CR of a second CRLF is a pong. When that
        // CR is followed by something other than LF the second CRLF cannot come either.
        let is_pong = self.buf.starts_with(CRLF)
            && match self.buf.get(2) {
                None => false,
                Some(b'\r') => self.buf.get(3).is_some_and(|b| *b != b'\n'),
                Some(_) => true,
            };
        if is_pong {
            let _ = self.buf.split_to(CRLF.len());
            return Some(StreamItem::Pong);
        }
        None
    }

    /// Looks for the end of the pending header section; once found, returns the total length
    /// of the message it starts.
    fn scan_header(&mut self) -> Result<Option<usize>, FramingError> {
        let limit = self.config.max_message_size;
        let Some(header_end) = find_header_end(&self.buf, self.scan_from) else {
            if self.buf.len() > limit {
                return Err(self.fail(FramingError::MessageTooLarge { limit }));
            }
            // The terminator may straddle this read and the next.
            self.scan_from = self.buf.len().saturating_sub(CRLFCRLF.len() - 1);
            return Ok(None);
        };
        if header_end > limit {
            return Err(self.fail(FramingError::MessageTooLarge { limit }));
        }
        let content_length = match scan_content_length(&self.buf[..header_end]) {
            Ok(Some(n)) => n,
            Ok(None) => return Err(self.fail(FramingError::MissingContentLength)),
            Err(err) => return Err(self.fail(err)),
        };
        match header_end.checked_add(content_length) {
            Some(total) if total <= limit => Ok(Some(total)),
            _ => Err(self.fail(FramingError::MessageTooLarge { limit })),
        }
    }

    fn fail(&mut self, err: FramingError) -> FramingError {
        self.failed = Some(err.clone());
        // The connection is going away; free the buffer now.
        self.buf = BytesMut::new();
        self.pending_len = None;
        err
    }
}

/// How many bytes an unterminated header section lacks at least: the part of `CRLFCRLF` that
/// its tail does not already hold.
fn missing_for_header_end(buf: &[u8]) -> usize {
    (1..CRLFCRLF.len())
        .rev()
        .find(|n| buf.ends_with(&CRLFCRLF[..*n]))
        .map_or(CRLFCRLF.len(), |n| CRLFCRLF.len() - n)
}
