//! Header field names: a closed enum of the names Vigil knows, plus `Other` for the rest.
//!
//! Names match case-insensitively and compact forms (RFC 3261 §7.3.3 and later RFCs) map to
//! their long form, so `v:` and `VIA:` both give [`HeaderName::Via`]. Recognising a name never
//! allocates: the parser case-folds the name with masked loads (no loop) and compares it with
//! the spellings of the same length and first letter; on x86_64 a name of up to sixteen
//! bytes (all but the longest few) is one SSE2 register and each spelling one compare,
//! other names are three packed words. Inside a parsed message each header span stores only
//! a one-byte [`Code`]; `Other` names are read back from the message bytes.

use std::fmt;
use std::hash::{Hash, Hasher};

macro_rules! header_names {
    ($( $var:ident = $canon:literal, $($pat:literal)|+ ;)*) => {
        /// A SIP header field name.
        ///
        /// `Other` holds an extension name as written; it compares case-insensitively.
        #[derive(Clone, Debug)]
        #[non_exhaustive]
        pub enum HeaderName {
            $(
                #[doc = concat!("`", $canon, "`")]
                $var,
            )*
            /// Any header not listed above, kept verbatim.
            Other(Box<str>),
        }

        /// One-byte tag of a known header, stored per header span.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u8)]
        pub(crate) enum Code { $($var,)* }

        impl HeaderName {
            /// The canonical (long, conventionally capitalised) name.
            pub fn as_str(&self) -> &str {
                match self {
                    $(HeaderName::$var => $canon,)*
                    HeaderName::Other(s) => s,
                }
            }

            pub(crate) fn code(&self) -> Option<Code> {
                match self {
                    $(HeaderName::$var => Some(Code::$var),)*
                    HeaderName::Other(_) => None,
                }
            }

            pub(crate) fn from_code(c: Code) -> HeaderName {
                match c {
                    $(Code::$var => HeaderName::$var,)*
                }
            }

        }

        /// Every spelling (long and compact, lowercase) with its code.
        const NAMES: &[(&[u8], Code)] = &[$($(($pat, Code::$var),)+)*];
    };
}

header_names! {
    Via = "Via", b"via" | b"v";
    From = "From", b"from" | b"f";
    To = "To", b"to" | b"t";
    CallId = "Call-ID", b"call-id" | b"i";
    CSeq = "CSeq", b"cseq";
    MaxForwards = "Max-Forwards", b"max-forwards";
    Contact = "Contact", b"contact" | b"m";
    Route = "Route", b"route";
    RecordRoute = "Record-Route", b"record-route";
    Path = "Path", b"path";
    ServiceRoute = "Service-Route", b"service-route";
    Expires = "Expires", b"expires";
    MinExpires = "Min-Expires", b"min-expires";
    WwwAuthenticate = "WWW-Authenticate", b"www-authenticate";
    ProxyAuthenticate = "Proxy-Authenticate", b"proxy-authenticate";
    Authorization = "Authorization", b"authorization";
    ProxyAuthorization = "Proxy-Authorization", b"proxy-authorization";
    AuthenticationInfo = "Authentication-Info", b"authentication-info";
    ContentLength = "Content-Length", b"content-length" | b"l";
    ContentType = "Content-Type", b"content-type" | b"c";
    ContentEncoding = "Content-Encoding", b"content-encoding" | b"e";
    ContentDisposition = "Content-Disposition", b"content-disposition";
    ContentLanguage = "Content-Language", b"content-language";
    Reason = "Reason", b"reason";
    FeatureCaps = "Feature-Caps", b"feature-caps";
    Supported = "Supported", b"supported" | b"k";
    Require = "Require", b"require";
    ProxyRequire = "Proxy-Require", b"proxy-require";
    Unsupported = "Unsupported", b"unsupported";
    Allow = "Allow", b"allow";
    Accept = "Accept", b"accept";
    AcceptEncoding = "Accept-Encoding", b"accept-encoding";
    AcceptLanguage = "Accept-Language", b"accept-language";
    Subject = "Subject", b"subject" | b"s";
    Date = "Date", b"date";
    Event = "Event", b"event" | b"o";
    AllowEvents = "Allow-Events", b"allow-events" | b"u";
    SubscriptionState = "Subscription-State", b"subscription-state";
    ReferTo = "Refer-To", b"refer-to" | b"r";
    ReferredBy = "Referred-By", b"referred-by" | b"b";
    SessionExpires = "Session-Expires", b"session-expires" | b"x";
    MinSe = "Min-SE", b"min-se";
    Warning = "Warning", b"warning";
    RetryAfter = "Retry-After", b"retry-after";
    UserAgent = "User-Agent", b"user-agent";
    Server = "Server", b"server";
    Timestamp = "Timestamp", b"timestamp";
    Organization = "Organization", b"organization";
    Priority = "Priority", b"priority";
    CallInfo = "Call-Info", b"call-info";
    AlertInfo = "Alert-Info", b"alert-info";
    ErrorInfo = "Error-Info", b"error-info";
    InReplyTo = "In-Reply-To", b"in-reply-to";
    MimeVersion = "MIME-Version", b"mime-version";
    ReplyTo = "Reply-To", b"reply-to";
    Identity = "Identity", b"identity" | b"y";
    IdentityInfo = "Identity-Info", b"identity-info" | b"n";
    AcceptContact = "Accept-Contact", b"accept-contact" | b"a";
    RejectContact = "Reject-Contact", b"reject-contact" | b"j";
    RequestDisposition = "Request-Disposition", b"request-disposition" | b"d";
    PAssertedIdentity = "P-Asserted-Identity", b"p-asserted-identity";
    PPreferredIdentity = "P-Preferred-Identity", b"p-preferred-identity";
    Privacy = "Privacy", b"privacy";
    RSeq = "RSeq", b"rseq";
    RAck = "RAck", b"rack";
    SipEtag = "SIP-ETag", b"sip-etag";
    SipIfMatch = "SIP-If-Match", b"sip-if-match";
}

