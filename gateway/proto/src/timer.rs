//! One timer structure per core instance for every deadline the core keeps.
//!
//! The transaction layer (and later the registration and relay machines) keeps hundreds of
//! thousands of deadlines: Timer E/F/K per non-INVITE client transaction, A/B/D/M per INVITE
//! client, G/H/I/J/L and "100 Trying" per server transaction, refreshes per binding. None of
//! them gets a task or a `sleep`: they all live in one [`Timers`] value, the shell asks it for
//! [`Timers::poll_timeout`] (O(1)) and sleeps once until then.
//!
//! # Why an indexed binary heap and not a timing wheel
//!
//! - **Exact deadlines.** Tests assert exact schedules (Timer E at 0.5, 1.5, 3.5 s …). A hashed
//!   wheel rounds every deadline to its tick; the heap keeps the caller's `Instant` untouched.
//! - **O(1) `poll_timeout`.** The minimum is the heap root. A wheel only knows which slot is
//!   next after scanning (or keeping a bitmap per level), and a hierarchical wheel must cascade.
//! - **Real cancellation.** Every entry records its position in the heap, so [`Timers::cancel`]
//!   removes it in O(log n) and frees its slot at once. There are no tombstones: the memory
//!   held is bounded by the number of *live* timers, and a cancelled entry can never surface
//!   as the root, which keeps `poll_timeout` exact without lazy clean-up.
//! - **Deterministic order.** Entries fire by `(deadline, insertion sequence)`, so two timers
//!   with the same deadline fire in the order they were set, on every run.
//!
//! The cost is O(log n) insert and cancel: about 18 levels at 200,000 entries, each a compare
//! of two `Instant`s in a `Vec<u32>` of slot indices. SIP timers are set and cancelled a few
//! times per transaction, so this is far below the cost of parsing one message.
//!
//! Handles ([`TimerId`]) carry a generation: once a timer fired or was cancelled, its handle
//! is dead even if the slot is reused, so a stale handle can never cancel someone else's timer.

use std::time::Instant;

/// Handle of one pending deadline in a [`Timers`]. Copyable; stale after it fired or was
/// cancelled (operations on a stale handle are no-ops).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerId {
    slot: u32,
    gen: u32,
}

#[derive(Debug)]
struct Entry<T> {
    deadline: Instant,
    /// Insertion sequence number: the tie-breaker that makes equal deadlines fire in order.
    seq: u64,
    /// Index of this entry in `Timers::heap`.
    pos: u32,
    value: T,
}

#[derive(Debug)]
struct Slot<T> {
    /// Bumped every time the slot is vacated, so old handles stop matching.
    gen: u32,
    entry: Option<Entry<T>>,
}

/// All pending deadlines of one core instance; see the module documentation.
#[derive(Debug)]
pub struct Timers<T> {
    slots: Vec<Slot<T>>,
    /// Vacant slot indices, reused before the slot vector grows.
    free: Vec<u32>,
    /// Binary min-heap of occupied slot indices, ordered by `(deadline, seq)`.
    heap: Vec<u32>,
    next_seq: u64,
}

