//! Digest authentication against published vectors (RFC 7616 §3.9.1, RFC 2617 §3.5), against
//! values computed independently with python3's `hashlib`, and client-against-server runs
//! for every algorithm, nonce reuse, stale nonces, loop prevention and replay.
//!
//! Every exchange goes through the printed header value and the parser, as on the wire.

// Helpers outside #[test] functions unwrap too: a panic there is a test failure.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use vigil_proto::auth::{
    Algorithm, AlgorithmParam, AuthError, Authorized, Challenge, ChallengeKind, Credentials,
    Denied, DenyReason, DigestClient, DigestRequest, DigestServer, Ha1, HashFamily, NonceCount,
    ParseError, Password, Qop, Secret, ServerConfig, ServerSecret,
};
use vigil_proto::rng::CoreRng;

// ---------------------------------------------------------------------------------------
// Published and independently computed vectors.

const NONCE: &str = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
const CNONCE: &str = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
const OPAQUE: &str = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS";

fn mufasa() -> Secret {
    Secret::Password(Password::new("Circle of Life"))
}

/// The RFC 7616 §3.9.1 Authorization header with the given algorithm and response.
fn rfc7616_header(algorithm: &str, response: &str) -> String {
    format!(
        "Digest username=\"Mufasa\", realm=\"http-auth@example.org\", uri=\"/dir/index.html\", \
         algorithm={algorithm}, nonce=\"{NONCE}\", nc=00000001, cnonce=\"{CNONCE}\", qop=auth, \
         response=\"{response}\", opaque=\"{OPAQUE}\""
    )
}

fn check_vector(algorithm: &str, response: &str) {
    let creds = Credentials::parse(&rfc7616_header(algorithm, response)).unwrap();
    let computed = creds
        .expected_response("GET", b"", "Mufasa", &mufasa())
        .unwrap();
    assert_eq!(computed, response, "{algorithm}");
    // A wrong password gives another response.
    let wrong = Secret::Password(Password::new("Circle of life"));
    assert_ne!(
        creds
            .expected_response("GET", b"", "Mufasa", &wrong)
            .unwrap(),
        response
    );
}

#[test]
fn rfc7616_section_3_9_1_md5() {
    check_vector("MD5", "8ca523f5e9506fed4657c9700eebdbec");
}

#[test]
fn rfc7616_section_3_9_1_sha256() {
    check_vector(
        "SHA-256",
        "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
    );
}

#[test]
fn rfc2617_section_3_5() {
    let creds = Credentials::parse(
        "Digest username=\"Mufasa\", realm=\"testrealm@host.com\", \
         nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", uri=\"/dir/index.html\", qop=auth, \
         nc=00000001, cnonce=\"0a4f113b\", response=\"6629fae49393a05397450978507c4ef1\", \
         opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
    )
    .unwrap();
    let secret = Secret::Password(Password::new("Circle Of Life"));
    assert_eq!(
        creds
            .expected_response("GET", b"", "Mufasa", &secret)
            .unwrap(),
        "6629fae49393a05397450978507c4ef1"
    );
    // The same through a stored HA1 = MD5("Mufasa:testrealm@host.com:Circle Of Life").
    let ha1 = Ha1::from_hex(HashFamily::Md5, "939e7578ed9e3c518a452acee763bce9").unwrap();
    assert_eq!(
        creds
            .expected_response("GET", b"", "Mufasa", &Secret::Ha1(ha1))
            .unwrap(),
        "6629fae49393a05397450978507c4ef1"
    );
}

