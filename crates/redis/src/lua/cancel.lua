-- Cancels a job. ARGV: id, result_ttl_ms, events_maxlen.
-- Returns "cancelled" (it had not run), "signalled" (it is running, or parked on
-- a vendor's task: a worker stops it), "missing", or "final:<status>" when it had
-- already ended.
local id, now, ttl_ms, maxlen = ARGV[1], server_now(), tonumber(ARGV[2]), tonumber(ARGV[3])
local jk = job_key(id)
local f = redis.call("HMGET", jk, "status", "type", "attempts")
if not f[1] then return "missing" end
local status = f[1]
if status == "queued" and redis.call("HGET", jk, "parked") == "1" then
  -- parked on a vendor task and due (or woken, or cancelled once already): its run
  -- will see the cancel and stop the vendor's task
  redis.call("HSET", jk, "cancel", "parked")
  return "signalled"
elseif status == "queued" then
  redis.call("LREM", K_READY, 0, id)
elseif status == "scheduled" and redis.call("HGET", jk, "parked") == "1" then
  -- waiting on a vendor task it submitted: run it now (first in line), with the
  -- cancel requested as "parked" — a run the heartbeat leaves alone, so that it
  -- asks the vendor to stop the task and ends as cancelled
  redis.call("HSET", jk, "cancel", "parked", "status", "queued", "ready_at", now)
  redis.call("ZREM", K_SCHED, id)
  redis.call("RPUSH", K_READY, id)
  redis.call("PUBLISH", C_NOTIFY, 0)
  return "signalled"
elseif status == "scheduled" then
  redis.call("ZREM", K_SCHED, id)
elseif status == "running" then
  redis.call("HSET", jk, "cancel", "1")
  redis.call("PUBLISH", C_CANCEL, id)
  if redis.call("HEXISTS", jk, "phase") == 1 then
    -- a pipeline (queue `pipelines`), perhaps parked: the drivers' sweep picks it
    -- up at once even if the message above is missed
    redis.call("ZADD", base .. ":active", 0, id)
  end
  return "signalled"
else
  return "final:" .. status
end
finish_cancelled(id, f[2], now, tonumber(f[3]) or 0, "cancelled before it ran", ttl_ms, maxlen)
return "cancelled"
