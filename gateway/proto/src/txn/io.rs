//! The outputs a transaction state machine may produce while handling one input: bytes to
//! send, timers to arm or disarm, events for the TU. Borrowed from the layer for the length
//! of one call, so the machines stay plain data with no references.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::timer::{TimerId, Timers};

use super::{Peer, Transmit, TxnConfig, TxnEvent, TxnId, TxnStats, TxnTimer};

/// What a timer entry names: which timer of which transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimerEntry {
    pub(crate) txn: TxnId,
    pub(crate) timer: TxnTimer,
}

/// Whether a transaction lives on after an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub(crate) enum Step {
    Live,
    Terminated,
}

pub(crate) struct Io<'a> {
    pub(crate) now: Instant,
    pub(crate) config: &'a TxnConfig,
    pub(crate) timers: &'a mut Timers<TimerEntry>,
    pub(crate) transmits: &'a mut VecDeque<Transmit>,
    pub(crate) events: &'a mut VecDeque<TxnEvent>,
    pub(crate) stats: &'a mut TxnStats,
}

impl Io<'_> {
    /// Arms `timer` to fire `after` from now in `slot`, replacing whatever the slot held.
    pub(crate) fn arm(
        &mut self,
        slot: &mut Option<TimerId>,
        txn: TxnId,
        timer: TxnTimer,
        after: Duration,
    ) {
        let entry = TimerEntry { txn, timer };
        // Re-arming (E's next interval, F giving way to K) moves the pending entry: the
        // same as cancel + insert, with one heap sift instead of two. The fixed intervals
        // (T1, 64·T1, T4) have lanes (see `Transactions::new`), where both are O(1).
        *slot = Some(match slot.take() {
            Some(id) => self.timers.reschedule_after(id, self.now, after, entry),
            None => self.timers.insert_after(self.now, after, entry),
        });
    }

    pub(crate) fn disarm(&mut self, slot: &mut Option<TimerId>) {
        if let Some(id) = slot.take() {
            self.timers.cancel(id);
        }
    }

    /// Arms a linger timer, or ends the transaction at once when the linger is zero
    /// (reliable transports: RFC 3261 sets K, D, I and J to 0 there).
    pub(crate) fn linger(
        &mut self,
        slot: &mut Option<TimerId>,
        txn: TxnId,
        timer: TxnTimer,
        after: Duration,
    ) -> Step {
        if after.is_zero() {
            self.disarm(slot);
            return Step::Terminated;
        }
        self.arm(slot, txn, timer, after);
        Step::Live
    }

    pub(crate) fn send(&mut self, peer: Peer, bytes: Bytes) {
        self.transmits.push_back(Transmit { peer, bytes });
    }

    /// Sends a message again (counted in [`TxnStats::retransmissions`]).
    pub(crate) fn resend(&mut self, peer: Peer, bytes: Bytes) {
        self.stats.retransmissions += 1;
        self.send(peer, bytes);
    }

    pub(crate) fn emit(&mut self, event: TxnEvent) {
        self.stats.record(&event);
        self.events.push_back(event);
    }
}
