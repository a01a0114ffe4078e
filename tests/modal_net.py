"""Virtual time and a lossy network for the Modal stand-ins (tests/modal_fakes.py).

- VirtualClock: time that threads share and that moves only when every registered
  actor thread is asleep on it, to the earliest wake-up. Round trips, cold starts and
  training runs cost virtual seconds and no real ones, so a test or a bench can play
  hours of a fleet at real latency in a moment, with real threads racing for real.
- Network: what one Modal API call costs and how it fails. Each call pays half the
  latency out, runs, and pays half back; a request may be lost before it is applied
  and a response after (so the operation happened); the client then retries, as
  modal's _retry_transient_errors does for UNAVAILABLE/DEADLINE_EXCEEDED/INTERNAL (3
  retries, backoff from 0.1 s doubling), and raises UNAVAILABLE when they run out.
"""

from __future__ import annotations

import collections
import itertools
import random
import threading
from collections.abc import Callable
from typing import TypeVar

from grpclib.const import Status
from grpclib.exceptions import GRPCError

T = TypeVar("T")


class VirtualClock:
    """now() for every actor; sleep() parks the caller until virtual time reaches its wake-up."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start
        self._lock = threading.Lock()
        self._actors: set[int] = set()
        self._sleepers: dict[int, tuple[float, threading.Event]] = {}
        self._waiting: set[int] = set()  # sleepers that a notify() also wakes
        self._notified = 0
        self._placeholders = itertools.count(1)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time by hand (a test's idle week), waking whoever is due."""
        with self._lock:
            self.now += seconds
            self._wake_due()

    def join(self) -> None:
        """Count the calling thread as an actor: time waits for it whenever it is not asleep."""
        with self._lock:
            self._actors.add(threading.get_ident())

    def leave(self) -> None:
        with self._lock:
            self._actors.discard(threading.get_ident())
            self._advance()

    def start(self, target: Callable[..., object], *args: object, name: str = "actor") -> threading.Thread:
        """A thread that is an actor from before it runs (so time cannot skip past its first step)."""
        placeholder = -next(self._placeholders)  # thread idents are positive
        with self._lock:
            self._actors.add(placeholder)

        def run() -> None:
            with self._lock:
                self._actors.add(threading.get_ident())
                self._actors.discard(placeholder)
            try:
                target(*args)
            finally:
                self.leave()

        thread = threading.Thread(target=run, name=name, daemon=True)
        thread.start()
        return thread

    def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        self._park(self.now + seconds, waiting=False)

    def wait_until(self, ready: Callable[[], bool], timeout: float | None = None) -> bool:
        """Sleep until ready() (re-checked at each notify()) or until timeout virtual seconds pass."""
        deadline = float("inf") if timeout is None else self.now + timeout
        while True:
            seen = self._notified
            if ready():
                return True
            if self.now >= deadline:
                return False
            self._park(deadline, waiting=True, seen=seen)

    def notify(self) -> None:
        """Something a wait_until may be waiting for changed (a queue put)."""
        with self._lock:
            self._notified += 1
            for ident in list(self._waiting):
                self._waiting.discard(ident)
                _, event = self._sleepers.pop(ident)
                event.set()

    def _park(self, wake: float, waiting: bool, seen: int | None = None) -> None:
        me = threading.get_ident()
        event = threading.Event()
        with self._lock:
            if seen is not None and seen != self._notified:
                return  # notified between the look and the park: look again
            guest = me not in self._actors
            if guest:
                self._actors.add(me)
            self._sleepers[me] = (wake, event)
            if waiting:
                self._waiting.add(me)
            self._advance()
        event.wait()
        if guest:  # a guest that wakes and then ends must not hold time back: look again without it
            with self._lock:
                self._actors.discard(me)
                self._advance()

    def _advance(self) -> None:
        if self._sleepers and len(self._sleepers) >= len(self._actors):
            earliest = min(wake for wake, _ in self._sleepers.values())
            if self.now < earliest < float("inf"):
                self.now = earliest
        self._wake_due()

    def _wake_due(self) -> None:
        for ident, (wake, event) in list(self._sleepers.items()):
            if wake <= self.now:
                del self._sleepers[ident]
                self._waiting.discard(ident)
                event.set()


class Network:
    """Latency, bandwidth and loss for the stand-ins' calls, with modal's client retries."""

    def __init__(self, latency: float = 0.0, *, bandwidth: float | None = None, lost_responses: float = 0.0,
                 lost_requests: float = 0.0, retries: int = 3, backoff: float = 0.1, seed: int = 0,
                 sleep: Callable[[float], None] | None = None, clock: VirtualClock | None = None) -> None:
        self.latency, self.bandwidth = latency, bandwidth
        self.lost_responses, self.lost_requests = lost_responses, lost_requests
        self.retries, self.backoff = retries, backoff
        self.clock = clock  # calls and blocking gets wait in this virtual time
        self.sleep = clock.sleep if clock is not None else sleep  # None: time is only counted (self.elapsed)
        self.rng = random.Random(seed)
        self.calls = self.attempts = self.responses_lost = self.requests_lost = self.failed = 0
        self.elapsed = 0.0
        self.script: collections.deque[str] = collections.deque()  # the next attempts' fates, before the odds
        self._lock = threading.Lock()

    def plan(self, *fates: str) -> None:
        """Script the next attempts: "request" (lost before applied), "response" (lost after), "ok"."""
        self.script.extend(fates)

    def _fate(self) -> str:
        with self._lock:
            if self.script:
                return self.script.popleft()
            if self.lost_requests > 0 and self.rng.random() < self.lost_requests:
                return "request"
            if self.lost_responses > 0 and self.rng.random() < self.lost_responses:
                return "response"
            return "ok"

    def pause(self, seconds: float) -> None:
        if seconds <= 0:
            return
        with self._lock:
            self.elapsed += seconds
        if self.sleep is not None:
            self.sleep(seconds)

    def call(self, op: Callable[[], T], size: int = 0, reply: Callable[[T], int] | None = None) -> T:
        """Run op as one API call of `size` bytes out; `reply` sizes what comes back."""
        with self._lock:
            self.calls += 1
        delay = self.backoff
        transfer = size / self.bandwidth if self.bandwidth else 0.0
        for attempt in range(self.retries + 1):
            with self._lock:
                self.attempts += 1
            self.pause(self.latency / 2 + transfer)
            fate = self._fate()
            if fate == "request":
                with self._lock:
                    self.requests_lost += 1
                self.pause(self.latency / 2)
            else:
                try:
                    out = op()
                finally:
                    self.pause(self.latency / 2)
                if reply is not None and self.bandwidth:
                    self.pause(reply(out) / self.bandwidth)
                if fate != "response":
                    return out
                with self._lock:
                    self.responses_lost += 1  # applied, but the client never hears: it sends the request again
            if attempt < self.retries:
                self.pause(delay)
                delay *= 2
        with self._lock:
            self.failed += 1
        raise GRPCError(Status.UNAVAILABLE, "injected: no response after the client's retries")
