//! Small typed views of header values that are not addresses: Content-Type media types,
//! Reason (RFC 3326) and Feature-Caps (RFC 6809) values.

use std::borrow::Cow;

use super::params::Params;
use super::scan::{is_token, skip_lws, trim_lws};
use super::ValueError;

fn token(s: &str) -> Result<(&str, &str), ValueError> {
    let end = s.bytes().position(|b| !is_token(b)).unwrap_or(s.len());
    if end == 0 {
        return Err(ValueError::BadToken);
    }
    Ok((&s[..end], &s[end..]))
}

/// `type/subtype;params`, e.g. `application/sdp` or `multipart/mixed;boundary=...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaType<'a> {
    pub kind: &'a str,
    pub subtype: &'a str,
    pub params: Params<'a>,
}

impl<'a> MediaType<'a> {
    pub fn parse(value: &'a str) -> Result<MediaType<'a>, ValueError> {
        let v = trim_lws(value);
        let (kind, r) = token(v)?;
        let r = skip_lws(r).strip_prefix('/').ok_or(ValueError::BadToken)?;
        let (subtype, r) = token(skip_lws(r))?;
        let params = Params::parse(r)?;
        Ok(MediaType {
            kind,
            subtype,
            params,
        })
    }

    /// Case-insensitive comparison with `type/subtype`.
    pub fn is(&self, kind: &str, subtype: &str) -> bool {
        self.kind.eq_ignore_ascii_case(kind) && self.subtype.eq_ignore_ascii_case(subtype)
    }
}

/// One Reason value (RFC 3326): `SIP ;cause=200 ;text="Call completed elsewhere"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReasonValue<'a> {
    pub protocol: &'a str,
    pub params: Params<'a>,
}

impl<'a> ReasonValue<'a> {
    pub fn parse(value: &'a str) -> Result<ReasonValue<'a>, ValueError> {
        let (protocol, r) = token(trim_lws(value))?;
        Ok(ReasonValue {
            protocol,
            params: Params::parse(r)?,
        })
    }
    pub fn cause(&self) -> Option<u16> {
        self.params
            .get("cause")
            .flatten()
            .and_then(|c| c.parse().ok())
    }
    pub fn text(&self) -> Option<Cow<'a, str>> {
        self.params.get_unquoted("text").flatten()
    }
}

/// One Feature-Caps value (RFC 6809): `*;+sip.pns="apns";+sip.pnsreg`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeatureCap<'a> {
    pub params: Params<'a>,
}

impl<'a> FeatureCap<'a> {
    pub fn parse(value: &'a str) -> Result<FeatureCap<'a>, ValueError> {
        let v = trim_lws(value);
        let r = v.strip_prefix('*').ok_or(ValueError::BadToken)?;
        Ok(FeatureCap {
            params: Params::parse(r)?,
        })
    }
    /// A feature tag's value with quotes removed; `Some(None)` when present without value.
    pub fn get(&self, tag: &str) -> Option<Option<Cow<'a, str>>> {
        self.params.get_unquoted(tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_reason_feature_caps() {
        let m = MediaType::parse("multipart/mixed;boundary=7a9cbec02ceef655").expect("mpart01");
        assert!(m.is("Multipart", "MIXED"));
        assert_eq!(m.params.get("boundary"), Some(Some("7a9cbec02ceef655")));
        assert!(MediaType::parse("application").is_err());

        let r = ReasonValue::parse("SIP ;cause=200 ;text=\"Call completed elsewhere\"")
            .expect("rfc3326");
        assert_eq!((r.protocol, r.cause()), ("SIP", Some(200)));
        assert_eq!(r.text().as_deref(), Some("Call completed elsewhere"));

        let f = FeatureCap::parse("*;+sip.pns=\"apns\";+sip.pnsreg").expect("rfc8599");
        assert_eq!(f.get("+sip.pns"), Some(Some("apns".into())));
        assert_eq!(f.get("+sip.pnsreg"), Some(None));
        assert!(FeatureCap::parse("+sip.pns=\"apns\"").is_err());
    }
}
