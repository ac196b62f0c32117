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

/// A [`Site`] borrowed from a binding's configuration (see [`Peers::intern_ref`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SiteRef<'a> {
    pub(crate) peer: Peer,
    pub(crate) domain: &'a str,
    pub(crate) proxy: &'a str,
}

impl SiteRef<'_> {
    pub(crate) fn to_site(self) -> Site {
        Site {
            peer: self.peer,
            domain: self.domain.into(),
            proxy: self.proxy.into(),
        }
    }

    fn is(&self, site: &Site) -> bool {
        self.peer == site.peer && self.domain == &*site.domain && self.proxy == &*site.proxy
    }
}

#[derive(Debug, Default)]
pub(crate) struct Peers {
    /// Site and reference count per index; `None` for a free index.
    list: Vec<Option<(Site, u32)>>,
    index: HashMap<Site, u32>,
    free: Vec<u32>,
    /// The index [`Self::intern_ref`] returned last: bindings are added in bulk (a restart
    /// loads a million) and mostly in runs of one operator, so the site is usually that one.
    /// Only a hint: the site there is compared before it is used.
    last: Option<u32>,
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

    /// [`Self::intern`] for a borrowed site. The site interned last is tried first, with
    /// three compares: a hit neither allocates the site's two strings nor hashes them
    /// (SipHash over the domain cost more than the rest of interning).
    pub(crate) fn intern_ref(&mut self, site: SiteRef<'_>) -> PeerIdx {
        if let Some(i) = self.last {
            if let Some(Some((s, refs))) = self.list.get_mut(i as usize) {
                if site.is(s) {
                    *refs += 1;
                    return PeerIdx(i);
                }
            }
        }
        let idx = self.intern(site.to_site());
        self.last = Some(idx.0);
        idx
    }

    /// Drops a reference taken by [`Self::intern`] or [`Self::intern_ref`].
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

    /// `intern_ref` counts and finds sites as `intern` does, whether or not the site is
    /// the one interned last, and is not fooled by a last index freed and reused.
    #[test]
    fn intern_ref_is_intern() {
        let udp = Peer::udp("192.0.2.1:5060".parse().unwrap());
        let r = |domain, proxy| SiteRef {
            peer: udp,
            domain,
            proxy,
        };
        let mut p = Peers::default();
        let a = p.intern_ref(r("example.org", ""));
        assert_eq!(p.intern_ref(r("example.org", "")), a, "last");
        let b = p.intern_ref(r("example.org", "sbc:5061"));
        assert_ne!(a, b, "other proxy");
        assert_eq!(
            p.intern_ref(r("example.org", "")),
            a,
            "not last, from the map"
        );
        assert_eq!(p.intern(r("example.org", "").to_site()), a);
        assert_eq!(p.get(b), &r("example.org", "sbc:5061").to_site());
        let tcp = SiteRef {
            peer: Peer::tcp("192.0.2.1:5060".parse().unwrap()),
            ..r("example.org", "")
        };
        let t = p.intern_ref(tcp);
        assert!(t != a && t != b, "other transport");
        // a: 4 references, b: 1, t: 1 (and the last index).
        for _ in 0..3 {
            p.release(a);
        }
        assert_eq!((p.len(), p.get(a)), (3, &r("example.org", "").to_site()));
        p.release(a);
        assert_eq!(p.len(), 2);
        p.release(t);
        // The last index is free, then reused by another site.
        let c = p.intern(r("example.net", "").to_site());
        assert_eq!(c, t, "freed index reused");
        let d = p.intern_ref(tcp);
        assert!(d != c && d != b);
        assert_eq!(p.get(d), &tcp.to_site());
        assert_eq!(p.get(c), &r("example.net", "").to_site());
        assert_eq!(p.len(), 3);
    }
}
