//! The Via header value (RFC 3261 §20.42): `SIP/2.0/UDP host:port;branch=...;received=...`.
//!
//! LWS is allowed around `/` and `:` and before parameters (RFC 4475 §3.1.1.1), transports
//! are open-ended tokens (§3.1.1.10), and one line may carry several comma-separated values.

use super::params::{Params, BRANCH};
use super::scan::{alnum_run, is, is_lws, skip_lws, span_of, trim_lws, HOST, TOKEN};
use super::ValueError;

/// RFC 3261 §8.1.1.7: branches starting with this cookie are globally unique.
pub const BRANCH_MAGIC_COOKIE: &str = "z9hG4bK";

/// One Via value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Via<'a> {
    protocol: &'a str,
    version: &'a str,
    transport: &'a str,
    host: &'a str,
    port: Option<u16>,
    params: Params<'a>,
    branch: Option<&'a str>,
}

fn token(s: &str) -> Result<(&str, &str), ValueError> {
    let end = span_of(s.as_bytes(), TOKEN);
    if end == 0 {
        return Err(ValueError::BadSentProtocol);
    }
    Ok((&s[..end], &s[end..]))
}

fn slash(s: &str) -> Result<&str, ValueError> {
    skip_lws(s)
        .strip_prefix('/')
        .map(skip_lws)
        .ok_or(ValueError::BadSentProtocol)
}

