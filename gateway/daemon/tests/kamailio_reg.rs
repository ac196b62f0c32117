//! Interop: a real Kamailio (Debian's package) as the upstream registrar, with digest auth
//! (auth_db) and its location table in PostgreSQL (usrloc write-through), so the test reads
//! what Kamailio really holds.
//!
//! 1,000 devices are PUT through the HTTPS API, half with UDP and half with TCP. The test
//! asserts that every one appears in `location` with the gateway's Contact token, that
//! refreshes happen (Kamailio grants 20 s, so every row's CSeq advances), that DELETE removes
//! rows, and that a gateway restart on the same data directory re-registers every stored
//! device (a new Call-ID on every row).
//!
//! Needs /usr/sbin/kamailio with its PostgreSQL module and PostgreSQL at
//! `VIGIL_TEST_PG_URL` (default `postgres://postgres@127.0.0.1:5432/test`, trust auth). A
//! missing Kamailio or database fails the test: interop is part of what CI checks.

// Tests panic on the unexpected: unwrap is the assertion.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Row};
use vigil_gateway::bindings::DeviceState;
use vigil_gateway::config::Config;
use vigil_gateway::Gateway;

use common::api_client as client;

const KAMAILIO: &str = "/usr/sbin/kamailio";
const SCHEMA_DIR: &str = "/usr/share/kamailio/postgres";
const DEVICES: usize = 1000;
/// Removed before the restart, to show DELETE reaches the location table.
const DELETED: usize = 100;
const DOMAIN: &str = "vigil.test";
/// What Kamailio grants at most (`registrar` `max_expires`): refreshes every 10–17 s.
const GRANTED: i64 = 20;

/// Kamailio, stopped with SIGTERM (its main process reaps the children) when dropped.
struct Kamailio {
    child: Child,
    log: std::path::PathBuf,
}

