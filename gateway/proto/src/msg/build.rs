//! The printer and the builders: [`RequestBuilder`], [`ResponseBuilder`] (RFC 3261 §8.2.6),
//! [`ack_for_non_2xx`] (§17.1.1.3) and [`cancel_for`] (§9.1).
//!
//! The printer records header spans while it writes, so a built [`Message`] is ready to use
//! without being parsed again. It sanitises what it is given (CR/LF in values become spaces,
//! whitespace in a Request-URI is escaped, non-token bytes in names are replaced), so that
//! whatever a caller passes, the printed message is one the parser accepts.

use bytes::{BufMut, Bytes, BytesMut};
use smallvec::SmallVec;

use super::header::Code;
use super::scan::{is_lws, is_token, quote, split_commas};
use super::{CSeq, HeaderName, HeaderSpan, Message, Method, Span, StartLine, INLINE_HEADERS};

/// Writes a message and records its spans.
pub(crate) struct Printer {
    out: BytesMut,
    start: StartLine,
    headers: SmallVec<[HeaderSpan; INLINE_HEADERS]>,
}

fn span(off: usize, len: usize) -> Span {
    Span {
        off: off as u32,
        len: len as u32,
    }
}

/// Pushes `s` with every byte for which `bad` holds replaced by `with`. Clean input (the
/// usual case) is copied in one `put_slice` rather than byte by byte.
fn put_sanitized(out: &mut BytesMut, s: &[u8], bad: impl Fn(u8) -> bool, with: u8) {
    if !s.iter().any(|&b| bad(b)) {
        out.put_slice(s);
        return;
    }
    out.reserve(s.len());
    for &b in s {
        out.put_u8(if bad(b) { with } else { b });
    }
}

/// `s` without LWS at either end.
fn trim_lws_bytes(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| !is_lws(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|&b| !is_lws(b)).map_or(start, |e| e + 1);
    &s[start..end]
}

/// Pushes `s` with CR and LF replaced by spaces, so a value cannot end its line early.
fn put_value(out: &mut BytesMut, s: &[u8]) {
    if !super::parse::has_line_break(s) {
        out.put_slice(s);
    } else {
        put_sanitized(out, s, |b| b == b'\r' || b == b'\n', b' ');
    }
}

/// The decimal digits of `n`, written into `buf` without going through `fmt`.
pub(crate) fn decimal(buf: &mut [u8; 20], n: u64) -> &str {
    // Only ASCII digits were written.
    std::str::from_utf8(decimal_bytes(buf, n)).unwrap_or("0")
}

/// [`decimal`] as bytes, for a caller that copies them into a message (no UTF-8 check).
pub(crate) fn decimal_bytes(buf: &mut [u8; 20], mut n: u64) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

impl Printer {
    pub(crate) fn request(method: &str, uri: &str) -> Printer {
        Self::request_with_capacity(method, uri, 512)
    }

    /// [`Self::request`] with room for `capacity` bytes, for a caller that knows its message
    /// outgrows the default (a REGISTER with credentials), so the buffer is not regrown.
    pub(crate) fn request_with_capacity(method: &str, uri: &str, capacity: usize) -> Printer {
        let mut out = BytesMut::with_capacity(capacity);
        let m = if method.is_empty() { "X" } else { method };
        // Non-ASCII bytes are replaced too, so the line stays UTF-8.
        put_sanitized(&mut out, m.as_bytes(), |b| !is_token(b), b'_');
        let m_len = out.len();
        out.put_u8(b' ');
        let u = if uri.is_empty() { "sip:invalid" } else { uri };
        let u_off = out.len();
        for b in u.bytes() {
            if b <= b' ' || b == 0x7f {
                out.put_slice(format!("%{b:02X}").as_bytes());
            } else {
                out.put_u8(b);
            }
        }
        let u_len = out.len() - u_off;
        out.put_slice(b" SIP/2.0\r\n");
        Printer {
            out,
            start: StartLine::Request {
                method: span(0, m_len),
                uri: span(u_off, u_len),
            },
            headers: SmallVec::new(),
        }
    }

    pub(crate) fn response(status: u16, reason: &str) -> Printer {
        let mut out = BytesMut::with_capacity(512);
        let status = status.clamp(100, 699);
        out.put_slice(b"SIP/2.0 ");
        out.put_slice(decimal(&mut [0; 20], u64::from(status)).as_bytes());
        out.put_u8(b' ');
        let r_off = out.len();
        put_sanitized(
            &mut out,
            reason.as_bytes(),
            |b| b == b'\r' || b == b'\n',
            b' ',
        );
        let r_len = out.len() - r_off;
        out.put_slice(b"\r\n");
        Printer {
            out,
            start: StartLine::Response {
                status,
                reason: span(r_off, r_len),
            },
            headers: SmallVec::new(),
        }
    }

