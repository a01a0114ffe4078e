"""A training script that prints a curve, and finished reference runs with curves, for the stopping tests."""

from __future__ import annotations

from golfq.core.broker import Broker
from golfq.core.result import ProgressPoint, Result
from golfq.core.spec import parse_spec

BUDGET = 100.0  # the specs' training seconds; the script's train_time runs 50x faster than the wall clock

# val_bpb = START - 0.005 * train seconds, a step (0.5 train seconds) every 10 ms of wall time.
# On SIGTERM it prints "saved" and exits 0, as a script that checkpoints would.
CURVE_SCRIPT = """\
import os, signal, sys, time

def on_term(signum, frame):
    print("saved", flush=True)
    sys.exit(0)

signal.signal(signal.SIGTERM, on_term)
start = float(os.environ["START_BPB"])
plateau = float(os.environ.get("PLATEAU_AT", "1e9"))
for step in range(1, 201):
    t = min(step * 0.5, plateau)
    bpb = start - 0.005 * t
    print(f"step:{step}/200 train_loss:{bpb * 1.7:.4f} train_time:{int(step * 500)}ms step_avg:500.00ms")
    print(f"step:{step}/200 val_loss:{bpb * 1.7:.4f} val_bpb:{bpb:.4f} train_time:{int(step * 500)}ms", flush=True)
    time.sleep(0.01)
print("stopping_early: wallclock_cap train_time:100000ms step:200/200")
print("Total submission size int8+zlib: 1234567 bytes")
print(f"final_int8_zlib_roundtrip_exact val_loss:{bpb * 1.7:.8f} val_bpb:{bpb - 0.01:.8f}")
"""


def reference_curve(start: float) -> list[ProgressPoint]:
    return [ProgressPoint(at=1.0 + t, step=int(t * 2), train_seconds=float(t), val_bpb=start - 0.005 * t)
            for t in range(0, 101, 5)]


def finish_references(broker: Broker, starts: list[float], pool: str = "cpu") -> list[str]:
    """Succeeded jobs (same pool and budget as the curve script's) whose curves start at these val_bpb."""
    specs = [parse_spec({"pool": pool, "seed": 100 + i, "budget": {"train_seconds": BUDGET}})
             for i in range(len(starts))]
    broker.submit(specs)
    ids = []
    for start in starts:
        lease = broker.claim(pool, "reference-worker")
        assert lease is not None
        broker.report_progress(lease.job_id, lease.attempt, reference_curve(start))
        broker.complete(lease, Result(spec_id=lease.job_id, attempt=lease.attempt, status="succeeded",
                                      val_bpb=start - 0.5, artifact_bytes=1000, train_seconds=BUDGET))
        ids.append(lease.job_id)
    return ids


def curve_spec(broker: Broker, start: float, stop: dict | None, pool: str = "cpu", **env: str):
    """A spec running CURVE_SCRIPT from `start`, with a stopping rule."""
    ref = broker.put_script(CURVE_SCRIPT.encode())
    fields = {"pool": pool, "trainer": ref, "env": {"START_BPB": str(start), **env},
              "budget": {"train_seconds": BUDGET}}
    return parse_spec({**fields, "stop": stop} if stop else fields)
