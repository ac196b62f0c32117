//! Per-binding digest state, compact enough to keep for a million bindings.
//!
//! [`crate::auth::DigestClient`] keeps whole parsed [`Challenge`]s, a cached HA1 and the
//! username per account: right for a phone with one account, several hundred bytes too many
//! for a gateway holding a million. This module keeps, per protection space, only what the
//! next request needs (realm, nonce, opaque, the `-sess` cnonce, algorithm, qop and
//! nonce-count), and reuses the `auth` module's parser, challenge choice, response formula
//! and credentials printer, so both clients compute and print identically.
//!
//! All spaces of a binding are encoded into one byte block ([`Auth`]): a boxed list of
//! structs each holding its own text would take two heap blocks per binding (about 64 + 80
//! bytes with malloc's rounding), the encoded form one (about 96). The block is decoded into
//! [`Space`]s for each operation and encoded back when something changed; that costs a few
//! small allocations per REGISTER, next to the dozens building the request itself. A realm
//! equal to the binding's domain (the usual registrar setup) is not stored but flagged, as
//! the domain is already kept once for all bindings of a site.
//!
//! The loop rules are [`crate::auth::client`]'s: credentials computed for a fresh challenge
//! get one retry; a second challenge without `stale=true` (or the same nonce again) means the
//! secret is wrong; `stale=true` earns a retry at most [`MAX_STALE`] times in a row. At most
//! one space per challenge kind is kept (a proxy's 407 and the registrar's 401): a server
//! that changes its realm replaces the old space instead of adding one.

use crate::auth::algorithm::{compute_response, userhash, ResponseInput};
use crate::auth::client::MAX_STALE;
use crate::auth::{
    parse_challenge_list, select_best, Algorithm, AlgorithmParam, ChallengeKind, Credentials, Ha1,
    NonceCount, Qop,
};
use crate::rng::CoreRng;

/// Length of generated client nonces, in token characters.
const CNONCE_LEN: usize = 24;

/// The spaces of one binding, encoded (see the module documentation); `None` until the
/// first challenge, so a binding that was never challenged pays no heap block.
pub(crate) type Auth = Option<Box<[u8]>>;

/// Encoded header of one space: kind, algorithm, qop, flags, stale streak (one byte each),
/// nc (4 bytes), then the lengths of realm, nonce, opaque and `-sess` cnonce (2 bytes each);
/// the four texts follow.
const HEADER: usize = 5 + 4 + 4 * 2;

const F_ALGORITHM_NAMED: u8 = 1;
const F_HAS_OPAQUE: u8 = 2;
const F_USERHASH: u8 = 4;
const F_USED: u8 = 8;
const F_ANSWERING: u8 = 16;
/// The realm is the binding's domain (and its stored text empty).
const F_REALM_IS_DOMAIN: u8 = 32;

/// One protection space, decoded: the nonce we answer or reuse.
#[derive(Debug, Clone, PartialEq)]
struct Space {
    realm: String,
    nonce: String,
    opaque: String,
    /// The fixed cnonce of a `-sess` algorithm (empty until the first request).
    sess_cnonce: String,
    nc: u32,
    kind: ChallengeKind,
    algorithm: Algorithm,
    qop: Option<Qop>,
    /// The challenge named its algorithm (echoed only then, as a strict server expects).
    algorithm_named: bool,
    has_opaque: bool,
    userhash: bool,
    /// Credentials for this nonce were sent at least once.
    used: bool,
    /// No request with this nonce was accepted yet.
    answering: bool,
    stale_streak: u8,
}

