//! The dispatch queue: which push goes out next, and what happens after each attempt.
//!
//! Shape (after quinn-proto): the shell calls [`Dispatcher::handle_submit`] for a new push,
//! drains work with [`Dispatcher::poll_transmit`] / [`Dispatcher::poll_transmit_for`], reports
//! each attempt's result with [`Dispatcher::handle_outcome`], sleeps until
//! [`Dispatcher::poll_timeout`] and then calls [`Dispatcher::handle_timeout`], and drains
//! [`PushEvent`]s with [`Dispatcher::poll_event`].
//!
//! Policy:
//! - **Bounded.** Each credential holds at most `per_credential_capacity` live pushes (queued,
//!   in flight or waiting to retry) and the dispatcher at most `total_capacity`. A full queue
//!   answers [`SubmitError::QueueFull`]; the only exception is a more urgent push, which evicts
//!   the newest queued push of a lower class (reported as failed with
//!   [`FailReason::Evicted`]) — an incoming call must not be refused because reminders piled up.
//! - **Priorities.** Three lanes per credential (call > message > reminder); retries re-enter
//!   the front of their lane.
//! - **Fairness.** [`Dispatcher::poll_transmit`] serves credentials round-robin, so one busy
//!   tenant cannot starve another; per-credential workers use
//!   [`Dispatcher::poll_transmit_for`].
//! - **Deadlines.** A push that cannot be delivered before its deadline fails with
//!   [`FailReason::DeadlineExceeded`]; a retry that would start after the deadline is not tried.
//! - **Dedupe.** A push identical (credential, target, notice) to a live one returns the live
//!   push's id instead of sending twice.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::backoff::RetryPolicy;
use super::classify::{FailReason, Verdict};
use super::payload::{self, Notice, PayloadError, WireRequest};
use super::{CredentialId, PushId, Target, Urgency};
use crate::rng::CoreRng;
use crate::timer::{TimerId, Timers};

/// Limits and retry timing of a [`Dispatcher`].
#[derive(Debug, Clone, Copy)]
pub struct DispatchConfig {
    /// Live pushes one credential may hold.
    pub per_credential_capacity: usize,
    /// Live pushes the whole dispatcher may hold.
    pub total_capacity: usize,
    /// Backoff between attempts.
    pub retry: RetryPolicy,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        Self {
            per_credential_capacity: 20_000,
            total_capacity: 200_000,
            retry: RetryPolicy::default(),
        }
    }
}

/// A push to send.
#[derive(Debug, Clone)]
pub struct PushRequest {
    /// The credential (APNs key/certificate, FCM project, wake channel) that sends it.
    pub credential: CredentialId,
    /// The device.
    pub target: Target,
    /// What to announce.
    pub notice: Notice,
    /// After this instant the push is worthless (e.g. the caller gave up).
    pub deadline: Instant,
}

/// A successful submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Submitted {
    /// The push's id (the live original's, for a duplicate).
    pub id: PushId,
    /// Whether an identical push was already live and this one was merged into it.
    pub duplicate: bool,
}

/// Why a push was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// The credential's or the dispatcher's queue is full.
    #[error("push queue full")]
    QueueFull,
    /// The payload cannot be built within the provider's limits.
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// The deadline is already past.
    #[error("deadline already passed")]
    DeadlinePassed,
}

/// One attempt for the shell to send.
#[derive(Debug, Clone)]
pub struct Transmit {
    /// The push.
    pub id: PushId,
    /// Its credential.
    pub credential: CredentialId,
    /// The device.
    pub target: Target,
    /// The provider request (shared between attempts).
    pub request: Arc<WireRequest>,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The push's deadline; the shell bounds the attempt by it.
    pub deadline: Instant,
}

/// The result of one attempt, reported by the shell.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The provider accepted the push (APNs/FCM 200).
    Accepted,
    /// The device itself acknowledged it (wake channel).
    Delivered,
    /// Retry after backoff, no earlier than `retry_after` / `min_delay`.
    Retry {
        /// The server's `Retry-After` or another earliest-retry hint.
        retry_after: Option<Duration>,
        /// Provider-imposed minimum delay.
        min_delay: Duration,
    },
    /// The device token is dead.
    DeadToken,
    /// Give up.
    Fail(FailReason),
}

impl Outcome {
    /// A retryable transport failure (connection lost, stream reset, GOAWAY).
    pub const TRANSPORT: Outcome = Outcome::Retry {
        retry_after: None,
        min_delay: Duration::ZERO,
    };
}

impl From<Verdict> for Outcome {
    fn from(v: Verdict) -> Self {
        match v {
            Verdict::Accepted => Outcome::Accepted,
            Verdict::Retry {
                retry_after,
                min_delay,
            } => Outcome::Retry {
                retry_after,
                min_delay,
            },
            // A client that could not refresh inline (token policy said wait) retries later.
            Verdict::RefreshAuth => Outcome::TRANSPORT,
            Verdict::DeadToken => Outcome::DeadToken,
            Verdict::Fail(r) => Outcome::Fail(r),
        }
    }
}

