//! What a [`HealthEvent`] looks like in Redis: one JSON object, the same in the key of a
//! cooldown and on the channel.
//!
//! ```text
//! {"event":"ejected","origin":"5f0c…","id":"azure-east/gpt-4o","at_ms":1764662370000,"until_ms":1764662400000,"retry_after":true,"ejections":1}
//! {"event":"restored","origin":"5f0c…","id":"azure-east/gpt-4o","at_ms":1764662401000}
//! {"event":"rate_limits","origin":"5f0c…","id":"azure-east/gpt-4o","at_ms":1764662402000,"requests":{"limit":60,"remaining":2,"reset_ms":1500},"tokens":{"limit":150000,"remaining":9000,"reset_ms":6000}}
//! ```
//!
//! A rate-limit window's `reset_ms` counts from `at_ms` (when the answer was read);
//! `limit`, and either window, are left out when the provider did not tell them.
//!
//! `origin` names the replica that sent it (random per process), so that a replica skips its
//! own events when they come back on the channel. Deployment ids are names from the
//! configuration, never keys or URLs.
//!
//! **Signed.** With `health_store.secret`, the object ends with a MAC of everything before
//! it, as 64 lowercase hex digits:
//!
//! ```text
//! {"event":"restored","origin":"5f0c…","id":"azure-east/gpt-4o","at_ms":1764662401000,"mac":"9b1e…"}
//! ```
//!
//! The MAC is HMAC-SHA256 under the secret of the prefix, a newline (`\n`) and the exact
//! bytes of the event unsigned: the text with its `,"mac":"…"` taken out, which covers
//! every field, origin, id and times included (`mac.rs`). A reader with the secret takes
//! only a text that ends exactly so and whose MAC matches, and then parses the bytes the
//! MAC covers, never the others; anything else is rejected unparsed. The scripts (which
//! hold no secret) and a reader without one parse the whole object and ignore `mac`, so
//! signed and unsigned replicas read each other's events, and a Redis key holds the same
//! bytes as the message.
//!
//! **Bounded.** An event is a few hundred bytes. A message or a key's value over
//! [`MAX_LEN`] is rejected before anything else looks at it. The `redis` client hands over
//! only whole messages, so one is in memory before it can be refused: a PUBLISH over
//! Redis's pub/sub output limit (32 MB by default) is never handed over, because Redis
//! cuts the subscription instead, and the store reconnects. Keys are read with at most
//! `MAX_LEN + 1` bytes each (`scripts.rs`).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::HealthEvent;
use llm_tower_core::{RateLimits, RateWindow};
use serde::{Deserialize, Serialize};

use super::mac::{MAC_LEN, Signer};

/// The largest message or key value taken (an event is under 1 KiB).
pub(super) const MAX_LEN: usize = 64 * 1024;

/// What ends a signed event, before and after the MAC's hex digits.
const MAC_FIELD: &str = ",\"mac\":\"";
const MAC_END: &str = "\"}";

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
    RateLimits {
        origin: String,
        id: String,
        at_ms: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        requests: Option<Window>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tokens: Option<Window>,
    },
}

/// A [`RateWindow`] on the wire.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Window {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    limit: Option<u64>,
    remaining: u64,
    reset_ms: u64,
}

impl From<RateWindow> for Window {
    fn from(window: RateWindow) -> Self {
        Self {
            limit: window.limit,
            remaining: window.remaining,
            reset_ms: window.reset.as_millis() as u64,
        }
    }
}

