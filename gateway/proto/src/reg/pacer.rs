//! The global REGISTER pace: a token bucket on virtual time.
//!
//! Implemented as GCRA (the "virtual scheduling" form of a token bucket): one theoretical
//! arrival time instead of a token count, so it is exact with `Instant`s, needs no periodic
//! refill and costs two comparisons per request. With a burst of `b` and a rate of `r` per
//! second, any window of `t` seconds admits at most `b - 1 + ⌈r·t⌉` requests.

use std::time::{Duration, Instant};

/// See the module documentation.
#[derive(Debug, Clone)]
pub(crate) struct Pacer {
    /// Time between two requests at the steady rate; zero means unlimited.
    interval: Duration,
    /// How far ahead of the steady schedule a burst may run: `(burst - 1) · interval`.
    tolerance: Duration,
    /// Theoretical arrival time of the next request.
    tat: Option<Instant>,
}

impl Pacer {
    /// `per_sec == 0` disables pacing; `burst` is clamped to at least 1.
    pub(crate) fn new(per_sec: u32, burst: u32) -> Self {
        let interval = if per_sec == 0 {
            Duration::ZERO
        } else {
            Duration::from_secs(1) / per_sec
        };
        Self {
            interval,
            tolerance: interval * burst.max(1).saturating_sub(1),
            tat: None,
        }
    }

    /// Takes one token if a request may go at `now`.
    pub(crate) fn try_take(&mut self, now: Instant) -> bool {
        if self.interval.is_zero() {
            return true;
        }
        let tat = self.tat.map_or(now, |t| t.max(now));
        if tat > now + self.tolerance {
            return false;
        }
        self.tat = Some(tat + self.interval);
        true
    }

    /// The earliest time [`Self::try_take`] can succeed (`None`: at once).
    pub(crate) fn next_allowed(&self) -> Option<Instant> {
        let tat = self.tat?;
        // tat - tolerance, without underflowing an `Instant` near its origin.
        Some(tat.checked_sub(self.tolerance).unwrap_or(tat))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_rate_and_burst() {
        let t0 = crate::netem::test_epoch();
        let mut p = Pacer::new(10, 3);
        // A burst of three, then one per 100 ms.
        assert!(p.try_take(t0) && p.try_take(t0) && p.try_take(t0));
        assert!(!p.try_take(t0));
        let next = p.next_allowed().unwrap();
        assert_eq!(next - t0, Duration::from_millis(100));
        assert!(p.try_take(next));
        assert!(!p.try_take(next));
        let mut unlimited = Pacer::new(0, 1);
        assert!((0..1000).all(|_| unlimited.try_take(t0)));
        assert_eq!(unlimited.next_allowed(), None);
    }
}
