//! Signing keys for tests and the CLI: APNs `.p8` keys (ES256) and FCM service accounts
//! (RSA 2048), and the public halves the mocks trust.
//!
//! The signing helpers exist so tests (and `h2load`, which cannot sign) can produce valid
//! tokens; the gateway's own clients sign with their own code.

use crate::mock::jwt;
use rand_chacha::rand_core::SeedableRng;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{EcdsaKeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use rsa::pkcs1::EncodeRsaPublicKey;
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, LineEnding};
use serde_json::json;

/// Why a key could not be generated or loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The bytes are not a key in any supported encoding.
    #[error("unsupported or malformed key encoding")]
    Malformed,
    /// The key is of the wrong type or curve (APNs needs P-256, FCM RSA ≥ 2048 bits).
    #[error("wrong key type: {0}")]
    WrongType(&'static str),
    /// The service-account JSON lacks a field or is not JSON.
    #[error("bad service-account JSON: {0}")]
    BadServiceAccount(&'static str),
    /// Key generation failed.
    #[error("key generation failed")]
    Generate,
}

/// DER prefix of a P-256 SubjectPublicKeyInfo; the 65-byte SEC1 point follows it.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// An APNs signing key the mock trusts: which team and key id it belongs to, and its
/// public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApnsKey {
    /// Apple team id (the JWT `iss`).
    pub team_id: String,
    /// Key id (the JWT header `kid`).
    pub key_id: String,
    /// Uncompressed SEC1 P-256 point (65 bytes, starting 0x04).
    pub public_key: Vec<u8>,
}

impl ApnsKey {
    /// Loads the public key from a raw SEC1 point, a SubjectPublicKeyInfo (DER or
    /// `PUBLIC KEY` PEM), or the `.p8` private key itself (`PRIVATE KEY` PEM or PKCS#8 DER).
    pub fn from_public_key(team_id: &str, key_id: &str, encoded: &[u8]) -> Result<Self, KeyError> {
        let public_key = p256_public_key(encoded)?;
        Ok(Self {
            team_id: team_id.to_owned(),
            key_id: key_id.to_owned(),
            public_key,
        })
    }
}

fn p256_public_key(encoded: &[u8]) -> Result<Vec<u8>, KeyError> {
    if encoded.starts_with(b"-----BEGIN") {
        let block = pem::parse(encoded).map_err(|_| KeyError::Malformed)?;
        return match block.tag() {
            "PUBLIC KEY" => spki_point(block.contents()),
            "PRIVATE KEY" => pkcs8_point(block.contents()),
            _ => Err(KeyError::Malformed),
        };
    }
    if encoded.len() == 65 && encoded[0] == 0x04 {
        return Ok(encoded.to_vec());
    }
    spki_point(encoded).or_else(|_| pkcs8_point(encoded))
}

fn spki_point(der: &[u8]) -> Result<Vec<u8>, KeyError> {
    match der.strip_prefix(&P256_SPKI_PREFIX[..]) {
        Some(point) if point.len() == 65 && point[0] == 0x04 => Ok(point.to_vec()),
        _ => Err(KeyError::WrongType("expected a P-256 public key")),
    }
}

fn pkcs8_point(der: &[u8]) -> Result<Vec<u8>, KeyError> {
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &SystemRandom::new())
            .map_err(|_| KeyError::WrongType("expected a P-256 PKCS#8 key"))?;
    Ok(pair.public_key().as_ref().to_vec())
}

/// An APNs token-auth signing key, as Apple hands it out (`AuthKey_<KEYID>.p8`).
pub struct ApnsSigningKey {
    /// Apple team id.
    pub team_id: String,
    /// Key id.
    pub key_id: String,
    pkcs8: Vec<u8>,
    pair: EcdsaKeyPair,
}

