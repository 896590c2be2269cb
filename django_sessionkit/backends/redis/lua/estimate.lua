-- ARGV: base, now, samples. Estimates the expired entries from the chunk
-- directory: the chunks wholly expired (all whose minimum is <= now but the
-- last) times the mean size of up to `samples` of them spread evenly, plus the
-- last one's ZCOUNT. Returns entries, expired chunks, estimated expired entries.
local now, samples = ARGV[2], tonumber(ARGV[3])
local dir = X .. ':d'
local total = tonumber(redis.call('GET', X .. ':n') or 0)
local chunks = redis.call('ZCOUNT', dir, '-inf', now)
if chunks == 0 then return {total, 0, 0} end
local whole = chunks - 1
local expired = redis.call('ZCOUNT', ck(X, redis.call('ZRANGE', dir, whole, whole)[1]), '-inf', now)
if whole > 0 then
  local taken = math.min(samples, whole)
  local size = 0
  for i = 0, taken - 1 do
    local rank = math.floor(i * whole / taken)
    size = size + redis.call('ZCARD', ck(X, redis.call('ZRANGE', dir, rank, rank)[1]))
  end
  expired = expired + math.floor(size * whole / taken + 0.5)
end
return {total, chunks, math.min(expired, total)}
