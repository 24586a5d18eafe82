-- Puts dead-lettered jobs back on the queue (runs keep counting).
-- ARGV: ids... Returns the number requeued.
local now = server_now()
local n = 0
for i = 1, #ARGV do
  local id = ARGV[i]
  if redis.call("ZREM", K_DEAD, id) == 1 then
    local jk = job_key(id)
    redis.call("HSET", jk, "status", "queued", "ready_at", now)
    redis.call("HDEL", jk, "finished", "cancel")
    redis.call("LPUSH", K_READY, id)
    n = n + 1
  end
end
if n > 0 then
  redis.call("HINCRBY", K_STATS, "dead_retried", n)
  redis.call("PUBLISH", C_NOTIFY, n)
end
return n
