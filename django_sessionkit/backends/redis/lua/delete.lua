-- ARGV: base, public ids... Returns how many sessions existed.
local n = 0
for i = 2, #ARGV do n = n + drop(ARGV[i]) end
return n
