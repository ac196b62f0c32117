//! Digest algorithms (RFC 7616 §3.4, RFC 8760) and the response computation.
//!
//! Everything here is a pure function of its inputs; both the client and the server call
//! `compute_response`, so they cannot disagree on the formula.

use std::fmt;

use md5::Md5;
use sha2::{Digest, Sha256, Sha512_256};
use zeroize::{Zeroize, Zeroizing};

use super::{Ha1, Password, Qop};

/// The hash function under an algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HashFamily {
    /// MD5, 128-bit output; kept for the many SIP servers that offer nothing else.
    Md5,
    /// SHA-256.
    Sha256,
    /// SHA-512/256 (SHA-512 with its own IV, truncated to 256 bits).
    Sha512_256,
}

impl HashFamily {
    /// Lowercase hex of `H(parts[0] ":" parts[1] ":" …)`.
    pub(crate) fn hex_joined(self, parts: &[&[u8]]) -> Zeroizing<String> {
        Zeroizing::new(self.hex_digest(parts).as_str().to_owned())
    }

    /// [`Self::hex_joined`] into a stack buffer: the hot REGISTER path hashes three times per
    /// request, and a `String` per hash (with `hex`'s char-by-char collection) cost more than
    /// the hashing itself.
    pub(crate) fn hex_digest(self, parts: &[&[u8]]) -> HexDigest {
        fn run<D: Digest>(parts: &[&[u8]]) -> HexDigest {
            let mut d = D::new();
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    d.update(b":");
                }
                d.update(p);
            }
            let mut raw = d.finalize();
            let out = HexDigest::encode(&raw);
            raw.as_mut_slice().zeroize();
            out
        }
        match self {
            Self::Md5 => run::<Md5>(parts),
            Self::Sha256 => run::<Sha256>(parts),
            Self::Sha512_256 => run::<Sha512_256>(parts),
        }
    }

    /// Output length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            Self::Md5 => 16,
            Self::Sha256 | Self::Sha512_256 => 32,
        }
    }
}

/// A digest in lowercase hex, on the stack (at most 32 bytes of output, so 64 digits). It
/// may be an HA1, which is password-equivalent, so it is wiped when dropped.
#[derive(Clone)]
pub(crate) struct HexDigest {
    buf: [u8; 64],
    len: u8,
}

impl HexDigest {
    fn encode(raw: &[u8]) -> Self {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut buf = [0u8; 64];
        let n = raw.len().min(32);
        for (i, &b) in raw[..n].iter().enumerate() {
            buf[2 * i] = DIGITS[usize::from(b >> 4)];
            buf[2 * i + 1] = DIGITS[usize::from(b & 15)];
        }
        Self {
            buf,
            len: (2 * n) as u8,
        }
    }

    /// The hex digits as bytes (what the next hash takes), without a UTF-8 check.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII hex digits were written.
        std::str::from_utf8(&self.buf[..usize::from(self.len)]).unwrap_or("")
    }
}

impl Drop for HexDigest {
    fn drop(&mut self) {
        // `encode` writes only the digits (an MD5 digest fills half the buffer); the rest
        // is still zero, and wiping it too cost as much again per digest.
        let len = usize::from(self.len).min(self.buf.len());
        self.buf[..len].zeroize();
    }
}

/// A Digest algorithm this crate implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// `MD5` (also what an absent `algorithm` parameter means).
    Md5,
    /// `MD5-sess`.
    Md5Sess,
    /// `SHA-256`.
    Sha256,
    /// `SHA-256-sess`.
    Sha256Sess,
    /// `SHA-512-256`.
    Sha512_256,
    /// `SHA-512-256-sess`.
    Sha512_256Sess,
}

impl Algorithm {
    /// Every supported algorithm, strongest first.
    pub const ALL: [Algorithm; 6] = [
        Self::Sha512_256,
        Self::Sha512_256Sess,
        Self::Sha256,
        Self::Sha256Sess,
        Self::Md5,
        Self::Md5Sess,
    ];

