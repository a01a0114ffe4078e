"""The local fleet: concurrent claim loops, --burst, --max-idle, GPU slots, graceful stop (in-process and SIGTERM)."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time

import pytest

from golfq.core.backends import open_broker
from golfq.core.job import JobState
from golfq.core.spec import parse_spec
from golfq.workers.fleet import Fleet, FleetConfig, FleetError, gpu_slots, parse_devices
from tests.golfq_helpers import FINAL_LINES, golfq_command, queue_url, subprocess_env, wait_for


@pytest.fixture
def broker(tmp_path):
    opened = open_broker(queue_url(tmp_path))
    yield opened
    opened.close()


def submit(broker, count: int, script: str = FINAL_LINES, **env: str) -> list[str]:
    ref = broker.put_script(script.encode())
    specs = [parse_spec({"pool": "cpu", "trainer": ref, "seed": i, "env": env}) for i in range(count)]
    return [job.id for job in broker.submit(specs)]


def config(tmp_path, **overrides) -> FleetConfig:
    fields = dict(queue=queue_url(tmp_path), pool="cpu", work_root=tmp_path / "runs", heartbeat_seconds=0.5,
                  lease_seconds=10, poll_seconds=0.1)
    return FleetConfig(**{**fields, **overrides})


def start(fleet: Fleet) -> tuple[threading.Thread, dict]:
    out: dict = {}
    thread = threading.Thread(target=lambda: out.setdefault("summary", fleet.run()), daemon=True)
    thread.start()
    return thread, out


def test_burst_runs_every_job_on_both_slots_then_exits(broker, tmp_path):
    ids = submit(broker, 4, FAKE_SLEEP="0.3")
    summary = Fleet(config(tmp_path, concurrency=2, burst=True)).run()
    assert sorted(r.spec_id for r in summary.results) == sorted(ids)
    assert all(broker.get(i).state is JobState.SUCCEEDED for i in ids)
    assert len({r.worker_id for r in summary.results}) == 2  # both loops took work


def test_burst_on_an_empty_pool_exits_at_once(tmp_path):
    started = time.monotonic()
    assert Fleet(config(tmp_path, burst=True)).run().results == []
    assert time.monotonic() - started < 5


def test_max_idle_exits_after_the_idle_time(broker, tmp_path):
    submit(broker, 1)
    started = time.monotonic()
    summary = Fleet(config(tmp_path, max_idle=0.5)).run()
    assert [r.status for r in summary.results] == ["succeeded"]
    assert 0.5 <= time.monotonic() - started < 8


def test_graceful_stop_lets_the_running_job_finish_and_claims_nothing_more(broker, tmp_path):
    first, second = submit(broker, 2, FAKE_SLEEP="1.0")
    fleet = Fleet(config(tmp_path, concurrency=1))
    thread, out = start(fleet)
    running = wait_for(lambda: [j for j in (broker.get(first), broker.get(second)) if j.state is JobState.LEASED])
    fleet.stop(grace=30)
    thread.join(timeout=20)
    assert not thread.is_alive()
    assert [r.status for r in out["summary"].results] == ["succeeded"]
    other = second if running[0].id == first else first
    assert broker.get(running[0].id).state is JobState.SUCCEEDED
    assert broker.get(other).state is JobState.QUEUED


def test_grace_expiry_kills_and_releases_running_jobs(broker, tmp_path):
    [job_id] = submit(broker, 1, script="import time\nprint('busy', flush=True)\ntime.sleep(120)\n")
    fleet = Fleet(config(tmp_path))
    thread, out = start(fleet)
    wait_for(lambda: broker.get(job_id).state is JobState.LEASED)
    fleet.stop(grace=0.3)
    thread.join(timeout=20)
    assert not thread.is_alive()
    job = broker.get(job_id)
    assert job.state is JobState.QUEUED and job.failures == {}  # released at once, and not counted as a failure
    assert "released" in job.error and [r.status for r in out["summary"].results] == ["released"]


def test_each_slot_gets_its_own_gpus(broker, tmp_path):
    script = FINAL_LINES + "\nprint('devices=' + os.environ['CUDA_VISIBLE_DEVICES'])\n"
    submit(broker, 2, script=script, FAKE_SLEEP="0.5")
    summary = Fleet(config(tmp_path, burst=True, gpus=("4", "5"))).run()
    seen = sorted(line for r in summary.results for line in r.log_tail.splitlines() if line.startswith("devices="))
    assert seen == ["devices=4", "devices=5"]


def test_gpu_slot_arithmetic():
    assert gpu_slots((), 0, None) == (1, [None])
    assert gpu_slots((), 0, 3) == (3, [None, None, None])
    assert gpu_slots(("0", "1", "2", "3"), 1, None) == (4, ["0", "1", "2", "3"])
    assert gpu_slots(("0", "1", "2", "3"), 2, None) == (2, ["0,1", "2,3"])
    assert gpu_slots(tuple("01234567"), 8, None) == (1, ["0,1,2,3,4,5,6,7"])
    with pytest.raises(FleetError):
        gpu_slots(("0", "1"), 1, 3)
    with pytest.raises(FleetError):
        gpu_slots(("0",), 8, None)
    assert parse_devices("0, 2") == ("0", "2")
    for bad in ("0,0", "a,b", "0,,1"):
        with pytest.raises(FleetError):
            parse_devices(bad)


def test_sigterm_to_golfq_worker_finishes_the_running_job(broker, tmp_path):
    first, second = submit(broker, 2, FAKE_SLEEP="1.5")
    worker = subprocess.Popen(
        golfq_command("worker", "--pool", "cpu", "--queue", queue_url(tmp_path), "--heartbeat-seconds", "0.5",
                      "--work-dir", str(tmp_path / "runs")),
        cwd=tmp_path, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        running = wait_for(lambda: [j for j in (broker.get(first), broker.get(second)) if j.state is JobState.LEASED])
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0, err
    assert "SIGTERM" in err
    assert broker.get(running[0].id).state is JobState.SUCCEEDED
    other = second if running[0].id == first else first
    assert broker.get(other).state is JobState.QUEUED


def test_ctrl_c_twice_releases_the_job_without_counting_a_failure(broker, tmp_path):
    ref = broker.put_script(b"import time\nprint('busy', flush=True)\ntime.sleep(120)\n")
    [job] = broker.submit([parse_spec({"pool": "cpu", "trainer": ref, "budget": {"retries": {"infra": 0}}})])
    url = queue_url(tmp_path)

    def seen() -> dict:  # read by another process, as an operator would
        out = subprocess.run(golfq_command("status", job.id, "--queue", url, "--json"), env=subprocess_env(),
                             capture_output=True, text=True, check=True).stdout
        return json.loads(out)

    for attempt in (1, 2):  # with no infra retries, one counted failure would have made the job dead
        worker = subprocess.Popen(
            golfq_command("worker", "--pool", "cpu", "--queue", url, "--heartbeat-seconds", "0.5",
                          "--work-dir", str(tmp_path / "runs")),
            cwd=tmp_path, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda a=attempt: (doc := seen())["state"] == "leased" and doc["attempt"] == a,
                     timeout=60, every=0.2)
            worker.send_signal(signal.SIGINT)  # the operator's Ctrl-C: no new jobs, grace for running ones
            time.sleep(0.3)
            worker.send_signal(signal.SIGINT)  # and again: release them now
            worker.wait(timeout=30)
        finally:
            if worker.poll() is None:
                worker.kill()
        after = seen()
        assert after["state"] == "queued" and after.get("failures", {}) == {} and "released" in after["error"]
