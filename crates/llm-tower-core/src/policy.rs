//! Retry policies with pixiu's names and defaults.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How an endpoint retries a retryable outcome. Configured as
/// `{ name: NoRetry | CountBased | ExponentialBackoff, config: { ... } }`.
///
/// `times` counts retries: `times: 2` means at most three attempts.
///
/// ```
/// use std::time::Duration;
/// use llm_tower_core::RetryPolicy;
///
/// let policy: RetryPolicy = serde_json::from_str(r#"{"name": "ExponentialBackoff", "config": {"times": 3}}"#).unwrap();
/// assert_eq!(policy.max_retries(), 3);
/// assert_eq!(policy.backoff_ceiling(1), Duration::from_millis(200));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub enum RetryPolicy {
    /// Never retry.
    NoRetry,
    /// Retry immediately, up to `times` times.
    CountBased(CountBased),
    /// Retry with exponential backoff and full jitter.
    ExponentialBackoff(ExponentialBackoff),
}

/// Settings of [`RetryPolicy::CountBased`].
///
/// ```
/// use llm_tower_core::{CountBased, RetryPolicy};
///
/// let policy = RetryPolicy::CountBased(CountBased { times: 1 });
/// assert_eq!(policy.max_retries(), 1);
/// assert!(policy.backoff_ceiling(0).is_zero());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CountBased {
    /// Retries after the first attempt (default 2).
    pub times: u32,
}

impl Default for CountBased {
    fn default() -> Self {
        Self { times: 2 }
    }
}

/// Settings of [`RetryPolicy::ExponentialBackoff`]: the delay before retry `n` (0-based) is
/// drawn uniformly from `0..=min(max_interval, initial_interval * multiplier^n)`.
///
/// ```
/// use std::time::Duration;
/// use llm_tower_core::{ExponentialBackoff, RetryPolicy};
///
/// let policy = RetryPolicy::ExponentialBackoff(ExponentialBackoff {
///     max_interval: Duration::from_millis(300),
///     ..ExponentialBackoff::default()
/// });
/// assert_eq!(policy.backoff_ceiling(5), Duration::from_millis(300));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ExponentialBackoff {
    /// Retries after the first attempt (default 2).
    pub times: u32,
    /// Delay cap for the first retry (default 100 ms).
    pub initial_interval: Duration,
    /// Largest delay cap (default 5 s).
    pub max_interval: Duration,
    /// Growth factor per retry (default 2.0, at least 1.0).
    pub multiplier: f64,
}

impl Default for ExponentialBackoff {
    fn default() -> Self {
        Self {
            times: 2,
            initial_interval: Duration::from_millis(100),
            max_interval: Duration::from_secs(5),
            multiplier: 2.0,
        }
    }
}

impl Default for RetryPolicy {
    /// `ExponentialBackoff` with its defaults (what an endpoint without a policy gets).
    fn default() -> Self {
        Self::ExponentialBackoff(ExponentialBackoff::default())
    }
}

/// The most retries a policy may configure; more would only multiply load on a failing upstream.
const MAX_TIMES: u32 = 100;

impl RetryPolicy {
    /// The number of retries allowed after the first attempt.
    pub fn max_retries(&self) -> u32 {
        match self {
            Self::NoRetry => 0,
            Self::CountBased(c) => c.times,
            Self::ExponentialBackoff(e) => e.times,
        }
    }

    /// The upper bound of the delay before retry `retry` (0-based), before jitter.
    pub fn backoff_ceiling(&self, retry: u32) -> Duration {
        match self {
            Self::NoRetry | Self::CountBased(_) => Duration::ZERO,
            Self::ExponentialBackoff(e) => {
                let exp = i32::try_from(retry).unwrap_or(i32::MAX);
                let secs = e.initial_interval.as_secs_f64() * e.multiplier.powi(exp);
                Duration::try_from_secs_f64(secs)
                    .unwrap_or(e.max_interval)
                    .min(e.max_interval)
            }
        }
    }