/// The spaces of `auth` for a binding of `domain`. The block is only ever written by
/// [`encode`], so a malformed one cannot occur; should it anyway, decoding stops there (the
/// server challenges afresh).
fn decode(auth: &Auth, domain: &str) -> Vec<Space> {
    let mut out = Vec::new();
    let mut rest: &[u8] = auth.as_deref().unwrap_or(&[]);
    while rest.len() >= HEADER {
        let (h, tail) = rest.split_at(HEADER);
        let len = |i: usize| usize::from(u16::from_le_bytes([h[9 + 2 * i], h[10 + 2 * i]]));
        let total: usize = (0..4).map(len).sum();
        let (Some(algorithm), Some(text)) =
            (Algorithm::ALL.get(usize::from(h[1])), tail.get(..total))
        else {
            break;
        };
        let mut at = 0;
        let mut field = |i: usize| {
            let f = String::from_utf8_lossy(&text[at..at + len(i)]).into_owned();
            at += len(i);
            f
        };
        let flags = h[3];
        let realm = field(0);
        out.push(Space {
            realm: if flags & F_REALM_IS_DOMAIN != 0 {
                domain.to_owned()
            } else {
                realm
            },
            nonce: field(1),
            opaque: field(2),
            sess_cnonce: field(3),
            nc: u32::from_le_bytes([h[5], h[6], h[7], h[8]]),
            kind: if h[0] == 0 {
                ChallengeKind::Www
            } else {
                ChallengeKind::Proxy
            },
            algorithm: *algorithm,
            qop: match h[2] {
                1 => Some(Qop::Auth),
                2 => Some(Qop::AuthInt),
                _ => None,
            },
            algorithm_named: flags & F_ALGORITHM_NAMED != 0,
            has_opaque: flags & F_HAS_OPAQUE != 0,
            userhash: flags & F_USERHASH != 0,
            used: flags & F_USED != 0,
            answering: flags & F_ANSWERING != 0,
            stale_streak: h[4],
        });
        rest = &tail[total..];
    }
    out
}

/// Stores `spaces` into `auth`, in place when the encoded size is unchanged (a new nc, a
/// same-length nonce): a million long-lived blocks reallocated on every refresh would leave
/// the heap fragmented.
fn store(auth: &mut Auth, spaces: &[Space], domain: &str) {
    let fresh = encode(spaces, domain);
    match (auth.as_mut(), fresh) {
        (Some(old), Some(new)) if old.len() == new.len() => old.copy_from_slice(&new),
        (_, fresh) => *auth = fresh,
    }
}

/// The block for `spaces` of a binding of `domain` (`None` for none), allocated at its exact
/// size. A text too long for its 2-byte length (64 KiB) drops its space, as an unanswerable
/// challenge.
fn encode(spaces: &[Space], domain: &str) -> Auth {
    fn stored_realm<'a>(s: &'a Space, domain: &str) -> &'a str {
        if s.realm == domain {
            ""
        } else {
            &s.realm
        }
    }
    let realm = |s| stored_realm(s, domain);
    let size = spaces
        .iter()
        .map(|s| HEADER + realm(s).len() + s.nonce.len() + s.opaque.len() + s.sess_cnonce.len())
        .sum();
    let mut out = Vec::with_capacity(size);
    for s in spaces {
        let texts = [realm(s), &s.nonce, &s.opaque, &s.sess_cnonce];
        let Ok(lens) = texts
            .iter()
            .map(|t| u16::try_from(t.len()))
            .collect::<Result<Vec<u16>, _>>()
        else {
            continue;
        };
        let algorithm = Algorithm::ALL
            .iter()
            .position(|a| *a == s.algorithm)
            .and_then(|i| u8::try_from(i).ok())
            .unwrap_or(u8::MAX);
        let flags = [
            (s.algorithm_named, F_ALGORITHM_NAMED),
            (s.has_opaque, F_HAS_OPAQUE),
            (s.userhash, F_USERHASH),
            (s.used, F_USED),
            (s.answering, F_ANSWERING),
            (s.realm == domain, F_REALM_IS_DOMAIN),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .fold(0, |acc, (_, bit)| acc | bit);
        out.push(match s.kind {
            ChallengeKind::Www => 0,
            ChallengeKind::Proxy => 1,
        });
        out.push(algorithm);
        out.push(match s.qop {
            None => 0,
            Some(Qop::Auth) => 1,
            Some(Qop::AuthInt) => 2,
        });
        out.push(flags);
        out.push(s.stale_streak);
        out.extend_from_slice(&s.nc.to_le_bytes());
        for l in lens {
            out.extend_from_slice(&l.to_le_bytes());
        }
        for t in texts {
            out.extend_from_slice(t.as_bytes());
        }
    }
    (!out.is_empty()).then(|| out.into_boxed_slice())
}

