//! Header parameters: `*( SEMI generic-param )` after a Via, name-addr, Contact, Reason, ...
//! (RFC 3261 §25.1), with LWS allowed around `;` and `=` (RFC 4475 §3.1.1.1).
//!
//! [`Params::split`] validates a parameter section once and keeps it as a raw slice;
//! iteration and lookup re-scan that slice, which is cheaper than storing a vector for the
//! two or three parameters a header usually has.
//!
//! The split has two scans, like the message splitter: a fast one for the usual layout
//! (`;name=value`, no LWS around the separators), which finds each name's and value's end
//! in a sixteen-byte SSE2 screen of the section ([`NonToken`]), and the exact one, which
//! checks every rule in order and answers everything else, errors included.

use std::borrow::Cow;

use super::scan::{
    is_lws, is_token, long_run_extra, non_alnum16, quoted_len, span_of, unquote, GEN_VALUE, TOKEN,
};
use super::ValueError;

/// A validated parameter section (possibly empty) borrowed from a header value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Params<'a> {
    raw: &'a str,
}

/// One `; name [= value]` found by [`next_param_at`]: byte offsets into the section.
struct Found {
    name: (usize, usize),
    value: Option<(usize, usize)>,
    /// Where the parameter ends (LWS after a valueless name is left for the caller).
    end: usize,
}

#[inline]
fn skip_lws_at(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_lws(b[i]) {
        i += 1;
    }
    i
}

/// Reads one `; name [= value]` from `b[i..]`. `Ok(None)` when it (after LWS) does not
/// start with `;`. Works on offsets so that the loop over a section keeps no `&str`
/// re-slicing (and its char-boundary checks) on the hot path; every offset it returns is
/// at an ASCII byte, so callers can slice the `&str` there. The usual layout
/// (`;name=value`) has no LWS, so each skip is entered only when a blank is there.
#[inline(always)]
fn next_param_at(b: &[u8], i: usize) -> Result<Option<Found>, ValueError> {
    let i = match b.get(i) {
        Some(b';') => i,
        Some(&c) if is_lws(c) => {
            let j = skip_lws_at(b, i);
            if b.get(j) != Some(&b';') {
                return Ok(None);
            }
            j
        }
        _ => return Ok(None),
    };
    let mut ns = i + 1;
    if b.get(ns).is_some_and(|&c| is_lws(c)) {
        ns = skip_lws_at(b, ns);
    }
    let ne = ns + span_of(&b[ns..], TOKEN);
    if ne == ns {
        return Err(ValueError::BadParam);
    }
    let no_value = Found {
        name: (ns, ne),
        value: None,
        end: ne,
    };
    let eq = match b.get(ne) {
        Some(b'=') => ne,
        Some(&c) if is_lws(c) => {
            let j = skip_lws_at(b, ne);
            if b.get(j) != Some(&b'=') {
                return Ok(Some(no_value));
            }
            j
        }
        _ => return Ok(Some(no_value)),
    };
    let mut vs = eq + 1;
    if b.get(vs).is_some_and(|&c| is_lws(c)) {
        vs = skip_lws_at(b, vs);
    }
    let ve = if b.get(vs) == Some(&b'"') {
        vs + quoted_len(&b[vs..])?
    } else {
        let n = long_run_extra(&b[vs..], GEN_VALUE);
        if n == 0 {
            return Err(ValueError::BadParam);
        }
        vs + n
    };
    Ok(Some(Found {
        name: (ns, ne),
        value: Some((vs, ve)),
        end: ve,
    }))
}

/// The positions of the non-`token` bytes of a parameter section. Its blocks of sixteen
/// bytes are classified when the walk reaches them, cheaply ([`non_alnum16`]: letters and
/// digits, the bulk of names and values, are not stops); each flagged byte is then looked
/// up, so that token punctuation (`-`, `.`, `+`, ...) is passed over. The end of the
/// section counts as a stop. Positions are asked for in increasing order, as a section is
/// read.
struct NonToken<'a> {
    b: &'a [u8],
    /// Where the block `bits` describes starts.
    base: usize,
    /// Bit `k`: `b[base + k]` is not a letter or digit, or `base + k` is the end.
    bits: u32,
}