    /// The policy's own longest delay, if it has one (`max_interval`).
    pub fn max_interval(&self) -> Option<Duration> {
        match self {
            Self::ExponentialBackoff(e) => Some(e.max_interval),
            _ => None,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.max_retries() > MAX_TIMES {
            return Err(format!("config.times must be at most {MAX_TIMES}"));
        }
        if let Self::ExponentialBackoff(e) = self {
            if !(e.multiplier.is_finite() && e.multiplier >= 1.0) {
                return Err("config.multiplier must be a finite number of at least 1.0".into());
            }
            if e.initial_interval > e.max_interval {
                return Err("config.initial_interval must not exceed config.max_interval".into());
            }
            if e.max_interval > crate::MAX_COOLDOWN_LIMIT {
                return Err("config.max_interval must be at most 24h".into());
            }
        }
        Ok(())
    }
}

#[derive(Serialize, Deserialize)]
enum PolicyName {
    NoRetry,
    CountBased,
    ExponentialBackoff,
}

#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicyConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    times: Option<u32>,
    #[serde(
        default,
        with = "crate::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    initial_interval: Option<Duration>,
    #[serde(
        default,
        with = "crate::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    max_interval: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    multiplier: Option<f64>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    name: PolicyName,
    #[serde(default)]
    config: RawPolicyConfig,
}

impl<'de> Deserialize<'de> for RetryPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let raw = RawPolicy::deserialize(deserializer)?;
        let c = raw.config;
        Ok(match raw.name {
            PolicyName::NoRetry => {
                if c.times.is_some()
                    || c.initial_interval.is_some()
                    || c.max_interval.is_some()
                    || c.multiplier.is_some()
                {
                    return Err(D::Error::custom("NoRetry takes no config"));
                }
                Self::NoRetry
            }
            PolicyName::CountBased => {
                if c.initial_interval.is_some()
                    || c.max_interval.is_some()
                    || c.multiplier.is_some()
                {
                    return Err(D::Error::custom(
                        "CountBased takes only `times` (it retries without delay)",
                    ));
                }
                Self::CountBased(CountBased {
                    times: c.times.unwrap_or(CountBased::default().times),
                })
            }
            PolicyName::ExponentialBackoff => {
                let d = ExponentialBackoff::default();
                Self::ExponentialBackoff(ExponentialBackoff {
                    times: c.times.unwrap_or(d.times),
                    initial_interval: c.initial_interval.unwrap_or(d.initial_interval),
                    max_interval: c.max_interval.unwrap_or(d.max_interval),
                    multiplier: c.multiplier.unwrap_or(d.multiplier),
                })
            }
        })
    }
}

impl Serialize for RetryPolicy {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (name, config) = match *self {
            Self::NoRetry => (PolicyName::NoRetry, RawPolicyConfig::default()),
            Self::CountBased(c) => (
                PolicyName::CountBased,
                RawPolicyConfig {
                    times: Some(c.times),
                    ..RawPolicyConfig::default()
                },
            ),
            Self::ExponentialBackoff(e) => (
                PolicyName::ExponentialBackoff,
                RawPolicyConfig {
                    times: Some(e.times),
                    initial_interval: Some(e.initial_interval),
                    max_interval: Some(e.max_interval),
                    multiplier: Some(e.multiplier),
                },
            ),
        };
        RawPolicy { name, config }.serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_ceiling_grows_and_caps() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff_ceiling(0), Duration::from_millis(100));
        assert_eq!(p.backoff_ceiling(1), Duration::from_millis(200));
        assert_eq!(p.backoff_ceiling(5), Duration::from_millis(3200));
        assert_eq!(p.backoff_ceiling(6), Duration::from_secs(5));
        assert_eq!(p.backoff_ceiling(10_000), Duration::from_secs(5));
        assert_eq!(
            RetryPolicy::CountBased(CountBased::default()).backoff_ceiling(3),
            Duration::ZERO
        );
    }

    #[test]
    fn names_and_defaults() {
        let p: RetryPolicy = serde_json::from_str(r#"{"name":"CountBased"}"#).unwrap();
        assert_eq!(p, RetryPolicy::CountBased(CountBased { times: 2 }));
        let p: RetryPolicy = serde_json::from_str(
            r#"{"name":"ExponentialBackoff","config":{"times":4,"max_interval":"1s"}}"#,
        )
        .unwrap();
        assert_eq!(
            p,
            RetryPolicy::ExponentialBackoff(ExponentialBackoff {
                times: 4,
                max_interval: Duration::from_secs(1),
                ..ExponentialBackoff::default()
            })
        );
        let p: RetryPolicy = serde_json::from_str(r#"{"name":"NoRetry"}"#).unwrap();
        assert_eq!(p.max_retries(), 0);
        let err = serde_json::from_str::<RetryPolicy>(r#"{"name":"Forever"}"#).unwrap_err();
        assert!(
            err.to_string().contains("unknown variant `Forever`"),
            "{err}"
        );
        let err = serde_json::from_str::<RetryPolicy>(
            r#"{"name":"CountBased","config":{"multiplier":2}}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("only `times`"), "{err}");
        // Round trip.
        let back: RetryPolicy = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
    }
}
