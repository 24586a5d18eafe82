-- Provider limits prelude (after lua/common.lua). KEYS[1] is the provider's base
-- key "<prefix>:provider:{<name>}": every key of one provider shares the hash tag
-- (one Redis Cluster slot), so a script may look at all of its API keys at once.
-- Per API key (by fingerprint):
--   :cool:<fp>   STRING  rate_limited | billing, with a TTL (the cool-down)
--   :slots:<fp>  ZSET    holder -> lease deadline (ms, server time): in-flight calls/tasks
--   :limit:<fp>  HASH    eff (adaptive in-flight limit), ok (successes since the last
--                        change), dec_at (last decrease), r_tok/r_ts (requests bucket),
--                        t_tok/t_ts (tokens bucket)
local function cool_key(fp) return base .. ":cool:" .. fp end
local function slots_key(fp) return base .. ":slots:" .. fp end
local function limit_key(fp) return base .. ":limit:" .. fp end

-- How long limit state outlives its last use.
local STATE_TTL_MS = 24 * 3600 * 1000

-- A per-minute bucket's level now: refilled at `per_min` / 60 000 per ms, capped.
local function bucket(lk, tok_field, ts_field, per_min, now)
  local f = redis.call("HMGET", lk, tok_field, ts_field)
  local tok, ts = tonumber(f[1]), tonumber(f[2])
  if not tok or not ts then return per_min end
  local level = tok + (now - ts) * per_min / 60000
  if level > per_min then level = per_min end
  return level
end

-- The in-flight limit of a key: the adaptive one when adaptive (its start value
-- until it has changed), else the static one (0: none).
local function in_flight_limit(lk, max_in_flight, adaptive, start)
  if adaptive == 1 then
    local eff = tonumber(redis.call("HGET", lk, "eff"))
    if not eff then eff = start end
    return eff
  end
  return max_in_flight
end

-- Adds (or refreshes) a holder's slot; the set outlives its latest deadline.
local function hold(fp, holder, now, lease)
  local sk = slots_key(fp)
  redis.call("ZADD", sk, now + lease, holder)
  if redis.call("PTTL", sk) < lease + 60000 then
    redis.call("PEXPIRE", sk, lease + 60000)
  end
end
