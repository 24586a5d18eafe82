-- Records a step's final outcome (idempotent: a step is recorded once).
-- ARGV: id, stage, index, fallback (1 when the outcome is the fallback job's),
-- status (succeeded|failed|cancelled), attempts, class, error, output, pl_events_maxlen.
-- Returns "ok", "dup" (recorded before, or an outcome superseded by its fallback),
-- "missing" (no such pipeline) or "unknown_step".
local pid, k, i, fb, status = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local jk, sk = job_key(pid), steps_key(pid)
local ptype = redis.call("HGET", jk, "type")
if not ptype then return "missing" end
local key = k .. "." .. i
local cur = redis.call("HGET", sk, "s." .. key)
if not cur then return "unknown_step" end
if cur == "d" or cur == "f" or cur == "c" then return "dup" end
if (redis.call("HGET", sk, "fb." .. key) or "0") ~= fb then return "dup" end
local st = "c"
if status == "succeeded" then st = "d" elseif status == "failed" then st = "f" end
redis.call("HSET", sk, "s." .. key, st, "a." .. key, ARGV[6])
redis.call("HDEL", sk, "j." .. key)
if st == "d" then
  redis.call("HSET", sk, "o." .. key, ARGV[9])
  redis.call("HINCRBY", jk, "done." .. k, 1)
else
  redis.call("HSET", sk, "e." .. key, ARGV[8], "c." .. key, ARGV[7])
  redis.call("HINCRBY", jk, "failed." .. k, 1)
  redis.call("HSETNX", jk, "fail." .. k, i)
end
redis.call("HINCRBY", jk, "ver", 1)
if not is_final(redis.call("HGET", jk, "status")) then
  redis.call("ZADD", K_ACTIVE, server_now(), pid)
end
pl_event(tonumber(ARGV[10]), pid, ptype, "step",
  {"stage", k, "index", i, "status", status, "attempts", ARGV[6], "class", ARGV[7]})
return "ok"
