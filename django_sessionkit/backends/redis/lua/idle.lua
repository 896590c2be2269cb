-- ARGV: base, chunk id of the expiry index, moment (ms). The public ids of the
-- chunk's sessions last active before the moment, and "!<public id>" for each
-- whose activity cannot be read.
local key = ck(X, ARGV[2])
local before = tonumber(ARGV[3])
local out = {}
for _, member in ipairs(redis.call('ZRANGE', key, 0, -1)) do
  local sep = string.find(member, ':', 1, true)
  local pid = member
  if sep then pid = string.sub(member, 1, sep - 1) end
  local f, wrong = hfields(skey(pid), 'a')
  local a = tonumber(f[1])
  if a then
    if a < before then out[#out + 1] = pid end
  elseif wrong or f[1] then
    out[#out + 1] = '!' .. pid  -- no session: counted as unreadable, never deleted here
  end
end
return out
