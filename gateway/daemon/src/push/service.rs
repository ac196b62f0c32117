//! The push service the daemon starts: every configured client, the dispatch pipeline and
//! the wake server, from one [`PushConfig`].
//!
//! [`PushService::start`] reads the credential files, builds one client per credential
//! (APNs key or certificate, FCM service account, the wake channel), starts the dispatch
//! workers, and returns the service with the stream of [`PushEvent`]s. The caller (the
//! gateway) submits pushes through [`PushService::submit`], choosing the credential with
//! [`PushService::apns_credential`] / [`PushService::fcm_credential`] /
//! [`PushService::wake_credential`], and drains the events: a
//! [`PushEvent::DeadToken`] names the dead target, so the binding table can drop that token.
//!
//! Start-up does not wait for Apple or Google: connections are warmed in the background
//! and a pool reconnects on use, so a push service that is briefly unreachable at boot
//! does not keep the gateway from starting. Unreadable or invalid credentials do.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::mpsc;
use vigil_proto::push::{CredentialId, PushEvent, PushRequest, Submitted};

use super::config::{ApnsEnvironment, ApnsSettings, FcmSettings, InvalidSetting, PushConfig};
use super::{
    ApnsAuth, ApnsClient, ApnsConfig, ClientError, DispatchError, DispatchHandle, FcmClient,
    FcmConfig, PushClient, PushDispatcher, Roots, Secret, WakeServer,
};

/// Why the push service could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PushStartError {
    /// The configuration is inconsistent.
    #[error(transparent)]
    Invalid(#[from] InvalidSetting),
    /// A credential or certificate file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A client could not be built from its credential (bad key, bad URL, bad CA file).
    #[error("push credential {name}: {source}")]
    Client {
        /// The credential's configured name.
        name: String,
        /// What was wrong.
        source: ClientError,
    },
    /// The wake channel is configured without a certificate of its own and none was given.
    #[error("push.wake needs cert_file/key_file or the gateway's TLS configuration")]
    NoWakeCertificate,
    /// The wake server could not bind or use its certificate.
    #[error("wake channel: {0}")]
    Wake(ClientError),
}

/// One configured APNs credential and what it serves.
#[derive(Debug, Clone)]
struct ApnsEntry {
    id: CredentialId,
    environment: ApnsEnvironment,
    topics: Vec<String>,
}

/// The running push service; see the module documentation. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PushService {
    handle: DispatchHandle,
    apns: Arc<[ApnsEntry]>,
    /// FCM project id → credential.
    fcm: Arc<[(String, CredentialId)]>,
    wake: Option<(CredentialId, Arc<WakeServer>)>,
    names: Arc<HashMap<CredentialId, String>>,
}

fn read(path: &Path) -> Result<String, PushStartError> {
    std::fs::read_to_string(path).map_err(|source| PushStartError::Read {
        path: path.to_owned(),
        source,
    })
}

fn roots(ca_file: Option<&PathBuf>) -> Result<Roots, PushStartError> {
    Ok(match ca_file {
        Some(p) => Roots::Pem(read(p)?),
        None => Roots::System,
    })
}

fn apns_client(a: &ApnsSettings) -> Result<ApnsClient, PushStartError> {
    let auth = match (
        &a.key_file,
        &a.key_id,
        &a.team_id,
        &a.cert_file,
        &a.cert_key_file,
    ) {
        (Some(key), Some(key_id), Some(team_id), _, _) => ApnsAuth::Token {
            p8_pem: Secret::new(read(key)?),
            key_id: key_id.clone(),
            team_id: team_id.clone(),
        },
        (_, _, _, Some(cert), Some(key)) => ApnsAuth::Certificate {
            cert_chain_pem: read(cert)?,
            key_pem: Secret::new(read(key)?),
        },
        // `validate` rejects every other combination.
        _ => {
            return Err(InvalidSetting {
                setting: format!("apns {}", a.name),
                reason: "no complete authentication settings",
            }
            .into())
        }
    };
    let mut cfg = ApnsConfig::new(a.url(), auth);
    cfg.roots = roots(a.ca_file.as_ref())?;
    cfg.pool_size = a.pool_size;
    cfg.token_reuse = a.token_reuse();
    ApnsClient::new(cfg).map_err(|source| PushStartError::Client {
        name: a.name.clone(),
        source,
    })
}

/// The FCM client and the project id its service account belongs to.
fn fcm_client(f: &FcmSettings) -> Result<(FcmClient, String), PushStartError> {
    let json = read(&f.service_account_file)?;
    let project = serde_json::from_str::<serde_json::Value>(&json)
        .ok()
        .and_then(|v| v.get("project_id")?.as_str().map(str::to_owned))
        .ok_or_else(|| PushStartError::Client {
            name: f.name.clone(),
            source: ClientError::Credential("service account has no project_id"),
        })?;
    let mut cfg = FcmConfig::new(Secret::new(json));
    cfg.base_url = f.url().to_owned();
    cfg.roots = roots(f.ca_file.as_ref())?;
    cfg.pool_size = f.pool_size;
    let client = FcmClient::new(cfg).map_err(|source| PushStartError::Client {
        name: f.name.clone(),
        source,
    })?;
    Ok((client, project))
}

fn wake_tls(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), PushStartError> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut read(cert)?.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|_| PushStartError::Wake(ClientError::Credential("unreadable certificate PEM")))?;
    let key = rustls_pemfile::private_key(&mut read(key)?.as_bytes())
        .ok()
        .flatten()
        .ok_or(PushStartError::Wake(ClientError::Credential(
            "no private key in key_file",
        )))?;
    Ok((certs, key))
}

