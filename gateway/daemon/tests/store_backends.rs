//! The device store on both backends: the same test bodies run on SQLite (a temp file) and on
//! PostgreSQL (`VIGIL_TEST_PG_URL`, default `postgres://postgres@127.0.0.1:5432/test`), each
//! PostgreSQL test in its own schema, dropped afterwards. An unreachable PostgreSQL fails the
//! tests: it is not skipped.

// Tests panic on the unexpected: unwrap is the assertion.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Arc;

use sqlx::Row;
use vigil_gateway::bindings::ContactToken;
use vigil_gateway::crypto::SecretBox;
use vigil_gateway::store::{
    BatchConfig, DeviceRecord, PgStore, SqliteStore, Store, WriteBatcher, WriteOp,
};

const PASSWORD: &str = "correct-horse-battery";
const VOIP_TOKEN: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";

fn record(secrets: &SecretBox, id: &str) -> DeviceRecord {
    let token = ContactToken::random();
    let push = format!(r#"{{"apns":{{"voip_token":"{VOIP_TOKEN}"}}}}"#);
    DeviceRecord {
        device_id: id.into(),
        binding_id: token.0 as i64,
        contact_token: token.to_string(),
        username: "alice".into(),
        auth_username: Some("alice-auth".into()),
        password_enc: secrets.seal(PASSWORD.as_bytes()),
        domain: "sip.example.com".into(),
        outbound_proxy: None,
        transport: Some("tcp".into()),
        display_name: Some("Alice".into()),
        push_kind: "apns".into(),
        push_enc: secrets.seal(push.as_bytes()),
        push_topic: Some("com.example.app".into()),
        push_env: Some("production".into()),
        app_id: "com.example.app".into(),
        app_version: "1.2.3".into(),
        expires: 3600,
        secret_hash: vec![9; 32],
        body_hash: vec![8; 16],
        last_put_ms: 1_700_000_000_000,
        state: "registering".into(),
        last_status: 0,
    }
}

/// A PostgreSQL store in a fresh schema; the schema is dropped by [`PgFixture::drop_schema`].
struct PgFixture {
    url: String,
    schema: String,
}

impl PgFixture {
    async fn new() -> (Self, PgStore) {
        let url = std::env::var("VIGIL_TEST_PG_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let schema = format!("vigil_store_{:016x}", rand::random::<u64>());
        let admin = sqlx::PgPool::connect(&url).await.unwrap_or_else(|e| {
            panic!("PostgreSQL at {url} is unreachable ({e}); set VIGIL_TEST_PG_URL or start it")
        });
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&admin)
            .await
            .expect("create test schema");
        admin.close().await;
        let store = PgStore::connect(&url, Some(&schema))
            .await
            .expect("connect and migrate in the test schema");
        (Self { url, schema }, store)
    }

    async fn drop_schema(self) {
        let admin = sqlx::PgPool::connect(&self.url).await.expect("reconnect");
        sqlx::query(&format!("DROP SCHEMA {} CASCADE", self.schema))
            .execute(&admin)
            .await
            .expect("drop test schema");
        admin.close().await;
    }
}

async fn sqlite() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("vigil.db"))
        .await
        .expect("open sqlite");
    (dir, store)
}

// ---- shared test bodies ----

