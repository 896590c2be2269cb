from __future__ import annotations

import functools
import itertools
import os
import signal
import threading
import types
from datetime import timedelta
from importlib import import_module

import pytest
from django.contrib.sessions.backends.file import SessionStore as FileStore
from django.contrib.sessions.models import Session as StockSession
from django.db import DatabaseError, connection
from django.utils import timezone

from django_sessionkit import cleanup
from django_sessionkit.backends.db import SessionStore as OurDBStore
from django_sessionkit.cleanup import CleanupFailed, clear_sessions
from django_sessionkit.inventory import BatchSizer, InventoryUnavailable, get_inventory
from django_sessionkit.models import Session

pytestmark = pytest.mark.django_db

OUR_DB = "django_sessionkit.backends.db"
STOCK_DB = "django.contrib.sessions.backends.db"
STOCK_FILE = "django.contrib.sessions.backends.file"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class FakeClock:
    """Stands in for the time module of the loop: sleeping moves it on, and nothing waits."""

    def __init__(self):
        self.now = 1000.0
        self.slept = []

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds

    def install(self, monkeypatch):
        time = types.SimpleNamespace(monotonic=self.monotonic, sleep=self.sleep)
        monkeypatch.setattr(cleanup, "time", time)
        return self


@pytest.fixture
def clock(monkeypatch):
    return FakeClock().install(monkeypatch)


def every_batch_takes(monkeypatch, seconds):
    """Give the loop's batch sizer a clock by which every batch takes *seconds*."""
    ticks = itertools.count(step=seconds)  # read once as a batch starts, once as it ends
    monkeypatch.setattr(
        cleanup, "BatchSizer", functools.partial(BatchSizer, clock=lambda: next(ticks))
    )


def make(*, expired=False, idle=timedelta(0)):
    """Store a session through sessionkit's db engine; return its key."""
    store = OurDBStore()
    store["cart"] = [1]
    store.create()
    now = timezone.now()
    expiry = now + (timedelta(hours=-1) if expired else timedelta(days=1))
    Session.objects.filter(pk=store.session_key).update(
        expire_date=expiry, last_activity=now - idle
    )
    return store.session_key


def make_files(count):
    """Store *count* expired sessions through Django's file engine."""
    for _ in range(count):
        store = FileStore()
        store.create()
        written = (timezone.now() - timedelta(days=15)).timestamp()
        os.utime(store._key_to_file(), (written, written))


def stored(keys):
    return set(Session.objects.filter(pk__in=keys).values_list("pk", flat=True))


@pytest.fixture
def inventory():
    return get_inventory(OUR_DB)


def handlers():
    return {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}


# -- phases and callbacks ---------------------------------------------------------------


def test_deletes_the_expired_then_the_idle_sessions(inventory):
    expired = [make(expired=True) for _ in range(3)]
    idle = [make(idle=timedelta(days=10)) for _ in range(2)]
    recent = [make(idle=timedelta(hours=1)) for _ in range(2)]
    phases, batches = [], []

    def on_phase(phase):
        phases.append((phase.kind, phase.remaining()))

    def on_batch(run, phase, deleted):
        batches.append((phase.kind, deleted, phase.done, run.batches))

    run = clear_sessions(
        inventory,
        batch_size=2,
        batch_time=0,
        inactive_before=timezone.now() - timedelta(days=7),
        on_phase=on_phase,
        on_batch=on_batch,
    )

    assert phases == [("expired", 3), ("inactive", 2)]
    assert batches == [
        ("expired", 2, 2, 1),
        ("expired", 1, 3, 2),
        ("inactive", 2, 2, 3),
    ]
    assert (run.expired, run.inactive, run.batches, run.stopped) == (3, 2, 3, "done")
    assert run.signal_number is None
    assert run.seconds >= 0
    assert stored(expired + idle + recent) == set(recent)


