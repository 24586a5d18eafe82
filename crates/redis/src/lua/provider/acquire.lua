-- Takes capacity on one of a provider's API keys for `holder`, for every host at
-- once. ARGV: holder, lease_ms, max_in_flight (0: none), rpm (0: none),
-- tpm (0: none), tokens (estimate), adaptive (0/1), adaptive_start, force (0/1),
-- then the keys' fingerprints in the order to try them.
-- With force = 1 the first fingerprint is taken whatever its limits (a task that
-- exists at the vendor, resumed by a re-run, holds its slot again).
-- A key is skipped if it cools down, if its in-flight slots (expired holders are
-- reclaimed first) are all held, or if its requests/tokens bucket is short.
-- A holder already holding a slot on a key gets it back (lease renewed).
-- Returns {fp, in_flight_limit} or {"", wait_ms, why} with why one of cooling,
-- billing (every key blocked for billing), in_flight, rpm, tpm.
local now = server_now()
local holder, lease = ARGV[1], tonumber(ARGV[2])
local max_in_flight, rpm, tpm = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local tokens, adaptive, start = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local force = tonumber(ARGV[9])

if force == 1 then
  local fp = ARGV[10]
  redis.call("ZREMRANGEBYSCORE", slots_key(fp), "-inf", now)
  hold(fp, holder, now, lease)
  return { fp, tostring(in_flight_limit(limit_key(fp), max_in_flight, adaptive, start)) }
end

local best_wait, why = nil, nil
local function note(wait, reason)
  if best_wait == nil or wait < best_wait then best_wait, why = wait, reason end
end
local billing, keys = 0, 0
for i = 10, #ARGV do
  local fp = ARGV[i]
  keys = keys + 1
  local cooling = redis.call("GET", cool_key(fp))
  if cooling then
    if cooling == "billing" then
      billing = billing + 1
    else
      note(math.max(redis.call("PTTL", cool_key(fp)), 1), "cooling")
    end
  else
    local sk, lk = slots_key(fp), limit_key(fp)
    redis.call("ZREMRANGEBYSCORE", sk, "-inf", now)
    local eff = in_flight_limit(lk, max_in_flight, adaptive, start)
    if redis.call("ZSCORE", sk, holder) then
      hold(fp, holder, now, lease)
      return { fp, tostring(eff) }
    end
    local ok = true
    if eff > 0 and redis.call("ZCARD", sk) >= eff then
      note(-1, "in_flight")
      ok = false
    end
    local r, t = nil, nil
    if ok and rpm > 0 then
      r = bucket(lk, "r_tok", "r_ts", rpm, now)
      if r < 1 then
        note(math.ceil((1 - r) * 60000 / rpm), "rpm")
        ok = false
      end
    end
    local need = math.min(tokens, tpm)
    if ok and tpm > 0 then
      t = bucket(lk, "t_tok", "t_ts", tpm, now)
      if t < need then
        note(math.ceil((need - t) * 60000 / tpm), "tpm")
        ok = false
      end
    end
    if ok then
      hold(fp, holder, now, lease)
      if r then redis.call("HSET", lk, "r_tok", tostring(r - 1), "r_ts", now) end
      if t then redis.call("HSET", lk, "t_tok", tostring(t - need), "t_ts", now) end
      redis.call("PEXPIRE", lk, STATE_TTL_MS)
      return { fp, tostring(eff) }
    end
  end
end
if billing == keys then return { "", "0", "billing" } end
return { "", tostring(best_wait or 0), why or "in_flight" }
