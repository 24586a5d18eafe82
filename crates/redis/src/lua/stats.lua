-- O(1) queue figures: ready, scheduled, running, dead, paused, how long (ms, by
-- the server's clock) the oldest ready job has waited ("" if none), then the
-- counters as field, value pairs.
local oldest = ""
local tail = redis.call("LINDEX", K_READY, -1)
if tail then
  local ready_at = tonumber(redis.call("HGET", job_key(tail), "ready_at") or "")
  if ready_at then oldest = tostring(math.max(0, server_now() - ready_at)) end
end
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
