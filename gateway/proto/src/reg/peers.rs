//! Interned upstream addresses: a binding stores a 4-byte index instead of a 36-byte
//! [`Peer`], since a million bindings typically share a handful of upstream servers.
//! Reference-counted, so an address no binding uses any more is dropped and its index reused.

use std::collections::HashMap;

use crate::txn::Peer;

/// Index of an interned [`Peer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PeerIdx(u32);

#[derive(Debug, Default)]
pub(crate) struct Peers {
    /// Peer and reference count per index; `None` for a free index.
    list: Vec<Option<(Peer, u32)>>,
    index: HashMap<Peer, u32>,
    free: Vec<u32>,
}

impl Peers {
    /// Takes a reference to `peer`'s index, interning it if new.
    pub(crate) fn intern(&mut self, peer: Peer) -> PeerIdx {
        if let Some(&i) = self.index.get(&peer) {
            if let Some((_, refs)) = self.list[i as usize].as_mut() {
                *refs += 1;
            }
            return PeerIdx(i);
        }
        let i = match self.free.pop() {
            Some(i) => {
                self.list[i as usize] = Some((peer, 1));
                i
            }
            None => {
                self.list.push(Some((peer, 1)));
                u32::try_from(self.list.len() - 1)
                    .expect("fewer than 2^32 distinct upstreams: one per binding at most")
            }
        };
        self.index.insert(peer, i);
        PeerIdx(i)
    }

    /// Drops a reference taken by [`Self::intern`].
    pub(crate) fn release(&mut self, idx: PeerIdx) {
        let slot = &mut self.list[idx.0 as usize];
        if let Some((peer, refs)) = slot.as_mut() {
            *refs -= 1;
            if *refs == 0 {
                self.index.remove(peer);
                *slot = None;
                self.free.push(idx.0);
            }
        }
    }

    pub(crate) fn get(&self, idx: PeerIdx) -> Peer {
        self.list[idx.0 as usize]
            .expect("a binding holds a reference to its interned peer")
            .0
    }

    /// Distinct live peers.
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning_is_counted_and_indices_reused() {
        let a = Peer::udp("192.0.2.1:5060".parse().unwrap());
        let b = Peer::tcp("192.0.2.1:5060".parse().unwrap());
        let mut p = Peers::default();
        let ia = p.intern(a);
        assert_eq!(p.intern(a), ia);
        let ib = p.intern(b);
        assert_ne!(ia, ib);
        assert_eq!((p.get(ia), p.get(ib), p.len()), (a, b, 2));
        p.release(ia);
        assert_eq!(p.get(ia), a, "still one reference");
        p.release(ia);
        assert_eq!(p.len(), 1);
        let c = Peer::udp("198.51.100.1:5060".parse().unwrap());
        assert_eq!(p.intern(c), ia, "freed index reused");
    }
}
