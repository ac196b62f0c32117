//! Property tests for the Digest header parsers and printers: no input panics them, and
//! print ∘ parse is the identity on generated challenges and credentials. They also drive
//! the cargo-fuzz body (`crate::fuzzing::digest_challenge`) with arbitrary bytes.

use proptest::prelude::*;

use super::{
    parse_challenge_list, Algorithm, AlgorithmParam, AuthParam, Challenge, Credentials, NonceCount,
};
use crate::fuzzing::digest_challenge;

#[test]
fn fuzz_body_handles_samples() {
    for s in [
        &b"Digest realm=\"a\\\"b\", nonce=x, qop=\"auth,auth-int\", Basic x=y"[..],
        b"Digest username=\"u\", realm=r, nonce=n, uri=\"sip:a\", response=ab, qop=auth, nc=00000001, cnonce=c",
        b"\xff\xfe", b"Digest \"", b"Digest a=\"\\", b",,,,", b"Digest realm=\"\x01\\\x7f\"",
    ] {
        digest_challenge(s);
    }
}

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9.!%*_+`'~-]{1,12}"
}

/// Any text without CR/LF (the only characters a header value cannot carry at all).
fn text() -> impl Strategy<Value = String> {
    "[^\r\n]{0,24}"
}

fn extra_params() -> impl Strategy<Value = Vec<AuthParam>> {
    const KNOWN: &[&str] = &[
        "realm",
        "domain",
        "nonce",
        "opaque",
        "stale",
        "algorithm",
        "qop",
        "charset",
        "userhash",
        "username",
        "uri",
        "response",
        "cnonce",
        "nc",
    ];
    prop::collection::vec(
        (
            token().prop_filter("unknown name", |n| {
                !KNOWN.contains(&n.to_ascii_lowercase().as_str())
            }),
            text(),
        )
            .prop_map(|(name, value)| AuthParam { name, value }),
        0..3,
    )
}

fn algorithm_param() -> impl Strategy<Value = Option<AlgorithmParam>> {
    prop_oneof![
        Just(None),
        prop::sample::select(Algorithm::ALL.to_vec()).prop_map(|a| Some(AlgorithmParam::Known(a))),
        token()
            .prop_filter("not a known name", |t| Algorithm::from_name(t).is_none())
            .prop_map(|t| Some(AlgorithmParam::Unsupported(t))),
    ]
}

prop_compose! {
    fn challenge()(
        realm in text(), nonce in text(), opaque in prop::option::of(text()),
        domain in prop::collection::vec("[!-~&&[^,\"]]{1,10}", 0..3),
        stale in any::<bool>(), userhash in any::<bool>(), algorithm in algorithm_param(),
        qop in prop::option::of(prop::collection::vec(token(), 0..3)),
        charset in prop::option::of(token()), params in extra_params(),
    ) -> Challenge {
        Challenge { realm, domain, nonce, opaque, stale, algorithm, qop, charset, userhash, params }
    }
}

prop_compose! {
    fn credentials()(
        username in text(), realm in text(), nonce in text(), uri in text(),
        response in text(), algorithm in algorithm_param(),
        qop in prop::option::of((token(), text(), any::<u32>())),
        opaque in prop::option::of(text()), userhash in any::<bool>(), params in extra_params(),
    ) -> Credentials {
        let (qop, cnonce, nc) = match qop {
            Some((q, c, n)) => (Some(q), Some(c), Some(NonceCount(n))),
            None => (None, None, None),
        };
        Credentials {
            username, realm, nonce, uri, response, algorithm, cnonce, opaque, qop, nc,
            userhash, params,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parsers_never_panic(s in "\\PC{0,80}", bytes in prop::collection::vec(any::<u8>(), 0..80)) {
        let _ = Challenge::parse(&s);
        let _ = Credentials::parse(&s);
        let _ = parse_challenge_list(&s);
        digest_challenge(s.as_bytes());
        digest_challenge(&bytes);
    }

    #[test]
    fn challenge_print_parse_round_trips(c in challenge()) {
        let printed = c.to_string();
        prop_assert_eq!(Challenge::parse(&printed), Ok(c.clone()), "{}", printed);
        // Several challenges in one value come back in order.
        let two = format!("{c}, {c}");
        let list = parse_challenge_list(&two).unwrap();
        prop_assert_eq!(list, vec![Ok(c.clone()), Ok(c)]);
    }

    #[test]
    fn credentials_print_parse_round_trips(c in credentials()) {
        let printed = c.to_string();
        prop_assert_eq!(Credentials::parse(&printed), Ok(c), "{}", printed);
    }
}
