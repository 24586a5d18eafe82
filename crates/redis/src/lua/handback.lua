-- A stopping worker hands its unfinished jobs back at once, without counting the
-- interrupted run. ARGV: worker, ids... or worker, "*": every job leased to this
-- worker (also one whose fetch reply the stopping process never read).
-- Returns the number handed back.
local now, worker = server_now(), ARGV[1]
local ids = {}
if ARGV[2] == "*" then
  ids = redis.call("ZRANGE", K_RUNNING, 0, 49999)
else
  for i = 2, #ARGV do ids[#ids + 1] = ARGV[i] end
end
local n = 0
for _, id in ipairs(ids) do
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
