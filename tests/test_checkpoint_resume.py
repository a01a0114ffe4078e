"""A job's checkpoint folder across attempts, on SQLite and on a real redis-server: an infra retry goes on
from the last checkpoint, `golfq ops requeue --resume` continues a failed or stopped job, a plain requeue
starts afresh, and the folder goes when the job succeeds."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from golfq.core.backends import open_broker
from golfq.core.job import JobState
from golfq.core.result import FailureKind
from golfq.core.spec import parse_spec
from golfq.workers.checkpoints import checkpoint_dir
from golfq.workers.runner import run_lease
from tests.golfq_helpers import FINAL_LINES, cli  # noqa: F401 (fixtures)

# Ten steps, a checkpoint after each. FAIL_AT makes the first run exit 1 there; HANG_AT makes it wait to be killed,
# after interrupting CONTAINER_PID if given (as Modal interrupts a preempted container).
SCRIPT = FINAL_LINES + """
import json, pathlib, signal, time
state = pathlib.Path(os.environ["CHECKPOINT_DIR"]) / "state.json"
start = json.loads(state.read_text())["step"] if os.environ["RESUME"] == "1" and state.exists() else 0
with open(os.environ["RUNS_FILE"], "a") as handle:
    handle.write(f"start {start} resume {os.environ['RESUME']}\\n")
for step in range(start, 10):
    state.write_text(json.dumps({"step": step + 1}))
    if start == 0 and str(step + 1) == os.environ.get("FAIL_AT"):
        raise SystemExit(1)
    if start == 0 and str(step + 1) == os.environ.get("HANG_AT"):
        if "CONTAINER_PID" in os.environ:
            os.kill(int(os.environ["CONTAINER_PID"]), getattr(signal, os.environ.get("INTERRUPT", "SIGINT")))
        print("hanging", flush=True)
        time.sleep(120)
"""


@pytest.fixture(params=["sqlite", "redis-server"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'golfq.db'}"
    from tests.redis_server import fresh_url

    found = fresh_url()
    if found is None:
        pytest.skip("redis-server is not installed")
    return found


def _submit(broker, tmp_path: Path, **env: str) -> str:
    ref = broker.put_script(SCRIPT.encode())
    spec = parse_spec({"pool": "cpu", "trainer": ref, "env": {"RUNS_FILE": str(tmp_path / "runs.txt"), **env}})
    return broker.submit([spec])[0].id


def _run_next(broker, tmp_path: Path, **kwargs):
    lease = broker.claim("cpu", "w", lease_seconds=30)
    assert lease is not None
    return run_lease(broker, lease, work_root=tmp_path / "runs", worker_id="w", heartbeat_seconds=0.2, **kwargs)


def _runs(tmp_path: Path) -> list[str]:
    return (tmp_path / "runs.txt").read_text().splitlines()


def test_requeue_resume_continues_a_failed_job_and_a_plain_requeue_starts_afresh(url, tmp_path, cli):
    broker = open_broker(url)
    try:
        job_id = _submit(broker, tmp_path, FAIL_AT="5")
        assert _run_next(broker, tmp_path).failure is FailureKind.USER
        assert broker.get(job_id).state is JobState.FAILED
        folder = checkpoint_dir(tmp_path / "runs", job_id)
        assert json.loads((folder / "state.json").read_text()) == {"step": 5}  # kept for --resume

        code, out, err = cli("ops", "requeue", "--resume", job_id, "--queue", url, "--json")
        assert code == 0 and json.loads(out) == {"requeued": [job_id], "unchanged": []}, err
        result = _run_next(broker, tmp_path)
        assert result.status == "succeeded" and result.resumed
        assert _runs(tmp_path) == ["start 0 resume 0", "start 5 resume 1"]
        assert not folder.exists()  # the job succeeded: its checkpoints are gone
    finally:
        broker.close()


def test_a_plain_requeue_of_a_failed_job_starts_from_zero(url, tmp_path, cli):
    broker = open_broker(url)
    try:
        job_id = _submit(broker, tmp_path, FAIL_AT="5")
        _run_next(broker, tmp_path)
        code, _, err = cli("ops", "requeue", job_id, "--queue", url)
        assert code == 0, err
        result = _run_next(broker, tmp_path)  # from zero, so it fails at step 5 again
        assert result.failure is FailureKind.USER and not result.resumed
        assert _runs(tmp_path) == ["start 0 resume 0", "start 0 resume 0"]
    finally:
        broker.close()


def test_a_released_run_goes_on_from_the_last_checkpoint(url, tmp_path):
    broker = open_broker(url)
    try:
        job_id = _submit(broker, tmp_path, HANG_AT="4")
        stop = threading.Event()
        folder = checkpoint_dir(tmp_path / "runs", job_id)
        threading.Thread(target=lambda: _wait_then_set(folder / "state.json", '{"step": 4}', stop)).start()
        first = _run_next(broker, tmp_path, stop=stop, kill_grace=1.0)  # the worker shuts down mid-run
        assert first.status == "released" and broker.get(job_id).state is JobState.QUEUED
        second = _run_next(broker, tmp_path)
        assert second.status == "succeeded" and second.resumed and second.attempt == 2
        assert _runs(tmp_path) == ["start 0 resume 0", "start 4 resume 1"]
    finally:
        broker.close()


def test_requeue_resume_refuses_nothing_to_name(cli):
    code, _, err = cli("ops", "requeue", "--resume")
    assert code == 2 and "give job IDs" in err


def _wait_then_set(path: Path, content: str, event: threading.Event) -> None:
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (path.exists() and path.read_text() == content):
        time.sleep(0.05)
    event.set()


def test_the_worker_setting_sets_the_interval_and_a_spec_cannot_set_the_folder(monkeypatch, tmp_path):
    from golfq.core.errors import GolfqError
    from golfq.core.job import Lease
    from golfq.workers.attempt import attempt_env

    monkeypatch.setenv("GOLFQ_CHECKPOINT_SECONDS", "120")
    spec = parse_spec({"pool": "cpu"})
    lease = Lease(job_id=spec.id, attempt=1, worker_id="w", pool="cpu", deadline=0.0, spec=spec)
    assert attempt_env(lease, tmp_path, None, base={})["CHECKPOINT_SECONDS"] == "120"
    own = parse_spec({"pool": "cpu", "env": {"CHECKPOINT_SECONDS": "30"}})
    assert attempt_env(Lease(job_id=own.id, attempt=1, worker_id="w", pool="cpu", deadline=0.0, spec=own), tmp_path,
                       None, base={})["CHECKPOINT_SECONDS"] == "30"
    for reserved in ("CHECKPOINT_DIR", "RESUME"):
        with pytest.raises(GolfqError, match=f"env.{reserved}: reserved"):
            parse_spec({"pool": "cpu", "env": {reserved: "x"}})
