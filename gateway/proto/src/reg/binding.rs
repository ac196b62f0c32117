//! One binding's compact state, its REGISTER request, and what a response means for it.
//!
//! [`Binding`] is what the engine keeps per SIP account between refreshes: its own strings in
//! one allocation, the digest nonces, the index of its interned site (upstream address,
//! domain, outbound proxy), one timer handle and a few counters.
//! Requests are printed from it on demand; no message outlives its transaction.

use bytes::Bytes;

use crate::msg::{decimal_bytes, CleanRequest, HeaderName, Message, Method};
use crate::rng::{CoreRng, BRANCH_MAGIC};
use crate::timer::TimerId;
use crate::txn::Transport;

use super::digest::{self, Auth};
use super::peers::{PeerIdx, Site, SiteRef};
use super::strings::Packed;
use super::{BindingConfig, BindingError, BindingField, BindingId, BindingPhase, RegConfig};

// Domain and outbound proxy are not here: many bindings share them, so they live in the
// interned [`Site`].
pub(crate) const USER: usize = 0;
pub(crate) const AUTH_USER: usize = 1;
pub(crate) const PASSWORD: usize = 2;
pub(crate) const TOKEN: usize = 3;
pub(crate) const CALL_ID: usize = 4;
pub(crate) const TAG: usize = 5;
/// A previous contact token still to be removed upstream (empty normally): after the token
/// changed, the next REGISTER carries the old Contact with `expires=0` beside the new one.
pub(crate) const OLD_TOKEN: usize = 6;
/// Number of packed fields.
pub(crate) const FIELDS: usize = 7;
/// Fields that come from the configuration (compared to detect a change).
pub(crate) const CONFIG_FIELDS: usize = 4;

/// Flag: the binding waits in the send queue.
pub(crate) const QUEUED: u8 = 1;
/// Flag: removal was asked while a REGISTER was in flight.
pub(crate) const REMOVING: u8 = 2;
/// Flag: the configuration changed while a REGISTER was in flight; start over after it.
pub(crate) const RESTART: u8 = 4;
/// Flag: a REGISTER with a non-zero expiry was sent, so the upstream may hold a binding.
pub(crate) const MAYBE_BOUND: u8 = 8;
/// Flag: a REGISTER transaction of this binding is live (the engine's `in_flight` map
/// knows which).
pub(crate) const IN_FLIGHT: u8 = 16;

/// Per-binding state; see the module documentation.
#[derive(Debug)]
pub(crate) struct Binding {
    /// user, auth user, password, token, Call-ID, From tag, old token.
    pub(crate) strings: Packed<FIELDS>,
    pub(crate) auth: Auth,
    /// The interned site: upstream address, domain, outbound proxy.
    pub(crate) upstream: PeerIdx,
    /// The refresh or retry deadline.
    pub(crate) timer: Option<TimerId>,
    pub(crate) cseq: u32,
    /// Expiry asked for (the configured one, raised by 423).
    pub(crate) expires: u32,
    /// Expiry last granted.
    pub(crate) granted: u32,
    pub(crate) last_status: u16,
    pub(crate) attempt: u16,
    pub(crate) phase: BindingPhase,
    pub(crate) flags: u8,
}

/// Characters RFC 3261 allows unescaped in a URI user part (unreserved, user-unreserved)
/// plus `%` for escapes.
fn is_user_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.!~*'()%&=+$,;?/".contains(&b)
}

/// `host[:port]` with a DNS name, IPv4 or bracketed IPv6 host.
fn is_host_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.:[]".contains(&b)
}

fn check(ok: bool, field: BindingField) -> Result<(), BindingError> {
    if ok {
        Ok(())
    } else {
        Err(BindingError::InvalidField(field))
    }
}

fn charset(s: &str, max: usize, allowed: fn(u8) -> bool) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(allowed)
}

/// The contact token a shell derives from the binding id (the daemon does): 16 lowercase
/// hex digits. Such a token is stored as nothing and rebuilt on use, 16 bytes less per
/// binding.
fn id_token(id: BindingId) -> String {
    format!("{:016x}", id.0)
}

/// [`id_token`] written into `buf`, for the paths that run per REGISTER and per response.
fn id_token_in(id: BindingId, buf: &mut [u8; 16]) -> &str {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, d) in buf.iter_mut().enumerate() {
        *d = DIGITS[((id.0 >> (60 - 4 * i)) & 15) as usize];
    }
    // Only ASCII hex digits were written.
    std::str::from_utf8(buf).unwrap_or("")
}

