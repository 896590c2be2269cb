"""The batch loop behind ``clearsessions``, for a command, a task queue or a script.

:func:`clear_sessions` deletes the expired sessions of one inventory, then
(given *inactive_before*) the idle ones, a batch at a time: batches are sized
to a time per transaction, a pause may follow each one, a deadline ends the
run after the batch in progress, and so do SIGINT and SIGTERM. It writes no
output: callbacks hear of each phase and each batch, and the :class:`Run` it
returns says what was done.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from types import FrameType
from typing import Literal

from django_sessionkit.inventory import (
    BatchSizer,
    InventoryUnavailable,
    SessionInventory,
    storage_errors,
)

logger = logging.getLogger(__name__)

Kind = Literal["expired", "inactive"]
DEFAULT_BATCH_SIZE = 10_000
#: The largest ``LIMIT`` the databases take (a signed 64-bit integer).
MAX_BATCH_SIZE = 2**63 - 1
#: Seconds a batch (one transaction) should take: batches are sized to it.
BATCH_SECONDS = 0.05
#: The longest batch time and pause: a batch is meant to be a short
#: transaction, and a pause of more than an hour is another schedule.
MAX_SECONDS = 3600
#: A pause between batches is cut in slices this long, so that a signal ends it.
SLEEP_SLICE = 0.1
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass
class Run:
    """What a clearing run did so far."""

    expired: int = 0
    inactive: int = 0
    batches: int = 0
    #: "done", "time limit", or the name of the signal that stopped the run.
    stopped: str = "done"
    signal_number: int | None = None
    #: How long the run took, in seconds.
    seconds: float = 0.0


@dataclass
class Phase:
    """One kind of session a run deletes: the expired ones, then the inactive ones."""

    kind: Kind
    #: Count what is left to delete: a query, so call it only when it is worth one.
    remaining: Callable[[], int]
    #: Start deleting: the batches, each yielding how many it deleted.
    batches: Callable[[], Iterator[int]]
    #: Sessions this phase deleted so far.
    done: int = 0


class CleanupFailed(Exception):
    """A storage error stopped a run; *run* says what was deleted before, which stays deleted.

    The storage's own error is *error*, and the exception's ``__cause__``.
    """

    def __init__(self, run: Run, error: BaseException) -> None:
        # Not the error's text: a storage's message may quote a session key.
        name = type(error).__name__
        super().__init__(f"Clearing stopped by {name}; batches completed before: {run.batches}.")
        self.run = run
        self.error = error


def clear_sessions(
    inventory: SessionInventory,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    batch_time: float = BATCH_SECONDS,
    sleep: float | None = None,
    max_runtime: float | None = None,
    inactive_before: datetime | None = None,
    on_phase: Callable[[Phase], object] | None = None,
    on_batch: Callable[[Run, Phase, int], object] | None = None,
    handle_signals: bool = True,
) -> Run:
    """Delete expired, then idle sessions of *inventory* in batches; return the :class:`Run`.

    Idle sessions, last active before *inactive_before*, go only when it is
    given. Each batch deletes at most *batch_size* sessions and is sized to
    take about *batch_time* seconds (0: always *batch_size*). After a full
    batch the run pauses *sleep* seconds, by default as long as the
    inventory's ``pause_after()`` says. Past *max_runtime* seconds it stops
    after the batch in progress (``stopped`` is ``"time limit"``). With
    *handle_signals*, in the main thread, SIGINT and SIGTERM stop it between
    batches, and a second signal raises KeyboardInterrupt at once. *on_phase*
    hears of each phase as it starts, *on_batch* of each batch (the run so
    far, its phase, how many it deleted).

    A run stopped early carries on when run again. A storage error raises
    :class:`CleanupFailed`. An argument out of range raises ValueError, and
    *inactive_before* on an inventory that does not record activity raises
    InventoryUnavailable, before anything is deleted.
    """
    _check(inventory, batch_size, batch_time, sleep, max_runtime, inactive_before)
    sizer = BatchSizer(batch_size, target=batch_time or None)
    phases = [
        Phase(
            "expired",
            lambda: inventory.count(status="expired").value,
            lambda: inventory.clear_expired(batch_size=sizer),
        )
    ]
    if inactive_before is not None:
        cutoff = inactive_before
        phases.append(
            Phase(
                "inactive",
                lambda: inventory.count(active_before=cutoff).value,
                lambda: inventory.clear_inactive(before=cutoff, batch_size=sizer),
            )
        )
    return _Clearing(inventory, sizer, sleep, max_runtime, on_phase, on_batch).run(
        phases, handle_signals=handle_signals
    )


def _check(
    inventory: SessionInventory,
    batch_size: int,
    batch_time: float,
    sleep: float | None,
    max_runtime: float | None,
    inactive_before: datetime | None,
) -> None:
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise ValueError(f"batch_size must be from 1 to {MAX_BATCH_SIZE}, not {batch_size}.")
    # Comparisons with nan are false, so nan fails these as inf does.
    for name, seconds in (("batch_time", batch_time), ("sleep", sleep)):
        if seconds is not None and not 0 <= seconds <= MAX_SECONDS:
            raise ValueError(f"{name} must be from 0 to {MAX_SECONDS} seconds, not {seconds}.")
    if max_runtime is not None and not 0 < max_runtime < math.inf:
        raise ValueError(f"max_runtime must be a finite number of seconds, not {max_runtime}.")
    if inactive_before is not None and not inventory.records_activity:
        raise InventoryUnavailable(
            f"The session engine {inventory.engine!r} does not record when a session was last "
            f"active, so idle sessions cannot be told apart."
        )


class _Clearing:
    """One run: its record, its deadline, and the signal that asked it to stop."""

    def __init__(
        self,
        inventory: SessionInventory,
        sizer: BatchSizer,
        sleep: float | None,
        max_runtime: float | None,
        on_phase: Callable[[Phase], object] | None,
        on_batch: Callable[[Run, Phase, int], object] | None,
    ) -> None:
        self.inventory = inventory
        self.sizer = sizer
        self.sleep = sleep
        self.on_phase = on_phase
        self.on_batch = on_batch
        self.record = Run()
        self.started = time.monotonic()
        self.deadline = None if max_runtime is None else self.started + max_runtime
        self.stop_signal: int | None = None

    def run(self, phases: list[Phase], *, handle_signals: bool) -> Run:
        try:
            with self._stop_on_signals(handle_signals):
                for phase in phases:
                    if self.on_phase is not None:
                        self.on_phase(phase)
                    if not self._run_phase(phase):
                        break
        except storage_errors() as error:
            self.record.seconds = time.monotonic() - self.started
            raise CleanupFailed(self.record, error) from error
        self.record.seconds = time.monotonic() - self.started
        return self.record

    def _run_phase(self, phase: Phase) -> bool:
        """Run the batches of one phase; return whether the run goes on to the next."""
        run, sizer = self.record, self.sizer
        batches = phase.batches()
        try:
            for deleted in batches:
                run.batches += 1
                phase.done += deleted
                setattr(run, phase.kind, getattr(run, phase.kind) + deleted)
                if self.on_batch is not None:
                    self.on_batch(run, phase, deleted)
                if self._stopped():
                    return False
                # --sleep when given, else the engine's own (on SQLite, room for writers).
                seconds = (
                    self.inventory.pause_after(sizer.elapsed) if self.sleep is None else self.sleep
                )
                # A batch shorter than it asked for is the last one: no pause after it.
                if seconds and deleted >= sizer.asked:
                    self._pause(seconds)
                    if self._stopped():
                        return False
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()
        return True

    def _stopped(self) -> bool:
        if self.stop_signal is not None:
            self.record.signal_number = self.stop_signal
            self.record.stopped = signal.Signals(self.stop_signal).name
            return True
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.record.stopped = "time limit"
            return True
        return False

    def _pause(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        if self.deadline is not None:
            end = min(end, self.deadline)
        while self.stop_signal is None and (left := end - time.monotonic()) > 0:
            time.sleep(min(SLEEP_SLICE, left))

    @contextmanager
    def _stop_on_signals(self, enabled: bool) -> Iterator[None]:
        """Turn SIGINT and SIGTERM into a request to stop after the batch in progress.

        A second signal raises KeyboardInterrupt at once, without a summary
        (a batch is one statement: what it deleted stays deleted). Handlers
        can only be set in the main thread; elsewhere (a command called from
        a thread, a worker) signals keep their usual effect.
        """
        if not enabled or threading.current_thread() is not threading.main_thread():
            yield
            return

        def request_stop(signum: int, frame: FrameType | None) -> None:
            if self.stop_signal is not None:
                raise KeyboardInterrupt
            self.stop_signal = signum

        previous = {signum: signal.signal(signum, request_stop) for signum in STOP_SIGNALS}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
