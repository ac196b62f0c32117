//! Digest algorithms (RFC 7616 §3.4, RFC 8760) and the response computation.
//!
//! Everything here is a pure function of its inputs; both the client and the server call
//! `compute_response`, so they cannot disagree on the formula.

use std::fmt;

use md5::Md5;
use sha2::{Digest, Sha256, Sha512_256};
use zeroize::Zeroizing;

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
        fn run<D: Digest>(parts: &[&[u8]]) -> Zeroizing<String> {
            let mut d = D::new();
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    d.update(b":");
                }
                d.update(p);
            }
            let out = Zeroizing::new(d.finalize().to_vec());
            Zeroizing::new(hex::encode(&*out))
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
    pub ha1: &'a Ha1,
    pub nonce: &'a str,
    pub method: &'a str,
    pub uri: &'a str,
    /// `None` is the RFC 2069 compatibility form (no qop, nc, cnonce).
    pub qop: Option<Qop>,
    /// The qop text as sent, which is what the hash covers (ABNF literals are
    /// case-insensitive, so a peer may send `AUTH`); `None` means `qop.as_str()`.
    pub qop_text: Option<&'a str>,
    /// Eight lowercase hex digits, present with qop.
    pub nc: &'a str,
    pub cnonce: &'a str,
    /// Entity body, used by qop=auth-int only.
    pub body: &'a [u8],
}

/// The `response` value, lowercase hex, or `None` when `ha1` is for another hash family.
pub(crate) fn compute_response(i: &ResponseInput<'_>) -> Option<Zeroizing<String>> {
    let h = i.algorithm.hash();
    if i.ha1.family() != h {
        return None;
    }
    let ha1 = if i.algorithm.is_sess() {
        h.hex_joined(&[
            i.ha1.hex().as_bytes(),
            i.nonce.as_bytes(),
            i.cnonce.as_bytes(),
        ])
    } else {
        Zeroizing::new(i.ha1.hex().to_owned())
    };
    let ha2 = match i.qop {
        Some(Qop::AuthInt) => {
            let body = h.hex_joined(&[i.body]);
            h.hex_joined(&[i.method.as_bytes(), i.uri.as_bytes(), body.as_bytes()])
        }
        _ => h.hex_joined(&[i.method.as_bytes(), i.uri.as_bytes()]),
    };
    Some(match &i.qop {
        None => h.hex_joined(&[ha1.as_bytes(), i.nonce.as_bytes(), ha2.as_bytes()]),
        Some(q) => h.hex_joined(&[
            ha1.as_bytes(),
            i.nonce.as_bytes(),
            i.nc.as_bytes(),
            i.cnonce.as_bytes(),
            i.qop_text.unwrap_or(q.as_str()).as_bytes(),
            ha2.as_bytes(),
        ]),
    })
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
