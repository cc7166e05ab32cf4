-- One complete rate-limit decision, atomically, in one round trip:
-- block lists, DDoS mode and panic pass, the user's and the IP's GCRA buckets,
-- and the country cap. The GCRA arithmetic is shared/ratelimit/gcra.py's
-- (integer microseconds). The detector's counters are batched by the caller
-- (shared/ratelimit/counters.py), not written here.
--
-- KEYS[1] user bucket   KEYS[4] brute-force block, user   KEYS[7] the user's panic pass
-- KEYS[2] address bucket KEYS[5] brute-force block, IP     KEYS[8] DDoS mode flag
-- KEYS[3] country bucket KEYS[6] DDoS block, IP            KEYS[9] DDoS block, user
--
-- ARGV: 1 now_us, 2 period_us, 3 limit, 4 limit in DDoS mode, 5 country cap (0: none),
--       6 has user (0/1), 7 brute-force guarded class (0/1), 8 shadow mode (0/1),
--       9 principal only (0/1): an ops/admin caller of an ops/admin function, or a
--         trusted service's own call. Counted in their own principal's bucket only: no
--         address bucket, no country cap, no IP block, no DDoS mode, so an attack (or its
--         mitigation) never locks the operators out, and an app backend's egress address
--         never stands for its users.
--       10 the address quota in users: base + the established users seen behind the
--          address lately, at most the max (the caller's copy, read back by the batched
--          counters' flush: no Redis work here)
--
-- Signed-in traffic is limited per user; the address bucket of a signed-in request holds
-- limit x ARGV[10]: one user of a carrier NAT never uses up everyone's quota. A request without a user is
-- counted in the address's own anonymous bucket (KEYS[2] is then that key) at the plain
-- limit.
--
-- A panic pass (DDoS mode only; only established accounts get one) restores the normal
-- limit, and nothing else: the country cap still applies (a pass is a lane back to normal
-- service, never a way around a region-wide cap an operator set), and both buckets still
-- count and apply: a pass never lets one address send more than its normal allowance,
-- whoever else shares it.
--
-- Returns {allowed 0/1, remaining, retry_after_us, reset_after_us, reason, limit}.

local now = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local has_user = ARGV[6] == '1'
local guarded = ARGV[7] == '1'
local staff = ARGV[9] == '1' and has_user

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
local ddos = false

-- blocks and DDoS mode: one EXISTS in the common case (none of them set)
local flagged
if staff then
  flagged = 0
elseif guarded then
  flagged = redis.call('EXISTS', KEYS[6], KEYS[8], KEYS[5], KEYS[4], KEYS[9])
else
  flagged = redis.call('EXISTS', KEYS[6], KEYS[8], KEYS[9])
end
if flagged > 0 then
  local ip_block = block_us(KEYS[6])
  local user_ddos_block = has_user and block_us(KEYS[9]) or nil
  if ip_block then
    reason, retry = 'ip_block', ip_block
  elseif user_ddos_block then
    reason, retry = 'user_block', user_ddos_block
  elseif guarded then
    local user_block = has_user and block_us(KEYS[4]) or nil
    local addr_block = block_us(KEYS[5])
    if user_block or addr_block then
      reason, retry = 'brute_force_block', math.max(user_block or 0, addr_block or 0)
    end
  end
  ddos = redis.call('EXISTS', KEYS[8]) == 1
end
local pass = has_user and ddos and redis.call('EXISTS', KEYS[7]) == 1
local limit = tonumber(ddos and ARGV[4] or ARGV[3])
local user_limit = tonumber(pass and ARGV[3] or limit)
local cap = tonumber(ARGV[5])
if staff then
  cap = 0
end

local address_limit = limit
if has_user and not staff then
  address_limit = limit * tonumber(ARGV[10])
end

local updates = {}
if not reason then
  -- {key, limit, reason when denied}; the buckets' TATs in one MGET
  local buckets = {}
  if has_user then
    buckets[#buckets + 1] = {KEYS[1], user_limit, 'user_limit'}
  end
  if not staff then
    buckets[#buckets + 1] = {KEYS[2], address_limit, 'ip_limit'}
  end
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
  remaining = user_limit
end
return {allowed, remaining, retry, reset, reason, user_limit}
