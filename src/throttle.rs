//! Per-source-address rate limits (governor): refused callbacks (unroutable,
//! rejected), and failed admin logins. A client sending genuine, routable,
//! verified callbacks is never slowed by these; one flooding junk is, and
//! what it can make the store keep is bounded by it.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

pub struct Throttle {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    /// Addresses shut out after using up their allowance (see [`Self::fail`]).
    blocked: Mutex<HashMap<IpAddr, Instant>>,
}

/// How long an address that used up its allowance of failures is shut out.
const BLOCK: Duration = Duration::from_secs(60);

impl Throttle {
    /// `n` per minute per address, a burst of `n` allowed.
    pub fn per_minute(n: u32) -> Self {
        let n = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        Self { limiter: RateLimiter::keyed(Quota::per_minute(n)), blocked: Mutex::new(HashMap::new()) }
    }

    /// Counts a failure (a wrong admin token) against `ip`; past its
    /// allowance the address is shut out for a minute.
    pub fn fail(&self, ip: Option<IpAddr>) {
        if !self.allow(ip)
            && let Ok(mut blocked) = self.blocked.lock()
        {
            blocked.insert(key(ip), Instant::now() + BLOCK);
        }
    }

    /// Is `ip` shut out now? (Then its request is not even looked at, so
    /// that guessing cannot go on at full speed behind the 429s.)
    pub fn is_blocked(&self, ip: Option<IpAddr>) -> bool {
        let Ok(mut blocked) = self.blocked.lock() else { return false };
        match blocked.get(&key(ip)) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                blocked.remove(&key(ip));
                false
            }
            None => false,
        }
    }

    /// Takes one from `ip`'s allowance; `false` when it has none left. An
    /// IPv6 client is counted by its /64 (one host holds the whole prefix);
    /// an unknown address shares one allowance.
    pub fn allow(&self, ip: Option<IpAddr>) -> bool {
        self.limiter.check_key(&key(ip)).is_ok()
    }

    /// Forgets addresses whose allowance is full again, and ended blocks
    /// (bounded memory).
    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        if let Ok(mut blocked) = self.blocked.lock() {
            let now = Instant::now();
            blocked.retain(|_, until| *until > now);
        }
    }
}

fn key(ip: Option<IpAddr>) -> IpAddr {
    match ip {
        Some(IpAddr::V6(v6)) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        Some(v4) => v4,
        None => IpAddr::from([0, 0, 0, 0]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_has_its_own_allowance_and_v6_counts_by_prefix() {
        let t = Throttle::per_minute(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(t.allow(Some(a)) && t.allow(Some(a)));
        assert!(!t.allow(Some(a)));
        assert!(t.allow(Some(b)));
        let v6a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let v6b: IpAddr = "2001:db8:1:2::ffff".parse().unwrap();
        assert!(t.allow(Some(v6a)) && t.allow(Some(v6b)));
        assert!(!t.allow(Some(v6a)), "one /64 shares one allowance");
        t.forget_idle();
    }

    #[test]
    fn failures_past_the_allowance_shut_an_address_out() {
        let t = Throttle::per_minute(2);
        let a: IpAddr = "192.0.2.9".parse().unwrap();
        t.fail(Some(a));
        t.fail(Some(a));
        assert!(!t.is_blocked(Some(a)));
        t.fail(Some(a));
        assert!(t.is_blocked(Some(a)));
        assert!(!t.is_blocked(Some("192.0.2.10".parse().unwrap())));
    }
}