/// Values for the RFC 7616 §3.9.1 inputs under the other algorithms, computed with python3's
/// `hashlib` (`hashlib.new("sha512_256")`, `"sha256"`, `"md5"`) following RFC 7616 §3.4.1-2:
/// `HA1 = H(user:realm:pw)`, for -sess `HA1 = H(HA1:nonce:cnonce)`, `HA2 = H(method:uri)`
/// (auth-int: `H(method:uri:H(body))`), `response = H(HA1:nonce:nc:cnonce:qop:HA2)`,
/// without qop `H(HA1:nonce:HA2)`.
#[test]
fn hashlib_vectors_for_sess_and_sha512_256() {
    check_vector("MD5-sess", "e783283f46242139c486a698fec7211d");
    check_vector(
        "SHA-256-sess",
        "2fd51b3a77ad75bad6afad6003e818d767133c46d9e2749e7f5232ae1ea3efd7",
    );
    check_vector(
        "SHA-512-256",
        "430d05014cecc49cab6fbe03176d41a1da86cbfe24a16580e22aaad928d960d0",
    );
    check_vector(
        "SHA-512-256-sess",
        "3f2a34f923c38b0fb26dce2fdfc2ce326c23cecf86fbb1444f3e51fbbc2cb92e",
    );

    // nc=00000002 with SHA-512-256.
    let mut c = Credentials::parse(&rfc7616_header("SHA-512-256", "x")).unwrap();
    c.nc = Some(NonceCount(2));
    assert_eq!(
        c.expected_response("GET", b"", "Mufasa", &mufasa())
            .unwrap(),
        "c70be613fc833a6fd44d48f13b0ae4431b234f5a5c232c4f817c08d99be9485e"
    );
    // qop=auth-int over the body "v=0\r\n" with SHA-256.
    let mut c = Credentials::parse(&rfc7616_header("SHA-256", "x")).unwrap();
    c.qop = Some("auth-int".into());
    assert_eq!(
        c.expected_response("GET", b"v=0\r\n", "Mufasa", &mufasa())
            .unwrap(),
        "385d2de062660ced11876f42d9497c69cacf5caaf3d951dd424aee9f7157d563"
    );
    // The hash covers the qop text as sent: `AUTH` (a legal spelling) gives another value,
    // SHA-256 with qop "AUTH" computed the same way with hashlib.
    let mut c = Credentials::parse(&rfc7616_header("SHA-256", "x")).unwrap();
    c.qop = Some("AUTH".into());
    assert_eq!(
        c.expected_response("GET", b"", "Mufasa", &mufasa())
            .unwrap(),
        "a945557be7168e1ab94018eed8cde747e700f1bd2ecfe46b41fa6104f6ff8314"
    );
    // RFC 2069 form (no qop, nc, cnonce) with MD5.
    let c = Credentials::parse(&format!(
        "Digest username=\"Mufasa\", realm=\"http-auth@example.org\", uri=\"/dir/index.html\", \
         nonce=\"{NONCE}\", response=\"x\""
    ))
    .unwrap();
    assert_eq!(
        c.expected_response("GET", b"", "Mufasa", &mufasa())
            .unwrap(),
        "7b2cc3b30e75b4777ea31027084363fd"
    );
}

/// The username hash for the RFC 7616 §3.9.2 inputs, `sha512_256("Jäsøn Doe:api@example.org")`
/// computed with python3's hashlib. (The hash and response printed in §3.9.2 itself do not
/// reproduce with hashlib, so they are not used here.)
#[test]
fn userhash_matches_hashlib() {
    let server = DigestServer::new(
        ServerConfig::new("api@example.org"),
        ServerSecret::new([0; 32]),
    )
    .unwrap();
    assert_eq!(
        server.userhash(Algorithm::Sha512_256, "J\u{e4}s\u{f8}n Doe"),
        "793263caabb707a56211940d90411ea4a575adeccb7e360aeb624ed06ece9b0b"
    );
}

// ---------------------------------------------------------------------------------------
// Client against server.

const USER: &str = "alice";
const REALM: &str = "vigil.example";

