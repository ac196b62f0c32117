//! `name-addr` / `addr-spec` values with header parameters: From, To, Contact, Route,
//! Record-Route, Refer-To, ... (RFC 3261 §20.10, §25.1).
//!
//! In the bracketed form `["display"] <uri> ;params` the parameters after `>` belong to the
//! header and those inside `<>` to the URI. Without brackets every `;` ends the URI, so
//! `Contact: sip:a@b;unknownparam` carries a *contact* parameter (RFC 4475 §3.3.12), and a
//! URI with `?` must be bracketed (RFC 4475 §3.1.2.13).
//!
//! The URI is split off but not parsed: [`NameAddr::uri`] parses it on demand. Most readers
//! of From, To and Contact want a tag or a parameter, and where the URI is checked whether
//! or not anyone reads it, [`super::Message::check`] parses it.

use std::borrow::Cow;

use super::params::{Params, EXPIRES, TAG};
use super::scan::{find_either, is_lws, is_token, skip_lws, split_quoted, trim_lws, unquote};
use super::uri::Uri;
use super::{UriError, ValueError};

/// A parsed name-addr or addr-spec with its header parameters. The URI is kept as text
/// and parsed by [`NameAddr::uri`].
#[derive(Clone, Debug)]
pub struct NameAddr<'a> {
    display: Option<&'a str>,
    /// The URI as written (inside `<>` if bracketed), not yet parsed.
    uri: &'a str,
    bracketed: bool,
    params: Params<'a>,
    /// `tag` and `expires`, found while validating the parameters.
    tag: Option<&'a str>,
    expires: Option<Option<&'a str>>,
}

/// URIs compare by their components (as [`Uri`] does), so `sip:a@b:05060` equals
/// `sip:a@b:5060`; a URI that does not parse equals only the same error.
impl PartialEq for NameAddr<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.display == other.display
            && self.bracketed == other.bracketed
            && self.params == other.params
            && self.tag == other.tag
            && self.expires == other.expires
            && (self.uri == other.uri || self.uri() == other.uri())
    }
}
impl Eq for NameAddr<'_> {}

impl<'a> NameAddr<'a> {
    /// Parses one whole value. The URI is split off but parsed only by [`NameAddr::uri`].
    pub fn parse(value: &'a str) -> Result<NameAddr<'a>, ValueError> {
        Self::parse_whole::<false>(value)
    }

    /// [`NameAddr::parse`], also parsing the URI (before the header parameters, so the
    /// error for a value with both wrong is the URI's, as a strict reader reports it).
    pub(crate) fn parse_checked(value: &'a str) -> Result<NameAddr<'a>, ValueError> {
        Self::parse_whole::<true>(value)
    }

    fn parse_whole<const CHECK_URI: bool>(value: &'a str) -> Result<NameAddr<'a>, ValueError> {
        let v = trim_lws(value);
        if v.is_empty() {
            return Err(ValueError::Empty);
        }
        let (n, rest) = Self::parse_prefix_with::<CHECK_URI>(v)?;
        if rest.is_empty() {
            Ok(n)
        } else {
            Err(ValueError::TrailingGarbage)
        }
    }

    /// Parses one value off the front of `v` (no leading LWS) and returns the rest, which
    /// starts at the `,` of a list or is empty, so lists are parsed in one pass.
    pub(crate) fn parse_prefix(v: &'a str) -> Result<(NameAddr<'a>, &'a str), ValueError> {
        Self::parse_prefix_with::<false>(v)
    }

    /// [`NameAddr::parse_prefix`], also parsing the URI (see [`NameAddr::parse_checked`]).
    pub(crate) fn parse_prefix_checked(v: &'a str) -> Result<(NameAddr<'a>, &'a str), ValueError> {
        Self::parse_prefix_with::<true>(v)
    }

    fn parse_prefix_with<const CHECK_URI: bool>(
        v: &'a str,
    ) -> Result<(NameAddr<'a>, &'a str), ValueError> {
        if v.is_empty() || v.starts_with(',') {
            return Err(ValueError::EmptyElement);
        }
        let (display, after_display) = if v.starts_with('<') {
            // The usual form: no display name.
            (None, v)
        } else if v.starts_with('"') {
            let (q, rest) = split_quoted(v)?;
            (Some(q), skip_lws(rest))
        } else {
            // A token display name runs up to `<`; if the run stops at anything else
            // (the `:` of a scheme, typically) this is an addr-spec.
            let end = v
                .bytes()
                .position(|b| !(is_token(b) || is_lws(b)))
                .unwrap_or(v.len());
            let stop = v.as_bytes().get(end).copied();
            if stop == Some(b'<') {
                let d = trim_lws(&v[..end]);
                (if d.is_empty() { None } else { Some(d) }, &v[end..])
            } else if stop != Some(b':') && v.contains('<') {
                // Something that is neither a token nor a scheme before `<`.
                return Err(ValueError::BadDisplayName);
            } else {
                (None, v)
            }
        };
        if let Some(inner) = after_display.strip_prefix('<') {
            let close =
                find_either(inner.as_bytes(), b'>', b'>').ok_or(ValueError::UnterminatedAngle)?;
            let uri = &inner[..close];
            if CHECK_URI {
                Uri::parse(uri).map_err(ValueError::Uri)?;
            }
            let after = &inner[close + 1..];
            // A To without a tag ends at `>`: no parameter section to split.
            let (params, rest, [tag, expires]) = if after.is_empty() {
                (Params::default(), after, [None, None])
            } else {
                Params::split_capture(after, &[TAG, EXPIRES])?
            };
            let n = NameAddr {
                display,
                uri,
                bracketed: true,
                params,
                tag: tag.flatten(),
                expires,
            };
            return Ok((n, rest));
        }
        if display.is_some() {
            // A display name must be followed by `<uri>`: `Bell, Alexander <...>` (RFC 4475
            // §3.1.2.15) and `"name" sip:...` end up here.
            return Err(ValueError::BadDisplayName);
        }
        // Without brackets the URI ends at `;`, LWS or the `,` of a list (RFC 3261 §20).
        let end = v
            .bytes()
            .position(|b| b == b';' || b == b',' || is_lws(b))
            .unwrap_or(v.len());
        let uri_str = &v[..end];
        if uri_str.contains('?') {
            return Err(ValueError::UnbracketedUri);
        }
        let uri = uri_str;
        if CHECK_URI {
            Uri::parse(uri).map_err(ValueError::Uri)?;
        }
        let (params, rest, [tag, expires]) = Params::split_capture(&v[end..], &[TAG, EXPIRES])?;
        Ok((
            NameAddr {
                display: None,
                uri,
                bracketed: false,
                params,
                tag: tag.flatten(),
                expires,
            },
            rest,
        ))
    }

    /// The display name, unquoted, with quoted-pairs resolved. `None` if absent.
    pub fn display_name(&self) -> Option<Cow<'a, str>> {
        self.display.map(unquote)
    }

    /// The display name as written (with quotes if it was quoted).
    pub fn display_name_raw(&self) -> Option<&'a str> {
        self.display
    }

    /// The URI, parsed now. An error here is what [`super::Message::check`] reports as
    /// [`ValueError::Uri`] for the header.
    pub fn uri(&self) -> Result<Uri<'a>, UriError> {
        Uri::parse(self.uri)
    }

