-- Pushes the lease's expiry out if ARGV[1] still owns it.
-- KEYS[1] the lease key; ARGV[1] the owner token, ARGV[2] the TTL in ms
-- (0: the lease lapses now).
-- Returns 1 when extended, 0 when the lease lapsed or is someone else's.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  if ARGV[2] == '0' then
    redis.call('DEL', KEYS[1])
    return 1
  end
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