async fn crud_round_trip(store: Arc<dyn Store>) {
    let secrets = SecretBox::from_key(&[5; 32]);
    let a = record(&secrets, "dev-a");
    let b = record(&secrets, "dev-b");
    store
        .apply(&[
            WriteOp::Upsert(Box::new(a.clone())),
            WriteOp::Upsert(Box::new(b.clone())),
        ])
        .await
        .unwrap();
    assert_eq!(store.get("dev-a").await.unwrap(), Some(a.clone()));
    assert_eq!(store.count().await.unwrap(), 2);

    let mut a2 = a.clone();
    a2.domain = "other.example.com".into();
    a2.outbound_proxy = Some("proxy.example.com:5061".into());
    store
        .apply(&[
            WriteOp::Upsert(Box::new(a2.clone())),
            WriteOp::Touch {
                device_id: "dev-b".into(),
                last_put_ms: 42,
            },
            WriteOp::SetState {
                device_id: "dev-b".into(),
                state: "failed",
                last_status: 403,
            },
        ])
        .await
        .unwrap();
    let all = store.load_all().await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0], a2, "upsert replaced every column");
    assert_eq!(all[1].last_put_ms, 42);
    assert_eq!((all[1].state.as_str(), all[1].last_status), ("failed", 403));
    assert_eq!(
        secrets.open(&all[0].password_enc).unwrap(),
        PASSWORD.as_bytes()
    );

    store
        .apply(&[WriteOp::Delete {
            device_id: "dev-a".into(),
        }])
        .await
        .unwrap();
    assert_eq!(store.get("dev-a").await.unwrap(), None);
    assert_eq!(store.count().await.unwrap(), 1);

    // A failing op rolls back the whole batch: a duplicate contact token violates UNIQUE.
    let mut c = record(&secrets, "dev-c");
    c.contact_token = b.contact_token.clone();
    let d = record(&secrets, "dev-d");
    let err = store
        .apply(&[WriteOp::Upsert(Box::new(d)), WriteOp::Upsert(Box::new(c))])
        .await;
    assert!(err.is_err());
    assert_eq!(store.get("dev-d").await.unwrap(), None, "batch is atomic");
}

/// Upserts in one batch go out as multi-row statements: the same device twice (the later
/// write wins), other writes between them (order kept), and more rows than one statement
/// takes.
async fn upsert_runs_keep_write_order(store: Arc<dyn Store>) {
    let secrets = SecretBox::from_key(&[4; 32]);
    let a = record(&secrets, "dev-a");
    let mut a2 = a.clone();
    a2.domain = "second.example.com".into();
    let mut a3 = a.clone();
    a3.domain = "third.example.com".into();
    let b = record(&secrets, "dev-b");
    let mut ops = vec![
        WriteOp::Upsert(Box::new(a.clone())),
        WriteOp::Upsert(Box::new(b.clone())),
        WriteOp::Upsert(Box::new(a2.clone())),
        WriteOp::Delete {
            device_id: "dev-b".into(),
        },
        WriteOp::SetState {
            device_id: "dev-a".into(),
            state: "registered",
            last_status: 200,
        },
    ];
    // 1,200 more: three statements' worth.
    let many: Vec<DeviceRecord> = (0..1200)
        .map(|i| record(&secrets, &format!("bulk-{i:04}")))
        .collect();
    ops.extend(many.iter().map(|r| WriteOp::Upsert(Box::new(r.clone()))));
    ops.push(WriteOp::Upsert(Box::new(a3.clone())));
    store.apply(&ops).await.unwrap();

    assert_eq!(store.count().await.unwrap(), 1 + 1200);
    assert_eq!(
        store.get("dev-b").await.unwrap(),
        None,
        "the delete came after"
    );
    let got_a = store.get("dev-a").await.unwrap().unwrap();
    assert_eq!(got_a, a3, "the last upsert of dev-a won, state included");
    assert_eq!(
        store.get("bulk-0777").await.unwrap().as_ref(),
        Some(&many[777])
    );
}

