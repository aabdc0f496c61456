//! Exponential backoff with full jitter, for the retries the SDK does not do for us:
//! DynamoDB's `UnprocessedKeys`, and the per-entry failures of batch calls
//! ([`super::batch`]).
//!
//! Full jitter (a uniform delay in `[0, min(cap, base * 2^n)]`) spreads out Lambdas that
//! were throttled together, so they do not come back in lockstep (AWS Architecture Blog,
//! "Exponential Backoff And Jitter").

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The ceiling of the first delay.
    pub base: Duration,
    /// No delay is ever longer than this.
    pub cap: Duration,
    /// Calls in a row that may fail before giving up (the first call included).
    pub max_attempts: u32,
}

impl Default for Backoff {
    /// At most 50 + 100 + ... + 2000 ms ≈ 5 s of sleep before giving up: well inside a
    /// Lambda timeout, long enough to ride out a throttling burst.
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(50),
            cap: Duration::from_secs(2),
            max_attempts: 8,
        }
    }
}

impl Backoff {
    /// The longest delay before retry number `retry` (0 for the first retry).
    pub fn ceiling(&self, retry: u32) -> Duration {
        // 2^20 * base is already far past any sensible cap; stop before overflow.
        let factor = 1u32 << retry.min(20);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// A random delay in `[0, ceiling(retry)]`.
    pub fn delay(&self, retry: u32) -> Duration {
        self.ceiling(retry).mul_f64(fastrand::f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_double_from_base_up_to_cap() {
        let b = Backoff {
            base: Duration::from_millis(50),
            cap: Duration::from_millis(1000),
            max_attempts: 10,
        };
        let got: Vec<u128> = (0..7).map(|n| b.ceiling(n).as_millis()).collect();
        assert_eq!(got, [50, 100, 200, 400, 800, 1000, 1000]);
        assert_eq!(
            b.ceiling(u32::MAX),
            Duration::from_millis(1000),
            "no overflow on huge retry counts"
        );
    }

    #[test]
    fn delays_are_jittered_within_the_ceiling() {
        let b = Backoff::default();
        let delays: Vec<Duration> = (0..200).map(|_| b.delay(3)).collect();
        assert!(delays.iter().all(|d| *d <= b.ceiling(3)));
        let distinct: std::collections::HashSet<_> = delays.iter().collect();
        assert!(
            distinct.len() > 100,
            "full jitter spreads delays, got {} distinct of 200",
            distinct.len()
        );
    }
}
