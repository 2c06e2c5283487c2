//! [`HeadroomSettings`]: how little of a provider's rate-limit window may be left before a
//! deployment is skipped until the window resets (`headroom: { min: 5% }`).

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Steering ahead of trouble: a deployment whose provider's last answer said less than `min`
/// of a rate-limit window (requests or tokens) is left is skipped, like a cooling one, until
/// that window resets — no 429 has to happen first. When every deployment is skipped, the one
/// whose window resets first is tried (`when_all_unhealthy: try_soonest`).
///
/// ```
/// use llm_tower_fallback::{HeadroomSettings, Share};
///
/// let settings: HeadroomSettings = serde_json::from_str(r#"{"min": "2.5%"}"#).unwrap();
/// assert_eq!(settings.min, Share::from_fraction(0.025).unwrap());
/// let settings: HeadroomSettings = serde_json::from_str(r#"{"min": 0.1}"#).unwrap();
/// assert_eq!(settings.min.fraction(), 0.1);
/// assert_eq!(HeadroomSettings::default().min.to_string(), "5%");
/// assert!(serde_json::from_str::<HeadroomSettings>(r#"{"min": "120%"}"#).is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeadroomSettings {
    /// The share of a window below which the deployment is skipped (default 5 %; 0: only
    /// when nothing is left). A fraction (`0.05`) or a percentage (`"5%"`).
    pub min: Share,
}

impl Default for HeadroomSettings {
    fn default() -> Self {
        Self {
            min: Share::from_fraction(llm_tower_health::DEFAULT_HEADROOM_MIN).unwrap_or(Share(0)),
        }
    }
}

/// A share of a whole, from 0 to 100 %, kept exactly (in millionths) so that settings
/// compare equal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Share(u32);

const WHOLE: u32 = 1_000_000;

impl Share {
    /// `fraction` (0 to 1) as a share; `None` outside.
    pub fn from_fraction(fraction: f64) -> Option<Self> {
        (0.0..=1.0)
            .contains(&fraction)
            .then(|| Self((fraction * f64::from(WHOLE)).round() as u32))
    }

    /// The share as a fraction (0 to 1).
    pub fn fraction(self) -> f64 {
        f64::from(self.0) / f64::from(WHOLE)
    }
}

impl fmt::Display for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.fraction() * 100.0)
    }
}

impl Serialize for Share {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Share {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ShareVisitor;

        impl Visitor<'_> for ShareVisitor {
            type Value = Share;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a fraction from 0 to 1 (0.05) or a percentage (\"5%\")")
            }

            fn visit_f64<E: de::Error>(self, value: f64) -> Result<Share, E> {
                Share::from_fraction(value)
                    .ok_or_else(|| E::custom(format!("{value} is not from 0 to 1")))
            }

            fn visit_u64<E: de::Error>(self, value: u64) -> Result<Share, E> {
                self.visit_f64(value as f64)
            }

            fn visit_i64<E: de::Error>(self, value: i64) -> Result<Share, E> {
                self.visit_f64(value as f64)
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Share, E> {
                let bad = || E::custom(format!("`{text}` is not a percentage from 0% to 100%"));
                let number = text.trim().strip_suffix('%').ok_or_else(bad)?;
                let percent: f64 = number.trim().parse().map_err(|_| bad())?;
                Share::from_fraction(percent / 100.0).ok_or_else(bad)
            }
        }

        deserializer.deserialize_any(ShareVisitor)
    }
}
