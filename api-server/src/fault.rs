//! Fault injection for release testing: added latency and an error rate on chosen routes.
//! Off unless configured, so a "bad version" can be run for real against the gates.

use std::time::Duration;

/// What to inject.
#[derive(Debug, Clone, Default)]
pub struct FaultConfig {
    /// Added to every matching request (`FAULT_LATENCY_MS`).
    pub latency: Duration,
    /// Share of matching requests answered with 500 (`FAULT_ERROR_RATE`, 0..=1).
    pub error_rate: f64,
    /// Route templates or path prefixes that match (`FAULT_ROUTES`, comma separated);
    /// empty means every `/v1` route.
    pub routes: Vec<String>,
}

impl FaultConfig {
    /// Whether anything is injected at all.
    pub fn enabled(&self) -> bool {
        !self.latency.is_zero() || self.error_rate > 0.0
    }

    /// Whether a request to `path` (with route template `route`) is affected.
    pub fn matches(&self, route: &str, path: &str) -> bool {
        if !self.enabled() {
            return false;
        }
        if self.routes.is_empty() {
            return path.starts_with("/v1/");
        }
        self.routes
            .iter()
            .any(|r| r == route || path.starts_with(r.as_str()))
    }

    /// Whether this request fails, given a uniform random number in [0, 1).
    pub fn fails(&self, roll: f64) -> bool {
        roll < self.error_rate
    }
}

/// A uniform random number in [0, 1) from the OS generator (through a v4 UUID's random bits).
pub fn roll() -> f64 {
    let bits = uuid::Uuid::new_v4().as_u128() >> 75; // 53 random bits
    #[allow(clippy::cast_precision_loss)]
    let roll = bits as f64 / (1u64 << 53) as f64;
    roll
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_by_default_and_scoped_to_routes_when_set() {
        let off = FaultConfig::default();
        assert!(!off.matches("/v1/lists", "/v1/lists"));
        let all = FaultConfig {
            error_rate: 0.5,
            ..FaultConfig::default()
        };
        assert!(all.matches("/v1/lists", "/v1/lists"));
        assert!(!all.matches("/health", "/health"));
        let some = FaultConfig {
            latency: Duration::from_millis(5),
            routes: vec!["/v1/lists/{list_id}".to_owned()],
            ..FaultConfig::default()
        };
        assert!(some.matches("/v1/lists/{list_id}", "/v1/lists/abc"));
        assert!(!some.matches("/v1/lists", "/v1/lists"));
    }

    #[test]
    fn error_rate_bounds_and_rolls_are_uniform_enough() {
        let cfg = FaultConfig {
            error_rate: 0.25,
            ..FaultConfig::default()
        };
        assert!(cfg.fails(0.1) && !cfg.fails(0.3));
        let n = 20_000;
        let failed = (0..n).filter(|_| cfg.fails(roll())).count();
        let share = failed as f64 / f64::from(n);
        assert!((0.22..0.28).contains(&share), "share {share}");
        assert!((0..1000).map(|_| roll()).all(|r| (0.0..1.0).contains(&r)));
    }
}
