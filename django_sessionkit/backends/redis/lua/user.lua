-- ARGV: base, user id, user digest, mode ("list" | "revoke"), public id to keep.
-- "list" returns the public id and what described() appends for each session
-- of the user;
-- "revoke" deletes them (but the one to keep) and returns how many.
-- Entries whose session is gone are pruned on the way.
local uid, h, mode, keep = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local out = {}
local revoked = 0
local id = locate(U, h)
if not id then
  if mode == 'revoke' then return 0 end
  return out
end
local pids = redis.call('ZRANGEBYSCORE', ck(U, id), h, h)
for _, pid in ipairs(pids) do
  local owner = hfield(skey(pid), 'u')
  if not owner then
    remove(U, pid, h)
  elseif owner == uid then
    if mode == 'revoke' then
      if pid ~= keep then revoked = revoked + drop(pid) end
    else
      fields(out, pid)
    end
  end
end
if mode == 'revoke' then return revoked end
return out
