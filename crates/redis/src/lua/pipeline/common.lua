-- Shared prelude of the pipeline scripts (after lua/common.lua). KEYS[1] is
-- "<prefix>:{pipelines}": a pipeline is a job of the reserved queue `pipelines`
-- (pushed by JobClient or the outbox relay like any job, so charge, relay, settle
-- and reconcile treat it as one), whose hash `:job:<id>` also holds the pipeline's
-- position. Every pipeline key shares the `{pipelines}` hash tag (one Cluster slot).
local K_GATES = base .. ":gates"         -- ZSET pipeline id -> gate deadline (ms)
local K_ACTIVE = base .. ":active"       -- ZSET pipeline id -> last change (ms), not parked
local K_FINISHED = base .. ":finished"   -- ZSET pipeline id -> end time (ms)
local K_PL_EVENTS = base .. ":pl_events" -- STREAM of stage changes
local K_OUTCOMES = base .. ":outcomes"   -- HASH "<type>|<outcome>" -> pipelines ended so
local K_STAGE_DEFS = base .. ":stage_defs" -- HASH digest -> a pipeline type's stages (JSON)
local C_WAKE = base .. ":wake"           -- pub/sub: pipeline id to advance

-- Per-step data: s.<k>.<i> status (q to push, p pushed, d done, f failed,
-- c cancelled), o.* output, a.* attempts, e.*/c.* error and class, j.* the step's
-- job while it waits to be pushed, fb.* 1 once its fallback runs; g.<k> a gate's
-- decision, gd.<gate> its choice.
local function steps_key(pid)
  return base .. ":pl:" .. pid
end

local function is_final(status)
  return status == "succeeded" or status == "failed" or status == "cancelled"
end

local function pl_event(maxlen, pid, ptype, kind, fields)
  local args = {"XADD", K_PL_EVENTS, "MAXLEN", "~", maxlen, "*",
    "id", pid, "type", ptype or "", "kind", kind}
  for _, v in ipairs(fields) do args[#args + 1] = tostring(v) end
  return redis.call(unpack(args))
end

-- Ends a pipeline: its status (timed_out is reported as cancelled, class
-- timeout), one completion event on the queue's event stream (the settler refunds
-- from it), one `finished` stage event. It stays in :active until the drivers
-- have cancelled any step still open.
local function pl_finish(pid, now, outcome, class, err, stage, result, ttl_ms, maxlen, pl_maxlen)
  local jk = job_key(pid)
  local ptype = redis.call("HGET", jk, "type")
  local status = outcome
  if outcome == "timed_out" then status = "cancelled" end
  redis.call("HSET", jk, "status", status, "outcome", outcome, "phase", "done", "finished", now,
    "error_class", class, "error", err, "failed_stage", stage)
  redis.call("HDEL", jk, "cancel")
  if result ~= "" then redis.call("HSET", jk, "result", result) end
  redis.call("HINCRBY", jk, "ver", 1)
  redis.call("ZREM", K_GATES, pid)
  redis.call("ZADD", K_ACTIVE, server_now(), pid)
  redis.call("ZADD", K_FINISHED, now, pid)
  local keep = ttl_ms
  if keep <= 0 then keep = 60000 end
  redis.call("ZREMRANGEBYSCORE", K_FINISHED, "-inf", now - keep)
  redis.call("HINCRBY", K_STATS, status, 1)
  redis.call("HINCRBY", K_OUTCOMES, (ptype or "") .. "|" .. outcome, 1)
  emit(maxlen, pid, ptype, status, 1, class, err)
  pl_event(pl_maxlen, pid, ptype, "finished",
    {"outcome", outcome, "stage", stage, "class", class, "error", err})
  redis.call("PEXPIRE", jk, keep)
  redis.call("PEXPIRE", steps_key(pid), keep)
  redis.call("PUBLISH", C_WAKE, pid)
end

-- Times a parked pipeline out at its gate (its deadline passed); returns how long
-- the gate waited (ms).
local function pl_time_out(pid, ptype, gate, stage, opened, now, ttl_ms, maxlen, pl_maxlen)
  local waited = now - (tonumber(opened) or now)
  pl_event(pl_maxlen, pid, ptype, "gate_timeout", {"stage", stage, "gate", gate, "waited_ms", waited})
  pl_finish(pid, now, "timed_out", "timeout", "no answer at gate '" .. gate .. "' in time", stage, "", ttl_ms, maxlen, pl_maxlen)
  return waited
end
