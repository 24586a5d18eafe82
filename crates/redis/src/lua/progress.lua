-- Records a running job's progress. ARGV: id, worker, progress_json. Returns 1, or 0
-- when the job is not running under that worker.
local jk = job_key(ARGV[1])
local f = redis.call("HMGET", jk, "status", "worker")
if f[1] ~= "running" or f[2] ~= ARGV[2] then return 0 end
redis.call("HSET", jk, "progress", ARGV[3])
return 1
