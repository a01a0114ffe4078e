"""Live curves: progress lines read as the training process writes them, one point kept per interval.

Two kinds of line become points (`parse_progress`):

- the challenge's step lines, as they vary across records:
  `step:200/20000 train_loss:2.84 train_time:8699ms step_avg:43.49ms`,
  `step:200/20000 val_loss:2.8397 val_bpb:1.6774 train_time:8699ms ...`,
  `4000/20000 val_loss: 2.8862 val_bpb: 1.1173`, `500/20000 train_loss: 3.2654 train_time: 0.8m ...`,
  and `stopping_early: wallclock_cap train_time:600038ms step:13780/20000` (time and step only);
- golfq's own `GOLFQ_PROGRESS {json}` line: any of step, train_seconds, train_loss, val_loss,
  val_bpb, plus other numbers a script wants kept (they go to the point's `extra`).

`ProgressCapture` sits on the log pump's output (raw chunks, any thread) and keeps, for each
interval of wall time since the attempt started, one point: the latest one, or the latest that
carries a validation score when the interval had one (so no interval's val_bpb is lost to a
chatty train_loss line). Lines of one step are merged into one point first.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Callable

import msgspec

from golfq.core.result import ProgressPoint

PROGRESS_PREFIX = "GOLFQ_PROGRESS "
MAX_EXTRA = 32
_MAX_LINE = 64 * 1024  # a longer "line" is not progress; its bytes are dropped, not buffered
_MAX_PENDING = 8 << 20

_NUM = r"([-+]?(?:\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|(?i:nan|inf)))"
_STEP = re.compile(r"^\s*(?:step:\s*)?(\d+)\s*/\s*\d+\s+(?=(?:train_loss|val_loss|val_bpb)\s*:)")
_STOPPING = re.compile(rf"^\s*stopping_early:.*?\btrain_time:\s*{_NUM}\s*(ms|s|m)?.*?\bstep:\s*(\d+)\s*/")
_FIELD = re.compile(rf"\b(train_loss|val_loss|val_bpb|train_time)\s*:\s*{_NUM}\s*(ms|s|m)?")
_SECONDS = {"ms": 1e-3, "s": 1.0, "m": 60.0, None: 1e-3}  # the challenge's bare train_time is in ms
_FIELDS = ("step", "train_seconds", "train_loss", "val_loss", "val_bpb")


def parse_progress(line: str, at: float = 0.0) -> ProgressPoint | None:
    """The point one log line reports, or None when it reports none."""
    if PROGRESS_PREFIX in line[:60]:
        return _parse_record(line, at)
    step = _STEP.match(line)
    if step is None:
        if stop := _STOPPING.match(line):  # the wall-clock cap's exact time for the last step
            value, unit, last = stop.groups()
            return ProgressPoint(at=at, step=int(last), train_seconds=round(float(value) * _SECONDS[unit or None], 6))
        return None
    fields: dict[str, float] = {}
    for key, value, unit in _FIELD.findall(line, step.end()):
        if key == "train_time":
            fields["train_seconds"] = round(float(value) * _SECONDS[unit or None], 6)
        else:
            fields[key] = float(value)
    return msgspec.convert({"at": at, "step": int(step.group(1)), **fields}, ProgressPoint)


def _parse_record(line: str, at: float) -> ProgressPoint | None:
    start = line.find(PROGRESS_PREFIX)
    if start > 40:  # allow a launcher's short prefix such as "[rank0]: "
        return None
    try:
        raw = json.loads(line[start + len(PROGRESS_PREFIX):])
    except ValueError:
        return None
    if not isinstance(raw, dict):
        return None
    fields: dict[str, float | int] = {}
    extra: dict[str, float] = {}
    for key, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue  # a string or a nested object is not a point on a curve
        if key == "step":
            if isinstance(value, int) or (math.isfinite(value) and value.is_integer()):
                fields["step"] = int(value)
        elif key in _FIELDS:
            fields[key] = float(value)
        elif len(extra) < MAX_EXTRA and isinstance(key, str) and len(key) <= 64:
            extra[key] = float(value)
    if not fields and not extra:
        return None
    return msgspec.convert({"at": at, "extra": extra, **fields}, ProgressPoint)


def _has_score(point: ProgressPoint) -> bool:
    return point.val_bpb is not None or point.val_loss is not None


def merge(older: ProgressPoint, newer: ProgressPoint) -> ProgressPoint:
    """Two reports of one step as one point: the newer wins field by field."""
    fields = {f: getattr(newer, f) if getattr(newer, f) is not None else getattr(older, f) for f in _FIELDS}
    return ProgressPoint(at=newer.at, extra={**older.extra, **newer.extra}, **fields)


# Which raw lines are progress, cheaply: the capture sees every line, but parses only the few it keeps.
_CANDIDATE = re.compile(rb"^\s*(?:step:\s*)?\d+\s*/\s*\d+\s+(?:train_loss|val_loss|val_bpb)\s*:"
                        rb"|^\s*stopping_early:|^.{0,40}GOLFQ_PROGRESS ")
Seen = tuple[float, bytes]  # when a line was read, and the line


def _parse_seen(seen: Seen | None) -> ProgressPoint | None:
    return None if seen is None else parse_progress(seen[1].decode("utf-8", "replace"), seen[0])


class ProgressCapture:
    """A thread-safe tap for the child's output that keeps at most one point per interval.

    `feed` takes raw output chunks (the log pump's thread) and only buffers them; `take`
    (the supervision loop, a few times a second) reads the buffered lines, then hands over
    the points of the intervals that have closed, for one report. Within an interval only
    raw lines are kept (the latest, the latest with a validation score, and their
    neighbours for merging a step's lines) and parsed when it closes, so a chatty script
    costs a buffer append per chunk and a cheap match per line. A line's time is when
    `take` read it.
    """

    def __init__(self, interval: float, clock: Callable[[], float] = time.time, started: float | None = None) -> None:
        self.interval = max(float(interval), 1e-3)
        self._clock = clock
        self.started = clock() if started is None else started
        self._lock = threading.Lock()
        self._carry = b""
        self._pending = bytearray()  # output fed since the last read
        self._window = -1  # the interval the pending lines belong to
        self._prev: Seen | None = None
        self._last: Seen | None = None
        self._scored: tuple[Seen | None, Seen, Seen | None] | None = None  # (line before, scored line, line after)
        self._closed: list[ProgressPoint] = []
        self.lines = 0  # progress lines seen (all of them, before throttling)

    def feed(self, chunk: bytes) -> None:
        with self._lock:
            self._pending += chunk
            if len(self._pending) > _MAX_PENDING:  # nobody is reading: bound the memory
                self._read()

    def finish(self) -> None:
        """The output ended: a last line without a newline still counts."""
        with self._lock:
            self._read()
            carry, self._carry = self._carry, b""
            if carry and _CANDIDATE.match(carry):
                self._add_lines([carry])

    def _read(self) -> None:
        if not self._pending:
            return
        lines = (self._carry + self._pending).split(b"\n")
        self._pending = bytearray()
        self._carry = lines.pop()
        if len(self._carry) > _MAX_LINE:
            self._carry = b""
        wanted = [line for line in lines if _CANDIDATE.match(line)]
        if wanted:
            self._add_lines(wanted)

    def _add_lines(self, lines: list[bytes]) -> None:
        at = self._clock()
        self.lines += len(lines)
        window = max(int((at - self.started) // self.interval), self._window)  # a clock stepping back stays put
        if window != self._window:
            self._close()
            self._window = window
        for line in lines:
            seen = (at, line)
            if self._scored is not None and self._scored[2] is None and self._scored[1] is self._last:
                self._scored = (self._scored[0], self._scored[1], seen)
            self._prev, self._last = self._last, seen
            if b"val_bpb" in line or b"val_loss" in line:
                self._scored = (self._prev, seen, None)

    def _close(self) -> None:
        before, base, after = self._scored if self._scored is not None else (self._prev, self._last, None)
        point = _parse_seen(base) or _parse_seen(before)
        if point is not None:
            for other in (before, after):
                near = _parse_seen(other) if other is not base else None
                if near is not None and near.step is not None and near.step == point.step:
                    point = merge(near, point) if near.at <= point.at and other is before else merge(point, near)
            self._closed.append(point)
        self._prev = self._last = self._scored = None

    def take(self, now: float | None = None, final: bool = False) -> list[ProgressPoint]:
        """Points of the intervals closed by now (with final, the open one too), oldest first."""
        with self._lock:
            self._read()
            now = self._clock() if now is None else now
            if final or int((now - self.started) // self.interval) > self._window:
                self._close()
            out, self._closed = self._closed, []
        return out


def point_fields(point: ProgressPoint) -> dict[str, object]:
    """A point as a plain dict without its unset fields (for JSON lines and tables)."""
    return {k: v for k, v in msgspec.structs.asdict(point).items() if v is not None and v != {}}
