//! The `vigil-billing` binary: `did import` on both backends, dev-only switches refused
//! outside `--dev`, and the secret key required outside `--dev`.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::{Backend, TestDb, TEST_KEY};
use vigil_billing::config::Config;
use vigil_billing::db::Db;
use vigil_billing::secrets::{Secrets, KEY_ENV, KEY_FILE_ENV};

/// The binary with no key from the environment this test runs in.
fn billing() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vigil-billing"));
    cmd.env_remove(KEY_ENV).env_remove(KEY_FILE_ENV);
    cmd
}

both_backends!(did_import_cli);

async fn did_import_cli(b: Backend) {
    let tdb = TestDb::new(b).await;
    let dir = &tdb.tmp;
    let csv = dir.path().join("dids.csv");
    std::fs::write(
        &csv,
        "number,city\n+12065550100,Seattle\n+1 206 555 0101,Seattle\n",
    )
    .unwrap();
    let run = || {
        let mut cmd = billing();
        cmd.env(KEY_ENV, TEST_KEY);
        cmd.args(["did", "import"])
            .arg(&csv)
            .args(["--batch", "seattle", "--pricing", "standard"]);
        cmd.arg("--data-dir").arg(dir.path());
        if let Some(schema) = tdb.schema_name() {
            cmd.args(["--database-url", &tdb.database_url(), "--pg-schema", schema]);
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

    let key = Secrets::parse(TEST_KEY, "test").unwrap();
    let db = Db::open(&tdb.database_url(), tdb.schema_name(), 2, &key)
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

    // A malformed row names its line and imports nothing.
    std::fs::write(&csv, "+12065550102\nnot-a-number\n").unwrap();
    let out = billing()
        .env(KEY_ENV, TEST_KEY)
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
    tdb.finish().await;
}

#[test]
fn secret_key_required_outside_dev_mode() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("dids.csv");
    std::fs::write(&csv, "+12065550100\n").unwrap();
    let import = |cmd: &mut Command| {
        cmd.args(["did", "import"])
            .arg(&csv)
            .args(["--batch", "b", "--pricing", "p", "--data-dir"])
            .arg(dir.path())
            .output()
            .unwrap()
    };
    let out = import(&mut billing());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(KEY_ENV) && err.contains("--secret-key-file"),
        "{err}"
    );
    assert!(
        !dir.path().join("secret.key").exists(),
        "no key is generated outside --dev"
    );
    // A malformed key is refused without echoing it.
    let out = import(billing().env(KEY_ENV, "c2VjcmV0LXNob3J0"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("not 32 bytes") && !err.contains("c2VjcmV0LXNob3J0"),
        "{err}"
    );
    // A key file works; --dev generates and announces a key of its own in another directory.
    let key_file = dir.path().join("key.hex");
    std::fs::write(&key_file, format!("{TEST_KEY}\n")).unwrap();
    let out = import(billing().arg("--secret-key-file").arg(&key_file));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dev_dir = tempfile::tempdir().unwrap();
    let out = billing()
        .args(["--dev", "did", "import"])
        .arg(&csv)
        .args(["--batch", "b", "--pricing", "p", "--data-dir"])
        .arg(dev_dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dev_dir.path().join("secret.key").exists());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("generated a development secret key")
            || String::from_utf8_lossy(&out.stderr).contains("generated a development secret key"),
        "dev mode says it generated a key"
    );
}

#[test]
fn dev_switches_need_dev_mode() {
    let out = billing()
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
