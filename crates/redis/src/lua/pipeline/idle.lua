-- Sets when the sweeper next looks at a pipeline that had nothing to do, unless
-- it moved meanwhile. ARGV: id, ver, delay_ms.
local pid = ARGV[1]
if redis.call("HGET", job_key(pid), "ver") == ARGV[2] and redis.call("ZSCORE", K_ACTIVE, pid) then
  redis.call("ZADD", K_ACTIVE, server_now() + tonumber(ARGV[3]), pid)
end
return 1
