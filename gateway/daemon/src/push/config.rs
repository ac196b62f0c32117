//! The `[push]` settings: which APNs keys or certificates, FCM service accounts and wake
//! channel the gateway pushes with, and the dispatch queue's limits.
//!
//! Secrets are not in the file, only paths to them (the `.p8` key, the client certificate's
//! key, the service-account JSON), so the configuration can be shared and logged.
//!
//! ```toml
//! [[push.apns]]
//! name = "voip-app"                       # for logs and credential selection
//! key_file = "/etc/vigil/AuthKey_ABC123DEFG.p8"
//! key_id = "ABC123DEFG"
//! team_id = "TEAM123456"
//! environment = "production"              # or "sandbox"; picks the default base_url
//! topics = ["com.example.phone"]          # bundle ids served; empty serves any
//! # base_url = "https://api.push.apple.com"  # a relay or the mock
//! # ca_file = "/etc/vigil/apns-ca.pem"       # default: the system roots
//!
//! [[push.fcm]]
//! name = "android"
//! service_account_file = "/etc/vigil/firebase-sa.json"
//! # base_url = "https://fcm.googleapis.com"
//!
//! [push.wake]
//! listen = "0.0.0.0:4433"                 # UDP (QUIC)
//! # cert_file / key_file: default the [sip.tls] certificate
//!
//! [push.dispatch]
//! per_credential_capacity = 20000
//! total_capacity = 200000
//! max_in_flight = 1000
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use vigil_proto::push::backoff::RetryPolicy;
use vigil_proto::push::DispatchConfig;

use super::apns::{PRODUCTION_URL as APNS_PRODUCTION_URL, SANDBOX_URL as APNS_SANDBOX_URL};
use super::fcm::PRODUCTION_URL as FCM_PRODUCTION_URL;

/// The `[push]` table.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PushConfig {
    /// APNs credentials, one `[[push.apns]]` table each.
    pub apns: Vec<ApnsSettings>,
    /// FCM service accounts, one `[[push.fcm]]` table each.
    pub fcm: Vec<FcmSettings>,
    /// The QUIC wake channel; off when absent.
    pub wake: Option<WakeSettings>,
    /// Queue limits and concurrency.
    pub dispatch: DispatchSettings,
}

/// APNs server environment of a credential (the binding's `pn-param`/app build decides
/// which one its token belongs to).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApnsEnvironment {
    /// `api.push.apple.com`: App Store and TestFlight builds.
    #[default]
    Production,
    /// `api.sandbox.push.apple.com`: development builds.
    Sandbox,
}

/// One `[[push.apns]]` table: token auth (`key_file` + `key_id` + `team_id`) or
/// certificate auth (`cert_file` + `cert_key_file`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApnsSettings {
    /// Unique name of this credential.
    pub name: String,
    /// The `.p8` signing key (token auth).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// The key's id, the JWT `kid` (token auth).
    #[serde(default)]
    pub key_id: Option<String>,
    /// The Apple developer team id, the JWT `iss` (token auth).
    #[serde(default)]
    pub team_id: Option<String>,
    /// Client certificate chain PEM (certificate auth).
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// Its private key PEM (certificate auth).
    #[serde(default)]
    pub cert_key_file: Option<PathBuf>,
    /// Production or sandbox; chooses the default `base_url`.
    #[serde(default)]
    pub environment: ApnsEnvironment,
    /// Endpoint override (a relay, the mock); default from `environment`.
    #[serde(default)]
    pub base_url: Option<String>,
    /// PEM CA certificates to trust instead of the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Bundle ids this credential pushes for; empty: any.
    #[serde(default)]
    pub topics: Vec<String>,
    /// HTTP/2 connections kept open.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// Minutes a provider token is reused (Apple: 20–60).
    #[serde(default = "default_token_reuse_mins")]
    pub token_reuse_mins: u64,
}

impl ApnsSettings {
    /// The endpoint this credential talks to.
    pub fn url(&self) -> &str {
        match (&self.base_url, self.environment) {
            (Some(u), _) => u,
            (None, ApnsEnvironment::Production) => APNS_PRODUCTION_URL,
            (None, ApnsEnvironment::Sandbox) => APNS_SANDBOX_URL,
        }
    }

    /// [`Self::token_reuse_mins`] as a duration.
    pub fn token_reuse(&self) -> Duration {
        Duration::from_secs(self.token_reuse_mins * 60)
    }
}

/// One `[[push.fcm]]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FcmSettings {
    /// Unique name of this credential.
    pub name: String,
    /// The service-account JSON key file (its `project_id` selects the credential).
    pub service_account_file: PathBuf,
    /// Endpoint override (a relay, the mock); default `https://fcm.googleapis.com`.
    #[serde(default)]
    pub base_url: Option<String>,
    /// PEM CA certificates to trust (API and token endpoint) instead of the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// HTTP/2 connections kept open.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
}