fn req(method: &'static str) -> DigestRequest<'static> {
    DigestRequest {
        method,
        uri: "sip:vigil.example",
        body: b"",
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(1_700_000_000 + s)
}

struct Harness {
    server: DigestServer,
    client: DigestClient,
    secret: Secret,
    rng: CoreRng,
}

impl Harness {
    fn new(config: ServerConfig) -> Self {
        let mut rng = CoreRng::from_seed(42);
        let server = DigestServer::new(config, ServerSecret::random(&mut rng)).unwrap();
        let secret = Secret::Password(Password::new("s3cret"));
        let client = DigestClient::new(USER, secret.clone()).unwrap();
        Self {
            server,
            client,
            secret,
            rng,
        }
    }

    fn with_algorithms(algorithms: &[Algorithm]) -> Self {
        let mut cfg = ServerConfig::new(REALM);
        cfg.algorithms = algorithms.to_vec();
        Self::new(cfg)
    }

    /// The server's 401: one header value per offered algorithm.
    fn challenge(&mut self, now: Duration, stale: bool) -> Result<(), AuthError> {
        let headers: Vec<String> = self
            .server
            .challenges(now, &mut self.rng, stale)
            .iter()
            .map(Challenge::to_string)
            .collect();
        self.client
            .handle_challenge(ChallengeKind::Www, headers.iter().map(String::as_str))
    }

    /// The client's credentials for `request` (one protection space: the registrar's).
    fn authorize(&mut self, request: &DigestRequest<'_>) -> Credentials {
        let mut all = self.client.authorize(&mut self.rng, request).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].kind.credentials_header(), "Authorization");
        all.remove(0).credentials
    }

    /// Client authorizes `request`, the header goes over the wire, the server verifies.
    fn send(
        &mut self,
        now: Duration,
        request: &DigestRequest<'_>,
    ) -> (Credentials, Result<Authorized, Denied>) {
        let creds = self.authorize(request);
        let wire = Credentials::parse(&creds.to_string()).unwrap();
        assert_eq!(wire, creds);
        let verdict = self.server.verify(now, request, &wire, USER, &self.secret);
        (creds, verdict)
    }
}

#[test]
fn round_trip_every_algorithm_with_nonce_reuse() {
    for alg in Algorithm::ALL {
        let mut h = Harness::with_algorithms(&[alg]);
        h.challenge(secs(0), false).unwrap();
        for (i, method) in ["REGISTER", "REGISTER", "SUBSCRIBE"]
            .into_iter()
            .enumerate()
        {
            let (creds, verdict) = h.send(secs(i as u64), &req(method));
            let ok = verdict.unwrap_or_else(|d| panic!("{alg}: request {i} denied: {d:?}"));
            assert_eq!(ok.algorithm, alg);
            assert_eq!(ok.nc, NonceCount(i as u32 + 1), "{alg}");
            assert_eq!(creds.algorithm, Some(AlgorithmParam::Known(alg)));
            h.client.handle_success();
        }
    }
}

#[test]
fn client_picks_strongest_offer_and_server_accepts_it() {
    let mut h =
        Harness::with_algorithms(&[Algorithm::Md5, Algorithm::Sha256, Algorithm::Sha512_256]);
    h.challenge(secs(0), false).unwrap();
    let (_, verdict) = h.send(secs(0), &req("REGISTER"));
    assert_eq!(verdict.unwrap().algorithm, Algorithm::Sha512_256);

    // A client holding only an MD5 HA1 answers the MD5 challenge instead.
    let ha1 = Ha1::compute(HashFamily::Md5, USER, REALM, &Password::new("s3cret"));
    h.client = DigestClient::new(USER, Secret::Ha1(ha1.clone()))
        .unwrap()
        .with_realm(REALM);
    h.challenge(secs(0), false).unwrap();
    let creds = h.authorize(&req("REGISTER"));
    assert_eq!(creds.algorithm(), Some(Algorithm::Md5));
    // The server can check it with the stored HA1 too.
    let ok = h
        .server
        .verify(secs(0), &req("REGISTER"), &creds, USER, &Secret::Ha1(ha1))
        .unwrap();
    assert_eq!(ok.username, USER);
}

