//! [`Limits`]: what one client may do, and [`LimitsTable`]: every client's.

use std::collections::HashMap;
use std::sync::Arc;

use llm_tower_core::{ConfigError, ModelName};
use serde::{Deserialize, Serialize};

/// What one client may do: requests and tokens per minute, spend per day or month, models.
/// A limit left out does not hold.
///
/// ```
/// use llm_tower_limits::{Limits, Period};
///
/// let limits: Limits = serde_json::from_str(
///     r#"{"rpm": 600, "tpm": 200000, "budget": {"usd": 50, "per": "day"}, "models": ["gpt-4o-mini"]}"#,
/// ).unwrap();
/// limits.validate("client_auth.default_limits").unwrap();
/// assert_eq!(limits.budget.unwrap().per, Period::Day);
/// assert!(limits.allows_model("gpt-4o-mini") && !limits.allows_model("gpt-4o"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Requests per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u64>,
    /// Tokens per minute, input and output together (each request reserves an estimate when
    /// it is admitted, trued up when its usage is known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
    /// Spend per calendar day or month (UTC), priced with the configuration's `prices`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,
    /// The models it may ask for (default: any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<ModelName>>,
}

/// A spend limit: `usd` per `per`.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// US dollars.
    pub usd: f64,
    /// The calendar period it renews with (UTC).
    pub per: Period,
}

/// A budget's period: it renews at midnight UTC, or on the first of the month.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    /// A calendar day, UTC.
    Day,
    /// A calendar month, UTC.
    Month,
}

impl Limits {
    /// Checks the limits under the configuration path `field`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming the field: a limit of 0 (a key that may do nothing is
    /// a key to remove), a budget that is not a finite, positive amount.
    pub fn validate(&self, field: &str) -> Result<(), ConfigError> {
        for (name, limit) in [("rpm", self.rpm), ("tpm", self.tpm)] {
            if limit == Some(0) {
                return Err(ConfigError::invalid(
                    format!("{field}.{name}"),
                    "must be at least 1 (remove the key to let it do nothing)",
                ));
            }
        }
        if let Some(budget) = &self.budget
            && !(budget.usd.is_finite() && budget.usd > 0.0)
        {
            return Err(ConfigError::invalid(
                format!("{field}.budget.usd"),
                "must be a finite amount above 0",
            ));
        }
        Ok(())
    }

    /// Whether the client may ask for `model`.
    pub fn allows_model(&self, model: &str) -> bool {
        self.models
            .as_ref()
            .is_none_or(|models| models.iter().any(|allowed| &**allowed == model))
    }

    /// Whether admitting a request needs its body read (its tokens, its cost or its model).
    pub(crate) fn reads_body(&self) -> bool {
        self.tpm.is_some() || self.budget.is_some() || self.models.is_some()
    }
}

/// Every client's [`Limits`], by the name its key has (the [`Caller`](llm_tower_core::Caller)),
/// and the limits of clients not named.
///
/// ```
/// use llm_tower_limits::{Limits, LimitsTable};
///
/// let table = LimitsTable::new(
///     [("team-a".into(), Limits { rpm: Some(60), ..Limits::default() })],
///     Some(Limits { rpm: Some(10), ..Limits::default() }),
/// );
/// assert_eq!(table.of("team-a").unwrap().rpm, Some(60));
/// assert_eq!(table.of("team-b").unwrap().rpm, Some(10));
/// assert!(LimitsTable::default().of("team-a").is_none());
/// ```
#[derive(Clone, Debug, Default)]
pub struct LimitsTable {
    by_client: HashMap<Arc<str>, Arc<Limits>>,
    default: Option<Arc<Limits>>,
}

impl LimitsTable {
    /// The limits of these clients, and `default` for the others (`None`: they have none).
    pub fn new(
        clients: impl IntoIterator<Item = (Arc<str>, Limits)>,
        default: Option<Limits>,
    ) -> Self {
        Self {
            by_client: clients
                .into_iter()
                .map(|(name, limits)| (name, Arc::new(limits)))
                .collect(),
            default: default.map(Arc::new),
        }
    }

    /// The limits of client `name`.
    pub fn of(&self, name: &str) -> Option<&Arc<Limits>> {
        self.by_client.get(name).or(self.default.as_ref())
    }

    /// Whether no client has limits.
    pub fn is_empty(&self) -> bool {
        self.by_client.is_empty() && self.default.is_none()
    }
}
