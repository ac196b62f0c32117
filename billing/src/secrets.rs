//! Secrets at rest: the service's master key, the keys derived from it, and AES-256-GCM sealing
//! of SIP passwords before they reach the database.
//!
//! The SIP password has to be kept recoverable (a PBX user signing in on a new phone, or an
//! individual signing up again, must receive the same credentials), so it cannot be hashed; it is
//! sealed instead. Kamailio's `ha1`/`ha1b` stay beside it as MD5 digests, which is what
//! `auth_db` needs and which do not give the password back.
//!
//! **Key.** One 32-byte master key, hex or base64, taken in order from `secret_key` (the config
//! file, or the `VIGIL_BILLING_SECRET_KEY` environment variable), from `secret_key_file`
//! (`--secret-key-file`, `VIGIL_BILLING_SECRET_KEY_FILE`), or, in `--dev` mode only, from
//! `DATA_DIR/secret.key`, generated on first start. Outside dev mode a missing key is a start-up
//! error: generating one silently would make every stored password unreadable as soon as the
//! data directory is lost or the database is moved to another host. Two independent keys are
//! derived from the master key with HMAC-SHA256 and fixed labels, one to MAC one-time passwords
//! and CAPTCHA answers, one for AES-256-GCM, so that no key serves two algorithms.
//!
//! **Format.** A sealed value is `version (1 byte) || nonce (12) || ciphertext || tag (16)`, with
//! a fresh random 96-bit nonce per value (one key seals far fewer than 2^32 values over its
//! life: one per provisioned account). The associated data binds a password to its account id,
//! so a sealed value copied onto another row does not open.
//!
//! **Wrong key.** The first start seals a fixed marker into `secret_key_check`; every later start
//! opens it before anything else and refuses to run with a clear message when it does not open,
//! instead of failing later, request by request.

use std::fmt;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine as _;

use crate::db::{Backend, Db};
use crate::util::hmac_hex;

/// The environment variable that carries the key itself (32 bytes, hex or base64).
pub const KEY_ENV: &str = "VIGIL_BILLING_SECRET_KEY";
/// The environment variable that names a file holding the key.
pub const KEY_FILE_ENV: &str = "VIGIL_BILLING_SECRET_KEY_FILE";
/// The key file generated in the data directory in dev mode.
pub const DEV_KEY_FILE: &str = "secret.key";

const FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const KEY_CHECK_PLAIN: &[u8] = b"vigil-billing secret key check v1";
const KEY_CHECK_AAD: &[u8] = b"secret_key_check";

/// Why the key could not be loaded or does not fit the database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Not in dev mode and no key is configured.
    #[error(
        "no secret key configured: set {KEY_ENV} (32 bytes as hex or base64), or point \
         --secret-key-file / {KEY_FILE_ENV} / secret_key_file at a file holding one \
         (generate one with `openssl rand -hex 32`). Only --dev generates a key by itself; an \
         installation that ran before keys were required keeps its key in DATA_DIR/{DEV_KEY_FILE}"
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
    /// The value is not hex or base64 of exactly 32 bytes.
    #[error("the secret key from {origin} is not 32 bytes of hex or base64")]
    Malformed {
        /// Where it came from (variable, config key or file path), never the value.
        origin: String,
    },
    /// The database was sealed under another key.
    #[error(
        "the configured secret key is not the key this database was encrypted with (its key \
         check does not open); start with the original key"
    )]
    WrongKey,
    /// The key check or the sealing of legacy passwords failed in the database.
    #[error("database error while checking the secret key: {0}")]
    Database(#[from] sqlx::Error),
}

/// A sealed value could not be opened: wrong key, wrong row or corrupted data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("sealed value cannot be opened (wrong key, wrong row or corrupted)")]
pub struct OpenError;

/// The keys derived from the master key. `Debug` never prints them.
#[derive(Clone)]
pub struct Secrets {
    cipher: Aes256Gcm,
    mac_key: [u8; 32],
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secrets(..)")
    }
}

fn derive(master: &[u8; 32], label: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hmac_hex(master, &[label]), &mut out)
        .expect("HMAC-SHA256 as hex is 64 hex digits");
    out
}

