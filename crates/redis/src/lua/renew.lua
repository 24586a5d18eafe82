-- Worker heartbeat: extends the leases of the jobs it runs and records the worker.
-- ARGV: lease_ms, worker, worker_info_json, stale_after_ms, ids...
-- Returns the ids the worker must stop: cancelled, or no longer its own.
local now, lease, worker = server_now(), tonumber(ARGV[1]), ARGV[2]
redis.call("HSET", K_WORKERS, worker, ARGV[3])
redis.call("ZADD", K_SEEN, now, worker)
local gone = redis.call("ZRANGEBYSCORE", K_SEEN, "-inf", now - tonumber(ARGV[4]))
for _, w in ipairs(gone) do
  redis.call("ZREM", K_SEEN, w)
  redis.call("HDEL", K_WORKERS, w)
end
local stop = {}
for i = 5, #ARGV do
  local id = ARGV[i]
  local f = redis.call("HMGET", job_key(id), "status", "worker", "cancel")
  if f[1] == "running" and f[2] == worker then
    redis.call("ZADD", K_RUNNING, "XX", now + lease, id)
    if f[3] == "1" then stop[#stop + 1] = id end
  else
    stop[#stop + 1] = id
  end
end
return stop
