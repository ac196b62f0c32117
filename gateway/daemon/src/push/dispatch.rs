//! The dispatch pipeline: per-credential workers fed from the sans-IO [`Dispatcher`].
//!
//! Each credential (an APNs key, an FCM project, the wake channel) has up to `max_in_flight`
//! concurrent attempts (so HTTP/2 multiplexing is used), each sent by a task of its own that
//! reports the outcome back to the core. A push submitted while its credential has a free
//! slot is taken out of the core and its send task spawned right in
//! [`DispatchHandle::submit`], so a push on an idle pipeline waits for no other task to be
//! scheduled first (that extra hop is what dispatch latency is made of on a busy machine).
//! When every slot is taken, the credential's worker task takes the next attempt as soon as
//! one frees. One timer task sleeps until the core's next deadline or retry. Outcome events
//! ([`PushEvent`]) leave on a channel. The core decides everything (order, retries,
//! deadlines, dedupe, backpressure); this module only runs it.
//!
//! The core sits behind one mutex; every critical section is a few hash-map operations and
//! never spans an await.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use vigil_proto::push::{
    CredentialId, DispatchConfig, Dispatcher, FailReason, Outcome, PushEvent, PushId, PushRequest,
    SubmitError, Submitted, Transmit, WireRequest,
};
use vigil_proto::rng::CoreRng;

use super::apns::{apns_id, ApnsClient};
use super::fcm::FcmClient;
use super::wake::WakeServer;

/// The client serving one credential.
#[derive(Debug, Clone)]
pub enum PushClient {
    /// An APNs key or certificate.
    Apns(Arc<ApnsClient>),
    /// An FCM service account.
    Fcm(Arc<FcmClient>),
    /// The QUIC wake channel.
    Wake(Arc<WakeServer>),
}

/// Why [`DispatchHandle::submit`] refused a push.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DispatchError {
    /// The core refused it (queue full, payload too large, deadline passed).
    #[error(transparent)]
    Submit(#[from] SubmitError),
    /// No client is configured for the credential, or it serves another provider.
    #[error("no client for this credential and provider")]
    UnknownCredential,
}

/// Called with a push's id each time one of its attempts leaves Vigil: handed to an HTTP/2
/// connection (APNs, FCM) or about to be written to the device's QUIC stream (wake). For
/// latency measurements; must be cheap.
pub type TransmitObserver = Arc<dyn Fn(PushId) + Send + Sync>;

/// One credential: its client, its in-flight slots and its worker's wake-up.
struct Lane {
    client: PushClient,
    /// One permit per attempt in flight.
    permits: Arc<Semaphore>,
    /// Wakes the worker: work was queued while every slot was taken, or retries came due.
    notify: Notify,
}

struct Shared {
    observer: Option<TransmitObserver>,
    core: Mutex<Dispatcher>,
    lanes: HashMap<CredentialId, Lane>,
    timer: Notify,
    events: mpsc::UnboundedSender<PushEvent>,
    instance: u64,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Where send tasks run (submit may be called from outside the runtime).
    runtime: tokio::runtime::Handle,
}

impl Shared {
    fn core(&self) -> std::sync::MutexGuard<'_, Dispatcher> {
        self.core
            .lock()
            .expect("dispatch core lock is never poisoned: the core does not panic")
    }

    /// Runs `f` on the core, forwards its events and pokes the timer task if the next
    /// deadline moved earlier.
    fn with_core<R>(&self, f: impl FnOnce(&mut Dispatcher) -> R) -> R {
        let mut core = self.core();
        let before = core.poll_timeout();
        let r = f(&mut core);
        let after = core.poll_timeout();
        while let Some(e) = core.poll_event() {
            // The receiver may be gone during shutdown; events are then irrelevant.
            let _ = self.events.send(e);
        }
        drop(core);
        if matches!((before, after), (None, Some(_)))
            || matches!((before, after), (Some(b), Some(a)) if a < b)
        {
            self.timer.notify_one();
        }
        r
    }

    /// Sends the next attempt of `cred` now if a slot is free; otherwise (or if another
    /// attempt raced it out of the queue) leaves the work to the lane's worker.
    fn try_send_now(self: &Arc<Self>, cred: CredentialId) {
        let Some(lane) = self.lanes.get(&cred) else {
            return;
        };
        let Ok(permit) = Arc::clone(&lane.permits).try_acquire_owned() else {
            // Every slot is taken: the worker waits on the semaphore and takes the next
            // attempt when one frees (the notification covers a worker that is instead
            // parked on an empty queue it saw a moment ago).
            lane.notify.notify_one();
            return;
        };
        match self.with_core(|c| c.poll_transmit_for(Instant::now(), cred)) {
            Some(t) => self.spawn_send(lane.client.clone(), t, permit),
            None => {
                drop(permit);
                lane.notify.notify_one();
            }
        }
    }

    /// Sends one attempt on its own task and reports the outcome; the permit frees its slot.
    fn spawn_send(self: &Arc<Self>, client: PushClient, t: Transmit, permit: OwnedSemaphorePermit) {
        let shared = Arc::clone(self);
        self.runtime.spawn(async move {
            let id = t.id;
            let outcome = send(&shared, &client, &t).await;
            shared.with_core(|c| c.handle_outcome(Instant::now(), id, outcome));
            drop(permit);
        });
    }
}

/// Starts dispatch pipelines.
#[derive(Debug)]
pub struct PushDispatcher;

