"""An attempt's wall time by phase, from when its log lines arrive (see core.result.Phases).

The log pump hands every chunk to `PhaseWatch.feed` in its own thread, so feeding only
looks for a few byte strings and keeps the arrival time of the lines that carry a score
(few: step evaluations, diagnostics and the final lines); which of them was the score is
known only when the log has been read whole (golfq.workers.metrics).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable

from golfq.core.result import Phases
from golfq.workers.metrics import Metrics

_STEP_MARK = b"train_loss"
# a training step line, not a script's printed source that names train_loss
_STEP_LINE = re.compile(rb"(?m)^\s*(?:step:\s*)?\d+/\d+\s+train_loss")
_STOP_LINE = re.compile(rb"(?m)^\s*stopping_early:")
_SCORE_MARK = b"val_bpb"
_MAX_SCORE_LINES = 1000
_MAX_CARRY = 1 << 16


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(max(value, 0.0), 3)


class PhaseWatch:
    """Arrival times of the marks in one attempt's output, on the runner's clock."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._carry = b""
        self.first_step: float | None = None
        self.last_step: float | None = None
        self.stopped: float | None = None
        self.score_lines: list[tuple[float, bytes]] = []  # (arrival, line) of lines with a val_bpb

    def feed(self, chunk: bytes) -> None:
        now = self._clock()
        with self._lock:
            data = self._carry + chunk
            cut = data.rfind(b"\n") + 1
            lines, self._carry = data[:cut], data[cut:][-_MAX_CARRY:]
            if _STEP_MARK in lines and _STEP_LINE.search(lines):
                self.first_step = now if self.first_step is None else self.first_step
                self.last_step = now
            if self.stopped is None and b"stopping_early" in lines and _STOP_LINE.search(lines):
                self.stopped = now
            if _SCORE_MARK in lines:
                self._keep_scores(lines, now)

    def _keep_scores(self, lines: bytes, now: float) -> None:
        for line in lines.splitlines():
            if _SCORE_MARK in line:
                self.score_lines.append((now, line.strip()))
        del self.score_lines[:-_MAX_SCORE_LINES]

    def _score_arrival(self, label: str | None) -> float | None:
        if not label:
            return None
        wanted = label.encode()
        for at, line in reversed(self.score_lines):
            if line.split(b" ", 1)[0] in (wanted, wanted.removesuffix(b"_exact")):
                return at
        return None

    def phases(self, *, attempt_start: float, process_start: float, process_end: float, metrics: Metrics) -> Phases:
        """The phases, given the attempt's marks on the same clock and what the log said."""
        with self._lock:
            train_end = self.stopped if self.stopped is not None else self.last_step
            scored = self._score_arrival(metrics.score_label)
            first = self.first_step
        logged_eval = metrics.eval_seconds
        eval_start = None
        if scored is not None:
            eval_start = scored - (logged_eval or 0.0)
            if train_end is not None:
                eval_start = max(eval_start, train_end)
        return Phases(
            setup=_rounded(process_start - attempt_start),
            startup=_rounded(first - process_start) if first is not None else None,
            train=_rounded(train_end - first) if first is not None and train_end is not None else None,
            export=_rounded(eval_start - train_end) if eval_start is not None and train_end is not None else None,
            eval=_rounded(logged_eval) if scored is not None else None,
            finish=_rounded(process_end - scored) if scored is not None else None,
        )
