-- Corrects a key's buckets after a call from what the vendor reported.
-- ARGV: fp, rpm, tpm, token_delta (actual - estimated tokens; may be negative),
-- remaining_requests (-1: unknown), remaining_tokens (-1: unknown).
-- The vendor's remaining figures cap the buckets (never raise them).
local now = server_now()
local fp = ARGV[1]
local rpm, tpm, delta = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local rem_r, rem_t = tonumber(ARGV[5]), tonumber(ARGV[6])
local lk = limit_key(fp)
if rpm > 0 and rem_r >= 0 then
  local r = bucket(lk, "r_tok", "r_ts", rpm, now)
  if rem_r < r then r = rem_r end
  redis.call("HSET", lk, "r_tok", tostring(r), "r_ts", now)
end
if tpm > 0 then
  local t = bucket(lk, "t_tok", "t_ts", tpm, now) - delta
  if rem_t >= 0 and rem_t < t then t = rem_t end
  if t > tpm then t = tpm end
  redis.call("HSET", lk, "t_tok", tostring(t), "t_ts", now)
end
redis.call("PEXPIRE", lk, STATE_TTL_MS)
return 1