/// Why a challenge ends the registration attempt for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChallengeError {
    /// The server turned down credentials computed for its own challenge: wrong secret.
    Rejected,
    /// `stale=true` more than [`MAX_STALE`] times in a row.
    TooManyStale,
    /// No challenge we can answer (unknown scheme or algorithm, unparsable).
    NoUsable,
}

/// Handles the challenge header values of a 401 (`Www`) or 407 (`Proxy`) to a binding of
/// `domain`. On
/// `Rejected` and `TooManyStale` every nonce is forgotten (as [`crate::auth::DigestClient`]
/// does), so the next attempt, after a configuration update, starts over.
pub(crate) fn handle_challenge<'a>(
    auth: &mut Auth,
    domain: &str,
    kind: ChallengeKind,
    values: impl IntoIterator<Item = &'a str>,
) -> Result<(), ChallengeError> {
    let mut parsed = Vec::new();
    for v in values {
        if let Ok(list) = parse_challenge_list(v) {
            parsed.extend(list.into_iter().flatten());
        }
    }
    let usable = parsed.iter().filter(|c| {
        !c.realm.contains(['\r', '\n']) && !c.nonce.contains(['\r', '\n']) && c.is_usable()
    });
    let chosen = select_best(usable).ok_or(ChallengeError::NoUsable)?;
    let algorithm = chosen.algorithm().ok_or(ChallengeError::NoUsable)?;
    let qop = chosen.client_qop().ok_or(ChallengeError::NoUsable)?;
    let opaque = chosen.opaque.as_deref().unwrap_or("");
    if [&chosen.realm, &chosen.nonce, opaque]
        .iter()
        .any(|t| t.len() > usize::from(u16::MAX))
    {
        return Err(ChallengeError::NoUsable);
    }
    let mut list = decode(auth, domain);
    if kind == ChallengeKind::Www {
        // A 401 comes from beyond every proxy, so each proxy accepted what we sent it.
        for s in list.iter_mut().filter(|s| s.kind == ChallengeKind::Proxy) {
            s.answering &= !s.used;
        }
    }
    let existing = list.iter().position(|s| s.kind == kind);
    let mut stale_streak = 0;
    if let Some(cur) = existing.map(|i| &list[i]) {
        if cur.used && cur.realm == chosen.realm {
            if chosen.stale {
                stale_streak = cur.stale_streak + 1;
                if stale_streak > MAX_STALE {
                    *auth = None;
                    return Err(ChallengeError::TooManyStale);
                }
            } else if cur.answering || cur.nonce == chosen.nonce {
                *auth = None;
                return Err(ChallengeError::Rejected);
            }
        }
    }
    let space = Space {
        realm: chosen.realm.clone(),
        nonce: chosen.nonce.clone(),
        opaque: opaque.to_owned(),
        sess_cnonce: String::new(),
        nc: 0,
        kind,
        algorithm,
        qop,
        algorithm_named: chosen.algorithm.is_some(),
        has_opaque: chosen.opaque.is_some(),
        userhash: chosen.userhash,
        used: false,
        answering: true,
        stale_streak,
    };
    match existing {
        Some(i) => list[i] = space,
        None => list.push(space),
    }
    store(auth, &list, domain);
    Ok(())
}

/// A request with our credentials got a final answer other than 401/407: the nonces are
/// good for reuse.
pub(crate) fn handle_success(auth: &mut Auth, domain: &str) {
    if auth.is_none() {
        return;
    }
    let mut list = decode(auth, domain);
    for s in &mut list {
        s.answering = false;
        s.stale_streak = 0;
    }
    store(auth, &list, domain);
}

