//! The Lua scripts that change what Redis keeps, and the command that runs one for an
//! event. Each reads the key it may replace, so that a late or repeated event never
//! replaces a newer one, and publishes the event in the same step. And the script that
//! reads the keys back, bounded.
//!
//! The scripts hold no secret (anyone who can run `MONITOR` would read it), so they do not
//! check a stored event's MAC: a forged key can make them keep or tell less (a later
//! deadline they will not replace), never make a replica take the forgery.

use std::time::{Duration, SystemTime};

use crate::HealthEvent;

use super::names::Names;
use super::wire::{self, MAX_LEN};

/// What both scripts start with. `stored`: the event in a key, or `nil` when the value is
/// not one of ours (anything may be there). `kept`: sets a key, saying whether Redis took it
/// (under `maxmemory` with `noeviction` it refuses writes, not deletes or publishing; an
/// event is published first, so that the replicas listening hear it even then). Any other
/// refusal fails the script (`READONLY`: connected to a replica node, whose subscribers
/// are not the fleet).
const PRELUDE: &str = r"
local function stored(key)
  local text = redis.call('GET', key)
  if not text then return nil end
  local ok, event = pcall(cjson.decode, text)
  if ok and type(event) == 'table' then return event end
  return nil
end
local function kept(key, value, ttl)
  local reply = redis.pcall('SET', key, value, 'PX', ttl)
  if type(reply) == 'table' and reply['err'] then
    if string.find(reply['err'], 'OOM', 1, true) == 1 then return false end
    error(reply)
  end
  return true
end
";

/// What the scripts answer, but for 1 (told, and kept unless a newer word is): EJECT did not
/// tell an ejection because its key holds a later deadline; a script told an event but
/// Redis refused to keep it.
pub(super) const NOT_TOLD: i64 = 0;
pub(super) const NOT_KEPT: i64 = 2;

/// Unless the key of the ejection holds a later deadline, publishes the ejection and sets
/// the key. KEYS: the key, the channel; ARGV: the event, its deadline (ms since the epoch),
/// the key's TTL (ms).
const EJECT: &str = r"
local current = stored(KEYS[1])
if current and tonumber(current['until_ms']) and tonumber(current['until_ms']) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('PUBLISH', KEYS[2], ARGV[1])
if kept(KEYS[1], ARGV[1], ARGV[3]) then return 1 end
return 2
";

/// Deletes the key of an ejection unless it began after the restore, publishes the
/// restore, and keeps it (unless a later one is kept) for as long as that ejection had left
/// or `ARGV[3]`, whichever is longer. KEYS: the ejection's key, the channel, the restore's
/// key; ARGV: the event, when it answered (ms since the epoch), how long to keep it at
/// least (ms).
const RESTORE: &str = r"
local current = stored(KEYS[1])
local keep = tonumber(ARGV[3])
if not (current and tonumber(current['at_ms']) and tonumber(current['at_ms']) > tonumber(ARGV[2])) then
  local left = redis.call('PTTL', KEYS[1])
  if left > keep then keep = left end
  redis.call('DEL', KEYS[1])
end
redis.call('PUBLISH', KEYS[2], ARGV[1])
local last = stored(KEYS[3])
if last and tonumber(last['at_ms']) and tonumber(last['at_ms']) >= tonumber(ARGV[2]) then
  return 1
end
if kept(KEYS[3], ARGV[1], keep) then return 1 end
return 2
";

/// Publishes another word on a deployment's rate limits, and keeps it until its last window
/// resets unless the key holds one read as late. Every reading is published, whatever is
/// kept: a replica whose clock runs ahead must not silence the others, and each registry
/// compares what it hears itself. A stored word more than a minute ahead of Redis's clock
/// is taken for absent (planted, or from a clock far off). KEYS: the key, the channel;
/// ARGV: the event, when it was read (ms since the epoch), the key's TTL (ms).
const RATE_LIMITS: &str = r"
redis.call('PUBLISH', KEYS[2], ARGV[1])
local current = stored(KEYS[1])
local at = current and tonumber(current['at_ms'])
if at and at >= tonumber(ARGV[2]) then
  local time = redis.call('TIME')
  if at <= tonumber(time[1]) * 1000 + 60000 then return 1 end
end
if kept(KEYS[1], ARGV[1], ARGV[3]) then return 1 end
return 2
";

/// The least time a restore is kept for replicas that did not hear it, whatever the
/// configuration's `max_cooldown`.
const RESTORE_KEPT_AT_LEAST: Duration = Duration::from_secs(1);

/// The `EVAL` that tells `event` (encoded as `text`) and keeps it: `max_cooldown` is how
/// long a cooldown here can last, which a kept restore must outlive.
pub(super) fn command(
    names: &Names,
    text: &str,
    event: &HealthEvent,
    now: SystemTime,
    max_cooldown: Duration,
) -> redis::Cmd {
    let id = event.id().as_str();
    let mut script = redis::cmd("EVAL");
    match event {
        HealthEvent::Ejected { until, .. } => script
            .arg(format!("{PRELUDE}{EJECT}"))
            .arg(2)
            .arg(names.ejected(id))
            .arg(&names.channel)
            .arg(text)
            .arg(wire::unix_ms(*until))
            .arg(wire::ttl_ms(event, now)),
        HealthEvent::Restored { at, .. } => script
            .arg(format!("{PRELUDE}{RESTORE}"))
            .arg(3)
            .arg(names.ejected(id))
            .arg(&names.channel)
            .arg(names.restored(id))
            .arg(text)
            .arg(wire::unix_ms(*at))
            .arg(max_cooldown.max(RESTORE_KEPT_AT_LEAST).as_millis() as u64),
        HealthEvent::RateLimits { at, .. } => script
            .arg(format!("{PRELUDE}{RATE_LIMITS}"))
            .arg(2)
            .arg(names.rate_limits(id))
            .arg(&names.channel)
            .arg(text)
            .arg(wire::unix_ms(*at))
            .arg(wire::ttl_ms(event, now)),
    };
    script
}

/// Each key's value, at most `ARGV[1] + 1` bytes of it (`GETRANGE` ends are inclusive): one
/// that holds more is over [`MAX_LEN`] and rejected, and is not sent whole first, however
/// large someone made it. A key that is gone, or holds no string, reads as empty. KEYS: the
/// keys.
const READ: &str = r"
local values = {}
for i, key in ipairs(KEYS) do
  local value = redis.pcall('GETRANGE', key, 0, tonumber(ARGV[1]))
  if type(value) ~= 'string' then value = '' end
  values[i] = value
end
return values
";

/// The `EVAL` that reads `keys` (see [`READ`]).
pub(super) fn read(keys: &[String]) -> redis::Cmd {
    let mut script = redis::cmd("EVAL");
    script.arg(READ).arg(keys.len()).arg(keys).arg(MAX_LEN);
    script
}
