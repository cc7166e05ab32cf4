-- Grant a panic pass (priority lane) if the user has passes left today.
-- Idempotent while a pass is active: the active pass is returned, none is used.
-- KEYS[1] the user's pass   KEYS[2] the user's pass count for the day
-- ARGV: 1 now_ms, 2 pass duration ms, 3 passes per day, 4 day counter ttl ms
-- Returns {granted 0/1, expires at ms (0: none), passes left today, newly granted 0/1}

local now = tonumber(ARGV[1])
local per_day = tonumber(ARGV[3])
local used = tonumber(redis.call('GET', KEYS[2]) or '0')
local active = redis.call('GET', KEYS[1])
if active then
  return {1, tonumber(active), math.max(0, per_day - used), 0}
end
if used >= per_day then
  return {0, 0, 0, 0}
end
used = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('SET', KEYS[1], string.format('%d', now + tonumber(ARGV[2])), 'PX', ARGV[2])
return {1, now + tonumber(ARGV[2]), math.max(0, per_day - used), 1}
