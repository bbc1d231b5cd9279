//! Rate limits per client address, per account (e-mail) and per user, with `governor`'s keyed
//! GCRA limiters: each key may spend its whole per-minute quota at once (the burst) and gets
//! one request back every `60 / quota` seconds.
//!
//! A request over a limit is answered 429 after a short hold ([`RateLimits::hold`],
//! `RATE_LIMIT_DELAY_MS`): a client that retries in a loop, as a flood does, then sends at
//! most one request per connection per hold instead of as many as the server can refuse, so
//! refusing a flood costs next to no CPU. Holds take one of `RATE_LIMIT_DELAY_SLOTS` slots
//! (a held request is a sleeping task and an open connection); with every slot taken the 429
//! goes out at once. The latency KPI does not count the hold.
//!
//! Memory: a limiter keeps one small state per key seen within the last minute;
//! [`RateLimits::forget_idle`] (run every minute by the server) drops keys that are back to
//! a full quota, so the state is bounded by the keys active in the last minute, which the
//! per-address limit bounds in turn.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::Semaphore;
use uuid::Uuid;

/// Requests per minute for each limit; 0 switches a limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// `RATE_LIMIT_AUTH_PER_ADDRESS_PER_MINUTE`, default 60: login and register requests
    /// per client address (an IPv6 client is its /64 network).
    pub auth_per_address: u32,
    /// `RATE_LIMIT_AUTH_PER_ACCOUNT_PER_MINUTE`, default 10: login and register requests per
    /// e-mail address from one client address (bounds password guessing on one account from
    /// one client). Keyed by account *and* address, so that failures from other addresses
    /// cannot lock the account's owner out: guessing from many addresses is bounded by
    /// each one's address limit and by the hashing limit instead.
    pub auth_per_account: u32,
    /// `RATE_LIMIT_SUGGESTIONS_PER_USER_PER_MINUTE`, default 120: suggestion requests per
    /// signed-in user (each one is a paid AI call).
    pub suggestions_per_user: u32,
    /// `RATE_LIMIT_DELAY_MS`, default 1000 (at most 10000; 0 answers at once): how long a
    /// request over a limit is held before its 429 (never longer than its Retry-After).
    pub delay: Duration,
    /// `RATE_LIMIT_DELAY_SLOTS`, default 1024: requests held at once; more are answered at
    /// once.
    pub delay_slots: usize,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            auth_per_address: 60,
            auth_per_account: 10,
            suggestions_per_user: 120,
            delay: Duration::from_secs(1),
            delay_slots: 1024,
        }
    }
}

/// The most `RATE_LIMIT_DELAY_SLOTS` accepted (each held request is a task and an open
/// connection).
pub const MAX_DELAY_SLOTS: usize = 65_536;

/// The longest `RATE_LIMIT_DELAY_MS` accepted: well under the idle timeout, and short enough
/// that a client which stops sending is not kept waiting for long.
pub const MAX_DELAY: Duration = Duration::from_secs(10);

/// The limit a request hit and when the client may try again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    /// The configuration variable of the limit.
    pub limit: &'static str,
    /// Its value (requests per minute).
    pub per_minute: u32,
    /// How long until one more request is allowed.
    pub retry_after: Duration,
}

impl Limited {
    /// `retry_after` in whole seconds, at least 1 (the `Retry-After` header's unit).
    pub fn retry_after_seconds(&self) -> u64 {
        retry_after_seconds(self.retry_after)
    }
}

