//! Secrets at rest: AES-256-GCM sealing of SIP passwords and push tokens before they reach the
//! database (and, compactly, while they sit in the binding table).
//!
//! Each sealed value is `nonce (12 bytes) || ciphertext || tag (16 bytes)`, with a fresh random
//! 96-bit nonce per value. Random nonces are safe here because one key seals far fewer than
//! 2^32 values over its life (one per PUT that changes a secret).
//!
//! The key comes, in order, from `VIGIL_SECRET_KEY` (base64 or hex of 32 bytes), from the
//! configured key file, or — only in development mode — from `DATA_DIR/secret.key`, generated
//! on first start. In production mode a missing key is a start-up error: silently generating
//! one would make every stored credential unreadable after the data directory is restored
//! elsewhere.

use std::fmt;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine as _;
use tracing::warn;

/// The environment variable that carries the key (base64 or hex of 32 bytes).
pub const KEY_ENV: &str = "VIGIL_SECRET_KEY";
/// The key file generated in the data directory in development mode.
pub const DEV_KEY_FILE: &str = "secret.key";

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Why the key could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Production mode and neither the variable nor a key file is set.
    #[error(
        "no secret key: set {KEY_ENV} (32 bytes, base64 or hex) or crypto.key_file; \
         production mode never generates one"
    )]
    Missing,
    /// The key file could not be read or written.
    #[error("secret key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The value is not base64 or hex of exactly 32 bytes.
    #[error("secret key from {origin} is not 32 bytes of base64 or hex")]
    Malformed {
        /// Where it came from (variable name or file path).
        origin: String,
    },
}

/// A sealed value could not be opened: wrong key or corrupted data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("sealed value cannot be opened (wrong key or corrupted)")]
pub struct OpenError;

/// The AES-256-GCM key. `Debug` never prints it.
#[derive(Clone)]
pub struct SecretBox {
    cipher: Aes256Gcm,
}

impl fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

impl SecretBox {
    /// A box around raw key bytes.
    pub fn from_key(key: &[u8; 32]) -> Self {
        Self {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key)),
        }
    }

    /// Parses base64 (standard or URL-safe, padded or not) or hex of 32 bytes.
    pub fn parse(text: &str, origin: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        let bytes = hex::decode(text)
            .ok()
            .or_else(|| base64::engine::general_purpose::STANDARD.decode(text).ok())
            .or_else(|| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(text)
                    .ok()
            })
            .or_else(|| {
                base64::engine::general_purpose::STANDARD_NO_PAD
                    .decode(text)
                    .ok()
            });
        let key: [u8; 32] =
            bytes
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| KeyError::Malformed {
                    origin: origin.to_owned(),
                })?;
        Ok(Self::from_key(&key))
    }

    /// Loads the key as the module documentation describes. `env_value` is the value of
    /// [`KEY_ENV`], passed in so tests need not touch the process environment.
    pub fn load(
        env_value: Option<&str>,
        key_file: Option<&Path>,
        data_dir: &Path,
        production: bool,
    ) -> Result<Self, KeyError> {
        if let Some(v) = env_value.filter(|v| !v.trim().is_empty()) {
            return Self::parse(v, KEY_ENV);
        }
        if let Some(path) = key_file {
            return Self::read_file(path);
        }
        if production {
            return Err(KeyError::Missing);
        }
        let path = data_dir.join(DEV_KEY_FILE);
        if path.exists() {
            return Self::read_file(&path);
        }
        let key: [u8; 32] = Aes256Gcm::generate_key(&mut OsRng).into();
        write_private(&path, hex::encode(key).as_bytes())?;
        warn!(
            file = %path.display(),
            "no secret key configured: generated a development key for credentials at rest \
             (set {KEY_ENV} or crypto.key_file, and crypto.production = true, in production)"
        );
        Ok(Self::from_key(&key))
    }

    fn read_file(path: &Path) -> Result<Self, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Seals `plain` under a fresh random nonce.
    pub fn seal(&self, plain: &[u8]) -> Vec<u8> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ct = self
            .cipher
            .encrypt(&nonce, plain)
            .expect("AES-GCM encryption fails only for inputs beyond 64 GiB");
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Opens a value produced by [`Self::seal`].
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(OpenError);
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), ct)
            .map_err(|_| OpenError)
    }
}

/// Writes a file readable by its owner only.
fn write_private(path: &Path, data: &[u8]) -> Result<(), KeyError> {
    use std::io::Write;
    let io = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(io)?;
    f.write_all(data).map_err(io)?;
    f.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_with_fresh_nonces() {
        let b = SecretBox::from_key(&[7; 32]);
        let a = b.seal(b"hunter2");
        let c = b.seal(b"hunter2");
        assert_ne!(a, c, "each value gets its own nonce");
        assert_eq!(b.open(&a).unwrap(), b"hunter2");
        assert!(!a.windows(7).any(|w| w == b"hunter2"));
        let mut bad = a.clone();
        bad[20] ^= 1;
        assert_eq!(b.open(&bad), Err(OpenError));
        assert_eq!(SecretBox::from_key(&[8; 32]).open(&a), Err(OpenError));
        assert_eq!(b.open(&a[..10]), Err(OpenError));
    }

    #[test]
    fn key_sources_and_production_mode() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            SecretBox::load(None, None, dir.path(), true),
            Err(KeyError::Missing)
        ));
        assert!(!dir.path().join(DEV_KEY_FILE).exists());
        let dev = SecretBox::load(None, None, dir.path(), false).unwrap();
        let sealed = dev.seal(b"x");
        let again = SecretBox::load(None, None, dir.path(), false).unwrap();
        assert_eq!(again.open(&sealed).unwrap(), b"x", "dev key is reused");
        let hex_key = hex::encode([1u8; 32]);
        let b64_key = base64::engine::general_purpose::STANDARD.encode([1u8; 32]);
        let h = SecretBox::load(Some(&hex_key), None, dir.path(), true).unwrap();
        let b = SecretBox::load(Some(&b64_key), None, dir.path(), true).unwrap();
        assert_eq!(b.open(&h.seal(b"y")).unwrap(), b"y");
        assert!(matches!(
            SecretBox::load(Some("abcd"), None, dir.path(), true),
            Err(KeyError::Malformed { .. })
        ));
        let file = dir.path().join("k");
        std::fs::write(&file, &b64_key).unwrap();
        let f = SecretBox::load(None, Some(&file), dir.path(), true).unwrap();
        assert_eq!(f.open(&h.seal(b"z")).unwrap(), b"z");
    }
}