def test_without_a_cutoff_idle_sessions_stay(inventory):
    expired, idle = make(expired=True), make(idle=timedelta(days=300))
    kinds = []

    run = clear_sessions(inventory, on_phase=lambda phase: kinds.append(phase.kind))

    assert kinds == ["expired"]
    assert (run.expired, run.inactive, run.batches) == (1, 0, 1)
    assert stored([expired, idle]) == {idle}


def test_idle_sessions_need_an_inventory_that_records_activity():
    inventory = get_inventory(STOCK_DB)
    assert not inventory.records_activity
    store = import_module(STOCK_DB).SessionStore()
    store.create()
    expired = StockSession.objects.filter(pk=store.session_key)
    expired.update(expire_date=timezone.now() - timedelta(hours=1))

    with pytest.raises(InventoryUnavailable, match="does not record when a session was last"):
        clear_sessions(inventory, inactive_before=timezone.now() - timedelta(days=7))

    # Refused before the expired sessions' phase, not after it.
    assert expired.exists()


@pytest.mark.parametrize(
    "options",
    [
        {"batch_size": 0},
        {"batch_size": 2**63},
        {"batch_time": -1},
        {"batch_time": float("nan")},
        {"batch_time": 1e308},
        {"sleep": float("inf")},
        {"sleep": -0.5},
        {"max_runtime": 0},
        {"max_runtime": float("inf")},
        {"max_runtime": float("nan")},
    ],
)
def test_arguments_out_of_range_are_refused_before_anything_is_deleted(inventory, options):
    expired = make(expired=True)
    name = next(iter(options))

    with pytest.raises(ValueError, match=f"^{name} must be"):
        clear_sessions(inventory, **options)

    assert stored([expired]) == {expired}


# -- pauses and the deadline -----------------------------------------------------------------


def test_the_deadline_stops_the_run_after_the_batch_in_progress(inventory, clock):
    expired = [make(expired=True) for _ in range(5)]

    def slow(run, phase, deleted):
        clock.now += 40  # each batch takes 40 s

    run = clear_sessions(
        inventory, batch_size=2, batch_time=0, sleep=0, max_runtime=60, on_batch=slow
    )

    # The second batch ends past the limit: it completes, then the run stops.
    assert (run.expired, run.batches, run.stopped) == (4, 2, "time limit")
    assert run.seconds == 80
    assert len(stored(expired)) == 1


def test_sleep_between_full_batches_in_slices(inventory, clock):
    for _ in range(5):
        make(expired=True)

    run = clear_sessions(inventory, batch_size=2, batch_time=0, sleep=0.25)

    # After the two full batches, none after the last, short one: in slices.
    assert run.batches == 3
    assert sum(clock.slept) == pytest.approx(0.5)
    assert max(clock.slept) <= cleanup.SLEEP_SLICE


def test_a_pause_ends_at_the_deadline(inventory, clock):
    for _ in range(5):
        make(expired=True)

    run = clear_sessions(inventory, batch_size=2, batch_time=0, sleep=30, max_runtime=10)

    assert sum(clock.slept) == pytest.approx(10)
    assert (run.expired, run.batches, run.stopped) == (2, 1, "time limit")


@pytest.mark.parametrize("engine", [OUR_DB, STOCK_FILE])
@pytest.mark.parametrize("sleep", [None, 0])
def test_without_sleep_the_inventory_decides_the_pause(
    engine, session_dir, clock, monkeypatch, sleep
):
    """On SQLite writers waiting for the lock need room between batches; sleep=0 gives none."""
    every_batch_takes(monkeypatch, 0.12)
    if engine == STOCK_FILE:
        make_files(5)
    else:
        for _ in range(5):
            make(expired=True)

    run = clear_sessions(get_inventory(engine), batch_size=2, batch_time=0, sleep=sleep)

    assert (run.expired, run.batches) == (5, 3)
    full_batches = 2  # of 2, then the last, short one
    if engine == OUR_DB and sleep is None and connection.vendor == "sqlite":
        # Half the batch's time, as ModelInventory.pause_after() says.
        assert clock.slept == [pytest.approx(0.06)] * full_batches
    else:
        assert clock.slept == []


