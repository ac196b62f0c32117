//! The mock APNs fixture shared by the APNs test binaries.

use super::{connect, Answer, Client};
use http::{Method, Request};
use std::sync::Arc;
use vigil_sim::mock::{
    ApnsSigningKey, Faults, MockApns, MockApnsConfig, MockApnsHandle, MockClock, TestCa,
};

pub const TOPIC: &str = "com.example.phone";
pub const VOIP_TOPIC: &str = "com.example.phone.voip";

pub struct Fixture {
    pub ca: Arc<TestCa>,
    pub key: ApnsSigningKey,
    pub clock: MockClock,
    pub mock: MockApnsHandle,
}

pub async fn fixture(faults: Faults) -> Fixture {
    let ca = Arc::new(TestCa::generate().expect("CA"));
    let key = ApnsSigningKey::generate("TEAM000001", "KEY0000001").expect("key");
    let clock = MockClock::real();
    let mut cfg = MockApnsConfig::new(ca.clone(), vec![key.public_key()]);
    cfg.clock = clock.clone();
    cfg.faults = faults;
    let mock = MockApns::start(cfg).await.expect("mock starts");
    Fixture {
        ca,
        key,
        clock,
        mock,
    }
}

impl Fixture {
    pub fn token(&self) -> String {
        self.key.provider_token(self.clock.unix_secs())
    }

    pub async fn client(&self) -> Client {
        connect(self.mock.addr, &self.ca).await
    }
}

/// A VoIP push request as the gateway sends it.
pub fn voip(device: &str, jwt: &str) -> http::request::Builder {
    Request::builder()
        .method(Method::POST)
        .uri(format!("https://localhost/3/device/{device}"))
        .header("authorization", format!("bearer {jwt}"))
        .header("apns-topic", VOIP_TOPIC)
        .header("apns-push-type", "voip")
        .header("apns-priority", "10")
        .header("apns-expiration", "0")
}

pub const BODY: &[u8] = br#"{"aps":{},"call-id":"abc"}"#;

pub async fn send(client: &mut Client, req: http::request::Builder, body: &[u8]) -> Answer {
    client
        .request(req.body(()).expect("request"), body)
        .await
        .expect("an answer")
}
