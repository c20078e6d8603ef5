-- Counters, each atomically: push this instance's settled amount, drop leases of dead instances,
-- decide an admission if asked, and grant more room within the limit. One call carries many
-- counters (a tick's worth), so a busy instance pays one command for all of them.
-- KEYS[i] counter hash i; an instance is alive while its key <alive prefix><id> exists (refreshed every tick)
-- ARGV: 1 instance, 2 alive prefix (lg:alive:, under the namespace if any), then FIELDS values per counter, in KEYS order:
--       initial value, limit, pushed (the running total of this instance's settled amounts, see below),
--       lease held, consumed (in flight + settled not pushed),
--       need (this admission's reservation), request (extra room wanted), key ttl ms,
--       admission? ("1"/"0"), unit (a typical reservation),
--       recover? ("1": Redis lost its data; the initial value is what this instance last saw),
--       acked (the part of the total a reply confirmed), series (numbers the instance's running totals),
--       waited (how many ms each request waiting on this instance for room on the counter has waited,
--       oldest first, comma-separated; "": none)
-- Returns 6 values per counter: admitted, lease, shared value, others' leases, live peers, and how many
-- requests waiting on other instances came before this one's oldest (or before now, with none).
local FIELDS = 14
local me = ARGV[1]
local alivePrefix = ARGV[2]
local alive = {}
local out = {}
-- Redis's clock orders the waiting requests: before Redis 5 a script that reads it must replicate its effects, not itself.
if redis.replicate_commands then redis.replicate_commands() end
local clock = redis.call('TIME')
local nowMs = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
for k = 1, #KEYS do
  local h = KEYS[k]
  local a = 2 + (k - 1) * FIELDS
  -- f: the floor the value was made from. After a loss each instance brings the value it last saw, a
  -- floor of what was pushed before; the value is the highest floor plus what was pushed since.
  if redis.call('HEXISTS', h, 'v') == 0 then
    redis.call('HSET', h, 'v', ARGV[a + 1], 'f', ARGV[a + 1])
  elseif ARGV[a + 11] == '1' then
    local f = tonumber(redis.call('HGET', h, 'f') or '0')
    local floor = tonumber(ARGV[a + 1])
    if floor > f then
      redis.call('HINCRBYFLOAT', h, 'v', floor - f)
      redis.call('HSET', h, 'f', tostring(floor))
    end
  end
  -- Settled amounts come as a running total, of which p:<instance> keeps what was added ("series:total"):
  -- only the rest is added. A sync whose reply timed out may still run after it was sent again (a hung
  -- Redis runs every command waiting on the connection when it resumes): it then adds nothing twice.
  -- A total of another series (a counter this instance made again) counts from what its reply confirmed.
  local mine = 'p:' .. me
  local base = tonumber(ARGV[a + 12])
  local kept = redis.call('HGET', h, mine)
  if kept then
    local cut = string.find(kept, ':', 1, true)
    if cut and string.sub(kept, 1, cut - 1) == ARGV[a + 13] then base = tonumber(string.sub(kept, cut + 1)) end
  end
  local push = 0
  if tonumber(ARGV[a + 3]) > base then
    push = tonumber(ARGV[a + 3]) - base
    redis.call('HSET', h, mine, ARGV[a + 13] .. ':' .. ARGV[a + 3])
  end
  local v = tonumber(redis.call('HINCRBYFLOAT', h, 'v', string.format('%.17g', push)))
  local limit = tonumber(ARGV[a + 2])
  -- w:<instance> is when each request waiting on that instance for room on the counter began to wait
  -- (Redis's clock: instances send how long each has waited), oldest first. A request asking for room
  -- is admitted only with room left for every request elsewhere that came before it: the queue is one,
  -- first come, first served, across the instances.
  local mine = {}
  for ms in string.gmatch(ARGV[a + 14], '[^,]+') do mine[#mine + 1] = nowMs - tonumber(ms) end
  local since = mine[1] or nowMs
  local fields = redis.call('HGETALL', h)
  local others, peers = 0, 0
  local waits = {}
  for i = 1, #fields, 2 do
    local f = fields[i]
    local kind = string.sub(f, 1, 2)
    if kind == 'l:' or kind == 'p:' or kind == 'w:' then
      local who = string.sub(f, 3)
      if who ~= me then
        if alive[who] == nil then alive[who] = redis.call('EXISTS', alivePrefix .. who) == 1 end
        if not alive[who] then
          redis.call('HDEL', h, f)
        elseif kind == 'l:' then
          others = others + tonumber(fields[i + 1])
          peers = peers + 1
        elseif kind == 'w:' then
          for t in string.gmatch(fields[i + 1], '[^,]+') do waits[#waits + 1] = tonumber(t) end
        end
      end
    end
  end
  local function before(t)
    local n = 0
    for _, w in ipairs(waits) do if w < t then n = n + 1 end end
    return n
  end
  local ahead = before(since)
  local consumed = tonumber(ARGV[a + 5])
  -- What this instance has in use stays held, whatever lease it brings (after Redis lost its data, or
  -- after admitting on its own while Redis was away): the other instances must see it. Room beyond it
  -- is held only up to what is left: a lease granted in an emptied Redis before the other instances
  -- brought back what they admitted meanwhile would otherwise admit past the limit. Nor is room the
  -- earlier waiting requests elsewhere are owed held here beyond what is in use.
  local lease = math.max(math.min(tonumber(ARGV[a + 4]), limit - v - others - ahead), consumed)
  local need = tonumber(ARGV[a + 6])
  local admitted = 1
  if ARGV[a + 9] == '1' then
    if v + others + consumed + ahead >= limit then
      admitted = 0
    else
      lease = math.max(lease, consumed + need)
    end
  end
  -- This instance's oldest waiting request, once admitted, leaves the next one oldest here.
  if ARGV[a + 9] == '1' and admitted == 1 and #mine > 0 then table.remove(mine, 1) end
  if #mine > 0 then
    redis.call('HSET', h, 'w:' .. me, table.concat(mine, ','))
  else
    redis.call('HDEL', h, 'w:' .. me)
  end
  -- Extra room is at most this instance's share of half of what is left, and only when that share
  -- holds a whole request: near the edge every decision is taken here, exactly.
  local grant = 0
  local free = limit - v - others - math.max(lease, consumed) - ahead
  local share = free / (2 * (peers + 1))
  local request = tonumber(ARGV[a + 7])
  if admitted == 1 and request > 0 and share >= tonumber(ARGV[a + 10]) then grant = math.min(request, share) end
  lease = lease + grant
  redis.call('HSET', h, 'l:' .. me, tostring(lease))
  redis.call('PEXPIRE', h, ARGV[a + 8])
  out[#out + 1] = admitted
  out[#out + 1] = tostring(lease)
  out[#out + 1] = tostring(v)
  out[#out + 1] = tostring(others)
  out[#out + 1] = peers
  -- Ahead of this instance's oldest waiting request from now on (the next one, when its oldest was admitted).
  out[#out + 1] = before(mine[1] or nowMs)
end
return out