/// Checks a configuration and packs its own strings with the binding's Call-ID and tag;
/// returns them with the site to intern.
pub(crate) fn pack(
    id: BindingId,
    cfg: &BindingConfig,
    reg: &RegConfig,
    call_id: &str,
    tag: &str,
    old_token: &str,
) -> Result<(Packed<FIELDS>, Site), BindingError> {
    let (strings, site) = pack_ref(id, cfg, reg, call_id, tag, old_token)?;
    Ok((strings, site.to_site()))
}

/// [`pack`] with the site borrowed from `cfg`: [`super::peers::Peers::intern_ref`] copies
/// it only when it is new, so adding a binding to a known site allocates nothing for it.
pub(crate) fn pack_ref<'c>(
    id: BindingId,
    cfg: &'c BindingConfig,
    reg: &RegConfig,
    call_id: &str,
    tag: &str,
    old_token: &str,
) -> Result<(Packed<FIELDS>, SiteRef<'c>), BindingError> {
    use BindingField::*;
    check(charset(&cfg.user, 128, is_user_char), User)?;
    check(charset(&cfg.domain, 260, is_host_char), Domain)?;
    let auth_user = cfg.auth_user.as_deref().unwrap_or(&cfg.user);
    let printable = |s: &str| s.bytes().all(|b| b >= 0x20 && b != 0x7f);
    check(
        !auth_user.is_empty() && auth_user.len() <= 128 && printable(auth_user),
        AuthUser,
    )?;
    let pw = cfg.password.expose();
    check(
        pw.len() <= 256 && !pw.contains(['\r', '\n', '\0']),
        Password,
    )?;
    let proxy = cfg.outbound_proxy.as_deref().unwrap_or("");
    check(
        proxy.is_empty() || charset(proxy, 260, is_host_char),
        OutboundProxy,
    )?;
    check(cfg.expires > 0 && cfg.expires <= reg.max_expires, Expires)?;
    let token_char = |b: u8| b.is_ascii_alphanumeric() || b"-_.!~*'".contains(&b);
    check(charset(&cfg.contact_token, 64, token_char), ContactToken)?;
    // Most accounts authenticate as their user: store the auth user only when it differs
    // (read back through `Binding::auth_user`), a dozen bytes less per binding.
    let stored_auth_user = if auth_user == cfg.user { "" } else { auth_user };
    // A valid token is never empty, so "" unambiguously means the id's token.
    let stored_token = if cfg.contact_token == id_token_in(id, &mut [0; 16]) {
        ""
    } else {
        cfg.contact_token.as_str()
    };
    let strings = Packed::new([
        &cfg.user,
        stored_auth_user,
        pw,
        stored_token,
        call_id,
        tag,
        old_token,
    ])
    .map_err(|_| BindingError::InvalidField(User))?;
    let site = SiteRef {
        peer: cfg.upstream,
        domain: &cfg.domain,
        proxy,
    };
    Ok((strings, site))
}

/// Strings [`Binding::register_request`] assembles its values in, lent by the engine so that
/// their buffers are reused from one REGISTER to the next (a few hundred bytes per engine,
/// nothing per binding).
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    uri: String,
    credentials: String,
    /// Boxed: a hundred bytes the engine's other state need not carry inline.
    ha2: Box<digest::Ha2Memo>,
}

impl Binding {
    pub(crate) fn new(strings: Packed<FIELDS>, upstream: PeerIdx, expires: u32) -> Self {
        Self {
            strings,
            auth: None,
            upstream,
            timer: None,
            cseq: 0,
            expires,
            granted: 0,
            last_status: 0,
            attempt: 0,
            phase: BindingPhase::Registering,
            flags: 0,
        }
    }

