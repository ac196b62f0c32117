//! Editing a received message the way a proxy or relay does (RFC 3261 §16.6): push or pop
//! a Via, rewrite the Request-URI, add, replace or remove headers, decrement Max-Forwards,
//! swap the body. The edited message is printed once by [`Editor::finish`], which also
//! recomputes Content-Length.

use std::borrow::Cow;

use bytes::Bytes;

use super::build::Printer;
use super::scan::split_commas;
use super::{HeaderName, Message, ParseError};

/// Why an edit could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EditError {
    /// Max-Forwards is already 0: the proxy answers 483 Too Many Hops (RFC 3261 §16.3).
    #[error("Max-Forwards exhausted")]
    TooManyHops,
    /// The header to edit could not be parsed.
    #[error(transparent)]
    Parse(#[from] ParseError),
}

#[derive(Clone, Debug)]
struct Line<'m> {
    name: Cow<'m, str>,
    value: Cow<'m, str>,
}

/// A pending edit of a message; see [`Message::edit`].
#[derive(Clone, Debug)]
pub struct Editor<'m> {
    msg: &'m Message,
    request_uri: Option<String>,
    lines: Vec<Line<'m>>,
    body: Option<(Option<String>, Bytes)>,
}

impl Message {
    /// Starts editing a copy of this message.
    pub fn edit(&self) -> Editor<'_> {
        let lines = self
            .header_fields()
            .map(|f| Line {
                name: Cow::Borrowed(f.raw_name),
                value: Cow::Borrowed(f.value),
            })
            .collect();
        Editor {
            msg: self,
            request_uri: None,
            lines,
            body: None,
        }
    }
}

fn is(line: &Line<'_>, name: &HeaderName) -> bool {
    HeaderName::parse(&line.name).is_some_and(|n| &n == name)
}

impl<'m> Editor<'m> {
    /// Replaces the Request-URI (requests only; ignored for responses).
    pub fn request_uri(mut self, uri: &str) -> Self {
        self.request_uri = Some(uri.to_owned());
        self
    }

    /// Pushes a Via on top: `SIP/2.0/{transport} {sent_by};branch={branch}`.
    pub fn prepend_via(self, transport: &str, sent_by: &str, branch: &str) -> Self {
        let v = format!("SIP/2.0/{transport} {sent_by};branch={branch}");
        self.prepend_header(HeaderName::Via, &v)
    }

    /// Removes the topmost Via value (only the first element if a line holds several).
    pub fn remove_top_via(mut self) -> Self {
        if let Some(i) = self.lines.iter().position(|l| is(l, &HeaderName::Via)) {
            let rest: Vec<&str> = split_commas(&self.lines[i].value).skip(1).collect();
            if rest.is_empty() {
                self.lines.remove(i);
            } else {
                let joined = rest.join(", ");
                self.lines[i].value = Cow::Owned(joined);
            }
        }
        self
    }

    /// Inserts a header line before all others.
    pub fn prepend_header(mut self, name: HeaderName, value: &str) -> Self {
        self.lines.insert(
            0,
            Line {
                name: Cow::Owned(name.as_str().to_owned()),
                value: Cow::Owned(value.to_owned()),
            },
        );
        self
    }

    /// Appends a header line after all others.
    pub fn add_header(mut self, name: HeaderName, value: &str) -> Self {
        self.lines.push(Line {
            name: Cow::Owned(name.as_str().to_owned()),
            value: Cow::Owned(value.to_owned()),
        });
        self
    }

    /// Removes every line called `name`.
    pub fn remove_headers(mut self, name: HeaderName) -> Self {
        self.lines.retain(|l| !is(l, &name));
        self
    }

    /// Removes only the first line called `name` (e.g. a Route entry naming us, §16.4).
    pub fn remove_first(mut self, name: HeaderName) -> Self {
        if let Some(i) = self.lines.iter().position(|l| is(l, &name)) {
            self.lines.remove(i);
        }
        self
    }

    /// Replaces the first `name` line's value and drops the others; appends if absent.
    pub fn set_header(mut self, name: HeaderName, value: &str) -> Self {
        match self.lines.iter().position(|l| is(l, &name)) {
            Some(i) => {
                self.lines[i].value = Cow::Owned(value.to_owned());
                let mut seen = false;
                self.lines.retain(|l| {
                    if !is(l, &name) {
                        return true;
                    }
                    let keep = !seen;
                    seen = true;
                    keep
                });
                self
            }
            None => self.add_header(name, value),
        }
    }

