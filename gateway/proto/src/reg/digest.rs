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
//! bytes with malloc's rounding), the encoded form one (about 96). The hot operations work
//! on the block itself: a REGISTER's credentials are printed from borrowed views of it and
//! its nc and flags updated in place, a success flips flags in place. Only a new challenge
//! (or a `-sess` space's first cnonce) decodes it into [`Space`]s that borrow from it and
//! encodes a new block. A realm
//! equal to the binding's domain (the usual registrar setup) is not stored but flagged, as
//! the domain is already kept once for all bindings of a site.
//!
//! The loop rules are [`crate::auth::client`]'s: credentials computed for a fresh challenge
//! get one retry; a second challenge without `stale=true` (or the same nonce again) means the
//! secret is wrong; `stale=true` earns a retry at most [`MAX_STALE`] times in a row. At most
//! one space per challenge kind is kept (a proxy's 407 and the registrar's 401): a server
//! that changes its realm replaces the old space instead of adding one.

use std::borrow::Cow;

use smallvec::SmallVec;

use crate::auth::algorithm::{ha2, response_digest_with_ha2, HashFamily, HexDigest, ResponseInput};
use crate::auth::challenge::best_challenge;
use crate::auth::client::MAX_STALE;
use crate::auth::credentials::CredentialsRef;
use crate::auth::{Algorithm, ChallengeKind, NonceCount, Qop};
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
/// Offsets in the header.
const H_FLAGS: usize = 3;
const H_STALE: usize = 4;
const H_NC: usize = 5;

const F_ALGORITHM_NAMED: u8 = 1;
const F_HAS_OPAQUE: u8 = 2;
const F_USERHASH: u8 = 4;
const F_USED: u8 = 8;
const F_ANSWERING: u8 = 16;
/// The realm is the binding's domain (and its stored text empty).
const F_REALM_IS_DOMAIN: u8 = 32;

/// One protection space, decoded: the nonce we answer or reuse. The texts borrow from the
/// block (or the domain, or a challenge), so decoding allocates nothing.
#[derive(Debug, Clone, PartialEq)]
struct Space<'a> {
    realm: Cow<'a, str>,
    nonce: Cow<'a, str>,
    opaque: Cow<'a, str>,
    /// The fixed cnonce of a `-sess` algorithm (empty until the first request).
    sess_cnonce: Cow<'a, str>,
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

/// The space encoded at `at` in `block` (see [`HEADER`]) and where the next one starts;
/// `None` at the end. The block is only ever written by [`encode`], so a malformed one
/// cannot occur; should it anyway, reading stops there (the server challenges afresh).
fn space_at<'a>(block: &'a [u8], at: usize, domain: &'a str) -> Option<(Space<'a>, usize)> {
    let rest = block.get(at..)?;
    if rest.len() < HEADER {
        return None;
    }
    let (h, tail) = rest.split_at(HEADER);
    let len = |i: usize| usize::from(u16::from_le_bytes([h[9 + 2 * i], h[10 + 2 * i]]));
    let total: usize = (0..4).map(len).sum();
    let (Some(algorithm), Some(text)) = (Algorithm::ALL.get(usize::from(h[1])), tail.get(..total))
    else {
        return None;
    };
    // `encode` writes `&str`s, so the texts are UTF-8 and each starts on a character
    // boundary: one check for all four, then a boundary check per field.
    let text = std::str::from_utf8(text).ok()?;
    let mut fields = [""; 4];
    let mut from = 0;
    for (i, f) in fields.iter_mut().enumerate() {
        *f = text.get(from..from + len(i))?;
        from += len(i);
    }
    let flags = h[H_FLAGS];
    let space = Space {
        realm: Cow::Borrowed(if flags & F_REALM_IS_DOMAIN != 0 {
            domain
        } else {
            fields[0]
        }),
        nonce: Cow::Borrowed(fields[1]),
        opaque: Cow::Borrowed(fields[2]),
        sess_cnonce: Cow::Borrowed(fields[3]),
        nc: u32::from_le_bytes([h[H_NC], h[H_NC + 1], h[H_NC + 2], h[H_NC + 3]]),
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
        stale_streak: h[H_STALE],
    };
    Some((space, at + HEADER + total))
}

