-- ARGV: base, moment (ms), public ids... Deletes those sessions still last
-- active before the moment (one active meanwhile is kept); returns how many.
local before = tonumber(ARGV[2])
local n = 0
for i = 3, #ARGV do
  local a = tonumber(hfield(skey(ARGV[i]), 'a'))
  if a and a < before then n = n + drop(ARGV[i]) end
end
return n
