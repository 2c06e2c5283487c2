//! Where the store keeps what it tells, under `health_store.prefix`: a key per deployment
//! for its cooldown, its last restore and its provider's last word on rate limits, and the
//! channel every event is published on.

use crate::HealthEvent;

/// Keys and channel under a prefix.
#[derive(Clone, Debug)]
pub(super) struct Names {
    /// Before the deployment id in the key of a cooldown.
    ejected: String,
    /// Before the deployment id in the key of its last restore.
    restored: String,
    /// Before the deployment id in the key of its provider's last word on rate limits.
    rate_limits: String,
    /// Where events are published.
    pub(super) channel: String,
}

impl Names {
    pub(super) fn new(prefix: &str) -> Self {
        Self {
            ejected: format!("{prefix}:ejected:"),
            restored: format!("{prefix}:restored:"),
            rate_limits: format!("{prefix}:rate_limits:"),
            channel: format!("{prefix}:events"),
        }
    }

    /// The key holding `id`'s cooldown while it lasts.
    pub(super) fn ejected(&self, id: &str) -> String {
        format!("{}{id}", self.ejected)
    }

    /// The key holding `id`'s last restore, for replicas that were not listening when it
    /// was published.
    pub(super) fn restored(&self, id: &str) -> String {
        format!("{}{id}", self.restored)
    }

    /// The key holding what `id`'s provider last said of its rate limits, until its last
    /// window resets.
    pub(super) fn rate_limits(&self, id: &str) -> String {
        format!("{}{id}", self.rate_limits)
    }

    /// The key that keeps `event`.
    pub(super) fn key_of(&self, event: &HealthEvent) -> String {
        match event {
            HealthEvent::Ejected { id, .. } => self.ejected(id.as_str()),
            HealthEvent::Restored { id, .. } => self.restored(id.as_str()),
            HealthEvent::RateLimits { id, .. } => self.rate_limits(id.as_str()),
        }
    }

    /// Match every key of a restore, of a cooldown and of rate limits (the prefix has no
    /// glob characters: validated), in the order they are read: restores before cooldowns,
    /// so that a restore read late cannot end a cooldown that began after it and was read
    /// first.
    pub(super) fn patterns(&self) -> [String; 3] {
        [
            format!("{}*", self.restored),
            format!("{}*", self.ejected),
            format!("{}*", self.rate_limits),
        ]
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    #[test]
    fn names_live_under_the_prefix() {
        let names = Names::new("llm-tower");
        assert_eq!(names.ejected("a/gpt-4o"), "llm-tower:ejected:a/gpt-4o");
        assert_eq!(names.restored("a/gpt-4o"), "llm-tower:restored:a/gpt-4o");
        assert_eq!(
            names.patterns(),
            [
                "llm-tower:restored:*",
                "llm-tower:ejected:*",
                "llm-tower:rate_limits:*"
            ]
        );
        assert_eq!(names.channel, "llm-tower:events");
        let restored = HealthEvent::Restored {
            id: "a".into(),
            at: SystemTime::now(),
        };
        assert_eq!(names.key_of(&restored), "llm-tower:restored:a");
    }
}