/// A wait in whole seconds, rounded up, at least 1.
pub fn retry_after_seconds(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

struct Limit<K: Hash + Eq + Clone> {
    name: &'static str,
    per_minute: u32,
    limiter: DefaultKeyedRateLimiter<K>,
}

impl<K: Hash + Eq + Clone> Limit<K> {
    fn new(name: &'static str, per_minute: u32) -> Option<Self> {
        NonZeroU32::new(per_minute).map(|n| Self {
            name,
            per_minute,
            limiter: RateLimiter::keyed(Quota::per_minute(n)),
        })
    }

    fn check(&self, key: &K) -> Result<(), Limited> {
        self.limiter.check_key(key).map_err(|not_until| Limited {
            limit: self.name,
            per_minute: self.per_minute,
            retry_after: not_until.wait_time_from(DefaultClock::default().now()),
        })
    }

    fn forget_idle(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

fn check<K: Hash + Eq + Clone>(limit: Option<&Limit<K>>, key: &K) -> Result<(), Limited> {
    limit.map_or(Ok(()), |l| l.check(key))
}

/// The server's rate limiters.
pub struct RateLimits {
    auth_by_address: Option<Limit<IpAddr>>,
    auth_by_account: Option<Limit<(String, IpAddr)>>,
    suggestions_by_user: Option<Limit<Uuid>>,
    delay: Duration,
    holds: Arc<Semaphore>,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits").finish_non_exhaustive()
    }
}

/// The key of a client address: IPv4 addresses as they are, IPv6 addresses by their /64
/// network (one subscriber usually has a whole /64).
pub fn address_key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// The key of an account: the e-mail address trimmed and lower-cased, at most 254 bytes'
/// worth of characters (the longest valid address), so a key cannot be made large.
pub fn account_key(email: &str) -> String {
    email.trim().to_lowercase().chars().take(254).collect()
}

impl RateLimits {
    /// Limiters for `config`.
    pub fn new(config: RateLimitConfig) -> Self {
        Self {
            auth_by_address: Limit::new(
                "RATE_LIMIT_AUTH_PER_ADDRESS_PER_MINUTE",
                config.auth_per_address,
            ),
            auth_by_account: Limit::new(
                "RATE_LIMIT_AUTH_PER_ACCOUNT_PER_MINUTE",
                config.auth_per_account,
            ),
            suggestions_by_user: Limit::new(
                "RATE_LIMIT_SUGGESTIONS_PER_USER_PER_MINUTE",
                config.suggestions_per_user,
            ),
            delay: config.delay,
            holds: Arc::new(Semaphore::new(config.delay_slots)),
        }
    }

    /// Holds a request that got 429 for `RATE_LIMIT_DELAY_MS`, at most `retry_after`, when a
    /// slot is free; returns at once otherwise. True when it held.
    pub async fn hold(&self, retry_after: Duration) -> bool {
        let wait = self.delay.min(retry_after);
        if wait.is_zero() {
            return false;
        }
        let Ok(_slot) = self.holds.clone().try_acquire_owned() else {
            return false;
        };
        tokio::time::sleep(wait).await;
        true
    }

    /// A login or registration from `client` for `email`: the address limit first, then
    /// the limit of that account from that address.
    pub fn auth(&self, client: IpAddr, email: &str) -> Result<(), Limited> {
        let address = address_key(client);
        check(self.auth_by_address.as_ref(), &address)?;
        check(
            self.auth_by_account.as_ref(),
            &(account_key(email), address),
        )
    }

    /// A suggestion request by `user`.
    pub fn suggestions(&self, user: Uuid) -> Result<(), Limited> {
        check(self.suggestions_by_user.as_ref(), &user)
    }

    /// Drops the state of keys that are back to a full quota (run periodically).
    pub fn forget_idle(&self) {
        if let Some(l) = &self.auth_by_address {
            l.forget_idle();
        }
        if let Some(l) = &self.auth_by_account {
            l.forget_idle();
        }
        if let Some(l) = &self.suggestions_by_user {
            l.forget_idle();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_refused_request_is_held_while_a_slot_is_free_and_never_past_its_retry_after() {
        let limits = RateLimits::new(RateLimitConfig {
            delay: Duration::from_secs(1),
            delay_slots: 1,
            ..RateLimitConfig::default()
        });
        let limits = Arc::new(limits);
        let start = tokio::time::Instant::now();
        let held = tokio::spawn({
            let limits = limits.clone();
            async move { limits.hold(Duration::from_secs(30)).await }
        });
        tokio::task::yield_now().await;
        // The only slot is taken: the next one is answered at once.
        assert!(!limits.hold(Duration::from_secs(30)).await);
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert!(held.await.unwrap());
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        // Never longer than the Retry-After.
        let start = tokio::time::Instant::now();
        assert!(limits.hold(Duration::from_millis(300)).await);
        assert_eq!(start.elapsed(), Duration::from_millis(300));
        // Off.
        let off = RateLimits::new(RateLimitConfig {
            delay: Duration::ZERO,
            ..RateLimitConfig::default()
        });
        assert!(!off.hold(Duration::from_secs(30)).await);
    }

    #[test]
    fn a_key_gets_its_quota_then_waits_and_other_keys_do_not() {
        let limits = RateLimits::new(RateLimitConfig {
            auth_per_address: 100,
            auth_per_account: 3,
            suggestions_per_user: 0,
            ..RateLimitConfig::default()
        });
        let client: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            limits.auth(client, "A@Example.com ").unwrap();
        }
        let limited = limits.auth(client, "a@example.com").unwrap_err();
        assert_eq!(limited.limit, "RATE_LIMIT_AUTH_PER_ACCOUNT_PER_MINUTE");
        assert_eq!(limited.per_minute, 3);
        // One request back every 20 s.
        assert!(limited.retry_after <= Duration::from_secs(20));
        assert!(limited.retry_after_seconds() >= 1);
        limits.auth(client, "b@example.com").unwrap();
        // The same account from another address has a quota of its own, so nobody can lock
        // an account's owner out by failing from elsewhere.
        limits
            .auth("198.51.100.9".parse().unwrap(), "a@example.com")
            .unwrap();
        // 0 switches a limit off.
        for _ in 0..1000 {
            limits.suggestions(Uuid::nil()).unwrap();
        }
    }

    #[test]
    fn the_address_limit_comes_first_and_ipv6_counts_by_network() {
        let limits = RateLimits::new(RateLimitConfig {
            auth_per_address: 2,
            auth_per_account: 100,
            suggestions_per_user: 0,
            ..RateLimitConfig::default()
        });
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        limits.auth(a, "x@example.com").unwrap();
        limits.auth(b, "y@example.com").unwrap();
        let limited = limits.auth(a, "z@example.com").unwrap_err();
        assert_eq!(limited.limit, "RATE_LIMIT_AUTH_PER_ADDRESS_PER_MINUTE");
        limits
            .auth("2001:db8:1:3::1".parse().unwrap(), "z@example.com")
            .unwrap();
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_seconds(Duration::ZERO), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_seconds(Duration::from_secs(20)), 20);
    }

    #[test]
    fn keys_are_bounded_and_normalised() {
        assert_eq!(account_key("  A@B.es "), "a@b.es");
        assert_eq!(account_key(&"x".repeat(10_000)).len(), 254);
        assert_eq!(
            address_key("::ffff:192.0.2.7".parse().unwrap()),
            "192.0.2.7".parse::<IpAddr>().unwrap()
        );
    }
}
