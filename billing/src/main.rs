//! The `vigil-billing` binary: `serve` (the default) and `did import`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use vigil_billing::config::SecretString;
use vigil_billing::{build_state, dids, secrets, spawn, Config};

#[derive(Debug, Parser)]
#[command(
    name = "vigil-billing",
    version,
    about = "Vigil provisioning and billing service"
)]
struct Cli {
    /// TOML configuration file; without one the embedded defaults apply.
    #[arg(long, short, env = "VIGIL_BILLING_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Data directory (SQLite database, secret key, dev sinks).
    #[arg(long, env = "VIGIL_BILLING_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// Database URL (sqlite://... or postgres://...).
    #[arg(long, env = "VIGIL_BILLING_DATABASE_URL", global = true)]
    database_url: Option<String>,
    /// PostgreSQL schema.
    #[arg(long, env = "VIGIL_BILLING_PG_SCHEMA", global = true)]
    pg_schema: Option<String>,
    /// Public listen address.
    #[arg(long, env = "VIGIL_BILLING_LISTEN", global = true)]
    listen: Option<std::net::SocketAddr>,
    /// Admin API token.
    #[arg(
        long,
        env = "VIGIL_BILLING_ADMIN_TOKEN",
        global = true,
        hide_env_values = true
    )]
    admin_token: Option<String>,
    /// Internal API token.
    #[arg(
        long,
        env = "VIGIL_BILLING_INTERNAL_TOKEN",
        global = true,
        hide_env_values = true
    )]
    internal_token: Option<String>,
    /// File holding the 32-byte secret key (hex or base64) that seals SIP passwords at rest.
    /// The key itself may instead come from VIGIL_BILLING_SECRET_KEY. Required unless --dev.
    #[arg(long, env = secrets::KEY_FILE_ENV, global = true)]
    secret_key_file: Option<PathBuf>,
    /// Development mode: SMS and email go to files in the data directory, and a secret key is
    /// generated there when none is configured. Never in production.
    #[arg(long, global = true)]
    dev: bool,
    /// With --dev: a CAPTCHA answer that is always accepted.
    #[arg(long, requires = "dev", global = true)]
    dev_captcha_answer: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the service (default).
    Serve,
    /// DID inventory.
    Did {
        #[command(subcommand)]
        command: DidCommand,
    },
}

#[derive(Debug, Subcommand)]
enum DidCommand {
    /// Import numbers from a CSV file (first column: E.164 number).
    Import {
        /// CSV file.
        file: PathBuf,
        /// Batch name.
        #[arg(long)]
        batch: String,
        /// Pricing batch.
        #[arg(long)]
        pricing: String,
    },
}

fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    let mut cfg = match &cli.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if let Some(v) = &cli.data_dir {
        cfg.data_dir = v.clone();
    }
    if let Some(v) = &cli.database_url {
        cfg.database_url = v.clone();
    }
    if let Some(v) = &cli.pg_schema {
        cfg.pg_schema = Some(v.clone());
    }
    if let Some(v) = cli.listen {
        cfg.listen = v;
    }
    if let Some(v) = &cli.admin_token {
        cfg.admin_token = Some(v.clone());
    }
    if let Some(v) = &cli.internal_token {
        cfg.internal_token = Some(v.clone());
    }
    // The key itself is read from the environment only, never from a flag: command lines are
    // visible to every user of the host.
    if let Ok(v) = std::env::var(secrets::KEY_ENV) {
        if !v.trim().is_empty() {
            cfg.secret_key = Some(SecretString(v));
        }
    }
    if let Some(v) = &cli.secret_key_file {
        cfg.secret_key_file = Some(v.clone());
    }
    if cli.dev {
        cfg.enable_dev(cli.dev_captcha_answer.clone());
    }
    Ok(cfg)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    let cfg = load_config(&cli)?;
    if cli.config.is_none() {
        let db = if cfg.database_url.is_empty() {
            format!(
                "SQLite in {}",
                cfg.data_dir.join("billing.sqlite").display()
            )
        } else {
            "the database from --database-url".to_owned()
        };
        tracing::info!("no configuration file given: running on embedded defaults with {db}");
    }
    match cli.command {
        Some(Command::Did {
            command:
                DidCommand::Import {
                    file,
                    batch,
                    pricing,
                },
        }) => {
            let f = std::fs::File::open(&file)
                .with_context(|| format!("opening {}", file.display()))?;
            let numbers = dids::parse_csv(std::io::BufReader::new(f))?;
            let state = build_state(cfg).await?;
            let report = dids::import(&state.db, &batch, &pricing, &numbers, state.now())
                .await
                .map_err(|e| anyhow::anyhow!("import failed: {e}"))?;
            println!(
                "imported {} numbers into batch {batch:?} (pricing {pricing:?}); {} already present",
                report.imported, report.duplicates
            );
            Ok(())
        }
        None | Some(Command::Serve) => {
            if cfg.dev.is_some() {
                tracing::warn!(dir = %cfg.data_dir.display(), "DEV MODE: SMS and email go to files in the data directory");
            }
            if cfg.admin_token.is_none() {
                tracing::warn!("no admin_token configured: the admin API is disabled");
            }
            if cfg.internal_token.is_none() {
                tracing::warn!("no internal_token configured: the internal API is disabled");
            }
            let state = build_state(cfg).await?;
            let running = spawn(state).await?;
            tracing::info!(addr = %running.addr, internal = ?running.internal_addr, "vigil-billing listening");
            tokio::signal::ctrl_c()
                .await
                .context("waiting for ctrl-c")?;
            tracing::info!("shutting down");
            Ok(())
        }
    }
}
