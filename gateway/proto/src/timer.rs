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
//!   removes it in O(log n) and frees its slot at once. There are no tombstones in the heap:
//!   its memory is bounded by the number of *live* timers, and a cancelled entry can never
//!   surface as the root, which keeps `poll_timeout` exact without lazy clean-up. (The
//!   fixed-interval lanes below trade that for O(1) inserts, within stated bounds.)
//! - **Deterministic order.** Entries fire by `(deadline, insertion sequence)`, so two timers
//!   with the same deadline fire in the order they were set, on every run.
//!
//! The cost is O(log n) insert and cancel: about 18 levels at 200,000 entries, each a compare
//! of two integer keys held in the heap array itself (the deadline as nanoseconds from the
//! first one, and the sequence number), so a sift reads neighbouring heap elements rather
//! than chasing slot indices. SIP timers are set and cancelled a few times per transaction,
//! so this is far below the cost of parsing one message.
//!
//! # Fixed-interval lanes
//!
//! Most transaction timers are set a fixed interval after the moment they are set (Timer F
//! at 64·T1, K at T4, E's first shot at T1), so among themselves they expire in the order
//! they were set. [`Timers::add_lane`] gives such an interval a FIFO: [`Timers::insert_after`]
//! appends to it in O(1) instead of sifting a heap that holds thousands of later K and F
//! timers (in the registration engine's profile, heap inserts and cancels cost more than
//! building the REGISTER's headers). A cancelled lane entry is left in place, marked dead by
//! its slot's generation, and dropped when it reaches the front; fronts are kept live after
//! every removal, so [`Timers::poll_timeout`] stays exact and O(1) in the number of lanes.
//! The dead entries a lane holds are bounded by what was set within its interval. Order is
//! still `(deadline, insertion sequence)` across heap and lanes: the earliest entry is the
//! least of the heap root and the lane fronts. A deadline that would not go to the back of
//! its lane in order (a `now` that went backwards) goes to the heap instead.
//!
//! Handles ([`TimerId`]) carry a generation: once a timer fired or was cancelled, its handle
//! is dead even if the slot is reused, so a stale handle can never cancel someone else's timer.

use std::collections::VecDeque;
use std::time::Instant;

/// Handle of one pending deadline in a [`Timers`]. Copyable; stale after it fired or was
/// cancelled (operations on a stale handle are no-ops).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerId {
    slot: u32,
    gen: u32,
}

/// One heap element: the ordering key inline, so that sifting compares neighbours in the
/// heap array itself instead of following each slot index into the slot table.
#[derive(Debug, Clone, Copy)]
struct HeapEntry {
    /// The deadline as [`Timers::key`] encodes it.
    time: u64,
    /// Insertion sequence number: the tie-breaker that makes equal deadlines fire in order.
    seq: u64,
    slot: u32,
}

impl HeapEntry {
    #[inline]
    fn key(&self) -> (u64, u64) {
        (self.time, self.seq)
    }
}

#[derive(Debug)]
struct Slot<T> {
    /// Bumped every time the slot is vacated, so old handles stop matching.
    gen: u32,
    /// Where this slot's entry is while occupied: its index in `Timers::heap`, or for lane
    /// `k`, `(k + 1) << LANE_SHIFT` with the entry's number in its lane (see [`Lane::head`])
    /// in the low bits. One word for both, so a slot is no larger than before lanes (a
    /// binding keeps one).
    pos: u32,
    value: Option<T>,
}

/// One lane entry: the heap's key, and the generation of the slot it was set in (a
/// different one means the entry was cancelled, see [`Timers::is_live`]).
#[derive(Debug, Clone, Copy)]
struct LaneEntry {
    time: u64,
    seq: u64,
    slot: u32,
    gen: u32,
}

impl LaneEntry {
    #[inline]
    fn key(&self) -> (u64, u64) {
        (self.time, self.seq)
    }
}