impl From<Window> for RateWindow {
    fn from(window: Window) -> Self {
        Self {
            limit: window.limit,
            remaining: window.remaining,
            reset: Duration::from_millis(window.reset_ms),
        }
    }
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

/// `event` from replica `origin`, as JSON, signed when there is a secret.
pub(super) fn encode(origin: &str, event: &HealthEvent, signer: Option<&Signer>) -> String {
    let text = unsigned(origin, event);
    let Some(signer) = signer else { return text };
    let mac = signer.sign(text.as_bytes());
    let mut signed = text;
    // The object's closing brace goes after the MAC.
    signed.pop();
    signed.push_str(MAC_FIELD);
    signed.push_str(&hex(&mac));
    signed.push_str(MAC_END);
    signed
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// `bytes` as lowercase hex digits.
pub(super) fn hex(bytes: &[u8]) -> String {
    let mut digits = String::with_capacity(2 * bytes.len());
    for byte in bytes {
        digits.push(char::from(HEX[usize::from(byte >> 4)]));
        digits.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    digits
}

fn unsigned(origin: &str, event: &HealthEvent) -> String {
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
        HealthEvent::RateLimits { id, at, limits } => Wire::RateLimits {
            origin,
            id: id.to_string(),
            at_ms: unix_ms(*at),
            requests: limits.requests.map(Window::from),
            tokens: limits.tokens.map(Window::from),
        },
    };
    serde_json::to_string(&wire).expect("plain fields serialise")
}

/// Why a message or a key's value was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Rejected {
    /// Over [`MAX_LEN`].
    TooLarge,
    /// A secret is set, and it does not end with a MAC.
    Unsigned,
    /// A secret is set, and its MAC is not the event's under it.
    BadlySigned,
    /// Not a health event (another program's message, a newer format).
    NotAnEvent,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::TooLarge => "larger than 64 KiB",
            Self::Unsigned => "without a MAC",
            Self::BadlySigned => "with a MAC that is not health_store.secret's",
            Self::NotAnEvent => "not a health event",
        })
    }
}

/// The event in `text` and the replica that sent it. With `signer`, only an event it
/// signed; without, any event, signed or not.
pub(super) fn open(
    text: &[u8],
    signer: Option<&Signer>,
) -> Result<(String, HealthEvent), Rejected> {
    if text.len() > MAX_LEN {
        return Err(Rejected::TooLarge);
    }
    let decoded = match signer {
        None => decode(text),
        Some(signer) => {
            let (body, mac) = split(text).ok_or(Rejected::Unsigned)?;
            if !signer.verify(&body, &mac) {
                return Err(Rejected::BadlySigned);
            }
            decode(&body)
        }
    };
    decoded.ok_or(Rejected::NotAnEvent)
}

/// The event unsigned (the bytes its MAC covers) and the MAC, when `text` ends with one.
fn split(text: &[u8]) -> Option<(Vec<u8>, [u8; MAC_LEN])> {
    let at = text
        .len()
        .checked_sub(MAC_FIELD.len() + 2 * MAC_LEN + MAC_END.len())?;
    let (head, tail) = text.split_at(at);
    let digits = tail
        .strip_prefix(MAC_FIELD.as_bytes())?
        .strip_suffix(MAC_END.as_bytes())?;
    let mut mac = [0; MAC_LEN];
    for (byte, pair) in mac.iter_mut().zip(digits.chunks_exact(2)) {
        let digit = |d: u8| HEX.iter().position(|&h| h == d);
        *byte = ((digit(pair[0])? << 4) | digit(pair[1])?) as u8;
    }
    let mut body = Vec::with_capacity(head.len() + 1);
    body.extend_from_slice(head);
    body.push(b'}');
    Some((body, mac))
}

/// The event in `text` and the replica that sent it; `None` for anything else.
fn decode(text: &[u8]) -> Option<(String, HealthEvent)> {
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
        Wire::RateLimits {
            origin,
            id,
            at_ms,
            requests,
            tokens,
        } => (
            origin,
            HealthEvent::RateLimits {
                id: id.into(),
                at: from_unix_ms(at_ms),
                limits: RateLimits {
                    requests: requests.map(RateWindow::from),
                    tokens: tokens.map(RateWindow::from),
                },
            },
        ),
    })
}

