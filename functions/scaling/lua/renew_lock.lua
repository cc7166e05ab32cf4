-- Extend a lock only if this holder still owns it.
-- KEYS[1]  the lock key
-- ARGV[1]  the holder's token
-- ARGV[2]  the new time-to-live, milliseconds
-- Returns 1 when extended, 0 when the lock is not (or no longer) ours.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
end
return 0