    /// The name used in the `algorithm` parameter.
    pub fn name(self) -> &'static str {
        match self {
            Self::Md5 => "MD5",
            Self::Md5Sess => "MD5-sess",
            Self::Sha256 => "SHA-256",
            Self::Sha256Sess => "SHA-256-sess",
            Self::Sha512_256 => "SHA-512-256",
            Self::Sha512_256Sess => "SHA-512-256-sess",
        }
    }

    /// Looks a name up case-insensitively (RFC 7616 §3.3 says algorithm names are).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name))
    }

    /// The underlying hash function.
    pub fn hash(self) -> HashFamily {
        match self {
            Self::Md5 | Self::Md5Sess => HashFamily::Md5,
            Self::Sha256 | Self::Sha256Sess => HashFamily::Sha256,
            Self::Sha512_256 | Self::Sha512_256Sess => HashFamily::Sha512_256,
        }
    }

    /// True for the `-sess` variants, whose HA1 also covers nonce and cnonce.
    pub fn is_sess(self) -> bool {
        matches!(
            self,
            Self::Md5Sess | Self::Sha256Sess | Self::Sha512_256Sess
        )
    }

    /// Preference rank, higher is stronger: SHA-512-256 > SHA-256 > MD5 (the algorithms
    /// RFC 8760 brings to SIP, strongest first).
    pub fn strength(self) -> u8 {
        match self.hash() {
            HashFamily::Sha512_256 => 3,
            HashFamily::Sha256 => 2,
            HashFamily::Md5 => 1,
        }
    }

    /// A one-byte id for binding nonces to the algorithm they were issued for.
    pub(crate) fn id(self) -> u8 {
        match self {
            Self::Md5 => 1,
            Self::Md5Sess => 2,
            Self::Sha256 => 3,
            Self::Sha256Sess => 4,
            Self::Sha512_256 => 5,
            Self::Sha512_256Sess => 6,
        }
    }

    pub(crate) fn from_id(id: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.id() == id)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The `algorithm` parameter as received: one we implement, or any other token (such as the
/// IMS `AKAv1-MD5`), kept so that printing round-trips and selection can skip it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AlgorithmParam {
    /// An algorithm this crate implements.
    Known(Algorithm),
    /// Anything else, verbatim.
    Unsupported(String),
}

impl AlgorithmParam {
    /// Classifies a received value.
    pub fn parse(value: &str) -> Self {
        match Algorithm::from_name(value) {
            Some(a) => Self::Known(a),
            None => Self::Unsupported(value.to_owned()),
        }
    }

    /// The text to print.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Known(a) => a.name(),
            Self::Unsupported(s) => s,
        }
    }

    /// The algorithm an optional parameter means: absent is MD5 (RFC 7616 §3.3).
    pub fn effective(param: Option<&Self>) -> Option<Algorithm> {
        match param {
            None => Some(Algorithm::Md5),
            Some(Self::Known(a)) => Some(*a),
            Some(Self::Unsupported(_)) => None,
        }
    }
}

/// Inputs of one response computation.
pub(crate) struct ResponseInput<'a> {
    pub algorithm: Algorithm,
    /// HA1 of the base hash, `H(username ":" realm ":" password)`, lowercase hex.
    pub ha1: &'a [u8],
    /// The hash family `ha1` was computed with.
    pub ha1_family: HashFamily,
    pub nonce: &'a str,
    pub method: &'a str,
    pub uri: &'a str,
    /// `None` is the RFC 2069 compatibility form (no qop, nc, cnonce).
    pub qop: Option<Qop>,
    /// The qop text as sent, which is what the hash covers (ABNF literals are
    /// case-insensitive, so a peer may send `AUTH`); `None` means `qop.as_str()`.
    pub qop_text: Option<&'a str>,
    /// Eight lowercase hex digits, present with qop.
    pub nc: &'a [u8],
    pub cnonce: &'a str,
    /// Entity body, used by qop=auth-int only.
    pub body: &'a [u8],
}

/// The `response` value, lowercase hex, or `None` when `ha1` is for another hash family.
pub(crate) fn compute_response(i: &ResponseInput<'_>) -> Option<Zeroizing<String>> {
    if i.ha1_family != i.algorithm.hash() {
        return None;
    }
    let r = response_digest(i);
    Some(Zeroizing::new(r.as_str().to_owned()))
}

