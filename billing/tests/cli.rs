//! The `vigil-billing` binary: `did import` on both backends, and dev-only switches refused
//! outside `--dev`.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::Backend;
use vigil_billing::config::Config;
use vigil_billing::db::Db;

both_backends!(did_import_cli);

async fn did_import_cli(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("dids.csv");
    std::fs::write(
        &csv,
        "number,city\n+12065550100,Seattle\n+1 206 555 0101,Seattle\n",
    )
    .unwrap();
    let schema = format!("vbt_cli_{}", hex::encode(rand::random::<[u8; 5]>()));
    let run = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vigil-billing"));
        cmd.args(["did", "import"])
            .arg(&csv)
            .args(["--batch", "seattle", "--pricing", "standard"]);
        cmd.arg("--data-dir").arg(dir.path());
        if b == Backend::Postgres {
            cmd.args(["--database-url", &common::pg_url(), "--pg-schema", &schema]);
        }
        cmd.output().unwrap()
    };
    let out = run();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("imported 2 numbers"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = run();
    assert!(String::from_utf8_lossy(&out.stdout).contains("imported 0 numbers"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 already present"));

    let url = match b {
        Backend::Sqlite => format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("billing.sqlite").display()
        ),
        Backend::Postgres => common::pg_url(),
    };
    let db = Db::open(&url, (b == Backend::Postgres).then_some(schema.as_str()), 2)
        .await
        .unwrap();
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT number, batch, pricing FROM dids ORDER BY number")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        rows,
        [
            ("12065550100".into(), "seattle".into(), "standard".into()),
            ("12065550101".into(), "seattle".into(), "standard".into())
        ]
    );
    db.pool.close().await;
    if b == Backend::Postgres {
        use sqlx::Executor;
        let pool = sqlx::AnyPool::connect(&common::pg_url()).await.unwrap();
        pool.execute(format!("DROP SCHEMA \"{schema}\" CASCADE").as_str())
            .await
            .unwrap();
    }

    // A malformed row names its line and imports nothing.
    std::fs::write(&csv, "+12065550102\nnot-a-number\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vigil-billing"))
        .args(["did", "import"])
        .arg(&csv)
        .args(["--batch", "x", "--pricing", "y", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 2"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn dev_switches_need_dev_mode() {
    let out = Command::new(env!("CARGO_BIN_EXE_vigil-billing"))
        .args(["--dev-captcha-answer", "1234"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--dev"));
    let mut cfg = Config::default();
    cfg.sms.provider = "file".into();
    assert!(
        cfg.validate().is_err(),
        "file SMS sink accepted outside dev mode"
    );
    let mut cfg = Config::default();
    cfg.email.provider = "file".into();
    assert!(
        cfg.validate().is_err(),
        "file email sink accepted outside dev mode"
    );
    let mut cfg = Config::default();
    cfg.enable_dev(None);
    assert!(cfg.validate().is_ok());
}

#[test]
fn config_file_overrides_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("billing.toml");
    std::fs::write(&path, "listen = \"127.0.0.1:9999\"\n[sip]\ndomain = \"sip.op.example\"\nproxy = \"p\"\n[otp]\nmax_attempts = 3\n").unwrap();
    let cfg = Config::from_file(&path).unwrap();
    assert_eq!(cfg.listen.port(), 9999);
    assert_eq!(cfg.sip.domain, "sip.op.example");
    assert_eq!(cfg.otp.max_attempts, 3);
    assert_eq!(cfg.otp.ttl_secs, 300);
    std::fs::write(&path, "no_such_key = 1\n").unwrap();
    assert!(Config::from_file(&path).is_err());
}