    /// Writes `name: value` CRLF. `raw_name` is how the name is spelt on the wire.
    pub(crate) fn header_raw(&mut self, raw_name: &str, value: &str) {
        self.line(raw_name, None, value, "");
    }

    /// Writes `name: value suffix` CRLF. `code` is the name's code when the caller knows it
    /// (a known [`HeaderName`]), which saves looking the printed name up again.
    fn line(&mut self, raw_name: &str, code: Option<Code>, value: &str, suffix: &str) {
        self.line_with(raw_name, code, value, false, suffix);
    }

    /// Writes a line whose value is a header value of a [`Message`] (parsed or printed):
    /// already LWS-trimmed and free of CR and LF, so it is copied without either check.
    /// `name` is a known header, `suffix` is checked as usual.
    fn copied_line(&mut self, name: &HeaderName, value: &str, suffix: &str) {
        self.line_with(name.as_str(), name.code(), value, true, suffix);
    }

    fn line_with(
        &mut self,
        raw_name: &str,
        code: Option<Code>,
        value: &str,
        clean: bool,
        suffix: &str,
    ) {
        let name_off = self.out.len();
        let code = match code {
            // A known name is spelt canonically here: a token, nothing to sanitize.
            Some(c) => {
                self.out.put_slice(raw_name.as_bytes());
                Some(c)
            }
            None => {
                let n = if raw_name.is_empty() { "X" } else { raw_name };
                // The parser takes names of at most 65535 bytes.
                let n = &n.as_bytes()[..n.len().min(usize::from(u16::MAX))];
                put_sanitized(&mut self.out, n, |b| !is_token(b), b'_');
                let name_len = self.out.len() - name_off;
                Code::lookup(&self.out[name_off..name_off + name_len])
            }
        };
        let name_len = (self.out.len() - name_off).min(usize::from(u16::MAX));
        self.out.put_slice(b": ");
        let v_off = self.out.len();
        if clean {
            self.out.put_slice(value.as_bytes());
        } else {
            put_value(&mut self.out, trim_lws_bytes(value.as_bytes()));
        }
        if !suffix.is_empty() {
            put_value(&mut self.out, suffix.as_bytes());
        }
        let v_len = self.out.len() - v_off;
        self.out.put_slice(b"\r\n");
        self.headers.push(HeaderSpan {
            code,
            name_len: name_len as u16,
            name_off: name_off as u32,
            value: span(v_off, v_len),
        });
    }

    pub(crate) fn header(&mut self, name: &HeaderName, value: &str) {
        self.line(name.as_str(), name.code(), value, "");
    }

    /// [`Self::header`] for a value the caller assembled from validated parts, so that it
    /// holds no CR or LF and no LWS at either end (debug-asserted): copied without the
    /// scans, as a parsed value is. The registration engine prints every REGISTER this way.
    pub(crate) fn header_clean(&mut self, name: &HeaderName, value: &str) {
        debug_assert!(
            !super::parse::has_line_break(value.as_bytes())
                && trim_lws_bytes(value.as_bytes()).len() == value.len(),
            "header_clean given {value:?}"
        );
        self.line_with(name.as_str(), name.code(), value, true, "");
    }

    /// Writes Content-Length (and Content-Type if given), the empty line and the body;
    /// returns the length of the head.
    fn end(&mut self, content_type: Option<&str>, body: &[u8]) -> usize {
        if let Some(ct) = content_type {
            self.header(&HeaderName::ContentType, ct);
        }
        // Digits are a clean value; most messages have no body.
        let mut digits = [0; 20];
        let length = if body.is_empty() {
            "0"
        } else {
            decimal(&mut digits, body.len() as u64)
        };
        self.header_clean(&HeaderName::ContentLength, length);
        self.out.put_slice(b"\r\n");
        let head_len = self.out.len();
        self.out.put_slice(body);
        head_len
    }

    /// Writes Content-Length (and Content-Type if given), the empty line and the body.
    pub(crate) fn finish(mut self, content_type: Option<&str>, body: &[u8]) -> Message {
        let head_len = self.end(content_type, body);
        let buf = self.out.freeze();
        // Everything printed before the body came from `&str`s, with only ASCII bytes
        // substituted, so this is UTF-8; the fallback is never taken.
        let head = bytestring::ByteString::try_from(buf.slice(..head_len)).unwrap_or_default();
        Message {
            buf,
            head,
            start: self.start,
            headers: self.headers,
            body: span(head_len, body.len()),
            content_length: Some(body.len()),
            head_len: head_len as u32,
            to_tag_checked: None,
            checked: std::sync::OnceLock::new(),
        }
    }
}

