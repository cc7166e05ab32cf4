-- Record one wallet/auth attempt for a user and an IP, atomically.
-- A failure is added to each scope's sliding window (a sorted set of attempt
-- times); the scope that reaches the limit within the window is blocked for the
-- duration of its offence (escalating), and its window is cleared. A reported
-- success clears only the caller's own user window, never the IP's (one user's success
-- says nothing about the others behind the address), at most ARGV[9] times per window,
-- and never lifts an active block.
-- The address scope is fed only by failures the server observed (ARGV[10]
-- = 2), and counts distinct accounts, not attempts: the credential-stuffing signature
-- (OWASP: many accounts failing from one source). A client's own report (ARGV[10] = 0)
-- feeds only the reporting user's window: a real attacker never reports its own
-- failures, and one user's mistakes must not block everyone behind a carrier NAT. An
-- address with at least ARGV[12] established users seen behind it (KEYS[8], KEYS[9]) is
-- shared: its block is held for a human, as DDoS blocks of shared addresses are.
-- KEYS[1] user failures   KEYS[3] user offences   KEYS[5] user block   KEYS[7] user resets
-- KEYS[2] IP failures     KEYS[4] IP offences     KEYS[6] IP block
-- KEYS[8], KEYS[9] established users behind the address, last and current minute (HLL)
-- ARGV: 1 now_ms, 2 'failure'|'success', 3 window_ms, 4 max failures,
--       5 block durations in ms, comma-separated (offence 1, 2, ...; the last repeats),
--       6 offence memory ms, 7 attempt id (unique), 8 has user (0/1),
--       9 success resets allowed per window,
--       10 address scope: 0 not fed, 2 server-observed (distinct accounts),
--       11 the account the failure was for (the address window's member),
--       12 established users that make an address shared, 13 address offence memory ms,
--       14 distinct failing accounts that block an address
-- Returns {blocked 0/1, attempts left, blocked until ms (0: not blocked),
--          user newly blocked until ms (0: no), IP newly blocked until ms (0: no),
--          user offence, IP offence, address block held (shared) 0/1}

local now = tonumber(ARGV[1])
local window = tonumber(ARGV[3])
local max_failures = tonumber(ARGV[4])
local durations = {}
for d in string.gmatch(ARGV[5], '[^,]+') do
  table.insert(durations, tonumber(d))
end

local function blocked_until(block_key)
  local until_ms = redis.call('GET', block_key)
  if until_ms then
    return tonumber(until_ms)
  end
  return 0
end

local address_fed = ARGV[10] == '2'
local scopes = {}
if ARGV[8] == '1' then
  table.insert(scopes, {KEYS[1], KEYS[3], KEYS[5]})
else
  table.insert(scopes, false)
end
if address_fed then
  table.insert(scopes, {KEYS[2], KEYS[4], KEYS[6]})
else
  table.insert(scopes, false)
end

local newly = {0, 0}
local offence = {0, 0}
local held = 0
local left = max_failures
for i = 1, 2 do
  local scope = scopes[i]
  if scope then
    local fail_key, offence_key, block_key = scope[1], scope[2], scope[3]
    local member, limit, memory = ARGV[7], max_failures, ARGV[6]
    if i == 2 then
      member, limit, memory = ARGV[11], tonumber(ARGV[14]), ARGV[13]
    end
    if ARGV[2] == 'success' then
      if i == 1 then
        local resets = redis.call('INCR', KEYS[7])
        if resets == 1 then
          redis.call('PEXPIRE', KEYS[7], window)
        end
        if resets <= tonumber(ARGV[9]) then
          redis.call('DEL', fail_key)
        end
      end
    elseif blocked_until(block_key) == 0 then
      redis.call('ZADD', fail_key, now, member)
      redis.call('ZREMRANGEBYSCORE', fail_key, '-inf', now - window)
      redis.call('PEXPIRE', fail_key, window)
      local count = redis.call('ZCARD', fail_key)
      local shared = false
      if i == 2 and count >= limit then
        local seen = math.max(redis.call('PFCOUNT', KEYS[8]), redis.call('PFCOUNT', KEYS[9]))
        shared = seen >= tonumber(ARGV[12])
      end
      if shared then
        if count == limit then
          held = 1 -- once per crossing: one alert, not one per attempt
        end
      elseif count >= limit then
        local n = redis.call('INCR', offence_key)
        redis.call('PEXPIRE', offence_key, memory)
        local duration = durations[math.min(n, #durations)]
        redis.call('SET', block_key, string.format('%d', now + duration), 'PX', string.format('%d', duration))
        redis.call('DEL', fail_key)
        newly[i] = now + duration
        offence[i] = n
      end
    end
    if i == 1 then
      left = math.min(left, max_failures - redis.call('ZCARD', fail_key))
    end
  end
end

local until_user = scopes[1] and blocked_until(KEYS[5]) or 0
local until_ip = blocked_until(KEYS[6])
local until_any = math.max(until_user, until_ip)
if until_any > 0 then
  left = 0
end
return {until_any > 0 and 1 or 0, left, until_any, newly[1], newly[2], offence[1], offence[2], held}
