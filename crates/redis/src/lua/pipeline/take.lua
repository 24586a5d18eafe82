-- Starts queued pipelines. ARGV: limit, pl_events_maxlen. Returns their ids.
local now, out = server_now(), {}
for _ = 1, tonumber(ARGV[1]) do
  local pid = redis.call("RPOP", K_READY)
  if not pid then break end
  local jk = job_key(pid)
  local f = redis.call("HMGET", jk, "status", "type")
  if f[1] == "queued" then
    redis.call("HSET", jk, "status", "running", "started", now, "attempts", 1,
      "stage", -1, "phase", "steps", "ver", 0)
    redis.call("ZADD", K_ACTIVE, server_now(), pid)
    pl_event(tonumber(ARGV[2]), pid, f[2], "started", {})
    out[#out + 1] = pid
  end
end
return out
