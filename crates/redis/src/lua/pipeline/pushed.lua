-- Marks steps as pushed to their queues. ARGV: id, then pairs of step key
-- "<k>.<i>" and the queue it was pushed to. A step marked cancelled meanwhile (its
-- pipeline ended while the push was on its way) is returned: the caller cancels
-- the job it just pushed. Moves `ver`, so a cleanup that read the step as
-- "to push" re-reads it and cancels the job.
local pid = ARGV[1]
local sk = steps_key(pid)
local late = {}
local changed = false
for i = 2, #ARGV, 2 do
  local key = ARGV[i]
  local cur = redis.call("HGET", sk, "s." .. key)
  if cur == "q" then
    redis.call("HSET", sk, "s." .. key, "p|" .. ARGV[i + 1])
    redis.call("HDEL", sk, "j." .. key)
    changed = true
  elseif cur == "c" then
    late[#late + 1] = key
  end
end
if changed and redis.call("EXISTS", job_key(pid)) == 1 then
  redis.call("HINCRBY", job_key(pid), "ver", 1)
end
return late
