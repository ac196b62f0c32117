//! The SIP message layer: a zero-copy parser, typed lazy accessors, a printer and builders.
//!
//! [`Message::parse`] makes one pass over the bytes and records where the start line, each
//! header field and the body are; it owns the bytes (a cheap-to-clone [`Bytes`]) and has no
//! lifetime parameter, so transactions can store messages. Typed views ([`Via`],
//! [`NameAddr`], [`Contacts`], [`CSeq`], [`Uri`], ...) borrow from the message and are parsed
//! on access, so a proxy that only needs the top Via and the Call-ID pays for nothing else.
//!
//! Messages are built with [`RequestBuilder`], [`ResponseBuilder`], [`ack_for_non_2xx`],
//! [`cancel_for`] and edited with [`Message::edit`]; no caller assembles header lines by
//! string formatting, and what the builders print is what the parser accepts.
//!
//! Module map: `parse` (framing), `access` (typed getters), `header` (names), `method`,
//! `uri`, `escape`, `params`, `name_addr`, `via`, `contact`, `values` (Content-Type, Reason,
//! Feature-Caps), `scan` (character classes, LWS, quoted strings, list splitting), `build`
//! (printer and builders), `edit` (proxy edits), `error`.
//!
//! Liberal or strict, per RFC 4475 choice (the conformance tests document each): lines end
//! in CRLF only; extra SP in the Request-Line, LWS in the Request-URI, `<>` around it and
//! `?headers` in it are rejected; folded lines, compact names, LWS around `:`/`;`/`=`,
//! leading zeros, unknown methods, schemes and headers are accepted; a Date header is
//! never interpreted.
//!
//! Architecture Invariant: nothing on the parse path allocates for a message of at most 20
//! unfolded header lines; typed accessors allocate only to decode escapes or quoted-pairs,
//! for extension `Method`/`HeaderName` values, and for contact lists of more than two.

use bytes::Bytes;
use smallvec::SmallVec;

mod access;
mod build;
mod contact;
mod edit;
mod error;
pub mod escape;
mod header;
mod method;
mod name_addr;
mod params;
mod parse;
mod scan;
pub(crate) mod stops;
mod uri;
mod values;
mod via;

pub use build::{
    ack_for_non_2xx, cancel_for, default_reason, name_addr, RequestBuilder, ResponseBuilder,
};
/// The printer behind the builders, for crate-internal hot paths (the registration engine's
/// REGISTER) that assemble values in a scratch buffer instead of owning each one.
pub(crate) use build::{decimal_bytes, CleanRequest};
pub use contact::{Contact, Contacts};
pub use edit::{EditError, Editor};
pub use error::{ParseError, UriError, ValueError};
pub use header::HeaderName;
pub use method::{CSeq, Method, MAX_CSEQ};
pub use name_addr::NameAddr;
pub use params::{ParamIter, Params};
pub use scan::{quote, unquote};
pub use uri::{Scheme, SipUriBuilder, Uri, UriParams, MAX_URI_LEN};
pub use values::{FeatureCap, MediaType, ReasonValue};
pub use via::{Via, BRANCH_MAGIC_COOKIE};

/// Largest message accepted, in bytes. UDP datagrams stay far below; the limit bounds what
/// a stream peer can make us hold.
pub const MAX_MESSAGE_LEN: usize = 256 * 1024;
/// Most header fields accepted in one message.
pub const MAX_HEADERS: usize = 256;
/// Header spans stored inline before spilling to the heap: a REGISTER or INVITE has ~10–16.
const INLINE_HEADERS: usize = 20;

/// A byte range of the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    off: u32,
    len: u32,
}

impl Span {
    fn range(self) -> std::ops::Range<usize> {
        self.off as usize..(self.off + self.len) as usize
    }
}

#[derive(Clone, Copy, Debug)]
enum StartLine {
    Request { method: Span, uri: Span },
    Response { status: u16, reason: Span },
}

/// One header field: its recognised name (if known), where its name and value are.
#[derive(Clone, Copy, Debug)]
struct HeaderSpan {
    code: Option<header::Code>,
    name_len: u16,
    name_off: u32,
    value: Span,
}

/// One parsed SIP message.
///
/// Owns its bytes plus offsets into them. Header values are split once at parse time and
/// typed views are parsed lazily on access. A folded header line reads as one line with
/// spaces where the fold was ([`Message::as_bytes`] then holds that unfolded form).
#[derive(Clone, Debug)]
pub struct Message {
    buf: Bytes,
    /// `buf[..head_len]` (start line and header section), checked to be UTF-8 once at parse
    /// time and shared with `buf`, so that getters return `&str` without re-validating.
    head: bytestring::ByteString,
    start: StartLine,
    headers: SmallVec<[HeaderSpan; INLINE_HEADERS]>,
    body: Span,
    content_length: Option<usize>,
    head_len: u32,
    /// Whether the To header has a tag, noted by the transaction layer when
    /// [`Message::check`] passed (so To is present once, URI included): a response built
    /// for the request then need not parse To again. `None` when not known.
    to_tag_checked: Option<bool>,
    /// What a passed [`Message::check`] found that the transaction layer reads next (see
    /// [`Checked`]). The shell checks every message before the layer sees it, so a
    /// response's top Via and CSeq are then parsed once, not twice. Set once, by the
    /// check: the message never changes after parsing, so it stays true (and a clone,
    /// holding the same bytes, may carry it).
    checked: std::sync::OnceLock<Checked>,
}

/// See the `checked` field of [`Message`]: the top Via's branch (a span of the head) and the CSeq, as
/// [`Message::top_via`] and [`Message::cseq`] would return them.
#[derive(Clone, Debug)]
struct Checked {
    top_branch: Option<Span>,
    cseq: CSeq,
}

/// A header field as it appears in a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderField<'a> {
    /// The name as written (may be a compact form, any case).
    pub raw_name: &'a str,
    /// The value with surrounding LWS removed.
    pub value: &'a str,
}

impl HeaderField<'_> {
    /// The recognised name (allocates only for `Other`).
    pub fn name(&self) -> HeaderName {
        HeaderName::parse(self.raw_name).unwrap_or_else(|| HeaderName::Other(self.raw_name.into()))
    }
}
