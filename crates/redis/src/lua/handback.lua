-- A stopping worker hands its unfinished jobs back at once, without counting the
-- interrupted run. ARGV: worker, ids... Returns the number handed back.
local now, worker = server_now(), ARGV[1]
local n = 0
for i = 2, #ARGV do
  local id = ARGV[i]
  local jk = job_key(id)
  local f = redis.call("HMGET", jk, "status", "worker")
  if f[1] == "running" and f[2] == worker then
    redis.call("ZREM", K_RUNNING, id)
    redis.call("HINCRBY", jk, "attempts", -1)
    redis.call("HSET", jk, "status", "queued", "ready_at", now)
    redis.call("RPUSH", K_READY, id)
    n = n + 1
  end
end
if n > 0 then redis.call("PUBLISH", C_NOTIFY, n) end
return n
