//! Typed, lazily parsed getters on [`Message`].
//!
//! Single-valued headers (From, To, Call-ID, CSeq, Max-Forwards, Expires, ...) that appear
//! more than once give [`ParseError::DuplicateHeader`] on access (RFC 4475 §3.3.8); absent
//! mandatory ones give [`ParseError::MissingHeader`] (§3.3.1). Nothing here allocates
//! except where an escape or quoted-pair has to be decoded or an `Other` name is returned.

use std::borrow::Borrow;

use bytes::Bytes;

use super::header::Code;
use super::scan::{skip_lws, split_commas, CommaSplit, ListIter};
use super::{
    CSeq, Contact, Contacts, FeatureCap, HeaderField, HeaderName, HeaderSpan, MediaType, Message,
    Method, NameAddr, ParseError, ReasonValue, Span, StartLine, Uri, ValueError, Via,
};

/// Either one whole value or the comma-split elements of a list header.
enum Values<'a> {
    One(Option<&'a str>),
    Split(CommaSplit<'a>),
}

impl<'a> Iterator for Values<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        match self {
            Values::One(v) => v.take(),
            Values::Split(s) => s.next(),
        }
    }
}

impl Message {
    #[inline]
    pub(super) fn text(&self, s: Span) -> &str {
        // Spans lie in the head and start and end at ASCII delimiters, so this never falls
        // back.
        self.head.get(s.range()).unwrap_or_default()
    }

    fn raw_name(&self, h: &HeaderSpan) -> &str {
        self.text(Span {
            off: h.name_off,
            len: u32::from(h.name_len),
        })
    }

    /// The message on the wire: the bytes it was parsed from (minus trailing octets beyond
    /// Content-Length, with folds turned into spaces) or the bytes a builder printed.
    pub fn as_bytes(&self) -> &Bytes {
        &self.buf
    }

    /// Length of the start line and header section, including the empty line.
    pub fn head_len(&self) -> usize {
        self.head_len as usize
    }

    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// The request method as written (requests only).
    pub fn method_str(&self) -> Option<&str> {
        match self.start {
            StartLine::Request { method, .. } => Some(self.text(method)),
            StartLine::Response { .. } => None,
        }
    }

    /// The request method (requests only). Allocates only for extension methods.
    pub fn method(&self) -> Option<Method> {
        let m = self.method_str()?;
        Method::known(m.as_bytes()).or_else(|| Some(Method::Other(m.into())))
    }

    /// The Request-URI as written (requests only).
    pub fn request_uri_str(&self) -> Option<&str> {
        match self.start {
            StartLine::Request { uri, .. } => Some(self.text(uri)),
            StartLine::Response { .. } => None,
        }
    }

