//! Memory per binding as the running daemon holds it: every device once in the daemon's
//! binding table (sealed password, sealed APNs tokens, SIP account, app info, both maps) and
//! once in the registration engine (its strings with the password in the clear, digest state
//! after a SHA-256 401/200 exchange, its index and refresh timer), measured as the process's
//! RSS delta divided by the number of devices. The goal at 1,000,000 bindings is at most
//! 1 KiB each, credentials and tokens included.
//!
//! Both measurements run in one test function each, so nothing else in the process
//! allocates meanwhile: run the 1M variant alone,
//! `cargo test -p vigil-gateway --test store_binding_memory -- --ignored --nocapture`.

// Tests panic on the unexpected: unwrap is the assertion.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use vigil_gateway::bindings::{Binding, BindingTable, ContactToken};
use vigil_gateway::crypto::SecretBox;
use vigil_gateway::store::DeviceRecord;
use vigil_proto::auth::Password;
use vigil_proto::msg::{HeaderName, Message, ResponseBuilder};
use vigil_proto::reg::{BindingConfig, BindingId, RegConfig, RegEvent, Registrations};
use vigil_proto::rng::CoreRng;
use vigil_proto::txn::{Peer, Transport};

const PASSWORD: &str = "s3cret-passw0rd!";
const DOMAIN: &str = "sip.operator.example.com";
const PROXY: &str = "sbc.operator.example.com:5061";

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("statm resident field");
    pages * 4096
}

fn device(secrets: &SecretBox, i: usize) -> Binding {
    let token = ContactToken::random();
    let push = format!(
        r#"{{"apns":{{"voip_token":"{:064x}","alert_token":"{:064x}","bundle_id":"com.example.softphone","environment":"production"}}}}"#,
        i as u128 * 7919,
        i as u128 * 104_729
    );
    let r = DeviceRecord {
        device_id: format!("6f1c2a7e-0000-4000-8000-{i:012}"),
        binding_id: token.0 as i64,
        contact_token: token.to_string(),
        username: format!("+4930{i:08}"),
        auth_username: None,
        password_enc: secrets.seal(PASSWORD.as_bytes()),
        domain: DOMAIN.into(),
        outbound_proxy: Some(PROXY.into()),
        transport: Some("tls".into()),
        display_name: Some("Alice Example".into()),
        push_kind: "apns".into(),
        push_enc: secrets.seal(push.as_bytes()),
        push_topic: Some("com.example.softphone".into()),
        push_env: Some("production".into()),
        app_id: "com.example.softphone".into(),
        app_version: "4.12.1".into(),
        expires: 600,
        secret_hash: vec![7; 32],
        body_hash: vec![8; 16],
        last_put_ms: 1_700_000_000_000,
        state: "registered".into(),
        last_status: 200,
    };
    Binding::from_record(&r).expect("valid record")
}

/// The engine's view of a device, as the daemon hands it over.
fn engine_config(b: &Binding, upstream: Peer) -> BindingConfig {
    use vigil_gateway::bindings::Text;
    BindingConfig {
        user: b.text(Text::Username).to_owned(),
        domain: b.text(Text::Domain).to_owned(),
        auth_user: None,
        password: Password::new(PASSWORD),
        outbound_proxy: Some(b.text(Text::OutboundProxy).to_owned()),
        upstream,
        expires: b.expires,
        contact_token: b.token.to_string(),
    }
}

