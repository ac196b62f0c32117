//! The APNs provider-token age policy.
//!
//! APNs wants the provider token (an ES256 JWT) refreshed no more often than once per
//! 20 minutes and at least once per 60 minutes: too often → 429
//! `TooManyProviderTokenUpdates`, too old → 403 `ExpiredProviderToken`. This state machine
//! decides when the shell mints a new token. It sees only `now`, so the rules are tested on
//! injected time.
//!
//! Invariant: two mints are always at least [`MIN_REFRESH_INTERVAL`] apart, even when the
//! server claims the token expired earlier (clock skew on either side): in that case the
//! caller is told to wait until the earliest allowed refresh.

use std::time::{Duration, Instant};

/// Apple's lower bound between two token refreshes.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(20 * 60);
/// Apple's upper bound on a token's age.
pub const MAX_TOKEN_AGE: Duration = Duration::from_secs(60 * 60);

/// What the shell should do to authorize the next request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenAction {
    /// Use the current token.
    Reuse,
    /// Mint a new token, then call [`ProviderTokenPolicy::handle_minted`].
    Mint,
}

/// What to do after a 403 `ExpiredProviderToken`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiredDecision {
    /// Mint a new token now and retry.
    MintNow,
    /// The token is younger than the refresh interval: retry no earlier than this instant
    /// (when a refresh becomes allowed).
    WaitUntil(Instant),
}

/// Provider-token age policy for one credential; see the module documentation.
#[derive(Debug, Clone)]
pub struct ProviderTokenPolicy {
    reuse_for: Duration,
    minted_at: Option<Instant>,
    /// Set by an `ExpiredProviderToken` answer: the next `poll_token` mints regardless of age.
    force: bool,
}

impl Default for ProviderTokenPolicy {
    fn default() -> Self {
        Self::new(Duration::from_secs(45 * 60))
    }
}

impl ProviderTokenPolicy {
    /// A policy that reuses a token for `reuse_for`, clamped to the allowed 20–60 minutes
    /// (with a minute of margin at the top for clock skew).
    pub fn new(reuse_for: Duration) -> Self {
        let reuse_for = reuse_for.clamp(
            MIN_REFRESH_INTERVAL,
            MAX_TOKEN_AGE - Duration::from_secs(60),
        );
        Self {
            reuse_for,
            minted_at: None,
            force: false,
        }
    }

    /// How long a token is reused.
    pub fn reuse_for(&self) -> Duration {
        self.reuse_for
    }

    /// When the current token was minted.
    pub fn minted_at(&self) -> Option<Instant> {
        self.minted_at
    }

    /// Whether the next request needs a fresh token.
    pub fn poll_token(&self, now: Instant) -> TokenAction {
        match self.minted_at {
            None => TokenAction::Mint,
            Some(t) if self.force || now.saturating_duration_since(t) >= self.reuse_for => {
                // Even when forced, never refresh twice within the minimum interval.
                if now.saturating_duration_since(t) >= MIN_REFRESH_INTERVAL {
                    TokenAction::Mint
                } else {
                    TokenAction::Reuse
                }
            }
            Some(_) => TokenAction::Reuse,
        }
    }

    /// Records that a token was minted at `now`.
    pub fn handle_minted(&mut self, now: Instant) {
        self.minted_at = Some(now);
        self.force = false;
    }

    /// Records a 403 `ExpiredProviderToken` for a token minted at `token_minted_at` (so that
    /// answers to requests sent with an older token do not trigger a second refresh).
    pub fn handle_expired(&mut self, now: Instant, token_minted_at: Instant) -> ExpiredDecision {
        let Some(current) = self.minted_at else {
            return ExpiredDecision::MintNow;
        };
        if token_minted_at < current {
            // Already replaced since that request went out: just retry with the new one.
            return ExpiredDecision::WaitUntil(now);
        }
        let earliest = current + MIN_REFRESH_INTERVAL;
        if now >= earliest {
            self.force = true;
            ExpiredDecision::MintNow
        } else {
            self.force = true;
            ExpiredDecision::WaitUntil(earliest)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn reuse_window_is_clamped() {
        assert_eq!(
            ProviderTokenPolicy::new(Duration::ZERO).reuse_for(),
            20 * MIN
        );
        assert_eq!(
            ProviderTokenPolicy::new(10 * 60 * MIN).reuse_for(),
            59 * MIN
        );
        assert_eq!(ProviderTokenPolicy::default().reuse_for(), 45 * MIN);
    }

    #[test]
    fn mints_first_then_reuses_until_age() {
        let t0 = crate::netem::test_epoch();
        let mut p = ProviderTokenPolicy::default();
        assert_eq!(p.poll_token(t0), TokenAction::Mint);
        p.handle_minted(t0);
        assert_eq!(p.poll_token(t0 + 44 * MIN), TokenAction::Reuse);
        assert_eq!(p.poll_token(t0 + 45 * MIN), TokenAction::Mint);
        p.handle_minted(t0 + 45 * MIN);
        assert_eq!(p.poll_token(t0 + 46 * MIN), TokenAction::Reuse);
    }

    #[test]
    fn expired_refreshes_but_never_twice_within_20_minutes() {
        let t0 = crate::netem::test_epoch();
        let mut p = ProviderTokenPolicy::default();
        p.handle_minted(t0);
        // Server says expired at 25 min (clock skew): refresh allowed.
        assert_eq!(
            p.handle_expired(t0 + 25 * MIN, t0),
            ExpiredDecision::MintNow
        );
        assert_eq!(p.poll_token(t0 + 25 * MIN), TokenAction::Mint);
        p.handle_minted(t0 + 25 * MIN);
        // A late answer for a request that used the old token: no second refresh.
        assert_eq!(
            p.handle_expired(t0 + 26 * MIN, t0),
            ExpiredDecision::WaitUntil(t0 + 26 * MIN)
        );
        assert_eq!(p.poll_token(t0 + 26 * MIN), TokenAction::Reuse);
        // The new token is rejected 5 minutes later: wait until 20 minutes after its mint.
        assert_eq!(
            p.handle_expired(t0 + 30 * MIN, t0 + 25 * MIN),
            ExpiredDecision::WaitUntil(t0 + 45 * MIN)
        );
        assert_eq!(p.poll_token(t0 + 44 * MIN), TokenAction::Reuse);
        assert_eq!(p.poll_token(t0 + 45 * MIN), TokenAction::Mint);
    }

    #[test]
    fn mints_are_never_closer_than_20_minutes_over_a_long_run() {
        // Drive the policy with a request every 30 s and an "expired" answer every 7th minute
        // for six hours; record every mint.
        let t0 = crate::netem::test_epoch();
        let mut p = ProviderTokenPolicy::new(25 * MIN);
        let mut mints = Vec::new();
        let mut t = t0;
        while t < t0 + 360 * MIN {
            if p.poll_token(t) == TokenAction::Mint {
                p.handle_minted(t);
                mints.push(t);
            }
            let secs = t.duration_since(t0).as_secs();
            if secs.is_multiple_of(420) {
                let minted = p.minted_at().unwrap();
                let _ = p.handle_expired(t, minted);
            }
            t += Duration::from_secs(30);
        }
        assert!(mints.len() > 10);
        for w in mints.windows(2) {
            let gap = w[1] - w[0];
            assert!(gap >= MIN_REFRESH_INTERVAL, "gap {gap:?}");
            assert!(gap <= 25 * MIN, "token reused past its window: {gap:?}");
        }
    }
}
