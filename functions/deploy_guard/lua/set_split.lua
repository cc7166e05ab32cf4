-- Set a local service's traffic split, conditionally (the local platform's etag).
-- KEYS[1]  the service's hash
-- ARGV[1]  the split, JSON (revision -> percent)
-- ARGV[2]  the version the caller read ('' = unconditional, as a pin is)
-- Returns the new version, or -1 when the service changed since the caller read it.
local current = redis.call('HGET', KEYS[1], 'version') or '0'
if ARGV[2] ~= '' and ARGV[2] ~= current then
  return -1
end
local version = redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('HSET', KEYS[1], 'split', ARGV[1], 'pinned', '1')
return version