    /// The parsed Request-URI (requests only).
    pub fn request_uri(&self) -> Option<Result<Uri<'_>, ParseError>> {
        self.request_uri_str()
            .map(|s| Uri::parse(s).map_err(ParseError::BadRequestUri))
    }

    /// The status code (responses only).
    pub fn status(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { status, .. } => Some(status),
            StartLine::Request { .. } => None,
        }
    }

    /// The reason phrase (responses only; may be empty).
    pub fn reason(&self) -> Option<&str> {
        match self.start {
            StartLine::Response { reason, .. } => Some(self.text(reason)),
            StartLine::Request { .. } => None,
        }
    }

    /// All header fields in order, without allocating.
    pub fn header_fields(&self) -> impl Iterator<Item = HeaderField<'_>> + '_ {
        self.headers.iter().map(|h| HeaderField {
            raw_name: self.raw_name(h),
            value: self.text(h.value),
        })
    }

    /// All headers in order with their recognised names (allocates for `Other` names).
    pub fn headers(&self) -> impl Iterator<Item = (HeaderName, &str)> + '_ {
        self.headers.iter().map(|h| {
            let name = match h.code {
                Some(c) => HeaderName::from_code(c),
                None => HeaderName::Other(self.raw_name(h).into()),
            };
            (name, self.text(h.value))
        })
    }

    #[inline]
    fn span_is(&self, h: &HeaderSpan, name: &HeaderName) -> bool {
        match name.code() {
            Some(c) => h.code == Some(c),
            None => h.code.is_none() && name.matches(None, self.raw_name(h)),
        }
    }

    /// Raw values of every header line called `name`, in order.
    pub fn header_lines(&self, name: HeaderName) -> impl Iterator<Item = &str> + '_ {
        self.headers
            .iter()
            .filter(move |h| self.span_is(h, &name))
            .map(|h| self.text(h.value))
    }

    /// The first value of `name`, raw (the whole line's value, LWS-trimmed).
    pub fn header(&self, name: impl Borrow<HeaderName>) -> Option<&str> {
        let name = name.borrow();
        self.headers
            .iter()
            .find(|h| self.span_is(h, name))
            .map(|h| self.text(h.value))
    }

    /// Number of header lines called `name`.
    pub fn header_count(&self, name: impl Borrow<HeaderName>) -> usize {
        let name = name.borrow();
        self.headers
            .iter()
            .filter(|h| self.span_is(h, name))
            .count()
    }

    /// Every value of `name`: each line, and for list headers ([`HeaderName::is_list`]) each
    /// comma-separated element of each line.
    pub fn header_values(&self, name: HeaderName) -> impl Iterator<Item = &str> + '_ {
        let list = name.is_list();
        self.header_lines(name).flat_map(move |v| {
            if list {
                Values::Split(split_commas(v))
            } else {
                Values::One(Some(v))
            }
        })
    }

    /// Elements of a list header without allocating.
    fn list_values(&self, code: Code) -> impl Iterator<Item = &str> + '_ {
        self.headers
            .iter()
            .filter(move |h| h.code == Some(code))
            .flat_map(move |h| split_commas(self.text(h.value)))
    }

    /// The value of a known header that must appear at most once.
    fn opt_single(&self, code: Code) -> Result<Option<&str>, ParseError> {
        let mut found = None;
        for h in &self.headers {
            if h.code == Some(code) {
                if found.is_some() {
                    return Err(ParseError::DuplicateHeader(HeaderName::from_code(code)));
                }
                found = Some(h.value);
            }
        }
        Ok(found.map(|v| self.text(v)))
    }

    fn single(&self, code: Code) -> Result<&str, ParseError> {
        self.opt_single(code)?
            .ok_or_else(|| ParseError::MissingHeader(HeaderName::from_code(code)))
    }

    /// All Via values, top first, several per line allowed.
    pub fn vias(&self) -> impl Iterator<Item = Result<Via<'_>, ParseError>> + '_ {
        self.parsed_list(Code::Via, Via::parse_prefix)
    }

    /// Elements of every `code` line, each parsed in one pass by `parse`.
    fn parsed_list<'a, T: 'a>(
        &'a self,
        code: Code,
        parse: fn(&'a str) -> Result<(T, &'a str), ValueError>,
    ) -> impl Iterator<Item = Result<T, ParseError>> + 'a {
        self.headers
            .iter()
            .filter(move |h| h.code == Some(code))
            .flat_map(move |h| ListIter::new(self.text(h.value), parse))
            .map(move |r| r.map_err(|e| ParseError::value(HeaderName::from_code(code), e)))
    }

    /// The topmost Via.
    pub fn top_via(&self) -> Result<Via<'_>, ParseError> {
        // The first element of the first Via line, without the adapters of `vias`.
        // (Not `ok_or`: that builds the error, and runs its drop glue, on every call.)
        let Some(h) = self.headers.iter().find(|h| h.code == Some(Code::Via)) else {
            return Err(ParseError::MissingHeader(HeaderName::Via));
        };
        // What `ListIter::next` does for the first element, with the parser called directly.
        let v = skip_lws(self.text(h.value));
        Via::parse_prefix(v)
            .and_then(|(via, rest)| {
                let rest = skip_lws(rest);
                if rest.is_empty() || rest.starts_with(',') {
                    Ok(via)
                } else {
                    Err(ValueError::TrailingGarbage)
                }
            })
            .map_err(|e| ParseError::value(HeaderName::Via, e))
    }

    /// Call-ID: `word ["@" word]`, compared byte for byte.
    pub fn call_id(&self) -> Result<&str, ParseError> {
        Self::call_id_value(self.single(Code::CallId)?)
    }

    fn call_id_value(v: &str) -> Result<&str, ParseError> {
        if v.is_empty() {
            return Err(ParseError::value(HeaderName::CallId, ValueError::Empty));
        }
        let word = |c| super::scan::is_extra_class(c, super::scan::CALLID);
        if super::scan::alnum_run(v.as_bytes(), word) != v.len() {
            return Err(ParseError::value(HeaderName::CallId, ValueError::BadToken));
        }
        Ok(v)
    }

    /// CSeq. For requests, a CSeq method differing from the request method is an error
    /// (RFC 4475 §3.1.2.17–18).
    pub fn cseq(&self) -> Result<CSeq, ParseError> {
        if let Some(c) = self.checked.get() {
            return Ok(c.cseq.clone());
        }
        self.cseq_value(self.single(Code::CSeq)?)
    }

    /// The top Via's branch and the CSeq method, as [`Message::top_via`] and
    /// [`Message::cseq`] give them, if [`Message::check`] has passed (and parsed the top
    /// Via): `None` means ask those getters.
    pub(crate) fn checked_key(&self) -> Option<(Option<&str>, &Method)> {
        let c = self.checked.get()?;
        Some((c.top_branch.map(|b| self.text(b)), &c.cseq.method))
    }

    /// The span of `s`, a slice of the head (a value returned by a getter).
    fn span_in_head(&self, s: &str) -> Span {
        let off = (s.as_ptr() as usize).wrapping_sub(self.head.as_ptr() as usize);
        debug_assert!(off + s.len() <= self.head.len(), "a slice of the head");
        Span {
            off: off as u32,
            len: s.len() as u32,
        }
    }

    fn cseq_value(&self, v: &str) -> Result<CSeq, ParseError> {
        let cseq = CSeq::parse(v).map_err(|e| ParseError::value(HeaderName::CSeq, e))?;
        if let Some(m) = self.method_str() {
            if cseq.method.as_str() != m {
                return Err(ParseError::CSeqMethodMismatch {
                    request: self.method().unwrap_or(Method::Other(m.into())),
                    cseq: cseq.method,
                });
            }
        }
        Ok(cseq)
    }

    fn name_addr(&self, code: Code) -> Result<NameAddr<'_>, ParseError> {
        let v = self.single(code)?;
        NameAddr::parse(v).map_err(|e| ParseError::value(HeaderName::from_code(code), e))
    }

    /// [`Message::name_addr`] with the URI parsed too.
    fn name_addr_checked(&self, code: Code) -> Result<NameAddr<'_>, ParseError> {
        let v = self.single(code)?;
        NameAddr::parse_checked(v).map_err(|e| ParseError::value(HeaderName::from_code(code), e))
    }

    /// The To header, URI included: `Err` if the To header or its URI is malformed.
    pub(crate) fn checked_to_hdr(&self) -> Result<NameAddr<'_>, ParseError> {
        self.name_addr_checked(Code::To)
    }

    /// The From header, URI included.
    pub(crate) fn checked_from_hdr(&self) -> Result<NameAddr<'_>, ParseError> {
        self.name_addr_checked(Code::From)
    }

    /// The From header (`from_hdr` because `from` reads like a conversion).
    pub fn from_hdr(&self) -> Result<NameAddr<'_>, ParseError> {
        self.name_addr(Code::From)
    }

    pub fn to_hdr(&self) -> Result<NameAddr<'_>, ParseError> {
        self.name_addr(Code::To)
    }

    /// All Contact values. `*` must stand alone (RFC 3261 §10.2.2). Each URI is parsed
    /// when asked for ([`Contact::uri`]).
    pub fn contacts(&self) -> Result<Contacts<'_>, ParseError> {
        self.contacts_with(Contact::parse_prefix)
    }

    /// [`Message::contacts`] with every URI parsed too.
    pub(crate) fn contacts_checked(&self) -> Result<Contacts<'_>, ParseError> {
        self.contacts_with(Contact::parse_prefix_checked)
    }

    fn contacts_with<'a>(
        &'a self,
        parse: fn(&'a str) -> Result<(Contact<'a>, &'a str), ValueError>,
    ) -> Result<Contacts<'a>, ParseError> {
        let err = |k| ParseError::value(HeaderName::Contact, k);
        let mut list = smallvec::SmallVec::new();
        let mut star = false;
        for h in self
            .headers
            .iter()
            .filter(|h| h.code == Some(Code::Contact))
        {
            let v = self.text(h.value);
            if v == "*" {
                star = true;
                continue;
            }
            for c in ListIter::new(v, parse) {
                list.push(c.map_err(err)?);
            }
        }
        match (star, list.is_empty()) {
            (false, _) => Ok(Contacts::List(list)),
            (true, true) => Ok(Contacts::Star),
            (true, false) => Err(err(ValueError::BadParam)),
        }
    }

    fn name_addrs(
        &self,
        code: Code,
    ) -> impl Iterator<Item = Result<NameAddr<'_>, ParseError>> + '_ {
        self.parsed_list(code, NameAddr::parse_prefix)
    }

    /// Route values in order.
    pub fn routes(&self) -> impl Iterator<Item = Result<NameAddr<'_>, ParseError>> + '_ {
        self.name_addrs(Code::Route)
    }

    /// Record-Route values in order.
    pub fn record_routes(&self) -> impl Iterator<Item = Result<NameAddr<'_>, ParseError>> + '_ {
        self.name_addrs(Code::RecordRoute)
    }

    fn number(&self, code: Code, max: u64) -> Result<Option<u64>, ParseError> {
        Self::number_value(code, self.opt_single(code)?, max)
    }

    fn number_value(code: Code, v: Option<&str>, max: u64) -> Result<Option<u64>, ParseError> {
        match v {
            None => Ok(None),
            Some(v) => super::scan::decimal_value(v, max)
                .map(Some)
                .map_err(|e| ParseError::value(HeaderName::from_code(code), e)),
        }
    }

    /// Max-Forwards (0–255; leading zeros allowed).
    pub fn max_forwards(&self) -> Result<Option<u8>, ParseError> {
        Ok(self.number(Code::MaxForwards, 255)?.map(|n| n as u8))
    }

    /// The Expires header in seconds.
    pub fn expires(&self) -> Result<Option<u32>, ParseError> {
        Ok(self
            .number(Code::Expires, u64::from(u32::MAX))?
            .map(|n| n as u32))
    }

    /// Min-Expires (sent with 423 Interval Too Brief).
    pub fn min_expires(&self) -> Result<Option<u32>, ParseError> {
        Ok(self
            .number(Code::MinExpires, u64::from(u32::MAX))?
            .map(|n| n as u32))
    }

    /// The Content-Length value, if the header was present.
    pub fn content_length(&self) -> Option<usize> {
        self.content_length
    }

    pub fn content_type(&self) -> Result<Option<MediaType<'_>>, ParseError> {
        Self::content_type_value(self.opt_single(Code::ContentType)?)
    }

    fn content_type_value(v: Option<&str>) -> Result<Option<MediaType<'_>>, ParseError> {
        match v {
            None => Ok(None),
            Some(v) => MediaType::parse(v)
                .map(Some)
                .map_err(|e| ParseError::value(HeaderName::ContentType, e)),
        }
    }

    /// Reason values (RFC 3326).
    pub fn reasons(&self) -> impl Iterator<Item = Result<ReasonValue<'_>, ParseError>> + '_ {
        self.list_values(Code::Reason)
            .map(|v| ReasonValue::parse(v).map_err(|e| ParseError::value(HeaderName::Reason, e)))
    }

    /// Feature-Caps values (RFC 6809).
    pub fn feature_caps(&self) -> impl Iterator<Item = Result<FeatureCap<'_>, ParseError>> + '_ {
        self.list_values(Code::FeatureCaps).map(|v| {
            FeatureCap::parse(v).map_err(|e| ParseError::value(HeaderName::FeatureCaps, e))
        })
    }

    /// Option tags of a token-list header (Supported, Require, Proxy-Require, Unsupported,
    /// Allow, ...), empty elements skipped.
    pub fn tokens(&self, name: HeaderName) -> impl Iterator<Item = &str> + '_ {
        let list = name.is_list();
        self.header_lines(name)
            .flat_map(move |v| {
                if list {
                    Values::Split(split_commas(v))
                } else {
                    Values::One(Some(v))
                }
            })
            .filter(|t| !t.is_empty())
    }

    /// Supported option tags.
    pub fn supported(&self) -> impl Iterator<Item = &str> + '_ {
        self.tokens(HeaderName::Supported)
    }

    /// Require option tags.
    pub fn require(&self) -> impl Iterator<Item = &str> + '_ {
        self.tokens(HeaderName::Require)
    }

    /// Whether `tag` is listed in Supported (case-insensitive).
    pub fn supports(&self, tag: &str) -> bool {
        self.supported().any(|t| t.eq_ignore_ascii_case(tag))
    }

    /// The body (exactly Content-Length bytes when the header is present).
    pub fn body(&self) -> &[u8] {
        &self.buf[self.body.range()]
    }

    /// The body as a shared `Bytes` (no copy).
    pub fn body_bytes(&self) -> Bytes {
        self.buf.slice(self.body.range())
    }

    /// Runs every check a server applies before handing a message on: the Request-URI
    /// (no `<>`, no embedded headers), every Via, From, To, Call-ID, CSeq (and that its
    /// method matches), Max-Forwards, Expires, Contact (with `expires` params), Route,
    /// Record-Route and Content-Type. The first error found is returned; for requests its
    /// [`ParseError::suggested_status`] is the response to send.
    pub fn check(&self) -> Result<(), ParseError> {
        self.check_to_tag(false).map(|_| ())
    }

    /// [`Message::check`], also telling whether the To header has a tag (the transaction
    /// layer notes it with [`Message::note_to_tag_checked`]). `top_via_ok`: the caller has
    /// parsed [`Message::top_via`] without error, so it need not be parsed again.
    pub(crate) fn check_to_tag(&self, top_via_ok: bool) -> Result<bool, ParseError> {
        if let Some(uri) = self.request_uri() {
            if uri?.headers_raw().is_some() {
                // RFC 4475 §3.1.2.11: we take the "reject" choice.
                return Err(ParseError::RequestUriHeaders);
            }
        }
        // One pass over the header spans finds every single-valued header checked below (and
        // whether it repeats) and which list headers are present; the checks then run in the
        // same order as the getters would, so the first error is the same.
        let seen = Seen::scan(&self.headers);
        // Every Via, top first, each parsed once; none at all is the top Via's error. A
        // first Via line without a comma holds only the top Via, so when the caller has
        // parsed that already (`top_via_ok`) the line is valid and is not parsed again.
        let mut vias = 0usize;
        // The top Via's branch, when the top Via is parsed here (the first element of the
        // first line, parsed as `top_via` parses it).
        let mut top_branch = None;
        if seen.has(Code::Via) {
            let via_lines = self.headers.iter().filter(|h| h.code == Some(Code::Via));
            for (i, h) in via_lines.enumerate() {
                let v = self.text(h.value);
                if i == 0 && top_via_ok && !v.as_bytes().contains(&b',') {
                    vias += 1;
                    continue;
                }
                for r in ListIter::new(v, Via::parse_prefix) {
                    let via = r.map_err(|e| ParseError::value(HeaderName::Via, e))?;
                    if vias == 0 {
                        top_branch = Some(via.branch().map(|b| self.span_in_head(b)));
                    }
                    vias += 1;
                }
            }
        }
        if vias == 0 {
            return Err(ParseError::MissingHeader(HeaderName::Via));
        }
        let mut to_has_tag = false;
        for code in [Code::From, Code::To] {
            let v = self.seen_single(&seen, code)?;
            let n = NameAddr::parse_checked(v)
                .map_err(|e| ParseError::value(HeaderName::from_code(code), e))?;
            to_has_tag = n.tag().is_some();
        }
        Self::call_id_value(self.seen_single(&seen, Code::CallId)?)?;
        let cseq = self.cseq_value(self.seen_single(&seen, Code::CSeq)?)?;
        for (code, max) in [
            (Code::MaxForwards, 255),
            (Code::Expires, u64::from(u32::MAX)),
            (Code::MinExpires, u64::from(u32::MAX)),
        ] {
            Self::number_value(code, self.seen_opt_single(&seen, code)?, max)?;
        }
        if seen.has(Code::Contact) {
            for c in self.contacts_checked()?.as_slice() {
                c.expires()
                    .map_err(|e| ParseError::value(HeaderName::Contact, e))?;
            }
        }
        if seen.has(Code::Route) || seen.has(Code::RecordRoute) {
            for r in self
                .parsed_list(Code::Route, NameAddr::parse_prefix_checked)
                .chain(self.parsed_list(Code::RecordRoute, NameAddr::parse_prefix_checked))
            {
                r?;
            }
        }
        Self::content_type_value(self.seen_opt_single(&seen, Code::ContentType)?)?;
        if let Some(top_branch) = top_branch {
            // Already set if checked before: by the same check of the same bytes.
            let _ = self.checked.set(super::Checked { top_branch, cseq });
        }
        Ok(to_has_tag)
    }

    /// Notes what [`Message::check_to_tag`] found, for [`super::ResponseBuilder::for_request`].
    pub(crate) fn note_to_tag_checked(&mut self, has_tag: bool) {
        self.to_tag_checked = Some(has_tag);
    }

    /// [`Message::opt_single`] answered from a [`Seen`] instead of a scan.
    fn seen_opt_single(&self, seen: &Seen, code: Code) -> Result<Option<&str>, ParseError> {
        match seen.single(code) {
            SeenSingle::Absent => Ok(None),
            SeenSingle::Once(v) => Ok(Some(self.text(v))),
            SeenSingle::Repeated => Err(ParseError::DuplicateHeader(HeaderName::from_code(code))),
        }
    }

    fn seen_single(&self, seen: &Seen, code: Code) -> Result<&str, ParseError> {
        self.seen_opt_single(seen, code)?
            .ok_or_else(|| ParseError::MissingHeader(HeaderName::from_code(code)))
    }
}

