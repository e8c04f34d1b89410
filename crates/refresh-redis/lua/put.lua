-- Version-guarded put of a cached token: never replaces a higher version.
-- KEYS[1] the entry (a hash: v = version, d = payload).
-- ARGV[1] the version, ARGV[2] the payload, ARGV[3] the TTL in ms.
-- Returns false when stored, or the cached (higher) version as a string.
local cached = redis.call('HGET', KEYS[1], 'v')
if cached and tonumber(cached) > tonumber(ARGV[1]) then
  return cached
end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'd', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return false
