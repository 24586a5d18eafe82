-- Pauses (ARGV[1] = "1") or resumes (ARGV[1] = "0") a queue.
if ARGV[1] == "1" then
  redis.call("SET", K_PAUSED, "1")
else
  redis.call("DEL", K_PAUSED)
  redis.call("PUBLISH", C_NOTIFY, 0)
end
return 1
