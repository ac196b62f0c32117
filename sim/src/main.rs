//! `vigil-sim`: the simulation lab's command line.
//!
//! `mock-apns` and `mock-fcm` run the mock push services on their own, so curl, h2load or a
//! staging gateway can be pointed at them. Each writes the test CA's PEM to `--ca-out` and
//! the keys clients need next to it, prints where, and serves until Ctrl-C.

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use vigil_sim::mock::{
    ApnsKey, ApnsSigningKey, FcmServiceAccount, FcmTrustedAccount, MockApns, MockApnsConfig,
    MockFcm, MockFcmConfig, TestCa,
};

#[derive(Parser, Debug)]
#[command(name = "vigil-sim", version, about = "Vigil simulation lab")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a mock APNs (HTTP/2 over TLS, token auth).
    MockApns {
        /// Address to listen on, e.g. 127.0.0.1:8443.
        #[arg(long)]
        listen: SocketAddr,
        /// Where to write the test CA certificate (PEM) clients must trust.
        #[arg(long)]
        ca_out: PathBuf,
        /// Directory for the generated `.p8` key (default: next to the CA file).
        #[arg(long, conflicts_with = "trust_key")]
        key_out: Option<PathBuf>,
        /// Trust this key instead of generating one: a `.p8` private key, or a `PUBLIC KEY` PEM.
        #[arg(long, requires_all = ["team_id", "key_id"])]
        trust_key: Option<PathBuf>,
        /// Apple team id of the key (generated keys default to `VIGILTEAM1`).
        #[arg(long)]
        team_id: Option<String>,
        /// Key id of the key (generated keys default to `VIGILKEY01`).
        #[arg(long)]
        key_id: Option<String>,
        /// Advertised SETTINGS_MAX_CONCURRENT_STREAMS.
        #[arg(long, default_value_t = 1000)]
        max_concurrent_streams: u32,
        /// Generate this many keys, each of its own team (the first uses `--team-id` /
        /// `--key-id`, the others `VIGILTEAM<i>` / `VIGILKEY<ii>`), so that several senders
        /// (a gateway and h2load in one benchmark) each have a provider token of their own.
        #[arg(long, default_value_t = 1, conflicts_with = "trust_key", value_parser = clap::value_parser!(u8).range(1..))]
        keys: u8,
        /// Accepted pushes kept in memory (for the statistics printed at exit the counters
        /// suffice; 0 keeps none, which suits long benchmark runs).
        #[arg(long, default_value_t = 100_000)]
        record: usize,
    },
    /// Run a mock FCM HTTP v1 with its OAuth token endpoint.
    MockFcm {
        /// Address to listen on, e.g. 127.0.0.1:8444.
        #[arg(long)]
        listen: SocketAddr,
        /// Where to write the test CA certificate (PEM) clients must trust.
        #[arg(long)]
        ca_out: PathBuf,
        /// Where to write the generated service-account JSON (default: next to the CA file).
        #[arg(long, conflicts_with = "trust_service_account")]
        service_account_out: Option<PathBuf>,
        /// Trust this existing service-account JSON instead of generating one.
        #[arg(long)]
        trust_service_account: Option<PathBuf>,
        /// Project id of a generated service account.
        #[arg(long, default_value = "vigil-mock")]
        project_id: String,
    },
}

type CliResult = Result<(), Box<dyn std::error::Error>>;

#[tokio::main]
async fn main() -> CliResult {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    match Cli::parse().command {
        Command::MockApns {
            listen,
            ca_out,
            key_out,
            trust_key,
            team_id,
            key_id,
            max_concurrent_streams,
            keys,
            record,
        } => {
            let ca = Arc::new(TestCa::generate()?);
            write(&ca_out, &ca.ca_pem)?;
            let team_id = team_id.unwrap_or_else(|| "VIGILTEAM1".to_owned());
            let key_id = key_id.unwrap_or_else(|| "VIGILKEY01".to_owned());
            let (trusted, example_token) = match trust_key {
                Some(path) => (
                    vec![ApnsKey::from_public_key(
                        &team_id,
                        &key_id,
                        &std::fs::read(&path)?,
                    )?],
                    None,
                ),
                None => {
                    let dir = key_out.unwrap_or_else(|| parent(&ca_out));
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)?
                        .as_secs();
                    let mut trusted = Vec::new();
                    let mut example = None;
                    for i in 1..=keys {
                        let (team, kid) = if i == 1 {
                            (team_id.clone(), key_id.clone())
                        } else {
                            (format!("VIGILTEAM{i}"), format!("VIGILKEY{i:02}"))
                        };
                        let signing = ApnsSigningKey::generate(&team, &kid)?;
                        let path = dir.join(format!("AuthKey_{kid}.p8"));
                        write(&path, &signing.p8_pem())?;
                        println!(
                            "APNs signing key: {} (team {team}, key {kid})",
                            path.display()
                        );
                        example.get_or_insert_with(|| signing.provider_token(now));
                        trusted.push(signing.public_key());
                    }
                    (trusted, example)
                }
            };
            let mut cfg = MockApnsConfig::new(ca, trusted);
            cfg.listen = listen;
            cfg.max_concurrent_streams = max_concurrent_streams;
            cfg.record_capacity = record;
            let handle = MockApns::start(cfg).await?;
            println!("CA certificate: {}", ca_out.display());
            if let Some(token) = example_token {
                // A throw-away test key (the first one): printing a token for curl/h2load is the point.
                println!("provider token valid for 60 minutes: {token}");
            }
            // Printed last: scripts wait for this line to know the mock is ready.
            println!(
                "mock APNs listening on {} ({})",
                handle.addr,
                handle.base_url()
            );
            tokio::signal::ctrl_c().await?;
            println!("{:?}", handle.stats());
            handle.shutdown().await;
        }
        Command::MockFcm {
            listen,
            ca_out,
            service_account_out,
            trust_service_account,
            project_id,
        } => {
            let ca = Arc::new(TestCa::generate()?);
            write(&ca_out, &ca.ca_pem)?;
            let (trusted, generated) = match trust_service_account {
                Some(path) => (
                    FcmTrustedAccount::from_service_account_json(&std::fs::read_to_string(path)?)?,
                    None,
                ),
                None => {
                    let email = format!("vigil-push@{project_id}.iam.gserviceaccount.com");
                    let account = FcmServiceAccount::generate(&project_id, &email)?;
                    (account.trusted(), Some(account))
                }
            };
            let mut cfg = MockFcmConfig::new(ca, vec![trusted]);
            cfg.listen = listen;
            let handle = MockFcm::start(cfg).await?;
            if let Some(account) = generated {
                let path = service_account_out
                    .unwrap_or_else(|| parent(&ca_out).join("service-account.json"));
                write(&path, &account.to_json(&handle.token_url()))?;
                println!("service account: {} (project {project_id})", path.display());
            }
            println!("CA certificate: {}", ca_out.display());
            println!(
                "mock FCM listening on {} ({}, token endpoint {})",
                handle.addr,
                handle.base_url(),
                handle.token_url()
            );
            tokio::signal::ctrl_c().await?;
            println!("{:?}", handle.stats());
            handle.shutdown().await;
        }
    }
    Ok(())
}

fn parent(file: &Path) -> PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn write(path: &Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}
