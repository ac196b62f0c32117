//! Contact header values (RFC 3261 §20.10) with the parameters registration needs:
//! `expires`, `q`, `+sip.instance` and `reg-id` (RFC 5626), and the RFC 8599 push
//! parameters `pn-provider`, `pn-param`, `pn-prid`, `pn-purr`.

use std::borrow::Cow;

use smallvec::SmallVec;

use super::name_addr::NameAddr;
use super::params::Params;
use super::scan::unquote;
use super::uri::Uri;
use super::{UriError, ValueError};

/// All Contact values of a message.
// A short-lived view kept on the stack; boxing the list would allocate on every REGISTER.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Contacts<'a> {
    /// `Contact: *` (remove all bindings, RFC 3261 §10.2.2).
    Star,
    /// Zero or more contacts, in order.
    List(SmallVec<[Contact<'a>; 2]>),
}

impl<'a> Contacts<'a> {
    /// The listed contacts (empty for `*`).
    pub fn as_slice(&self) -> &[Contact<'a>] {
        match self {
            Contacts::Star => &[],
            Contacts::List(v) => v,
        }
    }
    pub fn is_star(&self) -> bool {
        matches!(self, Contacts::Star)
    }
}

/// One Contact value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contact<'a> {
    addr: NameAddr<'a>,
}

impl<'a> Contact<'a> {
    pub fn parse(value: &'a str) -> Result<Contact<'a>, ValueError> {
        Ok(Contact {
            addr: NameAddr::parse(value)?,
        })
    }

    /// One Contact off the front of a list; `*` inside a list is an error (RFC 3261 §10.2.2).
    pub(crate) fn parse_prefix(v: &'a str) -> Result<(Contact<'a>, &'a str), ValueError> {
        if v.starts_with('*') {
            return Err(ValueError::BadParam);
        }
        let (addr, rest) = NameAddr::parse_prefix(v)?;
        Ok((Contact { addr }, rest))
    }

    /// [`Contact::parse_prefix`], also parsing the URI (for [`super::Message::check`]).
    pub(crate) fn parse_prefix_checked(v: &'a str) -> Result<(Contact<'a>, &'a str), ValueError> {
        if v.starts_with('*') {
            return Err(ValueError::BadParam);
        }
        let (addr, rest) = NameAddr::parse_prefix_checked(v)?;
        Ok((Contact { addr }, rest))
    }

    pub fn name_addr(&self) -> &NameAddr<'a> {
        &self.addr
    }
    /// The Contact URI, parsed now (see [`NameAddr::uri`]).
    pub fn uri(&self) -> Result<Uri<'a>, UriError> {
        self.addr.uri()
    }
    pub fn display_name(&self) -> Option<Cow<'a, str>> {
        self.addr.display_name()
    }
    /// Contact parameters (outside the URI).
    pub fn params(&self) -> Params<'a> {
        self.addr.params()
    }
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        self.addr.param(name)
    }

    /// The `expires` contact parameter in seconds; an out-of-range value is an error
    /// (RFC 4475 §3.1.2.4), which a registrar may treat as its default.
    pub fn expires(&self) -> Result<Option<u32>, ValueError> {
        match self.addr.expires_raw() {
            None => Ok(None),
            Some(None) => Err(ValueError::BadNumber),
            Some(Some(v)) => super::scan::decimal_value(v, u64::from(u32::MAX))
                .map(|n| Some(u32::try_from(n).unwrap_or(u32::MAX))),
        }
    }

    /// The `q` parameter, in thousandths (`q=0.5` → 500).
    pub fn q(&self) -> Result<Option<u16>, ValueError> {
        let Some(v) = self.param("q") else {
            return Ok(None);
        };
        let v = v.ok_or(ValueError::BadNumber)?;
        let (int, frac) = v.split_once('.').unwrap_or((v, ""));
        if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ValueError::BadNumber);
        }
        let mut thousandths: u16 = match int {
            "0" => 0,
            "1" => 1000,
            _ => return Err(ValueError::BadNumber),
        };
        let mut scale = 100;
        for b in frac.bytes() {
            thousandths += u16::from(b - b'0') * scale;
            scale /= 10;
        }
        if thousandths > 1000 {
            return Err(ValueError::NumberTooLarge);
        }
        Ok(Some(thousandths))
    }

    /// `+sip.instance` (RFC 5626), unquoted, e.g. `<urn:uuid:...>`.
    pub fn instance(&self) -> Option<Cow<'a, str>> {
        self.param("+sip.instance").flatten().map(unquote)
    }

    /// `reg-id` (RFC 5626).
    pub fn reg_id(&self) -> Result<Option<u32>, ValueError> {
        match self.param("reg-id") {
            None => Ok(None),
            Some(None) => Err(ValueError::BadNumber),
            Some(Some(v)) => super::scan::decimal_value(v, u64::from(u32::MAX))
                .map(|n| Some(u32::try_from(n).unwrap_or(u32::MAX))),
        }
    }

    /// An RFC 8599 push parameter. RFC 8599 §4.1.3 puts them in the Contact *URI*; some
    /// clients put them on the header instead, so both places are looked at, URI first.
    pub fn pn_param_named(&self, name: &str) -> Option<Cow<'a, str>> {
        if let Some(v) = self.uri().ok().and_then(|u| u.param(name)) {
            return v;
        }
        self.param(name).flatten().map(unquote)
    }
    /// `pn-provider` (`apns`, `fcm`, `webpush`).
    pub fn pn_provider(&self) -> Option<Cow<'a, str>> {
        self.pn_param_named("pn-provider")
    }
    /// `pn-param` (e.g. APNs `TEAMID.bundle.voip`, FCM project id).
    pub fn pn_param(&self) -> Option<Cow<'a, str>> {
        self.pn_param_named("pn-param")
    }
    /// `pn-prid` (the device push token).
    pub fn pn_prid(&self) -> Option<Cow<'a, str>> {
        self.pn_param_named("pn-prid")
    }
    /// `pn-purr` (the proxy's push-registration id, RFC 8599 §4.1.5).
    pub fn pn_purr(&self) -> Option<Cow<'a, str>> {
        self.pn_param_named("pn-purr")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_params() {
        let c = Contact::parse(
            "<sip:alice@192.0.2.4:5060;transport=tcp;pn-provider=apns;pn-param=ABCD.com.example.voip;pn-prid=00fc13adff78>\
             ;expires=600;q=0.7;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>\";reg-id=1",
        )
        .expect("valid");
        assert_eq!(c.expires(), Ok(Some(600)));
        assert_eq!(c.q(), Ok(Some(700)));
        assert_eq!(
            c.instance().as_deref(),
            Some("<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>")
        );
        assert_eq!(c.reg_id(), Ok(Some(1)));
        assert_eq!(c.pn_provider().as_deref(), Some("apns"));
        assert_eq!(c.pn_param().as_deref(), Some("ABCD.com.example.voip"));
        assert_eq!(c.pn_prid().as_deref(), Some("00fc13adff78"));
        assert_eq!(c.pn_purr(), None);
        let c = Contact::parse("<sip:a@b>;pn-purr=xyz;expires=280297596632815").expect("valid");
        assert_eq!(c.pn_purr().as_deref(), Some("xyz"));
        assert_eq!(c.expires(), Err(ValueError::NumberTooLarge));
        let c = Contact::parse("<sip:a@b>;q=1.5").expect("valid");
        assert_eq!(c.q(), Err(ValueError::NumberTooLarge));
    }
}
