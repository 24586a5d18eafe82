-- Shared prelude of every genq script. KEYS[1] is the queue's base key,
-- "<prefix>:{<queue>}"; every key below derives from it, so all of one queue's
-- keys share the hash tag and live in one Redis Cluster slot.
local base = KEYS[1]
local K_READY = base .. ":ready"          -- LIST of job ids, LPUSH in, RPOP out
local K_SCHED = base .. ":scheduled"      -- ZSET id -> due time (ms)
local K_RUNNING = base .. ":running"      -- ZSET id -> lease deadline (ms)
local K_DEAD = base .. ":dead"            -- ZSET id -> time of death (ms), capped
local K_STATS = base .. ":stats"          -- HASH of counters
local K_PAUSED = base .. ":paused"        -- STRING, present while paused
local K_EVENTS = base .. ":events"        -- STREAM of final outcomes, capped
local K_WORKERS = base .. ":workers"      -- HASH instance -> JSON heartbeat info
local K_SEEN = base .. ":workers_seen"    -- ZSET instance -> last heartbeat (ms)
local C_NOTIFY = base .. ":notify"        -- pub/sub: work may be available
local C_CANCEL = base .. ":cancel"        -- pub/sub: a running job was cancelled

-- The time every script compares (ms): the Redis server's clock, never a host's,
-- so that hosts whose clocks differ lease, reap and schedule alike.
local function server_now()
  local t = redis.call("TIME")
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function job_key(id)
  return base .. ":job:" .. id
end

-- A pipeline step's final outcome is handed to the pipeline drivers in the same
-- script that ends the step: an entry in `:pipe_done` (removed only once the
-- pipeline has recorded it) and a wake-up on `:pipe_wake`. Called before the job's
-- data may be deleted.
local function note_pipeline_step(id, status, attempts, class, err)
  local f = redis.call("HMGET", job_key(id), "pipe", "result")
  if f[1] then
    redis.call("HSET", base .. ":pipe_done", id, cjson.encode({
      p = f[1], s = status, a = tonumber(attempts) or 0, c = class or "", e = err or "", r = f[2] or ""}))
    redis.call("PUBLISH", base .. ":pipe_wake", f[1])
  end
end

local function emit(maxlen, id, jtype, status, attempts, class, err)
  note_pipeline_step(id, status, attempts, class, err)
  redis.call("XADD", K_EVENTS, "MAXLEN", "~", maxlen, "*",
    "id", id, "type", jtype or "", "status", status, "attempts", attempts or 0,
    "class", class or "", "error", err or "")
end

-- Moves due scheduled jobs to the ready list (at most `limit` per call). A job
-- parked on a vendor task goes to the front (it is work in progress, and its
-- provider slot's lease runs while it waits).
local function promote_due(now, limit)
  local due = redis.call("ZRANGEBYSCORE", K_SCHED, "-inf", now, "LIMIT", 0, limit)
  for _, id in ipairs(due) do
    redis.call("ZREM", K_SCHED, id)
    local jk = job_key(id)
    redis.call("HSET", jk, "status", "queued", "ready_at", now)
    if redis.call("HGET", jk, "parked") == "1" then
      redis.call("RPUSH", K_READY, id)
    else
      redis.call("LPUSH", K_READY, id)
    end
  end
  return #due
end

-- Fails a job for good: dead-letter list (capped; the oldest entries and their
-- data go first), counters, completion event.
local function bury(id, jtype, now, attempts, class, err, cap, maxlen)
  redis.call("HSET", job_key(id), "status", "failed", "error", err, "error_class", class, "finished", now)
  redis.call("PERSIST", job_key(id))
  redis.call("ZADD", K_DEAD, now, id)
  redis.call("HINCRBY", K_STATS, "failed", 1)
  emit(maxlen, id, jtype, "failed", attempts, class, err)
  local over = redis.call("ZCARD", K_DEAD) - cap
  if over > 0 then
    local old = redis.call("ZPOPMIN", K_DEAD, over)
    for i = 1, #old, 2 do
      redis.call("DEL", job_key(old[i]))
    end
    redis.call("HINCRBY", K_STATS, "dead_trimmed", over)
  end
end

-- Ends a job as cancelled; its data expires after `ttl_ms` (0: at once).
local function finish_cancelled(id, jtype, now, attempts, err, ttl_ms, maxlen)
  local jk = job_key(id)
  redis.call("HSET", jk, "status", "cancelled", "error", err, "error_class", "cancelled", "finished", now)
  redis.call("HDEL", jk, "cancel")
  emit(maxlen, id, jtype, "cancelled", attempts, "cancelled", err)
  if ttl_ms > 0 then redis.call("PEXPIRE", jk, ttl_ms) else redis.call("DEL", jk) end
  redis.call("HINCRBY", K_STATS, "cancelled", 1)
end
