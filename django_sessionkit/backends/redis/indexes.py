"""The redis engine's two chunked indexes as a whole: pruning, sweeping, counting, paging.

:class:`Indexes` is reached as :attr:`Keyspace.indexes
<.keyspace.Keyspace.indexes>`. The keyspace names the keys and runs the
scripts; these methods say which, and in what slices, so that no single
command keeps Redis busy for long.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime

from django_sessionkit.backends.base import to_ms
from django_sessionkit.backends.redis.codec import text
from django_sessionkit.backends.redis.keyspace import EXPIRY_INDEX, USER_INDEX, Keyspace
from django_sessionkit.backends.redis.scripts import Stored, listed

logger = logging.getLogger(__name__)

#: Index entries one PRUNE script call removes at most (some 10 us each with
#: the session's hash): a batch of prune() takes several calls, so that no
#: single command keeps Redis busy for more than a millisecond or two.
PRUNE_SLICE = 50
#: PRUNE script calls sent per pipelined round trip.
PRUNE_PIPELINE = 10
#: User index chunks swept per pipelined round trip (one script call each).
SWEEP_PIPELINE = 50
#: User index chunk ids read from its directory per round trip: reading a
#: directory of tens of thousands of chunks at once would hold Redis for 10 ms.
SWEEP_PAGE = 1000
#: Chunks of the expiry index one counting script call reads: a ZCARD each,
#: or, to count authenticated sessions, up to 120 members each. Either way a
#: call takes a few milliseconds at most.
COUNT_CHUNKS = 500
COUNT_CHUNKS_AUTHENTICATED = 50


class Indexes:
    """The expiry index and the user index of a keyspace, as a whole."""

    def __init__(self, keyspace: Keyspace) -> None:
        self.keyspace = keyspace

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
        client = self.keyspace.client()
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
                    self.keyspace.run("prune", now_ms, step, client=pipe)
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
        client = self.keyspace.client()
        directory = self.keyspace.directory(USER_INDEX)
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
                    self.keyspace.run("sweep", chunk_id, client=pipe)
                dropped += sum(int(n) for n in pipe.execute())
            if len(page) < limit or not fresh:
                return dropped
            lowest = fresh[0][1]
            swept = {chunk_id for chunk_id, _ in fresh}

    def totals(self, now_ms: int, *, authenticated: bool = False) -> tuple[int, int, int, int]:
        """Return the expiry index's entries, the authenticated ones, and of each
        those expired at *now_ms*, in short script calls over slices of the chunks.

        Without *authenticated*, a chunk costs one ZCARD; with it, its members
        are read (the authenticated ones carry the user's score).
        """
        expired = expired_auth = first = 0
        limit = COUNT_CHUNKS_AUTHENTICATED if authenticated else COUNT_CHUNKS
        flag = "1" if authenticated else "0"
        while True:
            reply = self.keyspace.run("count", now_ms, first, limit, flag)
            total, auth, read, some, some_auth = (int(value) for value in reply)
            expired += some
            expired_auth += some_auth
            first += read
            if read < limit:
                return total, auth, expired, expired_auth

    def estimate(self, now_ms: int, samples: int) -> tuple[int, int, int]:
        """Return the expiry index's entries, its chunks holding expired entries, and
        an estimate of the expired entries from *samples* of those chunks."""
        total, chunks, expired = (int(v) for v in self.keyspace.run("estimate", now_ms, samples))
        return total, chunks, expired

    def page(
        self,
        now_ms: int,
        *,
        expired: bool | None,
        offset: int,
        limit: int,
        descending: bool,
        directory_slice: int,
    ) -> list[Stored]:
        """Return a page of the expiry index: every entry (*expired* None), the
        expired ones or the others. One script call, which skips whole chunks
        before *offset* by their size, reading the directory *directory_slice*
        chunk ids at a time."""
        lo, hi = _bounds(now_ms, expired)
        flag = "1" if descending else "0"
        return listed(self.keyspace.run("page", lo, hi, offset, limit, flag, directory_slice))

    def expiry_chunks(self) -> list[str]:
        """Return the ids of the expiry index's chunks, in order of their scores."""
        client = self.keyspace.client()
        return [str(text(i)) for i in client.zrange(self.keyspace.directory(EXPIRY_INDEX), 0, -1)]

    def chunk_entries(
        self, chunk_id: str, now_ms: int, *, expired: bool | None, descending: bool
    ) -> list[Stored]:
        """Return the entries of one chunk of the expiry index, as :meth:`page` does."""
        lo, hi = _bounds(now_ms, expired)
        return listed(self.keyspace.run("chunk", chunk_id, lo, hi, "1" if descending else "0"))

    def lowest_expiry(self) -> int | None:
        """Return the lowest score (ms) of the expiry index, None when it is empty."""
        client = self.keyspace.client(write=False)
        head = client.zrange(self.keyspace.directory(EXPIRY_INDEX), 0, 0)
        if not head:
            return None
        chunk = self.keyspace.chunk(EXPIRY_INDEX, str(text(head[0])))
        first = client.zrange(chunk, 0, 0, withscores=True)
        return int(first[0][1]) if first else None

    def idle_in_chunk(self, chunk_id: str, before_ms: int) -> tuple[list[str], list[str]]:
        """Return the public ids of one expiry index chunk's sessions last active
        before *before_ms*, and those of its sessions whose activity is no time."""
        idle, unreadable = [], []
        for found in self.keyspace.run("idle", chunk_id, before_ms):
            entry = str(text(found))
            if entry.startswith("!"):
                unreadable.append(entry[1:])
            else:
                idle.append(entry)
        return idle, unreadable

    def user_index_sessions(self, chunks_per_round_trip: int) -> Iterator[list[Stored]]:
        """Yield the sessions of the user index, chunk by chunk, with their user id and
        expiry as stored (``"bad"`` for a key of another type).

        Each list holds the sessions of *chunks_per_round_trip* chunks, read in
        two pipelined round trips; the sessions of one user sit in one chunk.
        """
        keyspace = self.keyspace
        client = keyspace.client(write=False)
        start = 0
        while True:
            last = start + chunks_per_round_trip - 1
            chunk_ids = client.zrange(keyspace.directory(USER_INDEX), start, last)
            if not chunk_ids:
                return
            start += len(chunk_ids)
            pipe = client.pipeline(transaction=False)
            for chunk_id in chunk_ids:
                pipe.zrange(keyspace.chunk(USER_INDEX, str(text(chunk_id))), 0, -1)
            pids = [str(text(pid)) for members in pipe.execute() for pid in members]
            yield keyspace.owners(pids)


def _bounds(now_ms: int, expired: bool | None) -> tuple[str, str]:
    """Return the expiry index's score bounds: every entry, the expired ones or the others."""
    if expired is None:
        return "-inf", "+inf"
    return ("-inf", str(now_ms)) if expired else (f"({now_ms}", "+inf")