impl<'a> NonToken<'a> {
    #[inline]
    fn new(b: &'a [u8]) -> Self {
        let mut t = NonToken {
            b,
            base: 0,
            bits: 0,
        };
        t.load(0);
        t
    }

    /// Classifies the sixteen bytes from `at` (`<= b.len()`). A short last block is read
    /// as the last sixteen bytes of the section (shifted), or from a copy padded with NULs
    /// (stops) when the whole section is shorter.
    #[inline]
    fn load(&mut self, at: usize) {
        let rest = &self.b[at..];
        self.base = at;
        self.bits = match rest.first_chunk::<16>() {
            Some(block) => u32::from(non_alnum16(block)) | u32::from(rest.len() == 16) << 16,
            None => {
                let r = rest.len();
                let m = match self.b.last_chunk::<16>() {
                    Some(last) => u32::from(non_alnum16(last)) >> (16 - r),
                    None => {
                        let mut padded = [0; 16];
                        padded[..r].copy_from_slice(rest);
                        u32::from(non_alnum16(&padded))
                    }
                };
                m | 1 << r
            }
        };
    }

    /// The first position at or after `p` (`<= b.len()`) that is not a token byte, or
    /// `b.len()`.
    #[inline(always)]
    fn from(&mut self, mut p: usize) -> usize {
        loop {
            let off = p.wrapping_sub(self.base);
            if off >= 16 {
                self.load(p);
                continue;
            }
            let m = self.bits >> off;
            if m != 0 {
                let at = p + m.trailing_zeros() as usize;
                match self.b.get(at) {
                    Some(&c) if is_token(c) => p = at + 1,
                    _ => return at,
                }
                continue;
            }
            // No stop in the rest of the block, so it does not reach the end.
            self.load(self.base + 16);
            p = self.base;
        }
    }
}

/// Whether the token `name` equals `lower` (a lowercase literal) ignoring case. For token
/// characters `| 0x20` lowercases letters and maps no other token character onto a
/// letter, digit, `-`, `+` or `.`, so one OR per byte replaces a case conversion of both.
#[inline]
fn token_is(name: &[u8], lower: &str) -> bool {
    debug_assert!(!lower.bytes().any(|c| c.is_ascii_uppercase()));
    name.len() == lower.len() && name.iter().zip(lower.bytes()).all(|(&c, l)| c | 0x20 == l)
}

/// A parameter name that [`Params::split_capture`] looks for: a lowercase literal of at
/// most eight bytes, packed at compile time so that a comparison is one masked word
/// compare whether or not the optimiser sees the literal.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ParamName {
    name: &'static str,
    /// The name's bytes, little-endian, zero above its length.
    packed: u64,
    /// Ones over the name's bytes.
    mask: u64,
}

impl ParamName {
    pub(crate) const fn new(name: &'static str) -> ParamName {
        let b = name.as_bytes();
        assert!(!b.is_empty() && b.len() <= 8, "a short parameter name");
        let mut packed = 0u64;
        let mut mask = 0u64;
        let mut i = 0;
        while i < b.len() {
            assert!(!b[i].is_ascii_uppercase(), "a lowercase parameter name");
            // `| 0x20` as in `token_is`: for the token characters a name can hold it
            // changes nothing.
            packed |= ((b[i] | 0x20) as u64) << (8 * i);
            mask |= 0xff << (8 * i);
            i += 1;
        }
        ParamName { name, packed, mask }
    }

    /// Whether `b[at..at + len]` (a token) is this name ignoring case: [`token_is`] with
    /// one load when eight bytes are there to read.
    #[inline(always)]
    fn is_at(self, b: &[u8], at: usize, len: usize) -> bool {
        if len != self.name.len() {
            return false;
        }
        match b.get(at..).and_then(<[u8]>::first_chunk::<8>) {
            Some(w) => (u64::from_le_bytes(*w) | 0x2020_2020_2020_2020) & self.mask == self.packed,
            None => token_is(&b[at..at + len], self.name),
        }
    }
}

/// `branch` (Via).
pub(crate) const BRANCH: ParamName = ParamName::new("branch");
/// `tag` (From, To).
pub(crate) const TAG: ParamName = ParamName::new("tag");
/// `expires` (Contact).
pub(crate) const EXPIRES: ParamName = ParamName::new("expires");