/// What happened to a push; drained with [`Dispatcher::poll_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PushEvent {
    /// The provider accepted it.
    Sent {
        /// The push.
        id: PushId,
    },
    /// The device acknowledged it (wake channel).
    Delivered {
        /// The push.
        id: PushId,
    },
    /// It was given up.
    Failed {
        /// The push.
        id: PushId,
        /// Why.
        reason: FailReason,
    },
    /// The target's token is dead: the binding should drop it. Followed by `Failed`.
    DeadToken {
        /// The push that found out.
        id: PushId,
        /// Its credential.
        credential: CredentialId,
        /// The dead target.
        target: Target,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Queued,
    InFlight,
    Waiting,
}

#[derive(Debug, Clone, Copy)]
enum TimerKind {
    Deadline(PushId),
    Retry(PushId),
}

#[derive(Debug)]
struct Entry {
    credential: CredentialId,
    target: Target,
    notice: Notice,
    request: Arc<WireRequest>,
    deadline: Instant,
    urgency: Urgency,
    attempts: u32,
    state: State,
    deadline_timer: TimerId,
    retry_timer: Option<TimerId>,
}

#[derive(Debug, Default)]
struct CredQueue {
    lanes: [VecDeque<PushId>; Urgency::COUNT],
    /// Live entries of this credential (queued, in flight, waiting).
    live: usize,
    /// Whether the credential is in the round-robin ring.
    in_ring: bool,
}

impl CredQueue {
    fn queued(&self) -> usize {
        self.lanes.iter().map(VecDeque::len).sum()
    }
}

/// The sans-IO dispatch queue; see the module documentation.
#[derive(Debug)]
pub struct Dispatcher {
    config: DispatchConfig,
    rng: CoreRng,
    next_id: u64,
    entries: HashMap<PushId, Entry>,
    creds: HashMap<CredentialId, CredQueue>,
    ring: VecDeque<CredentialId>,
    dedupe: HashMap<(CredentialId, Target, Notice), PushId>,
    timers: Timers<TimerKind>,
    events: VecDeque<PushEvent>,
}

impl Dispatcher {
    /// An empty dispatcher; `rng` supplies retry jitter.
    pub fn new(config: DispatchConfig, rng: CoreRng) -> Self {
        Self {
            config,
            rng,
            next_id: 1,
            entries: HashMap::new(),
            creds: HashMap::new(),
            ring: VecDeque::new(),
            dedupe: HashMap::new(),
            timers: Timers::new(),
            events: VecDeque::new(),
        }
    }

    /// Live pushes (queued, in flight or waiting to retry).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no push is live.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Accepts a push, or says why not.
    pub fn handle_submit(
        &mut self,
        now: Instant,
        req: PushRequest,
    ) -> Result<Submitted, SubmitError> {
        if req.deadline <= now {
            return Err(SubmitError::DeadlinePassed);
        }
        let key = (req.credential, req.target, req.notice);
        if let Some(&id) = self.dedupe.get(&key) {
            return Ok(Submitted {
                id,
                duplicate: true,
            });
        }
        let (credential, target, notice) = key;
        let request = payload::build(&notice, &target, req.deadline - now)?;
        let urgency = notice.urgency();
        let cred_live = self.creds.get(&credential).map_or(0, |c| c.live);
        if (cred_live >= self.config.per_credential_capacity
            || self.entries.len() >= self.config.total_capacity)
            && !self.evict_below(now, credential, urgency)
        {
            return Err(SubmitError::QueueFull);
        }
        let id = PushId(self.next_id);
        self.next_id += 1;
        let deadline_timer = self.timers.insert(req.deadline, TimerKind::Deadline(id));
        self.dedupe
            .insert((credential, target.clone(), notice.clone()), id);
        self.entries.insert(
            id,
            Entry {
                credential,
                target,
                notice,
                request: Arc::new(request),
                deadline: req.deadline,
                urgency,
                attempts: 0,
                state: State::Queued,
                deadline_timer,
                retry_timer: None,
            },
        );
        let q = self.creds.entry(credential).or_default();
        q.live += 1;
        q.lanes[urgency as usize].push_back(id);
        self.ring_in(credential);
        Ok(Submitted {
            id,
            duplicate: false,
        })
    }

    /// Evicts the newest queued push of `credential` in a lane below `urgency`.
    fn evict_below(&mut self, _now: Instant, credential: CredentialId, urgency: Urgency) -> bool {
        let Some(q) = self.creds.get_mut(&credential) else {
            return false;
        };
        for lane in 0..urgency as usize {
            if let Some(victim) = q.lanes[lane].pop_back() {
                self.finish(victim, Some(FailReason::Evicted));
                return true;
            }
        }
        false
    }

    fn ring_in(&mut self, credential: CredentialId) {
        let q = self
            .creds
            .get_mut(&credential)
            .expect("caller created the credential queue");
        if !q.in_ring && q.queued() > 0 {
            q.in_ring = true;
            self.ring.push_back(credential);
        }
    }

