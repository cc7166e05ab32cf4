-- A rate-limit decision's part in Redis, atomically: for each of its sections (one per hash
-- slot the decision needs: the user's {u:...}, the address's {ip:...}, the country's
-- {cc:...}), the blocks kept in that slot, then that slot's GCRA bucket; the request is
-- counted in every section's bucket only when no section denied it.
--
-- shared/ratelimit/limiter.py sends every section in one call on one Redis (so a decision
-- is one script, all or nothing, as before), and one call per section on a Redis Cluster
-- (a script may touch one slot only there), all in one pipeline; then a section counts
-- the request when it alone allows it, and the caller gives the count back
-- (rate_refund.lua) when another section denied it. The same script, the same keys, on
-- both. The GCRA arithmetic is shared/ratelimit/gcra.py's (integer microseconds).
--
-- KEYS, per section in order: the bucket, its n block keys (in the order they take
-- precedence), then the user's panic pass when the section looks at one
-- ARGV: 1 now_us, 2 period_us, 3 the number of sections, 4 the keys' grace in ms (how
--       long a bucket's key outlives its TAT), then per section:
--       the bucket's limit, the limit while the user holds a panic pass (0: no pass key),
--       the bucket's reason when it denies ('user_limit', 'ip_limit', 'country_cap'),
--       n, and the reason of each of the n block keys
--
-- Returns, per section, 8 values: {allowed 0/1, retry_after_us, remaining (-1: none),
--   reset_after_us, the bucket's new TAT (0: not counted), pass 0/1, reason ('ok' when
--   allowed), the bucket's interval in us (what rate_refund.lua gives back)}.

local now = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local sections = tonumber(ARGV[3])
local grace_ms = tonumber(ARGV[4])

local out = {}
local writes = {}
local denied = false
local k = 1 -- the next key
local a = 5 -- the next argument
for _ = 1, sections do
  local limit = tonumber(ARGV[a])
  local pass_limit = tonumber(ARGV[a + 1])
  local bucket_reason = ARGV[a + 2]
  local blocks = tonumber(ARGV[a + 3])
  local bucket = KEYS[k]
  local pass = 0
  if pass_limit > 0 and redis.call('EXISTS', KEYS[k + 1 + blocks]) == 1 then
    pass = 1
  end
  local answer = nil
  for i = 1, blocks do
    local ttl = redis.call('PTTL', KEYS[k + i])
    if ttl ~= -2 then
      local retry = 0
      if ttl > 0 then
        retry = ttl * 1000
      end
      answer = {0, retry, -1, 0, 0, pass, ARGV[a + 3 + i], 0}
      break
    end
  end
  if not answer then
    if pass == 1 then
      limit = pass_limit
    end
    local interval = math.max(1, math.floor(period / limit))
    local tat = now
    local stored = redis.call('GET', bucket)
    if stored then
      tat = math.max(tonumber(stored), now)
    end
    local new_tat = tat + interval
    local allow_at = new_tat - period
    if now < allow_at then
      answer = {0, allow_at - now, 0, 0, 0, pass, bucket_reason, interval}
    else
      answer = {1, 0, math.floor((now - allow_at) / interval), new_tat - now, new_tat, pass,
        'ok', interval}
      writes[#writes + 1] = {bucket, new_tat, new_tat - now, #out + 5}
    end
  end
  if answer[1] == 0 then
    denied = true
  end
  for _, v in ipairs(answer) do
    out[#out + 1] = v
  end
  k = k + 1 + blocks
  if pass_limit > 0 then
    k = k + 1
  end
  a = a + 4 + blocks
end

for _, w in ipairs(writes) do
  if denied then
    out[w[4]] = 0 -- not counted
  else
    redis.call('SET', w[1], string.format('%d', w[2]),
      'PX', string.format('%d', math.max(1, math.ceil(w[3] / 1000)) + grace_ms))
  end
end
return out