impl FcmSettings {
    /// The endpoint this credential talks to.
    pub fn url(&self) -> &str {
        self.base_url.as_deref().unwrap_or(FCM_PRODUCTION_URL)
    }
}

/// The `[push.wake]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WakeSettings {
    /// UDP address of the QUIC listener.
    pub listen: SocketAddr,
    /// Certificate chain PEM; default: the identity the gateway hands to the service
    /// (its `[sip.tls]` certificate).
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// Its private key PEM.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Keep-alive interval in seconds (below common NAT binding timeouts).
    #[serde(default = "default_keep_alive_secs")]
    pub keep_alive_secs: u64,
    /// A device silent for this long is dropped (seconds).
    #[serde(default = "default_idle_timeout_secs")]
    pub idle_timeout_secs: u64,
    /// Time a device has to authenticate after connecting (seconds).
    #[serde(default = "default_auth_timeout_secs")]
    pub auth_timeout_secs: u64,
}

/// The `[push.dispatch]` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DispatchSettings {
    /// Live pushes one credential may hold before submissions are refused.
    pub per_credential_capacity: usize,
    /// Live pushes all credentials together may hold.
    pub total_capacity: usize,
    /// Concurrent attempts per credential (HTTP/2 streams in flight).
    pub max_in_flight: usize,
    /// Attempts per push, the first included.
    pub max_attempts: u32,
}

impl Default for DispatchSettings {
    fn default() -> Self {
        let d = DispatchConfig::default();
        Self {
            per_credential_capacity: d.per_credential_capacity,
            total_capacity: d.total_capacity,
            max_in_flight: 1000,
            max_attempts: d.retry.max_attempts,
        }
    }
}

impl DispatchSettings {
    /// The core's configuration.
    pub fn dispatch_config(&self) -> DispatchConfig {
        DispatchConfig {
            per_credential_capacity: self.per_credential_capacity,
            total_capacity: self.total_capacity,
            retry: RetryPolicy {
                max_attempts: self.max_attempts,
                ..RetryPolicy::default()
            },
        }
    }
}

fn default_pool_size() -> usize {
    2
}
fn default_token_reuse_mins() -> u64 {
    45
}
fn default_keep_alive_secs() -> u64 {
    25
}
fn default_idle_timeout_secs() -> u64 {
    90
}
fn default_auth_timeout_secs() -> u64 {
    10
}

/// A `[push]` setting with an unusable value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting push.{setting}: {reason}")]
pub struct InvalidSetting {
    /// The setting, e.g. `apns[0].key_id`.
    pub setting: String,
    /// Why.
    pub reason: &'static str,
}

impl PushConfig {
    /// Whether no push channel is configured (the service need not start).
    pub fn is_empty(&self) -> bool {
        self.apns.is_empty() && self.fcm.is_empty() && self.wake.is_none()
    }

