//! [`Hedge`]: when a request whose first answer is late is sent to another deployment as
//! well (`hedge: { after: 2s, max_percent: 5 }`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ConfigError;

/// A hedge: when an attempt on this endpoint has no first body byte `after` it was sent, the
/// same request goes to the next deployment too (as fallback would choose it: healthy, not
/// tried, with headroom); the first to send a byte is the answer and the other is
/// cancelled. At most one hedge per request, never once bytes reached the client, and at
/// most `max_percent` of this endpoint's requests over the last ten seconds.
///
/// ```
/// use std::time::Duration;
/// use llm_tower_core::Hedge;
///
/// let hedge: Hedge = serde_json::from_str(r#"{"after": "2s"}"#).unwrap();
/// assert_eq!((hedge.after, hedge.max_percent), (Duration::from_secs(2), 5));
/// hedge.validate("endpoints[0].hedge").unwrap();
/// let bad = Hedge { max_percent: 0, ..hedge };
/// assert!(bad.validate("endpoints[0].hedge").unwrap_err().to_string().contains("max_percent"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hedge {
    /// How long the first byte may take before the hedge is sent.
    #[serde(with = "crate::duration")]
    pub after: Duration,
    /// The most requests hedged, in percent of the endpoint's requests (default 5).
    #[serde(default = "default_max_percent")]
    pub max_percent: u32,
}

fn default_max_percent() -> u32 {
    5
}

impl Hedge {
    /// Checks the hedge under the configuration path `field`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming `{field}.after` (above zero, at most 24 h) or
    /// `{field}.max_percent` (1 to 100).
    pub fn validate(&self, field: &str) -> Result<(), ConfigError> {
        ConfigError::check_timeout(format!("{field}.after"), Some(self.after))?;
        if !(1..=100).contains(&self.max_percent) {
            return Err(ConfigError::invalid(
                format!("{field}.max_percent"),
                "must be from 1 to 100",
            ));
        }
        Ok(())
    }
}
