-- Wakes a job parked on a vendor's task (a webhook said the task moved): it is
-- due now. ARGV: id. Returns 1 when it was parked and is now due, else 0 (it runs,
-- has ended, or was never parked: nothing to do).
local id = ARGV[1]
local jk = job_key(id)
local f = redis.call("HMGET", jk, "status", "parked")
if f[1] ~= "scheduled" or f[2] ~= "1" then return 0 end
local now = server_now()
redis.call("ZADD", K_SCHED, now, id)
redis.call("HSET", jk, "due", now)
redis.call("PUBLISH", C_NOTIFY, 0)
return 1