impl Secrets {
    /// The keys derived from a master key.
    pub fn from_master(master: &[u8; 32]) -> Secrets {
        let aead = derive(master, "vigil-billing/aes-256-gcm/v1");
        Secrets {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&aead)),
            mac_key: derive(master, "vigil-billing/hmac-sha256/v1"),
        }
    }

    /// Parses hex or base64 (standard or URL-safe, padded or not) of 32 bytes. `origin` names
    /// the source in the error; the value itself never appears in one.
    pub fn parse(text: &str, origin: &str) -> Result<Secrets, KeyError> {
        use base64::engine::general_purpose::{
            STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD,
        };
        let text = text.trim();
        let bytes = hex::decode(text).ok().or_else(|| {
            [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
                .iter()
                .find_map(|e| e.decode(text).ok())
        });
        let master: [u8; 32] =
            bytes
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| KeyError::Malformed {
                    origin: origin.to_owned(),
                })?;
        Ok(Secrets::from_master(&master))
    }

    /// Loads the master key as the module documentation describes: `inline` (config or
    /// environment), else `key_file`, else, with `dev` only, `data_dir/secret.key` (generated and
    /// announced when missing).
    pub fn load(
        inline: Option<&str>,
        key_file: Option<&Path>,
        data_dir: &Path,
        dev: bool,
    ) -> Result<Secrets, KeyError> {
        if let Some(v) = inline.filter(|v| !v.trim().is_empty()) {
            return Secrets::parse(v, &format!("secret_key / {KEY_ENV}"));
        }
        if let Some(path) = key_file {
            return Secrets::read_file(path);
        }
        if !dev {
            return Err(KeyError::Missing);
        }
        let path = data_dir.join(DEV_KEY_FILE);
        if path.exists() {
            tracing::warn!(file = %path.display(), "DEV MODE: using the development secret key from the data directory");
            return Secrets::read_file(&path);
        }
        let master: [u8; 32] = Aes256Gcm::generate_key(&mut OsRng).into();
        write_private(&path, hex::encode(master).as_bytes())?;
        tracing::warn!(
            file = %path.display(),
            "DEV MODE: generated a development secret key for passwords at rest; \
             production needs {KEY_ENV} or --secret-key-file"
        );
        Ok(Secrets::from_master(&master))
    }

    fn read_file(path: &Path) -> Result<Secrets, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
            path: path.to_owned(),
            source,
        })?;
        Secrets::parse(&text, &path.display().to_string())
    }

    /// The key for HMACs of one-time passwords and CAPTCHA answers.
    pub fn mac_key(&self) -> &[u8] {
        &self.mac_key
    }

    /// Seals `plain` under a fresh random nonce, bound to `aad`.
    pub fn seal(&self, plain: &[u8], aad: &[u8]) -> Vec<u8> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ct = self
            .cipher
            .encrypt(&nonce, Payload { msg: plain, aad })
            .expect("AES-GCM encryption fails only for inputs beyond 64 GiB");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Opens a value produced by [`Secrets::seal`] with the same `aad`.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, OpenError> {
        let Some((&FORMAT_V1, rest)) = sealed.split_first() else {
            return Err(OpenError);
        };
        if rest.len() < NONCE_LEN + TAG_LEN {
            return Err(OpenError);
        }
        let (nonce, ct) = rest.split_at(NONCE_LEN);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
            .map_err(|_| OpenError)
    }

    /// Seals an account's SIP password, bound to the account id.
    pub fn seal_password(&self, account_id: &str, password: &str) -> Vec<u8> {
        self.seal(password.as_bytes(), &password_aad(account_id))
    }

    /// Opens an account's sealed SIP password.
    pub fn open_password(&self, account_id: &str, sealed: &[u8]) -> Result<String, OpenError> {
        let plain = self.open(sealed, &password_aad(account_id))?;
        String::from_utf8(plain).map_err(|_| OpenError)
    }
}

fn password_aad(account_id: &str) -> Vec<u8> {
    let mut aad = b"accounts.sip_password\0".to_vec();
    aad.extend_from_slice(account_id.as_bytes());
    aad
}

/// Writes a file readable by its owner only; never overwrites.
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

