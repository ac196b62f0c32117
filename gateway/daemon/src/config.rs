//! Start-up configuration: a TOML file, overridden by command-line flags and `VIGIL_*`
//! environment variables, over embedded defaults.
//!
//! Precedence, highest first: flag, environment variable (clap reads both), config file,
//! built-in default. With neither a file nor flags the gateway runs on loopback listeners with
//! a generated development certificate, which is safe to start anywhere and says so in the log.
//!
//! A complete file, with every setting at its default except the listeners and paths:
//!
//! ```toml
#![doc = include_str!("vigil.example.toml")]
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use vigil_proto::framing::DEFAULT_MAX_MESSAGE_SIZE;
use vigil_proto::txn::Transport;

/// One SIP listener: a transport and a local socket address, written `udp:127.0.0.1:5060`,
/// `tcp:[::1]:5060` or `tls:0.0.0.0:5061`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListenSpec {
    /// UDP, TCP or TLS.
    pub transport: Transport,
    /// Where to bind. Port 0 picks an ephemeral port (tests).
    pub addr: SocketAddr,
}

/// Why a `--sip-listen` value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ListenSpecError {
    /// No `transport:` prefix.
    #[error("expected TRANSPORT:ADDR:PORT, e.g. udp:127.0.0.1:5060")]
    MissingTransport,
    /// The prefix is not udp, tcp or tls.
    #[error("unknown transport {0:?} (expected udp, tcp or tls)")]
    UnknownTransport(String),
    /// The address part is not `IP:PORT`.
    #[error("invalid socket address {0:?}")]
    BadAddress(String),
}

impl FromStr for ListenSpec {
    type Err = ListenSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (transport, addr) = s
            .trim()
            .split_once(':')
            .ok_or(ListenSpecError::MissingTransport)?;
        let transport = Transport::from_via_token(transport)
            .ok_or_else(|| ListenSpecError::UnknownTransport(transport.to_owned()))?;
        let addr = addr
            .parse()
            .map_err(|_| ListenSpecError::BadAddress(addr.to_owned()))?;
        Ok(Self { transport, addr })
    }
}

impl fmt::Display for ListenSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.transport.via_token().to_ascii_lowercase();
        write!(f, "{t}:{}", self.addr)
    }
}

impl<'de> Deserialize<'de> for ListenSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where persistent state lives (the development certificate, later the databases).
    pub data_dir: PathBuf,
    /// A `tracing` filter: `info`, `debug`, `vigil_gateway=trace,info`, ...
    pub log: String,
    /// SIP transports.
    pub sip: SipConfig,
    /// The HTTPS credential intake API.
    pub api: ApiConfig,
    /// Where devices are persisted.
    pub store: StoreConfig,
    /// The key that seals passwords and push tokens at rest.
    pub crypto: CryptoConfig,
    /// Registering the devices upstream.
    pub reg: RegSettings,
    /// Push channels (APNs, FCM HTTP v1, the QUIC wake channel); none by default.
    pub push: crate::push::PushConfig,
}

/// The `[reg]` table: how the gateway registers devices on the operator's SIP server.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegSettings {
    /// `host[:port]` every REGISTER is sent to (an outbound proxy for all devices). Without
    /// it, a device's outbound proxy or domain is used when it is an IP address; DNS names
    /// need the RFC 3263 resolver.
    pub upstream: Option<String>,
    /// `host:port` the upstream reaches the gateway at, put in every Contact and Via (the
    /// public address behind NAT or a load balancer). Default: the first UDP listener's
    /// address (else the first TCP one); required when that is a wildcard address.
    pub contact_addr: Option<String>,
    /// Global pace of REGISTER requests, challenge answers included (0: unlimited). After a
    /// restart every stored device is re-registered at this pace.
    pub max_registers_per_sec: u32,
    /// REGISTERs that may go at once after an idle period.
    pub pace_burst: u32,
    /// For a TLS `upstream` given as an IP address: the name its certificate must carry
    /// (sent as SNI). Without it the certificate must name the IP address. Upstreams found
    /// by RFC 3263 are always verified against the SIP domain that was resolved (RFC 5922).
    pub upstream_tls_name: Option<String>,
    /// DNS servers (`ip:port`) for RFC 3263 resolution of device domains and proxies when no
    /// `upstream` is set; empty: the system's (`/etc/resolv.conf`).
    pub dns_servers: Vec<SocketAddr>,
    /// How long an upstream target that timed out, failed or answered 503 is skipped by
    /// every binding that resolves to it (seconds).
    pub upstream_down_secs: u64,
}

