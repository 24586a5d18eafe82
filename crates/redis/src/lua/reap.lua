-- Returns jobs whose lease expired (their worker died) to the queue, counting the
-- run, and promotes due scheduled jobs. ARGV: limit, max_runs, dead_cap,
-- events_maxlen, result_ttl_ms, promote_limit. Returns the number of jobs recovered.
local now, limit, max_runs = server_now(), tonumber(ARGV[1]), tonumber(ARGV[2])
local cap, maxlen, ttl_ms = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local expired = redis.call("ZRANGEBYSCORE", K_RUNNING, "-inf", now, "LIMIT", 0, limit)
local requeued = 0
for _, id in ipairs(expired) do
  redis.call("ZREM", K_RUNNING, id)
  local f = redis.call("HMGET", job_key(id), "status", "attempts", "type", "cancel", "worker")
  if f[1] == "running" then
    local attempts = tonumber(f[2]) or 0
    redis.call("HINCRBY", K_STATS, "recovered", 1)
    if f[4] == "1" then
      finish_cancelled(id, f[3], now, attempts, "cancelled; its worker stopped before it ended", ttl_ms, maxlen)
    elseif attempts >= max_runs then
      bury(id, f[3], now, attempts, "transient",
        "lease expired on run " .. attempts .. " (worker " .. (f[5] or "?") .. " stopped); no runs left", cap, maxlen)
    else
      redis.call("HSET", job_key(id), "status", "queued", "ready_at", now,
        "error", "lease expired on run " .. attempts .. ": worker " .. (f[5] or "?") .. " stopped heartbeating",
        "error_class", "transient")
      redis.call("RPUSH", K_READY, id)
      requeued = requeued + 1
    end
  end
end
local promoted = promote_due(now, tonumber(ARGV[6]))
if requeued + promoted > 0 then redis.call("PUBLISH", C_NOTIFY, requeued + promoted) end
return requeued