    /// The next attempt to send, serving credentials round-robin.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        while let Some(cred) = self.ring.pop_front() {
            if let Some(q) = self.creds.get_mut(&cred) {
                q.in_ring = false;
            }
            let t = self.poll_transmit_for(now, cred);
            self.ring_in(cred);
            if t.is_some() {
                return t;
            }
        }
        None
    }

    /// The next attempt of one credential (for per-credential workers).
    pub fn poll_transmit_for(
        &mut self,
        now: Instant,
        credential: CredentialId,
    ) -> Option<Transmit> {
        loop {
            let q = self.creds.get_mut(&credential)?;
            let id = q.lanes.iter_mut().rev().find_map(VecDeque::pop_front)?;
            let e = self
                .entries
                .get_mut(&id)
                .expect("lanes only hold live entries");
            if e.deadline <= now {
                self.finish(id, Some(FailReason::DeadlineExceeded));
                continue;
            }
            e.state = State::InFlight;
            e.attempts += 1;
            return Some(Transmit {
                id,
                credential,
                target: e.target.clone(),
                request: Arc::clone(&e.request),
                attempt: e.attempts,
                deadline: e.deadline,
            });
        }
    }

    /// Credentials that have queued work (for waking per-credential workers).
    pub fn has_queued(&self, credential: CredentialId) -> bool {
        self.creds.get(&credential).is_some_and(|q| q.queued() > 0)
    }

    /// Reports the result of the attempt `id` handed out by `poll_transmit*`.
    pub fn handle_outcome(&mut self, now: Instant, id: PushId, outcome: Outcome) {
        let Some(e) = self.entries.get_mut(&id) else {
            return;
        };
        if e.state != State::InFlight {
            return;
        }
        match outcome {
            Outcome::Accepted => {
                self.events.push_back(PushEvent::Sent { id });
                self.finish(id, None);
            }
            Outcome::Delivered => {
                self.events.push_back(PushEvent::Delivered { id });
                self.finish(id, None);
            }
            Outcome::DeadToken => {
                self.events.push_back(PushEvent::DeadToken {
                    id,
                    credential: e.credential,
                    target: e.target.clone(),
                });
                self.finish(id, Some(FailReason::DeadToken));
            }
            Outcome::Fail(reason) => self.finish(id, Some(reason)),
            Outcome::Retry {
                retry_after,
                min_delay,
            } => {
                if e.attempts >= self.config.retry.max_attempts {
                    let n = e.attempts;
                    self.finish(id, Some(FailReason::RetriesExhausted(n)));
                    return;
                }
                let delay =
                    self.config
                        .retry
                        .delay(e.attempts - 1, &mut self.rng, retry_after, min_delay);
                let at = now + delay;
                if at >= e.deadline {
                    self.finish(id, Some(FailReason::DeadlineExceeded));
                    return;
                }
                e.state = State::Waiting;
                e.retry_timer = Some(self.timers.insert(at, TimerKind::Retry(id)));
            }
        }
    }

    /// The next instant at which [`Dispatcher::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.poll_timeout()
    }

    /// Fires due retries (back into their lane) and deadlines.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((_, _, kind)) = self.timers.pop_expired(now) {
            match kind {
                TimerKind::Retry(id) => {
                    let Some(e) = self.entries.get_mut(&id) else {
                        continue;
                    };
                    e.retry_timer = None;
                    if e.state == State::Waiting {
                        e.state = State::Queued;
                        let (cred, lane) = (e.credential, e.urgency as usize);
                        let q = self.creds.get_mut(&cred).expect("live entry has a queue");
                        q.lanes[lane].push_front(id);
                        self.ring_in(cred);
                    }
                }
                TimerKind::Deadline(id) => {
                    let Some(e) = self.entries.get_mut(&id) else {
                        continue;
                    };
                    // (The fired handle is stale now; cancelling it in `finish` is a no-op.)
                    match e.state {
                        // The attempt's answer decides; a retry after this will be refused.
                        State::InFlight => {}
                        State::Queued => {
                            let (cred, lane) = (e.credential, e.urgency as usize);
                            if let Some(q) = self.creds.get_mut(&cred) {
                                q.lanes[lane].retain(|x| *x != id);
                            }
                            self.finish(id, Some(FailReason::DeadlineExceeded));
                        }
                        State::Waiting => self.finish(id, Some(FailReason::DeadlineExceeded)),
                    }
                }
            }
        }
    }

    /// The next outcome event.
    pub fn poll_event(&mut self) -> Option<PushEvent> {
        self.events.pop_front()
    }

    /// Removes a push (already out of its lane), emitting `Failed` if `reason` is given.
    fn finish(&mut self, id: PushId, reason: Option<FailReason>) {
        let Some(e) = self.entries.remove(&id) else {
            return;
        };
        self.timers.cancel(e.deadline_timer);
        if let Some(t) = e.retry_timer {
            self.timers.cancel(t);
        }
        self.dedupe.remove(&(e.credential, e.target, e.notice));
        if let Some(q) = self.creds.get_mut(&e.credential) {
            q.live -= 1;
        }
        if let Some(reason) = reason {
            self.events.push_back(PushEvent::Failed { id, reason });
        }
    }
}

#[cfg(test)]
#[path = "queue_tests.rs"]
mod tests;