impl<'a> Via<'a> {
    /// Parses one whole Via value.
    pub fn parse(value: &'a str) -> Result<Via<'a>, ValueError> {
        let (via, rest) = Self::parse_prefix(trim_lws(value))?;
        if rest.is_empty() {
            Ok(via)
        } else {
            Err(ValueError::TrailingGarbage)
        }
    }

    /// Parses one Via value off the front of `v` (no leading LWS); the rest is empty or
    /// starts at the `,` before the next value.
    pub(crate) fn parse_prefix(v: &'a str) -> Result<(Via<'a>, &'a str), ValueError> {
        if v.is_empty() || v.starts_with(',') {
            return Err(ValueError::EmptyElement);
        }
        // Nearly every Via starts `SIP/2.0/`: the general path below would find the same
        // two tokens (LWS may still follow the second slash).
        let (protocol, version, r) = match v.get(..8) {
            Some("SIP/2.0/") => (&v[..3], &v[4..7], skip_lws(&v[8..])),
            _ => {
                let (protocol, r) = token(v)?;
                let (version, r) = token(slash(r)?)?;
                (protocol, version, slash(r)?)
            }
        };
        let (transport, r) = token(r)?;
        let host_start = skip_lws(r);
        if host_start.len() == r.len() {
            return Err(ValueError::BadSentProtocol);
        }
        let r = host_start;
        let host_end = if r.starts_with('[') {
            r.find(']').map(|i| i + 1).ok_or(ValueError::BadHost)?
        } else {
            // Alphanumerics, `-`, `.` and `_`: one table load per byte.
            alnum_run(r.as_bytes(), |c| is(c, HOST))
        };
        let host = &r[..host_end];
        if host.is_empty() || (host.starts_with('[') && host.len() < 4) {
            return Err(ValueError::BadHost);
        }
        if r[host_end..]
            .bytes()
            .next()
            .is_some_and(|b| !is_lws(b) && b != b':' && b != b';')
        {
            return Err(ValueError::BadHost);
        }
        let mut r = skip_lws(&r[host_end..]);
        let mut port = None;
        if let Some(p) = r.strip_prefix(':') {
            let p = skip_lws(p);
            // One pass over the digits; the value saturates just above the largest port.
            let mut n: u32 = 0;
            let mut end = 0;
            for &b in p.as_bytes() {
                let d = b.wrapping_sub(b'0');
                if d > 9 {
                    break;
                }
                n = (n * 10 + u32::from(d)).min(1 << 16);
                end += 1;
            }
            if end == 0 {
                return Err(ValueError::BadPort);
            }
            port = Some(u16::try_from(n).map_err(|_| ValueError::BadPort)?);
            r = &p[end..];
        }
        let (params, rest, [branch]) = Params::split_capture(r, &[BRANCH])?;
        Ok((
            Via {
                protocol,
                version,
                transport,
                host,
                port,
                params,
                branch: branch.flatten(),
            },
            rest,
        ))
    }

    /// `SIP` in `SIP/2.0/UDP`.
    pub fn protocol(&self) -> &'a str {
        self.protocol
    }
    /// `2.0` in `SIP/2.0/UDP`.
    pub fn version(&self) -> &'a str {
        self.version
    }
    /// The transport token as written (`UDP`, `TCP`, `TLS`, `SCTP`, `WS`, or unknown).
    pub fn transport(&self) -> &'a str {
        self.transport
    }
    /// The sent-by host (IPv6 references keep their brackets).
    pub fn host(&self) -> &'a str {
        self.host
    }
    pub fn port(&self) -> Option<u16> {
        self.port
    }
    pub fn sent_by(&self) -> (&'a str, Option<u16>) {
        (self.host, self.port)
    }
    pub fn params(&self) -> Params<'a> {
        self.params
    }
    /// Raw value of a Via parameter; `Some(None)` when present without value.
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        self.params.get(name)
    }
    pub fn branch(&self) -> Option<&'a str> {
        self.branch
    }
    /// Whether the branch carries the RFC 3261 magic cookie and something after it
    /// (RFC 4475 §3.2.1: a bare cookie is not a transaction identifier).
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch().is_some_and(|b| {
            b.len() > BRANCH_MAGIC_COOKIE.len() && b.starts_with(BRANCH_MAGIC_COOKIE)
        })
    }
    pub fn received(&self) -> Option<&'a str> {
        self.params.get("received").flatten()
    }
    /// `None`: no rport; `Some(None)`: `;rport` requested; `Some(Some(p))`: filled in.
    /// A value that is not a port counts as requested-but-empty.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.params
            .get("rport")
            .map(|v| v.and_then(|p| p.parse().ok()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_and_spaced() {
        let v =
            Via::parse("SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw").expect("wsinv");
        assert_eq!(
            (v.protocol(), v.version(), v.transport()),
            ("SIP", "2.0", "UDP")
        );
        assert_eq!(v.sent_by(), ("192.0.2.2", None));
        assert_eq!(v.branch(), Some("390skdjuw"));
        assert!(!v.has_rfc3261_branch());
        let v = Via::parse(
            "SIP  / 2.0  / TCP     spindle.example.com   ;\r\n  branch  =   z9hG4bK9ikj8",
        )
        .expect("wsinv v:");
        assert_eq!(v.host(), "spindle.example.com");
        assert_eq!(v.branch(), Some("z9hG4bK9ikj8"));
        assert!(v.has_rfc3261_branch());
    }

    #[test]
    fn ports_rport_received() {
        let v =
            Via::parse("SIP/2.0/UDP [2001:db8::9]:5070;branch=z9hG4bKx;rport;received=192.0.2.1")
                .expect("ipv6");
        assert_eq!(v.sent_by(), ("[2001:db8::9]", Some(5070)));
        assert_eq!(v.rport(), Some(None));
        assert_eq!(v.received(), Some("192.0.2.1"));
        let v = Via::parse("SIP/2.0/TCP h:5060;rport=1234").expect("rport");
        assert_eq!(v.rport(), Some(Some(1234)));
        assert_eq!(
            Via::parse("SIP/2.0/UDP h;branch=z9hG4bK").map(|v| v.has_rfc3261_branch()),
            Ok(false)
        );
    }

    #[test]
    fn rejects() {
        assert_eq!(
            Via::parse("SIP/2.0/UDP 192.0.2.15;;").err(),
            Some(ValueError::BadParam)
        );
        assert_eq!(Via::parse(";").err(), Some(ValueError::BadSentProtocol));
        assert_eq!(Via::parse("").err(), Some(ValueError::EmptyElement));
        assert_eq!(
            Via::parse("SIP/2.0 host").err(),
            Some(ValueError::BadSentProtocol)
        );
        assert_eq!(
            Via::parse("SIP/2.0/UDPhost").err(),
            Some(ValueError::BadSentProtocol)
        );
        assert_eq!(
            Via::parse("SIP/2.0/UDP host:70000").err(),
            Some(ValueError::BadPort)
        );
        assert_eq!(
            Via::parse("SIP/2.0/UDP host junk").err(),
            Some(ValueError::TrailingGarbage)
        );
        assert_eq!(
            Via::parse("SIP/2.0/UDP ho$t").err(),
            Some(ValueError::BadHost)
        );
    }
}