#[test]
fn auth_int_and_userhash_round_trip() {
    let mut cfg = ServerConfig::new(REALM);
    cfg.qop = vec![Qop::AuthInt];
    cfg.userhash = true;
    let mut h = Harness::new(cfg);
    h.challenge(secs(0), false).unwrap();
    let body = DigestRequest {
        method: "MESSAGE",
        uri: "sip:bob@vigil.example",
        body: b"hello",
    };
    let (creds, verdict) = h.send(secs(1), &body);
    assert!(creds.userhash);
    assert_ne!(creds.username, USER);
    assert_eq!(verdict.unwrap().qop, Some(Qop::AuthInt));
    // The body is covered: the same credentials for another body are refused.
    let tampered = DigestRequest {
        body: b"hellO",
        ..body
    };
    let d = h
        .server
        .verify(secs(1), &tampered, &creds, USER, &h.secret)
        .unwrap_err();
    assert_eq!(d.reason, DenyReason::WrongResponse);
}

#[test]
fn expired_nonce_gets_stale_and_client_retries_once() {
    let mut h = Harness::with_algorithms(&[Algorithm::Sha256]);
    h.challenge(secs(0), false).unwrap();
    h.send(secs(0), &req("REGISTER")).1.unwrap();
    h.client.handle_success();
    // A refresh 10 minutes later reuses the nonce, which has expired (lifetime 300 s).
    let (_, verdict) = h.send(secs(600), &req("REGISTER"));
    let denied = verdict.unwrap_err();
    assert_eq!(
        (denied.reason, denied.stale),
        (DenyReason::NonceExpired, true)
    );
    h.challenge(secs(600), denied.stale).unwrap();
    let ok = h.send(secs(600), &req("REGISTER")).1.unwrap();
    assert_eq!(ok.nc, NonceCount(1));

    // An expired nonce with a wrong password is just wrong: no stale hint for a guesser.
    let mut wrong = h.authorize(&req("REGISTER"));
    wrong.response = Credentials::expected_response(
        &wrong,
        "REGISTER",
        b"",
        USER,
        &Secret::Password(Password::new("guess")),
    )
    .unwrap();
    let d = h
        .server
        .verify(secs(1200), &req("REGISTER"), &wrong, USER, &h.secret);
    assert_eq!(
        d.unwrap_err(),
        Denied {
            reason: DenyReason::WrongResponse,
            stale: false
        }
    );
}

#[test]
fn rfc2069_clients_get_one_use_per_nonce() {
    let mut cfg = ServerConfig::new(REALM);
    cfg.qop.clear();
    cfg.allow_rfc2069 = true;
    cfg.algorithms = vec![Algorithm::Md5];
    let mut h = Harness::new(cfg);
    h.challenge(secs(0), false).unwrap();
    assert_eq!(h.client.challenges().next().unwrap().1.qop, None);
    let (creds, ok) = h.send(secs(0), &req("REGISTER"));
    assert_eq!((creds.qop, creds.nc, creds.cnonce), (None, None, None));
    assert_eq!(ok.unwrap().qop, None);
    h.client.handle_success();
    // Without nc a reused nonce cannot be told from a replay: stale, and one retry.
    let denied = h.send(secs(1), &req("REGISTER")).1.unwrap_err();
    assert_eq!((denied.reason, denied.stale), (DenyReason::Replay, true));
    h.challenge(secs(1), true).unwrap();
    h.send(secs(1), &req("REGISTER")).1.unwrap();
}

