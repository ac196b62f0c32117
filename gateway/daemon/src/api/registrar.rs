//! The seam between the intake API and the registration engine
//! ([`vigil_proto::reg::Registrations`], driven by the core driver).
//!
//! Commands go one way through a [`Registrar`]: the API submits [`RegCommand`]s (a device was
//! added or changed: `Upsert`; a device is forgotten: `Remove`) and never waits for the
//! engine. Events come back the other way: whoever drives the engine hands each
//! [`RegEvent`] to [`apply_event`], which updates the binding in the table in place (so
//! `GET` sees it at once) and queues the new state for the store.
//!
//! The command's binding carries the sealed password; the engine side opens it with the
//! [`crate::crypto::SecretBox`] just before building the REGISTER, resolves the upstream
//! (RFC 3263 or the outbound proxy) and calls `add_binding`/`update_binding` with
//! `BindingId(token.0)` — the Contact token and the engine's binding id are one value.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tracing::debug;
use vigil_proto::reg::{FailReason, RegEvent, RetryCause};

use crate::bindings::{Binding, BindingTable, ContactToken, DeviceState, Reason, Status};
use crate::store::{WriteBatcher, WriteOp};

/// A change the engine must apply.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum RegCommand {
    /// Register this binding, or re-register it with its new settings.
    Upsert(Arc<Binding>),
    /// Unregister (Expires: 0) and forget.
    Remove(ContactToken),
}

/// The engine cannot take more commands now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("registration engine busy")]
pub struct RegistrarBusy;

/// Where the API sends [`RegCommand`]s; see the module documentation.
pub trait Registrar: Send + Sync + 'static {
    /// Queues a command without waiting.
    fn submit(&self, cmd: RegCommand) -> Result<(), RegistrarBusy>;
}

/// A [`Registrar`] backed by a channel, read by the task that drives the engine.
///
/// Unbounded on purpose: a command holds only an `Arc` of a binding that the table holds
/// anyway (or a token), and the API is rate limited, so the queue is bounded by the table;
/// refusing a command instead would leave a stored binding the engine never heard of.
#[derive(Debug, Clone)]
pub struct ChannelRegistrar {
    tx: mpsc::UnboundedSender<RegCommand>,
}

impl ChannelRegistrar {
    /// A registrar and the receiving end for the engine's driver.
    pub fn new() -> (Self, mpsc::UnboundedReceiver<RegCommand>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self { tx }, rx)
    }
}

impl Registrar for ChannelRegistrar {
    fn submit(&self, cmd: RegCommand) -> Result<(), RegistrarBusy> {
        self.tx.send(cmd).map_err(|_| RegistrarBusy)
    }
}

/// Current time as Unix milliseconds.
pub fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Converts an engine deadline into wall-clock Unix milliseconds.
fn instant_to_unix_ms(at: Instant, now: Instant, now_ms: u64) -> u64 {
    match at.checked_duration_since(now) {
        Some(ahead) => now_ms + ahead.as_millis() as u64,
        None => now_ms.saturating_sub(now.duration_since(at).as_millis() as u64),
    }
}

/// What [`apply_event`] replaced: the binding's previous status, and the wall clock it used.
#[derive(Debug, Clone, Copy)]
pub struct Applied {
    pub before: Status,
    pub now_ms: u64,
}

/// Applies one engine event to the table and queues the new state for the store (without
/// waiting: a state is advisory and is recomputed by the engine after a restart). `None` for
/// events about bindings no longer in the table.
pub fn apply_event(
    table: &BindingTable,
    batcher: &WriteBatcher,
    event: &RegEvent,
    now: Instant,
) -> Option<Applied> {
    let now_ms = unix_ms_now();
    let (id, status) = match *event {
        RegEvent::Registered {
            id,
            expires,
            refresh_at,
        } => (
            id,
            Status {
                state: DeviceState::Registered,
                last_status: 200,
                granted_expires: expires,
                next_at_ms: instant_to_unix_ms(refresh_at, now, now_ms),
                reason: Reason::None,
            },
        ),
        RegEvent::Retrying {
            id,
            next_attempt_at,
            cause,
            ..
        } => {
            let (last_status, reason) = match cause {
                RetryCause::Status { status, .. } => (status, Reason::Status),
                RetryCause::Timeout => (0, Reason::Timeout),
                RetryCause::TransportError => (0, Reason::TransportError),
                RetryCause::NotBound => (0, Reason::NotBound),
                _ => (0, Reason::LocalOverload),
            };
            (
                id,
                Status {
                    state: DeviceState::Retrying,
                    last_status,
                    granted_expires: 0,
                    next_at_ms: instant_to_unix_ms(next_attempt_at, now, now_ms),
                    reason,
                },
            )
        }
        RegEvent::Failed { id, status, reason } => (
            id,
            Status {
                state: DeviceState::Failed,
                last_status: status,
                granted_expires: 0,
                next_at_ms: 0,
                reason: match reason {
                    FailReason::Forbidden => Reason::Forbidden,
                    FailReason::NotFound => Reason::NotFound,
                    FailReason::AuthRejected => Reason::AuthRejected,
                    FailReason::UnsupportedChallenge => Reason::UnsupportedChallenge,
                    _ => Reason::Rejected,
                },
            },
        ),
        // Removal already took the binding out of the table and the store.
        _ => return None,
    };
    let binding = table.by_token(ContactToken(id.0))?;
    let before = binding.status();
    table.set_status(&binding, status);
    let applied = Applied { before, now_ms };
    // The store keeps only state and status: a refresh that changes neither (the common
    // case, a million times an hour) costs no write.
    if before.state == status.state && before.last_status == status.last_status {
        return Some(applied);
    }
    let op = WriteOp::SetState {
        device_id: binding.device_id().to_owned(),
        state: status.state.as_str(),
        last_status: i64::from(status.last_status),
    };
    if batcher.submit(op).is_err() {
        debug!(token = %binding.token, "store queue full: state update skipped");
    }
    Some(applied)
}
