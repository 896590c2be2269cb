"""Redis sessions on django-redis that record user, IP, user agent and activity.

``SESSION_ENGINE = "django_sessionkit.backends.redis"``, with
``SESSION_CACHE_ALIAS`` naming a django-redis cache. Each session is one Redis
hash that expires with the session (its TTL is the session's expiry age, as
with Django's cache engine)::

    <cache prefix>:<version>:<SESSIONKIT_REDIS_PREFIX>:s:<public id>
        d   the session data, serialized by SESSION_SERIALIZER (as the cache
            engine stores it: not signed, see SessionStore.serialize_data())
        k   the session key, for migratesessions
        u   user id (absent for anonymous sessions), h: its 32-bit digest
        ip, ua   client address and user agent, as the privacy settings allow
        c, a, e  created, last activity, expiry: Unix time in milliseconds

The hash is named by the session's public id, so the inventory finds a
session by its public id without a mapping. Two indexes make the inventory
cheap without ``KEYS``: ``:x`` orders every session by expiry (score ``e``,
member ``<public id>`` or ``<public id>:<h>``) and ``:u`` groups the sessions
of each user (score ``h``, member ``<public id>``).

Both indexes are *chunked sorted sets*: a directory sorted set maps chunk
ids to the lowest score of each chunk, and each chunk is a small sorted set
of at most ``CHUNK_MAX`` entries, which Redis stores as a compact listpack.
A plain sorted set costs about 130 bytes per entry (skiplist and hash table);
chunks cost about 55, so that for 100,000 sessions with the default metadata
the indexes add 6% (anonymous) to 9% (logged in) to the sessions' own memory.
Entries with equal scores are never split across chunks, so the sessions of
one user always sit in one chunk.

Every write goes through a Lua script: the data, the metadata and the index
entries change in one round trip and atomically. A read (``load()``) is one
``HMGET``. Index entries of expired sessions are pruned a few at a time by
every save, and in batches by :meth:`SessionStore.clear_expired`
(``clearsessions``).

When Redis cannot be reached, loading serves an empty, anonymous session and
logs an error; the store then refuses to save (:class:`SessionStorageUnavailable`,
which ``SessionKitMiddleware`` answers with a 503 page), so a session that
could not be read is never overwritten.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import weakref
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.sessions.backends.base import (
    VALID_KEY_CHARS,
    CreateError,
    SessionBase,
    UpdateError,
)
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone
from django.utils.crypto import get_random_string
from django.utils.encoding import force_bytes
from django.utils.functional import cached_property

from django_sessionkit.backends.base import (
    SessionKitStore,
    SessionStorageUnavailable,
    decoded_data,
    from_ms,
    to_ms,
    warn_unreadable,
)
from django_sessionkit.conf import conf
from django_sessionkit.public_id import KEY_SALT, LENGTH

try:
    from django_redis.exceptions import ConnectionInterrupted
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import NoScriptError, ResponseError
    from redis.exceptions import TimeoutError as RedisTimeoutError
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImproperlyConfigured(
        "django_sessionkit.backends.redis needs django-redis: "
        "pip install 'django-sessionkit[redis]'."
    ) from exc

logger = logging.getLogger(__name__)

#: What "Redis cannot be reached" looks like from redis-py and django-redis.
UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, ConnectionInterrupted)
#: The hash fields a load reads: data, last activity, expiry.
LOAD_FIELDS = ("d", "a", "e")
#: Index entries of expired sessions each save prunes on its way.
PRUNE_ON_WRITE = 4
#: Index entries one PRUNE script call removes at most (some 10 us each with
#: the session's hash): a batch of clear_expired() takes several calls, so
#: that no single command keeps Redis busy for more than a millisecond or two.
PRUNE_SLICE = 50
#: PRUNE script calls sent per pipelined round trip.
PRUNE_PIPELINE = 10
#: User index chunks swept per pipelined round trip (one script call each).
SWEEP_PIPELINE = 50
#: User index chunk ids read from its directory per round trip: reading a
#: directory of tens of thousands of chunks at once would hold Redis for 10 ms.
SWEEP_PAGE = 1000
CREATE_ATTEMPTS = 100

# -- Lua ----------------------------------------------------------------------
#
# Every script gets ARGV[1] = the key base ("<cache key>:<REDIS_PREFIX>") and
# builds its key names from it, so scripts touch keys they do not declare:
# fine on a single Redis server or a replicated one (django-redis's clients),
# not on Redis Cluster, which django-redis does not support either.

LIB = """
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
"""

# ARGV: base, mode ("create" | "update"), public id, now, ttl (s), expiry, user
# id, user digest, data, session key, "1" when ip/ua are given, ip, user agent,
# public id the session was loaded under (another secret) or "", then the
# creation time and last activity to write instead of the stored one and now
# (a copy from another engine), or "".
# Returns 1 when saved, 0 when "create" found the session (CreateError), -1
# when "update" did not find it (UpdateError).
SAVE = """
local mode, pid, now, ttl, e = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6]
local uid, h, moved = ARGV[7], ARGV[8], ARGV[14]
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
  prune(now, PRUNE, true)
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
prune(now, PRUNE, true)
return 1
""".replace("PRUNE", str(PRUNE_ON_WRITE))

# ARGV: base, public ids... Returns how many sessions existed.
DELETE = """
local n = 0
for i = 2, #ARGV do n = n + drop(ARGV[i]) end
return n
"""

# ARGV: base, public id, now. Writes only the activity of an existing session.
TOUCH = """
local key = skey(ARGV[2])
if not is_hash(key) then return 0 end
redis.call('HSET', key, 'a', ARGV[3])
return 1
"""

# ARGV: base, now, limit. Returns how many index entries were pruned.
PRUNE = """
return prune(ARGV[2], tonumber(ARGV[3]), false)
"""

# ARGV: base, chunk id of the user index. Drops the chunk's entries whose
# session is gone (expired, pruned); returns how many.
SWEEP = """
local id = ARGV[2]
local key = ck(U, id)
local gone = {}
for _, pid in ipairs(redis.call('ZRANGE', key, 0, -1)) do
  if redis.call('EXISTS', skey(pid)) == 0 then gone[#gone + 1] = pid end
end
for first = 1, #gone, 500 do
  redis.call('ZREM', key, unpack(gone, first, math.min(first + 499, #gone)))
end
if #gone > 0 then
  redis.call('DECRBY', U .. ':n', #gone)
  settle(U, id)
end
return #gone
"""

# ARGV: base, user id, user digest, mode ("list" | "revoke"), public id to keep.
# "list" returns the public id and what described() appends for each session
# of the user;
# "revoke" deletes them (but the one to keep) and returns how many.
# Entries whose session is gone are pruned on the way.
USER = """
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
"""

# ARGV: base, now, first, limit, "1" to count authenticated entries too.
# Counts the expired entries of the chunks ranked first .. first+limit-1 among
# those whose minimum is <= now, so that each call stays short. Returns
# entries, authenticated entries, chunks read, expired entries, authenticated
# expired entries. Every such chunk but the last holds only expired entries
# (a chunk's entries all score below the next one's minimum): its ZCARD
# counts it, unless authenticated entries are wanted, which reads members.
COUNT = """
local now, first, limit, auth = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5] == '1'
local dir = X .. ':d'
local last = redis.call('ZREVRANGEBYSCORE', dir, now, '-inf', 'LIMIT', 0, 1)[1]
local ids = redis.call('ZRANGEBYSCORE', dir, '-inf', now, 'LIMIT', first, limit)
local expired, expired_auth = 0, 0
for _, id in ipairs(ids) do
  local key = ck(X, id)
  if auth then
    for _, member in ipairs(redis.call('ZRANGEBYSCORE', key, '-inf', now)) do
      expired = expired + 1
      if string.find(member, ':', 1, true) then expired_auth = expired_auth + 1 end
    end
  elseif id == last then
    expired = expired + redis.call('ZCOUNT', key, '-inf', now)
  else
    expired = expired + redis.call('ZCARD', key)
  end
end
return {tonumber(redis.call('GET', X .. ':n') or 0), tonumber(redis.call('GET', X .. ':a') or 0),
        #ids, expired, expired_auth}
"""

# ARGV: base, now, samples. Estimates the expired entries from the chunk
# directory: the chunks wholly expired (all whose minimum is <= now but the
# last) times the mean size of up to `samples` of them spread evenly, plus the
# last one's ZCOUNT. Returns entries, expired chunks, estimated expired entries.
ESTIMATE = """
local now, samples = ARGV[2], tonumber(ARGV[3])
local dir = X .. ':d'
local total = tonumber(redis.call('GET', X .. ':n') or 0)
local chunks = redis.call('ZCOUNT', dir, '-inf', now)
if chunks == 0 then return {total, 0, 0} end
local whole = chunks - 1
local expired = redis.call('ZCOUNT', ck(X, redis.call('ZRANGE', dir, whole, whole)[1]), '-inf', now)
if whole > 0 then
  local taken = math.min(samples, whole)
  local size = 0
  for i = 0, taken - 1 do
    local rank = math.floor(i * whole / taken)
    size = size + redis.call('ZCARD', ck(X, redis.call('ZRANGE', dir, rank, rank)[1]))
  end
  expired = expired + math.floor(size * whole / taken + 0.5)
end
return {total, chunks, math.min(expired, total)}
"""

# ARGV: base, min, max (ZRANGEBYSCORE bounds), offset, limit, "1" for
# descending, directory ids read per ZRANGE. Returns what listed() appends per
# entry; whole chunks before the offset are skipped by their size
# (ZCARD when the bounds take everything, else ZCOUNT), the directory read a
# slice at a time.
PAGE = """
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
"""

# ARGV: base, chunk id, min, max, "1" for descending. The entries of one chunk
# of the expiry index, as PAGE returns them: for walks that filter.
CHUNK = """
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
"""


class LuaScript:
    """A script run with EVALSHA, loaded on first use on each server."""

    def __init__(self, body: str) -> None:
        self.source = LIB + body
        self.sha = hashlib.sha1(self.source.encode(), usedforsecurity=False).hexdigest()

    def __call__(self, client: Any, *args: Any) -> Any:
        try:
            return client.evalsha(self.sha, 0, *args)
        except NoScriptError:
            return client.eval(self.source, 0, *args)


SAVE_SCRIPT = LuaScript(SAVE)
DELETE_SCRIPT = LuaScript(DELETE)
TOUCH_SCRIPT = LuaScript(TOUCH)
PRUNE_SCRIPT = LuaScript(PRUNE)
SWEEP_SCRIPT = LuaScript(SWEEP)
USER_SCRIPT = LuaScript(USER)
COUNT_SCRIPT = LuaScript(COUNT)
PAGE_SCRIPT = LuaScript(PAGE)
ESTIMATE_SCRIPT = LuaScript(ESTIMATE)
CHUNK_SCRIPT = LuaScript(CHUNK)


# -- helpers ------------------------------------------------------------------


def reach(client: Any) -> None:
    """Connect *client* to Redis, sending no command, or raise as redis-py does.

    A write that fails here was refused: nothing was sent, so nothing was
    changed. Once connected, a write that fails (a timeout, a connection lost
    while waiting for the reply, even if redis-py's retries then find the
    server refusing) may have been applied.
    """
    pool = client.connection_pool
    try:
        connection = pool.get_connection()
    except TypeError:  # redis-py before 5.3 names the command
        connection = pool.get_connection("EVALSHA")
    pool.release(connection)


def text(value: bytes | str | None) -> str | None:
    """Return a Redis reply as text."""
    if isinstance(value, bytes):
        return value.decode()
    return value


def user_digest(user_id: str) -> str:
    """Return the score that groups the sessions of *user_id* in the user index."""
    digest = hashlib.blake2b(user_id.encode(), digest_size=4).digest()
    return str(int.from_bytes(digest, "big"))


@functools.lru_cache(maxsize=16)
def _digest_key(secret: str | bytes) -> bytes:
    # salted_hmac() derives this key from the salt and secret on every call;
    # the load of every request needs it, so derive it once per secret.
    return hashlib.sha256(force_bytes(KEY_SALT) + force_bytes(secret)).digest()


def storage_ids(session_key: str) -> list[str]:
    """Return the public ids *session_key* may be stored under, current secret first.

    The first is ``public_id(session_key)``. Sessions are stored under their
    public id, a digest keyed with ``SECRET_KEY``; after a rotation, sessions
    saved under a secret now in ``SECRET_KEY_FALLBACKS`` are still found (and
    moved on their next save).
    """
    message = session_key.encode()
    return [
        hmac.new(_digest_key(secret), message, hashlib.sha256).hexdigest()[:LENGTH]
        for secret in (settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS)
    ]


#: Keyspaces by cache object and prefix: a cache's KEY_PREFIX and version are
#: fixed for its lifetime, and Django makes new cache objects when CACHES changes.
_keyspaces: weakref.WeakKeyDictionary[Any, dict[str, Keyspace]] = weakref.WeakKeyDictionary()


class Keyspace:
    """Where the sessions of one django-redis cache live."""

    def __init__(self, alias: str, cache: Any = None) -> None:
        self.alias = alias
        self.cache: Any = caches[alias] if cache is None else cache
        self.base = str(self.cache.make_key(conf.REDIS_PREFIX))

    @classmethod
    def of(cls, alias: str) -> Keyspace:
        """Return the keyspace of the cache *alias*, made once per cache object."""
        cache = caches[alias]
        prefix = conf.REDIS_PREFIX
        known = _keyspaces.setdefault(cache, {})
        keyspace = known.get(prefix)
        if keyspace is None:
            keyspace = known[prefix] = cls(alias, cache)
        return keyspace

    def client(self, write: bool = True) -> Any:
        """Return django-redis's raw redis-py client of the cache.

        Raise ImproperlyConfigured when the cache is not django-redis on one
        server (system check ``sessionkit.E007`` / ``E008`` says so at start-up).
        """
        # What django_redis.get_redis_connection(alias) does, on the cache in hand.
        try:
            return self.cache.client.get_client(write)
        except AttributeError as exc:
            backend = type(self.cache)
            raise ImproperlyConfigured(
                f"django_sessionkit.backends.redis needs SESSION_CACHE_ALIAS to name a "
                f"django-redis cache (django_redis.cache.RedisCache) on one server; "
                f"{self.alias!r} is {backend.__module__}.{backend.__qualname__}."
            ) from exc
        except NotImplementedError as exc:
            raise ImproperlyConfigured(
                f"django_sessionkit.backends.redis cannot use the cache {self.alias!r}: "
                f"django-redis's sharded client spreads keys over several servers, and each "
                f"write of a session changes its hash and its index entries in one script."
            ) from exc

    def session(self, pid: str) -> str:
        """Return the name of the hash of the session with public id *pid*."""
        return f"{self.base}:s:{pid}"

    def run(self, script: LuaScript, *args: Any) -> Any:
        return script(self.client(), self.base, *args)

    def prune(self, now: datetime, batch_size: int) -> Iterator[int]:
        """Remove index entries of expired sessions in batches, yielding each batch's count.

        A batch is several script calls of at most ``PRUNE_SLICE`` entries
        each, sent ``PRUNE_PIPELINE`` to a round trip: every command stays
        short, and the round trips do not add up. Once something was pruned,
        the user index is swept (see :meth:`sweep_users`) as part of the last
        batch.
        """
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1.")
        now_ms = to_ms(now)
        client = self.client()
        # EVALSHA in a pipeline cannot fall back to EVAL: load the script first.
        client.script_load(PRUNE_SCRIPT.source)
        pruned_any = False
        while True:
            removed = 0
            exhausted = False
            while removed < batch_size and not exhausted:
                steps: list[int] = []
                left = batch_size - removed
                while left > 0 and len(steps) < PRUNE_PIPELINE:
                    steps.append(min(PRUNE_SLICE, left))
                    left -= steps[-1]
                pipe = client.pipeline(transaction=False)
                for step in steps:
                    pipe.evalsha(PRUNE_SCRIPT.sha, 0, self.base, now_ms, step)
                pruned = [int(n) for n in pipe.execute()]
                removed += sum(pruned)
                # Redis runs the calls in order: one that fell short found the end.
                exhausted = any(n < step for n, step in zip(pruned, steps, strict=True))
            if exhausted:
                if removed or pruned_any:
                    self.sweep_users()
                if removed:
                    yield removed
                return
            pruned_any = True
            yield removed

    def sweep_users(self) -> int:
        """Drop the user index entries of sessions that are gone; return how many.

        Pruning leaves them (see the PRUNE script). One short script per chunk
        of the user index, pipelined, reading the chunk ids from the
        directory ``SWEEP_PAGE`` at a time in the order of their scores (each
        chunk's lowest). A chunk that sweeping leaves small merges into the
        next one, which takes its score: a chain of merges can carry the
        lowest score of a page on to the first chunk after it. So each page
        starts at the lowest score of the one before, leaving out the chunks
        swept there. A chunk merged away meanwhile is simply found empty.
        """
        client = self.client()
        # EVALSHA in a pipeline cannot fall back to EVAL: load the script first.
        client.script_load(SWEEP_SCRIPT.source)
        directory = f"{self.base}:u:d"
        dropped = 0
        lowest: float | str = "-inf"
        swept: set[bytes] = set()
        while True:
            limit = SWEEP_PAGE + len(swept)
            page = client.zrangebyscore(
                directory, lowest, "+inf", start=0, num=limit, withscores=True
            )
            fresh = [(chunk_id, score) for chunk_id, score in page if chunk_id not in swept]
            for start in range(0, len(fresh), SWEEP_PIPELINE):
                pipe = client.pipeline(transaction=False)
                for chunk_id, _ in fresh[start : start + SWEEP_PIPELINE]:
                    pipe.evalsha(SWEEP_SCRIPT.sha, 0, self.base, chunk_id)
                dropped += sum(int(n) for n in pipe.execute())
            if len(page) < limit or not fresh:
                return dropped
            lowest = fresh[0][1]
            swept = {chunk_id for chunk_id, _ in fresh}


# -- the engine ---------------------------------------------------------------


class SessionStore(SessionKitStore, SessionBase):
    """Django's cache session store on django-redis, plus user, IP, user agent and activity."""

    def __init__(self, session_key: str | None = None) -> None:
        self._cache_alias: str = settings.SESSION_CACHE_ALIAS
        #: Set when a load could not reach Redis: this store must not write.
        self._unreadable = False
        #: Public id the loaded session is stored under (another secret's, after a rotation).
        self._stored_pid: str | None = None
        super().__init__(session_key)

    # -- plumbing --

    @cached_property
    def keyspace(self) -> Keyspace:
        return Keyspace.of(self._cache_alias)

    def serialize_data(self, data: dict[str, Any]) -> bytes:
        """Return *data* as stored: serialized by ``SESSION_SERIALIZER``, like the cache engine.

        Not signed: as with Django's cache engine, whoever can write to Redis
        can write sessions; unlike it, a JSON serializer never unpickles.
        """
        return bytes(self.serializer().dumps(data))

    def deserialize_data(self, raw: bytes | str) -> dict[str, Any]:
        """Return the session data of a stored value, ``{}`` when it cannot be read."""
        serializer = self.serializer()
        stored = raw if isinstance(raw, bytes) else raw.encode()
        return decoded_data(serializer.loads, stored, f"Redis (cache {self._cache_alias!r})")

    def _unavailable(
        self, action: str, exc: Exception, *, outcome_unknown: bool = False
    ) -> SessionStorageUnavailable:
        # The message never names the key: it may end up in a log or on a page.
        name = f"Redis (cache {self._cache_alias!r})"
        if isinstance(exc, ImproperlyConfigured):
            message = f"{name} cannot be used to {action} a session: {exc}"
        elif outcome_unknown:
            message = (
                f"{name} did not answer an attempt to {action} a session "
                f"({type(exc).__name__}): it may have been applied all the same."
            )
        else:
            message = f"{name} could not be reached to {action} a session ({type(exc).__name__})."
        return SessionStorageUnavailable(message, outcome_unknown=outcome_unknown)

    def _write(self, action: str, script: LuaScript, *args: Any) -> Any:
        """Run a write *script*; a failure says whether Redis may have applied it."""
        try:
            keyspace = self.keyspace
            client = keyspace.client()
            reach(client)
        except (*UNAVAILABLE, ImproperlyConfigured) as exc:
            raise self._unavailable(action, exc) from exc
        try:
            return script(client, keyspace.base, *args)
        except UNAVAILABLE as exc:
            raise self._unavailable(action, exc, outcome_unknown=True) from exc

    def _meta_args(self) -> tuple[list[str], list[str]]:
        """Return the SAVE script's metadata arguments: ip and user agent, then times."""
        copied = self.copied_metadata
        metadata = self.request_metadata or copied
        given = ["0", "", ""] if metadata is None else ["1", metadata.ip or "", metadata.user_agent]
        moments = (None, None) if copied is None else (copied.created_at, copied.last_activity)
        return given, ["" if moment is None else str(to_ms(moment)) for moment in moments]

    # -- SessionBase --

    def load(self) -> dict[str, Any]:
        if self.session_key is None:
            return {}
        ids = storage_ids(self.session_key)
        try:
            keyspace = self.keyspace
            client = keyspace.client(write=False)
            pipe = client.pipeline(transaction=False)
            for pid in ids:
                pipe.hmget(keyspace.session(pid), LOAD_FIELDS)
            # A key of another type answers an error in its place, not for the load.
            rows = pipe.execute(raise_on_error=False)
        except (*UNAVAILABLE, ImproperlyConfigured) as exc:
            logger.error(
                "%s Serving an empty session and refusing to save it.",
                self._unavailable("load", exc),
            )
            # Keep the key: the cookie must survive the outage, and a save must fail.
            self._unreadable = True
            return {}
        now = to_ms(timezone.now())
        for pid, row in zip(ids, rows, strict=True):
            if isinstance(row, ResponseError):
                warn_unreadable(logger, pid, "Session %s in Redis is not a hash: %s", pid, row)
                continue
            if all(value is None for value in row):
                continue
            data, activity, expiry = row
            try:
                if data is None or expiry is None:
                    raise ValueError("no data" if data is None else "no expiry")
                from_ms(expiry)  # in range
                loaded_activity = from_ms(activity)
            except ValueError as exc:
                warn_unreadable(logger, pid, "Session %s in Redis is unreadable: %s", pid, exc)
                continue
            if int(expiry) <= now:
                break  # expired by Django's clock, which may run ahead of Redis's TTL
            self._stored_pid = pid
            self.loaded_activity = loaded_activity
            return self.deserialize_data(data)
        self._session_key = None
        return {}

    async def aload(self) -> dict[str, Any]:
        return await sync_to_async(self.load, thread_sensitive=False)()

    def exists(self, session_key: str | None) -> bool:
        if not session_key:
            return False
        try:
            keyspace = self.keyspace
            client = keyspace.client(write=False)
            return bool(client.exists(*(keyspace.session(pid) for pid in storage_ids(session_key))))
        except (*UNAVAILABLE, ImproperlyConfigured) as exc:
            raise self._unavailable("look up", exc) from exc

    async def aexists(self, session_key: str | None) -> bool:
        return await sync_to_async(self.exists, thread_sensitive=False)(session_key)

    def create(self) -> None:
        if self._unreadable:
            raise SessionStorageUnavailable("The session could not be read; it is not replaced.")
        for _ in range(CREATE_ATTEMPTS):
            # No exists() round trip first: the save script refuses a taken key.
            self._session_key = get_random_string(32, VALID_KEY_CHARS)
            try:
                self.save(must_create=True)
            except CreateError:
                continue
            self.modified = True
            return
        raise RuntimeError("Unable to create a new session key.")

    async def acreate(self) -> None:
        await sync_to_async(self.create, thread_sensitive=False)()

    def save(self, must_create: bool = False) -> None:
        if self.session_key is None:
            return self.create()
        if self._unreadable:
            raise SessionStorageUnavailable("The session could not be read; it is not overwritten.")
        data = self._get_session(no_load=must_create)  # type: ignore[attr-defined]
        now = timezone.now()
        user_id = self.user_id_from(data)
        pid = storage_ids(self.session_key)[0]
        moved = "" if must_create or self._stored_pid in (None, pid) else self._stored_pid
        metadata, moments = self._meta_args()
        result = self._write(
            "save",
            SAVE_SCRIPT,
            "create" if must_create else "update",
            pid,
            to_ms(now),
            self.get_expiry_age(modification=now),
            to_ms(self.get_expiry_date(modification=now)),
            user_id or "",
            "" if user_id is None else user_digest(user_id),
            self.serialize_data(data),
            self.session_key,
            *metadata,
            moved,
            *moments,
        )
        if result == 0:
            raise CreateError
        if result == -1:
            raise UpdateError
        self._stored_pid = pid
        copied = self.copied_metadata
        self.loaded_activity = (copied and copied.last_activity) or now

    async def asave(self, must_create: bool = False) -> None:
        await sync_to_async(self.save, thread_sensitive=False)(must_create)

    def delete(self, session_key: str | None = None) -> None:
        if session_key is None:
            if self.session_key is None:
                return
            session_key = self.session_key
        # A failure raises: never pretend a logout worked, the session would outlive it.
        self._write("delete", DELETE_SCRIPT, *storage_ids(session_key))
        if session_key == self.session_key:
            self._stored_pid = None

    async def adelete(self, session_key: str | None = None) -> None:
        await sync_to_async(self.delete, thread_sensitive=False)(session_key)

    @classmethod
    def clear_expired(cls) -> None:
        """Prune the index entries of expired sessions; Redis expires the sessions itself."""
        for _ in cls.clear_expired_batches():
            pass

    @classmethod
    async def aclear_expired(cls) -> None:
        await sync_to_async(cls.clear_expired, thread_sensitive=False)()

    @classmethod
    def clear_expired_batches(cls, batch_size: int = 1000) -> Iterator[int]:
        """Prune expired sessions' index entries, *batch_size* per round trip, yielding counts."""
        return Keyspace.of(settings.SESSION_CACHE_ALIAS).prune(timezone.now(), batch_size)

    # -- SessionKitStore --

    def touch_activity(self, now: datetime) -> None:
        """Write ``last_activity``, one round trip; a failure only loses this mark."""
        if self.session_key is None or self._stored_pid is None:
            return
        try:
            self._write("record the activity of", TOUCH_SCRIPT, self._stored_pid, to_ms(now))
        except SessionStorageUnavailable as exc:
            logger.warning("%s", exc)
            return
        self.loaded_activity = now

    async def atouch_activity(self, now: datetime) -> None:
        await sync_to_async(self.touch_activity, thread_sensitive=False)(now)


def session_fields(row: Sequence[Any]) -> dict[str, Any]:
    """Return the metadata of a ``u, e, ip, ua, c, a`` reply as SessionInfo fields."""
    user_id, expiry, ip, user_agent, created, activity = (text(value) for value in row)
    return {
        "user_id": user_id,
        "ip": ip,
        "user_agent": user_agent or "",
        "created_at": from_ms(created),
        "last_activity": from_ms(activity),
        "expire_date": from_ms(expiry),
    }