/// Reads one `; name [= value]` from the front of `s`. `Ok(None)` when `s` (after LWS)
/// does not start with `;`.
#[allow(clippy::type_complexity)]
fn next_param(s: &str) -> Result<Option<(&str, Option<&str>, &str)>, ValueError> {
    Ok(next_param_at(s.as_bytes(), 0)?.map(|f| {
        (
            &s[f.name.0..f.name.1],
            f.value.map(|(vs, ve)| &s[vs..ve]),
            &s[f.end..],
        )
    }))
}

impl<'a> Params<'a> {
    /// Splits a parameter section off the front of `s`; returns it and the unparsed rest
    /// (LWS-trimmed at its start).
    #[cfg(test)]
    pub(crate) fn split(s: &'a str) -> Result<(Params<'a>, &'a str), ValueError> {
        let (p, rest, []) = Self::split_capture(s, &[])?;
        Ok((p, rest))
    }

    /// Like [`Params::split`], also returning the first value of each parameter in `names`
    /// (case-insensitive), so that callers need not scan the section again for them.
    #[allow(clippy::type_complexity)]
    #[inline]
    pub(crate) fn split_capture<const N: usize>(
        s: &'a str,
        names: &[ParamName; N],
    ) -> Result<(Params<'a>, &'a str, [Option<Option<&'a str>>; N]), ValueError> {
        match Self::split_capture_fast(s, names) {
            Some(r) => Ok(r),
            None => Self::split_capture_exact(s, names),
        }
    }

    /// [`Params::split_capture`] for the usual section, `;name=value` pairs without LWS
    /// around the separators: names and unquoted values end at the next non-token byte of
    /// a [`NonToken`] walk, so no byte is looked at on its own. `None` for anything else
    /// (LWS, an empty name or value, an unterminated quote), which the exact scan then
    /// answers, errors included; what this returns is what that scan would.
    #[allow(clippy::type_complexity)]
    #[inline(never)]
    fn split_capture_fast<const N: usize>(
        s: &'a str,
        names: &[ParamName; N],
    ) -> Option<(Params<'a>, &'a str, [Option<Option<&'a str>>; N])> {
        let b = s.as_bytes();
        if b.first() != Some(&b';') {
            return None;
        }
        let mut stops = NonToken::new(b);
        // Offsets until the end: only the values asked for become slices.
        let mut found: [Option<Option<(usize, usize)>>; N] = [None; N];
        let mut i = 0;
        loop {
            match b.get(i) {
                Some(b';') => {}
                Some(&c) if is_lws(c) => return None,
                _ => break,
            }
            let ns = i + 1;
            let ne = stops.from(ns);
            if ne == ns {
                return None;
            }
            let mut value = None;
            i = ne;
            if b.get(ne) == Some(&b'=') {
                let vs = ne + 1;
                let ve = if b.get(vs) == Some(&b'"') {
                    vs + quoted_len(&b[vs..]).ok()?
                } else {
                    // `gen-value` is `token` plus what an IPv6 reference needs.
                    let mut ve = stops.from(vs);
                    while matches!(b.get(ve), Some(b':' | b'[' | b']')) {
                        ve = stops.from(ve + 1);
                    }
                    ve
                };
                if ve == vs {
                    return None;
                }
                value = Some((vs, ve));
                i = ve;
            }
            for (want, slot) in names.iter().zip(found.iter_mut()) {
                if slot.is_none() && want.is_at(b, ns, ne - ns) {
                    *slot = Some(value);
                }
            }
        }
        let mut values = [None; N];
        for (v, f) in values.iter_mut().zip(found) {
            *v = match f {
                None => None,
                Some(None) => Some(None),
                Some(Some((vs, ve))) => Some(Some(s.get(vs..ve)?)),
            };
        }
        Some((Params { raw: s.get(..i)? }, s.get(i..)?, values))
    }

    /// [`Params::split_capture`] one parameter at a time, with every rule checked.
    #[allow(clippy::type_complexity)]
    fn split_capture_exact<const N: usize>(
        s: &'a str,
        names: &[ParamName; N],
    ) -> Result<(Params<'a>, &'a str, [Option<Option<&'a str>>; N]), ValueError> {
        let b = s.as_bytes();
        let start = skip_lws_at(b, 0);
        let mut end = start;
        let mut found = [None; N];
        while let Some(f) = next_param_at(b, end)? {
            for (want, slot) in names.iter().zip(found.iter_mut()) {
                if slot.is_none() && want.is_at(b, f.name.0, f.name.1 - f.name.0) {
                    *slot = Some(f.value.map(|(vs, ve)| &s[vs..ve]));
                }
            }
            end = f.end;
        }
        Ok((
            Params {
                raw: &s[start..end],
            },
            &s[skip_lws_at(b, end)..],
            found,
        ))
    }

    /// Parses a whole string as a parameter section; trailing text is an error.
    pub fn parse(s: &'a str) -> Result<Params<'a>, ValueError> {
        let (p, []) = Self::parse_capture(s, &[])?;
        Ok(p)
    }

    /// [`Params::parse`] with [`Params::split_capture`]'s lookups.
    #[allow(clippy::type_complexity)]
    pub(crate) fn parse_capture<const N: usize>(
        s: &'a str,
        names: &[ParamName; N],
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

    /// [`ParamName::is_at`] agrees with [`token_is`] for names of every length near each
    /// literal, in any case, with one byte changed, and at every distance from the end.
    #[test]
    fn packed_names_agree_with_token_is() {
        let mut cases = 0;
        for want in [
            TAG,
            EXPIRES,
            BRANCH,
            ParamName::new("lr"),
            ParamName::new("+sip.x-1"),
        ] {
            let lit = want.name.as_bytes();
            let mut names: Vec<Vec<u8>> = vec![lit.to_vec(), lit.to_ascii_uppercase()];
            for i in 0..lit.len() {
                for c in [
                    b'a',
                    b'Z',
                    b'-',
                    b'.',
                    b'!',
                    b'0',
                    lit[i] ^ 0x20,
                    lit[i] ^ 0x01,
                ] {
                    let mut n = lit.to_vec();
                    n[i] = c;
                    names.push(n);
                }
            }
            names.push(lit[..lit.len() - 1].to_vec());
            names.push([lit, b"s"].concat());
            for name in names {
                for tail in 0..10 {
                    let mut b = b";".to_vec();
                    b.extend_from_slice(&name);
                    b.extend(std::iter::repeat_n(b'x', tail));
                    assert_eq!(
                        want.is_at(&b, 1, name.len()),
                        token_is(&name, want.name),
                        "{} {:?}",
                        want.name,
                        String::from_utf8_lossy(&b)
                    );
                    cases += 1;
                }
            }
        }
        assert!(cases > 1000);
    }

    /// The fast scan agrees with the exact one wherever it answers: every single-byte
    /// insertion of a separator, blank, quote, bracket, control or non-ASCII byte into
    /// sections of every length around the sixteen-byte blocks.
    #[test]
    fn fast_split_agrees_with_exact_split() {
        let bases = [
            ";tag=gnqRf3TwPk",
            ";rport;branch=z9hG4bKPjq3Xs7w0pNQ2fV1a8;received=[2001:db8::1]",
            r#";expires=3600;+sip.instance="<urn:uuid:0000-AABB>";reg-id=1 , <sip:b>"#,
            ";lr;x=\"a\\\"b\";y",
        ];
        let mut answered = 0;
        for base in bases {
            for cut in 1..=base.len() {
                let base = &base[..cut];
                for at in 0..=base.len() {
                    for ins in [
                        "", ";", "=", " ", "\t", "\"", ":", "[", ",", "\x01", "é", "a", "-", ".",
                        "~", "%", "/",
                    ] {
                        let s = format!("{}{ins}{}", &base[..at], &base[at..]);
                        let Some(fast) = Params::split_capture_fast(&s, &[TAG, EXPIRES]) else {
                            continue;
                        };
                        let exact = Params::split_capture_exact(&s, &[TAG, EXPIRES]);
                        assert_eq!(Ok(fast), exact, "{s:?}");
                        answered += 1;
                    }
                }
            }
        }
        assert!(answered > 1000, "{answered}");
    }

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