/// The FIFO of one fixed interval; see the module documentation.
#[derive(Debug)]
struct Lane {
    after: std::time::Duration,
    /// `after` in nanoseconds, the unit of keys (saturating).
    after_nanos: u64,
    /// In `(time, seq)` order; the front, if any, is live.
    queue: VecDeque<LaneEntry>,
    /// The number of `queue[0]`: entries are numbered in the order they were appended
    /// (modulo 2^LANE_SHIFT), so a slot's `pos` finds its entry however many were popped
    /// since.
    head: u32,
}

/// Where a live handle's entry is.
#[derive(Debug, Clone, Copy)]
enum Loc {
    Heap(usize),
    /// Lane index and position in its queue.
    Lane(usize, usize),
}

/// Most lanes a [`Timers`] keeps (a slot's `pos` records its lane in three bits).
const MAX_LANES: usize = 7;
/// Where a slot's `pos` keeps its lane; the heap index or lane number is below it. A heap
/// of 2^29 entries (12 GiB) is far past any memory this runs in.
const LANE_SHIFT: u32 = 29;
const POS_MASK: u32 = (1 << LANE_SHIFT) - 1;

/// `d` in nanoseconds in u64 arithmetic (`as_nanos` is u128), saturating past 584 years.
fn nanos(d: std::time::Duration) -> u64 {
    d.as_secs()
        .checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(u64::from(d.subsec_nanos())))
        .unwrap_or(u64::MAX)
}

/// The middle of the `u64` deadline scale: [`Timers::base`] itself.
const MID: u64 = 1 << 63;

