-- Stores a running job's checkpoint. ARGV: id, worker, checkpoint_json. Returns 1, or 0
-- when the job is not running under that worker.
local jk = job_key(ARGV[1])
local f = redis.call("HMGET", jk, "status", "worker")
if f[1] ~= "running" or f[2] ~= ARGV[2] then return 0 end
redis.call("HSET", jk, "checkpoint", ARGV[3])
return 1
