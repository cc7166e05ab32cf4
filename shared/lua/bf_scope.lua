-- Record one wallet/auth attempt in one scope of the brute-force shield, atomically: the
-- user's scope (keys tagged {u:...}) or the address's ({ip:...}), each in its own hash
-- slot, so it runs unchanged on one Redis and on a Redis Cluster. functions/ddos/
-- redis_store.py sends both scopes of an attempt in one pipeline and combines them.
--
-- A failure is added to the scope's sliding window (a sorted set of attempt times); the
-- scope that reaches its limit within the window is blocked for the duration of its
-- offence (escalating), and its window is cleared. A reported success clears only the
-- user's own window, never the address's (one user's success says nothing about the others
-- behind the address), at most ARGV[10] times per window, and never lifts an active block.
-- The address scope is fed only by failures the server observed, and counts distinct
-- accounts, not attempts: the credential-stuffing signature (OWASP: many accounts failing
-- from one source). A client's own report feeds only the reporting user's window: a real
-- attacker never reports its own failures, and one user's mistakes must not block everyone
-- behind a carrier NAT. An address with at least ARGV[11] established users seen behind it
-- (KEYS[4], KEYS[5]) is shared: its block is held for a human, as DDoS blocks of shared
-- addresses are.
--
-- KEYS, user scope:    1 failures, 2 offences, 3 block, 4 success resets
-- KEYS, address scope: 1 failures, 2 offences, 3 block,
--                      4, 5 established users behind the address, last and current minute (HLL)
-- ARGV: 1 now_ms, 2 'failure'|'success', 3 window_ms, 4 the scope's limit (failures for a
--       user, distinct failing accounts for an address), 5 block durations in ms,
--       comma-separated (offence 1, 2, ...; the last repeats), 6 offence memory ms,
--       7 the window's member (a unique attempt id for a user, the account for an
--       address), 8 'user'|'address', 9 fed 1/0 (0: only read the block),
--       10 success resets allowed per window (user), 11 established users that make an
--       address shared (address)
-- Returns {blocked until ms (0: not blocked), newly blocked until ms (0: no), offence,
--          block held (shared address) 0/1, attempts left in the window (user scope)}

local now = tonumber(ARGV[1])
local window = tonumber(ARGV[3])
local limit = tonumber(ARGV[4])
local user = ARGV[8] == 'user'
local durations = {}
for d in string.gmatch(ARGV[5], '[^,]+') do
  table.insert(durations, tonumber(d))
end

local function blocked_until()
  local until_ms = redis.call('GET', KEYS[3])
  if until_ms then
    return tonumber(until_ms)
  end
  return 0
end

local newly, offence, held = 0, 0, 0
if ARGV[9] == '1' then
  if ARGV[2] == 'success' then
    if user then
      local resets = redis.call('INCR', KEYS[4])
      if resets == 1 then
        redis.call('PEXPIRE', KEYS[4], window)
      end
      if resets <= tonumber(ARGV[10]) then
        redis.call('DEL', KEYS[1])
      end
    end
  elseif blocked_until() == 0 then
    redis.call('ZADD', KEYS[1], now, ARGV[7])
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
    redis.call('PEXPIRE', KEYS[1], window)
    local count = redis.call('ZCARD', KEYS[1])
    local shared = false
    if not user and count >= limit then
      local seen = math.max(redis.call('PFCOUNT', KEYS[4]), redis.call('PFCOUNT', KEYS[5]))
      shared = seen >= tonumber(ARGV[11])
    end
    if shared then
      if count == limit then
        held = 1 -- once per crossing: one alert, not one per attempt
      end
    elseif count >= limit then
      offence = redis.call('INCR', KEYS[2])
      redis.call('PEXPIRE', KEYS[2], ARGV[6])
      local duration = durations[math.min(offence, #durations)]
      redis.call('SET', KEYS[3], string.format('%d', now + duration), 'PX', string.format('%d', duration))
      redis.call('DEL', KEYS[1])
      newly = now + duration
    end
  end
end

local left = limit
if user then
  left = limit - redis.call('ZCARD', KEYS[1])
end
return {blocked_until(), newly, offence, held, left}