/// All pending deadlines of one core instance; see the module documentation.
#[derive(Debug)]
pub struct Timers<T> {
    slots: Vec<Slot<T>>,
    /// Vacant slot indices, reused before the slot vector grows.
    free: Vec<u32>,
    /// Binary min-heap ordered by `(time, seq)`.
    heap: Vec<HeapEntry>,
    next_seq: u64,
    /// The first deadline ever inserted: deadlines are kept as nanoseconds from it (offset by
    /// 2^63, so earlier ones fit too), a plain integer compare. That covers ±292 years
    /// exactly; a deadline further out is clamped there.
    base: Option<Instant>,
    /// Fixed-interval lanes ([`Self::add_lane`]); none unless asked for.
    lanes: Vec<Lane>,
    /// Live entries in all lanes.
    lane_live: usize,
    /// The last `now` a lane insert keyed, and its key: the transaction layer arms two or
    /// three timers per input at the same `now`, and a lane's key is then one add.
    now_key: Option<(Instant, u64)>,
    /// The generation a newly pushed slot starts at: past that of every slot
    /// [`Self::shrink_to_fit`] dropped, so a stale handle to a dropped slot stays stale
    /// when the slot vector grows back over it.
    new_gen: u32,
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
            base: None,
            lanes: Vec::new(),
            lane_live: 0,
            now_key: None,
            new_gen: 0,
        }
    }

    /// An empty timer structure with room for `n` deadlines before it reallocates.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            slots: Vec::with_capacity(n),
            free: Vec::new(),
            heap: Vec::with_capacity(n),
            next_seq: 0,
            base: None,
            lanes: Vec::new(),
            lane_live: 0,
            now_key: None,
            new_gen: 0,
        }
    }

    /// Makes room for `additional` more timers' slots (every timer has one, in a lane or in
    /// the heap) before the slot vector reallocates.
    pub fn reserve(&mut self, additional: usize) {
        self.slots.reserve(additional);
    }

    /// Number of pending deadlines.
    pub fn len(&self) -> usize {
        self.heap.len() + self.lane_live
    }

    /// Whether no deadline is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The earliest pending deadline, in O(1) (a compare per lane).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.earliest().map(|(_, time)| self.instant(time))
    }

    /// Keeps the timers set `after` from their insertion time ([`Self::insert_after`]) in a
    /// FIFO rather than the heap; see the module documentation. A zero, repeated or
    /// eighth interval is ignored (those timers go to the heap, as every timer without lanes).
    pub fn add_lane(&mut self, after: std::time::Duration) {
        if after.is_zero() || self.lanes.len() >= MAX_LANES || self.lane_of(after).is_some() {
            return;
        }
        self.lanes.push(Lane {
            after,
            after_nanos: nanos(after),
            queue: VecDeque::new(),
            head: 0,
        });
    }

    fn lane_of(&self, after: std::time::Duration) -> Option<usize> {
        self.lanes.iter().position(|l| l.after == after)
    }

    /// Schedules `value` to fire `after` from `now`: [`Self::insert`] at `now + after`, in
    /// O(1) when `after` has a lane ([`Self::add_lane`]).
    pub fn insert_after(&mut self, now: Instant, after: std::time::Duration, value: T) -> TimerId {
        let Some(k) = self.lane_of(after) else {
            return self.insert(now + after, value);
        };
        let time = self.lane_key(now, k);
        if self.lanes[k].queue.back().is_some_and(|b| b.time > time) {
            // Out of order (`now` went backwards): the heap keeps it exact.
            return self.insert(now + after, value);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let slot = self.take_slot();
        let lane = &mut self.lanes[k];
        let number = lane.head.wrapping_add(lane.queue.len() as u32) & POS_MASK;
        let cell = &mut self.slots[slot as usize];
        cell.value = Some(value);
        cell.pos = ((k as u32 + 1) << LANE_SHIFT) | number;
        let gen = cell.gen;
        lane.queue.push_back(LaneEntry {
            time,
            seq,
            slot,
            gen,
        });
        self.lane_live += 1;
        TimerId { slot, gen }
    }

    /// [`Self::reschedule`] to `after` from `now`, through a lane when `after` has one (the
    /// old entry is cancelled and the new one appended, in the same slot).
    pub fn reschedule_after(
        &mut self,
        id: TimerId,
        now: Instant,
        after: std::time::Duration,
        value: T,
    ) -> TimerId {
        match self.locate(id) {
            Some(Loc::Heap(_)) if self.lane_of(after).is_none() => {
                self.reschedule(id, now + after, value)
            }
            _ => {
                self.cancel(id);
                self.insert_after(now, after, value)
            }
        }
    }

    /// Schedules `value` to fire at `deadline`. O(log n).
    pub fn insert(&mut self, deadline: Instant, value: T) -> TimerId {
        let time = self.key(deadline);
        let seq = self.next_seq;
        self.next_seq += 1;
        let pos = self.heap.len();
        assert!(
            pos < POS_MASK as usize,
            "fewer than 2^29 timers in the heap: memory runs out long before"
        );
        let slot = self.take_slot();
        let cell = &mut self.slots[slot as usize];
        cell.value = Some(value);
        let gen = cell.gen;
        self.heap.push(HeapEntry { time, seq, slot });
        self.sift_up(pos);
        TimerId { slot, gen }
    }

    /// Moves a pending timer to `deadline` with a new `value`, as if it were cancelled and
    /// `value` inserted anew (same slot, same insertion order, a new handle; `id` goes stale),
    /// but with one sift instead of two. A stale `id` just inserts. For re-arming a slot
    /// (Timer E's next interval, F giving way to K), which the transaction layer does a few
    /// times per transaction.
    pub fn reschedule(&mut self, id: TimerId, deadline: Instant, value: T) -> TimerId {
        let pos = match self.locate(id) {
            None => return self.insert(deadline, value),
            Some(Loc::Lane(..)) => {
                self.cancel(id);
                return self.insert(deadline, value);
            }
            Some(Loc::Heap(pos)) => pos,
        };
        let time = self.key(deadline);
        let seq = self.next_seq;
        self.next_seq += 1;
        let cell = &mut self.slots[id.slot as usize];
        // What cancel + insert would do to the slot: vacate it (a new generation), refill it.
        cell.gen = cell.gen.wrapping_add(1);
        cell.value = Some(value);
        let gen = cell.gen;
        let e = &mut self.heap[pos];
        let earlier = (time, seq) < e.key();
        e.time = time;
        e.seq = seq;
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
        match self.locate(id)? {
            Loc::Heap(pos) => Some(self.remove_at(pos).1),
            Loc::Lane(k, _) => {
                // The entry stays, dead: its slot's generation moves on.
                let value = self.vacate(id.slot);
                self.lane_live -= 1;
                self.trim(k);
                Some(value)
            }
        }
    }

    /// The deadline of a pending timer, `None` if the handle is stale.
    pub fn deadline(&self, id: TimerId) -> Option<Instant> {
        let time = match self.locate(id)? {
            Loc::Heap(p) => self.heap[p].time,
            Loc::Lane(k, i) => self.lanes[k].queue[i].time,
        };
        Some(self.instant(time))
    }

    /// Whether the handle still names a pending deadline.
    pub fn contains(&self, id: TimerId) -> bool {
        self.locate(id).is_some()
    }

    /// Removes and returns the earliest entry if it is due at `now` (deadline ≤ `now`).
    pub fn pop_expired(&mut self, now: Instant) -> Option<(TimerId, Instant, T)> {
        let (from, time) = self.earliest()?;
        let deadline = self.instant(time);
        if deadline > now {
            return None;
        }
        let (id, value) = match from {
            None => self.remove_at(0),
            Some(k) => {
                let lane = &mut self.lanes[k];
                // `earliest` saw this front.
                let e = lane.queue.pop_front().expect("a lane front was found");
                lane.head = lane.head.wrapping_add(1) & POS_MASK;
                let value = self.vacate(e.slot);
                self.lane_live -= 1;
                self.trim(k);
                (
                    TimerId {
                        slot: e.slot,
                        gen: e.gen,
                    },
                    value,
                )
            }
        };
        Some((id, deadline, value))
    }

    /// Where the earliest entry is (`None` for the heap root, else its lane) and its time.
    fn earliest(&self) -> Option<(Option<usize>, u64)> {
        let mut best = self.heap.first().map(|e| (None, e.key()));
        for (k, lane) in self.lanes.iter().enumerate() {
            if let Some(f) = lane.queue.front() {
                if best.is_none_or(|(_, key)| f.key() < key) {
                    best = Some((Some(k), f.key()));
                }
            }
        }
        best.map(|(from, (time, _))| (from, time))
    }

    /// Whether a lane entry is still pending (not cancelled).
    fn is_live(&self, e: &LaneEntry) -> bool {
        self.slots
            .get(e.slot as usize)
            .is_some_and(|s| s.gen == e.gen && s.value.is_some())
    }

    /// Drops the dead entries at the front of lane `k`, so its front is live.
    fn trim(&mut self, k: usize) {
        while let Some(f) = self.lanes[k].queue.front() {
            if self.is_live(f) {
                break;
            }
            let lane = &mut self.lanes[k];
            lane.queue.pop_front();
            lane.head = lane.head.wrapping_add(1) & POS_MASK;
        }
    }

    /// A vacant slot, reused or new.
    fn take_slot(&mut self) -> u32 {
        match self.free.pop() {
            Some(s) => s,
            None => {
                let s = u32::try_from(self.slots.len())
                    .expect("fewer than 2^32 simultaneous timers: memory runs out long before");
                self.slots.push(Slot {
                    gen: self.new_gen,
                    pos: 0,
                    value: None,
                });
                s
            }
        }
    }

    /// Empties an occupied slot (a new generation) and frees it; returns its value.
    fn vacate(&mut self, slot: u32) -> T {
        let cell = &mut self.slots[slot as usize];
        let value = cell.value.take().expect("only occupied slots are vacated");
        cell.gen = cell.gen.wrapping_add(1);
        self.free.push(slot);
        value
    }

    /// Drains every entry due at `now`, earliest first (ties in insertion order). Entries the
    /// iterator has not yielded when it is dropped stay pending.
    pub fn expire(&mut self, now: Instant) -> Expire<'_, T> {
        Expire { timers: self, now }
    }

    /// Releases spare capacity after a burst (e.g. a load test left many vacant slots). Only
    /// trailing vacant slots can be dropped, because live handles index the slot vector.
    pub fn shrink_to_fit(&mut self) {
        // Dead lane entries go first: they name slots that may be dropped below (and whose
        // generation would restart at 0 if the slot were pushed again).
        for k in 0..self.lanes.len() {
            let mut queue = std::mem::take(&mut self.lanes[k].queue);
            queue.retain(|e| self.is_live(e));
            for (i, e) in queue.iter().enumerate() {
                self.slots[e.slot as usize].pos = ((k as u32 + 1) << LANE_SHIFT) | i as u32;
            }
            queue.shrink_to_fit();
            self.lanes[k].queue = queue;
            self.lanes[k].head = 0;
        }
        while self.slots.last().is_some_and(|s| s.value.is_none()) {
            if let Some(s) = self.slots.pop() {
                // Vacated slots' generations were bumped, so every handle to this one is
                // below `s.gen`.
                self.new_gen = self.new_gen.max(s.gen);
            }
        }
        let n = self.slots.len() as u32;
        self.free.retain(|&s| s < n);
        self.free.shrink_to_fit();
        self.slots.shrink_to_fit();
        self.heap.shrink_to_fit();
    }

    /// The key of `now` plus lane `k`'s interval: [`Self::key`] of that deadline, from the
    /// key of `now` kept in `now_key`. Exact: at or after `base` both are `MID` plus the
    /// nanoseconds since `base`, saturating at `u64::MAX` alike; before `base` (a `now`
    /// earlier than the first deadline), the deadline is keyed afresh.
    fn lane_key(&mut self, now: Instant, k: usize) -> u64 {
        let now_key = match self.now_key {
            Some((t, key)) if t == now => key,
            _ => {
                let key = self.key(now);
                self.now_key = Some((now, key));
                key
            }
        };
        let lane = &self.lanes[k];
        if now_key >= MID {
            now_key.saturating_add(lane.after_nanos)
        } else {
            let after = lane.after;
            self.key(now + after)
        }
    }

    /// `deadline` on the integer scale (see `base`).
    fn key(&mut self, deadline: Instant) -> u64 {
        let base = *self.base.get_or_insert(deadline);
        match deadline.checked_duration_since(base) {
            Some(after) => MID.saturating_add(nanos(after).min(MID - 1)),
            None => MID - nanos(base.duration_since(deadline)).min(MID),
        }
    }

    /// The deadline a key stands for.
    fn instant(&self, time: u64) -> Instant {
        let base = self
            .base
            .expect("a key exists only once the first insert set the base");
        if time >= MID {
            base + std::time::Duration::from_nanos(time - MID)
        } else {
            base - std::time::Duration::from_nanos(MID - time)
        }
    }

    /// Where a live handle's entry is.
    fn locate(&self, id: TimerId) -> Option<Loc> {
        let slot = self.slots.get(id.slot as usize)?;
        if slot.gen != id.gen || slot.value.is_none() {
            return None;
        }
        Some(match slot.pos >> LANE_SHIFT {
            0 => Loc::Heap(slot.pos as usize),
            k => {
                let k = (k - 1) as usize;
                let i = (slot.pos & POS_MASK).wrapping_sub(self.lanes[k].head) & POS_MASK;
                Loc::Lane(k, i as usize)
            }
        })
    }

    /// Removes the heap element at `pos`, vacates its slot, and returns its handle and value.
    fn remove_at(&mut self, pos: usize) -> (TimerId, T) {
        let removed = self.heap.swap_remove(pos);
        if pos < self.heap.len() {
            // The element moved into the hole may belong above or below it.
            let key = self.heap[pos].key();
            if pos > 0 && key < self.heap[(pos - 1) / 2].key() {
                self.sift_up(pos);
            } else {
                self.sift_down(pos);
            }
        }
        let slot = removed.slot;
        let gen = self.slots[slot as usize].gen;
        let value = self.vacate(slot);
        (TimerId { slot, gen }, value)
    }

    /// Moves the element at `pos` up to its place. The moving element is held aside while
    /// the parents above it shift down into the hole, so each level costs one copy and one
    /// position update instead of a swap.
    fn sift_up(&mut self, mut pos: usize) {
        let moving = self.heap[pos];
        let key = moving.key();
        while pos > 0 {
            let parent = (pos - 1) / 2;
            let p = self.heap[parent];
            if key >= p.key() {
                break;
            }
            self.place(pos, p);
            pos = parent;
        }
        self.place(pos, moving);
    }

    /// Moves the element at `pos` down to its place, the same way as [`Self::sift_up`].
    fn sift_down(&mut self, mut pos: usize) {
        let n = self.heap.len();
        let moving = self.heap[pos];
        let key = moving.key();
        loop {
            let left = 2 * pos + 1;
            if left >= n {
                break;
            }
            let right = left + 1;
            let mut child = self.heap[left];
            let mut at = left;
            if right < n && self.heap[right].key() < child.key() {
                child = self.heap[right];
                at = right;
            }
            if child.key() >= key {
                break;
            }
            self.place(pos, child);
            pos = at;
        }
        self.place(pos, moving);
    }

    #[inline]
    fn place(&mut self, pos: usize, e: HeapEntry) {
        self.heap[pos] = e;
        self.slots[e.slot as usize].pos = pos as u32;
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

    /// Deadlines before and long after the first come back exactly and fire in order.
    #[test]
    fn deadlines_round_trip_exactly_on_either_side_of_the_first() {
        let t0 = epoch() + Duration::from_secs(1_000_000);
        let mut t = Timers::new();
        let offsets = [
            Duration::from_secs(10),
            Duration::ZERO,
            Duration::from_nanos(1),
            Duration::from_secs(86_400 * 3650) + Duration::from_nanos(7),
            Duration::from_nanos(10_000_000_001),
        ];
        let ids: Vec<_> = offsets.iter().map(|&d| t.insert(t0 + d, d)).collect();
        let before = t.insert(t0 - Duration::from_nanos(999_999_999_999), Duration::MAX);
        for (id, d) in ids.iter().zip(offsets) {
            assert_eq!(t.deadline(*id), Some(t0 + d));
        }
        assert_eq!(
            t.poll_timeout(),
            Some(t0 - Duration::from_nanos(999_999_999_999))
        );
        assert_eq!(t.cancel(before), Some(Duration::MAX));
        let mut sorted = offsets;
        sorted.sort();
        let fired: Vec<_> = t.expire(t0 + sorted[4]).map(|(_, at, d)| (at, d)).collect();
        let expect: Vec<_> = sorted.iter().map(|&d| (t0 + d, d)).collect();
        assert_eq!(fired, expect);
    }

    /// Lanes cost a slot nothing: the lane is kept in `pos`'s top bits.
    #[test]
    fn a_slot_is_three_words() {
        assert_eq!(std::mem::size_of::<Slot<u64>>(), 24);
    }

    /// A lane's key, made from the kept key of `now`, is the deadline's own key, on either
    /// side of the base and where the scale saturates.
    #[test]
    fn lane_keys_are_deadline_keys() {
        let t0 = epoch() + Duration::from_secs(1000);
        let year = Duration::from_secs(365 * 86_400);
        for after in [ms(1), ms(500), Duration::from_secs(32), year * 300] {
            for now in [t0, t0 - ms(3), t0 + ms(7), t0 + year * 250, t0 + year * 291] {
                let mut t: Timers<()> = Timers::new();
                t.insert(t0, ());
                t.add_lane(after);
                let fast = t.lane_key(now, 0);
                assert_eq!(fast, t.lane_key(now, 0), "kept key");
                assert_eq!(fast, t.key(now + after), "{after:?} at {:?}", now - epoch());
            }
        }
    }

    /// Lane numbers wrap without losing track of their entries.
    #[test]
    fn lane_numbers_wrap() {
        let t0 = epoch();
        let mut t = Timers::new();
        t.add_lane(ms(5));
        t.lanes[0].head = POS_MASK - 1;
        let ids: Vec<_> = (0..4u64)
            .map(|i| t.insert_after(t0 + ms(i), ms(5), i))
            .collect();
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(t.deadline(*id), Some(t0 + ms(5 + i as u64)));
        }
        assert_eq!(t.cancel(ids[2]), Some(2));
        let fired: Vec<u64> = t.expire(t0 + ms(10)).map(|(_, _, v)| v).collect();
        assert_eq!(fired, vec![0, 1, 3]);
        assert!(t.is_empty());
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
        /// `insert_after` with the interval `LANE_TEST_AFTER[n % len]`.
        InsertAfter(usize),
        RescheduleAfter(usize, usize),
        /// `now` goes back (lane inserts after it go to the heap).
        Back(u16),
        Shrink,
    }

    /// Intervals for the lane ops: three with lanes, two without (zero gets none).
    const LANE_TEST_AFTER: [u64; 5] = [10, 50, 200, 37, 0];

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u16..500).prop_map(Op::Insert),
            2 => any::<usize>().prop_map(Op::Cancel),
            1 => (0u16..200).prop_map(Op::Advance),
            2 => (any::<usize>(), 0u16..500).prop_map(|(i, d)| Op::Reschedule(i, d)),
            4 => any::<usize>().prop_map(Op::InsertAfter),
            2 => (any::<usize>(), any::<usize>()).prop_map(|(i, a)| Op::RescheduleAfter(i, a)),
            1 => (0u16..30).prop_map(Op::Back),
            1 => Just(Op::Shrink),
        ]
    }

    proptest! {
        /// Random insert/cancel/advance sequences fire exactly like a naive sorted list,
        /// with lanes or without.
        #[test]
        fn matches_naive_model(
            ops in proptest::collection::vec(op(), 1..300),
            lanes in any::<bool>(),
        ) {
            let t0 = epoch();
            let mut now = t0;
            let mut t = Timers::new();
            if lanes {
                for after in [10, 50, 200, 0, 10] {
                    t.add_lane(ms(after));
                }
            }
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
                    Op::InsertAfter(a) => {
                        let after = ms(LANE_TEST_AFTER[a % LANE_TEST_AFTER.len()]);
                        let id = t.insert_after(now, after, seq as u32);
                        prop_assert_eq!(t.deadline(id), Some(now + after));
                        model.push((now + after, seq, seq as u32));
                        handles.push((id, seq));
                        seq += 1;
                    }
                    Op::RescheduleAfter(i, a) if !handles.is_empty() => {
                        let k = i % handles.len();
                        let (id, s) = handles[k];
                        let after = ms(LANE_TEST_AFTER[a % LANE_TEST_AFTER.len()]);
                        let was_live = t.contains(id);
                        let new_id = t.reschedule_after(id, now, after, seq as u32);
                        prop_assert!(!was_live || !t.contains(id));
                        prop_assert_eq!(t.deadline(new_id), Some(now + after));
                        if let Some(p) = model.iter().position(|m| m.1 == s) {
                            model.remove(p);
                        }
                        model.push((now + after, seq, seq as u32));
                        handles[k] = (new_id, seq);
                        seq += 1;
                    }
                    Op::RescheduleAfter(..) => {}
                    Op::Back(d) => now -= ms(d.into()).min(now - t0),
                    Op::Shrink => t.shrink_to_fit(),
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
                // Every live handle finds its own deadline, wherever its entry is.
                for &(id, s) in &handles {
                    let expect = model.iter().find(|m| m.1 == s).map(|m| m.0);
                    prop_assert_eq!(t.deadline(id), expect);
                }
            }
        }
    }
}
