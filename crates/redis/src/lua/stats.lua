-- O(1) queue figures: ready, scheduled, running, dead, paused, ready_at of the
-- oldest ready job ("" if none), then the counters as field, value pairs.
local oldest = ""
local tail = redis.call("LINDEX", K_READY, -1)
if tail then oldest = redis.call("HGET", job_key(tail), "ready_at") or "" end
local out = {
  redis.call("LLEN", K_READY),
  redis.call("ZCARD", K_SCHED),
  redis.call("ZCARD", K_RUNNING),
  redis.call("ZCARD", K_DEAD),
  redis.call("EXISTS", K_PAUSED),
  oldest,
}
local counters = redis.call("HGETALL", K_STATS)
for _, v in ipairs(counters) do out[#out + 1] = v end
return out