/// Every space of `auth` for a binding of `domain`, borrowed from the block.
fn decode<'a>(auth: &'a Auth, domain: &'a str) -> SmallVec<[Space<'a>; 2]> {
    let block = auth.as_deref().unwrap_or(&[]);
    let mut out = SmallVec::new();
    let mut at = 0;
    while let Some((space, next)) = space_at(block, at, domain) {
        out.push(space);
        at = next;
    }
    out
}

/// Header offsets of every space of `block`, for the updates that change no length (nc,
/// flags) and so are made in place.
fn header_offsets(block: &[u8]) -> SmallVec<[usize; 2]> {
    let mut out = SmallVec::new();
    let mut at = 0;
    while let Some(next) = next_space(block, at) {
        out.push(at);
        at = next;
    }
    out
}

/// Where the space after the one at `at` starts, as [`space_at`] finds it (whose texts are
/// UTF-8, as `encode` wrote them), without reading the texts.
fn next_space(block: &[u8], at: usize) -> Option<usize> {
    let h = block.get(at..at + HEADER)?;
    let total: usize = (0..4)
        .map(|i| usize::from(u16::from_le_bytes([h[9 + 2 * i], h[10 + 2 * i]])))
        .sum();
    let end = at + HEADER + total;
    (usize::from(h[1]) < Algorithm::ALL.len() && end <= block.len()).then_some(end)
}

/// Stores a freshly encoded block into `auth`, in place when the size is unchanged (a new
/// nonce of the same length): a million long-lived blocks reallocated on every challenge
/// would leave the heap fragmented.
fn put(auth: &mut Auth, fresh: Auth) {
    match (auth.as_mut(), fresh) {
        (Some(old), Some(new)) if old.len() == new.len() => old.copy_from_slice(&new),
        (_, fresh) => *auth = fresh,
    }
}

