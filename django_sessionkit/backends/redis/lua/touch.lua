-- ARGV: base, public id, now. Writes only the activity of an existing session.
local key = skey(ARGV[2])
if not is_hash(key) then return 0 end
redis.call('HSET', key, 'a', ARGV[3])
return 1
