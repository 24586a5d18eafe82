-- Wakes a job parked on a vendor's task (a webhook said the task moved): it is
-- due now. ARGV: id. Returns 1 when it was parked and is now due; 2 when it is
-- running (the webhook came while the run still polled: noted, so that a park
-- this run records is due at once); 0 when it has ended or is unknown.
local id = ARGV[1]
local jk = job_key(id)
local f = redis.call("HMGET", jk, "status", "parked")
if f[1] == "running" then
  redis.call("HSET", jk, "woken", "1")
  return 2
end
if f[1] ~= "scheduled" or f[2] ~= "1" then return 0 end
local now = server_now()
redis.call("ZADD", K_SCHED, now, id)
redis.call("HSET", jk, "due", now)
redis.call("PUBLISH", C_NOTIFY, 0)
return 1
