//! Compact JWS parsing and verification for the two token formats the mocks check:
//! APNs provider tokens (ES256) and Google service-account grants (RS256).
//!
//! Verification uses `ring` directly; only the algorithms the real services accept are
//! supported, so a client that signs with anything else is rejected as it would be by Apple
//! or Google.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256};
use serde_json::{Map, Value};

/// Longest token accepted; both real token kinds are well under 2 KiB.
const MAX_JWT_LEN: usize = 8 * 1024;

/// Why a JWT was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JwtError {
    /// Not three base64url parts of JSON objects.
    Malformed,
    /// The signature does not verify with the key.
    BadSignature,
}

/// A parsed, not yet verified, JWT.
pub(crate) struct Jwt {
    pub(crate) header: Map<String, Value>,
    pub(crate) claims: Map<String, Value>,
    signing_input: Vec<u8>,
    signature: Vec<u8>,
}

impl Jwt {
    pub(crate) fn parse(token: &str) -> Result<Self, JwtError> {
        if token.len() > MAX_JWT_LEN {
            return Err(JwtError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };
        let object = |part: &str| -> Result<Map<String, Value>, JwtError> {
            let raw = URL_SAFE_NO_PAD
                .decode(part)
                .map_err(|_| JwtError::Malformed)?;
            match serde_json::from_slice(&raw) {
                Ok(Value::Object(map)) => Ok(map),
                _ => Err(JwtError::Malformed),
            }
        };
        Ok(Self {
            header: object(h)?,
            claims: object(c)?,
            signing_input: token.as_bytes()[..h.len() + 1 + c.len()].to_vec(),
            signature: URL_SAFE_NO_PAD.decode(s).map_err(|_| JwtError::Malformed)?,
        })
    }

    pub(crate) fn header_str(&self, name: &str) -> Option<&str> {
        self.header.get(name).and_then(Value::as_str)
    }

    pub(crate) fn claim_str(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    /// A numeric claim (`iat`, `exp`), which JWTs carry as JSON numbers.
    pub(crate) fn claim_u64(&self, name: &str) -> Option<u64> {
        self.claims.get(name).and_then(Value::as_u64)
    }

    /// Verifies an ES256 signature (raw 64-byte r‖s, as JWS requires) against an uncompressed
    /// SEC1 P-256 point.
    pub(crate) fn verify_es256(&self, sec1_point: &[u8]) -> Result<(), JwtError> {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, sec1_point)
            .verify(&self.signing_input, &self.signature)
            .map_err(|_| JwtError::BadSignature)
    }

    /// Verifies an RS256 signature against a PKCS#1 `RSAPublicKey` DER.
    pub(crate) fn verify_rs256(&self, pkcs1_der: &[u8]) -> Result<(), JwtError> {
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, pkcs1_der)
            .verify(&self.signing_input, &self.signature)
            .map_err(|_| JwtError::BadSignature)
    }
}

/// Builds a compact JWS: `sign` gets the signing input and returns the raw signature.
pub(crate) fn encode(
    header: &Value,
    claims: &Value,
    sign: impl FnOnce(&[u8]) -> Vec<u8>,
) -> String {
    let mut token = URL_SAFE_NO_PAD.encode(header.to_string());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string()));
    let signature = sign(token.as_bytes());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(signature));
    token
}