impl<T> Default for Timers<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Timers<T> {
    /// An empty timer structure.
    pub fn new() -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            heap: Vec::new(),
            next_seq: 0,
        }
    }

    /// An empty timer structure with room for `n` deadlines before it reallocates.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            slots: Vec::with_capacity(n),
            free: Vec::new(),
            heap: Vec::with_capacity(n),
            next_seq: 0,
        }
    }

    /// Number of pending deadlines.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no deadline is pending.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// The earliest pending deadline, in O(1).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.heap.first().map(|&s| self.entry(s).deadline)
    }

    /// Schedules `value` to fire at `deadline`. O(log n).
    pub fn insert(&mut self, deadline: Instant, value: T) -> TimerId {
        let seq = self.next_seq;
        self.next_seq += 1;
        let pos = self.heap.len() as u32;
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                let s = u32::try_from(self.slots.len())
                    .expect("fewer than 2^32 simultaneous timers: memory runs out long before");
                self.slots.push(Slot {
                    gen: 0,
                    entry: None,
                });
                s
            }
        };
        let cell = &mut self.slots[slot as usize];
        cell.entry = Some(Entry {
            deadline,
            seq,
            pos,
            value,
        });
        let gen = cell.gen;
        self.heap.push(slot);
        self.sift_up(pos as usize);
        TimerId { slot, gen }
    }

    /// Moves a pending timer to `deadline` with a new `value`, as if it were cancelled and
    /// `value` inserted anew (same slot, same insertion order, a new handle; `id` goes stale),
    /// but with one sift instead of two. A stale `id` just inserts. For re-arming a slot
    /// (Timer E's next interval, F giving way to K), which the transaction layer does a few
    /// times per transaction.
    pub fn reschedule(&mut self, id: TimerId, deadline: Instant, value: T) -> TimerId {
        let Some(pos) = self.live(id).map(|e| e.pos as usize) else {
            return self.insert(deadline, value);
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        let cell = &mut self.slots[id.slot as usize];
        // What cancel + insert would do to the slot: vacate it (a new generation), refill it.
        cell.gen = cell.gen.wrapping_add(1);
        let gen = cell.gen;
        let e = cell
            .entry
            .as_mut()
            .expect("a live handle names an occupied slot");
        let earlier = (deadline, seq) < (e.deadline, e.seq);
        e.deadline = deadline;
        e.seq = seq;
        e.value = value;
        if earlier {
            self.sift_up(pos);
        } else {
            self.sift_down(pos);
        }
        TimerId { slot: id.slot, gen }
    }

    /// Cancels a pending deadline and returns its value; `None` if the handle is stale (the
    /// timer already fired or was cancelled). O(log n); the slot is reused at once.
    pub fn cancel(&mut self, id: TimerId) -> Option<T> {
        let pos = self.live(id)?.pos as usize;
        Some(self.remove_at(pos).1)
    }

    /// The deadline of a pending timer, `None` if the handle is stale.
    pub fn deadline(&self, id: TimerId) -> Option<Instant> {
        self.live(id).map(|e| e.deadline)
    }

    /// Whether the handle still names a pending deadline.
    pub fn contains(&self, id: TimerId) -> bool {
        self.live(id).is_some()
    }

    /// Removes and returns the earliest entry if it is due at `now` (deadline ≤ `now`).
    pub fn pop_expired(&mut self, now: Instant) -> Option<(TimerId, Instant, T)> {
        let &root = self.heap.first()?;
        let deadline = self.entry(root).deadline;
        if deadline > now {
            return None;
        }
        let (id, value) = self.remove_at(0);
        Some((id, deadline, value))
    }

    /// Drains every entry due at `now`, earliest first (ties in insertion order). Entries the
    /// iterator has not yielded when it is dropped stay pending.
    pub fn expire(&mut self, now: Instant) -> Expire<'_, T> {
        Expire { timers: self, now }
    }

    /// Releases spare capacity after a burst (e.g. a load test left many vacant slots). Only
    /// trailing vacant slots can be dropped, because live handles index the slot vector.
    pub fn shrink_to_fit(&mut self) {
        while self.slots.last().is_some_and(|s| s.entry.is_none()) {
            self.slots.pop();
        }
        let n = self.slots.len() as u32;
        self.free.retain(|&s| s < n);
        self.free.shrink_to_fit();
        self.slots.shrink_to_fit();
        self.heap.shrink_to_fit();
    }

    fn live(&self, id: TimerId) -> Option<&Entry<T>> {
        let slot = self.slots.get(id.slot as usize)?;
        if slot.gen != id.gen {
            return None;
        }
        slot.entry.as_ref()
    }

    fn entry(&self, slot: u32) -> &Entry<T> {
        self.slots[slot as usize]
            .entry
            .as_ref()
            .expect("the heap holds only occupied slots")
    }

    fn entry_mut(&mut self, slot: u32) -> &mut Entry<T> {
        self.slots[slot as usize]
            .entry
            .as_mut()
            .expect("the heap holds only occupied slots")
    }

    fn key_of(&self, slot: u32) -> (Instant, u64) {
        let e = self.entry(slot);
        (e.deadline, e.seq)
    }

    /// Removes the heap element at `pos`, vacates its slot, and returns its handle and value.
    fn remove_at(&mut self, pos: usize) -> (TimerId, T) {
        let last = self.heap.len() - 1;
        self.heap.swap(pos, last);
        let slot = self
            .heap
            .pop()
            .expect("remove_at is only called on a non-empty heap");
        if pos < self.heap.len() {
            // The element moved into the hole may belong above or below it.
            let moved = self.heap[pos];
            let key = self.key_of(moved);
            if pos > 0 && key < self.key_of(self.heap[(pos - 1) / 2]) {
                self.sift_up(pos);
            } else {
                self.sift_down(pos);
            }
        }
        let cell = &mut self.slots[slot as usize];
        let gen = cell.gen;
        let entry = cell
            .entry
            .take()
            .expect("the heap holds only occupied slots");
        cell.gen = cell.gen.wrapping_add(1);
        self.free.push(slot);
        (TimerId { slot, gen }, entry.value)
    }

    /// Moves the element at `pos` up to its place. The moved slot is held aside while the
    /// parents above it shift down into the hole, so each level costs one write and one
    /// position update instead of a swap.
    fn sift_up(&mut self, mut pos: usize) {
        let slot = self.heap[pos];
        let key = self.key_of(slot);
        while pos > 0 {
            let parent = (pos - 1) / 2;
            let p = self.heap[parent];
            if key >= self.key_of(p) {
                break;
            }
            self.heap[pos] = p;
            self.entry_mut(p).pos = pos as u32;
            pos = parent;
        }
        self.heap[pos] = slot;
        self.entry_mut(slot).pos = pos as u32;
    }

    /// Moves the element at `pos` down to its place, the same way as [`Self::sift_up`].
    fn sift_down(&mut self, mut pos: usize) {
        let n = self.heap.len();
        let slot = self.heap[pos];
        let key = self.key_of(slot);
        loop {
            let left = 2 * pos + 1;
            if left >= n {
                break;
            }
            let right = left + 1;
            let mut child = left;
            let mut child_key = self.key_of(self.heap[left]);
            if right < n {
                let right_key = self.key_of(self.heap[right]);
                if right_key < child_key {
                    child = right;
                    child_key = right_key;
                }
            }
            if child_key >= key {
                break;
            }
            let c = self.heap[child];
            self.heap[pos] = c;
            self.entry_mut(c).pos = pos as u32;
            pos = child;
        }
        self.heap[pos] = slot;
        self.entry_mut(slot).pos = pos as u32;
    }
}

