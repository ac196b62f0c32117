//! Start-up load benchmark: what the gateway spends turning stored devices into bindings.
//!
//! `load_bench fill DB N` stores N devices (shaped like an app's PUT: an APNs VoIP token,
//! sealed secrets) in an SQLite store; `load_bench load DB` loads them the way start-up does
//! (`store::for_each_page`, `Binding::from_record`, the binding table) and prints the count.
//! Run `load` under `valgrind --tool=callgrind` for two sizes: the difference divided by the
//! difference in devices is the load's instructions per device, on every thread (SQLite runs
//! on sqlx's worker thread), without the fixed cost of opening the store.

// A benchmark panics on the unexpected: unwrap is the assertion.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use vigil_gateway::bindings::{Binding, BindingTable, ContactToken};
use vigil_gateway::crypto::SecretBox;
use vigil_gateway::store::{self, DeviceRecord, SqliteStore, Store, WriteOp};

fn record(secrets: &SecretBox, i: usize) -> DeviceRecord {
    let token = ContactToken::random();
    let voip: String = (0..32).map(|b| format!("{:02x}", (i + b) % 256)).collect();
    let push = format!(r#"{{"apns":{{"voip_token":"{voip}"}}}}"#);
    DeviceRecord {
        device_id: format!("9f1c2b7e-{i:08}-4d2a-b0c1-3e5f7a9b1d2c"),
        binding_id: token.0 as i64,
        contact_token: token.to_string(),
        username: format!("user{i:06}"),
        auth_username: None,
        password_enc: secrets.seal(format!("pw-{i}-correct-horse").as_bytes()),
        domain: "sip.example.com".into(),
        outbound_proxy: None,
        transport: Some("udp".into()),
        display_name: Some(format!("User {i}")),
        push_kind: "apns".into(),
        push_enc: secrets.seal(push.as_bytes()),
        push_topic: Some("com.example.app".into()),
        push_env: Some("production".into()),
        app_id: "com.example.app".into(),
        app_version: "2.4.1".into(),
        expires: 3600,
        secret_hash: vec![(i % 256) as u8; 32],
        body_hash: vec![(i % 251) as u8; 16],
        last_put_ms: 1_700_000_000_000 + i as i64,
        state: "registered".into(),
        last_status: 200,
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: load_bench fill DB N | load_bench load DB";
    let db = Path::new(args.get(2).expect(usage));
    let store = SqliteStore::open(db).await.unwrap();
    match args[1].as_str() {
        "fill" => {
            let n: usize = args.get(3).expect(usage).parse().expect(usage);
            let secrets = SecretBox::from_key(&[7; 32]);
            let ops: Vec<WriteOp> = (0..n)
                .map(|i| WriteOp::Upsert(Box::new(record(&secrets, i))))
                .collect();
            for chunk in ops.chunks(5_000) {
                store.apply(chunk).await.unwrap();
            }
            println!("{} devices stored", store.count().await.unwrap());
        }
        "load" => {
            let table = Arc::new(BindingTable::new());
            let mut loaded = 0usize;
            store::for_each_page(&store, |page| {
                for device in page {
                    table.insert(Arc::new(Binding::from_view(device).unwrap()));
                    loaded += 1;
                }
            })
            .await
            .unwrap();
            println!("{loaded} devices loaded");
            // As the gateway, which keeps its table: no teardown in the measurement.
            std::process::exit(0);
        }
        // Prototyping: one query's result as bytes (its SQL in argument 3).
        "sql" => {
            let bytes: Vec<u8> = sqlx::query_scalar(args.get(3).expect(usage))
                .fetch_one(store.pool())
                .await
                .unwrap();
            println!("{} bytes", bytes.len());
            std::process::exit(0);
        }
        _ => panic!("{usage}"),
    }
}