/// Names are compared as three 64-bit words: bytes `| 0x20`, padded with spaces. For token
/// characters `| 0x20` lowercases letters and maps no other token character onto a letter,
/// `-` or digit, and the space padding (not a token character) encodes the length.
type Packed = [u64; 3];
const PACK_LEN: usize = 24;
const FOLD: u64 = 0x2020_2020_2020_2020;

const fn pack_const(name: &[u8]) -> Packed {
    let mut words = [FOLD; 3];
    let mut i = 0;
    while i < name.len() {
        words[i / 8] |= (name[i] as u64) << ((i % 8) * 8);
        i += 1;
    }
    words
}

/// For each name length, the bytes of the three packed words that belong to the name.
const fn build_masks() -> [Packed; PACK_LEN + 1] {
    let mut out = [[0u64; 3]; PACK_LEN + 1];
    let mut len = 0;
    while len <= PACK_LEN {
        let mut i = 0;
        while i < len {
            out[len][i / 8] |= 0xff << ((i % 8) * 8);
            i += 1;
        }
        len += 1;
    }
    out
}

static MASKS: [Packed; PACK_LEN + 1] = build_masks();

/// Packs the first `len` (1..=[`PACK_LEN`]) bytes of `window`.
#[inline(always)]
fn pack_masked(window: &[u8; PACK_LEN], len: usize) -> Packed {
    let (words, _) = window.as_chunks::<8>();
    let mask = &MASKS[len];
    std::array::from_fn(|k| u64::from_le_bytes(words[k]) & mask[k] | FOLD)
}

/// Packs a name that ends too near the end of its buffer for [`pack_masked`]'s window.
#[cold]
fn pack_copied(name: &[u8]) -> Packed {
    let mut window = [0u8; PACK_LEN];
    window[..name.len()].copy_from_slice(name);
    pack_masked(&window, name.len())
}

/// Spellings by length and first byte: a lookup indexes [`FIRST`] with `len * 32 +
/// (first byte & 31)` and compares the packed name with the one or two spellings chained
/// from there. (`& 31` folds case; the non-letters it folds onto letters are told apart
/// by the comparison.) Entries are index + 1, 0 ends a chain.
const KEYS: usize = (PACK_LEN + 1) * 32;

const fn key_of(len: usize, first: u8) -> usize {
    len * 32 + (first & 31) as usize
}

const fn build_chains() -> ([u8; KEYS], [u8; NAMES.len()]) {
    let mut first = [0u8; KEYS];
    let mut next = [0u8; NAMES.len()];
    // Walk backwards so that each chain lists spellings in table order.
    let mut i = NAMES.len();
    while i > 0 {
        i -= 1;
        let name = NAMES[i].0;
        let k = key_of(name.len(), name[0]);
        next[i] = first[k];
        first[k] = (i + 1) as u8;
    }
    (first, next)
}

const fn build_packed() -> [Packed; NAMES.len()] {
    let mut out = [[0u64; 3]; NAMES.len()];
    let mut i = 0;
    while i < NAMES.len() {
        out[i] = pack_const(NAMES[i].0);
        i += 1;
    }
    out
}