/// The block for `spaces` of a binding of `domain` (`None` for none), allocated at its exact
/// size. A text too long for its 2-byte length (64 KiB) drops its space, as an unanswerable
/// challenge.
fn encode(spaces: &[Space<'_>], domain: &str) -> Auth {
    fn stored_realm<'a>(s: &'a Space<'_>, domain: &str) -> &'a str {
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
        let mut lens = [0u16; 4];
        if texts
            .iter()
            .zip(&mut lens)
            .any(|(t, l)| u16::try_from(t.len()).map(|n| *l = n).is_err())
        {
            continue;
        }
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

/// HA2 of the last request answered (RFC 7616 §3.4.3), kept by the engine for the next: it
/// depends only on the hash family, method and URI (and the body, for qop=auth-int, which is
/// never kept), so every REGISTER to one domain shares it. It holds nothing secret.
#[derive(Default)]
pub(crate) struct Ha2Memo {
    /// The family `hex` was computed with, `None` when `hex` may not be reused.
    family: Option<HashFamily>,
    method: String,
    uri: String,
    hex: Option<HexDigest>,
}

impl std::fmt::Debug for Ha2Memo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ha2Memo")
            .field("family", &self.family)
            .field("method", &self.method)
            .field("uri", &self.uri)
            .finish_non_exhaustive()
    }
}

impl Ha2Memo {
    /// [`ha2`] of `i`, computed only when the method, URI or hash family changed.
    fn ha2(&mut self, i: &ResponseInput<'_>) -> &HexDigest {
        let family = i.algorithm.hash();
        let reusable = i.qop != Some(Qop::AuthInt);
        let hit =
            reusable && self.family == Some(family) && self.method == i.method && self.uri == i.uri;
        if !hit || self.hex.is_none() {
            self.family = reusable.then_some(family);
            self.method.clear();
            self.method.push_str(i.method);
            self.uri.clear();
            self.uri.push_str(i.uri);
            self.hex = None;
        }
        self.hex.get_or_insert_with(|| ha2(i))
    }
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
///
/// The challenge is chosen as [`crate::auth::select_best`] chooses among the usable ones of
/// [`crate::auth::parse_challenge_list`], but from borrowed slices
/// ([`best_challenge`]): the owned challenges cost more than the rest of a 401's handling.
pub(crate) fn handle_challenge<'a>(
    auth: &mut Auth,
    domain: &str,
    kind: ChallengeKind,
    values: impl IntoIterator<Item = &'a str>,
) -> Result<(), ChallengeError> {
    let chosen = best_challenge(values).ok_or(ChallengeError::NoUsable)?;
    let algorithm = chosen.algorithm.ok_or(ChallengeError::NoUsable)?;
    let qop = chosen.client_qop.ok_or(ChallengeError::NoUsable)?;
    let opaque = chosen.opaque.as_deref().unwrap_or("");
    if [&*chosen.realm, &*chosen.nonce, opaque]
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
    let mut give_up = None;
    if let Some(cur) = existing.map(|i| &list[i]) {
        if cur.used && cur.realm == chosen.realm {
            if chosen.stale {
                stale_streak = cur.stale_streak + 1;
                if stale_streak > MAX_STALE {
                    give_up = Some(ChallengeError::TooManyStale);
                }
            } else if cur.answering || cur.nonce == chosen.nonce {
                give_up = Some(ChallengeError::Rejected);
            }
        }
    }
    if let Some(e) = give_up {
        drop(list);
        *auth = None;
        return Err(e);
    }
    let space = Space {
        realm: Cow::Borrowed(&chosen.realm),
        nonce: Cow::Borrowed(&chosen.nonce),
        opaque: Cow::Borrowed(opaque),
        sess_cnonce: Cow::Borrowed(""),
        nc: 0,
        kind,
        algorithm,
        qop,
        algorithm_named: chosen.algorithm_named,
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
    let fresh = encode(&list, domain);
    drop(list);
    put(auth, fresh);
    Ok(())
}

/// A request with our credentials got a final answer other than 401/407: the nonces are
/// good for reuse. (In place: no length changes.)
pub(crate) fn handle_success(auth: &mut Auth) {
    let Some(block) = auth.as_deref_mut() else {
        return;
    };
    for at in header_offsets(block) {
        block[at + H_FLAGS] &= !F_ANSWERING;
        block[at + H_STALE] = 0;
    }
}

/// The credentials header values for the next request, one per space, each with the next
/// nonce-count: appended to `out`, with the kind and end offset of each in `ends`.
/// Nothing before any challenge.
///
/// Printed straight from the block through [`CredentialsRef`], the printer of
/// [`crate::auth::Credentials`], with every hash on the stack; nc and the used flag are
/// updated in place, and only a `-sess` space's first cnonce re-encodes the block.
#[allow(clippy::too_many_arguments)]
pub(crate) fn authorize(
    auth: &mut Auth,
    domain: &str,
    rng: &mut CoreRng,
    username: &str,
    password: &str,
    method: &str,
    uri: &str,
    memo: &mut Ha2Memo,
    out: &mut String,
    ends: &mut SmallVec<[(ChallengeKind, usize); 2]>,
) {
    let Some(block) = auth.as_deref() else {
        return;
    };
    // (header offset, new nc) of each space answered; (space index, cnonce) of each `-sess`
    // space that fixes its cnonce now.
    let mut answered: SmallVec<[(usize, u32); 2]> = SmallVec::new();
    let mut sess_fixed: SmallVec<[(usize, [u8; CNONCE_LEN]); 1]> = SmallVec::new();
    let mut at = 0;
    let mut index = 0;
    while let Some((s, next)) = space_at(block, at, domain) {
        let header = at;
        let i = index;
        at = next;
        index += 1;
        // nc wrapped: drop the credentials and let the server challenge afresh.
        let Some(nc) = s.nc.checked_add(1) else {
            continue;
        };
        let sess = s.algorithm.is_sess();
        let mut fresh = [0u8; CNONCE_LEN];
        let cnonce: Option<&str> = if !s.sess_cnonce.is_empty() {
            Some(&s.sess_cnonce)
        } else if s.qop.is_some() || sess {
            rng.fill_token(&mut fresh);
            if sess {
                sess_fixed.push((i, fresh));
            }
            // Token characters are ASCII.
            Some(std::str::from_utf8(&fresh).unwrap_or(""))
        } else {
            None
        };
        let realm: &str = &s.realm;
        // HA1 is recomputed per request (one short hash) rather than cached: caching would
        // add 32–64 password-equivalent bytes to every binding.
        let family = s.algorithm.hash();
        let ha1 = family.hex_digest(&[username.as_bytes(), realm.as_bytes(), password.as_bytes()]);
        let nc_text = NonceCount(nc).hex();
        let input = ResponseInput {
            algorithm: s.algorithm,
            ha1: ha1.as_bytes(),
            ha1_family: family,
            nonce: &s.nonce,
            method,
            uri,
            qop: s.qop,
            qop_text: None,
            nc: nc_text.as_bytes(),
            cnonce: cnonce.unwrap_or(""),
            body: b"",
        };
        let response = response_digest_with_ha2(&input, memo.ha2(&input));
        let hashed: HexDigest;
        let user = if s.userhash {
            hashed = family.hex_digest(&[username.as_bytes(), realm.as_bytes()]);
            hashed.as_str()
        } else {
            username
        };
        CredentialsRef {
            username: user,
            realm,
            nonce: &s.nonce,
            uri,
            response: response.as_str(),
            algorithm: s.algorithm_named.then_some(s.algorithm.name()),
            cnonce,
            opaque: s.has_opaque.then_some(&*s.opaque),
            qop: s.qop.map(Qop::as_str),
            nc: s.qop.is_some().then_some(NonceCount(nc)),
            userhash: s.userhash,
            params: &[],
        }
        .write_to(out);
        ends.push((s.kind, out.len()));
        answered.push((header, nc));
    }
    if let Some(block) = auth.as_deref_mut() {
        for &(h, nc) in &answered {
            block[h + H_NC..h + H_NC + 4].copy_from_slice(&nc.to_le_bytes());
            block[h + H_FLAGS] |= F_USED;
        }
    }
    if !sess_fixed.is_empty() {
        let mut list = decode(auth, domain);
        for (i, c) in &sess_fixed {
            if let Some(s) = list.get_mut(*i) {
                s.sess_cnonce = Cow::Owned(String::from_utf8_lossy(c).into_owned());
            }
        }
        let fresh = encode(&list, domain);
        drop(list);
        put(auth, fresh);
    }
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
        auth_as(spaces, rng, "r", "alice", "pw")
    }

    fn auth_as(
        spaces: &mut Auth,
        rng: &mut CoreRng,
        domain: &str,
        user: &str,
        pw: &str,
    ) -> Vec<(ChallengeKind, String)> {
        let memo = &mut Ha2Memo::default();
        auth_with(
            spaces,
            rng,
            domain,
            user,
            pw,
            "REGISTER",
            "sip:example.org",
            memo,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn auth_with(
        spaces: &mut Auth,
        rng: &mut CoreRng,
        domain: &str,
        user: &str,
        pw: &str,
        method: &str,
        uri: &str,
        memo: &mut Ha2Memo,
    ) -> Vec<(ChallengeKind, String)> {
        let mut text = String::new();
        let mut ends = SmallVec::new();
        authorize(
            spaces, domain, rng, user, pw, method, uri, memo, &mut text, &mut ends,
        );
        let mut from = 0;
        ends.iter()
            .map(|&(kind, end)| {
                let v = text[from..end].to_owned();
                from = end;
                (kind, v)
            })
            .collect()
    }

    /// The credentials printed from the block are what the general path (parse them as
    /// [`Credentials`], reprint, recompute the response with the password) agrees with, for
    /// every algorithm, qop, opaque, userhash and `-sess` combination, over several requests.
    #[test]
    fn printed_credentials_match_the_general_path() {
        use crate::auth::{Credentials, Password, Secret};
        let secret = Secret::Password(Password::new("s\"cr=t"));
        let mut rng = CoreRng::from_seed(9);
        for algorithm in Algorithm::ALL {
            for qop in [
                "",
                ", qop=\"auth\"",
                ", qop=\"auth-int,auth\"",
                ", qop=auth-int",
            ] {
                for extra in [
                    "",
                    ", opaque=\"op aq\"",
                    ", userhash=true",
                    ", opaque=x, userhash=true",
                ] {
                    for realm in ["example.org", "other realm"] {
                        let ch = format!(
                            "Digest realm=\"{realm}\", nonce=\"n\\\"1\", algorithm={}{qop}{extra}",
                            algorithm.name()
                        );
                        let mut s: Auth = None;
                        handle_challenge(&mut s, "example.org", Proxy, [ch.as_str()]).unwrap();
                        for round in 1..=3u32 {
                            let a = auth_as(&mut s, &mut rng, "example.org", "bob", "s\"cr=t");
                            assert_eq!(a.len(), 1, "{ch}");
                            let c = Credentials::parse(&a[0].1).unwrap();
                            assert_eq!(c.to_string(), a[0].1, "{ch}");
                            assert_eq!(c.realm, realm);
                            assert_eq!(c.nonce, "n\"1");
                            let user = if c.userhash {
                                crate::auth::algorithm::userhash(algorithm.hash(), "bob", realm)
                            } else {
                                "bob".to_owned()
                            };
                            assert_eq!(c.username, user, "{ch}");
                            let expected = c.expected_response("REGISTER", b"", "bob", &secret);
                            assert_eq!(expected.as_deref(), Some(c.response.as_str()), "{ch}");
                            if c.qop.is_some() {
                                assert_eq!(c.nc, Some(crate::auth::NonceCount(round)), "{ch}");
                            }
                            handle_success(&mut s);
                        }
                    }
                }
            }
        }
    }

    /// A kept HA2 gives what a fresh computation gives, whatever changes from one request
    /// to the next (algorithm, qop including auth-int, method, URI).
    #[test]
    fn kept_ha2_matches_a_fresh_one() {
        let mut kept = Ha2Memo::default();
        let (mut rng_kept, mut rng_fresh) = (CoreRng::from_seed(5), CoreRng::from_seed(5));
        let mut round = 0;
        for algorithm in Algorithm::ALL {
            for qop in [
                "",
                ", qop=auth",
                ", qop=auth-int",
                ", qop=\"auth-int,auth\"",
            ] {
                for (method, uri) in [
                    ("REGISTER", "sip:example.org"),
                    ("REGISTER", "sip:example.org"),
                    ("REGISTER", "sip:example.net"),
                    ("OPTIONS", "sip:example.net"),
                    ("REGISTER", "sip:example.org"),
                ] {
                    round += 1;
                    let ch = format!(
                        "Digest realm=\"r\", nonce=\"n{round}\", algorithm={}{qop}",
                        algorithm.name()
                    );
                    let (mut a, mut b): (Auth, Auth) = (None, None);
                    handle_challenge(&mut a, "r", Www, [ch.as_str()]).unwrap();
                    handle_challenge(&mut b, "r", Www, [ch.as_str()]).unwrap();
                    let with_kept = auth_with(
                        &mut a,
                        &mut rng_kept,
                        "r",
                        "al",
                        "pw",
                        method,
                        uri,
                        &mut kept,
                    );
                    let fresh = &mut Ha2Memo::default();
                    let with_fresh =
                        auth_with(&mut b, &mut rng_fresh, "r", "al", "pw", method, uri, fresh);
                    assert_eq!(with_kept, with_fresh, "{ch} {method} {uri}");
                }
            }
        }
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
        handle_success(&mut s);
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
        let space = |kind, realm: &'static str, nc| Space {
            realm: realm.into(),
            nonce: "bm9uY2U=".into(),
            opaque: "".into(),
            sess_cnonce: "c".repeat(24).into(),
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
        assert_eq!(&decode(&block, domain)[..], &list[..]);
        let b = block.as_deref().unwrap();
        let (mut at, mut n) = (0, 0);
        while let Some((_, next)) = space_at(b, at, domain) {
            assert_eq!(next_space(b, at), Some(next));
            at = next;
            n += 1;
        }
        assert_eq!((n, next_space(b, at)), (3, None));
        // Non-ASCII texts decode as written; a block cut inside a character reads as
        // ending before that space.
        let list = vec![space(Www, "réalm ü", 2)];
        let block = encode(&list, domain);
        assert_eq!(&decode(&block, domain)[..], &list[..]);
        let mut cut = block.as_deref().unwrap().to_vec();
        cut[9..11].copy_from_slice(&2u16.to_le_bytes());
        assert!(space_at(&cut, 0, domain).is_none());
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
