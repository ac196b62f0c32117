//! Configuration: embedded defaults, overridden by a TOML file, then environment variables, then
//! command-line flags (the binary applies the last two).
//!
//! With no file at all the service runs on SQLite in `./vigil-billing-data` and says so at start.
//! Dev mode (`--dev`) is the only way to get the file sinks for SMS and email and the CAPTCHA test
//! answer: `Config::validate` rejects them otherwise, so a production config cannot enable them
//! by accident.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Full service configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address of the public REST API (app, sign-up, admin).
    pub listen: SocketAddr,
    /// Optional separate listener for the internal API of the SIP switch. When unset the internal
    /// API is served on `listen` under `/internal`, guarded by `internal_token` either way.
    pub internal_listen: Option<SocketAddr>,
    /// Directory for the SQLite database, and in dev mode the generated secret key and the sinks.
    pub data_dir: PathBuf,
    /// `sqlite://...` or `postgres://...`; empty means SQLite in `data_dir`.
    pub database_url: String,
    /// PostgreSQL schema to use (set as `search_path` on every connection).
    pub pg_schema: Option<String>,
    /// Maximum pooled database connections (SQLite always uses one, see `db`).
    pub max_connections: u32,
    /// Bearer token for `/admin/v1`; the admin API is disabled when unset.
    pub admin_token: Option<String>,
    /// Bearer token for `/internal/v1`; the internal API is disabled when unset.
    pub internal_token: Option<String>,
    /// The 32-byte master key (hex or base64) that seals SIP passwords at rest and MACs one-time
    /// passwords and CAPTCHA answers; `VIGIL_BILLING_SECRET_KEY` sets it too. Prefer
    /// `secret_key_file`, which keeps the key out of the config file. Without either the service
    /// refuses to start, except in dev mode (see `secrets`).
    pub secret_key: Option<SecretString>,
    /// A file holding the master key (`--secret-key-file`, `VIGIL_BILLING_SECRET_KEY_FILE`).
    pub secret_key_file: Option<PathBuf>,
    /// Trust the first address in `X-Forwarded-For` as the client address (behind a proxy).
    pub trust_forwarded_for: bool,
    /// SIP service data handed to the app.
    pub sip: SipConfig,
    /// The push gateway's intake URL handed to the app.
    pub gateway_intake_url: String,
    /// Individual sign-up.
    pub signup: SignupConfig,
    /// One-time passwords.
    pub otp: OtpConfig,
    /// CAPTCHA.
    pub captcha: CaptchaConfig,
    /// Smart contacts rate limits.
    pub smart_contacts: SmartContactsConfig,
    /// SMS provider.
    pub sms: SmsConfig,
    /// Email provider.
    pub email: EmailConfig,
    /// Dev mode (never from the file; set by `--dev`).
    #[serde(skip)]
    pub dev: Option<DevConfig>,
}

/// A string that `Debug` does not print, for keys in the configuration.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct SecretString(pub String);

impl std::fmt::Debug for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretString(..)")
    }
}

/// Dev-mode settings; exist only when started with `--dev`.
#[derive(Debug, Clone, Default)]
pub struct DevConfig {
    /// A CAPTCHA answer that is always accepted.
    pub captcha_answer: Option<String>,
}

/// SIP data for the app.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SipConfig {
    /// SIP domain (realm) of the accounts.
    pub domain: String,
    /// Outbound proxy the app registers through.
    pub proxy: String,
}

/// Individual sign-up settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SignupConfig {
    /// Whether individual sign-up is open.
    pub enabled: bool,
    /// Product given to individual accounts.
    pub product: String,
    /// Take DIDs only from batches with this pricing (any when unset).
    pub did_pricing: Option<String>,
}

/// OTP settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtpConfig {
    /// Validity in seconds.
    pub ttl_secs: u64,
    /// Verification attempts before the code is void.
    pub max_attempts: u32,
    /// Minimum seconds between two codes to the same number.
    pub resend_interval_secs: u64,
    /// Codes per number per hour.
    pub per_number_per_hour: u32,
    /// Code requests per client address per hour.
    pub per_client_per_hour: u32,
}

/// CAPTCHA settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CaptchaConfig {
    /// Validity in seconds.
    pub ttl_secs: u64,
    /// CAPTCHA images per client address per hour.
    pub per_client_per_hour: u32,
}

/// Smart contacts limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmartContactsConfig {
    /// Hashes per request.
    pub max_numbers_per_request: usize,
    /// Requests per account per hour.
    pub requests_per_hour: u32,
}

/// SMS provider selection.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmsConfig {
    /// `none`, `webhook` or (dev only) `file`.
    pub provider: String,
    /// Webhook URL (http or https).
    pub webhook_url: String,
    /// Body template; `{to}`, `{to_digits}` and `{text}` are replaced (JSON-escaped when the
    /// content type is JSON, form-encoded when it is form data).
    pub body_template: String,
    /// Content-Type of the webhook body.
    pub content_type: String,
    /// Optional `Authorization` header value (never logged).
    pub authorization: Option<String>,
    /// Message text; `{code}` is replaced.
    pub text_template: String,
}

