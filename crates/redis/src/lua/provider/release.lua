-- Gives back `holder`'s slot on a key. ARGV: fp, holder. Returns 1 if it held one.
return redis.call("ZREM", slots_key(ARGV[1]), ARGV[2])