impl PushService {
    /// Starts every configured channel. `gateway_tls` is the gateway's own server TLS
    /// configuration, used by the wake channel when `[push.wake]` names no certificate.
    /// Must run inside a tokio runtime.
    pub fn start(
        cfg: &PushConfig,
        gateway_tls: Option<&rustls::ServerConfig>,
    ) -> Result<(Self, mpsc::UnboundedReceiver<PushEvent>), PushStartError> {
        cfg.validate()?;
        let mut clients = HashMap::new();
        let mut names = HashMap::new();
        let mut next_id = 1u32;
        let mut new_id = |name: &str| {
            let id = CredentialId(next_id);
            next_id += 1;
            names.insert(id, name.to_owned());
            id
        };
        let mut apns = Vec::new();
        for a in &cfg.apns {
            let client = Arc::new(apns_client(a)?);
            let id = new_id(&a.name);
            warm(&a.name, {
                let c = Arc::clone(&client);
                async move { c.pool().warm().await }
            });
            clients.insert(id, PushClient::Apns(client));
            apns.push(ApnsEntry {
                id,
                environment: a.environment,
                topics: a.topics.clone(),
            });
        }
        let mut fcm = Vec::new();
        for f in &cfg.fcm {
            let (client, project) = fcm_client(f)?;
            let client = Arc::new(client);
            let id = new_id(&f.name);
            warm(&f.name, {
                let c = Arc::clone(&client);
                async move { c.warm().await }
            });
            clients.insert(id, PushClient::Fcm(client));
            fcm.push((project, id));
        }
        let wake = match &cfg.wake {
            None => None,
            Some(w) => {
                let tls = match (&w.cert_file, &w.key_file, gateway_tls) {
                    (Some(cert), Some(key), _) => {
                        let (chain, key) = wake_tls(cert, key)?;
                        rustls::ServerConfig::builder_with_provider(Arc::new(
                            rustls::crypto::ring::default_provider(),
                        ))
                        .with_protocol_versions(&[&rustls::version::TLS13])
                        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key))
                        .map_err(|e| PushStartError::Wake(e.into()))?
                    }
                    (None, None, Some(tls)) => tls.clone(),
                    _ => return Err(PushStartError::NoWakeCertificate),
                };
                let server = WakeServer::bind_with_tls(
                    w.listen,
                    tls,
                    Duration::from_secs(w.keep_alive_secs),
                    Duration::from_secs(w.idle_timeout_secs),
                    Duration::from_secs(w.auth_timeout_secs),
                )
                .map_err(PushStartError::Wake)?;
                let id = new_id("wake");
                clients.insert(id, PushClient::Wake(Arc::clone(&server)));
                Some((id, server))
            }
        };
        let (handle, events) = PushDispatcher::start(
            cfg.dispatch.dispatch_config(),
            rand::random(),
            clients,
            cfg.dispatch.max_in_flight,
        );
        tracing::info!(
            apns = apns.len(),
            fcm = fcm.len(),
            wake = wake.is_some(),
            "push service started"
        );
        Ok((
            Self {
                handle,
                apns: apns.into(),
                fcm: fcm.into(),
                wake,
                names: Arc::new(names),
            },
            events,
        ))
    }

    /// Queues a push; never blocks (a full queue is an error, see [`DispatchError`]).
    pub fn submit(&self, req: PushRequest) -> Result<Submitted, DispatchError> {
        self.handle.submit(req)
    }

    /// The dispatch handle (for statistics and the `apns-id` of a push).
    pub fn handle(&self) -> &DispatchHandle {
        &self.handle
    }

    /// The APNs credential for an app's bundle id in an environment: the first configured
    /// one of that environment whose topics list it (or that lists none).
    pub fn apns_credential(
        &self,
        bundle_id: &str,
        environment: ApnsEnvironment,
    ) -> Option<CredentialId> {
        self.apns
            .iter()
            .filter(|a| a.environment == environment)
            .find(|a| a.topics.is_empty() || a.topics.iter().any(|t| t == bundle_id))
            .map(|a| a.id)
    }

    /// The FCM credential of a Firebase project, or the only one when `project` is `None`
    /// and exactly one is configured.
    pub fn fcm_credential(&self, project: Option<&str>) -> Option<CredentialId> {
        match project {
            Some(p) => self.fcm.iter().find(|(id, _)| id == p).map(|(_, c)| *c),
            None if self.fcm.len() == 1 => Some(self.fcm[0].1),
            None => None,
        }
    }

    /// The wake channel's credential, if the channel runs.
    pub fn wake_credential(&self) -> Option<CredentialId> {
        self.wake.as_ref().map(|(id, _)| *id)
    }

    /// The wake server (to register devices and their tokens), if the channel runs.
    pub fn wake_server(&self) -> Option<&Arc<WakeServer>> {
        self.wake.as_ref().map(|(_, s)| s)
    }

    /// The configured name of a credential (for logs).
    pub fn credential_name(&self, id: CredentialId) -> Option<&str> {
        self.names.get(&id).map(String::as_str)
    }

    /// Stops the dispatch workers and closes the wake channel.
    pub fn shutdown(&self) {
        self.handle.shutdown();
        if let Some((_, w)) = &self.wake {
            w.close();
        }
    }
}

/// Opens a client's connections in the background; failure is logged, not fatal (the pool
/// reconnects on first use).
fn warm<F>(name: &str, fut: F)
where
    F: std::future::Future<Output = Result<(), ClientError>> + Send + 'static,
{
    let name = name.to_owned();
    tokio::spawn(async move {
        if let Err(e) = fut.await {
            tracing::warn!(credential = %name, error = %e, "push connections not warmed; retrying on first push");
        }
    });
}
