-- ARGV: base, now, limit. Returns how many index entries were pruned.
return prune(ARGV[2], tonumber(ARGV[3]), false)
