//! JWT signing for push credentials, with ring.
//!
//! - APNs provider tokens: ES256 over a P-256 `.p8` key (PKCS#8), header `alg`+`kid`,
//!   claims `iss` (team id) and `iat`.
//! - FCM OAuth2 grants: RS256 over the service account's PKCS#8 RSA key, claims `iss`,
//!   `scope`, `aud` (the key file's `token_uri`), `iat`, `exp`.
//!
//! Key material stays inside the signer types, whose `Debug` shows only public ids.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256,
};
use serde_json::{json, Value};

use super::{ClientError, Secret};

fn pkcs8_from_pem(pem: &Secret) -> Result<Vec<u8>, ClientError> {
    match rustls_pemfile::private_key(&mut pem.expose().as_bytes()) {
        Ok(Some(rustls::pki_types::PrivateKeyDer::Pkcs8(der))) => {
            Ok(der.secret_pkcs8_der().to_vec())
        }
        Ok(Some(_)) => Err(ClientError::Credential("key is not PKCS#8")),
        _ => Err(ClientError::Credential("no PKCS#8 private key in PEM")),
    }
}

fn encode(
    header: &Value,
    claims: &Value,
    sign: impl FnOnce(&[u8]) -> Result<Vec<u8>, ClientError>,
) -> Result<String, ClientError> {
    let mut out = URL_SAFE_NO_PAD.encode(header.to_string());
    out.push('.');
    out.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string()));
    let sig = sign(out.as_bytes())?;
    out.push('.');
    out.push_str(&URL_SAFE_NO_PAD.encode(sig));
    Ok(out)
}

/// Signs APNs provider tokens.
pub struct Es256Signer {
    key: EcdsaKeyPair,
    key_id: String,
    team_id: String,
    rng: SystemRandom,
}

impl fmt::Debug for Es256Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Es256Signer")
            .field("key_id", &self.key_id)
            .field("team_id", &self.team_id)
            .finish_non_exhaustive()
    }
}

impl Es256Signer {
    /// Loads a `.p8` key (PEM `PRIVATE KEY`, P-256).
    pub fn from_p8(p8_pem: &Secret, key_id: &str, team_id: &str) -> Result<Self, ClientError> {
        let der = pkcs8_from_pem(p8_pem)?;
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng)
            .map_err(|_| ClientError::Credential("not a P-256 PKCS#8 key"))?;
        Ok(Self {
            key,
            key_id: key_id.to_owned(),
            team_id: team_id.to_owned(),
            rng,
        })
    }

    /// The team id (`iss`).
    pub fn team_id(&self) -> &str {
        &self.team_id
    }

    /// A provider token issued at `iat` (Unix seconds).
    pub fn provider_token(&self, iat: u64) -> Result<Secret, ClientError> {
        let header = json!({"alg": "ES256", "kid": self.key_id});
        let claims = json!({"iss": self.team_id, "iat": iat});
        encode(&header, &claims, |input| {
            self.key
                .sign(&self.rng, input)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| ClientError::Credential("ECDSA signing failed"))
        })
        .map(Secret::new)
    }
}

/// Signs FCM service-account grants.
pub struct Rs256Signer {
    key: RsaKeyPair,
    key_id: Option<String>,
    rng: SystemRandom,
}

impl fmt::Debug for Rs256Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rs256Signer")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl Rs256Signer {
    /// Loads a PKCS#8 RSA key from PEM (the service account's `private_key`).
    pub fn from_pem(pem: &Secret, key_id: Option<&str>) -> Result<Self, ClientError> {
        let der = pkcs8_from_pem(pem)?;
        let key = RsaKeyPair::from_pkcs8(&der)
            .map_err(|_| ClientError::Credential("not an RSA PKCS#8 key"))?;
        Ok(Self {
            key,
            key_id: key_id.map(str::to_owned),
            rng: SystemRandom::new(),
        })
    }

    /// A signed JWT with `claims`.
    pub fn sign(&self, claims: &Value) -> Result<Secret, ClientError> {
        let header = match &self.key_id {
            Some(kid) => json!({"alg": "RS256", "typ": "JWT", "kid": kid}),
            None => json!({"alg": "RS256", "typ": "JWT"}),
        };
        encode(&header, claims, |input| {
            let mut sig = vec![0; self.key.public().modulus_len()];
            self.key
                .sign(&RSA_PKCS1_SHA256, &self.rng, input, &mut sig)
                .map_err(|_| ClientError::Credential("RSA signing failed"))?;
            Ok(sig)
        })
        .map(Secret::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{KeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};

    fn p8() -> (Secret, Vec<u8>) {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref(), &rng).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(doc.as_ref());
        let pem = format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n");
        (Secret::new(pem), pair.public_key().as_ref().to_vec())
    }

    #[test]
    fn es256_token_verifies() {
        let (pem, public) = p8();
        let s = Es256Signer::from_p8(&pem, "KEY123", "TEAM45").unwrap();
        let tok = s.provider_token(1_700_000_000).unwrap();
        let parts: Vec<_> = tok.expose().split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        let claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(header, json!({"alg": "ES256", "kid": "KEY123"}));
        assert_eq!(claims, json!({"iss": "TEAM45", "iat": 1_700_000_000u64}));
        let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        let signed = format!("{}.{}", parts[0], parts[1]);
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &public)
            .verify(signed.as_bytes(), &sig)
            .unwrap();
        assert!(!format!("{s:?}").contains("BEGIN"));
        assert!(Es256Signer::from_p8(&Secret::new("nope"), "k", "t").is_err());
    }
}
