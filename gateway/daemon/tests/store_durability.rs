//! kill -9 durability: a child process writes devices through the group-commit writer into
//! SQLite and prints each id once its write is acknowledged; the parent SIGKILLs the child
//! mid-stream (writes still in flight), reopens the database, and requires every
//! acknowledged device to be there.
//!
//! The child is this same test binary, re-run with a filter for [`durability_child`] and an
//! environment variable naming the database.

// Tests panic on the unexpected: unwrap is the assertion.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

use vigil_gateway::bindings::ContactToken;
use vigil_gateway::store::{BatchConfig, DeviceRecord, SqliteStore, Store, WriteBatcher, WriteOp};

const CHILD_ENV: &str = "VIGIL_DURABILITY_CHILD_DB";

fn record(id: String) -> DeviceRecord {
    let token = ContactToken::random();
    DeviceRecord {
        device_id: id,
        binding_id: token.0 as i64,
        contact_token: token.to_string(),
        username: "u".into(),
        auth_username: None,
        password_enc: vec![1; 40],
        domain: "example.com".into(),
        outbound_proxy: None,
        transport: None,
        display_name: None,
        push_kind: "fcm".into(),
        push_enc: vec![2; 120],
        push_topic: Some("p".into()),
        push_env: None,
        app_id: "a".into(),
        app_version: "1".into(),
        expires: 3600,
        secret_hash: vec![3; 32],
        body_hash: vec![4; 16],
        last_put_ms: 1,
        state: "registering".into(),
        last_status: 0,
    }
}

/// The child: writes forever from 32 concurrent writers, printing `ACK id` per commit.
#[test]
fn durability_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return; // run as a normal test: nothing to do
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open(std::path::Path::new(&path))
                .await
                .unwrap(),
        );
        let batcher = WriteBatcher::spawn(store, BatchConfig::default());
        let mut tasks = Vec::new();
        for w in 0..32 {
            let batcher = batcher.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0.. {
                    let id = format!("w{w}-{i}");
                    batcher
                        .write(WriteOp::Upsert(Box::new(record(id.clone()))))
                        .await
                        .unwrap();
                    use std::io::Write;
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ACK {id}").unwrap();
                    out.flush().unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vigil.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "durability_child",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_ENV, &db)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut acked = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(id) = line.strip_prefix("ACK ") {
            acked.push(id.to_owned());
            if acked.len() >= 3000 {
                break;
            }
        }
    }
    // SIGKILL while the 32 writers keep writing: no chance to close anything.
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        acked.len() >= 3000,
        "child stopped early after {}",
        acked.len()
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    let stored = rt.block_on(async {
        let store = SqliteStore::open(&db).await.unwrap();
        let all = store.load_all().await.unwrap();
        store.close().await;
        all
    });
    let ids: std::collections::HashSet<_> = stored.into_iter().map(|r| r.device_id).collect();
    let missing: Vec<_> = acked.iter().filter(|id| !ids.contains(*id)).collect();
    println!(
        "acknowledged {} before SIGKILL, {} stored after reopening, {} missing",
        acked.len(),
        ids.len(),
        missing.len()
    );
    assert!(
        missing.is_empty(),
        "acknowledged but lost: {:?}",
        &missing[..missing.len().min(5)]
    );
}