/// The credentials header values for the next request, one per space, each with the next
/// nonce-count. Empty before any challenge.
pub(crate) fn authorize(
    auth: &mut Auth,
    domain: &str,
    rng: &mut CoreRng,
    username: &str,
    password: &str,
    method: &str,
    uri: &str,
) -> Vec<(ChallengeKind, String)> {
    let mut out = Vec::new();
    if auth.is_none() {
        return out;
    }
    let mut list = decode(auth, domain);
    for s in &mut list {
        // nc wrapped: drop the credentials and let the server challenge afresh.
        let Some(nc) = s.nc.checked_add(1) else {
            continue;
        };
        let sess = s.algorithm.is_sess();
        let cnonce = if !s.sess_cnonce.is_empty() {
            Some(s.sess_cnonce.clone())
        } else if s.qop.is_some() || sess {
            let mut c = String::with_capacity(CNONCE_LEN);
            rng.push_token(&mut c, CNONCE_LEN);
            Some(c)
        } else {
            None
        };
        if sess && s.sess_cnonce.is_empty() {
            s.sess_cnonce = cnonce.clone().unwrap_or_default();
        }
        let realm = s.realm.as_str();
        // HA1 is recomputed per request (one short hash) rather than cached: caching would
        // add 32–64 password-equivalent bytes to every binding.
        let family = s.algorithm.hash();
        let hex = family.hex_joined(&[username.as_bytes(), realm.as_bytes(), password.as_bytes()]);
        let ha1 = Ha1::from_trusted_hex(family, hex);
        let nc_text = NonceCount(nc).to_string();
        let Some(response) = compute_response(&ResponseInput {
            algorithm: s.algorithm,
            ha1: &ha1,
            nonce: &s.nonce,
            method,
            uri,
            qop: s.qop,
            qop_text: None,
            nc: &nc_text,
            cnonce: cnonce.as_deref().unwrap_or(""),
            body: b"",
        }) else {
            continue;
        };
        let user = if s.userhash {
            userhash(s.algorithm.hash(), username, realm)
        } else {
            username.to_owned()
        };
        let creds = Credentials {
            username: user,
            realm: realm.to_owned(),
            nonce: s.nonce.clone(),
            uri: uri.to_owned(),
            response: response.to_string(),
            algorithm: s
                .algorithm_named
                .then_some(AlgorithmParam::Known(s.algorithm)),
            cnonce,
            opaque: s.has_opaque.then(|| s.opaque.clone()),
            qop: s.qop.map(|q| q.as_str().to_owned()),
            nc: s.qop.is_some().then_some(NonceCount(nc)),
            userhash: s.userhash,
            params: Vec::new(),
        };
        s.nc = nc;
        s.used = true;
        // Sized for a typical header, so printing it does not grow the string step by step.
        let mut text = String::with_capacity(384);
        // Writing into a String cannot fail.
        let _ = std::fmt::Write::write_fmt(&mut text, format_args!("{creds}"));
        out.push((s.kind, text));
    }
    store(auth, &list, domain);
    out
}

