-- Each key's limits now. ARGV: max_in_flight, rpm, tpm, adaptive, adaptive_start,
-- then fingerprints. Returns per key: in_flight (live holders), in_flight_limit,
-- requests left, tokens left (as strings; "" when that limit is off).
local now = server_now()
local max_in_flight, rpm, tpm = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local adaptive, start = tonumber(ARGV[4]), tonumber(ARGV[5])
local out = {}
for i = 6, #ARGV do
  local fp = ARGV[i]
  local lk = limit_key(fp)
  out[#out + 1] = tostring(redis.call("ZCOUNT", slots_key(fp), now, "+inf"))
  out[#out + 1] = tostring(in_flight_limit(lk, max_in_flight, adaptive, start))
  out[#out + 1] = rpm > 0 and tostring(math.floor(bucket(lk, "r_tok", "r_ts", rpm, now))) or ""
  out[#out + 1] = tpm > 0 and tostring(math.floor(bucket(lk, "t_tok", "t_ts", tpm, now))) or ""
end
return out