    /// Checks what serde cannot: complete and exclusive auth settings, unique names, limits.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        let bad = |setting: String, reason| Err(InvalidSetting { setting, reason });
        let mut names = std::collections::HashSet::new();
        for (i, a) in self.apns.iter().enumerate() {
            let at = |field: &str| format!("apns[{i}].{field}");
            if !names.insert(("apns", a.name.as_str())) || a.name.is_empty() {
                return bad(at("name"), "must be non-empty and unique");
            }
            let token = [
                a.key_file.is_some(),
                a.key_id.is_some(),
                a.team_id.is_some(),
            ];
            let cert = [a.cert_file.is_some(), a.cert_key_file.is_some()];
            match (token, cert) {
                ([true, true, true], [false, false]) | ([false, false, false], [true, true]) => {}
                (_, [false, false]) => {
                    return bad(
                        at("key_file"),
                        "token auth needs key_file, key_id and team_id (or use cert_file and cert_key_file)",
                    )
                }
                _ => {
                    return bad(
                        at("cert_file"),
                        "certificate auth needs cert_file and cert_key_file, and no key_file/key_id/team_id",
                    )
                }
            }
            if a.pool_size == 0 {
                return bad(at("pool_size"), "must be positive");
            }
            if !(20..60).contains(&a.token_reuse_mins) {
                return bad(
                    at("token_reuse_mins"),
                    "Apple wants provider tokens refreshed every 20 to 60 minutes",
                );
            }
        }
        for (i, f) in self.fcm.iter().enumerate() {
            let at = |field: &str| format!("fcm[{i}].{field}");
            if !names.insert(("fcm", f.name.as_str())) || f.name.is_empty() {
                return bad(at("name"), "must be non-empty and unique");
            }
            if f.pool_size == 0 {
                return bad(at("pool_size"), "must be positive");
            }
        }
        if let Some(w) = &self.wake {
            if w.cert_file.is_some() != w.key_file.is_some() {
                return bad(
                    "wake.cert_file".into(),
                    "cert_file and key_file go together",
                );
            }
            if w.keep_alive_secs == 0 || w.idle_timeout_secs <= w.keep_alive_secs {
                return bad(
                    "wake.idle_timeout_secs".into(),
                    "keep-alive must be positive and shorter than the idle timeout",
                );
            }
            if w.auth_timeout_secs == 0 {
                return bad("wake.auth_timeout_secs".into(), "must be positive");
            }
        }
        let d = &self.dispatch;
        if d.per_credential_capacity == 0 || d.total_capacity < d.per_credential_capacity {
            return bad(
                "dispatch.total_capacity".into(),
                "capacities must be positive and the total at least the per-credential one",
            );
        }
        if d.max_in_flight == 0 || d.max_attempts == 0 {
            return bad(
                "dispatch.max_in_flight".into(),
                "max_in_flight and max_attempts must be positive",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> PushConfig {
        #[derive(Deserialize)]
        struct File {
            push: PushConfig,
        }
        toml::from_str::<File>(text).unwrap().push
    }

    #[test]
    fn the_documented_example_parses_and_validates() {
        let doc = include_str!("config.rs");
        let example: String = doc
            .lines()
            .skip_while(|l| !l.starts_with("//! ```toml"))
            .skip(1)
            .take_while(|l| !l.starts_with("//! ```"))
            .map(|l| l.trim_start_matches("//!").trim_start())
            .map(|l| format!("{l}\n"))
            .collect();
        let c = parse(&example);
        c.validate().unwrap();
        assert_eq!(c.apns.len(), 1);
        assert_eq!(c.apns[0].url(), APNS_PRODUCTION_URL);
        assert_eq!(c.apns[0].token_reuse(), Duration::from_secs(45 * 60));
        assert_eq!(c.fcm[0].url(), FCM_PRODUCTION_URL);
        assert_eq!(c.wake.as_ref().unwrap().listen.port(), 4433);
        assert_eq!(c.dispatch, DispatchSettings::default());
        assert!(!c.is_empty());
        assert!(PushConfig::default().is_empty());
        assert!(PushConfig::default().validate().is_ok());
    }

    #[test]
    fn auth_settings_must_be_complete_and_exclusive() {
        let base = "[[push.apns]]\nname = 'a'\n";
        let sandbox = parse(&format!(
            "{base}cert_file = 'c.pem'\ncert_key_file = 'k.pem'\nenvironment = 'sandbox'\n"
        ));
        sandbox.validate().unwrap();
        assert_eq!(sandbox.apns[0].url(), APNS_SANDBOX_URL);
        let half_token = parse(&format!("{base}key_file = 'k.p8'\nkey_id = 'K'\n"));
        assert_eq!(
            half_token.validate().unwrap_err().setting,
            "apns[0].key_file"
        );
        let both = parse(&format!(
            "{base}key_file = 'k.p8'\nkey_id = 'K'\nteam_id = 'T'\ncert_file = 'c.pem'\ncert_key_file = 'k.pem'\n"
        ));
        assert_eq!(both.validate().unwrap_err().setting, "apns[0].cert_file");
        let neither = parse(base);
        assert!(neither.validate().is_err());
        let fast = parse(&format!(
            "{base}key_file = 'k.p8'\nkey_id = 'K'\nteam_id = 'T'\ntoken_reuse_mins = 5\n"
        ));
        assert_eq!(
            fast.validate().unwrap_err().setting,
            "apns[0].token_reuse_mins"
        );
    }

    #[test]
    fn names_unique_and_typos_rejected() {
        let two = parse(
            "[[push.fcm]]\nname = 'x'\nservice_account_file = 'a.json'\n\
             [[push.fcm]]\nname = 'x'\nservice_account_file = 'b.json'\n",
        );
        assert_eq!(two.validate().unwrap_err().setting, "fcm[1].name");
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct File {
            push: PushConfig,
        }
        let typo = toml::from_str::<File>("[push.wake]\nlisten = '0.0.0.0:1'\nkeepalive = 3\n");
        assert!(typo.is_err());
        let bad_wake = parse("[push.wake]\nlisten = '0.0.0.0:1'\nkeep_alive_secs = 100\n");
        assert_eq!(
            bad_wake.validate().unwrap_err().setting,
            "wake.idle_timeout_secs"
        );
        let bad_queue =
            parse("[push.dispatch]\nper_credential_capacity = 10\ntotal_capacity = 5\n");
        assert!(bad_queue.validate().is_err());
    }
}
