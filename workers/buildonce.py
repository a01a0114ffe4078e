"""Things built once per hash and shared by every job that needs them: environments, made data.

Who builds is decided by a BuildGuard. The default, FileLockGuard, is an exclusive file lock
next to the folder, so two jobs (threads of one fleet, RQ workers of one machine) that need the
same new folder build it once: the second waits on the lock and finds it ready. A folder is
ready only once its marker file is written, last; a build that failed or was killed leaves no
marker, and the next job starts it afresh. On Modal, where a file lock does not reach across
containers, golfq.workers.modal.buildclaims claims the build in a Dict instead.
Builds run as child processes whose output goes to a log, with a timeout.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Protocol

READY = ".golfq-ready"
TAIL_LINES = 15


class BuildError(Exception):
    """A build step failed; str() is one line, `tail` the last lines of its output."""

    def __init__(self, message: str, tail: str = "") -> None:
        super().__init__(message)
        self.tail = tail


class BuildClaim(Protocol):
    """The right to build one target, held by one builder at a time."""

    @property
    def staging(self) -> Path:
        """The folder to build into."""

    def done(self, text: str) -> None:
        """Mark the built staging folder ready (its marker holds `text`) and make it the target."""

    def failed(self, error: BuildError) -> None:
        """The build failed: tell whoever waits on it."""


class BuildGuard(Protocol):
    def claim(self, target: Path) -> AbstractContextManager[BuildClaim | None]:
        """Wait until this caller holds the build of target (a claim) or target is ready (None).
        Raises BuildError when the build this caller waited on failed."""


class _InPlace:
    def __init__(self, target: Path) -> None:
        self.staging = target

    def done(self, text: str) -> None:
        (self.staging / READY).write_text(text)

    def failed(self, error: BuildError) -> None:
        pass  # the next job that takes the lock builds afresh


class FileLockGuard:
    """Builders on one machine: an exclusive flock next to the target, the build in place."""

    @contextmanager
    def claim(self, target: Path) -> Iterator[BuildClaim | None]:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target.parent / f"{target.name}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
            yield None if (target / READY).is_file() else _InPlace(target)


def build_once(target: Path, build: Callable[[Path], str], guard: BuildGuard | None = None) -> tuple[bool, str]:
    """(built by this call, the marker's text): `build(folder)` fills the folder and returns the text to keep."""
    marker = target / READY
    if marker.is_file():
        return False, marker.read_text()
    with (guard or FileLockGuard()).claim(target) as claim:
        if claim is None:
            return False, marker.read_text()
        if claim.staging.exists():
            shutil.rmtree(claim.staging)  # a build that was interrupted
        claim.staging.mkdir(parents=True)
        try:
            text = build(claim.staging)
        except BaseException as error:
            shutil.rmtree(claim.staging, ignore_errors=True)
            if isinstance(error, BuildError):  # the build's own failure: whoever waits on it fails with it
                claim.failed(error)
            raise
        claim.done(text)
        return True, text


def last_lines(text: str, lines: int = TAIL_LINES) -> str:
    return "\n".join([line for line in text.splitlines() if line.strip()][-lines:])[-4000:]


def run_logged(command: Sequence[str], *, cwd: Path, env: Mapping[str, str], log_path: Path, timeout: float,
               what: str) -> None:
    """Run a build step with its output appended to log_path; BuildError with its last lines if it fails."""
    with open(log_path, "a") as log:
        log.write(f"[golfq] {what}: {' '.join(command)}\n")
        log.flush()
    try:
        done = subprocess.run(list(command), cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout, check=False)
        output, code = done.stdout.decode("utf-8", errors="replace"), done.returncode
    except subprocess.TimeoutExpired as error:
        output, code = (error.stdout or b"").decode("utf-8", errors="replace"), None
    except OSError as error:
        raise BuildError(f"{what}: could not start {command[0]}: {error.strerror}") from None
    with open(log_path, "a") as log:
        log.write(output if output.endswith("\n") or not output else output + "\n")
    if code == 0:
        return
    tail = last_lines(output)
    how = f"timed out after {timeout:g} s" if code is None else f"exited with code {code}"
    last = tail.splitlines()[-1].strip()[:300] if tail else ""
    raise BuildError(f"{what} {how}" + (f": {last}" if last else ""), tail)


def child_env(extra: Mapping[str, str], path_first: Sequence[Path] = ()) -> dict[str, str]:
    """The worker's environment with `extra` on top and these folders first on PATH."""
    env = dict(os.environ)
    env.update(extra)
    if path_first:
        env["PATH"] = os.pathsep.join([*(str(p) for p in path_first), env.get("PATH", "")])
    return env
