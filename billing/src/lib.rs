//! vigil-billing: the provisioning and billing service for Vigil app users (the PortaBilling role
//! for operators that have no billing system of their own).
//!
//! It signs individual users up by SMS one-time password and PBX users in by email, hands out a
//! DID from the inventory as account id, caller ID and SIP username, serves the app's contact list,
//! smart contacts, self-care, call history and balance, and gives the SIP switch a routing lookup
//! and CDR rating. The gateway crates never depend on it.
//!
//! Code map: `config` (settings), `db` (pool, migrations, clock), `api` (HTTP edge), `accounts`
//! (provisioning, sessions), `otp` and `captcha` (sign-up security), `notify` (SMS and email),
//! `dids` (inventory), `selfcare` (features and settings), `rating` (tariffs and CDRs),
//! `secrets` (the key, and SIP passwords sealed at rest).

pub mod accounts;
pub mod api;
pub mod captcha;
pub mod config;
pub mod db;
pub mod dids;
pub mod error;
pub mod notify;
pub mod otp;
pub mod rating;
pub mod secrets;
pub mod selfcare;
pub mod util;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use tokio::net::TcpListener;

pub use api::AppState;
pub use config::Config;

/// Loads the key, opens the database (checking the key against it) and builds providers.
pub async fn build_state(cfg: Config) -> anyhow::Result<AppState> {
    cfg.validate()?;
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating data directory {}", cfg.data_dir.display()))?;
    let secrets = secrets::Secrets::load(
        cfg.secret_key.as_ref().map(|k| k.0.as_str()),
        cfg.secret_key_file.as_deref(),
        &cfg.data_dir,
        cfg.dev.is_some(),
    )?;
    let db = db::Db::open(
        &cfg.effective_database_url(),
        cfg.pg_schema.as_deref(),
        cfg.max_connections,
        &secrets,
    )
    .await?;
    let sms = notify::Sms::from_config(&cfg.sms, &cfg.data_dir)?;
    let email = notify::Email::from_config(&cfg.email, &cfg.data_dir)?;
    Ok(AppState(Arc::new(api::Inner {
        cfg,
        db,
        secrets,
        sms,
        email,
        clock: db::Clock::default(),
        contacts_cache: Mutex::new(HashMap::new()),
    })))
}

/// A running service: its bound addresses and the state (tests reach the clock through it).
#[derive(Debug)]
pub struct Running {
    /// Public API address.
    pub addr: SocketAddr,
    /// Internal API address, when it has its own listener.
    pub internal_addr: Option<SocketAddr>,
    /// Shared state.
    pub state: AppState,
}

/// Binds the listeners and serves in background tasks, with periodic housekeeping.
pub async fn spawn(state: AppState) -> anyhow::Result<Running> {
    let listener = TcpListener::bind(state.cfg.listen)
        .await
        .context("binding listen address")?;
    let addr = listener.local_addr()?;
    let app = api::router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "public listener stopped");
        }
    });
    let internal_addr = match state.cfg.internal_listen {
        Some(a) => {
            let l = TcpListener::bind(a)
                .await
                .context("binding internal_listen address")?;
            let bound = l.local_addr()?;
            let app = api::internal_router(state.clone())
                .into_make_service_with_connect_info::<SocketAddr>();
            tokio::spawn(async move {
                if let Err(e) = axum::serve(l, app).await {
                    tracing::error!(error = %e, "internal listener stopped");
                }
            });
            Some(bound)
        }
        None => None,
    };
    let hk = state.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(600));
        loop {
            tick.tick().await;
            if let Err(e) = otp::housekeeping(&hk.db, hk.now()).await {
                tracing::warn!(error = %e, "housekeeping failed");
            }
        }
    });
    Ok(Running {
        addr,
        internal_addr,
        state,
    })
}
