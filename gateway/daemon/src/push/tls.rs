//! rustls client configurations for the push clients (ring provider).
//!
//! Trusted roots are configurable so tests and private relays can use their own CA; the
//! default is the operating system's bundle. APNs certificate authentication adds a client
//! certificate (mTLS).

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use super::{ClientError, Secret};

/// Where the trusted roots come from.
#[derive(Debug, Clone, Default)]
pub enum Roots {
    /// The system bundle (`/etc/ssl/certs/ca-certificates.crt` or `SSL_CERT_FILE`).
    #[default]
    System,
    /// Only the certificates in this PEM text (a test CA, a private relay's CA).
    Pem(String),
}

const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

fn load_roots(roots: &Roots) -> Result<RootCertStore, ClientError> {
    let pem = match roots {
        Roots::Pem(p) => p.clone(),
        Roots::System => {
            let from_env = std::env::var("SSL_CERT_FILE").ok();
            let candidates = from_env
                .iter()
                .map(String::as_str)
                .chain(SYSTEM_BUNDLES.iter().copied());
            candidates
                .filter_map(|p| std::fs::read_to_string(p).ok())
                .next()
                .ok_or(ClientError::Credential("no system CA bundle found"))?
        }
    };
    let mut store = RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_bytes()) {
        let cert = cert.map_err(|_| ClientError::Credential("unreadable CA PEM"))?;
        store.add(cert)?;
    }
    if store.is_empty() {
        return Err(ClientError::Credential("no CA certificate in roots"));
    }
    Ok(store)
}

/// Parses a certificate chain and its private key from PEM (for mTLS).
pub fn client_identity(
    cert_chain_pem: &str,
    key_pem: &Secret,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), ClientError> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut cert_chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|_| ClientError::Credential("unreadable client certificate PEM"))?;
    if certs.is_empty() {
        return Err(ClientError::Credential("no client certificate"));
    }
    let key = rustls_pemfile::private_key(&mut key_pem.expose().as_bytes())
        .map_err(|_| ClientError::Credential("unreadable client key PEM"))?
        .ok_or(ClientError::Credential("no client key"))?;
    Ok((certs, key))
}

/// A client config trusting `roots`, offering `alpn`, with an optional client identity.
pub fn client_config(
    roots: &Roots,
    alpn: &[&[u8]],
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<Arc<ClientConfig>, ClientError> {
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(load_roots(roots)?);
    let mut config = match identity {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_roots_and_identity() {
        let ca = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let pem = ca.cert.pem();
        assert!(client_config(&Roots::Pem(pem.clone()), &[b"h2"], None).is_ok());
        assert!(matches!(
            client_config(&Roots::Pem("garbage".into()), &[b"h2"], None),
            Err(ClientError::Credential(_))
        ));
        let key = Secret::new(ca.key_pair.serialize_pem());
        let id = client_identity(&pem, &key).unwrap();
        assert!(client_config(&Roots::Pem(pem), &[b"h2"], Some(id)).is_ok());
        assert!(client_identity("", &key).is_err());
    }
}