impl std::fmt::Debug for ApnsSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApnsSigningKey")
            .field("team_id", &self.team_id)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl ApnsSigningKey {
    /// Generates a fresh P-256 key.
    pub fn generate(team_id: &str, key_id: &str) -> Result<Self, KeyError> {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| KeyError::Generate)?;
        Self::from_pkcs8(team_id, key_id, doc.as_ref())
    }

    /// Loads a `.p8` file's contents (PEM `PRIVATE KEY`).
    pub fn from_p8_pem(team_id: &str, key_id: &str, pem_text: &str) -> Result<Self, KeyError> {
        let block = pem::parse(pem_text).map_err(|_| KeyError::Malformed)?;
        if block.tag() != "PRIVATE KEY" {
            return Err(KeyError::Malformed);
        }
        Self::from_pkcs8(team_id, key_id, block.contents())
    }

    fn from_pkcs8(team_id: &str, key_id: &str, der: &[u8]) -> Result<Self, KeyError> {
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &SystemRandom::new())
                .map_err(|_| KeyError::WrongType("expected a P-256 PKCS#8 key"))?;
        Ok(Self {
            team_id: team_id.to_owned(),
            key_id: key_id.to_owned(),
            pkcs8: der.to_vec(),
            pair,
        })
    }

    /// The `.p8` file contents: PKCS#8 in a `PRIVATE KEY` PEM block.
    pub fn p8_pem(&self) -> String {
        pem::encode(&pem::Pem::new("PRIVATE KEY", self.pkcs8.clone()))
    }

    /// The public half, to configure the mock with.
    pub fn public_key(&self) -> ApnsKey {
        ApnsKey {
            team_id: self.team_id.clone(),
            key_id: self.key_id.clone(),
            public_key: self.pair.public_key().as_ref().to_vec(),
        }
    }

    /// A provider token (ES256 JWT) issued at `iat` (Unix seconds).
    pub fn provider_token(&self, iat: u64) -> String {
        let header = json!({"alg": "ES256", "kid": self.key_id});
        let claims = json!({"iss": self.team_id, "iat": iat});
        jwt::encode(&header, &claims, |input| {
            self.pair
                .sign(&SystemRandom::new(), input)
                .map(|sig| sig.as_ref().to_vec())
                // Signing with a key ring itself loaded only fails if the system RNG does.
                .expect("ECDSA signing needs a working system RNG")
        })
    }
}

/// A service account the mock FCM trusts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FcmTrustedAccount {
    /// The account's `client_email` (the grant JWT's `iss`).
    pub client_email: String,
    /// The Firebase project the account may send for.
    pub project_id: String,
    /// PKCS#1 `RSAPublicKey` DER.
    pub public_key: Vec<u8>,
}

impl FcmTrustedAccount {
    /// Builds the trusted half from a service-account JSON file's contents.
    pub fn from_service_account_json(json_text: &str) -> Result<Self, KeyError> {
        Ok(FcmServiceAccount::from_json(json_text)?.trusted())
    }

    /// Builds the trusted half from a `PUBLIC KEY` (SPKI) PEM.
    pub fn from_public_key_pem(
        client_email: &str,
        project_id: &str,
        pem_text: &str,
    ) -> Result<Self, KeyError> {
        let key =
            rsa::RsaPublicKey::from_public_key_pem(pem_text).map_err(|_| KeyError::Malformed)?;
        let der = key.to_pkcs1_der().map_err(|_| KeyError::Malformed)?;
        Ok(Self {
            client_email: client_email.to_owned(),
            project_id: project_id.to_owned(),
            public_key: der.as_bytes().to_vec(),
        })
    }
}

/// A Google service account with its private key, as in the JSON file Google hands out.
pub struct FcmServiceAccount {
    /// `client_email`.
    pub client_email: String,
    /// `project_id`.
    pub project_id: String,
    /// `private_key_id`.
    pub private_key_id: String,
    private_key_pem: String,
    public_key_pkcs1: Vec<u8>,
    pair: RsaKeyPair,
}

impl std::fmt::Debug for FcmServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FcmServiceAccount")
            .field("client_email", &self.client_email)
            .field("project_id", &self.project_id)
            .finish_non_exhaustive()
    }
}

