//! Jittered exponential backoff for push retries, bounded by the push's deadline.
//!
//! "Equal jitter": the n-th retry waits between half and all of `base·2ⁿ` (capped), so retries
//! of many pushes that failed together (a 503 burst, a GOAWAY) spread out instead of hitting
//! the provider again in lockstep, while each push still waits at least half the nominal
//! delay. The server's `Retry-After` and the provider's minimum (FCM 429: 60 s) are floors.

use std::time::Duration;

use crate::rng::CoreRng;

/// Retry timing parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Nominal delay before the first retry.
    pub base: Duration,
    /// Largest nominal delay.
    pub cap: Duration,
    /// Attempts (the first send included) after which a push is given up.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(30),
            max_attempts: 12,
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `retry` (0 for the first retry).
    pub fn delay(
        &self,
        retry: u32,
        rng: &mut CoreRng,
        retry_after: Option<Duration>,
        min_delay: Duration,
    ) -> Duration {
        let nominal = self
            .base
            .saturating_mul(1u32 << retry.min(20))
            .min(self.cap);
        let half = nominal / 2;
        let jitter_ns = rng.below(half.as_nanos().max(1) as u64);
        let jittered = half + Duration::from_nanos(jitter_ns);
        jittered
            .max(retry_after.unwrap_or(Duration::ZERO))
            .max(min_delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_jitters_and_honours_floors() {
        let p = RetryPolicy::default();
        let mut rng = CoreRng::from_seed(1);
        for retry in 0..10 {
            let nominal = p.base.saturating_mul(1 << retry).min(p.cap);
            let d = p.delay(retry, &mut rng, None, Duration::ZERO);
            assert!(d >= nominal / 2 && d <= nominal, "retry {retry}: {d:?}");
        }
        let ds: Vec<_> = (0..20)
            .map(|_| p.delay(3, &mut rng, None, Duration::ZERO))
            .collect();
        assert!(ds.windows(2).any(|w| w[0] != w[1]), "jitter varies");
        let d = p.delay(0, &mut rng, Some(Duration::from_secs(5)), Duration::ZERO);
        assert_eq!(d, Duration::from_secs(5));
        let d = p.delay(
            0,
            &mut rng,
            Some(Duration::from_secs(5)),
            Duration::from_secs(60),
        );
        assert_eq!(d, Duration::from_secs(60));
        assert!(p.delay(40, &mut rng, None, Duration::ZERO) <= p.cap);
    }
}
