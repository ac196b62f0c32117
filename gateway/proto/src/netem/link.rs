//! What one direction of a virtual link does to a message: latency, loss, duplication and
//! reordering, all drawn from the world's seeded RNG.

use std::time::Duration;

use crate::rng::CoreRng;

/// A latency distribution.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Latency {
    /// Every message takes exactly this long.
    Fixed(Duration),
    /// Uniform in `[min, max]`: jitter that reorders datagrams whose send times are closer than
    /// `max - min`.
    Uniform {
        /// Fastest delivery.
        min: Duration,
        /// Slowest delivery.
        max: Duration,
    },
    /// `min` plus an exponentially distributed extra delay with mean `mean_extra`: the usual
    /// model of queueing delay, with a long tail.
    ShiftedExp {
        /// Propagation delay, the floor.
        min: Duration,
        /// Mean of the queueing delay added on top.
        mean_extra: Duration,
    },
}

impl Latency {
    /// Draws one delay.
    pub fn sample(&self, rng: &mut CoreRng) -> Duration {
        match *self {
            Latency::Fixed(d) => d,
            Latency::Uniform { min, max } => {
                if max <= min {
                    return min;
                }
                let span = (max - min).as_nanos() as u64;
                min + Duration::from_nanos(rng.below(span + 1))
            }
            Latency::ShiftedExp { min, mean_extra } => {
                // Inverse transform; `1 - unit()` is in (0, 1], so the log is finite.
                let u = 1.0 - rng.unit();
                let extra = -u.ln() * mean_extra.as_secs_f64();
                // Cap the tail at 1000 means so one sample cannot stall a test for hours.
                let extra = extra.min(mean_extra.as_secs_f64() * 1000.0);
                min + Duration::from_secs_f64(extra)
            }
        }
    }
}

/// Behaviour of one direction of a link. Probabilities are in `[0, 1]`.
///
/// On reliable transports (TCP, TLS) only the latency applies and delivery stays in order per
/// (sender, receiver, transport): the byte stream below hides loss and reordering.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkConfig {
    /// One-way delay.
    pub latency: Latency,
    /// Probability that a datagram is dropped.
    pub loss: f64,
    /// Probability that a datagram is delivered twice (the copy gets its own latency).
    pub duplicate: f64,
    /// Probability that a datagram is held back by `reorder_delay` on top of its latency, so
    /// that datagrams sent after it overtake it.
    pub reorder: f64,
    /// Extra delay of a reordered datagram.
    pub reorder_delay: Duration,
    /// Bursty loss on top of `loss` (mobile handovers, congested Wi-Fi); `None`: losses are
    /// independent.
    pub burst: Option<BurstLoss>,
}

/// A Gilbert–Elliott channel: the link flips between a good state (losing with
/// [`LinkConfig::loss`]) and a bad state (losing with `loss_in_bad`). Each datagram first
/// moves the chain one step, so the mean burst length is `1 / leave_bad` datagrams.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BurstLoss {
    /// Probability per datagram of moving from good to bad.
    pub enter_bad: f64,
    /// Probability per datagram of moving from bad back to good.
    pub leave_bad: f64,
    /// Loss probability while bad.
    pub loss_in_bad: f64,
}

impl LinkConfig {
    /// A perfect link with a fixed one-way delay.
    pub fn fixed(latency: Duration) -> Self {
        Self {
            latency: Latency::Fixed(latency),
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::ZERO,
            burst: None,
        }
    }

    /// Sets the latency distribution.
    pub fn latency(mut self, latency: Latency) -> Self {
        self.latency = latency;
        self
    }

    /// Sets the loss probability.
    pub fn loss(mut self, p: f64) -> Self {
        self.loss = p;
        self
    }

    /// Sets the duplication probability.
    pub fn duplicate(mut self, p: f64) -> Self {
        self.duplicate = p;
        self
    }

    /// Adds Gilbert–Elliott burst loss.
    pub fn burst(mut self, burst: BurstLoss) -> Self {
        self.burst = Some(burst);
        self
    }

    /// Sets the reordering probability and the extra delay of a reordered datagram.
    pub fn reorder(mut self, p: f64, extra: Duration) -> Self {
        self.reorder = p;
        self.reorder_delay = extra;
        self
    }
}

impl Default for LinkConfig {
    /// 20 ms one way, nothing lost.
    fn default() -> Self {
        Self::fixed(Duration::from_millis(20))
    }
}

/// Decides whether one datagram is lost, stepping the link's burst state `bad`.
pub(crate) fn lose(rng: &mut CoreRng, link: &LinkConfig, bad: &mut bool) -> bool {
    let Some(b) = link.burst else {
        return chance(rng, link.loss);
    };
    *bad = if *bad {
        !chance(rng, b.leave_bad)
    } else {
        chance(rng, b.enter_bad)
    };
    chance(rng, if *bad { b.loss_in_bad } else { link.loss })
}

/// Draws `true` with probability `p`.
pub(crate) fn chance(rng: &mut CoreRng, p: f64) -> bool {
    p > 0.0 && rng.unit() < p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_samples_stay_in_range() {
        let mut rng = CoreRng::from_seed(5);
        let ms = Duration::from_millis;
        let u = Latency::Uniform {
            min: ms(10),
            max: ms(30),
        };
        let e = Latency::ShiftedExp {
            min: ms(10),
            mean_extra: ms(5),
        };
        let mut sum = Duration::ZERO;
        for _ in 0..10_000 {
            let d = u.sample(&mut rng);
            assert!(d >= ms(10) && d <= ms(30));
            let d = e.sample(&mut rng);
            assert!(d >= ms(10));
            sum += d - ms(10);
        }
        // Mean of the exponential part within 10 % of 5 ms over 10,000 draws.
        let mean = sum.as_secs_f64() / 10_000.0;
        assert!((mean - 0.005).abs() < 0.0005, "mean {mean}");
        assert_eq!(Latency::Fixed(ms(7)).sample(&mut rng), ms(7));
    }

    #[test]
    fn burst_loss_clusters_losses() {
        let mut rng = CoreRng::from_seed(8);
        let burst = BurstLoss {
            enter_bad: 0.02,
            leave_bad: 0.2,
            loss_in_bad: 1.0,
        };
        let link = LinkConfig::default().burst(burst);
        let mut bad = false;
        let lost: Vec<bool> = (0..50_000)
            .map(|_| lose(&mut rng, &link, &mut bad))
            .collect();
        let n = lost.iter().filter(|&&l| l).count();
        // Stationary share of the bad state: 0.02 / (0.02 + 0.2) ≈ 9 %.
        assert!((3500..5500).contains(&n), "{n}");
        // Mean run of consecutive losses ≈ 1 / leave_bad = 5, far above independent loss.
        let runs = lost.windows(2).filter(|w| w[0] && !w[1]).count().max(1);
        let mean_run = n as f64 / runs as f64;
        assert!((4.0..6.5).contains(&mean_run), "{mean_run}");
    }

    #[test]
    fn chance_matches_probability() {
        let mut rng = CoreRng::from_seed(6);
        let hits = (0..20_000).filter(|_| chance(&mut rng, 0.2)).count();
        assert!((3600..4400).contains(&hits), "{hits}");
        assert!(!(0..1000).any(|_| chance(&mut rng, 0.0)));
    }
}
