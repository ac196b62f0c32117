//! Mock APNs and mock FCM HTTP v1 services.
//!
//! Both mocks speak the real wire protocols on real sockets: HTTP/2 over TLS (certificates
//! from a generated test CA, see [`TestCa`]), and enforce the rules in
//! `shared/PROTOCOL-FACTS.md` so that a client that passes against them also works against
//! Apple and Google. Every accepted push is recorded ([`MockApnsHandle::accepted`]) and
//! published to subscribers ([`MockApnsHandle::subscribe`]), which is how the simulator's
//! virtual phones receive their wake-ups. Faults (error rates per reason, latency, GOAWAY,
//! connection resets, the stream limit dropping to 1) are injected per [`Faults`].
//!
//! Code map:
//! - `tls`: the test CA and the rustls configs built from it.
//! - `keys`: APNs `.p8` keys and FCM service accounts for tests and the CLI.
//! - `jwt`: parsing and verifying the ES256 / RS256 JWTs both services take.
//! - `server`: the shared TLS + HTTP/2 accept loop, fault injection and per-connection state.
//! - `settings_io`: the byte-stream shim that lets the server lower
//!   `SETTINGS_MAX_CONCURRENT_STREAMS` mid-connection (h2 has no API for it).
//! - `apns`, `fcm`: request validation and the services' public handles.
//! - `faults`, `record`: fault configuration, recorded pushes and statistics.

mod apns;
mod faults;
mod fcm;
mod jwt;
mod keys;
mod record;
mod server;
mod settings_io;
mod tls;

pub use apns::{ApnsClientCert, MockApns, MockApnsConfig, MockApnsHandle};
pub use faults::{FaultReason, Faults, LatencyDist};
pub use fcm::{MockFcm, MockFcmConfig, MockFcmHandle, GOOGLE_TOKEN_AUDIENCE};
pub use keys::{ApnsKey, ApnsSigningKey, FcmServiceAccount, FcmTrustedAccount, KeyError};
pub use record::{AcceptedPush, MockStats, PushPriority, PushService};
pub use tls::{ClientIdentity, TestCa, TlsError};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The wall clock the mocks judge tokens by: real time plus a shared offset.
///
/// Token-age rules are measured in tens of minutes, so tests advance the offset instead of
/// sleeping. Clones share the offset, so a test keeps one clone and hands another to the mock.
#[derive(Clone, Debug, Default)]
pub struct MockClock {
    offset_ms: Arc<AtomicU64>,
}

impl MockClock {
    /// A clock that starts at real time; [`MockClock::advance`] moves it (and its clones) ahead.
    pub fn real() -> Self {
        Self::default()
    }

    /// Moves this clock and every clone of it forward by `by`.
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.offset_ms.fetch_add(ms, Ordering::SeqCst);
    }

    /// The current time as the mock sees it.
    pub fn now(&self) -> SystemTime {
        SystemTime::now() + Duration::from_millis(self.offset_ms.load(Ordering::SeqCst))
    }

    /// Seconds since the Unix epoch, as the mock sees it (the unit of JWT `iat`/`exp`).
    pub fn unix_secs(&self) -> u64 {
        self.unix_millis() / 1000
    }

    /// Milliseconds since the Unix epoch (the unit of APNs' 410 `timestamp`).
    pub fn unix_millis(&self) -> u64 {
        self.now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}