impl Kamailio {
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

fn pg_url() -> String {
    std::env::var("VIGIL_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// db_postgres wants `postgres://user:password@host:port/db`; trust auth ignores the password.
fn url_for_kamailio(url: &str) -> String {
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .unwrap_or(url);
    match rest.split_once('@') {
        Some((user, host)) if !user.contains(':') => format!("postgres://{user}:unused@{host}"),
        Some(_) => format!("postgres://{rest}"),
        None => format!("postgres://postgres:unused@{rest}"),
    }
}

/// A fresh schema holding Kamailio's `version`, `location` and `subscriber` tables (from the
/// package's own SQL) and one subscriber per device.
async fn database(schema: &str) -> PgPool {
    let admin = PgPool::connect(&pg_url())
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {} unreachable: {e}", pg_url()));
    sqlx::raw_sql(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let opts: PgConnectOptions = pg_url().parse().unwrap();
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(opts.options([("search_path", schema)]))
        .await
        .unwrap();
    for file in ["standard", "usrloc", "auth_db"] {
        let path = Path::new(SCHEMA_DIR).join(format!("{file}-create.sql"));
        let sql = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!("{} missing ({e}): kamailio not installed?", path.display())
        });
        sqlx::raw_sql(&sql).execute(&pool).await.unwrap();
    }
    let users: Vec<String> = (0..DEVICES).map(user).collect();
    let passwords: Vec<String> = (0..DEVICES).map(password).collect();
    sqlx::query(
        "INSERT INTO subscriber (username, domain, password) \
         SELECT u, $3, p FROM UNNEST($1::text[], $2::text[]) AS t(u, p)",
    )
    .bind(&users)
    .bind(&passwords)
    .bind(DOMAIN)
    .execute(&pool)
    .await
    .unwrap();
    pool
}

/// Drops the test's schema when the test ends, passed or failed (best effort, with psql,
/// since `Drop` cannot await).
struct SchemaGuard(String);

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .arg(pg_url())
            .args([
                "-q",
                "-c",
                &format!("DROP SCHEMA IF EXISTS {} CASCADE", self.0),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn user(i: usize) -> String {
    format!("user{i}")
}

fn password(i: usize) -> String {
    format!("pw-{i}-{:x}", i * 7919)
}

fn kamailio_config(port: u16, db_url: &str) -> String {
    format!(
        r#"#!KAMAILIO
debug=2
log_stderror=yes
children=4
tcp_children=2
auto_aliases=no
listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}

loadmodule "db_postgres.so"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "siputils.so"
loadmodule "textops.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"
loadmodule "auth_db.so"

modparam("usrloc", "db_url", "{db_url}")
modparam("usrloc", "db_mode", 1)
modparam("registrar", "min_expires", 5)
modparam("registrar", "max_expires", {GRANTED})
modparam("auth_db", "db_url", "{db_url}")
modparam("auth_db", "calculate_ha1", 1)
modparam("auth_db", "password_column", "password")
modparam("auth_db", "use_domain", 1)
modparam("auth_db", "load_credentials", "")

request_route {{
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    if (is_method("OPTIONS")) {{
        sl_send_reply("200", "OK");
        exit;
    }}
    if (is_method("REGISTER")) {{
        if (!auth_check("$fd", "subscriber", "1")) {{
            auth_challenge("$fd", "1");
            exit;
        }}
        consume_credentials();
        if (!save("location")) {{
            sl_reply_error();
        }}
        exit;
    }}
    sl_send_reply("405", "Method Not Allowed");
}}
"#
    )
}

/// A port free for both UDP and TCP on loopback (Kamailio listens on both, and the gateway
/// puts one port in its Contact for both transports).
fn free_port_pair() -> u16 {
    for _ in 0..50 {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP");
}

async fn start_kamailio(dir: &Path, port: u16, schema: &str) -> Kamailio {
    assert!(
        Path::new(KAMAILIO).exists(),
        "{KAMAILIO} is missing: install Debian's kamailio and kamailio-postgres-modules"
    );
    let cfg = dir.join("kamailio.cfg");
    std::fs::write(&cfg, kamailio_config(port, &url_for_kamailio(&pg_url()))).unwrap();
    let log = dir.join("kamailio.log");
    let child = Command::new(KAMAILIO)
        .args(["-DD", "-E", "-f"])
        .arg(&cfg)
        .arg("-Y")
        .arg(dir)
        .arg("-P")
        .arg(dir.join("kamailio.pid"))
        .env("PGOPTIONS", format!("-c search_path={schema}"))
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .spawn()
        .expect("start kamailio");
    let k = Kamailio { child, log };
    // Ready when it answers OPTIONS.
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.connect(("127.0.0.1", port)).await.unwrap();
    let local = sock.local_addr().unwrap();
    for n in 0..80 {
        let req = format!(
            "OPTIONS sip:ping@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKready{n}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:test@{DOMAIN}>;tag=r{n}\r\nTo: <sip:ping@{DOMAIN}>\r\n\
             Call-ID: ready-{n}\r\nCSeq: {n} OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        let _ = sock.send(req.as_bytes()).await;
        let mut buf = [0u8; 2048];
        match tokio::time::timeout(Duration::from_millis(250), sock.recv(&mut buf)).await {
            Ok(Ok(len)) if buf[..len].starts_with(b"SIP/2.0 200") => return k,
            // Refused (not listening yet) comes back at once: pace the retries.
            Ok(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            Err(_) => {}
        }
    }
    panic!("Kamailio did not start; log:\n{}", k.log_tail());
}

fn gateway_config(data: &Path, sip_port: u16, kamailio_port: u16) -> Config {
    let mut c = Config {
        data_dir: data.to_owned(),
        ..Config::default()
    };
    c.sip.listen = vec![
        format!("udp:127.0.0.1:{sip_port}").parse().unwrap(),
        format!("tcp:127.0.0.1:{sip_port}").parse().unwrap(),
    ];
    c.sip.shutdown_grace_secs = 2;
    c.api.listen = "127.0.0.1:0".parse().unwrap();
    c.api.rate_per_sec = 0.0;
    c.reg.upstream = Some(format!("127.0.0.1:{kamailio_port}"));
    c.reg.max_registers_per_sec = 1000;
    c.reg.pace_burst = 20;
    c
}

fn transport(i: usize) -> &'static str {
    if i.is_multiple_of(2) {
        "udp"
    } else {
        "tcp"
    }
}

fn body(i: usize) -> Value {
    json!({
        "sip": {
            "username": user(i),
            "password": password(i),
            "domain": DOMAIN,
            "transport": transport(i),
        },
        "push": {"fcm": {"token": format!("fcm-token-{i}"), "project_id": "proj-1"}},
        "app": {"id": "com.example.app", "version": "2.0"},
        "expires": 60
    })
}

/// One row of Kamailio's location table.
#[derive(Debug, Clone)]
struct LocRow {
    contact: String,
    callid: String,
    cseq: i32,
    socket: String,
}

async fn location(pool: &PgPool) -> HashMap<String, LocRow> {
    sqlx::query(
        "SELECT username, contact, callid, cseq, COALESCE(socket, '') AS socket FROM location",
    )
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .map(|r| {
        (
            r.get::<String, _>("username"),
            LocRow {
                contact: r.get("contact"),
                callid: r.get("callid"),
                cseq: r.get("cseq"),
                socket: r.get("socket"),
            },
        )
    })
    .collect()
}

/// Polls `check` on the location table every 250 ms until it holds, or fails after `limit`
/// with the last reason it gave.
async fn wait_for<F>(pool: &PgPool, k: &Kamailio, limit: Duration, what: &str, mut check: F)
where
    F: FnMut(&HashMap<String, LocRow>) -> Result<(), String>,
{
    let start = Instant::now();
    loop {
        let rows = location(pool).await;
        match check(&rows) {
            Ok(()) => {
                eprintln!("{what}: after {:.1} s", start.elapsed().as_secs_f64());
                return;
            }
            Err(why) if start.elapsed() > limit => {
                panic!(
                    "{what}: not within {limit:?}: {why}\nKamailio log:\n{}",
                    k.log_tail()
                )
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// Each device's Contact token, from the gateway's binding table.
fn tokens(gw: &Gateway, devices: impl Iterator<Item = usize>) -> HashMap<String, String> {
    let table = &gw.api_state().unwrap().table;
    devices
        .map(|i| {
            let b = table.get(&format!("dev-{i}")).unwrap();
            (user(i), b.token.to_string())
        })
        .collect()
}

/// Every device in `expect` has exactly its own Contact (token, transport) in `rows`.
fn all_bound(
    rows: &HashMap<String, LocRow>,
    expect: &HashMap<String, String>,
) -> Result<(), String> {
    let mut missing = 0;
    for (user, token) in expect {
        let i: usize = user.trim_start_matches("user").parse().unwrap();
        match rows.get(user) {
            Some(r) => {
                assert!(
                    r.contact.starts_with(&format!("sip:{token}@127.0.0.1:")),
                    "{user}: contact {} is not ours ({token})",
                    r.contact
                );
                assert!(
                    r.contact.contains(&format!("transport={}", transport(i))),
                    "{user}: contact {} has the wrong transport",
                    r.contact
                );
                assert!(
                    r.socket.starts_with(transport(i)),
                    "{user}: received on {} instead of {}",
                    r.socket,
                    transport(i)
                );
            }
            None => missing += 1,
        }
    }
    if missing == 0 {
        Ok(())
    } else {
        Err(format!(
            "{missing} of {} devices not in location",
            expect.len()
        ))
    }
}

async fn put_all(gw: &Gateway, devices: std::ops::Range<usize>) -> Vec<String> {
    let base = format!("https://localhost:{}", gw.api_addr().unwrap().port());
    let http = client(gw);
    let mut set = tokio::task::JoinSet::new();
    let workers = 16;
    for w in 0..workers {
        let (http, base) = (http.clone(), base.clone());
        let mine: Vec<usize> = devices.clone().filter(|i| i % workers == w).collect();
        set.spawn(async move {
            let mut out = Vec::new();
            for i in mine {
                let resp = http
                    .put(format!("{base}/v1/devices/dev-{i}"))
                    .json(&body(i))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), StatusCode::ACCEPTED, "PUT dev-{i}");
                let doc: Value = resp.json().await.unwrap();
                out.push((i, doc["device_secret"].as_str().unwrap().to_owned()));
            }
            out
        });
    }
    let mut secrets = vec![String::new(); devices.end];
    while let Some(r) = set.join_next().await {
        for (i, s) in r.unwrap() {
            secrets[i] = s;
        }
    }
    secrets
}

async fn delete(gw: &Gateway, devices: std::ops::Range<usize>, secrets: &[String]) {
    let base = format!("https://localhost:{}", gw.api_addr().unwrap().port());
    let http = client(gw);
    for i in devices {
        let resp = http
            .delete(format!("{base}/v1/devices/dev-{i}"))
            .bearer_auth(&secrets[i])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NO_CONTENT, "DELETE dev-{i}");
    }
}

async fn wait_registered(gw: &Gateway, n: usize, limit: Duration) {
    let table = &gw.api_state().unwrap().table;
    let start = Instant::now();
    loop {
        let counts = table.count_by_state();
        if counts[DeviceState::Registered as usize] == n {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "gateway reports {counts:?} (registering, registered, retrying, failed, unregistering)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn metric(gw: &Gateway, name: &str) -> f64 {
    let base = format!("https://localhost:{}", gw.api_addr().unwrap().port());
    let text = client(gw)
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits up to 5 s for the Prometheus metric `name` (summed over its labels) to reach `min`.
async fn wait_metric(gw: &Gateway, name: &str, min: usize) {
    let start = Instant::now();
    loop {
        let v = metric(gw, name).await;
        if v >= min as f64 {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{name} = {v} < {min}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kamailio_holds_every_device_through_refresh_delete_and_restart() {
    let schema = format!("vigil_kreg_{:08x}", rand::random::<u32>());
    let _schema = SchemaGuard(schema.clone());
    let pool = database(&schema).await;
    let run = tempfile::tempdir().unwrap();
    let kport = free_port_pair();
    let kamailio = start_kamailio(run.path(), kport, &schema).await;
    let data = tempfile::tempdir().unwrap();
    let config = gateway_config(data.path(), free_port_pair(), kport);

    // 1. Hand over 1,000 devices; every one ends up in Kamailio's location table.
    let gw = Gateway::start(&config).await.unwrap();
    let started = Instant::now();
    let secrets = put_all(&gw, 0..DEVICES).await;
    eprintln!("{DEVICES} PUTs: {:.1} s", started.elapsed().as_secs_f64());
    let expect = tokens(&gw, 0..DEVICES);
    wait_for(
        &pool,
        &kamailio,
        Duration::from_secs(30),
        "all registered",
        |rows| all_bound(rows, &expect),
    )
    .await;
    wait_registered(&gw, DEVICES, Duration::from_secs(10)).await;
    assert_eq!(
        gw.transports().connection_count(),
        1,
        "the TCP devices share one connection to the upstream"
    );

    // 2. Refreshes: Kamailio granted 20 s, so within ~20 s every row's CSeq moves on.
    let first = location(&pool).await;
    wait_for(
        &pool,
        &kamailio,
        Duration::from_secs(30),
        "all refreshed",
        |rows| {
            let stale = first
                .iter()
                .filter(|(u, r)| rows.get(*u).is_none_or(|now| now.cseq <= r.cseq))
                .count();
            if stale == 0 {
                Ok(())
            } else {
                Err(format!("{stale} rows not refreshed"))
            }
        },
    )
    .await;
    assert_eq!(
        first.values().next().unwrap().callid,
        location(&pool).await[first.keys().next().unwrap()].callid,
        "a refresh keeps the Call-ID"
    );
    // Kamailio writes the row before it answers: the last 200s may still be on their way.
    wait_metric(&gw, "vigil_register_ok_total", 2 * DEVICES).await;
    wait_metric(&gw, "vigil_register_sent_total", 3 * DEVICES).await;
    wait_metric(&gw, "vigil_register_refresh_lag_seconds_count", DEVICES).await;

    // 3. DELETE unregisters upstream: the rows go.
    delete(&gw, 0..DELETED, &secrets).await;
    wait_for(
        &pool,
        &kamailio,
        Duration::from_secs(15),
        "deleted rows gone",
        |rows| {
            let left = (0..DELETED)
                .filter(|&i| rows.contains_key(&user(i)))
                .count();
            if left == 0 {
                Ok(())
            } else {
                Err(format!("{left} deleted devices still in location"))
            }
        },
    )
    .await;

    // 4. Restart on the same data directory: every stored device is registered again (a new
    //    engine, so a new Call-ID on each row), and the deleted ones stay away.
    let before = location(&pool).await;
    assert!(gw.shutdown().await.graceful);
    let gw = Gateway::start(&config).await.unwrap();
    let kept = tokens(&gw, DELETED..DEVICES);
    assert_eq!(
        kept,
        expect
            .iter()
            .filter(|(u, _)| !(0..DELETED).any(|i| **u == user(i)))
            .map(|(u, t)| (u.clone(), t.clone()))
            .collect::<HashMap<_, _>>(),
        "the same tokens after the restart"
    );
    assert_eq!(gw.api_state().unwrap().table.len(), DEVICES - DELETED);
    wait_for(
        &pool,
        &kamailio,
        Duration::from_secs(30),
        "all restored",
        |rows| {
            all_bound(rows, &kept)?;
            let old = kept
                .keys()
                .filter(|u| rows[*u].callid == before[*u].callid)
                .count();
            if (0..DELETED).any(|i| rows.contains_key(&user(i))) {
                return Err("a deleted device came back".to_owned());
            }
            if old == 0 {
                Ok(())
            } else {
                Err(format!("{old} rows not re-registered since the restart"))
            }
        },
    )
    .await;
    wait_registered(&gw, DEVICES - DELETED, Duration::from_secs(10)).await;

    // 5. Everyone leaves: the table empties.
    delete(&gw, DELETED..DEVICES, &secrets).await;
    wait_for(
        &pool,
        &kamailio,
        Duration::from_secs(20),
        "location empty",
        |rows| {
            if rows.is_empty() {
                Ok(())
            } else {
                Err(format!("{} rows left", rows.len()))
            }
        },
    )
    .await;
    gw.shutdown().await;
    drop(kamailio);
    pool.close().await;
}
