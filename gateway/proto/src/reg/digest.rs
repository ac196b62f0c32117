//! Per-binding digest state, compact enough to keep for a million bindings.
//!
//! [`crate::auth::DigestClient`] keeps whole parsed [`Challenge`]s, a cached HA1 and the
//! username per account: right for a phone with one account, several hundred bytes too many
//! for a gateway holding a million. This module keeps, per protection space, only what the
//! next request needs (realm, nonce, opaque, the `-sess` cnonce, algorithm, qop and
//! nonce-count) in one allocation, and reuses the `auth` module's parser, challenge choice,
//! response formula and credentials printer, so both clients compute and print identically.
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
use smallvec::SmallVec;

use super::strings::Packed;

/// Length of generated client nonces, in token characters.
const CNONCE_LEN: usize = 24;

const REALM: usize = 0;
const NONCE: usize = 1;
const OPAQUE: usize = 2;
const SESS_CNONCE: usize = 3;

/// The spaces of one binding: boxed and optional, so a binding that was never challenged
/// pays 8 bytes, and one that was pays a single allocation.
pub(crate) type Auth = Option<Box<SmallVec<[Space; 1]>>>;

/// One protection space: the nonce we answer or reuse.
#[derive(Debug)]
pub(crate) struct Space {
    /// realm, nonce, opaque, the fixed cnonce of a `-sess` algorithm.
    text: Packed<4>,
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

/// Handles the challenge header values of a 401 (`Www`) or 407 (`Proxy`). On
/// `Rejected` and `TooManyStale` every nonce is forgotten (as [`crate::auth::DigestClient`]
/// does), so the next attempt, after a configuration update, starts over.
pub(crate) fn handle_challenge<'a>(
    auth: &mut Auth,
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
    let mut list = auth.take().unwrap_or_default();
    if kind == ChallengeKind::Www {
        // A 401 comes from beyond every proxy, so each proxy accepted what we sent it.
        for s in list.iter_mut().filter(|s| s.kind == ChallengeKind::Proxy) {
            s.answering &= !s.used;
        }
    }
    let existing = list.iter().position(|s| s.kind == kind);
    let mut stale_streak = 0;
    if let Some(cur) = existing.map(|i| &list[i]) {
        if cur.used && cur.text.get(REALM) == chosen.realm {
            if chosen.stale {
                stale_streak = cur.stale_streak + 1;
                if stale_streak > MAX_STALE {
                    return Err(ChallengeError::TooManyStale);
                }
            } else if cur.answering || cur.text.get(NONCE) == chosen.nonce {
                return Err(ChallengeError::Rejected);
            }
        }
    }
    let opaque = chosen.opaque.as_deref().unwrap_or("");
    let text = Packed::new([&chosen.realm, &chosen.nonce, opaque, ""])
        .map_err(|_| ChallengeError::NoUsable)?;
    let space = Space {
        text,
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
    *auth = Some(list);
    Ok(())
}

/// A request with our credentials got a final answer other than 401/407: the nonces are
/// good for reuse.
pub(crate) fn handle_success(auth: &mut Auth) {
    for s in auth.iter_mut().flat_map(|a| a.iter_mut()) {
        s.answering = false;
        s.stale_streak = 0;
    }
}

/// The credentials header values for the next request, one per space, each with the next
/// nonce-count. Empty before any challenge.
pub(crate) fn authorize(
    auth: &mut Auth,
    rng: &mut CoreRng,
    username: &str,
    password: &str,
    method: &str,
    uri: &str,
) -> Vec<(ChallengeKind, String)> {
    let mut out = Vec::new();
    for s in auth.iter_mut().flat_map(|a| a.iter_mut()) {
        // nc wrapped: drop the credentials and let the server challenge afresh.
        let Some(nc) = s.nc.checked_add(1) else {
            continue;
        };
        let realm = s.text.get(REALM);
        let sess = s.algorithm.is_sess();
        let cnonce = if !s.text.get(SESS_CNONCE).is_empty() {
            Some(s.text.get(SESS_CNONCE).to_owned())
        } else if s.qop.is_some() || sess {
            let mut c = String::with_capacity(CNONCE_LEN);
            rng.push_token(&mut c, CNONCE_LEN);
            Some(c)
        } else {
            None
        };
        if sess && s.text.get(SESS_CNONCE).is_empty() {
            let c = cnonce.as_deref().unwrap_or("");
            if let Ok(t) = Packed::new([realm, s.text.get(NONCE), s.text.get(OPAQUE), c]) {
                s.text = t;
            }
        }
        let realm = s.text.get(REALM);
        // HA1 is recomputed per request (one short hash) rather than cached: caching would
        // add 32–64 password-equivalent bytes to every binding.
        let family = s.algorithm.hash();
        let hex = family.hex_joined(&[username.as_bytes(), realm.as_bytes(), password.as_bytes()]);
        let ha1 = Ha1::from_trusted_hex(family, hex);
        let nc_text = NonceCount(nc).to_string();
        let Some(response) = compute_response(&ResponseInput {
            algorithm: s.algorithm,
            ha1: &ha1,
            nonce: s.text.get(NONCE),
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
            nonce: s.text.get(NONCE).to_owned(),
            uri: uri.to_owned(),
            response: response.to_string(),
            algorithm: s
                .algorithm_named
                .then_some(AlgorithmParam::Known(s.algorithm)),
            cnonce,
            opaque: s.has_opaque.then(|| s.text.get(OPAQUE).to_owned()),
            qop: s.qop.map(|q| q.as_str().to_owned()),
            nc: s.qop.is_some().then_some(NonceCount(nc)),
            userhash: s.userhash,
            params: Vec::new(),
        };
        s.nc = nc;
        s.used = true;
        out.push((s.kind, creds.to_string()));
    }
    out
}

/// Heap bytes held by the spaces (for memory reports).
/// Heap blocks held: the spaces block and each space's text, as `(block sizes)`.
pub(crate) fn heap_blocks(auth: &Auth) -> impl Iterator<Item = usize> + '_ {
    let outer = auth
        .as_ref()
        .map(|_| std::mem::size_of::<SmallVec<[Space; 1]>>());
    let texts = auth
        .iter()
        .flat_map(|a| a.iter())
        .map(|s| s.text.heap_len());
    outer.into_iter().chain(texts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ChallengeKind::{Proxy, Www};

    fn auth(spaces: &mut Auth, rng: &mut CoreRng) -> Vec<(ChallengeKind, String)> {
        authorize(spaces, rng, "alice", "pw", "REGISTER", "sip:example.org")
    }

    #[test]
    fn reuses_nonce_with_increasing_nc_and_stops_loops() {
        let mut rng = CoreRng::from_seed(1);
        let mut s: Auth = None;
        assert!(auth(&mut s, &mut rng).is_empty());
        let ch = "Digest realm=\"r\", nonce=\"n1\", qop=\"auth\", algorithm=SHA-256";
        handle_challenge(&mut s, Www, [ch]).unwrap();
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
        handle_challenge(&mut s, Www, ["Digest realm=\"r\", nonce=\"n2\""]).unwrap();
        let c = auth(&mut s, &mut rng);
        assert!(
            c[0].1.contains("nonce=\"n2\"") && !c[0].1.contains("nc="),
            "{c:?}"
        );
        // ...but a second challenge without stale means the password is wrong, and every
        // nonce is forgotten, so a later attempt starts over.
        assert_eq!(
            handle_challenge(&mut s, Www, ["Digest realm=\"r\", nonce=\"n3\""]),
            Err(ChallengeError::Rejected)
        );
        assert!(auth(&mut s, &mut rng).is_empty());
        // The same nonce again, without stale, is a rejection too.
        handle_challenge(&mut s, Www, [ch]).unwrap();
        auth(&mut s, &mut rng);
        assert_eq!(
            handle_challenge(&mut s, Www, [ch]),
            Err(ChallengeError::Rejected)
        );
    }

    #[test]
    fn stale_is_followed_a_bounded_number_of_times() {
        let mut rng = CoreRng::from_seed(2);
        let mut s: Auth = None;
        handle_challenge(&mut s, Proxy, ["Digest realm=\"p\", nonce=\"x\", qop=auth"]).unwrap();
        auth(&mut s, &mut rng);
        for i in 0..MAX_STALE {
            let v = format!("Digest realm=\"p\", nonce=\"s{i}\", qop=auth, stale=true");
            handle_challenge(&mut s, Proxy, [v.as_str()]).unwrap();
            let a = auth(&mut s, &mut rng);
            assert_eq!(a[0].0, Proxy);
            assert!(a[0].1.contains("nc=00000001"));
        }
        assert_eq!(
            handle_challenge(
                &mut s,
                Proxy,
                ["Digest realm=\"p\", nonce=\"z\", stale=true"]
            ),
            Err(ChallengeError::TooManyStale)
        );
        assert!(s.is_none(), "nonces are forgotten after a give-up");
        assert_eq!(
            handle_challenge(&mut s, Www, ["Basic realm=\"x\""]),
            Err(ChallengeError::NoUsable)
        );
    }
}