    /// RFC 3261 §16.6 step 3: decrements Max-Forwards, or adds `Max-Forwards: 70` if absent.
    /// At 0 the request must not be forwarded: [`EditError::TooManyHops`].
    pub fn decrement_max_forwards(self) -> Result<Self, EditError> {
        match self.msg.max_forwards()? {
            Some(0) => Err(EditError::TooManyHops),
            Some(n) => Ok(self.set_header(HeaderName::MaxForwards, &(n - 1).to_string())),
            None => Ok(self.set_header(HeaderName::MaxForwards, "70")),
        }
    }

    /// Replaces the body and its Content-Type.
    pub fn body(mut self, content_type: &str, body: Bytes) -> Self {
        self.body = Some((Some(content_type.to_owned()), body));
        self
    }

    /// Removes the body (and Content-Type).
    pub fn clear_body(mut self) -> Self {
        self.body = Some((None, Bytes::new()));
        self
    }

    /// Prints the edited message with a fresh Content-Length.
    pub fn finish(self) -> Message {
        let m = self.msg;
        let mut p = match (m.method_str(), m.request_uri_str()) {
            (Some(method), Some(uri)) => {
                Printer::request(method, self.request_uri.as_deref().unwrap_or(uri))
            }
            _ => Printer::response(m.status().unwrap_or(500), m.reason().unwrap_or("")),
        };
        let replacing_body = self.body.is_some();
        for l in &self.lines {
            let n = HeaderName::parse(&l.name);
            if n == Some(HeaderName::ContentLength)
                || (replacing_body && n == Some(HeaderName::ContentType))
            {
                continue;
            }
            p.header_raw(&l.name, &l.value);
        }
        match &self.body {
            Some((ct, b)) => p.finish(ct.as_deref(), b),
            None => p.finish(None, m.body()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::Method;

    fn req() -> Message {
        Message::parse(Bytes::from_static(
            b"INVITE sip:bob@gw.example.com SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2\r\n\
              Max-Forwards: 10\r\nRoute: <sip:gw.example.com;lr>\r\nRoute: <sip:next.example.com;lr>\r\n\
              Call-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 2\r\n\r\nhi",
        ))
        .expect("valid")
    }

    #[test]
    fn proxy_edits() {
        let m = req()
            .edit()
            .prepend_via("TLS", "vigil.example.com:5061", "z9hG4bKvigil")
            .request_uri("sip:bob@192.0.2.9:5070")
            .remove_first(HeaderName::Route)
            .decrement_max_forwards()
            .expect("10 > 0")
            .add_header(HeaderName::RecordRoute, "<sip:vigil.example.com;lr>")
            .finish();
        let p = Message::parse(m.as_bytes().clone()).expect("edited message parses");
        assert_eq!(p.request_uri_str(), Some("sip:bob@192.0.2.9:5070"));
        let branches: Vec<_> = p
            .vias()
            .map(|v| v.expect("via").branch().map(str::to_owned))
            .collect();
        assert_eq!(
            branches,
            vec![
                Some("z9hG4bKvigil".into()),
                Some("z9hG4bK1".into()),
                Some("z9hG4bK2".into())
            ]
        );
        assert_eq!(p.max_forwards(), Ok(Some(9)));
        assert_eq!(
            p.header_lines(HeaderName::Route).collect::<Vec<_>>(),
            vec!["<sip:next.example.com;lr>"]
        );
        assert_eq!(
            p.header(HeaderName::RecordRoute),
            Some("<sip:vigil.example.com;lr>")
        );
        assert_eq!(p.body(), b"hi");
        assert_eq!(p.method(), Some(Method::Invite));
    }

    #[test]
    fn pop_via_and_body() {
        let m = req()
            .edit()
            .remove_top_via()
            .body("text/plain", Bytes::from_static(b"hello"))
            .finish();
        let vias: Vec<_> = m
            .vias()
            .map(|v| v.expect("via").host().to_owned())
            .collect();
        assert_eq!(vias, vec!["b".to_owned()]);
        assert_eq!(m.content_length(), Some(5));
        assert_eq!(m.header(HeaderName::ContentType), Some("text/plain"));
        let m = m.edit().remove_top_via().clear_body().finish();
        assert_eq!(m.vias().count(), 0);
        assert_eq!(
            (m.body(), m.header(HeaderName::ContentType)),
            (&b""[..], None)
        );
        let no_mf = m.edit().remove_headers(HeaderName::MaxForwards).finish();
        let with = no_mf
            .edit()
            .decrement_max_forwards()
            .expect("absent → 70")
            .finish();
        assert_eq!(with.max_forwards(), Ok(Some(70)));
        let set = with
            .edit()
            .set_header(HeaderName::Expires, "60")
            .set_header(HeaderName::Expires, "30")
            .finish();
        assert_eq!(
            set.header_lines(HeaderName::Expires).collect::<Vec<_>>(),
            vec!["30"]
        );
    }
}
