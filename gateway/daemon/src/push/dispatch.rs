//! The dispatch pipeline: per-credential workers fed from the sans-IO [`Dispatcher`].
//!
//! One worker task per credential (an APNs key, an FCM project, the wake channel) pulls the
//! next attempt of its credential from the core, sends it with that credential's client
//! (up to `max_in_flight` concurrent attempts, so HTTP/2 multiplexing is used), and reports
//! the outcome back. One timer task sleeps until the core's next deadline or retry. Outcome
//! events ([`PushEvent`]) leave on a channel. The core decides everything (order, retries,
//! deadlines, dedupe, backpressure); this module only runs it.
//!
//! The core sits behind one mutex; every critical section is a few hash-map operations and
//! never spans an await.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{mpsc, Notify, Semaphore};
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

/// Called with each push id when a worker hands an attempt to its client (for latency
/// measurements; must be cheap).
pub type TransmitObserver = Arc<dyn Fn(PushId) + Send + Sync>;

struct Shared {
    observer: Option<TransmitObserver>,
    core: Mutex<Dispatcher>,
    clients: HashMap<CredentialId, PushClient>,
    workers: HashMap<CredentialId, Arc<Notify>>,
    timer: Notify,
    events: mpsc::UnboundedSender<PushEvent>,
    instance: u64,
    tasks: Mutex<Vec<JoinHandle<()>>>,
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
        let workers = clients
            .keys()
            .map(|c| (*c, Arc::new(Notify::new())))
            .collect();
        let shared = Arc::new(Shared {
            observer,
            core: Mutex::new(Dispatcher::new(config, CoreRng::from_seed(seed))),
            clients,
            workers,
            timer: Notify::new(),
            events: tx,
            instance: seed ^ 0x5eed_0fa9_9e50_0000,
            tasks: Mutex::new(Vec::new()),
        });
        let mut tasks = Vec::new();
        for (&cred, client) in &shared.clients {
            let s = Arc::clone(&shared);
            let client = client.clone();
            tasks.push(tokio::spawn(worker(s, cred, client, max_in_flight.max(1))));
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
            .field("credentials", &self.shared.clients.len())
            .finish()
    }
}

impl DispatchHandle {
    /// Queues a push. Never blocks; a full queue is an error, not a wait.
    pub fn submit(&self, req: PushRequest) -> Result<Submitted, DispatchError> {
        let ok = match self.shared.clients.get(&req.credential) {
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
        if let Some(n) = self.shared.workers.get(&cred) {
            n.notify_one();
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

async fn worker(shared: Arc<Shared>, cred: CredentialId, client: PushClient, max_in_flight: usize) {
    let notify = Arc::clone(&shared.workers[&cred]);
    let permits = Arc::new(Semaphore::new(max_in_flight));
    loop {
        // Take a permit first so a transmit is only taken out of the queue when it can go.
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        let t = shared.with_core(|c| c.poll_transmit_for(Instant::now(), cred));
        let Some(t) = t else {
            drop(permit);
            notify.notified().await;
            continue;
        };
        let shared = Arc::clone(&shared);
        let client = client.clone();
        tokio::spawn(async move {
            let id = t.id;
            let outcome = send(&shared, &client, &t).await;
            shared.with_core(|c| c.handle_outcome(Instant::now(), id, outcome));
            drop(permit);
        });
    }
}

async fn send(shared: &Shared, client: &PushClient, t: &Transmit) -> Outcome {
    if let Some(o) = &shared.observer {
        o(t.id);
    }
    match (client, &*t.request) {
        (PushClient::Apns(c), WireRequest::Apns(r)) => {
            c.send(
                t.target.token(),
                r,
                &apns_id(shared.instance, t.id),
                t.deadline,
            )
            .await
        }
        (PushClient::Fcm(c), WireRequest::Fcm(m)) => c.send(m, t.deadline).await,
        (PushClient::Wake(w), WireRequest::Wake(p)) => {
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
            .workers
            .keys()
            .filter(|c| core.has_queued(**c))
            .copied()
            .collect();
        drop(core);
        for c in ready {
            shared.workers[&c].notify_one();
        }
    }
}
