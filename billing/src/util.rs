//! Small shared pieces: E.164 numbers, random secrets, MACs and the SIP digest hashes.

use std::fmt;

use rand::Rng;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// A validated E.164 number, stored as its digits without the `+` (as in `12065552453@pstn`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct E164(String);

impl E164 {
    /// Parses `+12065552453` or `12065552453`; spaces, dashes, dots and parentheses are ignored.
    /// E.164 allows at most 15 digits and no leading zero; fewer than 8 is not a real number.
    pub fn parse(input: &str) -> Option<E164> {
        let trimmed = input.trim();
        let rest = trimmed.strip_prefix('+').unwrap_or(trimmed);
        let mut digits = String::with_capacity(15);
        for c in rest.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' | '.' | '(' | ')' => {}
                _ => return None,
            }
            if digits.len() > 15 {
                return None;
            }
        }
        if digits.len() < 8 || digits.starts_with('0') {
            return None;
        }
        Some(E164(digits))
    }

    /// Parses a request field, naming it in the error.
    pub fn parse_field(input: &str, field: &'static str) -> Result<E164, ApiError> {
        E164::parse(input).ok_or_else(|| {
            ApiError::invalid(
                "invalid_e164",
                field,
                "expected an E.164 number such as +12065552453",
            )
        })
    }

    /// The digits without `+`.
    pub fn digits(&self) -> &str {
        &self.0
    }

    /// `+digits`.
    pub fn plus(&self) -> String {
        format!("+{}", self.0)
    }

    /// The PortaBilling-style alias `digits@pstn`.
    pub fn alias(&self) -> String {
        format!("{}@pstn", self.0)
    }

    /// Hex SHA-256 of `+digits`, the form smart contacts match against.
    pub fn contact_hash(&self) -> String {
        hex::encode(Sha256::digest(self.plus().as_bytes()))
    }
}

/// Logs show only the last three digits: phone numbers are personal data.
impl fmt::Debug for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tail = &self.0[self.0.len().saturating_sub(3)..];
        write!(f, "+…{tail}")
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A random token of `bytes` bytes, URL-safe base64 without padding.
pub fn random_token(bytes: usize) -> String {
    use base64::Engine;
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill(buf.as_mut_slice());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// A random SIP password: 20 characters from an alphabet without look-alikes.
pub fn random_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rngs::OsRng;
    (0..20)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

/// A uniformly random 6-digit code.
pub fn random_otp() -> String {
    format!("{:06}", rand::rngs::OsRng.gen_range(0..1_000_000u32))
}

/// HMAC-SHA256 (RFC 2104) as hex. Codes and CAPTCHA answers are stored only as MACs under the
/// server key: a leaked database does not give away live codes, and without the key the 10^6
/// code space cannot be searched offline.
pub fn hmac_hex(key: &[u8], parts: &[&str]) -> String {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            inner.update([0u8]);
        }
        inner.update(p.as_bytes());
    }
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    hex::encode(outer.finalize())
}

/// Hex SHA-256, for session tokens at rest.
pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Equality that takes the same time wherever the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Kamailio's `ha1` = MD5(user:realm:password) and `ha1b` = MD5(user@domain:realm:password).
pub fn sip_ha1(user: &str, domain: &str, password: &str) -> (String, String) {
    use md5::Md5;
    let ha1 = hex::encode(Md5::digest(
        format!("{user}:{domain}:{password}").as_bytes(),
    ));
    let ha1b = hex::encode(Md5::digest(
        format!("{user}@{domain}:{domain}:{password}").as_bytes(),
    ));
    (ha1, ha1b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164_accepts_and_rejects() {
        assert_eq!(
            E164::parse("+1 (206) 555-2453").map(|e| e.plus()),
            Some("+12065552453".into())
        );
        assert_eq!(
            E164::parse("12065552453").map(|e| e.alias()),
            Some("12065552453@pstn".into())
        );
        for bad in [
            "",
            "+",
            "+0123456789",
            "1234567",
            "+1234567890123456",
            "+1206555245a",
            "++1206555",
        ] {
            assert!(E164::parse(bad).is_none(), "{bad} accepted");
        }
        assert_eq!(
            format!("{:?}", E164::parse("+12065552453").expect("valid")),
            "+…453"
        );
    }

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            hmac_hex(b"Jefe", &["what do ya want for nothing?"]),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn otp_is_six_digits() {
        for _ in 0..100 {
            let c = random_otp();
            assert_eq!(c.len(), 6);
            assert!(c.bytes().all(|b| b.is_ascii_digit()));
        }
    }
}
