//! The binding table: a dense slab of bindings plus an id → slot index.
//!
//! A `HashMap<BindingId, Binding>` stores whole 80-byte bindings in its buckets, and a
//! hash table's power-of-two bucket count can leave it half empty (1,000,000 entries need
//! 2^21 buckets): up to ~90 bytes per binding of pure slack. Here the buckets hold only a
//! 12-byte `(id, slot)` pair and the bindings sit in a `Vec` that [`Table::reserve`] sizes
//! exactly, with freed slots reused.

use std::collections::HashMap;
use std::mem::size_of;

use crate::txn::IdHash;

use super::binding::Binding;
use super::BindingId;

#[derive(Debug, Default)]
pub(crate) struct Table {
    slots: Vec<Option<Binding>>,
    /// Binding ids are the shell's, not a peer's (the daemon draws them at random as contact
    /// tokens; tests and benches count up): a multiply spreads either, where SipHash cost
    /// more than the rest of a lookup.
    index: HashMap<BindingId, u32, IdHash>,
    free: Vec<u32>,
}

impl Table {
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub(crate) fn contains_key(&self, id: &BindingId) -> bool {
        self.index.contains_key(id)
    }

    pub(crate) fn get(&self, id: &BindingId) -> Option<&Binding> {
        let &i = self.index.get(id)?;
        self.slots[i as usize].as_ref()
    }

    pub(crate) fn get_mut(&mut self, id: &BindingId) -> Option<&mut Binding> {
        let &i = self.index.get(id)?;
        self.slots[i as usize].as_mut()
    }

    /// Inserts a binding for an id that is not in the table (the caller checked).
    pub(crate) fn insert(&mut self, id: BindingId, binding: Binding) {
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(binding);
                i
            }
            None => {
                self.slots.push(Some(binding));
                u32::try_from(self.slots.len() - 1)
                    .expect("fewer than 2^32 bindings: memory runs out long before")
            }
        };
        let prev = self.index.insert(id, i);
        debug_assert!(prev.is_none(), "insert of a live id");
    }

    pub(crate) fn remove(&mut self, id: &BindingId) -> Option<Binding> {
        let i = self.index.remove(id)?;
        self.free.push(i);
        self.slots[i as usize].take()
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &Binding> {
        self.slots.iter().flatten()
    }

    /// Room for `additional` more bindings, exactly (no doubling slack in the slab).
    pub(crate) fn reserve(&mut self, additional: usize) {
        let more = additional.saturating_sub(self.free.len());
        self.slots.reserve_exact(more);
        self.index.reserve(additional);
    }

    /// Bytes of the slab and the index at their current capacity (index buckets plus one
    /// control byte each), and of the free list.
    pub(crate) fn bytes(&self) -> usize {
        self.slots.capacity() * size_of::<Option<Binding>>()
            + self.index.capacity() * (size_of::<(BindingId, u32)>() + 1)
            + self.free.capacity() * size_of::<u32>()
    }
}