impl Default for RegSettings {
    fn default() -> Self {
        Self {
            upstream: None,
            contact_addr: None,
            max_registers_per_sec: 500,
            pace_burst: 10,
            upstream_tls_name: None,
            dns_servers: Vec::new(),
            upstream_down_secs: 30,
        }
    }
}

/// The `[api]` table: the HTTPS intake API (it uses the `[sip.tls]` certificate).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Whether the API listener (and with it the store, the secret key and the registration
    /// engine) runs. Without it the gateway only answers SIP requests.
    pub enabled: bool,
    /// Address of the HTTPS listener.
    pub listen: SocketAddr,
    /// Sustained requests per second per client IP address (0: unlimited).
    pub rate_per_sec: f64,
    /// Requests a client may make at once before the sustained rate applies.
    pub rate_burst: u32,
    /// Largest request body accepted (bytes).
    pub max_body_bytes: usize,
    /// A device without a PUT for this long is unregistered and forgotten (seconds).
    pub idle_expiry_secs: u64,
    /// How often the idle sweep runs (seconds).
    pub sweep_interval_secs: u64,
    /// Time allowed for a TLS handshake (seconds).
    pub tls_handshake_timeout_secs: u64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            rate_per_sec: 20.0,
            rate_burst: 40,
            max_body_bytes: 16 * 1024,
            idle_expiry_secs: 7 * 24 * 3600,
            sweep_interval_secs: 300,
            tls_handshake_timeout_secs: 10,
        }
    }
}

/// The `[store]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `postgres://...` for PostgreSQL, a file path for SQLite; default `DATA_DIR/vigil.db`.
    pub url: Option<String>,
    /// How long the writer collects writes into one transaction (milliseconds).
    pub batch_window_ms: u64,
    /// Most writes per transaction.
    pub max_batch: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: None,
            batch_window_ms: 3,
            max_batch: 2000,
        }
    }
}

/// The `[crypto]` table. The key itself comes from `VIGIL_SECRET_KEY` or `key_file`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CryptoConfig {
    /// Production mode: a missing key is a start-up error instead of a generated dev key.
    pub production: bool,
    /// File holding the key (32 bytes as base64 or hex).
    pub key_file: Option<PathBuf>,
}

/// The `[sip]` table: listeners and the limits that bound what peers can make us hold.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SipConfig {
    /// Listeners; see [`ListenSpec`].
    pub listen: Vec<ListenSpec>,
    /// Most simultaneous TCP/TLS connections, inbound and outbound together. Further accepts
    /// are closed at once.
    pub max_connections: usize,
    /// Largest SIP message (header section plus body) accepted on a stream; a peer sending a
    /// larger one is disconnected.
    pub max_message_size: usize,
    /// A connection with no traffic either way for this long is closed (seconds).
    pub idle_timeout_secs: u64,
    /// Time allowed for a TLS handshake before the connection is dropped (seconds).
    pub tls_handshake_timeout_secs: u64,
    /// Time allowed for one write to a connection before it is considered stuck (seconds).
    pub write_timeout_secs: u64,
    /// Kernel send buffer of outgoing TCP/TLS connections (bytes); 0: the kernel's default
    /// with autotuning (up to megabytes per connection). A small buffer makes a peer that
    /// stops reading show as a full write queue sooner.
    pub send_buffer_bytes: u32,
    /// On shutdown, how long in-flight writes may take before connections are cut (seconds).
    pub shutdown_grace_secs: u64,
    /// TLS certificate and key.
    pub tls: TlsFiles,
}

/// The `[sip.tls]` table. Without `cert_file`/`key_file` a self-signed development certificate
/// is generated (and kept in `data_dir`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsFiles {
    /// PEM certificate chain for the TLS listeners.
    pub cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// PEM CA certificates trusted for outgoing TLS connections.
    pub ca_file: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./vigil-data"),
            log: "info".to_owned(),
            sip: SipConfig::default(),
            api: ApiConfig::default(),
            store: StoreConfig::default(),
            crypto: CryptoConfig::default(),
            reg: RegSettings::default(),
            push: crate::push::PushConfig::default(),
        }
    }
}

