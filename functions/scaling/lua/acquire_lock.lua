-- Take a lock if nobody holds it, and hand out the next fencing number.
-- KEYS[1]  the lock key
-- KEYS[2]  the lock's fencing counter (never expires: numbers only grow)
-- ARGV[1]  the holder's token
-- ARGV[2]  time-to-live, milliseconds
-- Returns the fencing number (> 0) when taken, 0 when another holder has it.
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', tonumber(ARGV[2])) then
  return redis.call('INCR', KEYS[2])
end
return 0