impl FcmServiceAccount {
    /// Generates an account with a fresh RSA-2048 key. Takes a fraction of a second.
    pub fn generate(project_id: &str, client_email: &str) -> Result<Self, KeyError> {
        let mut seed = [0u8; 32];
        SystemRandom::new()
            .fill(&mut seed)
            .map_err(|_| KeyError::Generate)?;
        let mut rng = rand_chacha::ChaCha20Rng::from_seed(seed);
        let key = rsa::RsaPrivateKey::new(&mut rng, 2048).map_err(|_| KeyError::Generate)?;
        let pem_text = key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|_| KeyError::Generate)?;
        let mut id = [0u8; 20];
        SystemRandom::new()
            .fill(&mut id)
            .map_err(|_| KeyError::Generate)?;
        Self::from_parts(client_email, project_id, &hex(&id), &pem_text)
    }

    /// Loads a service-account JSON file's contents.
    pub fn from_json(json_text: &str) -> Result<Self, KeyError> {
        let v: serde_json::Value =
            serde_json::from_str(json_text).map_err(|_| KeyError::BadServiceAccount("not JSON"))?;
        let field = |name: &'static str| {
            v.get(name)
                .and_then(|x| x.as_str())
                .ok_or(KeyError::BadServiceAccount(name))
        };
        Self::from_parts(
            field("client_email")?,
            field("project_id")?,
            field("private_key_id").unwrap_or(""),
            field("private_key")?,
        )
    }

    fn from_parts(
        client_email: &str,
        project_id: &str,
        key_id: &str,
        pem_text: &str,
    ) -> Result<Self, KeyError> {
        let key = rsa::RsaPrivateKey::from_pkcs8_pem(pem_text).map_err(|_| KeyError::Malformed)?;
        let public = key
            .to_public_key()
            .to_pkcs1_der()
            .map_err(|_| KeyError::Malformed)?;
        let der = pem::parse(pem_text).map_err(|_| KeyError::Malformed)?;
        let pair = RsaKeyPair::from_pkcs8(der.contents())
            .map_err(|_| KeyError::WrongType("expected an RSA key of 2048 bits or more"))?;
        Ok(Self {
            client_email: client_email.to_owned(),
            project_id: project_id.to_owned(),
            private_key_id: key_id.to_owned(),
            private_key_pem: pem_text.to_owned(),
            public_key_pkcs1: public.as_bytes().to_vec(),
            pair,
        })
    }

    /// The service-account JSON, in Google's layout, with `token_uri` pointing where the
    /// client should exchange its grant (the mock's `/token`).
    pub fn to_json(&self, token_uri: &str) -> String {
        let v = json!({
            "type": "service_account",
            "project_id": self.project_id,
            "private_key_id": self.private_key_id,
            "private_key": self.private_key_pem,
            "client_email": self.client_email,
            "client_id": "100000000000000000000",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": token_uri,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "universe_domain": "googleapis.com",
        });
        serde_json::to_string_pretty(&v).expect("a JSON value always serialises")
    }

    /// The public half, to configure the mock with.
    pub fn trusted(&self) -> FcmTrustedAccount {
        FcmTrustedAccount {
            client_email: self.client_email.clone(),
            project_id: self.project_id.clone(),
            public_key: self.public_key_pkcs1.clone(),
        }
    }

    /// A signed grant assertion (RS256) with the standard FCM scope.
    pub fn grant_assertion(&self, aud: &str, iat: u64, exp: u64) -> String {
        self.sign_claims(&json!({
            "iss": self.client_email,
            "scope": "https://www.googleapis.com/auth/firebase.messaging",
            "aud": aud,
            "iat": iat,
            "exp": exp,
        }))
    }

    /// Signs arbitrary claims (RS256), for tests that need a malformed grant.
    pub fn sign_claims(&self, claims: &serde_json::Value) -> String {
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": self.private_key_id});
        jwt::encode(&header, claims, |input| {
            let mut sig = vec![0u8; self.pair.public().modulus_len()];
            self.pair
                .sign(
                    &ring::signature::RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    input,
                    &mut sig,
                )
                // The buffer has the modulus length, the only other failure cause.
                .expect("RSA signing into a modulus-sized buffer");
            sig
        })
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