/// The single-valued headers [`Message::check`] looks at, in the order of [`Seen::slot`].
const SEEN_SINGLE: [Code; 8] = [
    Code::From,
    Code::To,
    Code::CallId,
    Code::CSeq,
    Code::MaxForwards,
    Code::Expires,
    Code::MinExpires,
    Code::ContentType,
];

/// What one pass over the header spans found: the value of each header in
/// [`SEEN_SINGLE`] (and whether it repeats), and which header codes occur at all.
struct Seen {
    values: [Option<Span>; SEEN_SINGLE.len()],
    repeated: u8,
    /// Bit `code as u8` (codes are fewer than 128) set when a header with that code occurs.
    present: u128,
}

enum SeenSingle {
    Absent,
    Once(Span),
    Repeated,
}

impl Seen {
    fn slot(code: Code) -> Option<usize> {
        let i = match code {
            Code::From => 0,
            Code::To => 1,
            Code::CallId => 2,
            Code::CSeq => 3,
            Code::MaxForwards => 4,
            Code::Expires => 5,
            Code::MinExpires => 6,
            Code::ContentType => 7,
            _ => return None,
        };
        debug_assert_eq!(SEEN_SINGLE[i], code);
        Some(i)
    }

    fn scan(headers: &[HeaderSpan]) -> Seen {
        let mut seen = Seen {
            values: [None; SEEN_SINGLE.len()],
            repeated: 0,
            present: 0,
        };
        for h in headers {
            let Some(code) = h.code else { continue };
            seen.present |= 1u128 << (code as u8);
            if let Some(i) = Self::slot(code) {
                if seen.values[i].is_some() {
                    seen.repeated |= 1 << i;
                } else {
                    seen.values[i] = Some(h.value);
                }
            }
        }
        seen
    }

