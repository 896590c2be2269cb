-- ARGV: base, chunk id of the user index. Drops the chunk's entries whose
-- session is gone (expired, pruned); returns how many.
local id = ARGV[2]
local key = ck(U, id)
local gone = {}
for _, pid in ipairs(redis.call('ZRANGE', key, 0, -1)) do
  if redis.call('EXISTS', skey(pid)) == 0 then gone[#gone + 1] = pid end
end
for first = 1, #gone, 500 do
  redis.call('ZREM', key, unpack(gone, first, math.min(first + 499, #gone)))
end
if #gone > 0 then
  redis.call('DECRBY', U .. ':n', #gone)
  settle(U, id)
end
return #gone
