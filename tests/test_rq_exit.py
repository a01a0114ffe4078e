"""An RQ worker leaves its command channel at once (bench outlier, issue 19 item 15).

RQ 3.0 unsubscribes, then stops its pubsub thread; redis-py 8 joins that thread, and a
thread that loops once more after the unsubscribe is confirmed waits 60 s for a
subscription. Whether it loops first is a race the machine's load decides; the test makes
the main thread slow after UNSUBSCRIBE, so the thread always sees the reply first.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from rq import SimpleWorker

from golfq.core.backends.redis.broker import connect
from golfq.workers.rq.worker import GolfqWorker, PromptExit
from tests import redis_server

pytestmark = [
    pytest.mark.redis_server,
    pytest.mark.skipif(not Path(redis_server.REDIS_SERVER).exists(), reason="redis-server is not installed"),
]


class _Simple(PromptExit, SimpleWorker):
    pass


def _exit_seconds(worker_class: type, url: str, limit: float = 10.0) -> float:
    """How long the worker takes to leave its channel when the reply beats its stop()."""
    connection = connect(url)
    worker = worker_class(["q"], connection=connection, name=f"exit-{worker_class.__name__}")
    worker.subscribe()
    send = worker.pubsub.unsubscribe

    def slow_unsubscribe(*args):
        send(*args)
        time.sleep(0.3)  # a descheduled main thread: the pubsub thread reads the reply meanwhile

    worker.pubsub.unsubscribe = slow_unsubscribe
    done = threading.Event()
    started = time.monotonic()
    threading.Thread(target=lambda: (worker.unsubscribe(), done.set()), daemon=True).start()
    done.wait(timeout=limit)
    return time.monotonic() - started


@pytest.mark.parametrize("worker_class", [GolfqWorker, _Simple])
def test_a_worker_leaves_its_channel_at_once(tmp_path, worker_class):
    server = redis_server.RedisServer(tmp_path / "redis").start()
    try:
        assert _exit_seconds(worker_class, server.url) < 3.0
    finally:
        server.stop()


def test_rq_alone_would_wait(tmp_path):
    """The same race in RQ's own worker: the wait this fix removes is real (5 s: past any slow machine)."""
    server = redis_server.RedisServer(tmp_path / "redis").start()
    try:
        assert _exit_seconds(SimpleWorker, server.url, limit=5.0) >= 4.5
    finally:
        server.stop()
