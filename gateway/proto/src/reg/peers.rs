//! Interned sites: a binding stores a 4-byte index instead of its upstream address (a
//! 36-byte [`Peer`]), registrar domain and outbound proxy (50-odd bytes of text), since a
//! million bindings typically share a handful of operators. Reference-counted, so a site no
//! binding uses any more is dropped and its index reused.

use std::collections::HashMap;

use crate::txn::Peer;

/// Index of an interned [`Site`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PeerIdx(u32);

/// What many bindings share: where REGISTERs go, the registrar domain (`sip:DOMAIN`) and the
/// outbound proxy (`host[:port]`, empty for none).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Site {
    pub(crate) peer: Peer,
    pub(crate) domain: Box<str>,
    pub(crate) proxy: Box<str>,
}

#[derive(Debug, Default)]
pub(crate) struct Peers {
    /// Site and reference count per index; `None` for a free index.
    list: Vec<Option<(Site, u32)>>,
    index: HashMap<Site, u32>,
    free: Vec<u32>,
}

#[cfg(test)]
impl PeerIdx {
    /// An index for tests that need a binding but no `Peers`.
    pub(crate) fn for_test(i: u32) -> Self {
        Self(i)
    }
}

impl Peers {
    /// Takes a reference to `site`'s index, interning it if new.
    pub(crate) fn intern(&mut self, site: Site) -> PeerIdx {
        if let Some(&i) = self.index.get(&site) {
            if let Some((_, refs)) = self.list[i as usize].as_mut() {
                *refs += 1;
            }
            return PeerIdx(i);
        }
        let i = match self.free.pop() {
            Some(i) => i,
            None => {
                self.list.push(None);
                u32::try_from(self.list.len() - 1)
                    .expect("fewer than 2^32 distinct sites: one per binding at most")
            }
        };
        self.list[i as usize] = Some((site.clone(), 1));
        self.index.insert(site, i);
        PeerIdx(i)
    }

    /// Drops a reference taken by [`Self::intern`].
    pub(crate) fn release(&mut self, idx: PeerIdx) {
        let slot = &mut self.list[idx.0 as usize];
        if let Some((site, refs)) = slot.as_mut() {
            *refs -= 1;
            if *refs == 0 {
                self.index.remove(site);
                *slot = None;
                self.free.push(idx.0);
            }
        }
    }

    pub(crate) fn get(&self, idx: PeerIdx) -> &Site {
        &self.list[idx.0 as usize]
            .as_ref()
            .expect("a binding holds a reference to its interned site")
            .0
    }

    /// Distinct live sites.
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(peer: Peer, domain: &str) -> Site {
        Site {
            peer,
            domain: domain.into(),
            proxy: "".into(),
        }
    }

    #[test]
    fn interning_is_counted_and_indices_reused() {
        let a = site(Peer::udp("192.0.2.1:5060".parse().unwrap()), "example.org");
        let b = site(Peer::tcp("192.0.2.1:5060".parse().unwrap()), "example.org");
        let a2 = site(a.peer, "example.net");
        let mut p = Peers::default();
        let ia = p.intern(a.clone());
        assert_eq!(p.intern(a.clone()), ia);
        let ib = p.intern(b.clone());
        assert_ne!(ia, ib);
        let ia2 = p.intern(a2.clone());
        assert!(
            ia2 != ia && ia2 != ib,
            "same peer, other domain: another site"
        );
        assert_eq!((p.get(ia), p.get(ib), p.len()), (&a, &b, 3));
        p.release(ia);
        assert_eq!(p.get(ia), &a, "still one reference");
        p.release(ia);
        assert_eq!(p.len(), 2);
        let c = site(
            Peer::udp("198.51.100.1:5060".parse().unwrap()),
            "example.org",
        );
        assert_eq!(p.intern(c), ia, "freed index reused");
    }
}