/// Heap blocks held (for memory reports): the one encoded block, if any.
pub(crate) fn heap_blocks(auth: &Auth) -> impl Iterator<Item = usize> + '_ {
    auth.as_ref().map(|a| a.len()).into_iter()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ChallengeKind::{Proxy, Www};

    fn auth(spaces: &mut Auth, rng: &mut CoreRng) -> Vec<(ChallengeKind, String)> {
        authorize(
            spaces,
            "r",
            rng,
            "alice",
            "pw",
            "REGISTER",
            "sip:example.org",
        )
    }

    #[test]
    fn reuses_nonce_with_increasing_nc_and_stops_loops() {
        let mut rng = CoreRng::from_seed(1);
        let mut s: Auth = None;
        assert!(auth(&mut s, &mut rng).is_empty());
        let ch = "Digest realm=\"r\", nonce=\"n1\", qop=\"auth\", algorithm=SHA-256";
        handle_challenge(&mut s, "r", Www, [ch]).unwrap();
        let a = auth(&mut s, &mut rng);
        assert!(
            a[0].1.contains("nc=00000001") && a[0].1.contains("SHA-256"),
            "{a:?}"
        );
        // The server accepts: the next request reuses the nonce with nc=2.
        handle_success(&mut s, "r");
        let b = auth(&mut s, &mut rng);
        assert!(
            b[0].1.contains("nc=00000002") && b[0].1.contains("nonce=\"n1\""),
            "{b:?}"
        );
        // After an accepted request a new nonce earns one retry, stale or not...
        handle_challenge(&mut s, "r", Www, ["Digest realm=\"r\", nonce=\"n2\""]).unwrap();
        let c = auth(&mut s, &mut rng);
        assert!(
            c[0].1.contains("nonce=\"n2\"") && !c[0].1.contains("nc="),
            "{c:?}"
        );
        // ...but a second challenge without stale means the password is wrong, and every
        // nonce is forgotten, so a later attempt starts over.
        assert_eq!(
            handle_challenge(&mut s, "r", Www, ["Digest realm=\"r\", nonce=\"n3\""]),
            Err(ChallengeError::Rejected)
        );
        assert!(auth(&mut s, &mut rng).is_empty());
        // The same nonce again, without stale, is a rejection too.
        handle_challenge(&mut s, "r", Www, [ch]).unwrap();
        auth(&mut s, &mut rng);
        assert_eq!(
            handle_challenge(&mut s, "r", Www, [ch]),
            Err(ChallengeError::Rejected)
        );
    }

    #[test]
    fn spaces_round_trip_through_one_block() {
        let space = |kind, realm: &str, nc| Space {
            realm: realm.to_owned(),
            nonce: "bm9uY2U=".to_owned(),
            opaque: String::new(),
            sess_cnonce: "c".repeat(24),
            nc,
            kind,
            algorithm: Algorithm::Sha512_256Sess,
            qop: Some(Qop::AuthInt),
            algorithm_named: true,
            has_opaque: false,
            userhash: true,
            used: false,
            answering: true,
            stale_streak: 3,
        };
        let domain = "example.org";
        let list = vec![
            space(Proxy, "p", u32::MAX),
            space(Www, "", 7),
            space(Www, domain, 1),
        ];
        let block = encode(&list, domain);
        // The realm equal to the domain is not stored.
        assert_eq!(
            block.as_ref().map(|b| b.len()),
            Some(3 * HEADER + 1 + 3 * (8 + 24))
        );
        assert_eq!(decode(&block, domain), list);
        assert_eq!(encode(&[], domain), None);
        assert!(decode(&None, domain).is_empty());
    }

    #[test]
    fn stale_is_followed_a_bounded_number_of_times() {
        let mut rng = CoreRng::from_seed(2);
        let mut s: Auth = None;
        handle_challenge(
            &mut s,
            "r",
            Proxy,
            ["Digest realm=\"p\", nonce=\"x\", qop=auth"],
        )
        .unwrap();
        auth(&mut s, &mut rng);
        for i in 0..MAX_STALE {
            let v = format!("Digest realm=\"p\", nonce=\"s{i}\", qop=auth, stale=true");
            handle_challenge(&mut s, "r", Proxy, [v.as_str()]).unwrap();
            let a = auth(&mut s, &mut rng);
            assert_eq!(a[0].0, Proxy);
            assert!(a[0].1.contains("nc=00000001"));
        }
        assert_eq!(
            handle_challenge(
                &mut s,
                "r",
                Proxy,
                ["Digest realm=\"p\", nonce=\"z\", stale=true"]
            ),
            Err(ChallengeError::TooManyStale)
        );
        assert!(s.is_none(), "nonces are forgotten after a give-up");
        assert_eq!(
            handle_challenge(&mut s, "r", Www, ["Basic realm=\"x\""]),
            Err(ChallengeError::NoUsable)
        );
    }
}
