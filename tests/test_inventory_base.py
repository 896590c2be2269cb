"""The inventory interface: BatchSizer."""

from __future__ import annotations

import pytest

from django_sessionkit.inventory.base import BatchSizer


class Stopwatch:
    """A clock that advances by *step* seconds each time it is read twice (start, end)."""

    def __init__(self, *steps: float) -> None:
        self.now = 0.0
        self.steps = list(steps)
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        if self.reads % 2 == 0:
            self.now += self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        return self.now


def test_batch_sizer_follows_the_time_each_batch_takes():
    # 8 rows took 0.2 s against a 0.05 s target: the next batch asks for 2;
    # then fast batches double the size, up to the limit.
    sizer = BatchSizer(16, target=0.05, start=8, clock=Stopwatch(0.2, 0.001))
    asked = []
    for _ in range(5):
        with sizer.batch() as size:
            asked.append(size)
    assert asked == [8, 2, 4, 8, 16]
    assert sizer.size == 16  # never above the limit
    assert sizer.elapsed == pytest.approx(0.001)  # the latest batch's time

    slow = BatchSizer(10, target=0.05, start=10, clock=Stopwatch(60.0))
    for _ in range(3):
        with slow.batch():
            pass
    assert slow.size == 1  # never below one row


def test_batch_sizer_without_a_target_asks_for_the_limit():
    sizer = BatchSizer.of(7)
    for _ in range(3):
        with sizer.batch() as size:
            assert size == 7
    assert sizer.asked == 7
    assert BatchSizer.of(sizer) is sizer
    with pytest.raises(ValueError, match="at least 1"):
        BatchSizer.of(0)
