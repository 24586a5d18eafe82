-- Delivers a signal to a pipeline's gate, once. ARGV: id, gate, choice, body
-- (JSON), result_ttl_ms, events_maxlen, pl_events_maxlen.
-- Returns {"accepted", choice, waited_ms}, {"decided", earlier choice},
-- {"finished", outcome}, {"not_open"} (the pipeline has not reached the gate),
-- {"no_such_gate"}, {"bad_choice", allowed choices} or {"unknown"}.
local pid, gate, choice, body = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local ttl_ms, maxlen, pl_maxlen = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local jk, sk = job_key(pid), steps_key(pid)
local f = redis.call("HMGET", jk, "status", "phase", "gate", "stage", "type", "outcome", "stages", "gate_opened", "gate_deadline")
if not f[1] then return {"unknown"} end
local prior = redis.call("HGET", sk, "gd." .. gate)
if prior then return {"decided", prior} end
if is_final(f[1]) then return {"finished", f[6] or f[1]} end
-- a signal after the deadline finds the gate timed out, even if no driver has
-- timed it out yet
if f[2] == "gate" and tonumber(f[9] or "") and tonumber(f[9]) <= server_now() then
  redis.call("ZREM", K_GATES, pid)
  pl_time_out(pid, f[5], f[3], f[4], f[8], server_now(), ttl_ms, maxlen, pl_maxlen)
  return {"finished", "timed_out"}
end
local stages = nil
if f[7] then stages = redis.call("HGET", K_STAGE_DEFS, f[7]) end
if f[2] == "gate" and f[3] == gate and stages then
  local stage = tonumber(f[4])
  local st = cjson.decode(stages)[stage + 1]
  local allowed = false
  for _, c in ipairs(st.choices) do
    if c == choice then allowed = true end
  end
  if not allowed then return {"bad_choice", table.concat(st.choices, ",")} end
  local now = server_now()
  local waited = now - (tonumber(f[8]) or now)
  redis.call("HSET", sk, "gd." .. gate, choice,
    "g." .. stage, '{"choice":' .. cjson.encode(choice) .. ',"body":' .. body .. ',"at":' .. now .. '}')
  redis.call("ZREM", K_GATES, pid)
  pl_event(pl_maxlen, pid, f[5], "gate_decided", {"stage", stage, "gate", gate, "choice", choice, "waited_ms", waited})
  if choice == "cancel" then
    pl_finish(pid, now, "cancelled", "cancelled", "cancelled at gate '" .. gate .. "'", stage, "", ttl_ms, maxlen, pl_maxlen)
  else
    redis.call("HSET", jk, "phase", "steps", "decided_at", now)
    redis.call("HINCRBY", jk, "ver", 1)
    redis.call("ZADD", K_ACTIVE, server_now(), pid)
    redis.call("PUBLISH", C_WAKE, pid)
  end
  return {"accepted", choice, waited}
end
if stages then
  for _, st in ipairs(cjson.decode(stages)) do
    if st.kind == "gate" and st.name == gate then return {"not_open"} end
  end
  return {"no_such_gate"}
end
return {"not_open"}