#[test]
fn wrong_password_is_rejected_after_one_retry() {
    let mut h = Harness::with_algorithms(&[Algorithm::Sha256]);
    h.client = DigestClient::new(USER, Secret::Password(Password::new("wrong"))).unwrap();
    h.challenge(secs(0), false).unwrap();
    let denied = h.send(secs(0), &req("REGISTER")).1.unwrap_err();
    assert_eq!(
        (denied.reason, denied.stale),
        (DenyReason::WrongResponse, false)
    );
    // A fresh nonce without stale: the client gives up instead of looping.
    assert_eq!(h.challenge(secs(0), denied.stale), Err(AuthError::Rejected));
    assert_eq!(h.client.challenges().count(), 0);
}

#[test]
fn reused_nonce_refused_with_new_nonce_gets_one_retry() {
    let mut h = Harness::with_algorithms(&[Algorithm::Sha256]);
    h.challenge(secs(0), false).unwrap();
    h.send(secs(0), &req("REGISTER")).1.unwrap();
    h.client.handle_success();
    // The server lost its key (restart): the reused nonce is unknown, no stale flag.
    h.server = DigestServer::new(ServerConfig::new(REALM), ServerSecret::new([9; 32])).unwrap();
    let denied = h.send(secs(5), &req("REGISTER")).1.unwrap_err();
    assert_eq!(
        (denied.reason, denied.stale),
        (DenyReason::UnknownNonce, false)
    );
    h.challenge(secs(5), false).unwrap();
    h.send(secs(5), &req("REGISTER")).1.unwrap();
}

#[test]
fn key_rotation_moves_clients_on_without_failure() {
    let mut h = Harness::with_algorithms(&[Algorithm::Sha256]);
    h.challenge(secs(0), false).unwrap();
    h.send(secs(0), &req("REGISTER")).1.unwrap();
    h.client.handle_success();
    h.server.rotate_key(ServerSecret::new([1; 32]));
    let denied = h.send(secs(10), &req("REGISTER")).1.unwrap_err();
    assert_eq!(
        (denied.reason, denied.stale),
        (DenyReason::KeyRotated, true)
    );
    h.challenge(secs(10), true).unwrap();
    h.send(secs(10), &req("REGISTER")).1.unwrap();
    // Two rotations later the first nonce is simply unknown.
    let first = h.client.challenges().next().unwrap().1.clone();
    h.server.rotate_key(ServerSecret::new([2; 32]));
    h.server.rotate_key(ServerSecret::new([3; 32]));
    let creds = h.authorize(&req("REGISTER"));
    assert_eq!(creds.nonce, first.nonce);
    let d = h
        .server
        .verify(secs(11), &req("REGISTER"), &creds, USER, &h.secret);
    assert_eq!(d.unwrap_err().reason, DenyReason::UnknownNonce);
}

#[test]
fn endless_stale_is_cut_off() {
    let mut h = Harness::with_algorithms(&[Algorithm::Sha256]);
    h.challenge(secs(0), false).unwrap();
    for _ in 0..vigil_proto::auth::client::MAX_STALE {
        h.authorize(&req("REGISTER"));
        h.challenge(secs(0), true).unwrap();
    }
    h.authorize(&req("REGISTER"));
    assert_eq!(h.challenge(secs(0), true), Err(AuthError::TooManyStale));
}

#[test]
fn replays_and_old_counts_are_refused() {
    let mut h = Harness::with_algorithms(&[Algorithm::Md5]);
    h.challenge(secs(0), false).unwrap();
    let (creds, ok) = h.send(secs(1), &req("REGISTER"));
    ok.unwrap();
    // The very same header again: a replay, answered stale (the response itself was right).
    let again = h
        .server
        .verify(secs(2), &req("REGISTER"), &creds, USER, &h.secret)
        .unwrap_err();
    assert_eq!((again.reason, again.stale), (DenyReason::Replay, true));

    // Out-of-order arrival inside the window is fine, each count once.
    let c2 = h.authorize(&req("REGISTER"));
    let c3 = h.authorize(&req("REGISTER"));
    assert_eq!((c2.nc, c3.nc), (Some(NonceCount(2)), Some(NonceCount(3))));
    h.server
        .verify(secs(3), &req("REGISTER"), &c3, USER, &h.secret)
        .unwrap();
    h.server
        .verify(secs(3), &req("REGISTER"), &c2, USER, &h.secret)
        .unwrap();
    let d = h
        .server
        .verify(secs(3), &req("REGISTER"), &c2, USER, &h.secret)
        .unwrap_err();
    assert_eq!(d.reason, DenyReason::Replay);
    assert_eq!(h.server.tracked_nonces(), 1);
}

