//! What a [`HealthEvent`] looks like in Redis: one JSON object, the same in the key of a
//! cooldown and on the channel.
//!
//! ```text
//! {"event":"ejected","origin":"5f0c…","id":"azure-east/gpt-4o","at_ms":1764662370000,"until_ms":1764662400000,"retry_after":true,"ejections":1}
//! {"event":"restored","origin":"5f0c…","id":"azure-east/gpt-4o","at_ms":1764662401000}
//! ```
//!
//! `origin` names the replica that sent it (random per process), so that a replica skips its
//! own events when they come back on the channel. Deployment ids are names from the
//! configuration, never keys or URLs.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use llm_tower_fallback::HealthEvent;
use serde::{Deserialize, Serialize};

/// Keys and channel under a prefix.
#[derive(Clone, Debug)]
pub(super) struct Names {
    /// Before the deployment id in the key of a cooldown.
    ejected: String,
    /// Before the deployment id in the key of its last restore.
    restored: String,
    /// Where events are published.
    pub(super) channel: String,
}

impl Names {
    pub(super) fn new(prefix: &str) -> Self {
        Self {
            ejected: format!("{prefix}:ejected:"),
            restored: format!("{prefix}:restored:"),
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

    /// The key that keeps `event`.
    pub(super) fn key_of(&self, event: &HealthEvent) -> String {
        match event {
            HealthEvent::Ejected { id, .. } => self.ejected(id.as_str()),
            HealthEvent::Restored { id, .. } => self.restored(id.as_str()),
        }
    }

    /// Match every key of a restore, and every key of a cooldown (the prefix has no glob
    /// characters: validated), in the order they are read: restores first, so that a
    /// restore read late cannot end a cooldown that began after it and was read first.
    pub(super) fn patterns(&self) -> [String; 2] {
        [format!("{}*", self.restored), format!("{}*", self.ejected)]
    }
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
#[serde(tag = "event", rename_all = "snake_case")]
enum Wire {
    Ejected {
        origin: String,
        id: String,
        at_ms: u64,
        until_ms: u64,
        retry_after: bool,
        ejections: u32,
    },
    Restored {
        origin: String,
        id: String,
        at_ms: u64,
    },
}

/// Milliseconds since the Unix epoch (0 before it).
pub(super) fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

fn from_unix_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// `event` from replica `origin`, as JSON.
pub(super) fn encode(origin: &str, event: &HealthEvent) -> String {
    let origin = origin.to_owned();
    let wire = match event {
        HealthEvent::Ejected {
            id,
            at,
            until,
            retry_after,
            ejections,
        } => Wire::Ejected {
            origin,
            id: id.to_string(),
            at_ms: unix_ms(*at),
            until_ms: unix_ms(*until),
            retry_after: *retry_after,
            ejections: *ejections,
        },
        HealthEvent::Restored { id, at } => Wire::Restored {
            origin,
            id: id.to_string(),
            at_ms: unix_ms(*at),
        },
    };
    serde_json::to_string(&wire).expect("plain fields serialise")
}

/// The event in `text` and the replica that sent it; `None` for anything else (another
/// program's message on the channel, a newer format).
pub(super) fn decode(text: &[u8]) -> Option<(String, HealthEvent)> {
    Some(match serde_json::from_slice(text).ok()? {
        Wire::Ejected {
            origin,
            id,
            at_ms,
            until_ms,
            retry_after,
            ejections,
        } => (
            origin,
            HealthEvent::Ejected {
                id: id.into(),
                at: from_unix_ms(at_ms),
                until: from_unix_ms(until_ms),
                retry_after,
                ejections,
            },
        ),
        Wire::Restored { origin, id, at_ms } => (
            origin,
            HealthEvent::Restored {
                id: id.into(),
                at: from_unix_ms(at_ms),
            },
        ),
    })
}

/// How long the key of an ejection lives: what is left of its cooldown, at least 1 ms (a
/// `PX` of zero is an error).
pub(super) fn ttl_ms(event: &HealthEvent, now: SystemTime) -> u64 {
    let left = event.remaining(now).unwrap_or_default();
    (left.as_millis() as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_to_the_millisecond() {
        let at = UNIX_EPOCH + Duration::from_millis(1_764_662_370_456);
        let until = UNIX_EPOCH + Duration::from_millis(1_764_662_400_123);
        let events = [
            HealthEvent::Ejected {
                id: "azure-east/gpt-4o".into(),
                at,
                until,
                retry_after: true,
                ejections: 3,
            },
            HealthEvent::Restored { id: "a".into(), at },
        ];
        for event in events {
            let text = encode("r1", &event);
            assert_eq!(decode(text.as_bytes()), Some(("r1".to_owned(), event)));
        }
        assert_eq!(
            encode("r1", &HealthEvent::Restored { id: "a".into(), at }),
            r#"{"event":"restored","origin":"r1","id":"a","at_ms":1764662370456}"#
        );
    }

    #[test]
    fn anything_else_on_the_channel_is_ignored() {
        for text in [
            "",
            "hello",
            "{}",
            r#"{"event":"melted","id":"a"}"#,
            r#"{"event":"restored","id":"a"}"#,
        ] {
            assert_eq!(decode(text.as_bytes()), None, "{text}");
        }
    }

    #[test]
    fn names_live_under_the_prefix() {
        let names = Names::new("llm-tower");
        assert_eq!(names.ejected("a/gpt-4o"), "llm-tower:ejected:a/gpt-4o");
        assert_eq!(names.restored("a/gpt-4o"), "llm-tower:restored:a/gpt-4o");
        assert_eq!(
            names.patterns(),
            ["llm-tower:restored:*", "llm-tower:ejected:*"]
        );
        assert_eq!(names.channel, "llm-tower:events");
        let restored = HealthEvent::Restored {
            id: "a".into(),
            at: SystemTime::now(),
        };
        assert_eq!(names.key_of(&restored), "llm-tower:restored:a");
    }

    #[test]
    fn an_ejection_key_lives_as_long_as_its_cooldown() {
        let now = SystemTime::now();
        let event = |left| HealthEvent::Ejected {
            id: "a".into(),
            at: now,
            until: now + left,
            retry_after: false,
            ejections: 1,
        };
        assert_eq!(ttl_ms(&event(Duration::from_secs(30)), now), 30_000);
        assert_eq!(ttl_ms(&event(Duration::ZERO), now), 1);
    }
}
