-- ARGV: base, min, max (ZRANGEBYSCORE bounds), offset, limit, "1" for
-- descending, directory ids read per ZRANGE. Returns what listed() appends per
-- entry; whole chunks before the offset are skipped by their size
-- (ZCARD when the bounds take everything, else ZCOUNT), the directory read a
-- slice at a time.
local lo, hi = ARGV[2], ARGV[3]
local offset, limit, rev = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6] == '1'
local everything = lo == '-inf' and hi == '+inf'
local dir = X .. ':d'
local out = {}
local got = 0
local size = redis.call('ZCARD', dir)
local SLICE = tonumber(ARGV[7])
local start = 0
while start < size and got < limit do
  local ids
  if rev then
    ids = redis.call('ZREVRANGE', dir, start, start + SLICE - 1)
  else
    ids = redis.call('ZRANGE', dir, start, start + SLICE - 1)
  end
  start = start + SLICE
  for _, id in ipairs(ids) do
    if got >= limit then break end
    local key = ck(X, id)
    local n
    if everything then n = redis.call('ZCARD', key) else n = redis.call('ZCOUNT', key, lo, hi) end
    if offset >= n then
      offset = offset - n
    else
      local entries
      local want = limit - got
      if rev then
        entries = redis.call('ZREVRANGEBYSCORE', key, hi, lo, 'WITHSCORES', 'LIMIT', offset, want)
      else
        entries = redis.call('ZRANGEBYSCORE', key, lo, hi, 'WITHSCORES', 'LIMIT', offset, want)
      end
      offset = 0
      for i = 1, #entries, 2 do
        listed(out, entries[i], entries[i + 1])
        got = got + 1
      end
    end
  end
end
return out
