//! Test environments for the push path: a mock APNs or FCM (from `vigil-sim`) over real TLS
//! with a generated CA and keys, and Vigil's real clients configured to trust it.
//!
//! Token ages are tens of minutes, so both sides run on clocks the test moves forward: the
//! mock judges tokens by its [`MockClock`], the client mints them by a [`TestClock`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use vigil_gateway::push::{
    ApnsAuth, ApnsClient, ApnsConfig, FcmClient, FcmConfig, PushClock, Roots, Secret,
};
use vigil_proto::push::{CallNotice, DeviceToken, Notice};
use vigil_sim::mock::{
    ApnsSigningKey, Faults, FcmServiceAccount, MockApns, MockApnsConfig, MockApnsHandle, MockClock,
    MockFcm, MockFcmConfig, MockFcmHandle, TestCa,
};

/// The bundle id the APNs environments use.
pub const BUNDLE: &str = "org.vigil.test";

/// A client-side clock that the test can move ahead of real time.
#[derive(Debug, Clone, Default)]
pub struct TestClock {
    offset_ms: Arc<AtomicU64>,
}

impl TestClock {
    /// Moves the clock (and its clones) forward.
    pub fn advance(&self, by: Duration) {
        self.offset_ms
            .fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }

    fn offset(&self) -> Duration {
        Duration::from_millis(self.offset_ms.load(Ordering::SeqCst))
    }
}

impl PushClock for TestClock {
    fn now(&self) -> Instant {
        Instant::now() + self.offset()
    }
    fn unix_secs(&self) -> u64 {
        (SystemTime::now() + self.offset())
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

/// A mock APNs with one team key, and what a client needs to talk to it.
#[derive(Debug)]
pub struct ApnsEnv {
    /// The running mock.
    pub mock: MockApnsHandle,
    /// The signing key (the mock trusts its public half).
    pub key: ApnsSigningKey,
    /// The mock's clock.
    pub mock_clock: MockClock,
    /// The client's clock.
    pub clock: TestClock,
}

impl ApnsEnv {
    /// Starts a mock APNs trusting one fresh key of team `TEAM000001`.
    pub async fn start(faults: Faults) -> Self {
        Self::start_with(faults, |_| {}).await
    }

    /// Like [`ApnsEnv::start`], letting the test adjust the mock's configuration.
    pub async fn start_with(faults: Faults, tweak: impl FnOnce(&mut MockApnsConfig)) -> Self {
        let ca = Arc::new(TestCa::generate().expect("test CA"));
        let key = ApnsSigningKey::generate("TEAM000001", "KEY0000001").expect("p8 key");
        let mock_clock = MockClock::real();
        let mut cfg = MockApnsConfig::new(ca, vec![key.public_key()]);
        cfg.faults = faults;
        cfg.clock = mock_clock.clone();
        cfg.bundle_ids = vec![BUNDLE.to_owned()];
        tweak(&mut cfg);
        let mock = MockApns::start(cfg).await.expect("mock APNs starts");
        Self {
            mock,
            key,
            mock_clock,
            clock: TestClock::default(),
        }
    }

    /// A client configuration for this mock and key.
    pub fn config(&self) -> ApnsConfig {
        let auth = ApnsAuth::Token {
            p8_pem: Secret::new(self.key.p8_pem()),
            key_id: self.key.key_id.clone(),
            team_id: self.key.team_id.clone(),
        };
        let mut cfg = ApnsConfig::new(self.mock.base_url(), auth);
        cfg.roots = Roots::Pem(self.mock.ca_pem.clone());
        cfg.clock = Arc::new(self.clock.clone());
        cfg.connect_to = Some(self.mock.addr);
        cfg
    }

    /// A connected client.
    pub async fn client(&self) -> ApnsClient {
        ApnsClient::connect(self.config())
            .await
            .expect("client connects to mock APNs")
    }
}

/// A mock FCM with one service account, and what a client needs to talk to it.
#[derive(Debug)]
pub struct FcmEnv {
    /// The running mock.
    pub mock: MockFcmHandle,
    /// The service account (the mock trusts its public half).
    pub account: FcmServiceAccount,
    /// The mock's clock.
    pub mock_clock: MockClock,
    /// The client's clock.
    pub clock: TestClock,
}

impl FcmEnv {
    /// Starts a mock FCM trusting one fresh service account of project `vigil-test`.
    pub async fn start(faults: Faults) -> Self {
        Self::start_with(faults, |_| {}).await
    }

    /// Like [`FcmEnv::start`], letting the test adjust the mock's configuration.
    pub async fn start_with(faults: Faults, tweak: impl FnOnce(&mut MockFcmConfig)) -> Self {
        let ca = Arc::new(TestCa::generate().expect("test CA"));
        let account =
            FcmServiceAccount::generate("vigil-test", "push@vigil-test.iam.gserviceaccount.com")
                .expect("service account");
        let mock_clock = MockClock::real();
        let mut cfg = MockFcmConfig::new(ca, vec![account.trusted()]);
        cfg.faults = faults;
        cfg.clock = mock_clock.clone();
        tweak(&mut cfg);
        let mock = MockFcm::start(cfg).await.expect("mock FCM starts");
        Self {
            mock,
            account,
            mock_clock,
            clock: TestClock::default(),
        }
    }

    /// A client configuration for this mock and account.
    pub fn config(&self) -> FcmConfig {
        let json = self.account.to_json(&self.mock.token_url());
        let mut cfg = FcmConfig::new(Secret::new(json));
        cfg.base_url = self.mock.base_url();
        cfg.roots = Roots::Pem(self.mock.ca_pem.clone());
        cfg.clock = Arc::new(self.clock.clone());
        cfg.connect_to = Some(self.mock.addr);
        cfg
    }

    /// A connected client.
    pub async fn client(&self) -> FcmClient {
        FcmClient::connect(self.config())
            .await
            .expect("client connects to mock FCM")
    }
}

/// The `n`-th test APNs token (64 hex digits).
pub fn apns_token(n: u64) -> DeviceToken {
    DeviceToken::apns(&format!("{:064x}", n + 0xabc0_0000)).expect("hex token")
}

/// The `n`-th test FCM token.
pub fn fcm_token(n: u64) -> DeviceToken {
    DeviceToken::opaque(&format!("fcm-token-{n:08}:APA91b")).expect("valid token")
}

/// An incoming-call notice with reference `call_ref`.
pub fn call(call_ref: &str) -> Notice {
    Notice::IncomingCall(CallNotice {
        call_ref: call_ref.to_owned(),
        caller: "+15550100".to_owned(),
        caller_name: Some("Alice".to_owned()),
        video: false,
    })
}
