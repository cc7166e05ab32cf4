-- Add one pushed metrics sample to a service's per-minute bucket, atomically.
-- KEYS[1]  the minute's hash
-- ARGV[1]  requests ('' when not reported)
-- ARGV[2]  errors ('' when not reported)
-- ARGV[3]  cpu percent ('' when not reported): summed with a count, read as the mean
-- ARGV[4]  p95 latency ms ('' when not reported): the minute keeps the largest
-- ARGV[5]  queue depth ('' when not reported): the minute keeps the latest
-- ARGV[6]  time-to-live of the bucket, seconds
-- Returns the number of samples in the bucket.
local key = KEYS[1]
if ARGV[1] ~= '' then redis.call('HINCRBY', key, 'requests', ARGV[1]) end
if ARGV[2] ~= '' then redis.call('HINCRBY', key, 'errors', ARGV[2]) end
if ARGV[3] ~= '' then
  redis.call('HINCRBYFLOAT', key, 'cpu_sum', ARGV[3])
  redis.call('HINCRBY', key, 'cpu_n', 1)
end
if ARGV[4] ~= '' then
  local current = tonumber(redis.call('HGET', key, 'p95_max') or '-1')
  if tonumber(ARGV[4]) > current then redis.call('HSET', key, 'p95_max', ARGV[4]) end
end
if ARGV[5] ~= '' then redis.call('HSET', key, 'queue', ARGV[5]) end
local n = redis.call('HINCRBY', key, 'samples', 1)
redis.call('EXPIRE', key, tonumber(ARGV[6]))
return n
