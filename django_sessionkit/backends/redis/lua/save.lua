-- ARGV: base, mode ("create" | "update"), public id, now, ttl (s), expiry, user
-- id, user digest, data, session key, "1" when ip/ua are given, ip, user agent,
-- public id the session was loaded under (another secret) or "", then the
-- creation time and last activity to write instead of the stored one and now
-- (a copy from another engine), or "", then how many expired index entries
-- to prune on the way.
-- Returns 1 when saved, 0 when "create" found the session (CreateError), -1
-- when "update" did not find it (UpdateError).
local mode, pid, now, ttl, e = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6]
local uid, h, moved = ARGV[7], ARGV[8], ARGV[14]
local prune_on_write = tonumber(ARGV[17])
local activity = now
if ARGV[16] ~= '' then activity = ARGV[16] end
local key = skey(pid)
local exists = redis.call('EXISTS', key) == 1
if mode == 'create' and exists then return 0 end
-- A key of another type under this id holds no session to update.
if exists and not is_hash(key) then return -1 end
local created = hfield(key, 'c')
if moved ~= '' and moved ~= pid then
  local old = hfield(skey(moved), 'c')
  if mode == 'update' and not exists and not old then return -1 end
  created = created or old
  drop(moved)
elseif mode == 'update' and not exists then
  return -1
end
if exists then
  local old = hfields(key, 'e', 'h')
  unindex(pid, old[1], old[2])
end
if ttl <= 0 then
  redis.call('DEL', key)
  prune(now, prune_on_write, true)
  return 1
end
if ARGV[15] ~= '' then created = ARGV[15] end
redis.call('HSET', key, 'd', ARGV[9], 'k', ARGV[10], 'a', activity, 'e', e, 'c', created or now)
if uid ~= '' then
  redis.call('HSET', key, 'u', uid, 'h', h)
else
  redis.call('HDEL', key, 'u', 'h')
end
if ARGV[11] == '1' then
  for i, field in ipairs({'ip', 'ua'}) do
    local value = ARGV[11 + i]
    if value ~= '' then
      redis.call('HSET', key, field, value)
    else
      redis.call('HDEL', key, field)
    end
  end
end
redis.call('EXPIRE', key, ttl)
index(pid, e, h)
prune(now, prune_on_write, true)
return 1
