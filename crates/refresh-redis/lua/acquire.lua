-- Takes the lease and hands out its fence, atomically.
-- KEYS[1] the lease key, KEYS[2] its fence counter (same hash slot).
-- ARGV[1] the owner token, ARGV[2] the TTL in milliseconds.
-- Returns the fence, or false when the lease is held.
--
-- The fence is max(counter + 1, the server's clock in microseconds): it
-- grows with every acquisition, and still grows after the counter was lost
-- (FLUSHALL, a restart without persistence, eviction) unless the server's
-- clock went back. The counter itself never expires.
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return false
end
local now = redis.call('TIME')
local floor = tonumber(now[1]) * 1000000 + tonumber(now[2])
local fence = tonumber(redis.call('GET', KEYS[2]) or '0') + 1
if fence < floor then
  fence = floor
end
redis.call('SET', KEYS[2], string.format('%d', fence))
return fence