/// A request printed straight into its buffer from parts its caller validated, for a
/// message that is only sent (the registration engine's REGISTERs): no spans, no header
/// list, no value assembled in a scratch string and copied again. Its lines are the ones
/// [`Printer`] prints for the same text (a unit test holds the two to that).
pub(crate) struct CleanRequest {
    out: BytesMut,
}

impl CleanRequest {
    /// The request line; `method` is a token and `uri` needs no escaping
    /// (debug-asserted).
    pub(crate) fn new(method: &str, uri: &str, capacity: usize) -> Self {
        debug_assert!(
            !method.is_empty()
                && method.bytes().all(is_token)
                && !uri.is_empty()
                && uri.bytes().all(|b| b > b' ' && b != 0x7f),
            "CleanRequest given {method:?} {uri:?}"
        );
        let mut out = BytesMut::with_capacity(capacity);
        out.put_slice(method.as_bytes());
        out.put_u8(b' ');
        out.put_slice(uri.as_bytes());
        out.put_slice(b" SIP/2.0\r\n");
        Self { out }
    }

    /// `name: ` followed by `parts`, CRLF. The parts together must be a clean value: no CR
    /// or LF, no LWS at either end (debug-asserted, as [`Printer::header_clean`]).
    ///
    /// Inlined, with the parts an array: for a known name and literal parts every copy
    /// but the variable ones compiles to a few stores, where a loop over slices called
    /// `memcpy` for each (a REGISTER has some sixty parts).
    #[inline(always)]
    pub(crate) fn header<const N: usize>(&mut self, name: &HeaderName, parts: [&[u8]; N]) {
        let out = &mut self.out;
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        let v_off = out.len();
        for p in parts {
            out.put_slice(p);
        }
        debug_assert!(
            {
                let v = &out[v_off..];
                !super::parse::has_line_break(v) && trim_lws_bytes(v).len() == v.len()
            },
            "CleanRequest::header given {:?}",
            String::from_utf8_lossy(&out[v_off..])
        );
        out.put_slice(b"\r\n");
    }

    /// A header whose value is configured text, trimmed and with CR and LF replaced as
    /// [`Printer::header`] does.
    pub(crate) fn header_sanitized(&mut self, name: &HeaderName, value: &str) {
        self.out.put_slice(name.as_str().as_bytes());
        self.out.put_slice(b": ");
        put_value(&mut self.out, trim_lws_bytes(value.as_bytes()));
        self.out.put_slice(b"\r\n");
    }

    /// `Content-Length: 0` and the empty line: the request has no body.
    pub(crate) fn finish(mut self) -> Bytes {
        self.out.put_slice(b"Content-Length: 0\r\n\r\n");
        self.out.freeze()
    }
}

impl Message {
    /// Prints the message again from its parsed parts, in canonical form: `SP` separators,
    /// `Name: value` lines as named in the message, LWS-trimmed values, then the body.
    /// For builder output this equals [`Message::as_bytes`] byte for byte.
    pub fn print(&self) -> Bytes {
        let mut p = match (self.method_str(), self.request_uri_str(), self.status()) {
            (Some(m), Some(u), _) => Printer::request(m, u),
            (_, _, status) => Printer::response(status.unwrap_or(500), self.reason().unwrap_or("")),
        };
        for f in self.header_fields() {
            p.header_raw(f.raw_name, f.value);
        }
        p.out.put_slice(b"\r\n");
        p.out.put_slice(self.body());
        p.out.freeze()
    }
}

/// The default reason phrase for a status code (RFC 3261 §21 and later RFCs).
pub fn default_reason(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        199 => "Early Dialog Terminated",
        200 => "OK",
        202 => "Accepted",
        204 => "No Notification",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        305 => "Use Proxy",
        380 => "Alternative Service",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        421 => "Extension Required",
        423 => "Interval Too Brief",
        429 => "Provide Referrer Identity",
        430 => "Flow Failed",
        439 => "First Hop Lacks Outbound Support",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        485 => "Ambiguous",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        489 => "Bad Event",
        491 => "Request Pending",
        493 => "Undecipherable",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        555 => "Push Notification Service Not Supported",
        580 => "Precondition Failure",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        _ => match status / 100 {
            1 => "Progress",
            2 => "Success",
            3 => "Redirection",
            4 => "Client Error",
            5 => "Server Error",
            _ => "Global Failure",
        },
    }
}

