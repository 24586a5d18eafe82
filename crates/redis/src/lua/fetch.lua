-- Leases up to n ready jobs to a worker. ARGV: n, lease_ms, worker,
-- promote_limit, dead_cap, events_maxlen.
-- Returns: ms until the next scheduled job is due ("" if none), then per job:
-- id, type, payload, attempt, enqueued_at_ms.
local now = server_now()
local n = tonumber(ARGV[1])
local lease = tonumber(ARGV[2])
local worker = ARGV[3]
local cap, maxlen = tonumber(ARGV[5]), tonumber(ARGV[6])
local out = { "" }
if redis.call("EXISTS", K_PAUSED) == 1 then
  return out
end
promote_due(now, tonumber(ARGV[4]))
for _ = 1, n do
  local id = redis.call("RPOP", K_READY)
  if not id then break end
  local jk = job_key(id)
  local f = redis.call("HMGET", jk, "type", "payload", "status", "enq")
  if not f[1] then
    -- Something placed in the queue by hand, not through genq.
    redis.call("HSET", jk, "type", "", "payload", id, "attempts", 0, "enq", now)
    bury(id, "", now, 0, "bad_input",
      "queue entry '" .. string.sub(id, 1, 200) .. "' has no job record: it was not pushed through genq", cap, maxlen)
  elseif f[3] == "queued" then
    local attempt = redis.call("HINCRBY", jk, "attempts", 1)
    redis.call("HSET", jk, "status", "running", "started", now, "worker", worker)
    redis.call("HDEL", jk, "parked", "woken")
    redis.call("ZADD", K_RUNNING, now + lease, id)
    out[#out + 1] = id
    out[#out + 1] = f[1]
    out[#out + 1] = f[2] or ""
    out[#out + 1] = attempt
    out[#out + 1] = f[4] or ""
  end
  -- any other status is a stale entry (already cancelled or running): dropped
end
local nxt = redis.call("ZRANGE", K_SCHED, 0, 0, "WITHSCORES")
if nxt[2] then out[1] = tostring(math.max(0, tonumber(nxt[2]) - now)) end
return out
