//! The connection table: which TCP/TLS connection reaches which peer, and the connection cap.
//!
//! RFC 3261 §18 asks a sender to reuse an existing connection to the destination, and
//! responses to go back over the connection the request arrived on, so inbound and outbound
//! connections share one table keyed by [`Peer`] (transport and remote address). Each entry
//! is the sending half of the connection task's bounded write queue; the core-driver never
//! touches a socket itself.
//!
//! The cap is a semaphore: every connection task, inbound or outbound, holds one permit from
//! before its TLS handshake until it ends, so half-open handshakes count too.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use vigil_proto::txn::Peer;

/// Identifies one connection task, so a finished task removes its own entry and not a newer
/// connection that took over the same key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId(u64);

#[derive(Debug)]
struct Entry {
    id: ConnId,
    tx: mpsc::Sender<Bytes>,
}

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct ConnTable {
    entries: Mutex<HashMap<Peer, Entry>>,
    next_id: AtomicU64,
    permits: Arc<Semaphore>,
    max: usize,
    /// Accepts refused because the table was full (for operators and tests).
    refused: AtomicU64,
}

impl ConnTable {
    pub(crate) fn new(max_connections: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            permits: Arc::new(Semaphore::new(max_connections)),
            max: max_connections,
            refused: AtomicU64::new(0),
        }
    }

    /// A connection slot, or `None` when `max_connections` are open (the refusal is counted).
    pub(crate) fn try_reserve(&self) -> Option<OwnedSemaphorePermit> {
        match Arc::clone(&self.permits).try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Open connections (tasks holding a slot, handshakes included).
    pub(crate) fn open(&self) -> usize {
        self.max - self.permits.available_permits()
    }

    /// Connections refused at the cap since start.
    pub(crate) fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    pub(crate) fn next_id(&self) -> ConnId {
        ConnId(self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Peer, Entry>> {
        // A panic while holding this lock cannot leave the map inconsistent (every critical
        // section is a single map operation), so a poisoned lock is still usable.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes `tx` the route to `peer`, replacing any older connection's entry: the newest
    /// connection to a peer is the one most likely to work.
    pub(crate) fn insert(&self, peer: Peer, id: ConnId, tx: mpsc::Sender<Bytes>) {
        self.lock().insert(peer, Entry { id, tx });
    }

    /// Inserts a route for a connection about to be dialled, unless one already exists; in
    /// that case returns the existing sender, which the caller uses instead.
    pub(crate) fn get_or_insert(
        &self,
        peer: Peer,
        make: impl FnOnce() -> (ConnId, mpsc::Sender<Bytes>),
    ) -> (mpsc::Sender<Bytes>, bool) {
        let mut map = self.lock();
        if let Some(e) = map.get(&peer) {
            return (e.tx.clone(), false);
        }
        let (id, tx) = make();
        map.insert(peer, Entry { id, tx: tx.clone() });
        (tx, true)
    }

    /// The write queue of the connection to `peer`, if any.
    pub(crate) fn get(&self, peer: &Peer) -> Option<mpsc::Sender<Bytes>> {
        self.lock().get(peer).map(|e| e.tx.clone())
    }

    /// Removes `peer`'s entry if it still belongs to connection `id`.
    pub(crate) fn remove(&self, peer: &Peer, id: ConnId) {
        let mut map = self.lock();
        if map.get(peer).is_some_and(|e| e.id == id) {
            map.remove(peer);
        }
    }

    /// Drops every write queue: each connection task flushes what it holds and closes.
    pub(crate) fn close_all(&self) {
        self.lock().clear();
    }
}