/// State changes in one batch go out grouped by (state, status), several devices per
/// statement: the same device twice (the later write wins), a device deleted between two of
/// its changes, and more devices than one statement takes.
async fn state_runs_keep_write_order(store: Arc<dyn Store>) {
    let secrets = SecretBox::from_key(&[5; 32]);
    let many: Vec<DeviceRecord> = (0..2500)
        .map(|i| record(&secrets, &format!("st-{i:04}")))
        .collect();
    let upserts: Vec<WriteOp> = many
        .iter()
        .map(|r| WriteOp::Upsert(Box::new(r.clone())))
        .collect();
    store.apply(&upserts).await.unwrap();

    let set = |id: &str, state: &'static str, last_status: i64| WriteOp::SetState {
        device_id: id.to_owned(),
        state,
        last_status,
    };
    // 2,500 devices, alternating between two outcomes: three runs' worth, two groups each.
    let mut ops: Vec<WriteOp> = (0..2500)
        .map(|i| {
            let id = format!("st-{i:04}");
            if i % 2 == 0 {
                set(&id, "registered", 200)
            } else {
                set(&id, "retrying", 503)
            }
        })
        .collect();
    // st-0000 again: the later write must win, though it is in the same batch.
    ops.push(set("st-0000", "failed", 403));
    // st-0001: deleted, then a late state change for it matches no row.
    ops.push(WriteOp::Delete {
        device_id: "st-0001".into(),
    });
    ops.push(set("st-0001", "registered", 200));
    ops.push(set("st-0002", "retrying", 408));
    store.apply(&ops).await.unwrap();

    let all: HashMap<String, (String, i64)> = store
        .load_all()
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.device_id, (d.state, d.last_status)))
        .collect();
    assert_eq!(all.len(), 2499, "only the deleted device is gone");
    assert!(!all.contains_key("st-0001"));
    let state = |id: &str| {
        let (s, n) = &all[id];
        (s.as_str(), *n)
    };
    assert_eq!(state("st-0000"), ("failed", 403), "the later write won");
    assert_eq!(state("st-0002"), ("retrying", 408), "the later write won");
    for i in 3..2500 {
        let want = if i % 2 == 0 {
            ("registered", 200)
        } else {
            ("retrying", 503)
        };
        assert_eq!(state(&format!("st-{i:04}")), want, "device st-{i:04}");
    }
}

