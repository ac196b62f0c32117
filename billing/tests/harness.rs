//! The test harness itself: a PostgreSQL test schema is dropped even when its test panics, and
//! only well-formed, old test schema names count as stale.
#![allow(clippy::unwrap_used)]

mod common;

use common::{is_stale_name, Backend, Harness, STALE_AFTER_SECS};

async fn schema_exists(name: &str) -> bool {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&common::pg_url()).await.unwrap();
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM pg_namespace WHERE nspname = $1")
        .bind(name)
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    n == 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_is_dropped_when_a_test_panics() {
    let (tx, rx) = std::sync::mpsc::channel();
    // A "test" on its own thread and runtime that panics with the service running and its pool
    // open, as a failed assertion would.
    let joined = std::thread::spawn(move || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                let h = Harness::start(Backend::Postgres).await;
                h.import_dids(100, 1).await;
                tx.send(h.db.schema_name().unwrap().to_owned()).unwrap();
                panic!("deliberate failure with the harness alive");
            })
    })
    .join();
    assert!(joined.is_err(), "the inner test panicked");
    let name = rx.recv().unwrap();
    assert!(!schema_exists(&name).await, "{name} was left behind");
}

#[test]
fn stale_schema_names() {
    let now = 2_000_000_000;
    let old = now - STALE_AFTER_SECS - 1;
    assert!(is_stale_name(&format!("vbt_{old}_0a1b2c3d4e"), now));
    assert!(
        !is_stale_name(&format!("vbt_{now}_0a1b2c3d4e"), now),
        "too recent"
    );
    assert!(!is_stale_name(&format!("vbt_{old}_"), now));
    assert!(!is_stale_name(&format!("vbt_{old}_notHex!"), now));
    assert!(!is_stale_name(&format!("vbx_{old}_0a1b"), now));
    assert!(!is_stale_name("vbt_cli_0a1b2c3d4e", now));
    assert!(!is_stale_name("public", now));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_schemas_of_earlier_runs_are_dropped() {
    use sqlx::Executor;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let tag = hex::encode(rand::random::<[u8; 5]>());
    let old = format!("vbt_{}_{tag}", now - STALE_AFTER_SECS - 60);
    let fresh = format!("vbt_{now}_{tag}");
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&common::pg_url()).await.unwrap();
    for s in [&old, &fresh] {
        pool.execute(format!("CREATE SCHEMA \"{s}\"").as_str())
            .await
            .unwrap();
    }
    // No count assertion: another test in this binary may start a harness, whose first-use
    // cleanup can drop the stale schema before this call does. What matters is the outcome.
    common::drop_stale_schemas().await.unwrap();
    assert!(!schema_exists(&old).await, "the stale schema is dropped");
    assert!(schema_exists(&fresh).await, "a recent schema is kept");
    pool.execute(format!("DROP SCHEMA \"{fresh}\"").as_str())
        .await
        .unwrap();
    pool.close().await;
}
