-- Deletes the lease if ARGV[1] still owns it.
-- KEYS[1] the lease key; ARGV[1] the owner token.
-- Returns 1 when released, 0 when it lapsed or is someone else's.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