async fn batching_groups_concurrent_writes(store: Arc<dyn Store>, n: usize) {
    let secrets = SecretBox::from_key(&[6; 32]);
    let batcher = WriteBatcher::spawn(store.clone(), BatchConfig::default());
    let mut tasks = Vec::new();
    for i in 0..n {
        let batcher = batcher.clone();
        let r = record(&secrets, &format!("dev-{i:05}"));
        tasks.push(tokio::spawn(async move {
            batcher.write(WriteOp::Upsert(Box::new(r))).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let commits = batcher.commits();
    println!(
        "{}: {n} concurrent writes in {commits} commits ({:.1} writes/commit)",
        store.backend(),
        n as f64 / commits as f64
    );
    assert_eq!(store.count().await.unwrap(), n as u64);
    assert_eq!(batcher.writes(), n as u64);
    assert!(
        commits * 10 <= n as u64,
        "{commits} commits for {n} writes: batching is not grouping"
    );
}

fn assert_sealed(raw: &[u8]) {
    let hay = String::from_utf8_lossy(raw);
    assert!(
        !hay.contains(PASSWORD),
        "plaintext password in the database"
    );
    assert!(
        !hay.contains(VOIP_TOKEN),
        "plaintext push token in the database"
    );
    assert!(
        raw.len() > PASSWORD.len(),
        "sealed values carry nonce and tag"
    );
}

// ---- SQLite ----

#[tokio::test]
async fn sqlite_crud_round_trip() {
    let (_dir, store) = sqlite().await;
    crud_round_trip(Arc::new(store)).await;
}

#[tokio::test]
async fn sqlite_upsert_runs_keep_write_order() {
    let (_dir, store) = sqlite().await;
    upsert_runs_keep_write_order(Arc::new(store)).await;
}

#[tokio::test]
async fn sqlite_state_runs_keep_write_order() {
    let (_dir, store) = sqlite().await;
    state_runs_keep_write_order(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_batching_groups_concurrent_writes() {
    let (_dir, store) = sqlite().await;
    batching_groups_concurrent_writes(Arc::new(store), 2000).await;
}

#[tokio::test]
async fn sqlite_secrets_are_sealed_at_rest() {
    let (dir, store) = sqlite().await;
    let secrets = SecretBox::from_key(&[7; 32]);
    store
        .apply(&[WriteOp::Upsert(Box::new(record(&secrets, "dev-x")))])
        .await
        .unwrap();
    let row = sqlx::query("SELECT password_enc, push_enc, load_image FROM devices")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_sealed(&row.get::<Vec<u8>, _>("password_enc"));
    assert_sealed(&row.get::<Vec<u8>, _>("push_enc"));
    // The load image copies the sealed bytes, never the plaintext.
    assert_sealed(&row.get::<Vec<u8>, _>("load_image"));
    store.close().await;
    // And nowhere in the database files either (main file and WAL).
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(!bytes
            .windows(PASSWORD.len())
            .any(|w| w == PASSWORD.as_bytes()));
    }
}

// ---- PostgreSQL ----

/// Runs `body` on a store in a fresh schema, then closes the store and drops the schema.
async fn on_postgres<F: std::future::Future<Output = ()>>(body: impl FnOnce(Arc<dyn Store>) -> F) {
    let (fx, store) = PgFixture::new().await;
    body(Arc::new(store.clone())).await;
    store.close().await;
    fx.drop_schema().await;
}

#[tokio::test]
async fn postgres_crud_round_trip() {
    on_postgres(crud_round_trip).await;
}

#[tokio::test]
async fn postgres_upsert_runs_keep_write_order() {
    on_postgres(upsert_runs_keep_write_order).await;
}

#[tokio::test]
async fn postgres_state_runs_keep_write_order() {
    on_postgres(state_runs_keep_write_order).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_batching_groups_concurrent_writes() {
    on_postgres(|store| batching_groups_concurrent_writes(store, 2000)).await;
}

#[tokio::test]
async fn postgres_secrets_are_sealed_at_rest() {
    let (fx, store) = PgFixture::new().await;
    let secrets = SecretBox::from_key(&[7; 32]);
    store
        .apply(&[WriteOp::Upsert(Box::new(record(&secrets, "dev-x")))])
        .await
        .unwrap();
    let row =
        sqlx::query("SELECT password_enc, push_enc, row_to_json(devices)::text AS j FROM devices")
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_sealed(&row.get::<Vec<u8>, _>("password_enc"));
    assert_sealed(&row.get::<Vec<u8>, _>("push_enc"));
    assert_sealed(row.get::<String, _>("j").as_bytes());
    store.close().await;
    fx.drop_schema().await;
}

/// Start-up loads every device, in id order, field for field, across the SQLite loader's
/// pages (2,000 devices each): two full pages and a partial one.
async fn load_all_returns_every_device_in_order(store: Arc<dyn Store>) {
    let secrets = SecretBox::from_key(&[3; 32]);
    let mut written: Vec<DeviceRecord> = (0..4_001)
        .map(|i| {
            let mut r = record(&secrets, &format!("dev-{:05}", (i * 7_919) % 4_001));
            r.auth_username = (i % 2 == 0).then(|| format!("auth-{i}"));
            r.outbound_proxy = (i % 3 == 0).then(|| "proxy.example.com:5061".to_owned());
            r.display_name = Some(format!("Quote \" and \\ and é {i}"));
            r.last_status = i64::from(i % 600);
            r
        })
        .collect();
    let ops: Vec<WriteOp> = written
        .iter()
        .map(|r| WriteOp::Upsert(Box::new(r.clone())))
        .collect();
    store.apply(&ops).await.unwrap();
    written.sort_by(|a, b| a.device_id.cmp(&b.device_id));
    let loaded = store.load_all().await.unwrap();
    assert_eq!(loaded.len(), written.len());
    assert!(
        loaded == written,
        "every device comes back unchanged, in id order"
    );
    assert_eq!(
        secrets.open(&loaded[4_000].password_enc).unwrap(),
        PASSWORD.as_bytes()
    );
}

#[tokio::test]
async fn sqlite_load_all_returns_every_device_in_order() {
    let (_dir, store) = sqlite().await;
    load_all_returns_every_device_in_order(Arc::new(store)).await;
}

#[tokio::test]
async fn postgres_load_all_returns_every_device_in_order() {
    on_postgres(load_all_returns_every_device_in_order).await;
}

/// Devices whose fields are at the edges of what each column holds: every optional field
/// NULL or empty, text with quotes, control characters, NUL and non-ASCII, integers at their
/// extremes, a sealed push field far above 64 KiB. NUL characters only with `nul` (PostgreSQL
/// text cannot hold them).
fn odd_records(secrets: &SecretBox, nul: bool) -> Vec<DeviceRecord> {
    let nul = if nul { "\u{0}" } else { "" };
    let mut nulls = record(secrets, "odd-1-nulls");
    nulls.auth_username = None;
    nulls.outbound_proxy = None;
    nulls.transport = None;
    nulls.display_name = None;
    nulls.push_topic = None;
    nulls.push_env = None;
    let mut empty = record(secrets, "odd-2-empty");
    empty.auth_username = Some(String::new());
    empty.outbound_proxy = Some(String::new());
    empty.transport = Some(String::new());
    empty.display_name = Some(String::new());
    empty.push_topic = Some(String::new());
    empty.push_env = Some(String::new());
    empty.username = String::new();
    empty.app_version = String::new();
    empty.state = String::new();
    let mut odd = record(secrets, &format!("odd-3-\"quoted\" \\ é ☎ 😀 {nul} \n\t"));
    odd.display_name = Some(format!("{nul}\u{1}\u{7f} \" ' \\ ; , \u{10FFFF}"));
    odd.username = "ü".repeat(300);
    odd.state = "a state nobody knows, with spaces".into();
    odd.expires = i64::MIN;
    odd.last_put_ms = i64::MAX;
    odd.last_status = -1;
    odd.secret_hash = vec![0; 32];
    odd.body_hash = (0..16).collect();
    let mut big = record(secrets, "odd-4-big");
    big.push_enc = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    big.password_enc = vec![0; 1];
    big.expires = i64::MAX;
    big.last_put_ms = i64::MIN;
    big.last_status = i64::MAX;
    vec![nulls, empty, odd, big]
}

/// Every field of every odd record comes back as written.
async fn odd_fields_round_trip(store: Arc<dyn Store>) {
    let secrets = SecretBox::from_key(&[4; 32]);
    let written = odd_records(&secrets, store.backend() == "sqlite");
    let ops: Vec<WriteOp> = written
        .iter()
        .map(|r| WriteOp::Upsert(Box::new(r.clone())))
        .collect();
    store.apply(&ops).await.unwrap();
    let loaded = store.load_all().await.unwrap();
    assert_eq!(loaded.len(), written.len());
    for (got, want) in loaded.iter().zip(&written) {
        assert!(got == want, "{} comes back unchanged", want.device_id);
    }
}

#[tokio::test]
async fn sqlite_odd_fields_round_trip() {
    let (_dir, store) = sqlite().await;
    odd_fields_round_trip(Arc::new(store)).await;
}

#[tokio::test]
async fn postgres_odd_fields_round_trip() {
    on_postgres(odd_fields_round_trip).await;
}

/// Rows without a load image (written before the column existed, or after the trigger
/// cleared it) load from their columns, and opening the store writes their images.
#[tokio::test]
async fn sqlite_rows_without_load_image_load_and_are_filled_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vigil.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let secrets = SecretBox::from_key(&[6; 32]);
    let mut written: Vec<DeviceRecord> = (0..2_500)
        .map(|i| record(&secrets, &format!("dev-{i:05}")))
        .collect();
    written.extend(odd_records(&secrets, true));
    let ops: Vec<WriteOp> = written
        .iter()
        .map(|r| WriteOp::Upsert(Box::new(r.clone())))
        .collect();
    store.apply(&ops).await.unwrap();
    written.sort_by(|a, b| a.device_id.cmp(&b.device_id));
    let unimaged = |pool: sqlx::SqlitePool| async move {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM devices WHERE load_image IS NULL")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    assert_eq!(
        unimaged(store.pool().clone()).await,
        0,
        "upserts write images"
    );
    // As a store of the previous version: some rows in each page without image.
    sqlx::query(
        "UPDATE devices SET load_image = NULL WHERE device_id LIKE '%7' OR device_id LIKE 'odd%'",
    )
    .execute(store.pool())
    .await
    .unwrap();
    assert!(
        store.load_all().await.unwrap() == written,
        "loaded from the columns"
    );
    store.close().await;
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(
        unimaged(store.pool().clone()).await,
        0,
        "opening filled the images"
    );
    assert!(
        store.load_all().await.unwrap() == written,
        "loaded from the images"
    );
    store.close().await;
}

/// Dropping a dead push token changes `push_enc` without a new image: the trigger clears
/// the image, so the next load reads the new tokens, not the old copy.
#[tokio::test]
async fn sqlite_set_push_clears_the_load_image() {
    let (_dir, store) = sqlite().await;
    let secrets = SecretBox::from_key(&[8; 32]);
    let r = record(&secrets, "dev-p");
    store
        .apply(&[WriteOp::Upsert(Box::new(r.clone()))])
        .await
        .unwrap();
    store
        .apply(&[WriteOp::SetPush {
            device_id: "dev-p".into(),
            body_hash: r.body_hash.clone(),
            push_enc: Vec::new(),
        }])
        .await
        .unwrap();
    let loaded = store.load_all().await.unwrap();
    assert_eq!(loaded[0].push_enc, Vec::<u8>::new());
    // State changes and touches leave the image alone.
    store
        .apply(&[
            WriteOp::Upsert(Box::new(r.clone())),
            WriteOp::SetState {
                device_id: "dev-p".into(),
                state: "registered",
                last_status: 200,
            },
            WriteOp::Touch {
                device_id: "dev-p".into(),
                last_put_ms: 7,
            },
        ])
        .await
        .unwrap();
    let image: Option<Vec<u8>> = sqlx::query_scalar("SELECT load_image FROM devices")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(image.is_some());
    let loaded = store.load_all().await.unwrap();
    let mut want = r.clone();
    want.state = "registered".into();
    want.last_status = 200;
    want.last_put_ms = 7;
    assert!(loaded == [want]);
}

/// A damaged load image or column is a `Corrupt` error naming what is wrong, not a panic.
#[tokio::test]
async fn sqlite_corrupt_page_is_an_error() {
    let (_dir, store) = sqlite().await;
    let secrets = SecretBox::from_key(&[9; 32]);
    let ops: Vec<WriteOp> = (0..3)
        .map(|i| WriteOp::Upsert(Box::new(record(&secrets, &format!("dev-{i}")))))
        .collect();
    store.apply(&ops).await.unwrap();
    for (damage, expect) in [
        ("load_image = substr(load_image, 1, 30)", "packed page, row"),
        (
            "load_image = x'07' || substr(load_image, 2)",
            "image version 7",
        ),
        ("last_put_ms = 'soon'", "last_put_ms: not an integer"),
        ("last_status = 1.5", "last_status: not an integer"),
    ] {
        sqlx::query(&format!(
            "UPDATE devices SET {damage} WHERE device_id = 'dev-1'"
        ))
        .execute(store.pool())
        .await
        .unwrap();
        match store.load_all().await {
            Err(vigil_gateway::store::StoreError::Corrupt { backend, detail }) => {
                assert_eq!(backend, "sqlite");
                assert!(detail.contains(expect), "{damage}: {detail}");
            }
            other => panic!("{damage}: {other:?}"),
        }
        store
            .apply(&[WriteOp::Upsert(Box::new(record(&secrets, "dev-1")))])
            .await
            .unwrap();
        store.load_all().await.unwrap();
    }
}
