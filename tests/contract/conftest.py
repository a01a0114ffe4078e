"""The contract suite runs every test in this folder once per backend.

A backend joins by adding a factory to BACKENDS: it takes a tmp_path and a
ManualClock and returns an open Broker whose notion of "now" is that clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from core.broker import Broker


class ManualClock:
    """Time that moves only when a test says so, so lease expiry is exact."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _sqlite(tmp_path: Path, clock: ManualClock) -> Broker:
    from core.backends.sqlite import SqliteBroker

    return SqliteBroker(f"sqlite:///{tmp_path / 'golfq.db'}", clock=clock)


BACKENDS: dict[str, Callable[[Path, ManualClock], Broker]] = {
    "sqlite": _sqlite,
}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(params=sorted(BACKENDS))
def backend_name(request) -> str:
    return request.param


@pytest.fixture
def broker(backend_name: str, tmp_path: Path, clock: ManualClock) -> Iterator[Broker]:
    opened = BACKENDS[backend_name](tmp_path, clock)
    yield opened
    opened.close()