/// Registers every binding through a SHA-256 digest exchange (401, then 200), as against a
/// Kamailio registrar, so each keeps the nonce state of a real refresh cycle.
fn register_all(table: &BindingTable, tokens: &[ContactToken], engine: &mut Registrations) {
    let now = vigil_proto::netem::test_epoch();
    let upstream = Peer {
        transport: Transport::Tls,
        addr: "192.0.2.10:5061".parse().unwrap(),
    };
    engine.reserve(tokens.len());
    for (i, token) in tokens.iter().enumerate() {
        let b = table.by_token(*token).unwrap();
        engine
            .add_binding(now, BindingId(token.0), engine_config(&b, upstream))
            .unwrap();
        let first = Message::parse(engine.poll_transmit().unwrap().bytes).unwrap();
        // A Kamailio-style nonce: 44 base64 characters, different per binding.
        let nonce = format!("Z2F0ZXdheS1ub25jZS0{i:020}AAAAAAA=");
        let challenge = ResponseBuilder::for_request(&first, 401, Some("r1"))
            .header(
                HeaderName::WwwAuthenticate,
                &format!(
                    "Digest realm=\"{DOMAIN}\", nonce=\"{nonce}\", qop=\"auth\", algorithm=SHA-256"
                ),
            )
            .build();
        engine.handle_incoming(now, challenge, upstream);
        let second = Message::parse(engine.poll_transmit().unwrap().bytes).unwrap();
        assert!(second.header(HeaderName::Authorization).is_some());
        let ok = ResponseBuilder::for_request(&second, 200, Some("r1"))
            .header(
                HeaderName::Contact,
                &format!("<sip:{token}@gw.example.net:5061;transport=tls>;expires=600"),
            )
            .build();
        engine.handle_incoming(now, ok, upstream);
        match engine.poll_event() {
            Some(RegEvent::Registered { .. }) => {}
            other => panic!("binding {i}: {other:?}"),
        }
    }
    engine.shrink_to_fit();
}

/// Fills both structures with `n` devices; returns bytes per binding of the table alone and
/// of both together.
fn measure(n: usize) -> (f64, f64) {
    let secrets = SecretBox::from_key(&[1; 32]);
    let mut cfg = RegConfig::new("gw.example.net:5061");
    cfg.max_registers_per_sec = 0;
    let mut engine = Registrations::new(cfg, CoreRng::from_seed(7)).unwrap();
    // Warm the allocator, the key schedule and the interned shared strings so that one-off
    // costs are not counted.
    drop(device(&secrets, 0));
    let before = rss_bytes();
    let table = BindingTable::new();
    let mut tokens = Vec::with_capacity(n);
    for i in 0..n {
        // Each record's temporaries are freed before the next one, so RSS grows by what
        // the table keeps: entries, their heap blocks, and both maps.
        let b = Arc::new(device(&secrets, i));
        tokens.push(b.token);
        table.insert(b);
    }
    let tokens_bytes = tokens.capacity() * std::mem::size_of::<ContactToken>();
    let after_table = rss_bytes();
    register_all(&table, &tokens, &mut engine);
    let after_engine = rss_bytes();
    assert_eq!((table.len(), engine.len()), (n, n));
    let sample = table
        .get("6f1c2a7e-0000-4000-8000-000000000001")
        .expect("present");
    // The token list is the test's own bookkeeping, not the daemon's.
    let table_total = (after_table - before).saturating_sub(tokens_bytes);
    let per_table = table_total as f64 / n as f64;
    let per_engine = after_engine.saturating_sub(after_table) as f64 / n as f64;
    let mem = engine.memory_report();
    println!(
        "{n} bindings: daemon table {per_table:.0} B + engine {per_engine:.0} B = {:.0} B per \
         binding (RSS delta / N). Table entry inline {} B + heap {} B; engine's own estimate \
         {:.0} B ({mem:?})",
        per_table + per_engine,
        std::mem::size_of::<Binding>(),
        sample.heap_bytes(),
        mem.per_binding(),
    );
    assert!(
        per_table > 200.0 && per_engine > 100.0,
        "implausibly small ({per_table:.0} B, {per_engine:.0} B): the measurement is broken"
    );
    (per_table, per_table + per_engine)
}

#[test]
fn bytes_per_binding_at_100k() {
    let (_, total) = measure(100_000);
    assert!(
        total <= 1024.0,
        "{total:.0} bytes per binding exceeds 1 KiB"
    );
}

/// The figure at the gateway's target scale (about a minute of CPU); run it alone, see the
/// module documentation.
#[test]
#[ignore]
fn bytes_per_binding_at_1m() {
    let (_, total) = measure(1_000_000);
    assert!(
        total <= 1024.0,
        "{total:.0} bytes per binding exceeds 1 KiB"
    );
}
