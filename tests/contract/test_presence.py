"""Who serves a pool: workers announce themselves, and waiters can tell a served pool from an abandoned one."""

from __future__ import annotations

import pytest


def test_announced_workers_count_until_their_time_runs_out(broker, clock):
    if broker.serving("cpu") is None:
        pytest.skip(f"{type(broker).__name__}'s pools scale from zero: it cannot tell")
    assert broker.serving("cpu") == 0
    broker.announce("cpu", "host:1", 15)
    broker.announce("cpu", "host:2", 5)
    broker.announce("h100", "host:3", 15)
    assert (broker.serving("cpu"), broker.serving("h100")) == (2, 1)
    broker.announce("cpu", "host:1", 15)  # renewing is not a second worker
    assert broker.serving("cpu") == 2
    clock.advance(10)
    assert broker.serving("cpu") == 1  # host:2 stopped renewing
    broker.announce("cpu", "host:1", 0)  # withdrawn on a clean stop
    assert broker.serving("cpu") == 0
