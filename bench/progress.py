"""The cost of live curves: a job printing 10,000 progress lines, run by the real runner with curves on and off.

    python -m bench.progress            # 5 runs of each, alternated; --quick: 1 of each

Prints the wall time of each (median), the overhead ratio, the worker's own CPU time, how many
points the queue stored against how many lines were read, and the capture's cost per line
when fed as the log pump feeds it (a chunk per write) beside tailing the log file from the
supervision loop (the alternative it was chosen over).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

from golfq.core.backends import open_broker
from golfq.core.spec import parse_spec
from golfq.workers import runner
from golfq.workers.curves import CurveWatch
from golfq.workers.progress import ProgressCapture

LINES = 10_000
# 10,000 progress lines over about 6 s (a val line every 100 steps), each flushed as it is printed.
SCRIPT = f"""\
import time
for step in range(1, {LINES - LINES // 100} + 1):
    print(f"step:{{step}}/{LINES} train_loss:{{4 - step / 5000:.4f}} train_time:{{step * 2}}ms step_avg:2.00ms",
          flush=True)
    if step % 99 == 0:
        print(f"step:{{step}}/{LINES} val_loss:{{3 - step / 9000:.4f}} val_bpb:{{2 - step / 9000:.4f}} "
              f"train_time:{{step * 2}}ms", flush=True)
    time.sleep(0.0005)
print("final_int8_zlib_roundtrip_exact val_loss:2.00000000 val_bpb:1.20000000")
"""


class _NoCurve:
    """Stands in for CurveWatch when curves are off: no tap on the pump, nothing stored."""

    feed = None
    stop_reason = None

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.notes: list[str] = []

    def poll(self) -> None:
        return None

    def close(self) -> None:
        pass


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _run_job(folder: Path, index: int, interval: float | None) -> tuple[float, float, int]:
    """(wall seconds, worker CPU seconds, points stored) of one job; interval None runs with curves off."""
    broker = open_broker(f"sqlite:///{folder / 'q.db'}")
    try:
        ref = broker.put_script(SCRIPT.encode())
        spec = parse_spec({"pool": "cpu", "trainer": ref, "seed": index})
        broker.submit([spec])
        lease = broker.claim("cpu", "bench")
        assert lease is not None
        runner.CurveWatch = CurveWatch if interval is not None else _NoCurve  # type: ignore[misc]
        cpu, started = _cpu(), time.perf_counter()
        result = runner.run_lease(broker, lease, work_root=folder / "runs", progress_seconds=interval or 10.0)
        wall, cpu = time.perf_counter() - started, _cpu() - cpu
        assert result.succeeded, result.error
        return wall, cpu, len(broker.curve(lease.job_id))
    finally:
        runner.CurveWatch = CurveWatch  # type: ignore[misc]
        broker.close()


def end_to_end(repeats: int) -> list[str]:
    modes = {"curves off": None, "curves on, a point per 10 s (default)": 10.0, "curves on, a point per 1 s": 1.0}
    runs: dict[str, list[tuple[float, float, int]]] = {name: [] for name in modes}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):  # alternated, so a busy spell on this shared machine hits every mode alike
            for i, (name, interval) in enumerate(modes.items()):
                runs[name].append(_run_job(Path(tmp), r * len(modes) + i, interval))
    base_wall = statistics.median(w for w, _, _ in runs["curves off"])
    base_cpu = statistics.median(c for _, c, _ in runs["curves off"])
    out = []
    for name, samples in runs.items():
        wall = statistics.median(w for w, _, _ in samples)
        cpu = statistics.median(c for _, c, _ in samples)
        points = max(p for _, _, p in samples)
        extra = "" if name == "curves off" else (
            f"  overhead {wall / base_wall - 1:+.2%} wall; worker CPU {cpu - base_cpu:+.3f} s "
            f"({(cpu - base_cpu) / base_wall:+.2%} of the job's wall time); {points} point(s) stored")
        out.append(f"{name:<40} {wall:6.2f} s wall (median of {repeats}), worker CPU {cpu:.2f} s{extra}")
    return out


def capture_cost() -> list[str]:
    """The capture alone on the same 10,000 lines, read by the supervision loop every 50 ms (about 85 lines
    at this rate): fed a chunk per line (a script that flushes each line), in 64 KiB chunks, and by tailing
    the log file instead of tapping the pump."""
    lines = []
    for step in range(1, LINES + 1):
        lines.append(f"step:{step}/{LINES} train_loss:{4 - step / 5000:.4f} train_time:{step * 2}ms "
                     f"step_avg:2.00ms\n".encode())
    text = b"".join(lines)
    out = []
    for name, chunks in (("tap the pump, a chunk per line", lines),
                         ("tap the pump, 64 KiB chunks", [text[i:i + 65536] for i in range(0, len(text), 65536)])):
        capture = ProgressCapture(10.0)
        started = time.process_time()
        for i, chunk in enumerate(chunks):
            capture.feed(chunk)
            if i % 85 == 0:
                capture.take()
        capture.finish()
        spent = time.process_time() - started
        out.append(f"{name:<40} {spent / LINES * 1e6:6.2f} us/line  ({spent * 1e3:.0f} ms per 10,000 lines)")
    with tempfile.NamedTemporaryFile() as log:
        log.write(text)
        log.flush()
        capture = ProgressCapture(10.0)
        started = time.process_time()
        size, offset = os.path.getsize(log.name), 0
        with open(log.name, "rb") as handle:
            for _ in range(120):  # 6 s of 50 ms polls: each reads what was appended since the last
                handle.seek(offset)
                chunk = handle.read(size // 120 + 1)
                offset += len(chunk)
                capture.feed(chunk)
                capture.take()
        capture.finish()
        spent = time.process_time() - started
    out.append(f"{'tail the log every 50 ms':<40} {spent / LINES * 1e6:6.2f} us/line  ({spent * 1e3:.0f} ms per "
               f"10,000 lines; misses lines past the log cap)")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.progress", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one run of each mode")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"# golfq bench/progress.py  a job printing {LINES:,} progress lines (about 6 s), cpus={os.cpu_count()}")
    for line in [*end_to_end(1 if args.quick else args.repeats), "", *capture_cost()]:
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