def test_batches_are_sized_to_the_batch_time(inventory, monkeypatch):
    every_batch_takes(monkeypatch, 1.0)
    for _ in range(6):
        make(expired=True)
    sizes = []

    clear_sessions(
        inventory, batch_size=3, on_batch=lambda run, phase, deleted: sizes.append(deleted)
    )

    # The default target (50 ms): a batch that took a second shrinks the next ones.
    assert sizes == [3, 1, 1, 1]


# -- signals ------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", STOP_SIGNALS)
def test_a_signal_stops_the_run_between_batches(inventory, signum):
    expired = [make(expired=True) for _ in range(5)]
    before = handlers()

    def signal_after_the_first(run, phase, deleted):
        if run.batches == 1:
            os.kill(os.getpid(), signum)

    run = clear_sessions(inventory, batch_size=2, batch_time=0, on_batch=signal_after_the_first)

    assert (run.expired, run.batches) == (2, 1)
    assert (run.stopped, run.signal_number) == (signal.Signals(signum).name, signum)
    assert len(stored(expired)) == 3
    assert handlers() == before
    # Running again carries on.
    assert clear_sessions(inventory).expired == 3


def test_a_second_signal_stops_at_once(inventory):
    expired = [make(expired=True) for _ in range(5)]
    before = handlers()

    def signal_twice(run, phase, deleted):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        clear_sessions(inventory, batch_size=2, batch_time=0, on_batch=signal_twice)

    assert handlers() == before
    assert len(stored(expired)) == 3


def test_a_signal_cuts_a_pause_short(inventory, clock, monkeypatch):
    def sleep(seconds):
        clock.sleep(seconds)
        if len(clock.slept) == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(cleanup.time, "sleep", sleep)
    expired = [make(expired=True) for _ in range(5)]

    run = clear_sessions(inventory, batch_size=2, batch_time=0, sleep=3600)

    assert len(clock.slept) == 3
    assert (run.batches, run.stopped) == (1, "SIGTERM")
    assert len(stored(expired)) == 3


def test_signals_can_be_left_to_the_caller(inventory):
    """A task queue's worker has signal handlers of its own."""
    for _ in range(2):
        make(expired=True)
    before, during = handlers(), []

    clear_sessions(
        inventory, handle_signals=False, on_batch=lambda *batch: during.append(handlers())
    )
    assert during == [before]

    clear_sessions(
        inventory,
        on_phase=lambda phase: during.append(handlers()),
    )
    assert during[1] != before
    assert handlers() == before


def test_outside_the_main_thread_signals_keep_their_effect(session_dir):
    make_files(3)
    inventory = get_inventory(STOCK_FILE)
    before, during, runs = handlers(), [], []

    thread = threading.Thread(
        target=lambda: runs.append(
            clear_sessions(inventory, on_batch=lambda *batch: during.append(handlers()))
        )
    )
    thread.start()
    thread.join()

    assert during == [before]
    assert runs[0].expired == 3
    assert list(session_dir.iterdir()) == []


# -- storage errors -------------------------------------------------------------------------


def test_a_storage_error_says_what_was_done_before(inventory):
    expired = [make(expired=True) for _ in range(5)]
    table = connection.ops.quote_name(Session._meta.db_table)

    def lose_the_table(run, phase, deleted):
        with connection.cursor() as cursor:  # the test's transaction rolls this back
            cursor.execute(f"ALTER TABLE {table} RENAME TO sessionkit_gone")

    with pytest.raises(CleanupFailed) as raised:
        clear_sessions(inventory, batch_size=2, batch_time=0, on_batch=lose_the_table)

    failure = raised.value
    assert isinstance(failure.error, DatabaseError)
    assert failure.__cause__ is failure.error
    assert (failure.run.expired, failure.run.batches, failure.run.stopped) == (2, 1, "done")
    assert str(failure) == (
        f"Clearing stopped by {type(failure.error).__name__}; batches completed before: 1."
    )
    assert not any(key in str(failure) for key in expired)
