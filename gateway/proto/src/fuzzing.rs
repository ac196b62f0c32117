//! Bodies of the cargo-fuzz targets in `fuzz/`.
//!
//! Each target is a plain function here, so that `fuzz/fuzz_targets/*.rs` are one-line wrappers
//! and `tests/fuzz_corpus.rs` replays the committed corpus through the same code on every
//! `cargo test`. A body must never panic on any input; it may assert round-trip properties.

/// Parses `data` as a challenge list and as credentials; whatever parses must print to a
/// value that parses back to the same thing.
pub fn digest_challenge(data: &[u8]) {
    use crate::auth::{parse_challenge_list, Challenge, Credentials};
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(list) = parse_challenge_list(s) {
        for c in list.into_iter().flatten() {
            let printed = c.to_string();
            assert_eq!(
                Challenge::parse(&printed).as_ref(),
                Ok(&c),
                "challenge {printed:?}"
            );
        }
    }
    if let Ok(c) = Credentials::parse(s) {
        let printed = c.to_string();
        assert_eq!(
            Credentials::parse(&printed).as_ref(),
            Ok(&c),
            "credentials {printed:?}"
        );
    }
}

/// Parses `data` as a SIP message and exercises every typed accessor. A message that parses
/// must print to bytes that parse back to the same start line, headers, body and typed
/// values, and printing is idempotent.
pub fn message(data: &[u8]) {
    use crate::msg::{Message, MAX_MESSAGE_LEN};
    let Ok(m) = Message::parse(bytes::Bytes::copy_from_slice(data)) else {
        return;
    };
    exercise(&m);
    let printed = m.print();
    if printed.len() > MAX_MESSAGE_LEN {
        // Reprinting adds `: ` spacing; a message at the size limit may not fit again.
        return;
    }
    let again = Message::parse(printed.clone()).expect("a printed message parses");
    assert_eq!(again.print(), printed, "print is idempotent");
    assert_eq!(again.method_str(), m.method_str());
    assert_eq!(again.request_uri_str(), m.request_uri_str());
    assert_eq!(again.status(), m.status());
    assert_eq!(again.reason(), m.reason());
    assert!(
        again.header_fields().eq(m.header_fields()),
        "same header fields"
    );
    assert_eq!(again.body(), m.body());
    assert_eq!(again.call_id(), m.call_id());
    assert_eq!(again.cseq(), m.cseq());
    assert!(again.vias().eq(m.vias()), "same vias");
    assert_eq!(again.from_hdr(), m.from_hdr());
    assert_eq!(again.to_hdr(), m.to_hdr());
    assert_eq!(again.contacts(), m.contacts());
    assert_eq!(again.max_forwards(), m.max_forwards());
    assert_eq!(again.expires(), m.expires());
    assert_eq!(again.check(), m.check());
}

/// Calls every typed accessor of `m`, discarding the results: none may panic.
fn exercise(m: &crate::msg::Message) {
    use crate::msg::HeaderName;
    let _ = (
        m.is_request(),
        m.method(),
        m.status(),
        m.reason(),
        m.head_len(),
    );
    if let Some(Ok(u)) = m.request_uri() {
        uri_accessors(&u);
    }
    for (name, value) in m.headers() {
        let _ = (
            name.as_str().len(),
            value.len(),
            m.header_values(name).count(),
        );
    }
    for v in m.vias().flatten() {
        let _ = (
            v.branch(),
            v.received(),
            v.rport(),
            v.sent_by(),
            v.transport(),
            v.has_rfc3261_branch(),
        );
    }
    let _ = (
        m.top_via(),
        m.call_id(),
        m.cseq(),
        m.max_forwards(),
        m.expires(),
        m.min_expires(),
    );
    for na in [m.from_hdr(), m.to_hdr()]
        .into_iter()
        .flatten()
        .chain(m.routes().flatten())
        .chain(m.record_routes().flatten())
    {
        let _ = (na.display_name(), na.tag(), na.params().iter().count());
        if let Ok(u) = na.uri() {
            uri_accessors(&u);
        }
    }
    if let Ok(cs) = m.contacts() {
        for c in cs.as_slice() {
            let _ = (
                c.expires(),
                c.q(),
                c.instance(),
                c.reg_id(),
                c.pn_provider(),
                c.pn_param(),
                c.pn_prid(),
                c.pn_purr(),
            );
            if let Ok(u) = c.uri() {
                uri_accessors(&u);
            }
        }
    }
    let _ = (
        m.content_length(),
        m.content_type(),
        m.body().len(),
        m.check(),
    );
    let _ = (
        m.reasons().count(),
        m.feature_caps().count(),
        m.supported().count(),
        m.require().count(),
    );
    let _ = m.header(HeaderName::Authorization).map(str::len);
    let _ = m
        .edit()
        .remove_top_via()
        .decrement_max_forwards()
        .map(|e| e.finish());
}

fn uri_accessors(u: &crate::msg::Uri<'_>) {
    let _ = (
        u.scheme(),
        u.user(),
        u.password(),
        u.host(),
        u.port(),
        u.opaque(),
        u.transport(),
        u.lr(),
    );
    let _ = (u.params().count(), u.headers().count(), u.to_string());
}

/// Parses `data` as a URI; whatever parses must print to a URI that parses back to the same
/// components and prints identically.
pub fn uri(data: &[u8]) {
    use crate::msg::Uri;
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(u) = Uri::parse(s) else {
        return;
    };
    uri_accessors(&u);
    let printed = u.to_string();
    let again = Uri::parse(&printed).expect("a printed URI parses");
    assert_eq!(again, u, "same components");
    assert_eq!(again.to_string(), printed, "print is idempotent");
    assert_eq!(again.user(), u.user());
    assert!(again.params().eq(u.params()));
}
