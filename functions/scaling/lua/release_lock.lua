-- Release a lock only if this holder still owns it (a late holder never frees
-- the lock a later run took after this one's expired).
-- KEYS[1]  the lock key
-- ARGV[1]  the holder's token
-- Returns 1 when released, 0 when the lock was not (or no longer) ours.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
