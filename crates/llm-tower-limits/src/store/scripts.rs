//! The Lua scripts the store runs: admitting a request, settling it, reading a client's
//! standing. Each is atomic in Redis, so that a count is never read in one round trip and
//! written in another.
//!
//! A bucket is a hash `{level, at}` (`at` in ms on Redis's clock, `TIME`, so that replicas
//! with skewed clocks fill it alike), filled at the limit per minute up to the limit, as
//! `bucket.rs` fills one in the process; its key expires when it would be full again, and a
//! missing bucket is a full one. A budget is a number of USD spent, in a key of its period.

use std::sync::LazyLock;

use redis::Script;

/// Bucket arithmetic, as `bucket.rs` does it in the process.
const PRELUDE: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local DAY = 86400000
local function level(key, limit)
  local kept = redis.call('HMGET', key, 'level', 'at')
  local lvl, at = tonumber(kept[1]), tonumber(kept[2])
  if not lvl or not at then return limit end
  return math.min(limit, lvl + math.max(0, now - at) * limit / 60000)
end
local function wait(lvl, amount, limit)
  local missing = math.min(amount, limit) - lvl
  if missing <= 0 then return 0 end
  return math.min(DAY, math.ceil(missing * 60000 / limit))
end
local function save(key, lvl, limit)
  local full_in = wait(lvl, limit, limit)
  if full_in <= 0 then
    redis.call('DEL', key)
    return
  end
  redis.call('HSET', key, 'level', lvl, 'at', now)
  redis.call('PEXPIRE', key, full_in)
end
local function standing(lvl, limit)
  return math.floor(math.max(lvl, 0)), wait(lvl, limit, limit)
end
local function micro(usd)
  return math.floor(usd * 1000000 + 0.5)
end
";

/// KEYS: the requests bucket, the tokens bucket, the budget's key. ARGV: rpm, tpm, the
/// tokens to reserve (at most tpm), the budget (0: none), the cost to reserve, the budget
/// key's TTL (ms). Returns `{0, requests left, ms to full, tokens left, ms to full, spent}`
/// (-1: no such limit; spent in millionths of a USD, after the reservation), or a refusal:
/// `{1, ms}` requests, `{2, ms}` tokens, `{3, spent}` budget.
const ADMIT: &str = r"
local rpm, tpm, tokens = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local budget, cost = tonumber(ARGV[4]), tonumber(ARGV[5])
local requests, tokens_level
if rpm > 0 then
  requests = level(KEYS[1], rpm)
  if requests < 1 then return {1, wait(requests, 1, rpm)} end
end
if tpm > 0 then
  tokens_level = level(KEYS[2], tpm)
  if tokens_level < math.min(tokens, tpm) then return {2, wait(tokens_level, tokens, tpm)} end
end
local spent = 0
if budget > 0 then
  spent = tonumber(redis.call('GET', KEYS[3])) or 0
  if spent + cost > budget then return {3, micro(spent)} end
  spent = tonumber(redis.call('INCRBYFLOAT', KEYS[3], ARGV[5]))
  redis.call('PEXPIRE', KEYS[3], ARGV[6])
end
local reply = {0, -1, 0, -1, 0, micro(spent)}
if rpm > 0 then
  save(KEYS[1], requests - 1, rpm)
  reply[2], reply[3] = standing(requests - 1, rpm)
end
if tpm > 0 then
  save(KEYS[2], tokens_level - tokens, tpm)
  reply[4], reply[5] = standing(tokens_level - tokens, tpm)
end
return reply
";

/// KEYS: the requests bucket, the tokens bucket, the budget's key of the period to charge.
/// ARGV: rpm, tpm (0: none), 1 to give the request back (an admission nobody waited for),
/// the tokens used beyond the reservation (negative: given back), the USD likewise, the
/// budget key's TTL (ms).
const SETTLE: &str = r"
local rpm, tpm, request = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tokens, usd = tonumber(ARGV[4]), tonumber(ARGV[5])
if rpm > 0 and request > 0 then
  save(KEYS[1], math.min(rpm, level(KEYS[1], rpm) + request), rpm)
end
if tpm > 0 and tokens ~= 0 then
  save(KEYS[2], math.min(tpm, level(KEYS[2], tpm) - tokens), tpm)
end
if usd ~= 0 then
  if tonumber(redis.call('INCRBYFLOAT', KEYS[3], ARGV[5])) < 0 then
    redis.call('SET', KEYS[3], '0')
  end
  redis.call('PEXPIRE', KEYS[3], ARGV[6])
end
return 1
";

/// KEYS: the requests bucket, the tokens bucket, the budget's key. ARGV: rpm, tpm (0: none).
/// Returns `{requests left, ms to full, tokens left, ms to full, spent}` (-1: no such limit).
const STANDING: &str = r"
local reply = {-1, 0, -1, 0}
for i, limit in ipairs({tonumber(ARGV[1]), tonumber(ARGV[2])}) do
  if limit > 0 then
    reply[2 * i - 1], reply[2 * i] = standing(level(KEYS[i], limit), limit)
  end
end
reply[5] = redis.call('GET', KEYS[3]) or '0'
return reply
";

fn script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}{body}"))
}

/// Run with `EVALSHA` (the script's source is sent only when Redis does not have it).
pub(super) static ADMIT_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(ADMIT));
pub(super) static SETTLE_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(SETTLE));
pub(super) static STANDING_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(STANDING));
/// Every script, loaded on each connection.
pub(super) static ALL: [&LazyLock<Script>; 3] = [&ADMIT_SCRIPT, &SETTLE_SCRIPT, &STANDING_SCRIPT];

/// The keys of one client: its buckets, and its budget's in one period.
pub(super) struct Keys {
    pub(super) requests: String,
    pub(super) tokens: String,
}

impl Keys {
    /// The client's name ends every key, so that no name can make one of another's.
    pub(super) fn new(prefix: &str, client: &str) -> Self {
        Self {
            requests: format!("{prefix}:limits:rpm:{client}"),
            tokens: format!("{prefix}:limits:tpm:{client}"),
        }
    }

    /// The key of the client's spend in `period` (a day or month number, marked as which).
    pub(super) fn budget(prefix: &str, client: &str, period: Option<(char, u64)>) -> String {
        match period {
            Some((per, number)) => format!("{prefix}:limits:usd:{per}{number}:{client}"),
            // No budget: a key the scripts do not touch.
            None => format!("{prefix}:limits:usd:none:{client}"),
        }
    }
}