    /// The contact token of this binding, `id` (see [`pack`]).
    pub(crate) fn token(&self, id: BindingId) -> std::borrow::Cow<'_, str> {
        match self.strings.get(TOKEN) {
            "" => id_token(id).into(),
            t => t.into(),
        }
    }

    /// [`Self::token`] without allocating: an id's token is written into `buf`.
    pub(crate) fn token_in<'a>(&'a self, id: BindingId, buf: &'a mut [u8; 16]) -> &'a str {
        match self.strings.get(TOKEN) {
            "" => id_token_in(id, buf),
            t => t,
        }
    }

    /// The upstream accepted a REGISTER that carried the old token with `expires=0`.
    pub(crate) fn clear_old_token(&mut self) {
        if self.strings.get(OLD_TOKEN).is_empty() {
            return;
        }
        let s = &self.strings;
        let fields: [&str; FIELDS] =
            std::array::from_fn(|i| if i == OLD_TOKEN { "" } else { s.get(i) });
        if let Ok(p) = Packed::new(fields) {
            self.strings = p;
        }
    }

    /// The next REGISTER (Expires: 0 when `unregister`): next CSeq, fresh branch, digest
    /// credentials for every known protection space. Returns the printed request and its
    /// branch, which is all the transaction layer needs of it (it never reads it back).
    pub(crate) fn register_request(
        &mut self,
        id: BindingId,
        site: &Site,
        reg: &RegConfig,
        rng: &mut CoreRng,
        unregister: bool,
        scratch: &mut Scratch,
    ) -> (Bytes, Box<str>) {
        // RFC 3261 §8.1.1.5: CSeq stays below 2^31.
        self.cseq = if self.cseq >= (1 << 31) - 1 {
            1
        } else {
            self.cseq + 1
        };
        let expires = if unregister { 0 } else { self.expires };
        let upstream = site.peer;
        let domain = site.domain.as_bytes();
        // Every line is written straight into the request's buffer from its parts: the
        // REGISTER path runs once per binding per refresh (twice with a challenge), and
        // assembling each value in a string to copy it again, or `format!`, stood out in its
        // profile. The engine lends the URI and credentials strings, so a REGISTER allocates
        // only its buffer and its branch.
        let Scratch {
            uri,
            credentials,
            ha2,
        } = scratch;
        uri.clear();
        credentials.clear();
        uri.push_str("sip:");
        uri.push_str(&site.domain);
        let transport: &[u8] = match upstream.transport {
            Transport::Tcp => b"tcp",
            Transport::Tls => b"tls",
            _ => b"udp",
        };
        // `pack` stores the auth user only when it differs from the user.
        let auth_user = match self.strings.get(AUTH_USER) {
            "" => self.strings.get(USER),
            a => a,
        };
        // Before the branch is drawn, as always, so the random stream stays the same.
        let mut ends = smallvec::SmallVec::new();
        if self.auth.is_some() {
            digest::authorize(
                &mut self.auth,
                &site.domain,
                rng,
                auth_user,
                self.strings.get(PASSWORD),
                "REGISTER",
                uri,
                ha2,
                credentials,
                &mut ends,
            );
        }
        let s = &self.strings;
        let local = reg.local_addr.as_bytes();
        // Room for the request with its credentials, so the buffer is never regrown.
        let capacity = 512 + credentials.len();
        let mut p = CleanRequest::new(Method::Register.as_str(), uri, capacity);
        let mut branch = String::with_capacity(BRANCH_MAGIC.len() + 16);
        rng.push_branch(&mut branch);
        p.header(
            &HeaderName::Via,
            [
                b"SIP/2.0/",
                upstream.transport.via_token().as_bytes(),
                b" ",
                local,
                b";branch=",
                branch.as_bytes(),
                b";rport",
            ],
        );
        p.header(&HeaderName::MaxForwards, [b"70"]);
        let user = s.get(USER).as_bytes();
        let tag = s.get(TAG).as_bytes();
        p.header(
            &HeaderName::From,
            [b"<sip:", user, b"@", domain, b">;tag=", tag],
        );
        p.header(&HeaderName::To, [b"<sip:", user, b"@", domain, b">"]);
        p.header(&HeaderName::CallId, [s.get(CALL_ID).as_bytes()]);
        p.header(
            &HeaderName::CSeq,
            [
                decimal_bytes(&mut [0; 20], u64::from(self.cseq)),
                b" REGISTER",
            ],
        );
        let proxy = site.proxy.as_bytes();
        if !proxy.is_empty() {
            p.header(&HeaderName::Route, [b"<sip:", proxy, b";lr>"]);
        }
        // The expiry is printed twice (Contact, Expires): its digits are made once.
        let mut digits = [0; 20];
        let expires_text = decimal_bytes(&mut digits, u64::from(expires));
        let mut token = [0; 16];
        let contact = |p: &mut CleanRequest, token: &[u8], expires: &[u8]| {
            p.header(
                &HeaderName::Contact,
                [
                    b"<sip:",
                    token,
                    b"@",
                    local,
                    b";transport=",
                    transport,
                    b">;expires=",
                    expires,
                ],
            );
        };
        contact(
            &mut p,
            self.token_in(id, &mut token).as_bytes(),
            expires_text,
        );
        let old = s.get(OLD_TOKEN).as_bytes();
        if !old.is_empty() {
            contact(&mut p, old, b"0");
        }
        p.header(&HeaderName::Expires, [expires_text]);
        let mut from = 0;
        for &(kind, end) in &ends {
            let name = match kind {
                crate::auth::ChallengeKind::Www => HeaderName::Authorization,
                crate::auth::ChallengeKind::Proxy => HeaderName::ProxyAuthorization,
            };
            p.header(&name, [&credentials.as_bytes()[from..end]]);
            from = end;
        }
        if let Some(ua) = &reg.user_agent {
            // Configured text: printable, but may end in a space.
            p.header_sanitized(&HeaderName::UserAgent, ua);
        }
        (p.finish(), branch.into_boxed_str())
    }
}