/// Formats a `name-addr` header value: an optional display name (quoted and escaped), the
/// URI in `<>`, then `;name[=value]` parameters, values quoted unless they are tokens. For
/// From/To/Contact/Route values, e.g. a Contact with `+sip.instance` and `expires`.
pub fn name_addr(display: Option<&str>, uri: &str, params: &[(&str, Option<&str>)]) -> String {
    let mut s = String::with_capacity(uri.len() + 32);
    if let Some(d) = display {
        s.push_str(&quote(d));
        s.push(' ');
    }
    s.push('<');
    s.push_str(uri);
    s.push('>');
    for (n, v) in params {
        s.push(';');
        s.push_str(n);
        if let Some(v) = v {
            s.push('=');
            if !v.is_empty() && v.bytes().all(is_token) {
                s.push_str(v);
            } else {
                s.push_str(&quote(v));
            }
        }
    }
    s
}

/// Brackets a bare URI so that its `;params` stay URI parameters once a tag is appended.
fn bracket(name_addr: &str) -> String {
    let t = name_addr.trim();
    if t.contains('<') {
        t.to_owned()
    } else {
        format!("<{t}>")
    }
}

/// Builds a request. Headers are printed in this order: Via (top first), Max-Forwards, From,
/// To, Call-ID, CSeq, the others in insertion order, Content-Type, Content-Length.
#[derive(Clone, Debug)]
pub struct RequestBuilder {
    method: Method,
    uri: String,
    vias: Vec<String>,
    from: Option<String>,
    to: Option<String>,
    call_id: Option<String>,
    cseq: Option<u32>,
    max_forwards: u8,
    headers: Vec<(HeaderName, String)>,
    body: Option<(String, Bytes)>,
}

impl RequestBuilder {
    /// Max-Forwards defaults to 70 (RFC 3261 §8.1.1.6).
    pub fn new(method: Method, uri: &str) -> Self {
        RequestBuilder {
            method,
            uri: uri.to_owned(),
            vias: Vec::new(),
            from: None,
            to: None,
            call_id: None,
            cseq: None,
            max_forwards: 70,
            headers: Vec::new(),
            body: None,
        }
    }

    /// Adds a Via on top: `SIP/2.0/{transport} {sent_by};branch={branch}`.
    pub fn via(mut self, transport: &str, sent_by: &str, branch: &str) -> Self {
        self.vias
            .insert(0, format!("SIP/2.0/{transport} {sent_by};branch={branch}"));
        self
    }

    /// Adds a Via on top with extra parameters (e.g. `;rport`), given as printed.
    pub fn via_with_params(
        mut self,
        transport: &str,
        sent_by: &str,
        branch: &str,
        params: &str,
    ) -> Self {
        self.vias.insert(
            0,
            format!("SIP/2.0/{transport} {sent_by};branch={branch}{params}"),
        );
        self
    }

    /// From: `name_addr` (`"Name" <uri>` or a bare URI, which gets bracketed) plus `;tag=`.
    pub fn from(mut self, name_addr: &str, tag: &str) -> Self {
        self.from = Some(format!("{};tag={tag}", bracket(name_addr)));
        self
    }

    /// To, with a tag for in-dialog requests.
    pub fn to(mut self, name_addr: &str, tag: Option<&str>) -> Self {
        let mut v = bracket(name_addr);
        if let Some(t) = tag {
            v.push_str(";tag=");
            v.push_str(t);
        }
        self.to = Some(v);
        self
    }

    pub fn call_id(mut self, id: &str) -> Self {
        self.call_id = Some(id.to_owned());
        self
    }

    /// CSeq number; the method is the request's.
    pub fn cseq(mut self, seq: u32) -> Self {
        self.cseq = Some(seq);
        self
    }

    pub fn max_forwards(mut self, n: u8) -> Self {
        self.max_forwards = n;
        self
    }

    /// Any other header. Content-Length is ignored (the builder computes it).
    pub fn header(mut self, name: HeaderName, value: &str) -> Self {
        if name != HeaderName::ContentLength {
            self.headers.push((name, value.to_owned()));
        }
        self
    }

    pub fn body(mut self, content_type: &str, body: Bytes) -> Self {
        self.body = Some((content_type.to_owned(), body));
        self
    }

    /// Prints the request once and sets Content-Length.
    pub fn build(self) -> Message {
        let mut p = Printer::request(self.method.as_str(), &self.uri);
        for v in &self.vias {
            p.header(&HeaderName::Via, v);
        }
        p.header(&HeaderName::MaxForwards, &self.max_forwards.to_string());
        if let Some(f) = &self.from {
            p.header(&HeaderName::From, f);
        }
        if let Some(t) = &self.to {
            p.header(&HeaderName::To, t);
        }
        if let Some(c) = &self.call_id {
            p.header(&HeaderName::CallId, c);
        }
        if let Some(seq) = self.cseq {
            p.header(
                &HeaderName::CSeq,
                &CSeq {
                    seq,
                    method: self.method.clone(),
                }
                .to_string(),
            );
        }
        for (n, v) in &self.headers {
            p.header(n, v);
        }
        match &self.body {
            Some((ct, b)) => p.finish(Some(ct), b),
            None => p.finish(None, &[]),
        }
    }
}

