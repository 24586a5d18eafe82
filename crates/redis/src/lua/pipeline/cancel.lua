-- Cancels a pipeline: one not started leaves the queue; a running or parked one
-- ends cancelled now (the drivers then cancel its open steps). ARGV: id, reason,
-- result_ttl_ms, events_maxlen, pl_events_maxlen.
-- Returns "cancelled", "missing" or "final:<outcome>".
local pid, reason = ARGV[1], ARGV[2]
local ttl_ms, maxlen, pl_maxlen = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local jk = job_key(pid)
local f = redis.call("HMGET", jk, "status", "stage", "outcome")
if not f[1] then return "missing" end
if is_final(f[1]) then return "final:" .. (f[3] or f[1]) end
if f[1] == "queued" then redis.call("LREM", K_READY, 0, pid) end
pl_finish(pid, server_now(), "cancelled", "cancelled", reason, f[2] or -1, "", ttl_ms, maxlen, pl_maxlen)
return "cancelled"