impl Default for SipConfig {
    fn default() -> Self {
        let spec = |s: &str| {
            s.parse::<ListenSpec>()
                .expect("built-in listen specs are valid")
        };
        Self {
            listen: vec![
                spec("udp:127.0.0.1:5060"),
                spec("tcp:127.0.0.1:5060"),
                spec("tls:127.0.0.1:5061"),
            ],
            max_connections: 10_000,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            // RFC 5626 clients ping every ~2 minutes; anything silent for longer is gone.
            idle_timeout_secs: 300,
            tls_handshake_timeout_secs: 10,
            write_timeout_secs: 10,
            send_buffer_bytes: 0,
            shutdown_grace_secs: 5,
            tls: TlsFiles::default(),
        }
    }
}

impl SipConfig {
    /// [`Self::idle_timeout_secs`] as a duration.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }

    /// [`Self::tls_handshake_timeout_secs`] as a duration.
    pub fn tls_handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.tls_handshake_timeout_secs)
    }

    /// [`Self::write_timeout_secs`] as a duration.
    pub fn write_timeout(&self) -> Duration {
        Duration::from_secs(self.write_timeout_secs)
    }

    /// [`Self::shutdown_grace_secs`] as a duration.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for [`Config`].
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the TOML parser said (line, column, expected field).
        message: String,
    },
    /// A setting has an unusable value.
    #[error("invalid setting {setting}: {reason}")]
    Invalid {
        /// The setting's name.
        setting: &'static str,
        /// Why.
        reason: &'static str,
    },
}

impl Config {
    /// Reads a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses TOML text; the error is the parser's message.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Checks values that would make the gateway misbehave rather than fail to start.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |setting, reason| Err(ConfigError::Invalid { setting, reason });
        if self.sip.listen.is_empty() {
            return invalid("sip.listen", "at least one listener is required");
        }
        if self.sip.max_message_size < 1024 {
            return invalid("sip.max_message_size", "must be at least 1024 bytes");
        }
        if self.sip.idle_timeout_secs == 0 {
            return invalid("sip.idle_timeout_secs", "must be positive");
        }
        if self.sip.tls_handshake_timeout_secs == 0 || self.sip.write_timeout_secs == 0 {
            return invalid("sip.*_timeout_secs", "timeouts must be positive");
        }
        if self.api.max_body_bytes < 1024 {
            return invalid("api.max_body_bytes", "must be at least 1024 bytes");
        }
        if self.api.idle_expiry_secs == 0 || self.api.sweep_interval_secs == 0 {
            return invalid(
                "api.idle_expiry_secs",
                "idle expiry and sweep interval must be positive",
            );
        }
        if self.api.rate_per_sec < 0.0 || !self.api.rate_per_sec.is_finite() {
            return invalid("api.rate_per_sec", "must be a finite non-negative number");
        }
        if self.store.max_batch == 0 {
            return invalid("store.max_batch", "must be positive");
        }
        if self.sip.tls.cert_file.is_some() != self.sip.tls.key_file.is_some() {
            return invalid("sip.tls", "cert_file and key_file go together");
        }
        if let Some(u) = &self.reg.upstream {
            if split_host_port(u).is_none() {
                return invalid("reg.upstream", "must be host[:port]");
            }
        }
        if let Some(n) = &self.reg.upstream_tls_name {
            if rustls::pki_types::ServerName::try_from(n.as_str()).is_err() {
                return invalid("reg.upstream_tls_name", "must be a DNS name or IP address");
            }
        }
        if let Some(c) = &self.reg.contact_addr {
            if !matches!(split_host_port(c), Some((_, Some(_)))) {
                return invalid("reg.contact_addr", "must be host:port");
            }
        }
        Ok(())
    }
}

