-- Record one wallet/auth attempt for a user and an IP, atomically.
-- A failure is added to each scope's sliding window (a sorted set of attempt
-- times); the scope that reaches the limit within the window is blocked for the
-- duration of its offence (escalating), and its window is cleared. A reported
-- success clears only the caller's own user window, never the IP's (one user's success
-- says nothing about the others behind the address), at most ARGV[9] times per window,
-- and never lifts an active block.
-- KEYS[1] user failures   KEYS[3] user offences   KEYS[5] user block   KEYS[7] user resets
-- KEYS[2] IP failures     KEYS[4] IP offences     KEYS[6] IP block
-- ARGV: 1 now_ms, 2 'failure'|'success', 3 window_ms, 4 max failures,
--       5 block durations in ms, comma-separated (offence 1, 2, ...; the last repeats),
--       6 offence memory ms, 7 attempt id (unique), 8 has user (0/1),
--       9 success resets allowed per window
-- Returns {blocked 0/1, attempts left, blocked until ms (0: not blocked),
--          user newly blocked until ms (0: no), IP newly blocked until ms (0: no),
--          user offence, IP offence}

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

local scopes = {}
if ARGV[8] == '1' then
  table.insert(scopes, {KEYS[1], KEYS[3], KEYS[5]})
else
  table.insert(scopes, false)
end
table.insert(scopes, {KEYS[2], KEYS[4], KEYS[6]})

local newly = {0, 0}
local offence = {0, 0}
local left = max_failures
for i, scope in ipairs(scopes) do
  if scope then
    local fail_key, offence_key, block_key = scope[1], scope[2], scope[3]
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
      redis.call('ZADD', fail_key, now, ARGV[7])
      redis.call('ZREMRANGEBYSCORE', fail_key, '-inf', now - window)
      redis.call('PEXPIRE', fail_key, window)
      local count = redis.call('ZCARD', fail_key)
      if count >= max_failures then
        local n = redis.call('INCR', offence_key)
        redis.call('PEXPIRE', offence_key, ARGV[6])
        local duration = durations[math.min(n, #durations)]
        redis.call('SET', block_key, string.format('%d', now + duration), 'PX', string.format('%d', duration))
        redis.call('DEL', fail_key)
        newly[i] = now + duration
        offence[i] = n
      end
    end
    left = math.min(left, max_failures - redis.call('ZCARD', fail_key))
  end
end

local until_user = scopes[1] and blocked_until(KEYS[5]) or 0
local until_ip = blocked_until(KEYS[6])
local until_any = math.max(until_user, until_ip)
if until_any > 0 then
  left = 0
end
return {until_any > 0 and 1 or 0, left, until_any, newly[1], newly[2], offence[1], offence[2]}
