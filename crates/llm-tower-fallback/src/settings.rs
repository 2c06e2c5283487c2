//! The balancer's settings: one owner for each default and range check.

use std::time::Duration;

use llm_tower_core::{ConfigError, DEFAULT_MAX_BODY_BYTES};
use serde::{Deserialize, Serialize};

use crate::headroom::HeadroomSettings;

/// How the balancer picks among the available endpoints of the best priority tier.
///
/// ```
/// use llm_tower_fallback::Strategy;
///
/// let strategy: Strategy = serde_json::from_str("\"least_in_flight\"").unwrap();
/// assert_eq!(strategy, Strategy::LeastInFlight);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Each endpoint in turn.
    #[default]
    RoundRobin,
    /// Smooth weighted round-robin by `weight`.
    Weighted,
    /// The less busy of two endpoints drawn at random (power of two choices).
    LeastInFlight,
    /// The faster of two endpoints drawn at random: a peak-EWMA of the time to the first
    /// byte of their answers (decaying over `latency_decay`), times their attempts in
    /// flight + 1. A new or restored endpoint starts at its tier's median.
    LeastLatency,
}

/// What to do when every candidate endpoint is cooling down.
///
/// ```
/// use llm_tower_fallback::WhenAllUnhealthy;
///
/// assert_eq!(WhenAllUnhealthy::default(), WhenAllUnhealthy::TrySoonest);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenAllUnhealthy {
    /// Try the endpoint whose cooldown ends first rather than failing without trying.
    #[default]
    TrySoonest,
    /// Answer 503 with `Retry-After` without contacting anyone.
    Fail,
}

/// Everything the balancer can be told besides its endpoints. In a configuration file these
/// are top-level keys (`strategy`, `when_all_unhealthy`, `max_body_bytes`,
/// `unhealthy_threshold`, `max_cooldown`, `max_probe_interval`, `max_continuations`,
/// `latency_decay`, `headroom`).
///
/// ```
/// use std::time::Duration;
/// use llm_tower_fallback::{FallbackSettings, Strategy};
///
/// let settings = FallbackSettings {
///     strategy: Strategy::LeastInFlight,
///     max_cooldown: Duration::from_secs(30),
///     ..FallbackSettings::default()
/// };
/// settings.validate().unwrap();
/// let bad = FallbackSettings { unhealthy_threshold: 0, ..settings };
/// assert!(bad.validate().unwrap_err().to_string().starts_with("unhealthy_threshold"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FallbackSettings {
    /// Selection strategy (default `round_robin`).
    pub strategy: Strategy,
    /// Behaviour when every endpoint is cooling down (default `try_soonest`).
    pub when_all_unhealthy: WhenAllUnhealthy,
    /// Request bodies are buffered for replay up to this size (default 32 MiB); larger ones
    /// get 413 and nothing is sent upstream.
    pub max_body_bytes: usize,
    /// Consecutive exhausted requests before an endpoint is ejected (default 1).
    pub unhealthy_threshold: u32,
    /// Cap for escalating cooldowns and `Retry-After` hints (default 60 s, at most 24 h).
    #[serde(with = "llm_tower_core::duration")]
    pub max_cooldown: Duration,
    /// The longest wait between two probes of an ejected deployment (default 10 s), however
    /// far its cooldown escalated: a deployment that recovered is back in use within about
    /// this long, while failed probes still keep traffic away for the whole cooldown. An
    /// upstream's `Retry-After` is waited out in full.
    #[serde(with = "llm_tower_core::duration")]
    pub max_probe_interval: Duration,
    /// How many times one streamed answer may be continued on another deployment after its
    /// stream broke (default 1; 0: never). Only deployments with `continuation: prefill` are
    /// asked.
    pub max_continuations: u32,
    /// How fast `least_latency` forgets (default 10 s): the time constant of its moving
    /// average, and of the decay that lets a slow endpoint that gets no traffic be tried
    /// again.
    #[serde(with = "llm_tower_core::duration")]
    pub latency_decay: Duration,
    /// How little of a provider's rate-limit window may be left before a deployment is
    /// skipped until it resets (default 5 %).
    pub headroom: HeadroomSettings,
}

impl Default for FallbackSettings {
    fn default() -> Self {
        Self {
            strategy: Strategy::default(),
            when_all_unhealthy: WhenAllUnhealthy::default(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            unhealthy_threshold: 1,
            max_cooldown: Duration::from_secs(60),
            max_probe_interval: Self::DEFAULT_MAX_PROBE_INTERVAL,
            max_continuations: 1,
            latency_decay: Self::DEFAULT_LATENCY_DECAY,
            headroom: HeadroomSettings::default(),
        }
    }
}

impl FallbackSettings {
    /// The default `latency_decay`: 10 s, as tower's and Finagle's peak-EWMA use.
    pub const DEFAULT_LATENCY_DECAY: Duration = Duration::from_secs(10);

    /// The default `max_probe_interval`: 10 s.
    pub const DEFAULT_MAX_PROBE_INTERVAL: Duration = Duration::from_secs(10);

    /// Checks every setting.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_body_bytes == 0 {
            return Err(ConfigError::invalid("max_body_bytes", "must be at least 1"));
        }
        if self.unhealthy_threshold == 0 {
            return Err(ConfigError::invalid(
                "unhealthy_threshold",
                "must be at least 1",
            ));
        }
        ConfigError::check_cooldown("max_cooldown", self.max_cooldown)?;
        ConfigError::check_cooldown("max_probe_interval", self.max_probe_interval)?;
        ConfigError::check_cooldown("latency_decay", self.latency_decay)
    }
}
