-- What every script shares: prepended to each of them (see keyspace.py).
--
-- Every script gets ARGV[1] = the key base ("<cache key>:<REDIS_PREFIX>") and
-- builds its key names from it, so scripts touch keys they do not declare:
-- fine on a single Redis server or a replicated one (django-redis's clients),
-- not on Redis Cluster, which django-redis does not support either.

local base = ARGV[1]
local X = base .. ':x'
local U = base .. ':u'
local CHUNK_MAX = 120
local CHUNK_MIN = 30

local function skey(pid) return base .. ':s:' .. pid end
local function ck(ix, id) return ix .. ':c:' .. id end

-- The fields of a session's hash, each false (a nil reply) when missing, and
-- all of them when the key holds another type: such a key is no session,
-- never an error that fails a whole listing. The second result says which.
local function hfields(key, ...)
  local f = redis.pcall('HMGET', key, ...)
  if type(f) == 'table' and f.err then
    f = {}
    for i = 1, select('#', ...) do f[i] = false end
    return f, true
  end
  return f, false
end
local function hfield(key, name) return hfields(key, name)[1] end
local function is_hash(key) return redis.call('TYPE', key).ok == 'hash' end

-- The chunk of index ix that holds (or would hold) score: the one with the
-- greatest minimum <= score, else the first one. nil when ix is empty.
local function locate(ix, score)
  local found = redis.call('ZREVRANGEBYSCORE', ix .. ':d', score, '-inf', 'LIMIT', 0, 1)
  if found[1] then return found[1] end
  return redis.call('ZRANGE', ix .. ':d', 0, 0)[1]
end

-- ZADD the entries[first..last] of a ZRANGE ... WITHSCORES reply to key, a
-- slice at a time: Lua's unpack() fails beyond a few thousand values.
local function zadd_entries(key, entries, first, last)
  local args = {}
  for i = first, last do
    args[#args + 1] = entries[2 * i]
    args[#args + 1] = entries[2 * i - 1]
    if #args == 500 or i == last then
      redis.call('ZADD', key, unpack(args))
      args = {}
    end
  end
end

local function move_all(from, to)
  local entries = redis.call('ZRANGE', from, 0, -1, 'WITHSCORES')
  if #entries > 0 then zadd_entries(to, entries, 1, #entries / 2) end
  redis.call('DEL', from)
end

-- Split an oversized chunk near its middle, at a change of score, so that
-- equal scores stay together; a chunk of one score stays whole.
local function split(ix, id)
  local key = ck(ix, id)
  local lowest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')[2]
  if lowest == redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')[2] then return end
  local entries = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
  local count = #entries / 2
  local function score(i) return tonumber(entries[2 * i]) end
  local mid = math.floor(count / 2) + 1
  local cut
  for i = mid, count do
    if score(i) ~= score(i - 1) then cut = i; break end
  end
  if not cut then
    for i = mid - 1, 2, -1 do
      if score(i) ~= score(i - 1) then cut = i; break end
    end
  end
  local new = redis.call('INCR', ix .. ':q')
  zadd_entries(ck(ix, new), entries, cut, count)
  redis.call('ZREMRANGEBYRANK', key, cut - 1, -1)
  redis.call('ZADD', ix .. ':d', entries[2 * cut], new)
end

local function insert(ix, member, score)
  local dir = ix .. ':d'
  local id = locate(ix, score)
  if not id then
    id = redis.call('INCR', ix .. ':q')
    redis.call('ZADD', dir, score, id)
  elseif tonumber(score) < tonumber(redis.call('ZSCORE', dir, id)) then
    redis.call('ZADD', dir, score, id)
  end
  local key = ck(ix, id)
  local added = redis.call('ZADD', key, score, member)
  redis.call('INCRBY', ix .. ':n', added)
  if redis.call('ZCARD', key) > CHUNK_MAX then split(ix, id) end
  return added
end

-- After removals from a chunk: forget it when empty, else refresh its
-- minimum and merge it into a neighbour when it has become small.
local function settle(ix, id, keep)
  local dir = ix .. ':d'
  local key = ck(ix, id)
  local size = redis.call('ZCARD', key)
  if size == 0 then
    redis.call('ZREM', dir, id)
    return
  end
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  redis.call('ZADD', dir, first[2], id)
  if size >= CHUNK_MIN or keep then return end
  local rank = redis.call('ZRANK', dir, id)
  local nxt = redis.call('ZRANGE', dir, rank + 1, rank + 1)[1]
  if nxt and size + redis.call('ZCARD', ck(ix, nxt)) <= CHUNK_MAX - CHUNK_MIN then
    move_all(key, ck(ix, nxt))
    redis.call('ZREM', dir, id)
    redis.call('ZADD', dir, first[2], nxt)
    return
  end
  if rank > 0 then
    local prv = redis.call('ZRANGE', dir, rank - 1, rank - 1)[1]
    if size + redis.call('ZCARD', ck(ix, prv)) <= CHUNK_MAX - CHUNK_MIN then
      move_all(key, ck(ix, prv))
      redis.call('ZREM', dir, id)
    end
  end
end

local function remove(ix, member, score)
  local id = locate(ix, score)
  if not id then return 0 end
  if redis.call('ZREM', ck(ix, id), member) == 0 then return 0 end
  redis.call('DECR', ix .. ':n')
  settle(ix, id)
  return 1
end

local function xmember(pid, h)
  if h and h ~= '' then return pid .. ':' .. h end
  return pid
end

local function index(pid, e, h)
  if insert(X, xmember(pid, h), e) == 1 and h ~= '' then
    redis.call('INCR', X .. ':a')
  end
  if h ~= '' then insert(U, pid, h) end
end

-- e and h as read from the hash: one garbled by hand leaves its index entry
-- to pruning, which drops entries whose session is gone.
local function unindex(pid, e, h)
  e, h = tonumber(e), tonumber(h) and h
  if e and remove(X, xmember(pid, h), e) == 1 and h then
    redis.call('DECR', X .. ':a')
  end
  if h then remove(U, pid, h) end
end

-- Delete a session and its index entries; 1 if it existed.
local function drop(pid)
  local key = skey(pid)
  local f = hfields(key, 'e', 'h')
  unindex(pid, f[1], f[2])
  return redis.call('DEL', key)
end

-- Remove up to limit expiry index entries of sessions expired at now (and
-- those sessions, should Redis not have expired them yet); return how many.
-- With users, their user index entries go too. Without (the bulk PRUNE of
-- clearsessions) they are left to Keyspace.sweep_users() and to USER, which
-- drop entries whose session is gone: removing them one by one costs a chunk
-- lookup and a settle each, most of the cost of pruning. The sessions still
-- there go with one DEL per slice of a chunk. The head chunk is never merged
-- while pruning: the next call empties it.
local function prune(now, limit, users)
  local dir = X .. ':d'
  local removed = 0
  while removed < limit do
    local head = redis.call('ZRANGE', dir, 0, 0)[1]
    if not head then break end
    local key = ck(X, head)
    local batch = redis.call('ZRANGEBYSCORE', key, '-inf', now, 'WITHSCORES',
                             'LIMIT', 0, math.min(limit - removed, 500))
    if #batch == 0 then
      if redis.call('EXISTS', key) == 1 then break end
      redis.call('ZREM', dir, head)  -- a chunk lost to eviction
    else
      local members = {}
      local doomed = {}
      local authenticated = 0
      for i = 1, #batch, 2 do
        local member, score = batch[i], batch[i + 1]
        members[#members + 1] = member
        local sep = string.find(member, ':', 1, true)
        local pid = member
        if sep then
          pid = string.sub(member, 1, sep - 1)
          if users then remove(U, pid, string.sub(member, sep + 1)) end
          authenticated = authenticated + 1
        end
        local sk = skey(pid)
        if tonumber(hfield(sk, 'e')) == tonumber(score) then
          doomed[#doomed + 1] = sk
        end
      end
      if #doomed > 0 then redis.call('DEL', unpack(doomed)) end
      redis.call('ZREM', key, unpack(members))
      redis.call('DECRBY', X .. ':n', #members)
      redis.call('DECRBY', X .. ':a', authenticated)
      removed = removed + #members
      settle(X, head, true)
    end
  end
  return removed
end

-- Append the state of the session pid and its u, e, ip, ua, c, a fields:
-- 'ok', 'gone' (no key: expired, awaiting pruning) or 'bad' (a key of
-- another type, or a hash without data: no session, but no error either).
local function described(out, pid)
  local key = skey(pid)
  local f, wrong = hfields(key, 'u', 'e', 'ip', 'ua', 'c', 'a')
  local state = 'ok'
  if redis.call('EXISTS', key) == 0 then
    state = 'gone'
  elseif wrong or redis.call('HEXISTS', key, 'd') == 0 then
    state = 'bad'
  end
  out[#out + 1] = state
  for j = 1, 6 do out[#out + 1] = f[j] end
end

-- Append an expiry index entry as PAGE and CHUNK return it: member, score,
-- then what described() appends.
local function listed(out, member, score)
  out[#out + 1] = member
  out[#out + 1] = score
  local sep = string.find(member, ':', 1, true)
  local pid = member
  if sep then pid = string.sub(member, 1, sep - 1) end
  described(out, pid)
end

local function fields(out, pid)
  out[#out + 1] = pid
  described(out, pid)
end