const CHAINS: ([u8; KEYS], [u8; NAMES.len()]) = build_chains();
static FIRST: [u8; KEYS] = CHAINS.0;
static NEXT: [u8; NAMES.len()] = CHAINS.1;
static PACKED: [Packed; NAMES.len()] = build_packed();

/// Names of at most this many bytes (all but nine spellings) take [`lookup_short`].
const SHORT_LEN: usize = 16;

/// A spelling's first [`SHORT_LEN`] bytes `| 0x20`, zero past its end, by chain entry
/// (index + 1; a `u8`, so that 256 rows need no bounds check), with its code.
struct Short {
    bytes: [[u8; SHORT_LEN]; 256],
    code: [Option<Code>; 256],
    next: [u8; 256],
}

const fn build_short() -> Short {
    let mut t = Short {
        bytes: [[0; SHORT_LEN]; 256],
        code: [None; 256],
        next: [0; 256],
    };
    let mut i = 0;
    while i < NAMES.len() {
        let name = NAMES[i].0;
        let mut k = 0;
        while k < name.len() && k < SHORT_LEN {
            t.bytes[i + 1][k] = name[k] | 0x20;
            k += 1;
        }
        t.code[i + 1] = Some(NAMES[i].1);
        t.next[i + 1] = CHAINS.1[i];
        i += 1;
    }
    t
}

static SHORT: Short = build_short();

/// For each length up to [`SHORT_LEN`], ones over that many bytes.
static SHORT_MASKS: [[u8; SHORT_LEN]; SHORT_LEN + 1] = {
    let mut out = [[0; SHORT_LEN]; SHORT_LEN + 1];
    let mut len = 0;
    while len <= SHORT_LEN {
        let mut i = 0;
        while i < len {
            out[len][i] = 0xff;
            i += 1;
        }
        len += 1;
    }
    out
};

/// [`Code::lookup_at`] of a name of 1..=[`SHORT_LEN`] bytes at the start of `window`:
/// one SSE2 register holds the name (`| 0x20`, masked to its length) and each spelling
/// of the chain is one compare against it. The first byte is taken as written: `& 31`
/// in [`key_of`] ignores the `0x20` bit.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
fn lookup_short(window: &[u8; SHORT_LEN], len: usize) -> Option<Code> {
    use safe_arch::{
        bitand_m128i, bitor_m128i, cmp_eq_mask_i8_m128i, load_unaligned_m128i, move_mask_i8_m128i,
        set_splat_i8_m128i,
    };
    let mut entry = FIRST[key_of(len, window[0])];
    if entry == 0 {
        return None;
    }
    let name = bitand_m128i(
        bitor_m128i(load_unaligned_m128i(window), set_splat_i8_m128i(0x20)),
        load_unaligned_m128i(&SHORT_MASKS[len]),
    );
    loop {
        let e = usize::from(entry);
        let eq = cmp_eq_mask_i8_m128i(name, load_unaligned_m128i(&SHORT.bytes[e]));
        if move_mask_i8_m128i(eq) == 0xffff {
            return SHORT.code[e];
        }
        entry = SHORT.next[e];
        if entry == 0 {
            return None;
        }
    }
}

impl Code {
    /// Recognises a header name (any case, long or compact) without allocating: one table
    /// load and usually one three-word comparison. `name` must be a token.
    pub(crate) fn lookup(name: &[u8]) -> Option<Code> {
        Self::lookup_at(name, 0, name.len())
    }

    /// [`Code::lookup`] of `buf[start..start + len]`. The name is packed from the
    /// [`PACK_LEN`] bytes at `start`, masked to its length, so that packing takes no loop
    /// and no branch on the length; near the end of `buf` those bytes are copied first.
    #[inline(always)]
    pub(crate) fn lookup_at(buf: &[u8], start: usize, len: usize) -> Option<Code> {
        #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
        if (1..=SHORT_LEN).contains(&len) {
            if let Some(window) = buf.get(start..).and_then(<[u8]>::first_chunk::<SHORT_LEN>) {
                return lookup_short(window, len);
            }
        }
        Self::lookup_packed(buf, start, len)
    }

