"""A job's checkpoint folder: where every attempt of the job saves, so a later one can go on from it.

The folder is the job's, not the attempt's (`<work root>/checkpoints/<job id>`), so it outlives
the attempt's own directory, which each attempt starts afresh. The training process finds it in
CHECKPOINT_DIR and is told by RESUME=1 to go on from what it holds (RESUME=0: start afresh;
the folder has been emptied). An attempt goes on when

- the lease says so: the job failed for infra reasons (preempted, lease lost, worker gone) or
  was requeued with `--resume` (`Lease.resume`);
- it is the same attempt run again: Modal re-runs a preempted input with the same lease, and
  the folder remembers the attempt that last used it.

The folder is removed when the job succeeds or is cancelled, and kept when it fails, dies or
is stopped, so `golfq ops requeue --resume` can go on from it. On Modal the work root lies on
a Volume: `on_save` (the Volume's commit) runs whenever the process has saved a checkpoint, so
the next container sees it.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

from golfq.core.job import JobState, Lease

log = logging.getLogger("golfq.checkpoints")

OWNER_NAME = ".golfq-attempt"  # the attempt that last used the folder
ENDS_WITHOUT_RESUME = (JobState.SUCCEEDED, JobState.CANCELLED)


def checkpoint_dir(work_root: Path, job_id: str) -> Path:
    return Path(work_root) / "checkpoints" / job_id


class CheckpointFolder:
    """One attempt's view of its job's checkpoint folder."""

    def __init__(self, work_root: Path, lease: Lease, on_save: Callable[[], None] | None = None) -> None:
        self.path = checkpoint_dir(work_root, lease.job_id)
        self.on_save = on_save
        owner = self.path / OWNER_NAME
        try:
            previous = int(owner.read_text().strip())
        except (OSError, ValueError):
            previous = None
        self.resume = lease.resume or previous == lease.attempt
        if not self.resume and self.path.exists():
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        owner.write_text(str(lease.attempt))
        self.handed = self.resume and any(p.name != OWNER_NAME for p in self.path.iterdir())
        self._seen = self._stamp()

    def env(self) -> dict[str, str]:
        return {"CHECKPOINT_DIR": str(self.path), "RESUME": "1" if self.resume else "0"}

    def _stamp(self) -> float:
        """When the folder last changed as a whole: the newest of the folder and what it holds at the top."""
        try:
            return max([self.path.stat().st_mtime_ns, *(p.stat().st_mtime_ns for p in self.path.iterdir())])
        except OSError:
            return 0.0

    def poll(self) -> None:
        """Run on_save once for every new save seen since the last poll."""
        if self.on_save is None:
            return
        stamp = self._stamp()
        if stamp != self._seen:
            self._seen = stamp
            try:
                self.on_save()
            except Exception as error:  # noqa: BLE001 - a failed commit is retried at the next save or the end
                self._seen = 0.0
                log.warning("checkpoint of %s: saving it failed: %s", self.path.name, error)

    def settle(self, state: JobState | None) -> None:
        """After the attempt was reported: remove the folder if the job has ended for good, else keep it."""
        if state in ENDS_WITHOUT_RESUME:
            shutil.rmtree(self.path, ignore_errors=True)
        self.poll()
