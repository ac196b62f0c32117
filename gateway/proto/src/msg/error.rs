//! Typed parse errors for SIP messages, URIs and header values.
//!
//! Errors say what was wrong (and for framing errors, by how much) so that a server can pick a
//! response code with [`ParseError::suggested_status`] and a log line can say why a peer's
//! message was dropped without quoting it.

use super::header::HeaderName;
use super::method::Method;

/// Why a SIP message, or one of its typed header values, could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The buffer holds no message (empty, or only CRLF keep-alives).
    #[error("empty message")]
    Empty,
    /// The message is larger than [`super::MAX_MESSAGE_LEN`].
    #[error("message of {len} bytes exceeds the limit of {max}")]
    MessageTooLarge { len: usize, max: usize },
    /// More header lines than [`super::MAX_HEADERS`].
    #[error("more than {max} header fields")]
    TooManyHeaders { max: usize },
    /// The first line is neither a Request-Line nor a Status-Line (or is not CRLF-terminated).
    #[error("missing or malformed start line")]
    MissingStartLine,
    /// The start line looks like a Request-Line or Status-Line but is malformed (extra or
    /// trailing SP, missing version, RFC 4475 §3.1.2.9–10).
    #[error("malformed start line")]
    BadStartLine,
    /// The request method is not a token.
    #[error("malformed method")]
    BadMethod,
    /// The Request-URI is malformed (embedded whitespace, `<>`, bad SIP-URI syntax, ...).
    #[error("malformed Request-URI: {0}")]
    BadRequestUri(UriError),
    /// The Request-URI carries `?headers`, which RFC 3261 §19.1.5 forbids there.
    #[error("Request-URI carries escaped headers")]
    RequestUriHeaders,
    /// A well-formed SIP-Version other than SIP/2.0.
    #[error("unsupported SIP version")]
    BadVersion,
    /// The status code is not three digits in 100..=699.
    #[error("malformed or out-of-range status code")]
    BadStatusCode,
    /// The start line or header section is not UTF-8.
    #[error("invalid UTF-8 at byte {offset}")]
    InvalidUtf8 { offset: usize },
    /// A CR or LF in the header section that is not part of a CRLF line end.
    #[error("bare CR or LF at byte {offset}")]
    BareLineBreak { offset: usize },
    /// A header line with no colon, or whose name is not a token.
    #[error("malformed header name at byte {offset}")]
    HeaderNameInvalid { offset: usize },
    /// A continuation line (leading whitespace) before any header line.
    #[error("continuation line without a header at byte {offset}")]
    OrphanContinuation { offset: usize },
    /// The header section does not end with an empty line.
    #[error("header section not terminated by an empty line")]
    UnterminatedHeaders,
    /// Content-Length is not a non-negative decimal number that fits the message limit.
    #[error("malformed Content-Length")]
    BadContentLength,
    /// Two Content-Length header fields disagree (RFC 4475 §3.3.9): a framing error.
    #[error("conflicting Content-Length values {first} and {second}")]
    ConflictingContentLength { first: usize, second: usize },
    /// Content-Length announces more body than the buffer holds.
    #[error("body truncated: Content-Length {expected}, {got} bytes present")]
    BodyTruncated { expected: usize, got: usize },
    /// A header that may appear only once appears several times (RFC 4475 §3.3.8).
    #[error("duplicate {0} header")]
    DuplicateHeader(HeaderName),
    /// A mandatory header is absent.
    #[error("missing {0} header")]
    MissingHeader(HeaderName),
    /// A header value does not match its grammar.
    #[error("malformed {name} value: {kind}")]
    BadHeaderValue { name: HeaderName, kind: ValueError },
    /// The CSeq method differs from the request method (RFC 4475 §3.1.2.17/18).
    #[error("CSeq method {cseq} does not match request method {request}")]
    CSeqMethodMismatch { request: Method, cseq: Method },
}

impl ParseError {
    /// The response a server should send for a *request* that failed this way, or `None` when
    /// the message should be dropped silently. Errors found in responses are never answered:
    /// the caller drops those regardless (RFC 4475 §3.1.2.19, §3.1.2.5).
    pub fn suggested_status(&self) -> Option<u16> {
        match self {
            // Nothing to answer: no start line, or not even a message.
            ParseError::Empty | ParseError::MissingStartLine => None,
            ParseError::BadStatusCode => None,
            ParseError::BadVersion => Some(505),
            ParseError::MessageTooLarge { .. } => Some(513),
            // RFC 4475 §3.1.2.18: an unknown method with a mismatching CSeq gets 501, which a
            // UAS would answer anyway after checking the method first.
            ParseError::CSeqMethodMismatch {
                request: Method::Other(_),
                ..
            } => Some(501),
            _ => Some(400),
        }
    }

    /// Helper for header value errors.
    pub(crate) fn value(name: HeaderName, kind: ValueError) -> Self {
        ParseError::BadHeaderValue { name, kind }
    }
}

/// What was wrong inside a header value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    #[error("empty value")]
    Empty,
    #[error("unterminated quoted string")]
    UnterminatedQuote,
    #[error("unterminated <...>")]
    UnterminatedAngle,
    #[error("not a number")]
    BadNumber,
    #[error("number out of range")]
    NumberTooLarge,
    #[error("not a token")]
    BadToken,
    #[error("malformed parameter")]
    BadParam,
    #[error("malformed display name")]
    BadDisplayName,
    #[error("malformed sent-protocol")]
    BadSentProtocol,
    #[error("malformed host")]
    BadHost,
    #[error("malformed port")]
    BadPort,
    #[error("unexpected trailing characters")]
    TrailingGarbage,
    #[error("empty list element")]
    EmptyElement,
    #[error("URI with ',', ';' or '?' outside <>")]
    UnbracketedUri,
    #[error("bad URI: {0}")]
    Uri(UriError),
}

/// Why a URI could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UriError {
    #[error("empty URI")]
    Empty,
    #[error("missing or malformed scheme")]
    BadScheme,
    #[error("whitespace or control character in URI")]
    IllegalChar,
    #[error("malformed user part")]
    BadUser,
    #[error("malformed host")]
    BadHost,
    #[error("malformed port")]
    BadPort,
    #[error("malformed URI parameter")]
    BadParam,
    #[error("malformed URI header")]
    BadHeader,
    #[error("URI enclosed in <>")]
    AngleBrackets,
    #[error("URI longer than 65535 bytes")]
    TooLong,
}