    /// [`Code::lookup_at`] by three packed words: names longer than [`SHORT_LEN`], names
    /// near the end of `buf`, and every name off x86_64.
    #[inline(always)]
    fn lookup_packed(buf: &[u8], start: usize, len: usize) -> Option<Code> {
        if len == 0 || len > PACK_LEN {
            return None;
        }
        let name = match buf.get(start..).and_then(<[u8]>::first_chunk::<PACK_LEN>) {
            Some(window) => pack_masked(window, len),
            None => pack_copied(&buf[start..start + len]),
        };
        // The first byte as packed: `| 0x20` leaves the five bits the key takes.
        let mut entry = FIRST[key_of(len, name[0] as u8)];
        if entry == 0 {
            return None;
        }
        loop {
            let i = usize::from(entry - 1);
            if PACKED[i] == name {
                return Some(NAMES[i].1);
            }
            entry = NEXT[i];
            if entry == 0 {
                return None;
            }
        }
    }
}

impl HeaderName {
    /// Parses a name as written (any case, compact forms allowed). Returns `None` if `name` is
    /// not a token, so that a builder can never print a header line the parser would reject.
    pub fn parse(name: &str) -> Option<HeaderName> {
        if name.is_empty() || !name.bytes().all(super::scan::is_token) {
            return None;
        }
        Some(match Code::lookup(name.as_bytes()) {
            Some(c) => HeaderName::from_code(c),
            None => HeaderName::Other(name.into()),
        })
    }

    /// The compact form, if RFC 3261 or a later RFC defines one.
    pub fn compact(&self) -> Option<char> {
        let c = match self {
            HeaderName::Via => 'v',
            HeaderName::From => 'f',
            HeaderName::To => 't',
            HeaderName::CallId => 'i',
            HeaderName::Contact => 'm',
            HeaderName::ContentLength => 'l',
            HeaderName::ContentType => 'c',
            HeaderName::ContentEncoding => 'e',
            HeaderName::Supported => 'k',
            HeaderName::Subject => 's',
            HeaderName::Event => 'o',
            HeaderName::AllowEvents => 'u',
            HeaderName::ReferTo => 'r',
            HeaderName::ReferredBy => 'b',
            HeaderName::SessionExpires => 'x',
            HeaderName::Identity => 'y',
            HeaderName::IdentityInfo => 'n',
            HeaderName::AcceptContact => 'a',
            HeaderName::RejectContact => 'j',
            HeaderName::RequestDisposition => 'd',
            _ => return None,
        };
        Some(c)
    }

    /// Whether several values may share one line separated by commas (RFC 3261 §7.3.1).
    /// Only these are split by [`super::Message::header_values`]; others (Date,
    /// WWW-Authenticate, extension headers, ...) may contain commas inside one value.
    pub fn is_list(&self) -> bool {
        matches!(
            self,
            HeaderName::Via
                | HeaderName::Contact
                | HeaderName::Route
                | HeaderName::RecordRoute
                | HeaderName::Path
                | HeaderName::ServiceRoute
                | HeaderName::ContentEncoding
                | HeaderName::ContentLanguage
                | HeaderName::Reason
                | HeaderName::FeatureCaps
                | HeaderName::Supported
                | HeaderName::Require
                | HeaderName::ProxyRequire
                | HeaderName::Unsupported
                | HeaderName::Allow
                | HeaderName::Accept
                | HeaderName::AcceptEncoding
                | HeaderName::AcceptLanguage
                | HeaderName::AllowEvents
                | HeaderName::Warning
                | HeaderName::CallInfo
                | HeaderName::AlertInfo
                | HeaderName::ErrorInfo
                | HeaderName::InReplyTo
                | HeaderName::AcceptContact
                | HeaderName::RejectContact
                | HeaderName::RequestDisposition
                | HeaderName::PAssertedIdentity
                | HeaderName::PPreferredIdentity
                | HeaderName::Privacy
        )
    }

    /// Whether the header may appear at most once (a second one is an error on access).
    pub fn is_single(&self) -> bool {
        matches!(
            self,
            HeaderName::From
                | HeaderName::To
                | HeaderName::CallId
                | HeaderName::CSeq
                | HeaderName::MaxForwards
                | HeaderName::Expires
                | HeaderName::MinExpires
                | HeaderName::ContentLength
                | HeaderName::ContentType
        )
    }

    /// Case-insensitive comparison with a name as written in a message.
    pub(crate) fn matches(&self, code: Option<Code>, raw: &str) -> bool {
        match (self, code) {
            (HeaderName::Other(s), None) => s.eq_ignore_ascii_case(raw),
            (HeaderName::Other(_), Some(_)) | (_, None) => false,
            (_, Some(c)) => self.code() == Some(c),
        }
    }
}

impl PartialEq for HeaderName {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (HeaderName::Other(a), HeaderName::Other(b)) => a.eq_ignore_ascii_case(b),
            (HeaderName::Other(_), _) | (_, HeaderName::Other(_)) => false,
            _ => self.code() == other.code(),
        }
    }
}
impl Eq for HeaderName {}

