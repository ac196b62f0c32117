//! The `vigil-gateway` binary: configuration precedence (file < environment < flag), start-up
//! on the configured listeners, and a clean exit on SIGTERM.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use vigil_proto::msg::Message;

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free port")
        .port()
}

/// Sends OPTIONS to `to` until a 200 comes back (the binary needs a moment to bind), or fails
/// after a few seconds. Returns whether a response arrived.
fn options_answered(to: SocketAddr, wait: Duration) -> bool {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let local = sock.local_addr().expect("addr");
    let deadline = Instant::now() + wait;
    let mut n = 0;
    while Instant::now() < deadline {
        n += 1;
        let req = common::options("UDP", local, &format!("z9hG4bKbin{n}"), "bin@test", n);
        sock.send_to(req.as_bytes(), to).expect("send");
        let mut buf = [0u8; 4096];
        if let Ok((len, _)) = sock.recv_from(&mut buf) {
            let resp = Message::parse(Bytes::copy_from_slice(&buf[..len])).expect("parses");
            assert_eq!(resp.status(), Some(200));
            return true;
        }
    }
    false
}

fn terminate(mut child: Child) -> String {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "gateway did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().expect("output");
    let log =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(exit.success(), "exit status {exit}; log:\n{log}");
    log
}

#[test]
fn environment_overrides_the_config_file_and_sigterm_stops_cleanly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file_port = free_udp_port();
    let env_port = free_udp_port();
    let config = dir.path().join("vigil.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = '{}'\nlog = 'debug'\n[sip]\nlisten = ['udp:127.0.0.1:{file_port}']\n\
             [api]\nlisten = '127.0.0.1:0'\n",
            dir.path().join("data").display()
        ),
    )
    .expect("write config");
    let child = Command::new(env!("CARGO_BIN_EXE_vigil-gateway"))
        .arg("--config")
        .arg(&config)
        .env("VIGIL_SIP_LISTEN", format!("udp:127.0.0.1:{env_port}"))
        .env_remove("VIGIL_DATA_DIR")
        .env_remove("VIGIL_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the binary");
    let env_addr: SocketAddr = format!("127.0.0.1:{env_port}").parse().expect("addr");
    let file_addr: SocketAddr = format!("127.0.0.1:{file_port}").parse().expect("addr");
    let answered = options_answered(env_addr, Duration::from_secs(10));
    let file_answered = answered && options_answered(file_addr, Duration::from_millis(500));
    let log = terminate(child);
    assert!(
        answered,
        "no answer on the VIGIL_SIP_LISTEN port; log:\n{log}"
    );
    assert!(
        !file_answered,
        "the config file's listener should be replaced"
    );
    assert!(
        dir.path().join("data").is_dir(),
        "data_dir from the file is used"
    );
    assert!(log.contains("gateway stopped"), "{log}");
}

#[test]
fn flags_override_the_environment_and_defaults_are_announced() {
    let dir = tempfile::tempdir().expect("temp dir");
    let flag_port = free_udp_port();
    let env_port = free_udp_port();
    let child = Command::new(env!("CARGO_BIN_EXE_vigil-gateway"))
        .args(["--sip-listen", &format!("udp:127.0.0.1:{flag_port}")])
        .args(["--api-listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path())
        .env("VIGIL_SIP_LISTEN", format!("udp:127.0.0.1:{env_port}"))
        .env("VIGIL_LOG", "info")
        .env_remove("VIGIL_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the binary");
    let flag_addr: SocketAddr = format!("127.0.0.1:{flag_port}").parse().expect("addr");
    let answered = options_answered(flag_addr, Duration::from_secs(10));
    let log = terminate(child);
    assert!(answered, "no answer on the --sip-listen port; log:\n{log}");
    assert!(log.contains("embedded defaults"), "{log}");
}

#[test]
fn bad_settings_fail_with_a_message() {
    let out = Command::new(env!("CARGO_BIN_EXE_vigil-gateway"))
        .args(["--sip-listen", "sctp:127.0.0.1:5060"])
        .env_remove("VIGIL_CONFIG")
        .output()
        .expect("run the binary");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown transport"), "{err}");

    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[sip]\nmax_conections = 1\n").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_vigil-gateway"))
        .arg("--config")
        .arg(&config)
        .env_remove("VIGIL_SIP_LISTEN")
        .output()
        .expect("run the binary");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("max_conections"), "{err}");
}