/// The expiry a 2xx grants our Contact: its `expires` parameter, else the Expires header,
/// else what we asked for. `0` when the 2xx lists contacts but not ours (or with expiry 0).
pub(crate) fn granted_expiry(response: &Message, token: &str, asked: u32) -> u32 {
    let header = response.expires().ok().flatten();
    // Every URI checked, as before lazy URIs: a 2xx with a malformed Contact counts as
    // listing no usable contacts. Each URI is parsed once, here, rather than once by
    // `contacts_checked` and again to find ours: the values' syntax and then every URI
    // being valid is exactly what `contacts_checked` requires.
    let Ok(contacts) = response.contacts() else {
        return header.unwrap_or(asked);
    };
    let list = contacts.as_slice();
    if list.is_empty() {
        return header.unwrap_or(asked);
    }
    let mut ours = None;
    for c in list {
        let Ok(uri) = c.uri() else {
            return header.unwrap_or(asked);
        };
        if ours.is_none() && uri.user_raw() == Some(token) {
            ours = Some(c);
        }
    }
    ours.map_or(0, |c| {
        c.expires().ok().flatten().or(header).unwrap_or(asked)
    })
}

/// The seconds of a Retry-After header (`120`, `120 (comment);duration=60`).
pub(crate) fn retry_after(response: &Message) -> Option<u32> {
    let v = response.header(HeaderName::RetryAfter)?;
    let digits = v.trim_start().split(|c: char| !c.is_ascii_digit()).next()?;
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn::Peer;

    fn resp(headers: &str) -> Message {
        let text = format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nFrom: <sip:a@d>;tag=1\r\n\
             To: <sip:a@d>;tag=2\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\n{headers}Content-Length: 0\r\n\r\n"
        );
        Message::parse(Bytes::from(text)).unwrap()
    }

    #[test]
    fn granted_expiry_prefers_our_contact() {
        let ours =
            "Contact: <sip:other@gw>;expires=100, <sip:tok@gw;transport=udp>;expires=600\r\n";
        assert_eq!(
            granted_expiry(&resp(&format!("{ours}Expires: 900\r\n")), "tok", 3600),
            600
        );
        assert_eq!(
            granted_expiry(
                &resp("Contact: <sip:tok@gw>\r\nExpires: 900\r\n"),
                "tok",
                3600
            ),
            900
        );
        assert_eq!(granted_expiry(&resp("Expires: 120\r\n"), "tok", 3600), 120);
        assert_eq!(granted_expiry(&resp(""), "tok", 3600), 3600);
        assert_eq!(
            granted_expiry(&resp("Contact: <sip:x@gw>;expires=5\r\n"), "tok", 3600),
            0
        );
    }

    /// A malformed Contact anywhere (its syntax or its URI, before or after ours) means
    /// no usable contacts: the Expires header, else what we asked for.
    #[test]
    fn granted_expiry_with_a_malformed_contact() {
        for bad in [
            "Contact: <sip:tok@gw>;expires=600, <sip:a@[::1>\r\n",
            "Contact: <sip:a@[::1>, <sip:tok@gw>;expires=600\r\n",
            "Contact: <sip:tok@gw>;expires=600\r\nContact: <sip:a@gw\r\n",
            "Contact: <sip:tok@gw>;expires=600, *\r\n",
            "Contact: <sip:tok@gw>;expires=600\r\nContact: *\r\n",
            "Contact: <sip:tok@gw:x>;expires=600\r\n",
        ] {
            let r = resp(&format!("{bad}Expires: 900\r\n"));
            assert!(r.contacts_checked().is_err(), "{bad}");
            assert_eq!(granted_expiry(&r, "tok", 3600), 900, "{bad}");
            assert_eq!(granted_expiry(&resp(bad), "tok", 3600), 3600, "{bad}");
        }
        // `*` alone lists no contacts.
        assert_eq!(granted_expiry(&resp("Contact: *\r\n"), "tok", 3600), 3600);
        // Ours is the first listed with our user, even if a later one also is.
        let two = "Contact: <sip:tok@gw>;expires=60, <sip:tok@gw2>;expires=70\r\n";
        assert_eq!(granted_expiry(&resp(two), "tok", 3600), 60);
    }

    #[test]
    fn shared_and_derived_strings_are_not_stored() {
        let id = BindingId(0xfeed);
        let mut cfg = BindingConfig {
            user: "alice".into(),
            domain: "example.org".into(),
            auth_user: None,
            password: crate::auth::Password::new("pw"),
            outbound_proxy: Some("sbc.example.org:5061".into()),
            upstream: Peer::udp("192.0.2.1:5060".parse().unwrap()),
            expires: 600,
            contact_token: "000000000000feed".into(),
        };
        let reg = RegConfig::new("gw.example.net:5060");
        let (strings, site) = pack(id, &cfg, &reg, "cid", "tag", "").unwrap();
        // Domain and proxy went to the site; the token is the id's and the auth user the
        // user, so neither is stored.
        assert_eq!(strings.heap_len(), "alice".len() + 2 + 3 + 3);
        assert_eq!(
            (&*site.domain, &*site.proxy),
            ("example.org", "sbc.example.org:5061")
        );
        let b = Binding::new(strings, PeerIdx::for_test(0), 600);
        assert_eq!(b.token(id), "000000000000feed");
        assert_eq!(b.token_in(id, &mut [0; 16]), "000000000000feed");
        for n in [0, 1, 0xfeed, u64::MAX, 0x0123_4567_89ab_cdef] {
            assert_eq!(
                id_token_in(BindingId(n), &mut [0; 16]),
                id_token(BindingId(n))
            );
        }
        cfg.contact_token = "k7Qd2".into();
        let (strings, _) = pack(id, &cfg, &reg, "cid", "tag", "").unwrap();
        let b = Binding::new(strings, PeerIdx::for_test(0), 600);
        assert_eq!(b.token(id), "k7Qd2");
    }

    /// Every REGISTER of `cfg`'s binding in `cases` (unregister flag, challenges to take
    /// before it), printed with a fixed seed.
    fn requests(
        cfg: &BindingConfig,
        reg: &RegConfig,
        old_token: &str,
        cases: &[(bool, &[(crate::auth::ChallengeKind, &str)])],
    ) -> Vec<String> {
        let id = BindingId(0xfeed);
        let (strings, site) = pack(id, cfg, reg, "cid0123456789", "tag42", old_token).unwrap();
        let mut b = Binding::new(strings, PeerIdx::for_test(0), cfg.expires);
        let mut rng = CoreRng::from_seed(3);
        let mut scratch = Scratch::default();
        cases
            .iter()
            .map(|&(unregister, challenges)| {
                for &(kind, c) in challenges {
                    digest::handle_challenge(&mut b.auth, &site.domain, kind, [c]).unwrap();
                }
                let (bytes, branch) =
                    b.register_request(id, &site, reg, &mut rng, unregister, &mut scratch);
                let text = String::from_utf8(bytes.to_vec()).unwrap();
                assert!(text.contains(&*branch));
                text
            })
            .collect()
    }

    #[test]
    fn register_request_bytes() {
        use crate::auth::ChallengeKind::{Proxy, Www};
        // Printed by the Printer-based builder this replaced, same seed: the requests must
        // stay byte for byte what they were.
        let mut cfg = BindingConfig {
            user: "alice".into(),
            domain: "example.org".into(),
            auth_user: None,
            password: crate::auth::Password::new("pw"),
            outbound_proxy: None,
            upstream: Peer::udp("192.0.2.1:5060".parse().unwrap()),
            expires: 600,
            contact_token: "000000000000feed".into(),
        };
        let reg = RegConfig::new("gw.example.net:5060");
        let www = "Digest realm=\"example.org\", nonce=\"n0nce\", qop=\"auth\"";
        let got = requests(&cfg, &reg, "", &[(false, &[]), (false, &[(Www, www)])]);
        let expected = [
            concat!(
                "REGISTER sip:example.org SIP/2.0\r\n",
                "Via: SIP/2.0/UDP gw.example.net:5060;branch=z9hG4bKdlOvbQ7y69cmfkjK;rport\r\n",
                "Max-Forwards: 70\r\n",
                "From: <sip:alice@example.org>;tag=tag42\r\n",
                "To: <sip:alice@example.org>\r\n",
                "Call-ID: cid0123456789\r\n",
                "CSeq: 1 REGISTER\r\n",
                "Contact: <sip:000000000000feed@gw.example.net:5060;transport=udp>;expires=600\r\n",
                "Expires: 600\r\n",
                "Content-Length: 0\r\n",
                "\r\n",
            ),
            concat!(
                "REGISTER sip:example.org SIP/2.0\r\n",
                "Via: SIP/2.0/UDP gw.example.net:5060;branch=z9hG4bK0A6aMdZ5I9Rwj2Pp;rport\r\n",
                "Max-Forwards: 70\r\n",
                "From: <sip:alice@example.org>;tag=tag42\r\n",
                "To: <sip:alice@example.org>\r\n",
                "Call-ID: cid0123456789\r\n",
                "CSeq: 2 REGISTER\r\n",
                "Contact: <sip:000000000000feed@gw.example.net:5060;transport=udp>;expires=600\r\n",
                "Expires: 600\r\n",
                "Authorization: Digest username=\"alice\", realm=\"example.org\", nonce=\"n0nce\", uri=\"sip:example.org\", response=\"33e2ef70ae1355951bc205645e25514a\", cnonce=\"0KEdqTFZjKwnIqMzMSpVVRfy\", qop=auth, nc=00000001\r\n",
                "Content-Length: 0\r\n",
                "\r\n",
            ),
        ];
        assert_eq!(got, expected);
        cfg.outbound_proxy = Some("sbc.example.org:5061".into());
        cfg.upstream = Peer {
            transport: Transport::Tcp,
            addr: "192.0.2.1:5061".parse().unwrap(),
        };
        cfg.contact_token = "k7Qd2".into();
        cfg.auth_user = Some("alice-auth".into());
        cfg.expires = 3600;
        let mut reg = RegConfig::new("[2001:db8::1]:5070");
        reg.user_agent = Some("Vigil/1.0 ".into());
        let proxy =
            "Digest realm=\"sbc\", nonce=\"pn\", algorithm=MD5-sess, qop=\"auth\", opaque=\"op\"";
        let www2 = "Digest realm=\"other\", nonce=\"wn\", algorithm=SHA-256";
        let got = requests(
            &cfg,
            &reg,
            "old7",
            &[
                (false, &[(Proxy, proxy)]),
                (false, &[(Www, www2)]),
                (true, &[]),
            ],
        );
        let expected = [
            concat!(
                "REGISTER sip:example.org SIP/2.0\r\n",
                "Via: SIP/2.0/TCP [2001:db8::1]:5070;branch=z9hG4bKwnIqMzMSpVVRfyHj;rport\r\n",
                "Max-Forwards: 70\r\n",
                "From: <sip:alice@example.org>;tag=tag42\r\n",
                "To: <sip:alice@example.org>\r\n",
                "Call-ID: cid0123456789\r\n",
                "CSeq: 1 REGISTER\r\n",
                "Route: <sip:sbc.example.org:5061;lr>\r\n",
                "Contact: <sip:k7Qd2@[2001:db8::1]:5070;transport=tcp>;expires=3600\r\n",
                "Contact: <sip:old7@[2001:db8::1]:5070;transport=tcp>;expires=0\r\n",
                "Expires: 3600\r\n",
                "Proxy-Authorization: Digest username=\"alice-auth\", realm=\"sbc\", nonce=\"pn\", uri=\"sip:example.org\", response=\"e4fbabfd4b5acd30abead0fef715ac8b\", algorithm=MD5-sess, cnonce=\"dlOvbQ7y69cmfkjKCMQT0KEd\", opaque=\"op\", qop=auth, nc=00000001\r\n",
                "User-Agent: Vigil/1.0\r\n",
                "Content-Length: 0\r\n",
                "\r\n",
            ),
            concat!(
                "REGISTER sip:example.org SIP/2.0\r\n",
                "Via: SIP/2.0/TCP [2001:db8::1]:5070;branch=z9hG4bK0A6aMdZ5I9Rwj2Pp;rport\r\n",
                "Max-Forwards: 70\r\n",
                "From: <sip:alice@example.org>;tag=tag42\r\n",
                "To: <sip:alice@example.org>\r\n",
                "Call-ID: cid0123456789\r\n",
                "CSeq: 2 REGISTER\r\n",
                "Route: <sip:sbc.example.org:5061;lr>\r\n",
                "Contact: <sip:k7Qd2@[2001:db8::1]:5070;transport=tcp>;expires=3600\r\n",
                "Contact: <sip:old7@[2001:db8::1]:5070;transport=tcp>;expires=0\r\n",
                "Expires: 3600\r\n",
                "Proxy-Authorization: Digest username=\"alice-auth\", realm=\"sbc\", nonce=\"pn\", uri=\"sip:example.org\", response=\"368db99e81cc2d456c8d574f669ea62a\", algorithm=MD5-sess, cnonce=\"dlOvbQ7y69cmfkjKCMQT0KEd\", opaque=\"op\", qop=auth, nc=00000002\r\n",
                "Authorization: Digest username=\"alice-auth\", realm=\"other\", nonce=\"wn\", uri=\"sip:example.org\", response=\"9178209c1be0ebf634dce2cc2162c45a82754b075d9665c4ee5fe3285756db46\", algorithm=SHA-256\r\n",
                "User-Agent: Vigil/1.0\r\n",
                "Content-Length: 0\r\n",
                "\r\n",
            ),
            concat!(
                "REGISTER sip:example.org SIP/2.0\r\n",
                "Via: SIP/2.0/TCP [2001:db8::1]:5070;branch=z9hG4bKkXQavyN1QgEPNSGt;rport\r\n",
                "Max-Forwards: 70\r\n",
                "From: <sip:alice@example.org>;tag=tag42\r\n",
                "To: <sip:alice@example.org>\r\n",
                "Call-ID: cid0123456789\r\n",
                "CSeq: 3 REGISTER\r\n",
                "Route: <sip:sbc.example.org:5061;lr>\r\n",
                "Contact: <sip:k7Qd2@[2001:db8::1]:5070;transport=tcp>;expires=0\r\n",
                "Contact: <sip:old7@[2001:db8::1]:5070;transport=tcp>;expires=0\r\n",
                "Expires: 0\r\n",
                "Proxy-Authorization: Digest username=\"alice-auth\", realm=\"sbc\", nonce=\"pn\", uri=\"sip:example.org\", response=\"c44b436b4e377a6b5805ed7a3ad1c3f4\", algorithm=MD5-sess, cnonce=\"dlOvbQ7y69cmfkjKCMQT0KEd\", opaque=\"op\", qop=auth, nc=00000003\r\n",
                "Authorization: Digest username=\"alice-auth\", realm=\"other\", nonce=\"wn\", uri=\"sip:example.org\", response=\"9178209c1be0ebf634dce2cc2162c45a82754b075d9665c4ee5fe3285756db46\", algorithm=SHA-256\r\n",
                "User-Agent: Vigil/1.0\r\n",
                "Content-Length: 0\r\n",
                "\r\n",
            ),
        ];
        assert_eq!(got, expected);
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(retry_after(&resp("Retry-After: 120\r\n")), Some(120));
        assert_eq!(
            retry_after(&resp("Retry-After: 30 (busy);duration=5\r\n")),
            Some(30)
        );
        assert_eq!(retry_after(&resp("Retry-After: soon\r\n")), None);
        assert_eq!(retry_after(&resp("")), None);
    }
}
