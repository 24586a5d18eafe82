-- Adaptive (AIMD) in-flight limit of a key after a call. ARGV: fp, outcome
-- (ok | limited), ceiling, start, increase_after, decrease (a fraction), guard_ms.
-- ok: counted when the key was (nearly) full, and after `increase_after` such
-- successes the limit grows by one, up to the ceiling. limited (a 429): the limit
-- shrinks to floor(limit * decrease), at least 1, at most once per `guard_ms`
-- (a burst of 429s from one overload is one signal). Returns the limit.
local now = server_now()
local fp, outcome = ARGV[1], ARGV[2]
local ceiling, start = tonumber(ARGV[3]), tonumber(ARGV[4])
local increase_after, decrease, guard = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local lk = limit_key(fp)
local f = redis.call("HMGET", lk, "eff", "ok", "dec_at")
local eff = tonumber(f[1]) or start
local ok = tonumber(f[2]) or 0
local dec_at = tonumber(f[3]) or 0
if outcome == "limited" then
  if now - dec_at >= guard then
    eff = math.max(1, math.floor(eff * decrease))
    redis.call("HSET", lk, "eff", eff, "ok", 0, "dec_at", now)
  end
else
  local sk = slots_key(fp)
  redis.call("ZREMRANGEBYSCORE", sk, "-inf", now)
  if redis.call("ZCARD", sk) + 1 >= eff then
    ok = ok + 1
    if ok >= increase_after and eff < ceiling then
      eff = eff + 1
      ok = 0
    end
    redis.call("HSET", lk, "eff", eff, "ok", ok)
  end
end
redis.call("PEXPIRE", lk, STATE_TTL_MS)
return eff
