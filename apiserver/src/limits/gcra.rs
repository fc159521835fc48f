//! The generic cell rate algorithm: one "theoretical arrival time" per window answers whether a
//! request fits `limit` per `period` (a burst of up to `limit` is allowed), how many remain, and
//! when the next one fits. Pure, with the clock passed in, so it is tested without sleeping.

use std::time::Duration;

/// One limit: `limit` requests per `period`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub limit: u32,
    pub period: Duration,
}

impl Rate {
    /// The time one request costs.
    fn interval(&self) -> Duration {
        self.period / self.limit.max(1)
    }
}

/// The state of one window: the theoretical arrival time, as an offset from the limiter's
/// epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cell {
    tat: Duration,
}

/// The answer for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allowed {
        /// Requests that would still fit right now.
        remaining: u32,
        /// When the window is full again (all `limit` available).
        reset: Duration,
    },
    Denied {
        /// When the next request fits.
        retry_after: Duration,
    },
}

impl Cell {
    /// Decides a request arriving at `now` (since the epoch) and, if allowed, takes its cost.
    pub fn check(&mut self, rate: Rate, now: Duration) -> Decision {
        let interval = rate.interval();
        // A full window may be spent at once: the burst tolerance is the period less one cost.
        let tolerance = rate.period.saturating_sub(interval);
        let tat = self.tat.max(now);
        let allowed_at = tat.saturating_sub(tolerance);
        if now < allowed_at {
            return Decision::Denied { retry_after: allowed_at - now };
        }
        self.tat = tat + interval;
        let used = self.tat - now;
        let remaining = rate.period.saturating_sub(used).as_nanos() / interval.as_nanos().max(1);
        Decision::Allowed { remaining: u32::try_from(remaining).unwrap_or(u32::MAX), reset: used }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn a_burst_of_the_limit_passes_and_the_next_waits_one_interval() {
        let rate = Rate { limit: 4, period: SECOND };
        let mut cell = Cell::default();
        let now = Duration::from_secs(100);
        let remaining: Vec<u32> = (0..4)
            .map(|_| match cell.check(rate, now) {
                Decision::Allowed { remaining, .. } => remaining,
                Decision::Denied { .. } => panic!("within the burst"),
            })
            .collect();
        assert_eq!(remaining, vec![3, 2, 1, 0]);
        assert_eq!(cell.check(rate, now), Decision::Denied { retry_after: Duration::from_millis(250) });
        // A denied request costs nothing: a quarter second later exactly one fits again.
        assert!(matches!(cell.check(rate, now + Duration::from_millis(250)), Decision::Allowed { remaining: 0, .. }));
        assert!(matches!(cell.check(rate, now + Duration::from_millis(250)), Decision::Denied { .. }));
    }

    #[test]
    fn an_idle_window_refills_completely_and_no_more() {
        let rate = Rate { limit: 2, period: Duration::from_secs(60) };
        let mut cell = Cell::default();
        let start = Duration::from_secs(1000);
        assert!(matches!(cell.check(rate, start), Decision::Allowed { remaining: 1, .. }));
        assert!(matches!(cell.check(rate, start), Decision::Allowed { remaining: 0, .. }));
        let later = start + Duration::from_secs(3600);
        assert!(matches!(cell.check(rate, later), Decision::Allowed { remaining: 1, .. }));
        assert!(matches!(cell.check(rate, later), Decision::Allowed { remaining: 0, .. }));
        assert!(matches!(cell.check(rate, later), Decision::Denied { .. }));
    }

    #[test]
    fn a_steady_rate_at_the_limit_is_never_denied() {
        let rate = Rate { limit: 10, period: SECOND };
        let mut cell = Cell::default();
        for i in 0..1000u32 {
            let now = Duration::from_millis(5000 + u64::from(i) * 100);
            assert!(matches!(cell.check(rate, now), Decision::Allowed { .. }), "request {i}");
        }
    }
}
