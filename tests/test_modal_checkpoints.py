"""Checkpoints on Modal, in the fakes: a script that reads CHECKPOINT_DIR and RESUME goes on from its checkpoint
when Modal runs a preempted input again (the first run is interrupted after step 5, as Modal interrupts a
preempted container), and the checkpoint reaches the Volume before the container goes."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from golfq.core.job import JobState
from golfq.core.spec import Budget, ExperimentSpec
from golfq.workers.checkpoints import checkpoint_dir
from golfq.workers.modal import app as modal_app
from golfq.workers.modal.config import load_config
from golfq.workers.modal.dispatch import Dispatcher
from tests.test_checkpoint_resume import SCRIPT
from tests.test_modal_app import cloud  # noqa: F401 - the fixture
from tests.test_modal_dispatch import FakeSpawner

pytestmark = pytest.mark.filterwarnings("ignore:.*executing locally:UserWarning")

class RecordingVolume:
    """The artifacts Volume: what the checkpoint folder held at each commit."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.commits, self.reloads = folder, [], 0

    def commit(self) -> None:
        state = self.folder / "state.json"
        self.commits.append(state.read_text() if state.exists() else None)

    def reload(self) -> None:
        self.reloads += 1


@pytest.mark.parametrize("interrupt", ["SIGINT", "SIGTERM"])
def test_a_script_goes_on_from_its_checkpoint_when_modal_reruns_a_preempted_input(cloud, tmp_path,  # noqa: F811
                                                                                  monkeypatch, interrupt):
    ref = cloud.put_script(SCRIPT.encode())
    spec = ExperimentSpec(pool="cpu", trainer=ref, budget=Budget(train_seconds=30),
                          env={"RUNS_FILE": str(tmp_path / "runs.txt"), "HANG_AT": "5",
                               "CONTAINER_PID": str(os.getpid()), "INTERRUPT": interrupt})
    job = cloud.submit([spec])[0]
    spawner = FakeSpawner()
    Dispatcher(cloud, spawner, load_config()).run_once()
    payload = spawner.calls[0][1]
    volume = RecordingVolume(checkpoint_dir(tmp_path / "artifacts" / "runs", job.id))
    monkeypatch.setattr(modal_app, "artifacts_volume", volume)
    monkeypatch.setattr(modal_app.modal, "is_local", lambda: False)  # commit and reload as in a container

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):  # the first container goes down mid-run, reporting nothing
        modal_app.run_cpu.local(payload)
    assert cloud.get(job.id).state is JobState.LEASED
    assert '{"step": 5}' in volume.commits  # its checkpoint reached the Volume before it went

    assert "succeeded" in modal_app.run_cpu.local(payload)  # Modal's re-run: the same input, the same attempt
    runs = (tmp_path / "runs.txt").read_text().splitlines()
    assert runs == ["start 0 resume 0", "start 5 resume 1"]
    done = cloud.get(job.id)
    assert (done.state, done.attempt, done.result.attempt) == (JobState.SUCCEEDED, 1, 1)
    assert done.result.resumed is True  # its training time is a sum of segments: no record timing
    assert not volume.folder.exists() and volume.commits[-1] is None  # cleaned when the job ended, and committed
    assert volume.reloads == 2
    assert signal.getsignal(signal.SIGTERM) is before  # the container's own handler is back after each call
