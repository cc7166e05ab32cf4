-- Admit a member into a capped set, atomically, if the config it was decided on
-- is still the current one.
-- KEYS[1]  the members set
-- KEYS[2]  the hash mirroring the config the decision read (field: version)
-- KEYS[3]  the hash mirroring the global switch the decision read (field: version)
-- ARGV[1]  the member id
-- ARGV[2]  capacity: the set may hold at most this many members (-1: no cap)
-- ARGV[3]  the config version the decision read
-- ARGV[4]  the global switch version the decision read
-- Returns 1 admitted, 2 already a member, 0 at capacity, -1 config changed (decide again).
if redis.call('HGET', KEYS[2], 'version') ~= ARGV[3]
  or redis.call('HGET', KEYS[3], 'version') ~= ARGV[4] then
  return -1
end
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then
  return 2
end
local capacity = tonumber(ARGV[2])
if capacity >= 0 and redis.call('SCARD', KEYS[1]) >= capacity then
  return 0
end
redis.call('SADD', KEYS[1], ARGV[1])
return 1