impl PushDispatcher {
    /// Starts the workers for `clients` and returns the handle and the event stream.
    /// `seed` seeds retry jitter; `max_in_flight` bounds concurrent attempts per credential.
    pub fn start(
        config: DispatchConfig,
        seed: u64,
        clients: HashMap<CredentialId, PushClient>,
        max_in_flight: usize,
    ) -> (DispatchHandle, mpsc::UnboundedReceiver<PushEvent>) {
        Self::start_observed(config, seed, clients, max_in_flight, None)
    }

    /// Like [`PushDispatcher::start`], calling `observer` as each attempt leaves the queue.
    pub fn start_observed(
        config: DispatchConfig,
        seed: u64,
        clients: HashMap<CredentialId, PushClient>,
        max_in_flight: usize,
        observer: Option<TransmitObserver>,
    ) -> (DispatchHandle, mpsc::UnboundedReceiver<PushEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let max_in_flight = max_in_flight.max(1);
        let lanes = clients
            .into_iter()
            .map(|(cred, client)| {
                let lane = Lane {
                    client,
                    permits: Arc::new(Semaphore::new(max_in_flight)),
                    notify: Notify::new(),
                };
                (cred, lane)
            })
            .collect();
        let shared = Arc::new(Shared {
            observer,
            core: Mutex::new(Dispatcher::new(config, CoreRng::from_seed(seed))),
            lanes,
            timer: Notify::new(),
            events: tx,
            instance: seed ^ 0x5eed_0fa9_9e50_0000,
            tasks: Mutex::new(Vec::new()),
            runtime: tokio::runtime::Handle::current(),
        });
        let mut tasks = Vec::new();
        for &cred in shared.lanes.keys() {
            tasks.push(tokio::spawn(worker(Arc::clone(&shared), cred)));
        }
        tasks.push(tokio::spawn(timer(Arc::clone(&shared))));
        *shared.tasks.lock().expect("not poisoned") = tasks;
        (DispatchHandle { shared }, rx)
    }
}

/// Submits pushes to a running pipeline; cheap to clone.
#[derive(Clone)]
pub struct DispatchHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for DispatchHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DispatchHandle")
            .field("credentials", &self.shared.lanes.len())
            .finish()
    }
}

impl DispatchHandle {
    /// Queues a push. Never blocks; a full queue is an error, not a wait.
    pub fn submit(&self, req: PushRequest) -> Result<Submitted, DispatchError> {
        let ok = match self.shared.lanes.get(&req.credential).map(|l| &l.client) {
            Some(PushClient::Apns(_)) => req.target.provider() == vigil_proto::push::Provider::Apns,
            Some(PushClient::Fcm(_)) => req.target.provider() == vigil_proto::push::Provider::Fcm,
            Some(PushClient::Wake(_)) => req.target.provider() == vigil_proto::push::Provider::Wake,
            None => false,
        };
        if !ok {
            return Err(DispatchError::UnknownCredential);
        }
        let cred = req.credential;
        let r = self
            .shared
            .with_core(|c| c.handle_submit(Instant::now(), req))?;
        if !r.duplicate {
            self.shared.try_send_now(cred);
        }
        Ok(r)
    }

    /// The `apns-id` this pipeline uses for `id`.
    pub fn apns_id(&self, id: PushId) -> String {
        apns_id(self.shared.instance, id)
    }

    /// Live pushes (queued, in flight, waiting to retry).
    pub fn live(&self) -> usize {
        self.shared.core().len()
    }

    /// Stops the workers (in-flight attempts are abandoned).
    pub fn shutdown(&self) {
        for t in self.shared.tasks.lock().expect("not poisoned").drain(..) {
            t.abort();
        }
    }
}

async fn worker(shared: Arc<Shared>, cred: CredentialId) {
    let lane = &shared.lanes[&cred];
    loop {
        // Take a permit first so a transmit is only taken out of the queue when it can go.
        let Ok(permit) = Arc::clone(&lane.permits).acquire_owned().await else {
            return;
        };
        let t = shared.with_core(|c| c.poll_transmit_for(Instant::now(), cred));
        let Some(t) = t else {
            drop(permit);
            lane.notify.notified().await;
            continue;
        };
        shared.spawn_send(lane.client.clone(), t, permit);
    }
}

async fn send(shared: &Shared, client: &PushClient, t: &Transmit) -> Outcome {
    let id = t.id;
    let handed_off = || {
        if let Some(o) = &shared.observer {
            o(id);
        }
    };
    match (client, &*t.request) {
        (PushClient::Apns(c), WireRequest::Apns(r)) => {
            c.send_observed(
                t.target.token(),
                r,
                &apns_id(shared.instance, t.id),
                t.deadline,
                &handed_off,
            )
            .await
        }
        (PushClient::Fcm(c), WireRequest::Fcm(m)) => {
            c.send_observed(m, t.deadline, &handed_off).await
        }
        (PushClient::Wake(w), WireRequest::Wake(p)) => {
            handed_off();
            w.wake(t.target.token(), p, t.deadline).await
        }
        _ => Outcome::Fail(FailReason::NoClient),
    }
}

async fn timer(shared: Arc<Shared>) {
    loop {
        let next = shared.core().poll_timeout();
        match next {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at.into()) => {}
                    _ = shared.timer.notified() => continue,
                }
            }
            None => {
                shared.timer.notified().await;
                continue;
            }
        }
        shared.with_core(|c| c.handle_timeout(Instant::now()));
        // Retries re-entered their lanes: wake the workers that have work.
        let core = shared.core();
        let ready: Vec<_> = shared
            .lanes
            .keys()
            .filter(|c| core.has_queued(**c))
            .copied()
            .collect();
        drop(core);
        for c in ready {
            shared.lanes[&c].notify.notify_one();
        }
    }
}
