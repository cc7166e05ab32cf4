-- One complete rate-limit decision, atomically, in one round trip:
-- block lists, DDoS mode and panic pass, the user's and the IP's GCRA buckets,
-- the country cap, and the per-minute counters the DDoS detector reads.
-- The GCRA arithmetic is shared/ratelimit/gcra.py's (integer microseconds).
--
-- KEYS[1]  user bucket              KEYS[8]  DDoS mode flag
-- KEYS[2]  IP bucket                KEYS[9]  stats hash of this minute
-- KEYS[3]  country bucket           KEYS[10] requests per IP this minute (zset)
-- KEYS[4]  brute-force block, user  KEYS[11] distinct IPs this minute (HyperLogLog)
-- KEYS[5]  brute-force block, IP    KEYS[12] requests per fingerprint this minute (zset)
-- KEYS[6]  DDoS block, IP           KEYS[13] distinct IPs of this fingerprint (HyperLogLog)
-- KEYS[7]  the user's panic pass
--
-- ARGV: 1 now_us, 2 period_us, 3 limit, 4 limit in DDoS mode, 5 country cap (0: none),
--       6 has user (0/1), 7 brute-force guarded class (0/1), 8 shadow mode (0/1),
--       9 class, 10 country ('' unknown), 11 ip, 12 fingerprint,
--       13 stats ttl (s), 14 top-lists ttl (s), 15 near-limit percent,
--       16 Redis failures this instance has not reported yet
--
-- Returns {allowed 0/1, remaining, retry_after_us, reset_after_us, reason, limit}.

local now = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local has_user = ARGV[6] == '1'
local guarded = ARGV[7] == '1'

-- remaining time of a block in microseconds, or nil when there is no block
local function block_us(key)
  local ttl = redis.call('PTTL', key)
  if ttl == -2 then
    return nil
  end
  if ttl == -1 then
    return 0
  end
  return ttl * 1000
end

local reason = nil
local retry = 0
local remaining = -1
local reset = 0

-- blocks: one EXISTS in the common case, the TTLs only when something is blocked
local any_block
if guarded then
  any_block = redis.call('EXISTS', KEYS[6], KEYS[5], KEYS[4])
else
  any_block = redis.call('EXISTS', KEYS[6])
end
if any_block > 0 then
  local ip_block = block_us(KEYS[6])
  if ip_block then
    reason, retry = 'ip_block', ip_block
  elseif guarded then
    local user_block = has_user and block_us(KEYS[4]) or nil
    local addr_block = block_us(KEYS[5])
    if user_block or addr_block then
      reason, retry = 'brute_force_block', math.max(user_block or 0, addr_block or 0)
    end
  end
end

local ddos = redis.call('EXISTS', KEYS[8]) == 1
local pass = has_user and ddos and redis.call('EXISTS', KEYS[7]) == 1
local limit = tonumber(ddos and ARGV[4] or ARGV[3])
local cap = tonumber(ARGV[5])

local updates = {}
if not reason and not pass then
  -- {key, limit, reason when denied}; the buckets' TATs in one MGET
  local buckets = {}
  if has_user then
    buckets[#buckets + 1] = {KEYS[1], limit, 'user_limit'}
  end
  buckets[#buckets + 1] = {KEYS[2], limit, 'ip_limit'}
  if cap > 0 then
    buckets[#buckets + 1] = {KEYS[3], cap, 'country_cap'}
  end
  local names = {}
  for i, bucket in ipairs(buckets) do
    names[i] = bucket[1]
  end
  local stored = redis.call('MGET', unpack(names))
  for i, bucket in ipairs(buckets) do
    local interval = math.max(1, math.floor(period / bucket[2]))
    local tat = now
    if stored[i] then
      tat = math.max(tonumber(stored[i]), now)
    end
    local new_tat = tat + interval
    local allow_at = new_tat - period
    if now < allow_at then
      reason, retry = bucket[3], allow_at - now
      break
    end
    if bucket[3] ~= 'country_cap' then
      local rem = math.floor((now - allow_at) / interval)
      if remaining < 0 or rem < remaining then
        remaining = rem
      end
      reset = math.max(reset, new_tat - now)
    end
    updates[#updates + 1] = {bucket[1], new_tat, new_tat - now}
  end
end

local allowed = 1
if reason then
  if ARGV[8] == '1' and (reason == 'user_limit' or reason == 'ip_limit' or reason == 'country_cap') then
    reason = 'shadow_limited'
  else
    allowed = 0
  end
  remaining = 0
else
  for _, update in ipairs(updates) do
    redis.call('SET', update[1], string.format('%d', update[2]),
      'PX', string.format('%d', math.max(1, math.ceil(update[3] / 1000))))
  end
  if pass then
    reason = 'panic_pass'
  else
    reason = 'ok'
  end
end
if remaining < 0 then
  remaining = limit
end

-- counters for the detector and the stats (a minute's total is the sum of req:<class>)
local class = ARGV[9]
local stats = KEYS[9]
local first = redis.call('HINCRBY', stats, 'req:' .. class, 1) == 1
if ARGV[10] ~= '' then
  redis.call('HINCRBY', stats, 'cc:' .. ARGV[10], 1)
end
if allowed == 0 then
  redis.call('HINCRBY', stats, 'den:' .. class, 1)
  redis.call('HINCRBY', stats, 'why:' .. reason, 1)
elseif reason == 'shadow_limited' then
  redis.call('HINCRBY', stats, 'shadow:' .. class, 1)
elseif reason == 'panic_pass' then
  redis.call('HINCRBY', stats, 'pass', 1)
elseif (limit - remaining) * 100 >= limit * tonumber(ARGV[15]) then
  redis.call('HINCRBY', stats, 'near:' .. class, 1)
end
local unreported = tonumber(ARGV[16])
if unreported > 0 then
  redis.call('HINCRBY', stats, 'redis_fail', unreported)
end
redis.call('ZINCRBY', KEYS[10], 1, ARGV[11])
redis.call('PFADD', KEYS[11], ARGV[11])
local fp_count = tonumber(redis.call('ZINCRBY', KEYS[12], 1, ARGV[12]))
redis.call('PFADD', KEYS[13], ARGV[11])
if first then
  redis.call('EXPIRE', stats, ARGV[13])
  redis.call('EXPIRE', KEYS[10], ARGV[14])
  redis.call('EXPIRE', KEYS[11], ARGV[13])
  redis.call('EXPIRE', KEYS[12], ARGV[14])
end
if fp_count == 1 then
  redis.call('EXPIRE', KEYS[13], ARGV[14])
end

return {allowed, remaining, retry, reset, reason, limit}
