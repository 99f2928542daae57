//! Rate limits with GCRA (the generic cell rate algorithm): per token, from its configured limit,
//! and per source address for failed authentication attempts, so that guessing tokens is slow.
//!
//! One stored time per key ("theoretical arrival time"), so memory is bounded by the number of
//! active keys; keys whose budget has fully recovered are dropped when the table grows past its
//! bound. Times come from the engine's clock, in microseconds.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// Most keys kept before stale ones are dropped.
const MAX_KEYS: usize = 100_000;

/// A GCRA limiter over string keys.
#[derive(Default)]
pub struct Gcra {
    tat: Mutex<HashMap<String, i64>>,
}

/// A budget: `count` requests per `per`, all of which may come at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Requests per window.
    pub count: u32,
    /// The window.
    pub per: Duration,
}

impl Budget {
    fn emission_us(self) -> i64 {
        i64::try_from(self.per.as_micros() / u128::from(self.count.max(1))).unwrap_or(i64::MAX).max(1)
    }

    fn tolerance_us(self) -> i64 {
        self.emission_us().saturating_mul(i64::from(self.count.max(1)) - 1)
    }
}

fn wait(us: i64) -> Duration {
    Duration::from_micros(u64::try_from(us).unwrap_or(0))
}

impl Gcra {
    /// Spends one unit of `key`'s budget at `now_us`, or says how long to wait.
    pub fn check(&self, key: &str, budget: Budget, now_us: i64) -> Result<(), Duration> {
        let mut map = self.tat.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let tat = map.get(key).copied().unwrap_or(now_us).max(now_us);
        let over = tat - now_us - budget.tolerance_us();
        if over > 0 {
            return Err(wait(over));
        }
        if map.len() >= MAX_KEYS && !map.contains_key(key) {
            map.retain(|_, t| *t > now_us);
        }
        map.insert(key.to_owned(), tat + budget.emission_us());
        Ok(())
    }

    /// How long `key` must wait before its next unit, without spending one (`None`: no wait).
    pub fn peek(&self, key: &str, budget: Budget, now_us: i64) -> Option<Duration> {
        let map = self.tat.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let tat = map.get(key).copied()?.max(now_us);
        let over = tat - now_us - budget.tolerance_us();
        (over > 0).then(|| wait(over))
    }

    /// Forgets every key (a token's limit changed).
    pub fn forget(&self, key: &str) {
        self.tat.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_burst_then_paces() {
        let g = Gcra::default();
        let b = Budget { count: 3, per: Duration::from_secs(3) };
        let t0 = 1_000_000_000;
        assert!(g.check("k", b, t0).is_ok());
        assert!(g.check("k", b, t0).is_ok());
        assert!(g.check("k", b, t0).is_ok());
        assert_eq!(g.check("k", b, t0), Err(Duration::from_secs(1)));
        assert_eq!(g.peek("k", b, t0), Some(Duration::from_secs(1)));
        assert!(g.check("other", b, t0).is_ok(), "keys are independent");
        assert!(g.check("k", b, t0 + 1_000_000).is_ok(), "one unit back after 1s");
        assert!(g.check("k", b, t0 + 1_000_000).is_err());
        assert!(g.check("k", b, t0 + 10_000_000).is_ok());
        assert_eq!(g.peek("fresh", b, t0), None);
    }
}
