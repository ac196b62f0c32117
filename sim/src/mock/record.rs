//! Accepted pushes (recorded for assertions, broadcast to virtual phones) and statistics.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};
use tokio::sync::broadcast;

/// Which mock accepted a push.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PushService {
    /// Mock APNs.
    Apns,
    /// Mock FCM HTTP v1.
    Fcm,
}

/// Delivery priority of an accepted push.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PushPriority {
    /// APNs `apns-priority: 10`, FCM `android.priority: HIGH`: deliver now, wake the device.
    High,
    /// APNs `apns-priority: 5`, FCM `NORMAL` (FCM's default): may be delayed to save power.
    Normal,
    /// APNs `apns-priority: 1`: lowest, may be dropped under load.
    Low,
}

/// One push a mock accepted (answered 200).
#[derive(Clone, Debug, PartialEq)]
pub struct AcceptedPush {
    /// Which service accepted it.
    pub service: PushService,
    /// APNs: the `apns-id` (echoed or generated). FCM: the message name
    /// `projects/P/messages/ID` returned to the sender.
    pub id: String,
    /// The device token the push was addressed to.
    pub token: String,
    /// APNs: `apns-topic`. FCM: the project id from the URL.
    pub topic: String,
    /// APNs: `apns-push-type`. FCM: `None`.
    pub push_type: Option<String>,
    /// Delivery priority.
    pub priority: PushPriority,
    /// APNs `apns-expiration` (Unix seconds, 0 = now or never), if sent.
    pub expiration: Option<u64>,
    /// FCM `android.ttl`, if sent.
    pub ttl: Option<Duration>,
    /// APNs `apns-collapse-id` / FCM `android.collapse_key`, if sent.
    pub collapse_id: Option<String>,
    /// APNs: the JSON body. FCM: the `message` object.
    pub payload: serde_json::Value,
    /// Mock-internal id of the connection that carried it.
    pub connection: u64,
    /// When it was accepted, on the mock's clock.
    pub at: SystemTime,
}

/// Counters a test reads to check what the mock saw and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MockStats {
    /// TLS connections accepted (handshake completed).
    pub connections: u64,
    /// Requests received (HTTP/2 streams opened), including refused and reset ones.
    pub requests: u64,
    /// Pushes answered 200 and recorded.
    pub accepted: u64,
    /// Responses sent, by HTTP status.
    pub by_status: BTreeMap<u16, u64>,
    /// Error responses sent, by reason (APNs `reason`, FCM `errorCode` or `status`,
    /// OAuth `error`).
    pub by_reason: BTreeMap<String, u64>,
    /// Error responses that were injected faults (also counted in the maps above).
    pub injected_faults: u64,
    /// Connections sent a graceful GOAWAY by fault injection.
    pub goaways_sent: u64,
    /// Connections closed abruptly by fault injection.
    pub resets_sent: u64,
    /// Connections whose stream limit was lowered to 1.
    pub stream_limit_drops: u64,
    /// Streams refused because they exceeded a lowered stream limit.
    pub refused_streams: u64,
    /// FCM OAuth access tokens issued.
    pub tokens_issued: u64,
    /// Accepted pushes whose id was already accepted once (a client resent a push whose
    /// first answer it never saw, or reused an id).
    pub duplicate_ids: u64,
}

/// Upper bound on recorded pushes, so a long-running mock's memory stays bounded; the
/// oldest records are dropped first.
pub(crate) const RECORD_CAPACITY: usize = 1_000_000;

/// Capacity of the broadcast channel to subscribers; slow subscribers see `Lagged`.
const BROADCAST_CAPACITY: usize = 65_536;

/// Recorded pushes, the subscriber channel and statistics of one mock.
pub(crate) struct Recorder {
    /// Most pushes kept in `pushes` (0: none, for long benchmark runs).
    capacity: usize,
    pushes: Mutex<VecDeque<AcceptedPush>>,
    seen_ids: Mutex<std::collections::HashSet<String>>,
    tx: broadcast::Sender<AcceptedPush>,
    stats: Mutex<MockStats>,
}

impl Recorder {
    /// A recorder keeping at most `capacity` pushes.
    pub(crate) fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(BROADCAST_CAPACITY);
        Self {
            capacity: capacity.min(RECORD_CAPACITY),
            pushes: Mutex::new(VecDeque::new()),
            seen_ids: Mutex::new(Default::default()),
            tx,
            stats: Mutex::new(MockStats::default()),
        }
    }

    pub(crate) fn record(&self, push: AcceptedPush) {
        let duplicate = {
            let mut seen = lock(&self.seen_ids);
            if seen.len() >= RECORD_CAPACITY {
                seen.clear();
            }
            !seen.insert(push.id.clone())
        };
        if self.capacity > 0 {
            let mut pushes = lock(&self.pushes);
            if pushes.len() >= self.capacity {
                pushes.pop_front();
            }
            pushes.push_back(push.clone());
        }
        self.stats(|s| {
            s.accepted += 1;
            if duplicate {
                s.duplicate_ids += 1;
            }
        });
        // No subscriber is fine: the push is still recorded (and not cloned for nobody).
        if self.tx.receiver_count() > 0 {
            let _ = self.tx.send(push);
        }
    }

    pub(crate) fn accepted(&self) -> Vec<AcceptedPush> {
        lock(&self.pushes).iter().cloned().collect()
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<AcceptedPush> {
        self.tx.subscribe()
    }

    /// Updates the counters under their lock.
    pub(crate) fn stats<R>(&self, f: impl FnOnce(&mut MockStats) -> R) -> R {
        f(&mut lock(&self.stats))
    }

    pub(crate) fn snapshot(&self) -> MockStats {
        lock(&self.stats).clone()
    }
}

/// Locks a mutex, recovering the data if another thread panicked while holding it: the
/// mock's state stays usable for the remaining assertions.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
