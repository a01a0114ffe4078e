"""One supervised child process: its own process group, stdin closed, output into a capped log.

The child runs in a new session so a Ctrl-C at the worker's terminal never reaches
it (the fleet decides when to stop it), and so killing its group also kills the
children it forked (torchrun's ranks, data loaders, a stray daemon) even after the
leader itself has exited.

A worker killed outright (the OOM killer's SIGKILL) runs no cleanup, and a child in its
own session would keep training on the GPU. So each child gets a watchdog: a tiny
process holding the read end of a pipe that only the worker can write. When the worker
dies, by any means, the kernel closes that pipe; the watchdog reads EOF and stops the
group as `stop()` would (SIGTERM, so torchrun can end its ranks, then SIGKILL). A
normal finish writes one byte first, which stands the watchdog down. A pipe, rather
than prctl(PR_SET_PDEATHSIG) in a preexec_fn, because the death signal fires when the
*thread* that forked exits (the fleet forks from slot threads), preexec_fn is unsafe in
a threaded worker, and a SIGKILLed torchrun leaves its ranks, in their own sessions, running.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

log = logging.getLogger("golfq.process")

DEFAULT_LOG_MAX_BYTES = 64 << 20
TAIL_BYTES = 1 << 20
_READ_CHUNK = 1 << 16
ORPHAN_GRACE_SECONDS = 10.0
_STAND_DOWN = b"."
# argv: pgid, grace. stdin: the lifeline. Kept to the standard library and started with -I -S: fast and isolated.
_WATCHDOG = """
import os, signal, sys, time
pgid, grace = int(sys.argv[1]), float(sys.argv[2])
if os.read(0, 1):
    sys.exit(0)  # stood down: the worker has dealt with its child
def alive():
    try:
        os.killpg(pgid, 0)
        return True
    except OSError:
        return False
for sig in (signal.SIGTERM, signal.SIGKILL):
    try:
        os.killpg(pgid, sig)
    except OSError:
        sys.exit(0)
    deadline = time.monotonic() + grace
    while alive() and time.monotonic() < deadline:
        time.sleep(0.05)
"""


class LogPump(threading.Thread):
    """Copies the child's output into the log; past max_bytes keeps only the last TAIL_BYTES.

    A log capped this way still ends with the final metric lines, which is all the
    parser needs, and a runaway print loop cannot fill the worker's disk. `on_output`, when
    given, sees every chunk as it is read, capped or not (the live curve's tap).
    """

    def __init__(self, fd: int, path: Path, max_bytes: int, tail_bytes: int = TAIL_BYTES,
                 on_output: Callable[[bytes], None] | None = None) -> None:
        super().__init__(name=f"log-pump:{path.name}", daemon=True)
        self._fd, self._path, self._max, self._tail_max = fd, path, max_bytes, tail_bytes
        self._on_output = on_output
        self._closing_at: float | None = None
        self.total_bytes = 0
        self.skipped_bytes = 0

    def close_soon(self) -> None:
        """Stop once the pipe goes quiet, even if an escaped process still holds it open."""
        self._closing_at = time.monotonic()

    def run(self) -> None:
        written, tail = 0, bytearray()
        with open(self._path, "ab", buffering=0) as out:
            while True:
                ready, _, _ = select.select([self._fd], [], [], 0.1)
                if not ready:
                    if self._closing_at is not None:
                        break
                    continue
                chunk = os.read(self._fd, _READ_CHUNK)
                if not chunk:
                    break
                self.total_bytes += len(chunk)
                self._tap(chunk)
                room = max(0, self._max - written)
                if room:
                    out.write(chunk[:room])
                    written += min(room, len(chunk))
                    chunk = chunk[room:]
                if chunk:
                    tail += chunk
                    if len(tail) > 2 * self._tail_max:
                        self.skipped_bytes += len(tail) - self._tail_max
                        del tail[: len(tail) - self._tail_max]
                if self._closing_at is not None and time.monotonic() - self._closing_at > 2.0:
                    break  # something outside the group keeps writing; the log is complete enough
            if tail:
                self.skipped_bytes += max(0, len(tail) - self._tail_max)
                kept = bytes(tail[-self._tail_max:])
                out.write(f"\n[golfq] log capped at {self._max:,} bytes: {self.skipped_bytes:,} bytes skipped, "
                          f"last {len(kept):,} kept\n".encode())
                out.write(kept)
        os.close(self._fd)

    def _tap(self, chunk: bytes) -> None:
        if self._on_output is None:
            return
        try:
            self._on_output(chunk)
        except Exception:  # the log matters more than the curve: stop tapping, keep pumping
            log.exception("output tap for %s failed; live curve stopped", self._path)
            self._on_output = None


class GroupProcess:
    """A child started in its own session, with its output pumped into a log file."""

    def __init__(self, command: Sequence[str], *, cwd: Path, env: Mapping[str, str], log_path: Path,
                 log_max_bytes: int = DEFAULT_LOG_MAX_BYTES, orphan_grace: float = ORPHAN_GRACE_SECONDS,
                 on_output: Callable[[bytes], None] | None = None) -> None:
        read_fd, write_fd = os.pipe()
        try:
            self.popen = subprocess.Popen(list(command), cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL,
                                          stdout=write_fd, stderr=write_fd, start_new_session=True, close_fds=True)
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        self.pgid = self.popen.pid  # start_new_session makes the child its group's leader
        try:
            self.watchdog, lifeline = _start_watchdog(self.pgid, orphan_grace)
            self._lifeline: int | None = lifeline
        except BaseException:
            os.close(read_fd)
            self._signal_group(signal.SIGKILL)
            self.popen.wait()
            raise
        self.pump = LogPump(read_fd, log_path, log_max_bytes, on_output=on_output)
        self.pump.start()
        self.started = time.monotonic()

    def wait(self, timeout: float) -> int | None:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def _signal_group(self, sig: int) -> bool:
        try:
            os.killpg(self.pgid, sig)
            return True
        except (ProcessLookupError, PermissionError):
            return False

    def _group_alive(self) -> bool:
        return self._signal_group(0)

    def stop(self, grace: float) -> None:
        """SIGTERM the whole group, SIGKILL whatever is left after grace seconds."""
        if self._signal_group(signal.SIGTERM):
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                self.wait(0.05)
                if self.popen.returncode is not None and not self._group_alive():
                    break
            self._signal_group(signal.SIGKILL)
        self.popen.wait()

    def finish(self, grace: float) -> None:
        """After the leader exits: end leftover children (they would hold the log open), close the log."""
        if self._group_alive():
            self.stop(grace)
        self._stand_down_watchdog()
        self.pump.close_soon()
        self.pump.join()

    def _stand_down_watchdog(self) -> None:
        if self._lifeline is None:
            return
        try:
            os.write(self._lifeline, _STAND_DOWN)
        except OSError:  # it already died; the group is gone anyway
            pass
        os.close(self._lifeline)
        self._lifeline = None
        self.watchdog.wait()


def _start_watchdog(pgid: int, grace: float) -> tuple[subprocess.Popen, int]:
    """A watchdog for the group pgid, and the write end of its lifeline (non-inheritable, so only we hold it)."""
    read_fd, write_fd = os.pipe()
    try:
        watchdog = subprocess.Popen([sys.executable, "-I", "-S", "-c", _WATCHDOG, str(pgid), str(grace)],
                                    stdin=read_fd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True, close_fds=True)
    except BaseException:
        os.close(write_fd)
        raise
    finally:
        os.close(read_fd)
    return watchdog, write_fd
