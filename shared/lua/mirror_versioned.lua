-- Store a document mirror in a hash only if it is newer than what is there.
-- Keeps a Redis mirror of a versioned Firestore document monotonic when a late
-- writer (a slow hydration, a retried sync) races a newer one.
-- KEYS[1]  the hash (fields: version, doc)
-- ARGV[1]  the document's version (integer)
-- ARGV[2]  the document as JSON
-- Returns 1 when stored, 0 when the hash already holds this version or a newer one.
local current = tonumber(redis.call('HGET', KEYS[1], 'version') or '-1')
if current >= tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'doc', ARGV[2])
return 1
