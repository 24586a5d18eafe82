-- Times out the gates whose deadline (server time) has passed, each once.
-- ARGV: limit, result_ttl_ms, events_maxlen, pl_events_maxlen.
-- Returns a flat list: id, type, gate, waited_ms per pipeline timed out.
local now = server_now()
local ttl_ms, maxlen, pl_maxlen = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local due = redis.call("ZRANGEBYSCORE", K_GATES, "-inf", now, "LIMIT", 0, tonumber(ARGV[1]))
local out = {}
for _, pid in ipairs(due) do
  redis.call("ZREM", K_GATES, pid)
  local jk = job_key(pid)
  local f = redis.call("HMGET", jk, "status", "phase", "gate", "stage", "type", "gate_opened", "gate_deadline")
  if f[1] == "running" and f[2] == "gate" and tonumber(f[7]) <= now then
    local waited = pl_time_out(pid, f[5], f[3], f[4], f[6], now, ttl_ms, maxlen, pl_maxlen)
    out[#out + 1] = pid
    out[#out + 1] = f[5]
    out[#out + 1] = f[3]
    out[#out + 1] = waited
  end
end
return out
