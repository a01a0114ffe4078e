"""A seeded queue for the dashboard's tests and bench: specs submitted at once, results completed through the broker."""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from golfq.core.broker import Broker
from golfq.core.result import FailureKind, ProgressPoint, Result
from golfq.producer.client import Client

LAYERS = (2, 3, 4, 6, 8, 9, 10, 12)
DIMS = (64, 128, 256, 512)


def seed_queue(client: Client, jobs: int, seeds: int = 2, succeed: float = 0.9, rng_seed: int = 7,
               leave_queued: int = 0, finish: int | None = None) -> list[str]:
    """`jobs` jobs over a grid of configs x seeds; `finish` of them (default: all but `leave_queued`) end,
    most succeeding with a made-up score, the rest failing; the others stay queued.

    Scores fall with size, so the front is real; the biggest configs break the 16 MB limit."""
    rng = random.Random(rng_seed)
    specs = []
    for i in range(jobs):
        block = i // seeds  # one config per block: layers x width x learning rate, then new seeds for them all
        layers, dim, lr = LAYERS[block % 8], DIMS[block // 8 % 4], 0.01 + 0.002 * (block // 32 % 50)
        specs.append({"pool": "cpu", "name": f"L{layers} d{dim}", "seed": 1000 + i % seeds + 10 * (block // 1600),
                      "tags": ["ui-test", f"layers{layers}"],
                      "env": {"NUM_LAYERS": str(layers), "MODEL_DIM": str(dim), "MATRIX_LR": f"{lr:.3f}"}})
    ids = [job.id for job in client.submit_many(specs)]
    broker = client.broker
    for _ in range(len(ids) - leave_queued if finish is None else finish):
        lease = broker.claim("cpu", "seeder")
        assert lease is not None
        env = lease.spec.env
        layers, dim = int(env["NUM_LAYERS"]), int(env["MODEL_DIM"])
        size = layers * dim * dim * 24 + 50_000
        if rng.random() < succeed:
            lr = float(env["MATRIX_LR"])
            bpb = 1.2 + 3.0 / (layers * dim) ** 0.5 + 20 * (lr - 0.04) ** 2 + rng.gauss(0, 0.004)
            broker.complete(lease, Result(spec_id=lease.job_id, attempt=lease.attempt, status="succeeded",
                                          val_bpb=bpb, val_loss=bpb * 1.69, artifact_bytes=size,
                                          train_seconds=20.0 + layers * dim / 40, total_seconds=30.0,
                                          gpu_count=1, gpu_name="H100", gpu_seconds=30.0))
        else:
            broker.fail(lease, "CUDA out of memory (made up)", FailureKind.USER)
    return ids


def report_points(broker: Broker, job_id: str, attempt: int, start: int, count: int) -> None:
    broker.report_progress(job_id, attempt, [
        ProgressPoint(at=time.time(), step=10 * k, train_seconds=5.0 * k, train_loss=4.0 - 0.1 * k,
                      val_bpb=3.0 - 0.05 * k) for k in range(start, start + count)])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve(client: Client, work_dir: Path, allow_actions: bool = False, app: Any = None) -> Iterator[str]:
    """The dashboard (or this app of it) on a loopback port in a thread of this process; yields its URL."""
    import uvicorn

    from golfq.cli.ui.server import make_app

    port = free_port()
    app = app if app is not None else make_app(client, work_dir, allow_actions)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the dashboard did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
