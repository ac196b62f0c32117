//! The test certificate authority: a CA generated per run, and a server certificate for
//! `localhost`, `127.0.0.1` and `::1` signed by it.
//!
//! Clients trust the CA's PEM ([`TestCa::ca_pem`]) the same way a deployment adds a private
//! root, so the mocks exercise the clients' real TLS path with certificate verification on.
//! The CA also issues client certificates ([`TestCa::issue_client_cert`]) for APNs
//! certificate-based authentication; the servers ask for one but do not require it.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// Failure to build the test CA or a TLS config from it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// Certificate generation failed.
    #[error("certificate generation failed: {0}")]
    Generate(String),
    /// rustls rejected the certificate or key.
    #[error("TLS configuration rejected: {0}")]
    Config(String),
}

/// A throw-away CA and the mock server's certificate.
pub struct TestCa {
    /// PEM of the CA certificate: what clients must trust.
    pub ca_pem: String,
    /// DER of the CA certificate.
    pub ca_der: CertificateDer<'static>,
    server_cert: CertificateDer<'static>,
    server_key: Vec<u8>,
    ca_cert: rcgen::Certificate,
    ca_key: KeyPair,
}

/// A client certificate and its key, issued by a [`TestCa`].
#[derive(Clone)]
pub struct ClientIdentity {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PKCS#8 PEM.
    pub key_pem: String,
    /// The certificate, DER (what the server sees).
    pub cert_der: CertificateDer<'static>,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The server key stays out of debug output.
        f.debug_struct("TestCa")
            .field("ca_pem", &self.ca_pem)
            .finish()
    }
}

impl TestCa {
    /// Generates a fresh CA (ECDSA P-256) and a server certificate for `localhost`,
    /// `127.0.0.1` and `::1`.
    pub fn generate() -> Result<Self, TlsError> {
        let gen = |e: rcgen::Error| TlsError::Generate(e.to_string());
        let ca_key = KeyPair::generate().map_err(gen)?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(gen)?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Vigil mock push services test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).map_err(gen)?;

        let server_key = KeyPair::generate().map_err(gen)?;
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).map_err(gen)?;
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.subject_alt_names.extend([
            SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        ]);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let server_cert = params
            .signed_by(&server_key, &ca_cert, &ca_key)
            .map_err(gen)?;

        Ok(Self {
            ca_pem: ca_cert.pem(),
            ca_der: ca_cert.der().clone(),
            server_cert: server_cert.der().clone(),
            server_key: server_key.serialize_der(),
            ca_cert,
            ca_key,
        })
    }

    /// Issues a client certificate (ECDSA P-256, client-auth usage) with the given common
    /// name, e.g. `Apple Push Services: com.example.app`.
    pub fn issue_client_cert(&self, common_name: &str) -> Result<ClientIdentity, TlsError> {
        let gen = |e: rcgen::Error| TlsError::Generate(e.to_string());
        let key = KeyPair::generate().map_err(gen)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(gen)?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = params
            .signed_by(&key, &self.ca_cert, &self.ca_key)
            .map_err(gen)?;
        Ok(ClientIdentity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().clone(),
        })
    }

    /// A rustls server config presenting the server certificate, offering `alpn`, and
    /// asking for (not requiring) a client certificate issued by this CA.
    pub fn server_config(&self, alpn: &[&[u8]]) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let cfg = |e: rustls::Error| TlsError::Config(e.to_string());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key.clone()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).map_err(cfg)?;
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(cfg)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![self.server_cert.clone()], key)
            .map_err(cfg)?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }

    /// A rustls client config that trusts only this CA and offers ALPN `h2`: what tests
    /// use to talk to the mocks.
    pub fn client_config(&self) -> Result<rustls::ClientConfig, TlsError> {
        self.client_config_with(None)
    }

    /// Like [`TestCa::client_config`], presenting `identity` as client certificate if given.
    pub fn client_config_with(
        &self,
        identity: Option<&ClientIdentity>,
    ) -> Result<rustls::ClientConfig, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.ca_der.clone())
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots);
        let mut config = match identity {
            None => config.with_no_client_auth(),
            Some(id) => {
                let key = pem::parse(&id.key_pem).map_err(|e| TlsError::Config(e.to_string()))?;
                let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.into_contents()));
                config
                    .with_client_auth_cert(vec![id.cert_der.clone()], key)
                    .map_err(|e| TlsError::Config(e.to_string()))?
            }
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }
}
