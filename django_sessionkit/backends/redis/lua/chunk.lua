-- ARGV: base, chunk id, min, max, "1" for descending. The entries of one chunk
-- of the expiry index, as PAGE returns them: for walks that filter.
local lo, hi, rev = ARGV[3], ARGV[4], ARGV[5] == '1'
local key = ck(X, ARGV[2])
local entries
if rev then
  entries = redis.call('ZREVRANGEBYSCORE', key, hi, lo, 'WITHSCORES')
else
  entries = redis.call('ZRANGEBYSCORE', key, lo, hi, 'WITHSCORES')
end
local out = {}
for i = 1, #entries, 2 do listed(out, entries[i], entries[i + 1]) end
return out
