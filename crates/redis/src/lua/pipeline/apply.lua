-- Applies one planned transition if the pipeline has not moved since it was read
-- (`ver`, a compare-and-set). ARGV: id, ver, ops (JSON), result_ttl_ms,
-- events_maxlen, pl_events_maxlen. Ops: h (fields of the pipeline hash), incr
-- (fields to add to), now (fields set to the server's time), s / sdel (step fields
-- to set / delete), gate {name, stage, timeout_ms}, finish {outcome, class, error,
-- stage, result}, defs (stage descriptions by digest, shared by every pipeline of a
-- type: HSETNX), ev (list of {kind, f = flat field list}), active ("drop": the
-- pipeline leaves :active; otherwise it is marked as changed now), hdel (fields of
-- the pipeline hash to delete).
-- Returns {1, now}, {0, current ver} on a conflict, {-1} for an unknown pipeline.
local pid, ver = ARGV[1], ARGV[2]
local ops = cjson.decode(ARGV[3])
local ttl_ms, maxlen, pl_maxlen = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local jk, sk = job_key(pid), steps_key(pid)
local f = redis.call("HMGET", jk, "ver", "type", "status")
if not f[3] then return {-1} end
if (f[1] or "0") ~= ver then return {0, f[1] or "0"} end
local now = server_now()
if ops.h then
  for k, v in pairs(ops.h) do redis.call("HSET", jk, k, tostring(v)) end
end
if ops.hdel then
  for _, k in ipairs(ops.hdel) do redis.call("HDEL", jk, k) end
end
if ops.defs then
  for k, v in pairs(ops.defs) do redis.call("HSETNX", K_STAGE_DEFS, k, v) end
end
if ops.incr then
  for k, v in pairs(ops.incr) do redis.call("HINCRBY", jk, k, v) end
end
if ops.now then
  for _, k in ipairs(ops.now) do redis.call("HSET", jk, k, now) end
end
if ops.s then
  for k, v in pairs(ops.s) do redis.call("HSET", sk, k, tostring(v)) end
end
if ops.sdel then
  for _, k in ipairs(ops.sdel) do redis.call("HDEL", sk, k) end
end
redis.call("HINCRBY", jk, "ver", 1)
if ops.ev then
  for _, e in ipairs(ops.ev) do pl_event(pl_maxlen, pid, f[2], e.kind, e.f or {}) end
end
if ops.gate then
  local g = ops.gate
  local deadline = now + tonumber(g.timeout_ms)
  redis.call("HSET", jk, "phase", "gate", "gate", g.name, "gate_opened", now, "gate_deadline", deadline)
  redis.call("ZADD", K_GATES, deadline, pid)
  redis.call("ZREM", K_ACTIVE, pid)
  pl_event(pl_maxlen, pid, f[2], "gate_open", {"stage", g.stage, "gate", g.name, "deadline", deadline})
elseif ops.finish then
  local x = ops.finish
  pl_finish(pid, now, x.outcome, x.class or "", x.error or "", x.stage, x.result or "", ttl_ms, maxlen, pl_maxlen)
elseif ops.active == "drop" then
  redis.call("ZREM", K_ACTIVE, pid)
else
  redis.call("ZADD", K_ACTIVE, now, pid)
end
return {1, now}
