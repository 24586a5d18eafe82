-- Deletes a job that is not running. ARGV: id. Returns "deleted", "running" (refused:
-- cancel it first) or "missing".
local id = ARGV[1]
local jk = job_key(id)
local status = redis.call("HGET", jk, "status")
if not status then return "missing" end
if status == "running" then return "running" end
redis.call("LREM", K_READY, 0, id)
redis.call("ZREM", K_SCHED, id)
redis.call("ZREM", K_DEAD, id)
redis.call("DEL", jk)
return "deleted"
