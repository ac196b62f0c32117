//! SMS webhook and SMTP delivery against local fake providers (a real HTTP server and a
//! minimal SMTP server on 127.0.0.1).
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use vigil_billing::config::{EmailConfig, SmsConfig};
use vigil_billing::notify::{DeliveryError, Email, Sms};
use vigil_billing::util::E164;

type Seen = Arc<Mutex<Vec<(HeaderMap, String)>>>;

async fn fake_sms_gateway(status: StatusCode) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let app = axum::Router::new().route(
        "/send",
        post(move |headers: HeaderMap, body: String| {
            let s = s.clone();
            async move {
                s.lock().unwrap().push((headers, body));
                status
            }
        }),
    );
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/send", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (url, seen)
}

fn sms_cfg(url: &str, template: &str, content_type: &str) -> SmsConfig {
    SmsConfig {
        provider: "webhook".into(),
        webhook_url: url.into(),
        body_template: template.into(),
        content_type: content_type.into(),
        authorization: Some("Bearer provider-key".into()),
        ..SmsConfig::default()
    }
}

#[tokio::test]
async fn sms_webhook_json_and_form_templates() {
    let dir = tempfile::tempdir().unwrap();
    let (url, seen) = fake_sms_gateway(StatusCode::OK).await;
    let to = E164::parse("+12065550100").unwrap();

    let sms = Sms::from_config(
        &sms_cfg(
            &url,
            r#"{"dest":"{to}","body":"{text}"}"#,
            "application/json",
        ),
        dir.path(),
    )
    .unwrap();
    sms.send(&to, "code \"123456\" & more").await.unwrap();
    let form = sms_cfg(
        &url,
        "To={to_digits}&Body={text}",
        "application/x-www-form-urlencoded",
    );
    Sms::from_config(&form, dir.path())
        .unwrap()
        .send(&to, "code 1+1")
        .await
        .unwrap();

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    let (headers, body) = &seen[0];
    assert_eq!(headers["authorization"], "Bearer provider-key");
    assert_eq!(headers["content-type"], "application/json");
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["dest"], "+12065550100");
    assert_eq!(v["body"], "code \"123456\" & more");
    assert_eq!(seen[1].1, "To=12065550100&Body=code+1%2B1");
}

#[tokio::test]
async fn sms_webhook_error_status_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (url, _) = fake_sms_gateway(StatusCode::BAD_GATEWAY).await;
    let sms = Sms::from_config(&sms_cfg(&url, "{text}", "text/plain"), dir.path()).unwrap();
    let err = sms
        .send(&E164::parse("+12065550100").unwrap(), "x")
        .await
        .unwrap_err();
    assert!(matches!(err, DeliveryError::Status(502)), "{err:?}");
    let none = Sms::from_config(&SmsConfig::default(), dir.path()).unwrap();
    assert!(matches!(
        none.send(&E164::parse("+12065550100").unwrap(), "x").await,
        Err(DeliveryError::NotConfigured)
    ));
}

/// Accepts one message and returns the DATA section.
async fn fake_smtp() -> (u16, tokio::task::JoinHandle<String>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (sock, _) = l.accept().await.unwrap();
        let (r, mut w) = sock.into_split();
        let mut lines = BufReader::new(r).lines();
        w.write_all(b"220 fake ESMTP\r\n").await.unwrap();
        let mut data = String::new();
        let mut in_data = false;
        while let Some(line) = lines.next_line().await.unwrap() {
            if in_data {
                if line == "." {
                    in_data = false;
                    w.write_all(b"250 queued\r\n").await.unwrap();
                } else {
                    data.push_str(&line);
                    data.push('\n');
                }
                continue;
            }
            let verb = line
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_uppercase();
            match verb.as_str() {
                "EHLO" | "HELO" => w.write_all(b"250 fake\r\n").await.unwrap(),
                "DATA" => {
                    in_data = true;
                    w.write_all(b"354 go ahead\r\n").await.unwrap();
                }
                "QUIT" => {
                    w.write_all(b"221 bye\r\n").await.unwrap();
                    break;
                }
                _ => w.write_all(b"250 ok\r\n").await.unwrap(),
            }
        }
        data
    });
    (port, task)
}

#[tokio::test]
async fn smtp_delivers_the_code() {
    let dir = tempfile::tempdir().unwrap();
    let (port, server) = fake_smtp().await;
    let cfg = EmailConfig {
        provider: "smtp".into(),
        smtp_host: "127.0.0.1".into(),
        smtp_port: port,
        smtp_security: "none".into(),
        from: "Vigil <no-reply@test.example>".into(),
        subject: "Your sign-in code".into(),
        ..EmailConfig::default()
    };
    let email = Email::from_config(&cfg, dir.path()).unwrap();
    email
        .send("john@abc.example", "Your verification code is 654321")
        .await
        .unwrap();
    drop(email); // closes the pooled connection, so the fake server sees QUIT
    let data = tokio::time::timeout(std::time::Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap();
    assert!(data.contains("To: john@abc.example"), "{data}");
    assert!(data.contains("Subject: Your sign-in code"), "{data}");
    assert!(data.contains("654321"), "{data}");
}