#[test]
fn replay_state_is_bounded_and_evicted_nonces_go_stale() {
    let mut cfg = ServerConfig::new(REALM);
    cfg.replay_capacity = 2;
    let mut h = Harness::new(cfg);
    let mut first = None;
    for t in 0..4 {
        h.client.reset();
        h.challenge(secs(t), false).unwrap();
        let (creds, ok) = h.send(secs(t), &req("REGISTER"));
        ok.unwrap();
        first.get_or_insert(creds);
        assert!(h.server.tracked_nonces() <= 2);
    }
    // The first nonce was evicted: even a correct, never-seen nc is answered stale.
    let mut old = first.unwrap();
    old.nc = Some(NonceCount(7));
    old.response = old
        .expected_response("REGISTER", b"", USER, &h.secret)
        .unwrap();
    let d = h
        .server
        .verify(secs(4), &req("REGISTER"), &old, USER, &h.secret)
        .unwrap_err();
    assert_eq!((d.reason, d.stale), (DenyReason::NonceEvicted, true));
}

#[test]
fn mismatches_and_downgrades_are_refused() {
    let mut h = Harness::with_algorithms(&[Algorithm::Sha256, Algorithm::Md5]);
    h.challenge(secs(0), false).unwrap();
    let good = h.authorize(&req("REGISTER"));
    let verify = |h: &mut Harness, c: &Credentials, uri: &str, user: &str| {
        let r = DigestRequest {
            method: "REGISTER",
            uri,
            body: b"",
        };
        h.server
            .verify(secs(0), &r, c, user, &h.secret)
            .unwrap_err()
            .reason
    };
    let uri = "sip:vigil.example";
    assert_eq!(
        verify(&mut h, &good, "sip:other.example", USER),
        DenyReason::UriMismatch
    );
    assert_eq!(
        verify(&mut h, &good, uri, "mallory"),
        DenyReason::UsernameMismatch
    );
    // With the URI check off, a digest-uri other than the Request-URI passes (SIPp style).
    let mut lax = Harness::with_algorithms(&[Algorithm::Sha256]);
    lax.server = {
        let mut cfg = ServerConfig::new(REALM);
        cfg.check_uri = false;
        DigestServer::new(cfg, ServerSecret::new([4; 32])).unwrap()
    };
    lax.challenge(secs(0), false).unwrap();
    let c = lax.authorize(&req("REGISTER"));
    let other = DigestRequest {
        uri: "sip:127.0.0.1:5060",
        ..req("REGISTER")
    };
    lax.server
        .verify(secs(0), &other, &c, USER, &lax.secret)
        .unwrap();
    let mut c = good.clone();
    c.realm = "elsewhere".into();
    assert_eq!(verify(&mut h, &c, uri, USER), DenyReason::RealmMismatch);
    // MD5 credentials (correctly computed) over the nonce of the SHA-256 challenge.
    let mut c = good.clone();
    c.algorithm = Some(AlgorithmParam::Known(Algorithm::Md5));
    c.response = c
        .expected_response("REGISTER", b"", USER, &h.secret)
        .unwrap();
    assert_eq!(verify(&mut h, &c, uri, USER), DenyReason::AlgorithmMismatch);
    // No algorithm means MD5; a SHA-256-only server refuses it outright.
    let mut sha_only = Harness::with_algorithms(&[Algorithm::Sha256]);
    sha_only.challenge(secs(0), false).unwrap();
    let mut c = sha_only.authorize(&req("REGISTER"));
    c.algorithm = None;
    c.response = c
        .expected_response("REGISTER", b"", USER, &sha_only.secret)
        .unwrap();
    assert_eq!(
        verify(&mut sha_only, &c, uri, USER),
        DenyReason::AlgorithmNotOffered
    );
    // Tampered nonce, missing qop, wrong response.
    let mut c = good.clone();
    c.nonce
        .replace_range(0..1, if c.nonce.starts_with('A') { "B" } else { "A" });
    assert_eq!(verify(&mut h, &c, uri, USER), DenyReason::UnknownNonce);
    let mut c = good.clone();
    (c.qop, c.nc, c.cnonce) = (None, None, None);
    assert_eq!(verify(&mut h, &c, uri, USER), DenyReason::QopMissing);
    let mut c = good.clone();
    c.response = "0".repeat(64);
    assert_eq!(verify(&mut h, &c, uri, USER), DenyReason::WrongResponse);
    // The good one still passes after all that.
    h.server
        .verify(secs(0), &req("REGISTER"), &good, USER, &h.secret)
        .unwrap();
}

