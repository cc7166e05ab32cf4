-- Give back one request counted by rate_slot.lua when another slot of the same decision
-- denied it. Only while the bucket still holds the TAT that request set: when another
-- request was counted since, the bucket is left as it is (at most one request too
-- many is held against the subject, never one too few).
-- KEYS[1] the bucket   ARGV: 1 the TAT rate_slot.lua set, 2 the bucket's interval (us)
-- Returns 1 given back, 0 left as it was.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], string.format('%d', tonumber(ARGV[1]) - tonumber(ARGV[2])), 'KEEPTTL')
  return 1
end
return 0
