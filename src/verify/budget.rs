//! The query budget: each provider account (merchant, shop, credential) may
//! be asked `[providers.<name>] queries_per_second` times a second, so that
//! one shop's flood spends its own allowance and never another's; and an
//! account the provider told to stop (Funpoint's 403: wait 30 minutes) is
//! paused. Per instance: with several instances each has its own budget.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

type Limiter = Arc<DefaultKeyedRateLimiter<String>>;

#[derive(Default)]
pub struct Budget {
    /// One limiter per rate (providers may be set to different rates).
    limiters: Mutex<HashMap<NonZeroU32, Limiter>>,
    paused: Mutex<HashMap<String, Instant>>,
}

impl Budget {
    /// Takes one query of `account`'s allowance; `Err(wait)` when there is
    /// none left now (or the account is paused).
    pub fn take(&self, account: &str, per_second: NonZeroU32) -> Result<(), Duration> {
        if let Ok(mut paused) = self.paused.lock() {
            match paused.get(account) {
                Some(until) if *until > Instant::now() => return Err(*until - Instant::now()),
                Some(_) => {
                    paused.remove(account);
                }
                None => {}
            }
        }
        let limiter = match self.limiters.lock() {
            Ok(mut l) => l
                .entry(per_second)
                .or_insert_with(|| Arc::new(RateLimiter::keyed(Quota::per_second(per_second))))
                .clone(),
            Err(_) => return Ok(()),
        };
        let key = account.to_owned();
        limiter.check_key(&key).map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// No query for `account` until `pause` has passed.
    pub fn pause(&self, account: &str, pause: Duration) {
        if let Ok(mut paused) = self.paused.lock() {
            paused.insert(account.to_owned(), Instant::now() + pause);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_account_spends_its_own_allowance() {
        let budget = Budget::default();
        let one = NonZeroU32::MIN;
        assert!(budget.take("funpoint:A", one).is_ok());
        assert!(budget.take("funpoint:A", one).is_err(), "the second query in the same second waits");
        assert!(budget.take("funpoint:B", one).is_ok(), "another merchant is not held up");
        budget.pause("funpoint:B", Duration::from_secs(1800));
        let wait = budget.take("funpoint:B", one).unwrap_err();
        assert!(wait > Duration::from_secs(1790), "{wait:?}");
    }
}
