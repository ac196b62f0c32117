//! Salvaging enough of an unframable UDP request to answer it.
//!
//! RFC 3261 §18.3 and RFC 4475 (§3.1.2.6 "clerr", §3.1.2.7 "ncl", "mcl01") ask a server to
//! answer a request whose Content-Length is wrong with 400 rather than to drop it, but the
//! parser rightly refuses such a message. Only the headers a response copies (Via, From, To,
//! Call-ID, CSeq) are needed, so this rebuilds the header section without its Content-Length
//! lines and without the body, which the parser then accepts.

use bytes::Bytes;
use vigil_proto::framing::find_header_end;

/// The request's start line and headers with every `Content-Length`/`l` header (and its folded
/// continuation lines) removed and `Content-Length: 0` appended; `None` if the header section
/// is not terminated.
pub fn without_body(datagram: &[u8]) -> Option<Bytes> {
    let start = datagram.iter().position(|b| *b != b'\r' && *b != b'\n')?;
    let end = find_header_end(datagram, start)?;
    // The section without its final empty line, split into lines.
    let section = &datagram[start..end - 2];
    let mut out = Vec::with_capacity(section.len() + 20);
    let mut skipping = false;
    for line in section.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let continuation = line[0] == b' ' || line[0] == b'\t';
        if !continuation {
            skipping = is_content_length(line);
        }
        if !skipping {
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    Some(Bytes::from(out))
}

fn is_content_length(line: &[u8]) -> bool {
    let Some(colon) = line.iter().position(|b| *b == b':') else {
        return false;
    };
    let name = line[..colon].trim_ascii_end();
    name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l")
}

#[cfg(test)]
mod tests {
    use vigil_proto::msg::{HeaderName, Message};

    use super::*;

    #[test]
    fn drops_content_length_lines_and_body() {
        let bad = b"INVITE sip:u@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.53;branch=z9hG4bKkdjuw\r\n\
l: 2\r\n\
Call-ID: ncl@x\r\n\
Content-Length:\r\n -999\r\n\
CSeq: 1 INVITE\r\n\
\r\nv=0\r\n";
        let fixed = without_body(bad).unwrap();
        let m = Message::parse(fixed).unwrap();
        assert_eq!(m.call_id().unwrap(), "ncl@x");
        assert_eq!(m.header(HeaderName::CSeq), Some("1 INVITE"));
        assert_eq!(m.content_length(), Some(0));
        assert!(m.body().is_empty());
        assert!(without_body(b"INVITE sip:u@x SIP/2.0\r\nCSeq: 1 INVITE\r\n").is_none());
    }
}
