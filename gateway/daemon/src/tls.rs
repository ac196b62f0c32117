//! TLS set-up for SIP over TLS: the server certificate (configured, or a generated development
//! certificate) and the client trust store for outgoing connections.
//!
//! Everything uses rustls with the `ring` provider, selected explicitly so the process never
//! depends on a globally installed default provider.

use std::fs;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tracing::{info, warn};

use crate::config::TlsFiles;

/// Names the development certificate is valid for: the loopback listeners of the defaults.
const DEV_CERT_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsSetupError {
    /// A certificate or key file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A PEM file holds no certificate or no private key.
    #[error("{path}: no {what} found in PEM file")]
    Missing {
        /// The file.
        path: PathBuf,
        /// "certificate" or "private key".
        what: &'static str,
    },
    /// rcgen could not generate the development certificate.
    #[error("cannot generate development certificate: {0}")]
    Generate(String),
    /// rustls rejected the certificate, the key, or the trust store.
    #[error("TLS configuration rejected: {0}")]
    Rustls(String),
}

/// The TLS material of one gateway instance.
#[derive(Clone)]
pub struct TlsContext {
    /// For the TLS listeners.
    pub server: Arc<ServerConfig>,
    /// For outgoing TLS connections.
    pub client: Arc<ClientConfig>,
    /// The server certificate chain (leaf first), so tests and operators can trust it.
    pub cert_chain: Vec<CertificateDer<'static>>,
    /// Whether the certificate is the generated development one.
    pub is_dev_cert: bool,
}

impl std::fmt::Debug for TlsContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("TlsContext")
            .field("is_dev_cert", &self.is_dev_cert)
            .field("chain_len", &self.cert_chain.len())
            .finish_non_exhaustive()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TlsSetupError + '_ {
    move |source| TlsSetupError::Io {
        path: path.to_owned(),
        source,
    }
}

impl TlsContext {
    /// Loads the configured certificate, or loads or generates the development certificate in
    /// `data_dir/tls/`.
    pub fn load(files: &TlsFiles, data_dir: &Path) -> Result<Self, TlsSetupError> {
        let (chain, key, is_dev_cert) = match (&files.cert_file, &files.key_file) {
            (Some(cert), Some(key)) => (read_certs(cert)?, read_key(key)?, false),
            _ => {
                let (chain, key) = dev_certificate(&data_dir.join("tls"))?;
                (chain, key, true)
            }
        };
        let server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsSetupError::Rustls(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain.clone(), key)
            .map_err(|e| TlsSetupError::Rustls(e.to_string()))?;

        let mut roots = RootCertStore::empty();
        if let Some(ca) = &files.ca_file {
            for cert in read_certs(ca)? {
                roots
                    .add(cert)
                    .map_err(|e| TlsSetupError::Rustls(e.to_string()))?;
            }
        }
        if is_dev_cert {
            // Lets a development gateway reach another one on loopback.
            if let Some(leaf) = chain.first() {
                roots
                    .add(leaf.clone())
                    .map_err(|e| TlsSetupError::Rustls(e.to_string()))?;
            }
        }
        if roots.is_empty() {
            warn!("no CA configured (sip.tls.ca_file): outgoing TLS connections will fail verification");
        }
        let client = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsSetupError::Rustls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            server: Arc::new(server),
            client: Arc::new(client),
            cert_chain: chain,
            is_dev_cert,
        })
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let file = fs::File::open(path).map_err(io_err(path))?;
    let certs = rustls_pemfile::certs(&mut BufReader::new(file))
        .collect::<Result<Vec<_>, _>>()
        .map_err(io_err(path))?;
    if certs.is_empty() {
        return Err(TlsSetupError::Missing {
            path: path.to_owned(),
            what: "certificate",
        });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsSetupError> {
    let file = fs::File::open(path).map_err(io_err(path))?;
    rustls_pemfile::private_key(&mut BufReader::new(file))
        .map_err(io_err(path))?
        .ok_or_else(|| TlsSetupError::Missing {
            path: path.to_owned(),
            what: "private key",
        })
}

/// Loads `dir/dev-cert.pem` and `dir/dev-key.pem`, generating them first if absent, so that a
/// development client can trust the certificate once across restarts.
fn dev_certificate(
    dir: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsSetupError> {
    let cert_path = dir.join("dev-cert.pem");
    let key_path = dir.join("dev-key.pem");
    if cert_path.exists() && key_path.exists() {
        info!(cert = %cert_path.display(), "using the development TLS certificate");
        return Ok((read_certs(&cert_path)?, read_key(&key_path)?));
    }
    let names: Vec<String> = DEV_CERT_NAMES.iter().map(|s| (*s).to_owned()).collect();
    let generated = rcgen::generate_simple_self_signed(names)
        .map_err(|e| TlsSetupError::Generate(e.to_string()))?;
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    write_private(&key_path, generated.key_pair.serialize_pem().as_bytes())?;
    fs::write(&cert_path, generated.cert.pem()).map_err(io_err(&cert_path))?;
    warn!(
        cert = %cert_path.display(),
        "no TLS certificate configured: generated a self-signed development certificate \
         (valid for localhost only; configure sip.tls.cert_file/key_file in production)"
    );
    Ok((read_certs(&cert_path)?, read_key(&key_path)?))
}

/// Writes a file readable by its owner only (the private key).
fn write_private(path: &Path, data: &[u8]) -> Result<(), TlsSetupError> {
    use std::io::Write;
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(io_err(path))?;
    f.write_all(data).map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_certificate_is_generated_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = TlsContext::load(&TlsFiles::default(), dir.path()).unwrap();
        assert!(a.is_dev_cert);
        let b = TlsContext::load(&TlsFiles::default(), dir.path()).unwrap();
        assert_eq!(
            a.cert_chain, b.cert_chain,
            "second start reuses the stored certificate"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join("tls/dev-key.pem"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "key must not be group/world readable");
        }
    }

    #[test]
    fn configured_files_are_used_and_errors_are_typed() {
        let dir = tempfile::tempdir().unwrap();
        let dev = TlsContext::load(&TlsFiles::default(), dir.path()).unwrap();
        let files = TlsFiles {
            cert_file: Some(dir.path().join("tls/dev-cert.pem")),
            key_file: Some(dir.path().join("tls/dev-key.pem")),
            ca_file: Some(dir.path().join("tls/dev-cert.pem")),
        };
        let c = TlsContext::load(&files, dir.path()).unwrap();
        assert!(!c.is_dev_cert);
        assert_eq!(c.cert_chain, dev.cert_chain);
        let bad = TlsFiles {
            cert_file: Some(dir.path().join("tls/dev-key.pem")),
            key_file: Some(dir.path().join("tls/dev-key.pem")),
            ca_file: None,
        };
        assert!(matches!(
            TlsContext::load(&bad, dir.path()),
            Err(TlsSetupError::Missing {
                what: "certificate",
                ..
            })
        ));
    }
}
