//! Delivery of one-time passwords: SMS (HTTP webhook or dev file sink) and email (SMTP over
//! rustls or dev file sink).
//!
//! Providers are closed enums rather than trait objects: there are few of them and they are all
//! chosen from the configuration at start. Message bodies contain codes and are never logged;
//! destinations are logged redacted.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

use crate::config::{EmailConfig, SmsConfig};
use crate::util::E164;

/// Why a message could not be handed over.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryError {
    /// No provider is configured.
    #[error("no provider configured")]
    NotConfigured,
    /// The provider answered with a non-success status.
    #[error("provider answered HTTP {0}")]
    Status(u16),
    /// Transport failure talking to the provider.
    #[error("transport: {0}")]
    Transport(String),
    /// Writing the dev sink failed.
    #[error("sink: {0}")]
    Sink(#[from] std::io::Error),
    /// The provider configuration is unusable (bad URL, bad address).
    #[error("bad provider configuration: {0}")]
    Config(&'static str),
}

type HttpsClient = Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

/// An SMS provider.
#[derive(Clone)]
pub enum Sms {
    /// Not configured: sending fails.
    None,
    /// POSTs a templated body to a URL.
    Webhook {
        /// Settings (URL, template, content type, auth header).
        cfg: Arc<SmsConfig>,
        /// Shared HTTP(S) client (boxed: it is large and this enum is passed around).
        client: Box<HttpsClient>,
    },
    /// Appends JSON lines to a file (dev mode).
    File(FileSink),
}

impl std::fmt::Debug for Sms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sms::None => f.write_str("Sms::None"),
            Sms::Webhook { .. } => f.write_str("Sms::Webhook"),
            Sms::File(s) => write!(f, "Sms::File({:?})", s.path),
        }
    }
}

/// A JSON-lines file sink shared by concurrent senders.
#[derive(Debug, Clone)]
pub struct FileSink {
    /// File path.
    pub path: PathBuf,
    lock: Arc<Mutex<()>>,
}

impl FileSink {
    /// A sink writing to `path`.
    pub fn new(path: PathBuf) -> FileSink {
        FileSink {
            path,
            lock: Arc::new(Mutex::new(())),
        }
    }

    async fn append(&self, value: serde_json::Value) -> Result<(), DeliveryError> {
        let mut line = value.to_string();
        line.push('\n');
        let _guard = self.lock.lock().await;
        let mut f = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .await?;
        f.write_all(line.as_bytes()).await?;
        f.flush().await?;
        Ok(())
    }
}

impl Sms {
    /// Builds the provider named in the configuration; `data_dir` hosts the dev sink.
    pub fn from_config(cfg: &SmsConfig, data_dir: &std::path::Path) -> Result<Sms, DeliveryError> {
        match cfg.provider.as_str() {
            "webhook" => {
                let https = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
                    .map_err(|_| DeliveryError::Config("TLS provider"))?
                    .https_or_http()
                    .enable_http1()
                    .build();
                let client = Client::builder(TokioExecutor::new()).build(https);
                Ok(Sms::Webhook {
                    cfg: Arc::new(cfg.clone()),
                    client: Box::new(client),
                })
            }
            "file" => Ok(Sms::File(FileSink::new(data_dir.join("sms.jsonl")))),
            _ => Ok(Sms::None),
        }
    }

