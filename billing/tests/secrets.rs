//! SIP passwords at rest, on both backends: sealed in the database (the SQLite files and the
//! PostgreSQL row hold no plaintext) while sign-up, credential re-fetch and Basic auth still see
//! the password; a start with another key is refused with a clear error; a database from before
//! sealing is converted on start without losing a row, and the migration that drops the
//! plaintext refuses to run by hand before that.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;

use base64::Engine;
use common::{Backend, Harness, TestDb, TEST_KEY};
use serde_json::json;
use sqlx::migrate::Migrator;
use sqlx::AnyPool;
use vigil_billing::build_state;
use vigil_billing::config::SecretString;
use vigil_billing::util::sip_ha1;

both_backends!(
    passwords_are_sealed_at_rest,
    wrong_key_is_refused,
    legacy_plaintext_passwords_are_sealed_on_start,
);

const OTHER_KEY: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// Asserts that no stored form of the accounts table holds `needle`: on SQLite the database
/// file and its WAL byte for byte, on PostgreSQL every row as text.
async fn assert_not_stored(tdb: &TestDb, pool: &AnyPool, needle: &str) {
    match tdb.backend {
        Backend::Sqlite => {
            for name in ["billing.sqlite", "billing.sqlite-wal"] {
                let Ok(bytes) = std::fs::read(tdb.tmp.path().join(name)) else {
                    continue;
                };
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                    "{name} holds the plaintext password"
                );
            }
        }
        Backend::Postgres => {}
    }
    let sql = match tdb.backend {
        Backend::Postgres => "SELECT CAST(a AS TEXT) FROM accounts a",
        // SQLite has no row-to-text cast (and the file check above covers every byte).
        Backend::Sqlite => {
            "SELECT id || mobile || alias || sip_username || sip_domain || ha1 || ha1b FROM accounts"
        }
    };
    let rows: Vec<(String,)> = sqlx::query_as(sql).fetch_all(pool).await.unwrap();
    assert!(!rows.is_empty());
    for (row,) in rows {
        assert!(!row.contains(needle), "a row holds the plaintext password");
    }
    // And the plaintext column is gone.
    assert!(sqlx::query("SELECT sip_password FROM accounts")
        .fetch_all(pool)
        .await
        .is_err());
}

