-- One counter, atomically: push this instance's settled amount, drop leases of dead instances,
-- decide an admission if asked, and grant more room within the limit.
-- KEYS[1] counter hash; an instance is alive while its key lg:alive:<id> exists (refreshed every tick)
-- ARGV: 1 instance, 2 initial value, 3 limit, 4 push, 5 lease held, 6 consumed (in flight + settled
--       not pushed), 7 need (this admission's reservation), 8 request (extra room wanted),
--       9 (unused), 10 key ttl ms, 11 admission? ("1"/"0"), 12 unit (a typical reservation)
local h = KEYS[1]
local me = ARGV[1]
if redis.call('HEXISTS', h, 'v') == 0 then redis.call('HSET', h, 'v', ARGV[2]) end
local v = tonumber(redis.call('HINCRBYFLOAT', h, 'v', ARGV[4]))
local limit = tonumber(ARGV[3])
local fields = redis.call('HGETALL', h)
local others, peers = 0, 0
for i = 1, #fields, 2 do
  local f = fields[i]
  if string.sub(f, 1, 2) == 'l:' then
    local who = string.sub(f, 3)
    if who ~= me then
      if redis.call('EXISTS', 'lg:alive:' .. who) == 0 then
        redis.call('HDEL', h, f)
      else
        others = others + tonumber(fields[i + 1])
        peers = peers + 1
      end
    end
  end
end
local lease = tonumber(ARGV[5])
local consumed = tonumber(ARGV[6])
local need = tonumber(ARGV[7])
local admitted = 1
if ARGV[11] == '1' then
  if v + others + consumed >= limit then
    admitted = 0
  else
    lease = math.max(lease, consumed + need)
  end
end
-- Extra room is at most this instance's share of half of what is left, and only when that share
-- holds a whole request: near the edge every decision is taken here, exactly.
local grant = 0
local free = limit - v - others - math.max(lease, consumed)
local share = free / (2 * (peers + 1))
local request = tonumber(ARGV[8])
if admitted == 1 and request > 0 and share >= tonumber(ARGV[12]) then grant = math.min(request, share) end
lease = lease + grant
redis.call('HSET', h, 'l:' .. me, tostring(lease))
redis.call('PEXPIRE', h, ARGV[10])
return { admitted, tostring(lease), tostring(v), tostring(others), peers }