    /// The URI exactly as written (without the `<>`).
    pub fn uri_str(&self) -> &'a str {
        self.uri
    }

    /// Whether the URI was enclosed in `<>`.
    pub fn is_bracketed(&self) -> bool {
        self.bracketed
    }

    /// Header parameters (after `>`, or after the bare URI).
    pub fn params(&self) -> Params<'a> {
        self.params
    }

    /// Raw value of a header parameter.
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        self.params.get(name)
    }

    /// The `tag` parameter (From/To).
    pub fn tag(&self) -> Option<&'a str> {
        self.tag
    }

    /// The raw `expires` parameter (Contact), captured at parse time.
    pub(crate) fn expires_raw(&self) -> Option<Option<&'a str>> {
        self.expires
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let n = NameAddr::parse(
            r#""J Rosenberg \\\""       <sip:jdrosen@example.com>
  ;
  tag = 98asjd8"#,
        )
        .expect("wsinv From");
        assert_eq!(n.display_name().as_deref(), Some(r#"J Rosenberg \""#));
        assert_eq!(n.tag(), Some("98asjd8"));
        assert_eq!(n.uri().expect("uri").host(), Some("example.com"));

        let n = NameAddr::parse("caller<sip:caller@example.com>;tag=323").expect("lwsdisp");
        assert_eq!(n.display_name().as_deref(), Some("caller"));

        let n = NameAddr::parse("sip:+19725552222@gw1.example.net;unknownparam").expect("cparam01");
        assert!(n.param("unknownparam").is_some());
        assert_eq!(n.uri().expect("uri").params_raw(), "");

        let n =
            NameAddr::parse("<sip:+19725552222@gw1.example.net;unknownparam>").expect("cparam02");
        assert!(n.param("unknownparam").is_none());
        assert!(n.uri().expect("uri").param("unknownparam").is_some());

        let n = NameAddr::parse("token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;tag=x")
            .expect("intmeth From");
        assert_eq!(
            n.display_name().as_deref(),
            Some("token1~` token2'+_ token3*%!.-")
        );
    }

    #[test]
    fn rejects() {
        assert_eq!(
            NameAddr::parse("\"Mr. J. User <sip:j.user@example.com>").err(),
            Some(ValueError::UnterminatedQuote)
        );
        assert_eq!(
            NameAddr::parse("Bell, Alexander <sip:a.g.bell@example.com>;tag=43").err(),
            Some(ValueError::BadDisplayName)
        );
        // The URI is checked when it is asked for (and by `Message::check`).
        assert_eq!(
            NameAddr::parse("\"Watson, Thomas\" < sip:t.watson@example.org >")
                .expect("splits")
                .uri()
                .err(),
            Some(UriError::IllegalChar)
        );
        assert_eq!(
            NameAddr::parse("sip:user@example.com?Route=%3Csip:sip.example.com%3E").err(),
            Some(ValueError::UnbracketedUri)
        );
        assert_eq!(
            NameAddr::parse("\"Joe\" <sip:joe@example.org>;;;;").err(),
            Some(ValueError::BadParam)
        );
        assert_eq!(
            NameAddr::parse("<sip:a@b").err(),
            Some(ValueError::UnterminatedAngle)
        );
        assert_eq!(NameAddr::parse("").err(), Some(ValueError::Empty));
    }
}
