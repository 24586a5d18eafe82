-- Records the outcome of a run. ARGV: id, attempt, worker, outcome
-- (succeeded | retry | deferred | parked | failed | cancelled), data (result JSON or error message),
-- error_class, retry_after_ms, result_ttl_ms, dead_cap, events_maxlen.
-- Returns 1, or 0 when the run no longer holds the job (its lease expired and
-- the job moved on): a stale outcome changes nothing.
local id, attempt, worker, now = ARGV[1], ARGV[2], ARGV[3], server_now()
local outcome, data, class = ARGV[4], ARGV[5], ARGV[6]
local retry_at, ttl_ms = now + tonumber(ARGV[7]), tonumber(ARGV[8])
local cap, maxlen = tonumber(ARGV[9]), tonumber(ARGV[10])
local jk = job_key(id)
local f = redis.call("HMGET", jk, "status", "attempts", "worker", "type")
if f[1] ~= "running" or f[2] ~= attempt or f[3] ~= worker then
  return 0
end
redis.call("ZREM", K_RUNNING, id)
local jtype = f[4]
if outcome == "succeeded" then
  redis.call("HSET", jk, "status", "succeeded", "result", data, "finished", now)
  redis.call("HDEL", jk, "cancel", "progress")
  emit(maxlen, id, jtype, "succeeded", attempt, "", "")
  if ttl_ms > 0 then redis.call("PEXPIRE", jk, ttl_ms) else redis.call("DEL", jk) end
  redis.call("HINCRBY", K_STATS, "succeeded", 1)
elseif outcome == "retry" then
  redis.call("HSET", jk, "status", "scheduled", "error", data, "error_class", class, "due", retry_at)
  redis.call("ZADD", K_SCHED, retry_at, id)
  redis.call("HINCRBY", K_STATS, "retried", 1)
  redis.call("PUBLISH", C_NOTIFY, 0)
elseif outcome == "deferred" or outcome == "parked" then
  -- no provider capacity, or waiting on a vendor's task (parked: a webhook may
  -- wake it, a cancel runs it once): rescheduled like a retry, but the run is not
  -- an attempt (the next fetch gives it the same attempt number again)
  redis.call("HINCRBY", jk, "attempts", -1)
  if outcome == "parked" then
    redis.call("HSET", jk, "parked", "1")
    -- a webhook woke it while this run still polled: look again at once
    if redis.call("HGET", jk, "woken") == "1" then retry_at = now end
    -- cancelled while this run still polled: its next run stops the vendor task
    if redis.call("HGET", jk, "cancel") == "1" then
      redis.call("HSET", jk, "cancel", "parked")
      retry_at = now
    end
  end
  redis.call("HDEL", jk, "woken")
  redis.call("HSET", jk, "status", "scheduled", "error", data, "error_class", class, "due", retry_at)
  redis.call("ZADD", K_SCHED, retry_at, id)
  redis.call("HINCRBY", K_STATS, outcome, 1)
  redis.call("PUBLISH", C_NOTIFY, 0)
elseif outcome == "failed" then
  bury(id, jtype, now, attempt, class, data, cap, maxlen)
elseif outcome == "cancelled" then
  finish_cancelled(id, jtype, now, attempt, data, ttl_ms, maxlen)
else
  return redis.error_reply("unknown outcome " .. outcome)
end
return 1
