//! The `vigil-gateway` binary: parses the command line, loads the configuration, starts the
//! gateway and stops it gracefully on SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use tracing::info;
use tracing_subscriber::EnvFilter;
use vigil_gateway::{Config, Gateway, ListenSpec};

/// Vigil: push and registration gateway for mobile SIP apps.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// TOML configuration file. Without one, built-in defaults are used (loopback listeners,
    /// development certificate, ./vigil-data).
    #[arg(long, env = "VIGIL_CONFIG")]
    config: Option<PathBuf>,
    /// SIP listener, TRANSPORT:IP:PORT (udp, tcp or tls); repeatable, or comma-separated in
    /// the environment variable. Replaces the listeners of the configuration file.
    #[arg(long = "sip-listen", env = "VIGIL_SIP_LISTEN", value_delimiter = ',')]
    sip_listen: Vec<ListenSpec>,
    /// Directory for persistent state.
    #[arg(long, env = "VIGIL_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address of the HTTPS intake API, IP:PORT (port 0 picks a free one).
    #[arg(long, env = "VIGIL_API_LISTEN")]
    api_listen: Option<SocketAddr>,
    /// SIP server every REGISTER is sent to, host[:port] (`[reg] upstream`).
    #[arg(long, env = "VIGIL_UPSTREAM")]
    upstream: Option<String>,
    /// Log filter: error, warn, info, debug, trace, or a tracing directive list.
    #[arg(long, env = "VIGIL_LOG")]
    log: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let (mut config, from_file) = match &cli.config {
        Some(path) => (Config::from_file(path)?, true),
        None => (Config::default(), false),
    };
    if !cli.sip_listen.is_empty() {
        config.sip.listen = cli.sip_listen.clone();
    }
    if let Some(dir) = &cli.data_dir {
        config.data_dir = dir.clone();
    }
    if let Some(addr) = cli.api_listen {
        config.api.listen = addr;
    }
    if let Some(upstream) = &cli.upstream {
        config.reg.upstream = Some(upstream.clone());
    }
    if let Some(log) = &cli.log {
        config.log = log.clone();
    }
    let filter = EnvFilter::try_new(&config.log)
        .with_context(|| format!("invalid log filter {:?}", config.log))?;
    // Colour only on a terminal: journald and log files get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .init();
    if !from_file {
        info!("no --config given: running on embedded defaults");
    }

    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let gateway = Gateway::start(&config).await?;
        let token = gateway.shutdown_token();
        tokio::spawn(async move {
            wait_for_signal().await;
            info!("signal received");
            token.cancel();
        });
        let report = gateway.run_until_shutdown().await;
        if !report.graceful {
            info!("some connections were cut at the end of the grace period");
        }
        Ok(())
    })
}

/// SIGINT (Ctrl-C) or, on Unix, SIGTERM (systemd, containers).
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