async fn passwords_are_sealed_at_rest(b: Backend) {
    let h = Harness::start(b).await;
    h.import_dids(100, 2).await;
    let v = h.signup("+12065552453").await;
    let id = v["account_id"].as_str().unwrap().to_owned();
    let password = v["password"].as_str().unwrap().to_owned();
    assert!(password.len() >= 20);

    let (sealed, ha1): (Vec<u8>, String) =
        sqlx::query_as("SELECT sip_password_sealed, ha1 FROM accounts WHERE id = $1")
            .bind(&id)
            .fetch_one(&h.state.db.pool)
            .await
            .unwrap();
    assert_eq!(
        h.state.secrets.open_password(&id, &sealed).unwrap(),
        password
    );
    assert!(h
        .state
        .secrets
        .open_password("12065550000", &sealed)
        .is_err());
    assert_eq!(ha1, sip_ha1(&id, "sip.test.example", &password).0);
    assert_not_stored(&h.db, &h.state.db.pool, &password).await;

    // Re-fetching the credentials (sign-up again) and Basic auth see the password.
    h.state.clock.advance(31);
    let again = h.signup("+12065552453").await;
    assert_eq!(again["created"], false);
    assert_eq!(again["password"], password.as_str());
    assert_eq!(
        h.get("/v1/balance", Some(&basic(&id, &password)))
            .await
            .status,
        200
    );
    h.get("/v1/balance", Some(&basic(&id, "wrong-password-000000")))
        .await
        .expect_error(401, "unauthorized");

    // PBX: the admin's response and the user's sign-in return the same password.
    let customer = h.customer("abc").await;
    let r = h
        .admin_post(
            "/admin/v1/accounts",
            json!({ "customer_id": customer, "mobile": "+12065550777",
                    "email": "pbx@abc.example", "extension": "101" }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let pbx_password = r.json()["password"].as_str().unwrap().to_owned();
    assert_not_stored(&h.db, &h.state.db.pool, &pbx_password).await;
    let r = h
        .post(
            "/v1/signin",
            None,
            json!({ "mobile": "+12065550777", "captcha_answer": common::CAPTCHA }),
        )
        .await;
    assert_eq!(r.status, 202);
    let code = h.email_code("pbx@abc.example").unwrap();
    let r = h
        .post(
            "/v1/signin/verify",
            None,
            json!({ "mobile": "+12065550777", "code": code }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["password"], pbx_password.as_str());

    // A sealed value moved onto another row does not open there: a 500, not a wrong login.
    sqlx::query("UPDATE accounts SET sip_password_sealed = $1 WHERE id <> $2")
        .bind(&sealed)
        .bind(&id)
        .execute(&h.state.db.pool)
        .await
        .unwrap();
    let pbx_id = r.json()["account_id"].as_str().unwrap().to_owned();
    h.get("/v1/balance", Some(&basic(&pbx_id, &password)))
        .await
        .expect_error(500, "internal");
    h.finish().await;
}

async fn wrong_key_is_refused(b: Backend) {
    let h = Harness::start_with(b, |cfg| {
        cfg.secret_key = Some(SecretString(TEST_KEY.to_owned()));
    })
    .await;
    h.import_dids(100, 1).await;
    let v = h.signup("+12065552453").await;
    let password = v["password"].as_str().unwrap().to_owned();

    let mut cfg = h.state.cfg.clone();
    cfg.secret_key = Some(SecretString(OTHER_KEY.to_owned()));
    let err = build_state(cfg.clone()).await.unwrap_err().to_string();
    assert!(
        err.contains("not the key this database was encrypted with"),
        "{err}"
    );
    assert!(!err.contains(OTHER_KEY) && !err.contains(TEST_KEY), "{err}");

    // Outside dev mode a missing key is refused before the database is touched.
    cfg.secret_key = None;
    cfg.dev = None;
    cfg.sms.provider = "none".into();
    cfg.email.provider = "none".into();
    let err = build_state(cfg.clone()).await.unwrap_err().to_string();
    assert!(err.contains("VIGIL_BILLING_SECRET_KEY"), "{err}");

    // The right key from a file opens the database and the password.
    let key_file = h.db.tmp.path().join("key");
    std::fs::write(&key_file, TEST_KEY).unwrap();
    cfg.secret_key_file = Some(key_file);
    let st = build_state(cfg).await.unwrap();
    let creds = vigil_billing::accounts::credentials(
        &st.db,
        &st.secrets,
        v["account_id"].as_str().unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(creds.password, password);
    st.db.pool.close().await;
    h.finish().await;
}

fn migrations_dir(b: Backend) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(match b {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        })
}

async fn legacy_plaintext_passwords_are_sealed_on_start(b: Backend) {
    const LEGACY: [(&str, &str); 2] = [
        ("12065550100", "LegacyPasswordAAAA2345"),
        ("12065550101", "LegacyPasswordBBBB2345"),
    ];
    let tdb = TestDb::new(b).await;
    // A database as the first release left it: only 0001, plaintext passwords.
    let only_first = tempfile::tempdir().unwrap();
    std::fs::copy(
        migrations_dir(b).join("0001_init.sql"),
        only_first.path().join("0001_init.sql"),
    )
    .unwrap();
    let pool = tdb.raw_pool().await;
    // The hand-run migrators skip sqlx's database-wide advisory lock: a run that fails (as the
    // second one must) would otherwise leave the lock held on a pooled connection and stall
    // every other test's migrations in the same database.
    let mut first = Migrator::new(only_first.path()).await.unwrap();
    first.set_locking(false);
    first.run(&pool).await.unwrap();
    for (i, (id, password)) in LEGACY.iter().enumerate() {
        let mobile = format!("1206555245{i}");
        let (ha1, ha1b) = sip_ha1(id, "sip.test.example", password);
        sqlx::query(
            "INSERT INTO accounts (id, kind, product_id, mobile, mobile_hash, alias, sip_username, \
             sip_domain, sip_password, ha1, ha1b, created_at, updated_at) \
             VALUES ($1, 'individual', (SELECT id FROM products WHERE name = 'default'), $2, 'h', $3, \
             $1, 'sip.test.example', $4, $5, $6, 0, 0)",
        )
        .bind(id)
        .bind(&mobile)
        .bind(format!("{mobile}@pstn"))
        .bind(password)
        .bind(&ha1)
        .bind(&ha1b)
        .execute(&pool)
        .await
        .unwrap();
    }
    // Applying every migration by hand would drop unsealed passwords: 0003 refuses.
    let mut all = Migrator::new(migrations_dir(b).as_path()).await.unwrap();
    all.set_locking(false);
    assert!(all.run(&pool).await.is_err(), "0003 ran over unsealed rows");
    let (n,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM accounts WHERE sip_password LIKE 'Legacy%'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(n, 2, "the plaintext is still there to be sealed");
    pool.close().await;

    let h = Harness::start_on(tdb, |_| {}).await;
    for (i, (id, password)) in LEGACY.iter().enumerate() {
        assert_eq!(
            h.get("/v1/balance", Some(&basic(id, password)))
                .await
                .status,
            200
        );
        // Re-fetching the credentials returns the old password.
        let v = h.signup(&format!("+1206555245{i}")).await;
        assert_eq!(v["created"], false);
        assert_eq!(v["password"], *password);
        assert_eq!(v["account_id"], *id);
    }
    for (_, password) in LEGACY {
        assert_not_stored(&h.db, &h.state.db.pool, password).await;
    }
    h.finish().await;
}