#[test]
fn nonce_from_the_future_is_unknown() {
    let mut h = Harness::with_algorithms(&[Algorithm::Sha256]);
    h.challenge(secs(1000), false).unwrap();
    let creds = h.authorize(&req("REGISTER"));
    let d = h
        .server
        .verify(secs(900), &req("REGISTER"), &creds, USER, &h.secret)
        .unwrap_err();
    assert_eq!(d.reason, DenyReason::UnknownNonce);
    // Within the 30 s skew it is accepted.
    h.server
        .verify(secs(980), &req("REGISTER"), &creds, USER, &h.secret)
        .unwrap();
}

// ---------------------------------------------------------------------------------------
// Malformed input.

#[test]
fn malformed_challenges_are_typed_errors() {
    let mut client = DigestClient::new(USER, Secret::Password(Password::new("p"))).unwrap();
    type Expect = fn(&ParseError) -> bool;
    let cases: &[(&str, Expect)] = &[
        ("Digest realm=\"r, nonce=\"n", |e| {
            matches!(e, ParseError::InvalidChar { .. })
        }),
        ("Digest realm=\"r, nonce=n", |e| {
            matches!(e, ParseError::UnterminatedQuote { .. })
        }),
        ("Digest realm=\"r\"", |e| {
            *e == ParseError::MissingParam("nonce")
        }),
        ("Digest realm=r, nonce=n, nonce=m", |e| {
            *e == ParseError::DuplicateParam("nonce")
        }),
        ("Basic realm=\"r\"", |e| {
            matches!(e, ParseError::UnsupportedScheme { .. })
        }),
        ("\"Digest\"", |e| {
            matches!(e, ParseError::ExpectedScheme { .. })
        }),
        ("Digest ===", |e| {
            matches!(e, ParseError::InvalidChar { .. })
        }),
        ("", |e| *e == ParseError::Empty),
    ];
    for (value, expected) in cases {
        let err = Challenge::parse(value).unwrap_err();
        assert!(expected(&err), "{value:?} gave {err:?}");
        match client.handle_challenge(ChallengeKind::Www, [*value]) {
            Err(AuthError::NoUsableChallenge {
                parse_error: Some(e),
            }) => assert_eq!(e, err),
            other => panic!("{value:?}: {other:?}"),
        }
    }
    // A broken challenge beside a good one does not hide the good one.
    client
        .handle_challenge(
            ChallengeKind::Www,
            [
                "Basic realm=\"x\", Digest realm=\"r\", nonce=\"n\"",
                "Digest realm=\"r\"",
            ],
        )
        .unwrap();
    assert_eq!(client.challenges().next().unwrap().1.nonce, "n");
}