/// Builds a response to a request (RFC 3261 §8.2.6).
#[derive(Clone, Debug)]
pub struct ResponseBuilder {
    status: u16,
    reason: Option<String>,
    /// The request lines the response copies.
    copied: Copied,
    /// The To tag to append (`;tag=` included), only if the request's To has none. Inline:
    /// tags are short, and this is on every transaction's path.
    to_tag: Option<SmallVec<[u8; 40]>>,
    headers: Vec<(HeaderName, String)>,
    body: Option<(String, Bytes)>,
}

/// Where the request's Via lines and first From, To, Call-ID, CSeq and Timestamp are, noted
/// in one pass over its header spans. Holding the request's head (shared, not copied) and
/// these spans instead of a clone of the whole [`Message`] keeps the builder small: it is
/// moved on every call of its by-value API, on every transaction's path.
#[derive(Clone, Debug)]
struct Copied {
    head: bytestring::ByteString,
    vias: SmallVec<[Span; 4]>,
    from: Option<Span>,
    to: Option<Span>,
    call_id: Option<Span>,
    cseq: Option<Span>,
    timestamp: Option<Span>,
}

impl Copied {
    fn of(req: &Message) -> Copied {
        let mut c = Copied {
            head: req.head.clone(),
            vias: SmallVec::new(),
            from: None,
            to: None,
            call_id: None,
            cseq: None,
            timestamp: None,
        };
        for h in &req.headers {
            let slot = match h.code {
                Some(Code::Via) => {
                    c.vias.push(h.value);
                    continue;
                }
                Some(Code::From) => &mut c.from,
                Some(Code::To) => &mut c.to,
                Some(Code::CallId) => &mut c.call_id,
                Some(Code::CSeq) => &mut c.cseq,
                Some(Code::Timestamp) => &mut c.timestamp,
                _ => continue,
            };
            slot.get_or_insert(h.value);
        }
        c
    }

    fn text(&self, s: Span) -> &str {
        // Spans of the request's head, which starts and ends at ASCII delimiters.
        self.head.get(s.range()).unwrap_or_default()
    }
}

impl ResponseBuilder {
    /// Copies all Via lines, From, To (adding `;tag={to_tag}` if the To has no tag), Call-ID
    /// and CSeq from `req`, and Timestamp for a 100 (§8.2.6.1).
    pub fn for_request(req: &Message, status: u16, to_tag: Option<&str>) -> Self {
        let copied = Copied::of(req);
        // A To that is malformed (URI included) gets no tag added, as if it had one.
        let to_tag = to_tag.filter(|_| match req.to_tag_checked {
            Some(has_tag) => !has_tag,
            None => {
                copied.to.is_some()
                    && match req.to_hdr() {
                        Ok(n) => n.tag().is_none() && n.uri().is_ok(),
                        Err(_) => false,
                    }
            }
        });
        ResponseBuilder {
            status,
            reason: None,
            copied,
            to_tag: to_tag.map(|t| {
                let mut v = SmallVec::new();
                v.extend_from_slice(b";tag=");
                v.extend_from_slice(t.as_bytes());
                v
            }),
            headers: Vec::new(),
            body: None,
        }
    }

    /// Prints the lines copied from the request (see [`ResponseBuilder::for_request`]):
    /// Via lines first, as they come, then From, To, Call-ID, CSeq and Timestamp.
    fn print_copied(&self, p: &mut Printer) {
        // Values of the request's header spans: trimmed, no CR or LF (see `copied_line`).
        let c = &self.copied;
        for &v in &c.vias {
            p.copied_line(&HeaderName::Via, c.text(v), "");
        }
        if let Some(f) = c.from {
            p.copied_line(&HeaderName::From, c.text(f), "");
        }
        if let Some(t) = c.to {
            // Built from a `&str` in `for_request`, so this is UTF-8.
            let tag = self
                .to_tag
                .as_deref()
                .and_then(|t| std::str::from_utf8(t).ok())
                .unwrap_or("");
            p.copied_line(&HeaderName::To, c.text(t), tag);
        }
        for (name, v) in [(HeaderName::CallId, c.call_id), (HeaderName::CSeq, c.cseq)] {
            if let Some(v) = v {
                p.copied_line(&name, c.text(v), "");
            }
        }
        if self.status == 100 {
            if let Some(ts) = c.timestamp {
                p.copied_line(&HeaderName::Timestamp, c.text(ts), "");
            }
        }
    }

