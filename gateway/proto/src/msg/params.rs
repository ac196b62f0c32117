//! Header parameters: `*( SEMI generic-param )` after a Via, name-addr, Contact, Reason, ...
//! (RFC 3261 §25.1), with LWS allowed around `;` and `=` (RFC 4475 §3.1.1.1).
//!
//! [`Params::split`] validates a parameter section once and keeps it as a raw slice;
//! iteration and lookup re-scan that slice, which is cheaper than storing a vector for the
//! two or three parameters a header usually has.

use std::borrow::Cow;

use super::scan::{is_extra, skip_lws, split_quoted, unquote, GEN_VALUE};
use super::ValueError;

/// A validated parameter section (possibly empty) borrowed from a header value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Params<'a> {
    raw: &'a str,
}

/// Length of the run of `gen-value` characters (token, plus what a `host`, an IPv6
/// reference, needs) at the start of `v`.
#[inline]
fn value_len(v: &str) -> usize {
    v.bytes()
        .position(|b| !is_extra(b, GEN_VALUE))
        .unwrap_or(v.len())
}

/// Reads one `; name [= value]` from the front of `s`. `Ok(None)` when `s` (after LWS)
/// does not start with `;`.
#[allow(clippy::type_complexity)]
fn next_param(s: &str) -> Result<Option<(&str, Option<&str>, &str)>, ValueError> {
    let s = skip_lws(s);
    let Some(s) = s.strip_prefix(';') else {
        return Ok(None);
    };
    let s = skip_lws(s);
    let name_end = super::scan::span_of(s.as_bytes(), super::scan::TOKEN);
    if name_end == 0 {
        return Err(ValueError::BadParam);
    }
    let name = &s[..name_end];
    let after = skip_lws(&s[name_end..]);
    let Some(v) = after.strip_prefix('=') else {
        // No value: keep the LWS for the caller, who checks what follows.
        return Ok(Some((name, None, &s[name_end..])));
    };
    let v = skip_lws(v);
    if v.starts_with('"') {
        let (q, rest) = split_quoted(v)?;
        return Ok(Some((name, Some(q), rest)));
    }
    let end = value_len(v);
    if end == 0 {
        return Err(ValueError::BadParam);
    }
    Ok(Some((name, Some(&v[..end]), &v[end..])))
}

impl<'a> Params<'a> {
    /// Splits a parameter section off the front of `s`; returns it and the unparsed rest
    /// (LWS-trimmed at its start).
    #[cfg(test)]
    pub(crate) fn split(s: &'a str) -> Result<(Params<'a>, &'a str), ValueError> {
        let (p, rest, []) = Self::split_capture(s, [])?;
        Ok((p, rest))
    }

    /// Like [`Params::split`], also returning the first value of each parameter in `names`
    /// (case-insensitive), so that callers need not scan the section again for them.
    #[allow(clippy::type_complexity)]
    pub(crate) fn split_capture<const N: usize>(
        s: &'a str,
        names: [&str; N],
    ) -> Result<(Params<'a>, &'a str, [Option<Option<&'a str>>; N]), ValueError> {
        let start = skip_lws(s);
        let mut rest = start;
        let mut found = [None; N];
        while let Some((n, v, r)) = next_param(rest)? {
            for (want, slot) in names.iter().zip(found.iter_mut()) {
                if slot.is_none() && n.len() == want.len() && n.eq_ignore_ascii_case(want) {
                    *slot = Some(v);
                }
            }
            rest = r;
        }
        let raw = &start[..start.len() - rest.len()];
        Ok((Params { raw }, skip_lws(rest), found))
    }

    /// Parses a whole string as a parameter section; trailing text is an error.
    pub fn parse(s: &'a str) -> Result<Params<'a>, ValueError> {
        let (p, []) = Self::parse_capture(s, [])?;
        Ok(p)
    }

    /// [`Params::parse`] with [`Params::split_capture`]'s lookups.
    #[allow(clippy::type_complexity)]
    pub(crate) fn parse_capture<const N: usize>(
        s: &'a str,
        names: [&str; N],
    ) -> Result<(Params<'a>, [Option<Option<&'a str>>; N]), ValueError> {
        let (p, rest, found) = Self::split_capture(s, names)?;
        if rest.is_empty() {
            Ok((p, found))
        } else {
            Err(ValueError::TrailingGarbage)
        }
    }

    /// The section as written (starting with `;` unless empty).
    pub fn as_str(&self) -> &'a str {
        self.raw
    }

    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// `(name, raw value)` pairs; quoted values keep their quotes.
    pub fn iter(&self) -> ParamIter<'a> {
        ParamIter { rest: self.raw }
    }

    /// Raw value of the first parameter called `name` (case-insensitive). `Some(None)`: the
    /// parameter is present without a value.
    pub fn get(&self, name: &str) -> Option<Option<&'a str>> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Value of `name` with quotes and quoted-pairs removed.
    pub fn get_unquoted(&self, name: &str) -> Option<Option<Cow<'a, str>>> {
        self.get(name).map(|v| v.map(unquote))
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

/// Iterator over a validated parameter section.
#[derive(Clone, Debug)]
pub struct ParamIter<'a> {
    rest: &'a str,
}

impl<'a> Iterator for ParamIter<'a> {
    type Item = (&'a str, Option<&'a str>);

    fn next(&mut self) -> Option<Self::Item> {
        // The section was validated by `Params::split`, so errors cannot occur here; treat
        // one as the end rather than panic.
        match next_param(self.rest) {
            Ok(Some((n, v, r))) => {
                self.rest = r;
                Some((n, v))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lws_around_separators() {
        let (p, rest) = Params::split(" ;   tag    = 1918181833n").expect("wsinv To");
        assert_eq!(rest, "");
        assert_eq!(p.get("TAG"), Some(Some("1918181833n")));
        let p = Params::parse("; newparam =\r\n      newvalue ;\r\n  secondparam ; q = 0.33")
            .expect("wsinv Contact");
        let all: Vec<_> = p.iter().collect();
        assert_eq!(
            all,
            vec![
                ("newparam", Some("newvalue")),
                ("secondparam", None),
                ("q", Some("0.33"))
            ]
        );
    }

    #[test]
    fn quoted_values_and_errors() {
        let p = Params::parse(r#";+sip.instance="<urn:uuid:0001>";reg-id=1"#).expect("outbound");
        assert_eq!(
            p.get_unquoted("+sip.instance").flatten().as_deref(),
            Some("<urn:uuid:0001>")
        );
        assert_eq!(p.get("reg-id"), Some(Some("1")));
        assert_eq!(Params::parse(";;;").err(), Some(ValueError::BadParam));
        assert_eq!(Params::parse(";a=").err(), Some(ValueError::BadParam));
        assert_eq!(
            Params::parse(r#";a="x"#).err(),
            Some(ValueError::UnterminatedQuote)
        );
        assert_eq!(
            Params::parse(";a b").err(),
            Some(ValueError::TrailingGarbage)
        );
        let (p, rest) = Params::split(";a=1 , next").expect("list rest");
        assert_eq!((p.as_str(), rest), (";a=1", ", next"));
    }
}
