-- ARGV: base, now, first, limit, "1" to count authenticated entries too.
-- Counts the expired entries of the chunks ranked first .. first+limit-1 among
-- those whose minimum is <= now, so that each call stays short. Returns
-- entries, authenticated entries, chunks read, expired entries, authenticated
-- expired entries. Every such chunk but the last holds only expired entries
-- (a chunk's entries all score below the next one's minimum): its ZCARD
-- counts it, unless authenticated entries are wanted, which reads members.
local now, first, limit, auth = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5] == '1'
local dir = X .. ':d'
local last = redis.call('ZREVRANGEBYSCORE', dir, now, '-inf', 'LIMIT', 0, 1)[1]
local ids = redis.call('ZRANGEBYSCORE', dir, '-inf', now, 'LIMIT', first, limit)
local expired, expired_auth = 0, 0
for _, id in ipairs(ids) do
  local key = ck(X, id)
  if auth then
    for _, member in ipairs(redis.call('ZRANGEBYSCORE', key, '-inf', now)) do
      expired = expired + 1
      if string.find(member, ':', 1, true) then expired_auth = expired_auth + 1 end
    end
  elseif id == last then
    expired = expired + redis.call('ZCOUNT', key, '-inf', now)
  else
    expired = expired + redis.call('ZCARD', key)
  end
end
return {tonumber(redis.call('GET', X .. ':n') or 0), tonumber(redis.call('GET', X .. ':a') or 0),
        #ids, expired, expired_auth}
