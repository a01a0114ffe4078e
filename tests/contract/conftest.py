"""The contract suite runs every test in this folder once per backend.

A backend joins by adding a factory to BACKENDS: it takes a tmp_path and a
ManualClock and returns an open Broker whose notion of "now" is that clock.
If several processes can open it by URL, it also adds one to URL_BACKENDS, and
the multi-process tests (test_processes.py) run on it too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from golfq.core.broker import Broker


class ManualClock:
    """Time that moves only when a test says so, so lease expiry is exact."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _sqlite(tmp_path: Path, clock: ManualClock) -> Broker:
    from golfq.core.backends.sqlite.broker import SqliteBroker

    return SqliteBroker(f"sqlite:///{tmp_path / 'golfq.db'}", clock=clock)


def _redis_fake(tmp_path: Path, clock: ManualClock) -> Broker:
    import fakeredis

    from golfq.core.backends.redis.broker import RedisBroker

    return RedisBroker("redis://fakeredis/0", clock=clock, client=fakeredis.FakeRedis(server=fakeredis.FakeServer()))


def _redis_server_url() -> str:
    from tests.redis_server import fresh_url

    url = fresh_url()
    if url is None:
        pytest.skip("redis-server is not installed (/usr/bin/redis-server); .ci/run installs it")
    return url


def _redis_server(tmp_path: Path, clock: ManualClock) -> Broker:
    from golfq.core.backends.redis.broker import RedisBroker

    return RedisBroker(_redis_server_url(), clock=clock)


def _modal_fake(tmp_path: Path, clock: ManualClock) -> Broker:
    """Modal at 30 ms a call, with lost requests and lost responses that the client retries. The
    latency is virtual (counted, never slept) and leaves the test's ManualClock alone, so the
    suite's exact lease times hold."""
    from tests.modal_fakes import FakeModal
    from tests.modal_net import Network

    net = Network(0.03, lost_responses=0.05, lost_requests=0.02, seed=len(str(tmp_path)))
    return FakeModal(net=net).broker("modal://golfq-contract", clock=clock)


BACKENDS: dict[str, Callable[[Path, ManualClock], Broker]] = {
    "sqlite": _sqlite,
    "redis-fake": _redis_fake,
    "redis-server": _redis_server,
    "modal-fake": _modal_fake,
}


def _sqlite_url(tmp_path: Path) -> Iterator[str]:
    yield f"sqlite:///{tmp_path / 'shared.db'}"


def _redis_url(tmp_path: Path) -> Iterator[str]:
    yield _redis_server_url()


def _modal_fake_url(tmp_path: Path) -> Iterator[str]:
    """A fake Modal workspace in its own process, lossy and a little slow, that every process opens."""
    from tests.modal_server import start_server

    url, server = start_server()
    try:
        yield url
    finally:
        server.shutdown()


# Backends that several processes open by URL (real time, no ManualClock) for the
# multi-process tests: a generator that sets up, yields the URL, then cleans up.
URL_BACKENDS: dict[str, Callable[[Path], Iterator[str]]] = {
    "sqlite": _sqlite_url,
    "redis-server": _redis_url,
    "modal-fake": _modal_fake_url,
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


@pytest.fixture(params=sorted(URL_BACKENDS))
def broker_url(request, tmp_path: Path) -> Iterator[str]:
    yield from URL_BACKENDS[request.param](tmp_path)