impl Hash for HeaderName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self {
            HeaderName::Other(s) => {
                for b in s.bytes() {
                    state.write_u8(b.to_ascii_lowercase());
                }
            }
            known => state.write_u8(known.code().map_or(u8::MAX, |c| c as u8)),
        }
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_and_case_insensitive() {
        assert_eq!(Code::lookup(b"v"), Some(Code::Via));
        assert_eq!(Code::lookup(b"VIA"), Some(Code::Via));
        assert_eq!(Code::lookup(b"MaX-fOrWaRdS"), Some(Code::MaxForwards));
        assert_eq!(Code::lookup(b"i"), Some(Code::CallId));
        assert_eq!(Code::lookup(b"L"), Some(Code::ContentLength));
        assert_eq!(Code::lookup(b"C%6Fntact"), None);
        assert_eq!(Code::lookup(b"x-very-long-header-name-beyond"), None);
        assert_eq!(Code::lookup(b""), None);
        // Every spelling in the table is found in any case.
        for (name, code) in NAMES {
            assert_eq!(Code::lookup(name), Some(*code));
            assert_eq!(Code::lookup(&name.to_ascii_uppercase()), Some(*code));
        }
    }

    #[test]
    fn chains_are_short() {
        // A lookup compares at most this many spellings.
        for (name, _) in NAMES {
            let mut n = 0;
            let mut e = FIRST[key_of(name.len(), name[0])];
            while e != 0 {
                n += 1;
                e = NEXT[usize::from(e - 1)];
            }
            assert!(
                n <= 3,
                "{} shares its key with {n} spellings",
                String::from_utf8_lossy(name)
            );
        }
    }

    /// The sixteen-byte lookup agrees with the packed one for every spelling, in lower and
    /// upper case, with each byte changed to a neighbour in the key's class, shortened and
    /// lengthened, followed by every kind of byte.
    #[test]
    fn short_lookup_agrees_with_packed_lookup() {
        let mut cases = 0;
        for (name, _) in NAMES {
            let mut variants = vec![name.to_vec(), name.to_ascii_uppercase()];
            for i in 0..name.len() {
                for c in [name[i] ^ 0x20, name[i] ^ 0x01, name[i] ^ 0x40, b'-', b'!'] {
                    let mut v = name.to_vec();
                    v[i] = c;
                    variants.push(v);
                }
            }
            variants.push(name[..name.len() - 1].to_vec());
            variants.push([name, &b"s"[..]].concat());
            for v in variants {
                for follow in [
                    &b": x"[..],
                    b"\r\n",
                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZ",
                    b"\xff\x00",
                ] {
                    let buf = [&v[..], follow, &[b'.'; 24][..]].concat();
                    let want = Code::lookup_packed(&buf, 0, v.len());
                    assert_eq!(
                        Code::lookup_at(&buf, 0, v.len()),
                        want,
                        "{}",
                        String::from_utf8_lossy(&v)
                    );
                    cases += 1;
                }
            }
        }
        assert!(cases > 5000);
    }

    #[test]
    fn lookup_inside_a_buffer_masks_what_follows() {
        let buf = b"xxVIA: SIP/2.0/UDP h\r\nProxy-Authorization: Digest x\r\nCSeq";
        assert_eq!(Code::lookup_at(buf, 2, 3), Some(Code::Via));
        assert_eq!(Code::lookup_at(buf, 2, 2), None, "\"VI\" is not a name");
        assert_eq!(Code::lookup_at(buf, 22, 19), Some(Code::ProxyAuthorization));
        assert_eq!(Code::lookup_at(buf, buf.len() - 4, 4), Some(Code::CSeq));
        assert_eq!(Code::lookup_at(buf, buf.len() - 1, 1), None);
    }

    #[test]
    fn compact_round_trips_through_lookup() {
        for c in "vftimlceksourbxynajd".chars() {
            let name = HeaderName::parse(&c.to_string()).expect("token");
            assert_eq!(name.compact(), Some(c), "{name}");
        }
    }

    #[test]
    fn other_names_compare_case_insensitively() {
        let a = HeaderName::parse("X-Foo").expect("token");
        let b = HeaderName::parse("x-foo").expect("token");
        assert_eq!(a, b);
        assert_ne!(a, HeaderName::Via);
        assert_eq!(HeaderName::parse("bad name"), None);
        assert_eq!(HeaderName::parse("Call-Id"), Some(HeaderName::CallId));
    }
}