/// How long the key of an ejection or of rate limits lives: what is left of its cooldown,
/// or until its last window resets; at least 1 ms (a `PX` of zero is an error).
pub(super) fn ttl_ms(event: &HealthEvent, now: SystemTime) -> u64 {
    let left = event.remaining(now).unwrap_or_default();
    (left.as_millis() as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn signer() -> Signer {
        Signer::new(SECRET, "llm-tower")
    }

    fn restored() -> HealthEvent {
        let at = UNIX_EPOCH + Duration::from_millis(1_764_662_370_456);
        HealthEvent::Restored { id: "a".into(), at }
    }

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
            HealthEvent::RateLimits {
                id: "a".into(),
                at,
                limits: RateLimits {
                    requests: Some(RateWindow {
                        limit: Some(60),
                        remaining: 2,
                        reset: Duration::from_millis(1_500),
                    }),
                    tokens: Some(RateWindow {
                        limit: None,
                        remaining: 0,
                        reset: Duration::from_secs(6),
                    }),
                },
            },
            HealthEvent::RateLimits {
                id: "a".into(),
                at,
                limits: RateLimits::default(),
            },
        ];
        for event in events {
            for signer in [None, Some(&signer())] {
                let text = encode("r1", &event, signer);
                let opened = open(text.as_bytes(), signer);
                assert_eq!(opened, Ok(("r1".to_owned(), event.clone())), "{text}");
            }
        }
        assert_eq!(
            encode("r1", &restored(), None),
            r#"{"event":"restored","origin":"r1","id":"a","at_ms":1764662370456}"#
        );
        let told = r#"{"event":"rate_limits","origin":"r1","id":"a","at_ms":1,"requests":{"remaining":0,"reset_ms":20}}"#;
        let (_, event) = open(told.as_bytes(), None).unwrap();
        assert_eq!(encode("r1", &event, None), told);
    }

    #[test]
    fn a_signed_event_ends_with_the_mac_of_its_unsigned_bytes() {
        // The MAC computed apart: Python's `hmac.new(SECRET, b"llm-tower\n" + unsigned,
        // sha256)`.
        assert_eq!(
            encode("r1", &restored(), Some(&signer())),
            concat!(
                r#"{"event":"restored","origin":"r1","id":"a","at_ms":1764662370456,"#,
                r#""mac":"3e11500e09b6f6cf9914d7b5f1d7aa24c0080445962519d8d4486873fe5ef0ed"}"#
            )
        );
    }

    #[test]
    fn with_a_secret_only_its_signed_events_are_taken() {
        let signed = encode("r1", &restored(), Some(&signer()));
        let unsigned = encode("r1", &restored(), None);
        let other = encode("r1", &restored(), Some(&Signer::new(SECRET, "elsewhere")));
        let tampered = signed.replace("1764662370456", "1764662370457");
        let upper = signed.replace("3e11", "3E11");
        let short = signed.replace("3e11", "3e1");
        for (text, why) in [
            (unsigned.as_str(), Rejected::Unsigned),
            ("hello", Rejected::Unsigned),
            ("", Rejected::Unsigned),
            (&short, Rejected::Unsigned),
            (&upper, Rejected::Unsigned),
            (&other, Rejected::BadlySigned),
            (&tampered, Rejected::BadlySigned),
        ] {
            assert_eq!(open(text.as_bytes(), Some(&signer())), Err(why), "{text}");
        }
        // Without a secret, signed events are read like unsigned ones.
        assert!(open(signed.as_bytes(), None).is_ok());
        assert!(open(other.as_bytes(), None).is_ok());
    }

    #[test]
    fn a_signed_body_that_is_not_an_event_is_not_one() {
        let body = br#"{"event":"melted"}"#;
        let mac = hex(&signer().sign(body));
        let text = format!(r#"{{"event":"melted","mac":"{mac}"}}"#);
        assert_eq!(
            open(text.as_bytes(), Some(&signer())),
            Err(Rejected::NotAnEvent)
        );
    }

    #[test]
    fn a_text_over_the_limit_is_rejected_before_it_is_read() {
        let mut text = encode("r1", &restored(), Some(&signer()));
        let pad = " ".repeat(MAX_LEN - text.len());
        text.insert_str(1, &pad);
        assert_eq!(text.len(), MAX_LEN);
        // At the limit it is read (and here badly signed: the padding is not signed).
        assert_eq!(
            open(text.as_bytes(), Some(&signer())),
            Err(Rejected::BadlySigned)
        );
        assert!(open(text.as_bytes(), None).is_ok());
        text.insert(1, ' ');
        for signer in [None, Some(&signer())] {
            assert_eq!(open(text.as_bytes(), signer), Err(Rejected::TooLarge));
        }
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
            assert_eq!(
                open(text.as_bytes(), None),
                Err(Rejected::NotAnEvent),
                "{text}"
            );
        }
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
        // Rate limits: until the last window resets, counted from when they were read.
        let window = |secs| RateWindow {
            limit: None,
            remaining: 0,
            reset: Duration::from_secs(secs),
        };
        let limits = HealthEvent::RateLimits {
            id: "a".into(),
            at: now - Duration::from_secs(2),
            limits: RateLimits {
                requests: Some(window(5)),
                tokens: Some(window(20)),
            },
        };
        assert_eq!(ttl_ms(&limits, now), 18_000);
    }
}