    /// Overrides the default reason phrase.
    pub fn reason(mut self, reason: &str) -> Self {
        self.reason = Some(reason.to_owned());
        self
    }

    /// Any other header (Contact, Expires, WWW-Authenticate, Feature-Caps, ...).
    pub fn header(mut self, name: HeaderName, value: &str) -> Self {
        if name != HeaderName::ContentLength {
            self.headers.push((name, value.to_owned()));
        }
        self
    }

    /// Copies every `name` line of `req` (e.g. Record-Route into a 2xx, §12.1.1).
    pub fn copy_from(mut self, req: &Message, name: HeaderName) -> Self {
        for v in req.header_lines(name.clone()) {
            self.headers.push((name.clone(), v.to_owned()));
        }
        self
    }

    pub fn body(mut self, content_type: &str, body: Bytes) -> Self {
        self.body = Some((content_type.to_owned(), body));
        self
    }

    pub fn build(self) -> Message {
        let reason = self
            .reason
            .as_deref()
            .unwrap_or_else(|| default_reason(self.status));
        let mut p = Printer::response(self.status, reason);
        self.print_copied(&mut p);
        for (n, v) in &self.headers {
            p.header(n, v);
        }
        match &self.body {
            Some((ct, b)) => p.finish(Some(ct), b),
            None => p.finish(None, &[]),
        }
    }
}

/// The top Via value of a message (the first element of its first Via line).
fn top_via_raw(m: &Message) -> Option<&str> {
    m.header(HeaderName::Via)
        .and_then(|v| split_commas(v).next())
}

/// Shared shape of ACK and CANCEL: same Request-URI, top Via, Route set, From, Call-ID and
/// CSeq number as the INVITE, with `to` as the To value.
fn in_transaction_request(invite: &Message, method: Method, to: Option<&str>) -> Message {
    let mut p = Printer::request(method.as_str(), invite.request_uri_str().unwrap_or(""));
    if let Some(v) = top_via_raw(invite) {
        p.header(&HeaderName::Via, v);
    }
    let mf = invite.max_forwards().ok().flatten().unwrap_or(70);
    p.header(&HeaderName::MaxForwards, &mf.to_string());
    for r in invite.header_lines(HeaderName::Route) {
        p.header(&HeaderName::Route, r);
    }
    if let Some(f) = invite.header(HeaderName::From) {
        p.header(&HeaderName::From, f);
    }
    if let Some(t) = to {
        p.header(&HeaderName::To, t);
    }
    if let Some(c) = invite.header(HeaderName::CallId) {
        p.header(&HeaderName::CallId, c);
    }
    let seq = invite
        .header(HeaderName::CSeq)
        .and_then(|v| CSeq::parse(v).ok())
        .map_or(0, |c| c.seq);
    p.header(&HeaderName::CSeq, &CSeq { seq, method }.to_string());
    p.finish(None, &[])
}

/// RFC 3261 §17.1.1.3: the ACK a client INVITE transaction sends for a non-2xx final
/// response: the INVITE's Request-URI, top Via, Route set, From, Call-ID and CSeq number,
/// and the response's To (with its tag).
pub fn ack_for_non_2xx(invite: &Message, response: &Message) -> Message {
    in_transaction_request(invite, Method::Ack, response.header(HeaderName::To))
}