/// Splits `host[:port]` (an IPv6 host in brackets) into its host and port; `None` when it
/// is not of that form.
pub fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        ip.parse::<std::net::Ipv6Addr>().ok()?;
        (&s[..ip.len() + 2], after)
    } else {
        match s.find(':') {
            Some(i) => (&s[..i], &s[i..]),
            None => (s, ""),
        }
    };
    let host_ok = host.starts_with('[')
        || (!host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
    if !host_ok {
        return None;
    }
    let port = match port {
        "" => None,
        p => Some(
            p.strip_prefix(':')?
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)?,
        ),
    };
    Some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_specs_parse_and_print() {
        let s: ListenSpec = "tls:[::1]:5061".parse().unwrap();
        assert_eq!(s.transport, Transport::Tls);
        assert_eq!(s.addr, "[::1]:5061".parse().unwrap());
        assert_eq!(s.to_string(), "tls:[::1]:5061");
        assert_eq!(
            "sctp:1.2.3.4:5".parse::<ListenSpec>(),
            Err(ListenSpecError::UnknownTransport("sctp".into()))
        );
        assert!(matches!(
            "udp:localhost".parse::<ListenSpec>(),
            Err(ListenSpecError::BadAddress(_))
        ));
        assert_eq!(
            "127.0.0.1".parse::<ListenSpec>(),
            Err(ListenSpecError::MissingTransport)
        );
    }

    #[test]
    fn toml_overrides_defaults_and_rejects_typos() {
        let c = Config::from_toml(
            "data_dir = '/var/lib/vigil'\n[sip]\nlisten = ['udp:0.0.0.0:5070']\nmax_connections = 3\n",
        )
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/vigil"));
        assert_eq!(c.sip.listen, vec!["udp:0.0.0.0:5070".parse().unwrap()]);
        assert_eq!(c.sip.max_connections, 3);
        assert_eq!(
            c.sip.idle_timeout_secs,
            SipConfig::default().idle_timeout_secs
        );
        assert!(c.validate().is_ok());
        let err = Config::from_toml("[sip]\nmax_conections = 3\n").unwrap_err();
        assert!(err.contains("max_conections"), "{err}");
        assert!(Config::from_toml("[sip]\nlisten = ['bogus']\n").is_err());
    }

    #[test]
    fn the_documented_example_parses_and_matches_the_defaults() {
        let c = Config::from_toml(include_str!("vigil.example.toml")).unwrap();
        assert!(c.validate().is_ok());
        let d = SipConfig::default();
        assert_eq!(c.sip.max_connections, d.max_connections);
        assert_eq!(c.sip.max_message_size, d.max_message_size);
        assert_eq!(c.sip.idle_timeout_secs, d.idle_timeout_secs);
        assert_eq!(
            c.sip.tls_handshake_timeout_secs,
            d.tls_handshake_timeout_secs
        );
        assert_eq!(c.sip.write_timeout_secs, d.write_timeout_secs);
        assert_eq!(c.sip.shutdown_grace_secs, d.shutdown_grace_secs);
        assert_eq!(c.sip.listen.len(), 3);
        assert!(c.sip.tls.cert_file.is_some());
        let (a, da) = (&c.api, ApiConfig::default());
        assert_eq!(
            (a.enabled, a.listen, a.rate_per_sec, a.rate_burst),
            (da.enabled, da.listen, da.rate_per_sec, da.rate_burst)
        );
        assert_eq!(
            (a.max_body_bytes, a.idle_expiry_secs, a.sweep_interval_secs),
            (
                da.max_body_bytes,
                da.idle_expiry_secs,
                da.sweep_interval_secs
            )
        );
        let dr = RegSettings::default();
        assert_eq!(c.reg.max_registers_per_sec, dr.max_registers_per_sec);
        assert_eq!(c.reg.pace_burst, dr.pace_burst);
        assert!(c.reg.contact_addr.is_some(), "wildcard listeners need one");
    }

    #[test]
    fn host_port_forms() {
        assert_eq!(
            split_host_port("sip.example.com"),
            Some(("sip.example.com", None))
        );
        assert_eq!(
            split_host_port("10.0.0.1:5070"),
            Some(("10.0.0.1", Some(5070)))
        );
        assert_eq!(split_host_port("[::1]:5060"), Some(("[::1]", Some(5060))));
        assert_eq!(split_host_port("[::1]"), Some(("[::1]", None)));
        for bad in [
            "",
            "a b",
            "h:",
            "h:0",
            "h:99999",
            "[zz]:1",
            "[::1]5060",
            "h:1:2",
        ] {
            assert_eq!(split_host_port(bad), None, "{bad}");
        }
    }

    #[test]
    fn validation_catches_unusable_values() {
        let mut c = Config::default();
        assert!(c.validate().is_ok());
        c.sip.tls.cert_file = Some("cert.pem".into());
        assert!(c.validate().is_err());
        let mut c = Config::default();
        c.sip.listen.clear();
        assert!(c.validate().is_err());
        let mut c = Config::default();
        c.reg.upstream = Some("proxy example".into());
        assert!(c.validate().is_err());
        let mut c = Config::default();
        c.reg.contact_addr = Some("gw.example.net".into());
        assert!(c.validate().is_err(), "the Contact needs a port");
        c.reg.contact_addr = Some("gw.example.net:5060".into());
        c.reg.upstream = Some("192.0.2.1".into());
        assert!(c.validate().is_ok());
    }
}