/// Email provider selection.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmailConfig {
    /// `none`, `smtp` or (dev only) `file`.
    pub provider: String,
    /// SMTP relay host.
    pub smtp_host: String,
    /// SMTP port (587 STARTTLS, 465 implicit TLS).
    pub smtp_port: u16,
    /// `starttls`, `tls` or `none` (plain, for a local relay only).
    pub smtp_security: String,
    /// SMTP user.
    pub smtp_username: Option<String>,
    /// SMTP password (never logged).
    pub smtp_password: Option<String>,
    /// From address.
    pub from: String,
    /// Subject line.
    pub subject: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8380)),
            internal_listen: None,
            data_dir: PathBuf::from("./vigil-billing-data"),
            database_url: String::new(),
            pg_schema: None,
            max_connections: 16,
            admin_token: None,
            internal_token: None,
            secret_key: None,
            secret_key_file: None,
            trust_forwarded_for: false,
            sip: SipConfig::default(),
            gateway_intake_url: "https://vigil.example.invalid/v1/intake".to_owned(),
            signup: SignupConfig::default(),
            otp: OtpConfig::default(),
            captcha: CaptchaConfig::default(),
            smart_contacts: SmartContactsConfig::default(),
            sms: SmsConfig::default(),
            email: EmailConfig::default(),
            dev: None,
        }
    }
}

impl Default for SipConfig {
    fn default() -> Self {
        SipConfig {
            domain: "sip.example.invalid".to_owned(),
            proxy: "sip.example.invalid:5061;transport=tls".to_owned(),
        }
    }
}

impl Default for SignupConfig {
    fn default() -> Self {
        SignupConfig {
            enabled: true,
            product: "default".to_owned(),
            did_pricing: None,
        }
    }
}

impl Default for OtpConfig {
    fn default() -> Self {
        OtpConfig {
            ttl_secs: 300,
            max_attempts: 5,
            resend_interval_secs: 30,
            per_number_per_hour: 5,
            per_client_per_hour: 30,
        }
    }
}

impl Default for CaptchaConfig {
    fn default() -> Self {
        CaptchaConfig {
            ttl_secs: 300,
            per_client_per_hour: 120,
        }
    }
}

impl Default for SmartContactsConfig {
    fn default() -> Self {
        SmartContactsConfig {
            max_numbers_per_request: 2000,
            requests_per_hour: 12,
        }
    }
}

impl Default for SmsConfig {
    fn default() -> Self {
        SmsConfig {
            provider: "none".to_owned(),
            webhook_url: String::new(),
            body_template: r#"{"to":"{to}","text":"{text}"}"#.to_owned(),
            content_type: "application/json".to_owned(),
            authorization: None,
            text_template: "Your verification code is {code}".to_owned(),
        }
    }
}

impl Default for EmailConfig {
    fn default() -> Self {
        EmailConfig {
            provider: "none".to_owned(),
            smtp_host: String::new(),
            smtp_port: 587,
            smtp_security: "starttls".to_owned(),
            smtp_username: None,
            smtp_password: None,
            from: "Vigil <no-reply@example.invalid>".to_owned(),
            subject: "Your sign-in code".to_owned(),
        }
    }
}

/// Configuration problems found at start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("invalid config file {path}: {source}")]
    Parse {
        /// File.
        path: PathBuf,
        /// Cause.
        source: Box<toml::de::Error>,
    },
    /// A value is inconsistent.
    #[error("invalid configuration: {0}")]
    Invalid(&'static str),
}

impl Config {
    /// Reads a TOML file over the defaults.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    /// The database URL, defaulting to SQLite in the data directory.
    pub fn effective_database_url(&self) -> String {
        if self.database_url.is_empty() {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("billing.sqlite").display()
            )
        } else {
            self.database_url.clone()
        }
    }

    /// Checks cross-field rules, above all that dev-only sinks are not used outside dev mode.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let dev = self.dev.is_some();
        if !dev && (self.sms.provider == "file" || self.email.provider == "file") {
            return Err(ConfigError::Invalid(
                "the file SMS/email sinks exist only in --dev mode",
            ));
        }
        if !matches!(self.sms.provider.as_str(), "none" | "webhook" | "file") {
            return Err(ConfigError::Invalid(
                "sms.provider must be none, webhook or file",
            ));
        }
        if !matches!(self.email.provider.as_str(), "none" | "smtp" | "file") {
            return Err(ConfigError::Invalid(
                "email.provider must be none, smtp or file",
            ));
        }
        if self.sms.provider == "webhook" && self.sms.webhook_url.is_empty() {
            return Err(ConfigError::Invalid(
                "sms.webhook_url is required for the webhook provider",
            ));
        }
        if self.email.provider == "smtp" && self.email.smtp_host.is_empty() {
            return Err(ConfigError::Invalid(
                "email.smtp_host is required for the smtp provider",
            ));
        }
        if self.otp.max_attempts == 0 || self.otp.ttl_secs == 0 {
            return Err(ConfigError::Invalid(
                "otp.max_attempts and otp.ttl_secs must be positive",
            ));
        }
        if let Some(schema) = &self.pg_schema {
            if schema.is_empty()
                || !schema
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(ConfigError::Invalid("pg_schema must be [A-Za-z0-9_]+"));
            }
        }
        Ok(())
    }

    /// Switches on dev mode: file sinks for SMS and email in the data directory.
    pub fn enable_dev(&mut self, captcha_answer: Option<String>) {
        self.dev = Some(DevConfig { captcha_answer });
        self.sms.provider = "file".to_owned();
        self.email.provider = "file".to_owned();
    }
}