/// RFC 3261 §9.1: the CANCEL for a pending INVITE.
pub fn cancel_for(invite: &Message) -> Message {
    in_transaction_request(invite, Method::Cancel, invite.header(HeaderName::To))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::Method;

    /// Clean values print the same through `CleanRequest` (whole or in parts) and
    /// `header_clean` as through the checking `header`; a configured value with a trailing
    /// space or a line break is sanitized by both alike.
    #[test]
    fn clean_request_prints_what_the_printer_prints() {
        let lines = [
            (
                HeaderName::Via,
                "SIP/2.0/UDP gw:5060;branch=z9hG4bKabc;rport",
            ),
            (HeaderName::From, "<sip:a@b>;tag=x"),
            (HeaderName::CallId, "c"),
            (
                HeaderName::Authorization,
                "Digest username=\"a b\", nc=00000001",
            ),
            (HeaderName::Expires, "0"),
        ];
        let mut fast = CleanRequest::new("REGISTER", "sip:b", 16);
        let mut clean = Printer::request("REGISTER", "sip:b");
        let mut slow = Printer::request("REGISTER", "sip:b");
        for (i, (name, value)) in lines.iter().enumerate() {
            // Split at any point, the parts print as the whole value.
            let (a, b) = value.as_bytes().split_at(i.min(value.len()));
            fast.header(name, [a, b]);
            clean.header_clean(name, value);
            slow.header(name, value);
        }
        for ua in ["Vigil/1.0 ", "a\r\nb"] {
            fast.header_sanitized(&HeaderName::UserAgent, ua);
            clean.header(&HeaderName::UserAgent, ua);
            slow.header(&HeaderName::UserAgent, ua);
        }
        let fast = fast.finish();
        let (clean, slow) = (clean.finish(None, &[]), slow.finish(None, &[]));
        assert_eq!(&fast, slow.as_bytes());
        assert_eq!(clean.as_bytes(), slow.as_bytes());
        assert_eq!(Message::parse(fast).unwrap().as_bytes(), slow.as_bytes());
        let mut digits = [0; 20];
        for n in [0, 7, 10, 3600, u64::from(u32::MAX), u64::MAX] {
            assert_eq!(decimal_bytes(&mut digits, n), n.to_string().as_bytes());
        }
    }

    /// A request whose To the transaction layer has checked gets the same response as one
    /// the builder has to look at itself.
    #[test]
    fn noted_to_check_gives_the_same_response() {
        for to_tag in [None, Some("b7")] {
            let mut req = RequestBuilder::new(Method::Invite, "sip:bob@example.com")
                .via("UDP", "10.0.0.1:5060", "z9hG4bK1")
                .from("sip:alice@example.com", "a1")
                .to("sip:bob@example.com", to_tag)
                .call_id("c1@10.0.0.1")
                .cseq(7)
                .build();
            let plain = ResponseBuilder::for_request(&req, 200, Some("t9")).build();
            let has_tag = req.check_to_tag(false).expect("valid request");
            assert_eq!(has_tag, to_tag.is_some());
            req.note_to_tag_checked(has_tag);
            let noted = ResponseBuilder::for_request(&req, 200, Some("t9")).build();
            assert_eq!(plain.as_bytes(), noted.as_bytes());
        }
    }

    fn invite() -> Message {
        RequestBuilder::new(Method::Invite, "sip:bob@example.com")
            .via("UDP", "10.0.0.1:5060", "z9hG4bKbottom")
            .via("TCP", "proxy.example.com", "z9hG4bKtop")
            .from("\"Alice\" <sip:alice@example.com>", "a1")
            .to("sip:bob@example.com", None)
            .call_id("c1@10.0.0.1")
            .cseq(7)
            .header(HeaderName::Route, "<sip:edge.example.com;lr>")
            .header(HeaderName::ContentLength, "999")
            .body("application/sdp", Bytes::from_static(b"v=0\r\n"))
            .build()
    }

    #[test]
    fn request_prints_what_the_parser_reads() {
        let m = invite();
        let p = Message::parse(m.as_bytes().clone()).expect("builder output parses");
        assert_eq!(p.print(), *m.as_bytes());
        assert_eq!(m.print(), *m.as_bytes());
        let vias: Vec<_> = p
            .vias()
            .map(|v| v.expect("via").branch().map(str::to_owned))
            .collect();
        assert_eq!(
            vias,
            vec![
                Some("z9hG4bKtop".to_owned()),
                Some("z9hG4bKbottom".to_owned())
            ]
        );
        assert_eq!(p.cseq().map(|c| (c.seq, c.method)), Ok((7, Method::Invite)));
        assert_eq!(p.content_length(), Some(5));
        assert_eq!(p.header_count(HeaderName::ContentLength), 1);
        assert_eq!(p.max_forwards(), Ok(Some(70)));
        assert_eq!(p.to_hdr().expect("to").uri_str(), "sip:bob@example.com");
        assert_eq!(p.check(), Ok(()));
    }

    #[test]
    fn sanitises_hostile_input() {
        let m = RequestBuilder::new(Method::Other("BAD METHOD".into()), "sip:a b")
            .header(HeaderName::Subject, "line\r\nInjected: yes")
            .header(HeaderName::Other("Bad Name".into()), "v")
            .build();
        let p = Message::parse(m.as_bytes().clone()).expect("still one valid message");
        assert_eq!(p.method_str(), Some("BAD_METHOD"));
        assert_eq!(p.request_uri_str(), Some("sip:a%20b"));
        assert_eq!(p.header(HeaderName::Subject), Some("line  Injected: yes"));
        assert_eq!(
            p.header_fields()
                .filter(|f| f.raw_name == "Injected")
                .count(),
            0
        );
        assert_eq!(
            p.header(HeaderName::parse("Bad_Name").expect("token")),
            Some("v")
        );
    }

    #[test]
    fn response_copies_per_8_2_6() {
        let req = invite();
        let r = ResponseBuilder::for_request(&req, 486, Some("b2")).build();
        let p = Message::parse(r.as_bytes().clone()).expect("parses");
        assert_eq!((p.status(), p.reason()), (Some(486), Some("Busy Here")));
        assert_eq!(p.header_lines(HeaderName::Via).count(), 2);
        assert_eq!(p.to_hdr().expect("to").tag(), Some("b2"));
        assert_eq!(p.from_hdr().expect("from").tag(), Some("a1"));
        assert_eq!(p.call_id(), Ok("c1@10.0.0.1"));
        assert_eq!(p.cseq().map(|c| c.method), Ok(Method::Invite));
        assert_eq!(p.body(), b"");
        let r = ResponseBuilder::for_request(&p, 200, Some("other"))
            .reason("Fine")
            .build();
        // A To that already has a tag keeps it.
        assert_eq!(r.to_hdr().expect("to").tag(), Some("b2"));
        assert_eq!(r.reason(), Some("Fine"));
        assert_eq!(
            default_reason(555),
            "Push Notification Service Not Supported"
        );
        assert_eq!(default_reason(499), "Client Error");
    }

    #[test]
    fn copied_lines_come_out_in_8_2_6_order_whatever_the_request_order() {
        let wire = "OPTIONS sip:x@y SIP/2.0\r\nCSeq: 7 OPTIONS\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\n\
                    Timestamp: 54\r\nTo: <sip:x@y>\r\nf: <sip:a@b>;tag=1\r\nv: SIP/2.0/UDP b;branch=z9hG4bK2\r\n\
                    From: <sip:second@b>;tag=2\r\ni: c@h\r\n\r\n";
        let req = Message::parse(Bytes::from(wire)).expect("parses");
        let copied = "Via: SIP/2.0/UDP a;branch=z9hG4bK1\r\nVia: SIP/2.0/UDP b;branch=z9hG4bK2\r\n\
                      From: <sip:a@b>;tag=1\r\nTo: <sip:x@y>;tag=t9\r\nCall-ID: c@h\r\nCSeq: 7 OPTIONS\r\n";
        let ok = ResponseBuilder::for_request(&req, 200, Some("t9")).build();
        assert_eq!(
            ok.as_bytes(),
            format!("SIP/2.0 200 OK\r\n{copied}Content-Length: 0\r\n\r\n").as_bytes()
        );
        let trying = ResponseBuilder::for_request(&req, 100, None).build();
        assert_eq!(
            trying.as_bytes(),
            format!(
                "SIP/2.0 100 Trying\r\n{}Timestamp: 54\r\nContent-Length: 0\r\n\r\n",
                copied.replace(";tag=t9", "")
            )
            .as_bytes()
        );
    }

    #[test]
    fn ack_and_cancel() {
        let inv = invite();
        let resp = ResponseBuilder::for_request(&inv, 486, Some("b2")).build();
        let ack = ack_for_non_2xx(&inv, &resp);
        let ack = Message::parse(ack.as_bytes().clone()).expect("parses");
        assert_eq!(ack.method(), Some(Method::Ack));
        assert_eq!(ack.request_uri_str(), inv.request_uri_str());
        assert_eq!(ack.vias().count(), 1);
        assert_eq!(ack.top_via().expect("via").branch(), Some("z9hG4bKtop"));
        assert_eq!(ack.to_hdr().expect("to").tag(), Some("b2"));
        assert_eq!(ack.cseq().map(|c| (c.seq, c.method)), Ok((7, Method::Ack)));
        assert_eq!(
            ack.header(HeaderName::Route),
            Some("<sip:edge.example.com;lr>")
        );
        assert_eq!(ack.check(), Ok(()));
        let cancel = cancel_for(&inv);
        assert_eq!(cancel.method(), Some(Method::Cancel));
        assert_eq!(cancel.to_hdr().expect("to").tag(), None);
        assert_eq!(
            cancel.cseq().map(|c| (c.seq, c.method)),
            Ok((7, Method::Cancel))
        );
        assert_eq!(cancel.top_via().expect("via").branch(), Some("z9hG4bKtop"));
        assert_eq!(cancel.check(), Ok(()));
    }

    #[test]
    fn name_addr_quotes_and_brackets() {
        let v = name_addr(
            Some("A \"B\""),
            "sip:a@b;transport=tcp",
            &[
                ("expires", Some("60")),
                ("+sip.instance", Some("<urn:uuid:1>")),
                ("lr", None),
            ],
        );
        let n = crate::msg::NameAddr::parse(&v).expect("parses");
        assert_eq!(n.display_name().as_deref(), Some("A \"B\""));
        assert_eq!(n.uri().expect("uri").transport().as_deref(), Some("tcp"));
        assert_eq!(n.param("expires"), Some(Some("60")));
        assert_eq!(
            n.params()
                .get_unquoted("+sip.instance")
                .flatten()
                .as_deref(),
            Some("<urn:uuid:1>")
        );
    }
}
