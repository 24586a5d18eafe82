-- Marks steps as pushed to their queues. ARGV: id, then pairs of step key
-- "<k>.<i>" and the queue it was pushed to.
local sk = steps_key(ARGV[1])
for i = 2, #ARGV, 2 do
  local key = ARGV[i]
  if redis.call("HGET", sk, "s." .. key) == "q" then
    redis.call("HSET", sk, "s." .. key, "p|" .. ARGV[i + 1])
    redis.call("HDEL", sk, "j." .. key)
  end
end
return 1