    /// Sends `text` to `to`.
    pub async fn send(&self, to: &E164, text: &str) -> Result<(), DeliveryError> {
        match self {
            Sms::None => Err(DeliveryError::NotConfigured),
            Sms::File(sink) => {
                sink.append(serde_json::json!({ "to": to.plus(), "text": text }))
                    .await
            }
            Sms::Webhook { cfg, client } => {
                let form = cfg
                    .content_type
                    .starts_with("application/x-www-form-urlencoded");
                let esc = |s: &str| if form { form_escape(s) } else { json_escape(s) };
                let body = cfg
                    .body_template
                    .replace("{to_digits}", &esc(to.digits()))
                    .replace("{to}", &esc(&to.plus()))
                    .replace("{text}", &esc(text));
                let mut req = http::Request::post(&cfg.webhook_url)
                    .header(http::header::CONTENT_TYPE, &cfg.content_type);
                if let Some(auth) = &cfg.authorization {
                    req = req.header(http::header::AUTHORIZATION, auth);
                }
                let req = req
                    .body(Full::new(Bytes::from(body)))
                    .map_err(|_| DeliveryError::Config("sms.webhook_url is not a valid URI"))?;
                let resp =
                    tokio::time::timeout(std::time::Duration::from_secs(10), client.request(req))
                        .await
                        .map_err(|_| DeliveryError::Transport("timeout".into()))?
                        .map_err(|e| DeliveryError::Transport(e.to_string()))?;
                let status = resp.status();
                // Drain (bounded by the timeout above) so the connection can be reused.
                let _ = resp.into_body().collect().await;
                if status.is_success() {
                    Ok(())
                } else {
                    Err(DeliveryError::Status(status.as_u16()))
                }
            }
        }
    }
}

fn json_escape(s: &str) -> String {
    let quoted = serde_json::Value::String(s.to_owned()).to_string();
    quoted[1..quoted.len() - 1].to_owned()
}

fn form_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// An email provider.
#[derive(Clone)]
pub enum Email {
    /// Not configured: sending fails.
    None,
    /// SMTP relay.
    Smtp {
        /// Transport (pooled).
        transport: AsyncSmtpTransport<Tokio1Executor>,
        /// From mailbox.
        from: Mailbox,
        /// Subject.
        subject: String,
    },
    /// JSON-lines file (dev mode).
    File(FileSink),
}

impl std::fmt::Debug for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Email::None => f.write_str("Email::None"),
            Email::Smtp { .. } => f.write_str("Email::Smtp"),
            Email::File(s) => write!(f, "Email::File({:?})", s.path),
        }
    }
}

impl Email {
    /// Builds the provider named in the configuration.
    pub fn from_config(
        cfg: &EmailConfig,
        data_dir: &std::path::Path,
    ) -> Result<Email, DeliveryError> {
        match cfg.provider.as_str() {
            "smtp" => {
                let builder = match cfg.smtp_security.as_str() {
                    "tls" => AsyncSmtpTransport::<Tokio1Executor>::relay(&cfg.smtp_host),
                    "none" => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(
                        &cfg.smtp_host,
                    )),
                    _ => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&cfg.smtp_host),
                }
                .map_err(|_| DeliveryError::Config("email.smtp_host"))?;
                let mut builder = builder.port(cfg.smtp_port);
                if let (Some(u), Some(p)) = (&cfg.smtp_username, &cfg.smtp_password) {
                    builder = builder.credentials(Credentials::new(u.clone(), p.clone()));
                }
                let from = cfg
                    .from
                    .parse()
                    .map_err(|_| DeliveryError::Config("email.from"))?;
                Ok(Email::Smtp {
                    transport: builder.build(),
                    from,
                    subject: cfg.subject.clone(),
                })
            }
            "file" => Ok(Email::File(FileSink::new(data_dir.join("email.jsonl")))),
            _ => Ok(Email::None),
        }
    }

    /// Sends a one-line text message.
    pub async fn send(&self, to: &str, body: &str) -> Result<(), DeliveryError> {
        match self {
            Email::None => Err(DeliveryError::NotConfigured),
            Email::File(sink) => {
                sink.append(serde_json::json!({ "to": to, "text": body }))
                    .await
            }
            Email::Smtp {
                transport,
                from,
                subject,
            } => {
                let to: Mailbox = to
                    .parse()
                    .map_err(|_| DeliveryError::Config("recipient address"))?;
                let msg = Message::builder()
                    .from(from.clone())
                    .to(to)
                    .subject(subject.clone())
                    .body(body.to_owned())
                    .map_err(|_| DeliveryError::Config("message"))?;
                transport
                    .send(msg)
                    .await
                    .map_err(|e| DeliveryError::Transport(e.to_string()))?;
                Ok(())
            }
        }
    }
}