/// Iterator returned by [`Timers::expire`]: yields `(handle, deadline, value)` of due entries.
#[derive(Debug)]
pub struct Expire<'a, T> {
    timers: &'a mut Timers<T>,
    now: Instant,
}

impl<T> Iterator for Expire<'_, T> {
    type Item = (TimerId, Instant, T);

    fn next(&mut self) -> Option<Self::Item> {
        self.timers.pop_expired(self.now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    fn epoch() -> Instant {
        crate::netem::test_epoch()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn fires_in_deadline_then_insertion_order() {
        let t0 = epoch();
        let mut t = Timers::new();
        t.insert(t0 + ms(30), "c");
        t.insert(t0 + ms(10), "a");
        t.insert(t0 + ms(10), "b");
        t.insert(t0 + ms(50), "late");
        assert_eq!(t.poll_timeout(), Some(t0 + ms(10)));
        let fired: Vec<_> = t.expire(t0 + ms(30)).map(|(_, d, v)| (d - t0, v)).collect();
        assert_eq!(fired, vec![(ms(10), "a"), (ms(10), "b"), (ms(30), "c")]);
        assert_eq!(t.poll_timeout(), Some(t0 + ms(50)));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn a_partly_consumed_expire_leaves_the_rest_pending() {
        let t0 = epoch();
        let mut t = Timers::new();
        for i in 0..5u64 {
            t.insert(t0 + ms(i), i);
        }
        let first: Vec<u64> = t.expire(t0 + ms(10)).take(2).map(|(_, _, v)| v).collect();
        assert_eq!(first, vec![0, 1]);
        assert_eq!(t.len(), 3);
        assert_eq!(t.poll_timeout(), Some(t0 + ms(2)));
        // Not due yet: nothing comes out, nothing is removed.
        assert!(t.expire(t0 + ms(1)).next().is_none());
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn cancel_removes_and_stale_handles_are_dead() {
        let t0 = epoch();
        let mut t = Timers::new();
        let a = t.insert(t0 + ms(1), 1);
        let b = t.insert(t0 + ms(2), 2);
        assert_eq!(t.cancel(a), Some(1));
        assert_eq!(t.cancel(a), None, "double cancel is a no-op");
        assert_eq!(t.poll_timeout(), Some(t0 + ms(2)));
        // The slot of `a` is reused; the old handle must not reach the new entry.
        let c = t.insert(t0 + ms(3), 3);
        assert_eq!(c.slot, a.slot);
        assert!(!t.contains(a));
        assert_eq!(t.cancel(a), None);
        assert_eq!(t.deadline(c), Some(t0 + ms(3)));
        let (id, _, v) = t.pop_expired(t0 + ms(2)).unwrap();
        assert_eq!((id, v), (b, 2));
        assert_eq!(t.cancel(b), None, "a fired handle is stale");
        assert!(t.pop_expired(t0 + ms(2)).is_none());
    }

    #[test]
    fn memory_is_reclaimed_on_cancel() {
        let t0 = epoch();
        let mut t = Timers::new();
        for round in 0..10u64 {
            let ids: Vec<_> = (0..1000u64)
                .map(|i| t.insert(t0 + ms(i + round), i))
                .collect();
            for id in ids {
                t.cancel(id);
            }
        }
        assert!(t.is_empty());
        assert_eq!(t.poll_timeout(), None);
        assert_eq!(t.slots.len(), 1000, "slots are reused, not grown per round");
        t.shrink_to_fit();
        assert_eq!(t.slots.len(), 0);
    }

    #[test]
    fn many_pending_poll_timeout_tracks_minimum() {
        let t0 = epoch();
        let mut t = Timers::with_capacity(200_000);
        let mut rng = crate::rng::CoreRng::from_seed(9);
        let mut ids = Vec::new();
        for i in 0..200_000u64 {
            let d = t0 + ms(1 + rng.below(1_000_000));
            ids.push((d, i, t.insert(d, i)));
        }
        let min = ids.iter().map(|x| x.0).min();
        assert_eq!(t.poll_timeout(), min);
        // Cancel the earliest half; the minimum must follow.
        ids.sort_by_key(|x| (x.0, x.1));
        for (_, _, id) in &ids[..100_000] {
            assert!(t.cancel(*id).is_some());
        }
        assert_eq!(t.poll_timeout(), Some(ids[100_000].0));
        assert_eq!(t.len(), 100_000);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u16),
        Cancel(usize),
        Advance(u16),
        Reschedule(usize, u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u16..500).prop_map(Op::Insert),
            2 => any::<usize>().prop_map(Op::Cancel),
            1 => (0u16..200).prop_map(Op::Advance),
            2 => (any::<usize>(), 0u16..500).prop_map(|(i, d)| Op::Reschedule(i, d)),
        ]
    }

    proptest! {
        /// Random insert/cancel/advance sequences fire exactly like a naive sorted list.
        #[test]
        fn matches_naive_model(ops in proptest::collection::vec(op(), 1..300)) {
            let t0 = epoch();
            let mut now = t0;
            let mut t = Timers::new();
            // The model: (deadline, seq, value) of pending entries.
            let mut model: Vec<(Instant, u64, u32)> = Vec::new();
            let mut handles: Vec<(TimerId, u64)> = Vec::new();
            let mut seq = 0u64;
            for op in ops {
                match op {
                    Op::Insert(d) => {
                        let deadline = now + ms(d.into());
                        let id = t.insert(deadline, seq as u32);
                        model.push((deadline, seq, seq as u32));
                        handles.push((id, seq));
                        seq += 1;
                    }
                    Op::Cancel(i) if !handles.is_empty() => {
                        let (id, s) = handles[i % handles.len()];
                        let expect = model.iter().position(|m| m.1 == s).map(|p| model.remove(p).2);
                        prop_assert_eq!(t.cancel(id), expect);
                    }
                    Op::Cancel(_) => {}
                    // Rescheduling is cancel + insert: the entry takes the next sequence
                    // number, and its old handle goes stale (stale handles just insert).
                    Op::Reschedule(i, d) if !handles.is_empty() => {
                        let k = i % handles.len();
                        let (id, s) = handles[k];
                        let deadline = now + ms(d.into());
                        let was_live = t.contains(id);
                        let new_id = t.reschedule(id, deadline, seq as u32);
                        prop_assert!(!t.contains(id) || !was_live || new_id == id);
                        prop_assert!(!was_live || !t.contains(id));
                        if let Some(p) = model.iter().position(|m| m.1 == s) {
                            model.remove(p);
                        }
                        model.push((deadline, seq, seq as u32));
                        handles[k] = (new_id, seq);
                        seq += 1;
                    }
                    Op::Reschedule(..) => {}
                    Op::Advance(d) => {
                        now += ms(d.into());
                        let fired: Vec<u32> = t.expire(now).map(|(_, _, v)| v).collect();
                        model.sort();
                        let due = model.iter().take_while(|m| m.0 <= now).count();
                        let expect: Vec<u32> = model.drain(..due).map(|m| m.2).collect();
                        prop_assert_eq!(fired, expect);
                    }
                }
                prop_assert_eq!(t.poll_timeout(), model.iter().map(|m| m.0).min());
                prop_assert_eq!(t.len(), model.len());
            }
        }
    }
}
