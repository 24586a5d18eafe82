-- Extends `holder`'s slot on a key (a task still running at the vendor keeps it;
-- re-added if it had expired). ARGV: fp, holder, lease_ms.
hold(ARGV[1], ARGV[2], server_now(), tonumber(ARGV[3]))
return 1
