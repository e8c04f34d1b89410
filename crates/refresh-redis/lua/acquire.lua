-- Takes the lease and hands out its fence, atomically.
-- KEYS[1] the lease key, KEYS[2] its fence counter (same hash slot).
-- ARGV[1] the owner token, ARGV[2] the TTL in milliseconds (0: the lease
-- lapses at once, so only the fence is taken).
-- Returns the fence, or false when the lease is held.
--
-- The fence is max(counter + 1, the server's clock in microseconds): it
-- grows with every acquisition, and still grows after the counter was lost
-- (FLUSHALL, a restart without persistence, eviction, or junk written over
-- it) unless the server's clock went back. The counter itself never
-- expires.
--
-- Every read comes before the first write (the SET NX that takes the
-- lease): Redis does not roll a script back, so a script that failed
-- half-way could leave a lease nobody owns.
local now = redis.call('TIME')
local floor = tonumber(now[1]) * 1000000 + tonumber(now[2])
local stored = redis.pcall('GET', KEYS[2])
local counter = 0
if type(stored) == 'string' then
  counter = tonumber(stored) or 0
end
local fence = counter + 1
if fence < floor then
  fence = floor
end
if ARGV[2] == '0' then
  if redis.call('EXISTS', KEYS[1]) == 1 then
    return false
  end
elseif not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return false
end
redis.call('SET', KEYS[2], string.format('%d', fence))
return fence