/// The `response` formula of RFC 7616 §3.4.1, every intermediate on the stack. The caller
/// has checked that `i.ha1` is of `i.algorithm`'s hash family.
pub(crate) fn response_digest(i: &ResponseInput<'_>) -> HexDigest {
    response_digest_with_ha2(i, &ha2(i))
}

/// HA2 of `i` (RFC 7616 §3.4.3): `H(method ":" uri)`, with `":" H(body)` for qop=auth-int.
pub(crate) fn ha2(i: &ResponseInput<'_>) -> HexDigest {
    let h = i.algorithm.hash();
    match i.qop {
        Some(Qop::AuthInt) => {
            let body = h.hex_digest(&[i.body]);
            h.hex_digest(&[i.method.as_bytes(), i.uri.as_bytes(), body.as_bytes()])
        }
        _ => h.hex_digest(&[i.method.as_bytes(), i.uri.as_bytes()]),
    }
}

/// [`response_digest`] given `ha2`, which must be [`ha2`] of `i` (a caller that answers many
/// challenges for one method and URI computes it once: it holds nothing secret).
pub(crate) fn response_digest_with_ha2(i: &ResponseInput<'_>, ha2: &HexDigest) -> HexDigest {
    let algorithm = i.algorithm;
    let ha1_hex = i.ha1;
    let h = algorithm.hash();
    let sess;
    let ha1 = if algorithm.is_sess() {
        sess = h.hex_digest(&[ha1_hex, i.nonce.as_bytes(), i.cnonce.as_bytes()]);
        sess.as_bytes()
    } else {
        ha1_hex
    };
    match &i.qop {
        None => h.hex_digest(&[ha1, i.nonce.as_bytes(), ha2.as_bytes()]),
        Some(q) => h.hex_digest(&[
            ha1,
            i.nonce.as_bytes(),
            i.nc,
            i.cnonce.as_bytes(),
            i.qop_text.unwrap_or(q.as_str()).as_bytes(),
            ha2.as_bytes(),
        ]),
    }
}

/// `H(username ":" realm)`, the hashed username of RFC 7616 §3.4.4.
pub(crate) fn userhash(h: HashFamily, username: &str, realm: &str) -> String {
    h.hex_joined(&[username.as_bytes(), realm.as_bytes()])
        .to_string()
}

/// HA1 from a password.
pub(crate) fn ha1_from_password(h: HashFamily, user: &str, realm: &str, pw: &Password) -> Ha1 {
    let hex = h.hex_joined(&[user.as_bytes(), realm.as_bytes(), pw.expose().as_bytes()]);
    Ha1::from_trusted_hex(h, hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_case_insensitively() {
        for a in Algorithm::ALL {
            assert_eq!(Algorithm::from_name(a.name()), Some(a));
            assert_eq!(
                Algorithm::from_name(&a.name().to_ascii_lowercase()),
                Some(a)
            );
            assert_eq!(Algorithm::from_id(a.id()), Some(a));
        }
        assert_eq!(Algorithm::from_name("AKAv1-MD5"), None);
        assert_eq!(AlgorithmParam::effective(None), Some(Algorithm::Md5));
    }

    /// Dropping wipes the digits; the untouched tail was never written.
    #[test]
    fn hex_digest_holds_only_its_digits() {
        let d = HashFamily::Md5.hex_digest(&[b"abc"]);
        assert_eq!(d.as_str(), "900150983cd24fb0d6963f7d28e17f72");
        assert!(d.buf[32..].iter().all(|&b| b == 0));
    }

    #[test]
    fn hash_lengths_match_families() {
        for a in Algorithm::ALL {
            let hex = a.hash().hex_joined(&[b"x"]);
            assert_eq!(hex.len(), 2 * a.hash().output_len(), "{a}");
        }
        // SHA-512/256("abc"), FIPS 180-4 example.
        assert_eq!(
            HashFamily::Sha512_256.hex_joined(&[b"abc"]).as_str(),
            "53048e2681941ef99b2e29b76b4c7dabe4c2d0c634fc6d46e0e2f13107e7af23"
        );
    }
}
