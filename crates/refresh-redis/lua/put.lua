-- Version-guarded put of a cached token: never replaces a higher version.
-- KEYS[1] the entry (a hash: v = version, d = payload).
-- ARGV[1] the version (decimal, no leading zeros), ARGV[2] the payload,
-- ARGV[3] the TTL in ms (0: the entry lapses at once, so it is dropped).
-- Returns false when stored, or the cached (higher) version as a string.
--
-- Versions compare as decimal strings, exact over the whole u64 range (Lua
-- numbers are doubles). Anything under the key that is not a hash with a
-- readable version (junk written by something else) is replaced, so a bad
-- entry cannot disable the cache for its key.
local function higher(a, b)
  if #a ~= #b then
    return #a > #b
  end
  return a > b
end
if redis.call('TYPE', KEYS[1]).ok == 'hash' then
  local cached = redis.call('HGET', KEYS[1], 'v')
  if cached and string.match(cached, '^%d+$') then
    cached = string.gsub(cached, '^0+(%d)', '%1')
    if higher(cached, ARGV[1]) then
      return cached
    end
  end
end
redis.call('DEL', KEYS[1])
if ARGV[3] == '0' then
  return false
end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'd', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return false