/// Verifies that `secrets` is the database's key, recording it on first use. Runs before any
/// value is sealed, so a database never holds values under two keys.
pub async fn check_key(db: &Db, secrets: &Secrets, now: i64) -> Result<(), KeyError> {
    let select =
        || sqlx::query_as::<_, (Vec<u8>,)>("SELECT sealed FROM secret_key_check WHERE id = 1");
    let mut row = select().fetch_optional(&db.pool).await?;
    if row.is_none() {
        // Two instances starting at once on one PostgreSQL database: the first insert wins and
        // both verify against it below.
        sqlx::query(
            "INSERT INTO secret_key_check (id, sealed, created_at) VALUES (1, $1, $2) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(secrets.seal(KEY_CHECK_PLAIN, KEY_CHECK_AAD))
        .bind(now)
        .execute(&db.pool)
        .await?;
        row = select().fetch_optional(&db.pool).await?;
    }
    match row {
        Some((sealed,))
            if secrets.open(&sealed, KEY_CHECK_AAD).as_deref() == Ok(KEY_CHECK_PLAIN) =>
        {
            Ok(())
        }
        _ => Err(KeyError::WrongKey),
    }
}

/// Seals the plaintext SIP passwords of a database created before passwords were encrypted, and
/// blanks the plaintext in the same transaction. Returns how many rows were sealed (0 once the
/// legacy column is gone). Migration 0003 then drops the plaintext column; it refuses to run
/// while any row is unsealed.
pub async fn seal_legacy_passwords(db: &Db, secrets: &Secrets) -> Result<u64, KeyError> {
    let exists_sql = match db.backend {
        Backend::Sqlite => {
            "SELECT COUNT(*) FROM pragma_table_info('accounts') WHERE name = 'sip_password'"
        }
        Backend::Postgres => {
            "SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = current_schema() \
             AND table_name = 'accounts' AND column_name = 'sip_password'"
        }
    };
    let (exists,): (i64,) = sqlx::query_as(exists_sql).fetch_one(&db.pool).await?;
    if exists == 0 {
        return Ok(0);
    }
    let mut tx = db.pool.begin().await?;
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT id, sip_password FROM accounts WHERE sip_password_sealed IS NULL")
            .fetch_all(&mut *tx)
            .await?;
    for (id, password) in &rows {
        sqlx::query(
            "UPDATE accounts SET sip_password_sealed = $1, sip_password = '' WHERE id = $2",
        )
        .bind(secrets.seal_password(id, password))
        .bind(id)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    if !rows.is_empty() {
        tracing::info!(
            accounts = rows.len(),
            "sealed the plaintext SIP passwords of an older database"
        );
    }
    Ok(rows.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_bound_to_key_and_row() {
        let s = Secrets::from_master(&[7; 32]);
        let a = s.seal_password("12065550100", "hunter2hunter2");
        let b = s.seal_password("12065550100", "hunter2hunter2");
        assert_ne!(a, b, "each value gets its own nonce");
        assert!(!a.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(
            s.open_password("12065550100", &a).unwrap(),
            "hunter2hunter2"
        );
        assert_eq!(
            s.open_password("12065550101", &a),
            Err(OpenError),
            "other row"
        );
        let other = Secrets::from_master(&[8; 32]);
        assert_eq!(
            other.open_password("12065550100", &a),
            Err(OpenError),
            "other key"
        );
        let mut bad = a.clone();
        bad[20] ^= 1;
        assert_eq!(s.open_password("12065550100", &bad), Err(OpenError));
        assert_eq!(s.open_password("12065550100", &a[..12]), Err(OpenError));
        let mut wrong_version = a.clone();
        wrong_version[0] = 2;
        assert_eq!(
            s.open_password("12065550100", &wrong_version),
            Err(OpenError)
        );
        assert_ne!(
            s.mac_key(),
            &[7u8; 32][..],
            "MAC key is derived, not the master key"
        );
        assert_ne!(s.mac_key(), other.mac_key());
        assert_eq!(format!("{s:?}"), "Secrets(..)");
    }

    #[test]
    fn key_sources_and_dev_mode() {
        let dir = tempfile::tempdir().unwrap();
        let err = Secrets::load(None, None, dir.path(), false).unwrap_err();
        assert!(matches!(err, KeyError::Missing));
        assert!(err.to_string().contains(KEY_ENV), "{err}");
        assert!(
            !dir.path().join(DEV_KEY_FILE).exists(),
            "production never writes a key"
        );
        let dev = Secrets::load(None, None, dir.path(), true).unwrap();
        let sealed = dev.seal(b"x", b"");
        let again = Secrets::load(None, None, dir.path(), true).unwrap();
        assert_eq!(
            again.open(&sealed, b"").unwrap(),
            b"x",
            "the dev key is reused"
        );
        let hex_key = hex::encode([1u8; 32]);
        let b64_key = base64::engine::general_purpose::STANDARD.encode([1u8; 32]);
        let h = Secrets::load(Some(&hex_key), None, dir.path(), false).unwrap();
        let b = Secrets::load(Some(&b64_key), None, dir.path(), false).unwrap();
        assert_eq!(b.open(&h.seal(b"y", b""), b"").unwrap(), b"y");
        let err = Secrets::load(Some("abcd"), None, dir.path(), false).unwrap_err();
        assert!(matches!(err, KeyError::Malformed { .. }));
        assert!(
            !err.to_string().contains("abcd"),
            "the value is not echoed: {err}"
        );
        let file = dir.path().join("k");
        std::fs::write(&file, format!("{b64_key}\n")).unwrap();
        let f = Secrets::load(None, Some(&file), dir.path(), false).unwrap();
        assert_eq!(f.open(&h.seal(b"z", b""), b"").unwrap(), b"z");
        assert!(matches!(
            Secrets::load(None, Some(&dir.path().join("missing")), dir.path(), false),
            Err(KeyError::Io { .. })
        ));
    }
}
