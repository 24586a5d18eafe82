-- Cools an API key down. ARGV: fp, reason (rate_limited | billing | spent), ms.
-- A billing cool-down replaces anything; a rate-limit one replaces a rate-limit
-- or spent one (the vendor's latest hint wins) but never a billing one; a spent
-- rest (a success said the budget is spent) only sets where nothing is.
-- Returns 1 if set.
local ck = cool_key(ARGV[1])
if ARGV[2] == "spent" and redis.call("EXISTS", ck) == 1 then return 0 end
if ARGV[2] ~= "billing" and redis.call("GET", ck) == "billing" then return 0 end
redis.call("SET", ck, ARGV[2], "PX", ARGV[3])
return 1
