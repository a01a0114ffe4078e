"""Live curves for people: a compact curve for `golfq status ID`, progress lines for `golfq events --follow`."""

from __future__ import annotations

import time

from golfq.core.broker import Broker
from golfq.core.job import JobState
from golfq.core.result import ProgressPoint
from golfq.workers.progress import point_fields

CURVE_ROWS = 8
PROGRESS_POLL_SECONDS = 2.0  # workers store a point per 10 s by default: a closer look finds nothing new


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def curve_lines(curve: list[ProgressPoint], rows: int = CURVE_ROWS) -> list[str]:
    """A few rows of a curve, evenly spread and always with its last point; [] for no curve."""
    if not curve:
        return []
    picks = sorted({round(i * (len(curve) - 1) / max(rows - 1, 1)) for i in range(rows)})
    lines = [f"{'step':>7}  {'train_s':>8}  {'train_loss':>10}  {'val_bpb':>8}"]
    for point in (curve[i] for i in picks):
        step = "-" if point.step is None else str(point.step)
        lines.append(f"{step:>7}  {_num(point.train_seconds, 1):>8}  {_num(point.train_loss, 4):>10}  "
                     f"{_num(point.val_bpb, 4):>8}")
    return lines


def progress_text(point: ProgressPoint) -> str:
    parts = [] if point.step is None else [f"step={point.step}"]
    if point.train_seconds is not None:
        parts.append(f"train={point.train_seconds:.1f}s")
    parts += [f"{key}={getattr(point, key):.4f}" for key in ("train_loss", "val_loss", "val_bpb")
              if getattr(point, key) is not None]
    parts += [f"{key}={value:g}" for key, value in point.extra.items()]
    return " ".join(parts)


def progress_line(job_id: str, attempt: int, point: ProgressPoint) -> str:
    """Laid out like an event line, with no sequence number: progress is not an event."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(point.at))
    return f"{'':>6}  {stamp}  {'progress':<10}  {f'{job_id}#{attempt}':<20}  {progress_text(point)}".rstrip()


def progress_doc(job_id: str, attempt: int, point: ProgressPoint) -> dict:
    return {"progress": {"job_id": job_id, "attempt": attempt, **point_fields(point)}}


class ProgressFollower:
    """The points running jobs have stored since the follower started, a poll at a time.

    Each poll reads the curves of leased jobs (and once more of those that stopped being
    leased, for their last points), at most every `every` seconds.
    """

    def __init__(self, broker: Broker, every: float | None = None) -> None:
        self.broker = broker
        self.every = PROGRESS_POLL_SECONDS if every is None else every
        self._seen: dict[tuple[str, int], int] | None = None
        self._next = 0.0

    def poll(self) -> list[tuple[str, int, ProgressPoint]]:
        if time.monotonic() < self._next:
            return []
        self._next = time.monotonic() + self.every
        running = {(job.id, job.attempt) for job in self.broker.list(states=[JobState.LEASED])}
        first, seen = self._seen is None, self._seen or {}
        out = []
        for key in sorted(running | set(seen)):
            curve = self.broker.curve(*key)
            if not first:
                out += [(key[0], key[1], point) for point in curve[seen.get(key, 0):]]
            seen[key] = len(curve)
        self._seen = {key: count for key, count in seen.items() if key in running}
        return out
