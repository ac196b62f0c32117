//! The push shell: HTTP/2 clients for APNs and FCM HTTP v1, the QUIC wake channel, and the
//! dispatch pipeline that feeds them from the sans-IO queue in `vigil_proto::push`.
//!
//! Policy (what to send, when to retry, what an error means, when to refresh a provider token)
//! lives in the core; this module moves requests and answers in and out:
//! - [`tls`]: rustls client configs with configurable trusted roots and optional client certs.
//! - [`jwt`]: ES256 (APNs provider token) and RS256 (FCM service-account grant) signing.
//! - [`h2pool`]: a small pool of long-lived HTTP/2 connections, warmed before use, that honours
//!   the server's concurrent-stream limit and reconnects after GOAWAY or a lost connection.
//! - [`apns`], [`fcm`]: the provider clients, each turning one [`Transmit`] into an
//!   [`Outcome`].
//! - [`wake`], [`wake_client`]: the QUIC wake channel server (in the gateway) and the device
//!   side (used by the simulator and tests).
//! - [`dispatch`]: per-credential workers fed from the core [`Dispatcher`], outcome events out.
//! - [`config`], [`service`]: the `[push]` settings and the [`PushService`] the daemon starts
//!   from them (clients, dispatcher, wake server; dead-token events out).
//! - [`dead_token`]: drops a token the provider reported dead from the device bindings and
//!   the store.
//!
//! Secrets (keys, provider and access tokens, wake tokens) are kept in types whose `Debug`
//! redacts them and are never logged.
//!
//! [`Transmit`]: vigil_proto::push::Transmit
//! [`Outcome`]: vigil_proto::push::Outcome
//! [`Dispatcher`]: vigil_proto::push::Dispatcher

pub mod apns;
pub mod config;
pub mod dead_token;
pub mod dispatch;
pub mod fcm;
pub mod h2pool;
pub mod jwt;
pub mod service;
pub mod tls;
pub mod wake;
pub mod wake_client;

use std::fmt;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub use apns::{ApnsAuth, ApnsClient, ApnsConfig};
pub use config::{ApnsEnvironment, PushConfig};
pub use dispatch::{DispatchError, DispatchHandle, PushClient, PushDispatcher, TransmitObserver};
pub use fcm::{FcmClient, FcmConfig};
pub use h2pool::{H2Pool, PoolConfig};
pub use service::{PushService, PushStartError};
pub use tls::Roots;
pub use wake::{WakeServer, WakeServerConfig};
pub use wake_client::{WakeClient, WakeMessage};

/// Time source of the push clients: monotonic time for the token policies and wall-clock
/// seconds for JWT `iat`/`exp`. Tests substitute a clock that runs ahead (token ages are
/// tens of minutes).
pub trait PushClock: Send + Sync + fmt::Debug {
    /// Monotonic now.
    fn now(&self) -> Instant;
    /// Seconds since the Unix epoch.
    fn unix_secs(&self) -> u64;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl PushClock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn unix_secs(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

/// A secret string (key PEM, token): `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The secret, for signing or the wire only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// Errors building or using a push client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The base URL or token URI is not an `https://host[:port][/path]` URL.
    #[error("invalid URL: {0}")]
    BadUrl(&'static str),
    /// A key, certificate or service-account file could not be used.
    #[error("credential unusable: {0}")]
    Credential(&'static str),
    /// TLS configuration failed.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// Connecting or talking to the server failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The server did not negotiate HTTP/2.
    #[error("server did not negotiate h2")]
    NoH2,
    /// HTTP/2 protocol error.
    #[error("HTTP/2: {0}")]
    H2(#[from] h2::Error),
    /// A request timed out.
    #[error("timed out")]
    Timeout,
    /// The token endpoint refused or answered nonsense.
    #[error("token endpoint answered {0}")]
    TokenEndpoint(u16),
}

/// Parsed `https://host[:port][/path]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpsUrl {
    /// Host name (or IP literal) for SNI and `:authority`.
    pub host: String,
    /// Port (443 when absent).
    pub port: u16,
    /// Path without trailing slash (`""` for none).
    pub path: String,
}

impl HttpsUrl {
    /// Parses an `https` URL of the simple shape push endpoints have.
    pub fn parse(url: &str) -> Result<Self, ClientError> {
        let rest = url
            .strip_prefix("https://")
            .ok_or(ClientError::BadUrl("scheme must be https"))?;
        let (hostport, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                (h, p.parse().map_err(|_| ClientError::BadUrl("bad port"))?)
            }
            _ => (hostport, 443),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(ClientError::BadUrl("empty host"));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
            path: path.to_owned(),
        })
    }

    /// `host:port` as `:authority` (IPv6 literals bracketed).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let u = HttpsUrl::parse("https://api.push.apple.com").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("api.push.apple.com", 443, "")
        );
        let u = HttpsUrl::parse("https://localhost:8443/token").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("localhost", 8443, "/token")
        );
        assert_eq!(u.authority(), "localhost:8443");
        let u = HttpsUrl::parse("https://[::1]:9/").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 9));
        assert_eq!(u.authority(), "[::1]:9");
        assert!(HttpsUrl::parse("http://x").is_err());
        assert!(HttpsUrl::parse("https://x:notaport").is_err());
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(…)");
    }
}
