//! Fault injection: which errors the mocks inject, how often, and how slowly they answer.
//!
//! Faults are drawn from a ChaCha8 generator seeded with [`Faults::seed`], so a run's
//! fault *rates* are reproducible. (Which request gets which fault still depends on the
//! order concurrent requests reach the generator.)

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Duration;

/// What faults a mock injects. `Faults::default()` injects none.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Error replies that replace an otherwise accepted push, each with its probability
    /// (0.0..=1.0). One uniform draw per valid request picks at most one entry, so the
    /// probabilities should add up to at most 1.
    pub error_rate: Vec<(f64, FaultReason)>,
    /// Delay added before every response.
    pub latency: LatencyDist,
    /// Every N-th request the mock receives (counted across all connections), the
    /// connection that carried it gets a graceful GOAWAY: in-flight streams, including that
    /// request, complete; new streams are refused and the client must reconnect.
    pub goaway_every: Option<u32>,
    /// Every N-th request the mock receives (counted across all connections), the
    /// connection that carried it is closed abruptly: no GOAWAY, no TLS close_notify, and
    /// that request and any request not yet answered never get a response (nor are they
    /// recorded as accepted).
    pub reset_every: Option<u32>,
    /// After a push on a connection is rejected (any non-200 answer), lower that
    /// connection's `SETTINGS_MAX_CONCURRENT_STREAMS` to 1, as APNs has been seen to do.
    /// Once the client acknowledges the new setting, extra concurrent streams are refused
    /// with `REFUSED_STREAM`.
    pub drop_stream_limit_to_1_after_rejection: bool,
    /// Seed of the fault generator.
    pub seed: u64,
}

/// An injected error reply.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FaultReason {
    /// APNs 500 `InternalServerError`.
    Apns500,
    /// APNs 503 `ServiceUnavailable`.
    Apns503,
    /// APNs 503 `Shutdown` (the server is going away; reconnect).
    Apns503Shutdown,
    /// APNs 429 `TooManyRequests` (too many pushes to one device).
    Apns429TooManyRequests,
    /// FCM 500 `INTERNAL`.
    Fcm500,
    /// FCM 503 `UNAVAILABLE`, with a `Retry-After` header (seconds) when set.
    Fcm503 {
        /// Seconds for the `Retry-After` header.
        retry_after: Option<u32>,
    },
    /// FCM 429 `RESOURCE_EXHAUSTED` / `QUOTA_EXCEEDED` with `Retry-After` (seconds).
    Fcm429 {
        /// Seconds for the `Retry-After` header.
        retry_after: u32,
    },
}

/// How long the mock waits before answering a request.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum LatencyDist {
    /// Answer at once.
    #[default]
    None,
    /// Always the same delay.
    Fixed(Duration),
    /// Uniform between `min` and `max`.
    Uniform {
        /// Shortest delay.
        min: Duration,
        /// Longest delay.
        max: Duration,
    },
    /// Log-normal with the given mean and 95th percentile (the shape of real push
    /// delivery times: most fast, a long tail).
    LogNormal {
        /// Mean delay.
        mean: Duration,
        /// 95th-percentile delay; must be at least the mean for a right-skewed tail.
        p95: Duration,
    },
}

/// The z-score of the 95th percentile of a standard normal distribution.
const Z95: f64 = 1.644_853_626_951_472_2;

/// The seeded generator behind fault draws.
pub(crate) struct FaultRng {
    rng: ChaCha8Rng,
}

impl FaultRng {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        // 53 random bits fill an f64 mantissa exactly.
        (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Picks the injected error for one valid request, if any.
    pub(crate) fn pick_error(&mut self, faults: &Faults) -> Option<FaultReason> {
        if faults.error_rate.is_empty() {
            return None;
        }
        let u = self.unit();
        let mut cumulative = 0.0;
        for (p, reason) in &faults.error_rate {
            cumulative += p.clamp(0.0, 1.0);
            if u < cumulative {
                return Some(reason.clone());
            }
        }
        None
    }

    /// Draws one delay from `dist`.
    pub(crate) fn latency(&mut self, dist: &LatencyDist) -> Duration {
        match dist {
            LatencyDist::None => Duration::ZERO,
            LatencyDist::Fixed(d) => *d,
            LatencyDist::Uniform { min, max } => {
                let (lo, hi) = (min.as_secs_f64(), max.as_secs_f64().max(min.as_secs_f64()));
                Duration::from_secs_f64(lo + (hi - lo) * self.unit())
            }
            LatencyDist::LogNormal { mean, p95 } => {
                let (mu, sigma) = lognormal_params(mean.as_secs_f64(), p95.as_secs_f64());
                let secs = (mu + sigma * self.standard_normal()).exp();
                // Cap the tail so a single draw cannot stall a test for hours.
                Duration::from_secs_f64(secs.min(600.0))
            }
        }
    }

    /// A standard normal draw (Box–Muller).
    fn standard_normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit(); // in (0, 1], so ln is finite
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// Solves `mean = exp(mu + s²/2)`, `p95 = exp(mu + z95·s)` for `(mu, s)`.
///
/// Subtracting gives `s²/2 − z95·s + ln(p95/mean) = 0`; the smaller root is the one with
/// a finite variance for a given tail. Out-of-range inputs are clamped to the nearest
/// representable shape instead of failing, because this only shapes test traffic.
pub(crate) fn lognormal_params(mean_secs: f64, p95_secs: f64) -> (f64, f64) {
    let mean = mean_secs.max(1e-6);
    let p95 = p95_secs.max(1e-6);
    let d = (p95 / mean).ln();
    let disc = Z95 * Z95 - 2.0 * d;
    let sigma = if disc < 0.0 {
        Z95
    } else {
        (Z95 - disc.sqrt()).max(0.0)
    };
    (mean.ln() - sigma * sigma / 2.0, sigma)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lognormal_matches_mean_and_p95() {
        let mut rng = FaultRng::new(7);
        let dist = LatencyDist::LogNormal {
            mean: Duration::from_millis(800),
            p95: Duration::from_millis(2000),
        };
        let mut draws: Vec<f64> = (0..200_000)
            .map(|_| rng.latency(&dist).as_secs_f64())
            .collect();
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        draws.sort_by(|a, b| a.total_cmp(b));
        let p95 = draws[draws.len() * 95 / 100];
        assert!((mean - 0.8).abs() < 0.03, "mean {mean}");
        assert!((p95 - 2.0).abs() < 0.08, "p95 {p95}");
    }

    #[test]
    fn error_rates_follow_probabilities() {
        let mut rng = FaultRng::new(42);
        let faults = Faults {
            error_rate: vec![(0.05, FaultReason::Apns503), (0.10, FaultReason::Apns500)],
            ..Faults::default()
        };
        let (mut a, mut b) = (0, 0);
        for _ in 0..100_000 {
            match rng.pick_error(&faults) {
                Some(FaultReason::Apns503) => a += 1,
                Some(FaultReason::Apns500) => b += 1,
                _ => {}
            }
        }
        assert!((4_500..5_500).contains(&a), "503s {a}");
        assert!((9_300..10_700).contains(&b), "500s {b}");
    }

    #[test]
    fn uniform_stays_in_range() {
        let mut rng = FaultRng::new(1);
        let dist = LatencyDist::Uniform {
            min: Duration::from_millis(10),
            max: Duration::from_millis(20),
        };
        for _ in 0..10_000 {
            let d = rng.latency(&dist);
            assert!(d >= Duration::from_millis(10) && d <= Duration::from_millis(20));
        }
    }
}
