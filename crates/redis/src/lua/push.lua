-- Pushes jobs. ARGV: idempotency_ttl_s, count, then per job:
-- id, type, payload, delay_ms, idempotency_key ("" for none), pipeline id ("" for
-- none: set on a pipeline's step, whose final outcome is then handed to the pipeline).
-- Returns per job: the job id (an existing one for a known idempotency key), created (1/0).
-- A job whose id already exists is not pushed again (pushing a chosen id is idempotent
-- while its data lives).
local now = server_now()
local idem_ttl = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local out = {}
local created, ready = 0, 0
for i = 0, n - 1 do
  local o = 3 + i * 6
  local id, jtype, payload, delay, idem = ARGV[o], ARGV[o + 1], ARGV[o + 2], tonumber(ARGV[o + 3]), ARGV[o + 4]
  local pipe = ARGV[o + 5]
  local existing = false
  if idem ~= "" then
    local ik = base .. ":idem:" .. idem
    local cur = redis.call("GET", ik)
    if cur then
      out[#out + 1] = cur
      out[#out + 1] = 0
      existing = true
    else
      redis.call("SET", ik, id, "EX", idem_ttl)
    end
  end
  if not existing and redis.call("EXISTS", job_key(id)) == 1 then
    out[#out + 1] = id
    out[#out + 1] = 0
    existing = true
  end
  if not existing then
    local jk = job_key(id)
    redis.call("HSET", jk, "type", jtype, "payload", payload, "attempts", 0, "enq", now, "idem", idem)
    if pipe ~= "" then redis.call("HSET", jk, "pipe", pipe) end
    if delay > 0 then
      redis.call("HSET", jk, "status", "scheduled", "due", now + delay)
      redis.call("ZADD", K_SCHED, now + delay, id)
    else
      redis.call("HSET", jk, "status", "queued", "ready_at", now)
      redis.call("LPUSH", K_READY, id)
      ready = ready + 1
    end
    created = created + 1
    out[#out + 1] = id
    out[#out + 1] = 1
  end
end
if created > 0 then redis.call("HINCRBY", K_STATS, "pushed", created) end
if ready > 0 then redis.call("PUBLISH", C_NOTIFY, ready) end
return out