    fn has(&self, code: Code) -> bool {
        self.present & (1u128 << (code as u8)) != 0
    }

    fn single(&self, code: Code) -> SeenSingle {
        let Some(i) = Self::slot(code) else {
            return SeenSingle::Absent;
        };
        match self.values[i] {
            None => SeenSingle::Absent,
            Some(_) if self.repeated & (1 << i) != 0 => SeenSingle::Repeated,
            Some(v) => SeenSingle::Once(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(headers: &str) -> Message {
        let s = format!("REGISTER sip:example.com SIP/2.0\r\n{headers}\r\n");
        Message::parse(Bytes::from(s)).expect("valid")
    }

    #[test]
    fn lists_and_names() {
        let msg = m("Supported: path, , outbound\r\nk: gruu\r\nX-Custom: a, b\r\nDate: Sat, 13 Nov 2010 23:29:00 GMT\r\n");
        assert_eq!(
            msg.supported().collect::<Vec<_>>(),
            vec!["path", "outbound", "gruu"]
        );
        assert!(msg.supports("OUTBOUND"));
        let custom = HeaderName::parse("x-custom").expect("token");
        assert_eq!(
            msg.header_values(custom.clone()).collect::<Vec<_>>(),
            vec!["a, b"]
        );
        assert_eq!(msg.header_values(HeaderName::Date).count(), 1);
        let names: Vec<_> = msg.headers().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            vec![
                HeaderName::Supported,
                HeaderName::Supported,
                custom,
                HeaderName::Date
            ]
        );
        assert_eq!(msg.header_fields().nth(1).map(|f| f.raw_name), Some("k"));
    }

    #[test]
    fn contacts_star_and_errors() {
        assert_eq!(m("Contact: *\r\n").contacts(), Ok(Contacts::Star));
        assert_eq!(m("").contacts().map(|c| c.as_slice().len()), Ok(0));
        assert_eq!(
            m("Contact: *, <sip:a@b>\r\n").contacts().err(),
            Some(ParseError::value(HeaderName::Contact, ValueError::BadParam))
        );
        assert_eq!(
            m("Contact: <sip:a@b>,\r\n").contacts().err(),
            Some(ParseError::value(
                HeaderName::Contact,
                ValueError::EmptyElement
            ))
        );
        let two = m("m: <sip:a@b>;expires=60, \"X\" <sip:c@d>\r\n");
        let c = two.contacts().expect("two");
        assert_eq!(c.as_slice().len(), 2);
        assert_eq!(c.as_slice()[0].expires(), Ok(Some(60)));
    }

    /// `check` finds each header in one pass but must still report the first error in its
    /// documented order, whatever the order of the lines.
    #[test]
    fn check_reports_errors_in_its_order_not_the_lines_order() {
        let base = "Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n\
                    To: <sip:a@b>\r\nCall-ID: c@h\r\nCSeq: 1 REGISTER\r\n";
        assert_eq!(m(base).check(), Ok(()));
        let dup_expires_bad_contact =
            format!("Contact: <sip:x@y>;expires=x\r\n{base}Expires: 1\r\nExpires: 2\r\n");
        assert_eq!(
            m(&dup_expires_bad_contact).check(),
            Err(ParseError::DuplicateHeader(HeaderName::Expires))
        );
        assert_eq!(
            m(&format!("Contact: <sip:x@y>;expires=x\r\n{base}")).check(),
            Err(ParseError::value(
                HeaderName::Contact,
                ValueError::BadNumber
            ))
        );
        assert_eq!(
            m(&format!("To: <sip:c@d>\r\nCall-ID: bad id\r\n{base}")).check(),
            Err(ParseError::DuplicateHeader(HeaderName::To))
        );
        assert_eq!(
            m("From: nonsense <\r\nCall-ID: c@h\r\n").check(),
            Err(ParseError::MissingHeader(HeaderName::Via))
        );
        assert_eq!(
            m(&format!(
                "Content-Type: /\r\nRecord-Route: <sip:p;lr>\r\n{base}Max-Forwards: 300\r\n"
            ))
            .check(),
            Err(ParseError::value(
                HeaderName::MaxForwards,
                ValueError::NumberTooLarge
            ))
        );
        assert!(matches!(
            m(&format!("Route: <bad>\r\n{base}Content-Type: /\r\n")).check(),
            Err(ParseError::BadHeaderValue {
                name: HeaderName::Route,
                ..
            })
        ));
        assert!(matches!(
            m(&format!("{base}Content-Type: /\r\n")).check(),
            Err(ParseError::BadHeaderValue {
                name: HeaderName::ContentType,
                ..
            })
        ));
        assert_eq!(
            m(&base.replace("CSeq: 1 REGISTER", "CSeq: 1 INVITE")).check(),
            Err(ParseError::CSeqMethodMismatch {
                request: Method::Register,
                cseq: Method::Invite
            })
        );
    }

    #[test]
    fn scalars_and_typed_values() {
        let msg = m("Expires: 3600\r\nMin-Expires: 60\r\nMax-Forwards: 0068\r\nReason: SIP;cause=487;text=\"gone\"\r\n\
                     Feature-Caps: *;+sip.pns=\"apns\"\r\nCall-ID: has space\r\n");
        assert_eq!(msg.expires(), Ok(Some(3600)));
        assert_eq!(msg.min_expires(), Ok(Some(60)));
        assert_eq!(msg.max_forwards(), Ok(Some(68)));
        assert_eq!(
            msg.reasons().next().map(|r| r.map(|r| r.cause())),
            Some(Ok(Some(487)))
        );
        let fc = msg.feature_caps().next().expect("one").expect("valid");
        assert_eq!(fc.get("+sip.pns"), Some(Some("apns".into())));
        assert_eq!(
            msg.call_id(),
            Err(ParseError::value(HeaderName::CallId, ValueError::BadToken))
        );
        assert_eq!(
            msg.top_via().err(),
            Some(ParseError::MissingHeader(HeaderName::Via))
        );
        assert_eq!(
            m("Expires: soon\r\n").expires().err(),
            Some(ParseError::value(
                HeaderName::Expires,
                ValueError::BadNumber
            ))
        );
    }
}
