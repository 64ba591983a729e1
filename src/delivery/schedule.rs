//! What follows a failed attempt: the next wait from `delivery.retry`, with
//! ±10% jitter, stretched to a tenant's longer `Retry-After`; `dead` once
//! the waits run out (N waits give N+1 attempts).

use std::time::Duration;

use crate::store::{Outcome, ms};

/// The outcome of failed attempt `n` (1-based) at `now_ms`. `jitter` is a
/// number in [0, 1) (random in production, fixed in tests).
pub fn next_outcome(n: u32, retry: &[Duration], retry_after: Option<Duration>, now_ms: i64, jitter: f64) -> Outcome {
    let Some(&wait) = usize::try_from(n).ok().and_then(|n| n.checked_sub(1)).and_then(|i| retry.get(i)) else {
        return Outcome::Dead;
    };
    let factor = 0.9 + 0.2 * jitter.clamp(0.0, 1.0);
    let mut wait = wait.mul_f64(factor);
    if let Some(asked) = retry_after {
        // Honoured when longer, but never beyond the longest configured wait:
        // a tenant cannot push its own deliveries out indefinitely.
        let cap = retry.iter().max().copied().unwrap_or_default();
        wait = wait.max(asked.min(cap));
    }
    Outcome::RetryAt(now_ms + ms(wait))
}

/// `Retry-After` in seconds (the HTTP-date form is not used by tenants we know).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn n_waits_give_n_plus_one_attempts() {
        let retry = [S(10), S(60)];
        assert_eq!(next_outcome(1, &retry, None, 0, 0.5), Outcome::RetryAt(10_000));
        assert_eq!(next_outcome(2, &retry, None, 0, 0.5), Outcome::RetryAt(60_000));
        assert_eq!(next_outcome(3, &retry, None, 0, 0.5), Outcome::Dead);
        assert_eq!(next_outcome(1, &[], None, 0, 0.5), Outcome::Dead);
        assert_eq!(next_outcome(0, &retry, None, 0, 0.5), Outcome::Dead);
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let retry = [S(100)];
        assert_eq!(next_outcome(1, &retry, None, 0, 0.0), Outcome::RetryAt(90_000));
        assert_eq!(next_outcome(1, &retry, None, 0, 0.999_999), Outcome::RetryAt(109_999));
        for i in 0..100 {
            let Outcome::RetryAt(at) = next_outcome(1, &retry, None, 0, f64::from(i) / 100.0) else { panic!() };
            assert!((90_000..=110_000).contains(&at), "{at}");
        }
    }

    #[test]
    fn a_longer_retry_after_wins_up_to_the_longest_wait() {
        let retry = [S(10), S(3600)];
        assert_eq!(next_outcome(1, &retry, Some(S(120)), 0, 0.5), Outcome::RetryAt(120_000));
        assert_eq!(next_outcome(1, &retry, Some(S(1)), 0, 0.5), Outcome::RetryAt(10_000));
        assert_eq!(next_outcome(1, &retry, Some(S(999_999)), 0, 0.5), Outcome::RetryAt(3_600_000));
        assert_eq!(parse_retry_after(" 120 "), Some(S(120)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }
}
