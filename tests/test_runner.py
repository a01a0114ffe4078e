"""The runner against small real scripts: one spec -> one process -> one Result, reported to the broker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from golfq.core.job import JobState
from golfq.core.result import FailureKind
from golfq.core.spec import parse_spec
from golfq.workers.process import GroupProcess
from golfq.workers.runner import attempt_env, process_count, run_lease, training_command
from tests.golfq_helpers import FINAL_LINES, broker, pid_alive, subprocess_env, wait_for  # noqa: F401 (fixtures)


def lease_for(broker, script: str, **fields):
    ref = broker.put_script(script.encode())
    spec = parse_spec({"pool": "cpu", "trainer": ref, **fields})
    broker.submit([spec])
    lease = broker.claim("cpu", "test-worker", lease_seconds=30)
    assert lease is not None and lease.job_id == spec.id
    return lease


def run(broker, lease, tmp_path, **kwargs):
    kwargs.setdefault("heartbeat_seconds", 0.2)
    return run_lease(broker, lease, work_root=tmp_path / "runs", worker_id="test-worker", **kwargs)


ENV_CHECK = FINAL_LINES + """
import sys
assert sys.stdin.read() == "", "stdin must be closed"
want = {"SEED": "7", "MAX_WALLCLOCK_SECONDS": "90", "NUM_LAYERS": "4", "CUDA_VISIBLE_DEVICES": ""}
for key, value in want.items():
    assert os.environ[key] == value, (key, os.environ.get(key))
assert os.environ["DATA_PATH"].endswith("datasets/fineweb10B_sp1024"), os.environ["DATA_PATH"]
assert os.environ["TOKENIZER_PATH"].endswith("tokenizers/fineweb_1024_bpe.model")
assert os.environ["RUN_ID"].endswith("-1")
open(os.path.join(os.environ["ARTIFACT_DIR"], "model.bin"), "wb").write(b"x")
"""


def test_success_parses_the_log_and_completes_the_job(broker, tmp_path):
    lease = lease_for(broker, ENV_CHECK, seed=7, env={"NUM_LAYERS": "4", "FAKE_BPB": "1.25"},
                      budget={"train_seconds": 90})
    result = run(broker, lease, tmp_path)
    assert result.succeeded, result.error
    assert (result.val_bpb, result.artifact_bytes, result.train_seconds, result.steps) == (1.25, 1234567, 1.5, 10)
    assert result.code_bytes == 1000 and result.eval_seconds == 0.005
    assert result.score_source == "final_int8_zlib_roundtrip_exact"
    assert (result.gpu_count, result.gpu_seconds, result.cost_usd) == (0, 0.0, 0.0)
    assert Path(result.artifact_path, "model.bin").is_file()
    assert "final_int8_zlib_roundtrip_exact" in Path(result.log_path).read_text()
    job = broker.get(lease.job_id)
    assert job.state is JobState.SUCCEEDED and job.result.val_bpb == 1.25
    assert [p.val_bpb for p in broker.front("cpu").points] == [1.25]


def test_nonzero_exit_is_a_user_failure_with_the_last_line(broker, tmp_path):
    lease = lease_for(broker, "import sys\nprint('loading')\nprint('boom: bad shape', file=sys.stderr)\nsys.exit(3)\n")
    result = run(broker, lease, tmp_path)
    assert (result.status, result.failure) == ("failed", FailureKind.USER)
    assert "exited with code 3" in result.error and "boom: bad shape" in result.error
    assert broker.get(lease.job_id).state is JobState.FAILED  # user failures are not retried by default


def test_a_log_with_only_step_evaluations_is_scored_by_the_last_one(broker, tmp_path):
    script = "print('step:5/10 val_loss:3.0000 val_bpb:1.9000 train_time:50ms step_avg:10.00ms')\n" \
             "print('step:10/10 val_loss:2.5000 val_bpb:1.5000 train_time:100ms step_avg:10.00ms')\n"
    result = run(broker, lease_for(broker, script), tmp_path)
    assert result.succeeded, result.error
    assert (result.val_bpb, result.score_source, result.steps) == (1.5, "step:10/10", 10)


def test_exit_zero_without_a_score_is_not_a_success(broker, tmp_path):
    lease = lease_for(broker, "print('trained, but forgot to evaluate')\n")
    result = run(broker, lease, tmp_path)
    assert result.failure is FailureKind.USER
    assert "reported no val_bpb" in result.error
    assert broker.get(lease.job_id).state is JobState.FAILED


def test_hang_past_the_hard_timeout_is_killed(broker, tmp_path):
    script = ("import signal, time, os\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
              "open('pid', 'w').write(str(os.getpid()))\nprint('hanging', flush=True)\ntime.sleep(120)\n")
    lease = lease_for(broker, script, budget={"train_seconds": 1, "timeout_seconds": 1.5})
    started = time.monotonic()
    result = run(broker, lease, tmp_path, kill_grace=0.5)  # SIGTERM is ignored: SIGKILL must follow
    assert time.monotonic() - started < 10
    assert result.failure is FailureKind.TIMEOUT and "hard timeout" in result.error
    pid = int((Path(result.log_path).parent / "pid").read_text())
    assert not pid_alive(pid)
    job = broker.get(lease.job_id)
    assert job.state is JobState.QUEUED and job.failures == {"timeout": 1}  # timeouts are retried once


def test_huge_output_is_capped_and_still_parsed(broker, tmp_path):
    script = ("import sys\nline = 'x' * 1023 + '\\n'\nfor _ in range(20 * 1024):\n    sys.stdout.write(line)\n"
              + FINAL_LINES)
    lease = lease_for(broker, script)
    result = run(broker, lease, tmp_path, log_max_bytes=1 << 20)
    assert result.succeeded, result.error
    assert result.val_bpb == 1.5
    log = Path(result.log_path)
    assert log.stat().st_size < 3 << 20  # 20 MiB of output, 1 MiB head + 1 MiB tail kept
    assert "log capped at" in log.read_text()


def test_a_forked_child_that_outlives_the_script_is_killed(broker, tmp_path):
    script = ("import subprocess, sys\n"
              "child = subprocess.Popen([sys.executable, '-c', 'import time; print(\"child up\", flush=True); "
              "time.sleep(120)'])\n"
              "open('child.pid', 'w').write(str(child.pid))\n" + FINAL_LINES)
    lease = lease_for(broker, script)
    started = time.monotonic()
    result = run(broker, lease, tmp_path, kill_grace=1.0)
    assert time.monotonic() - started < 15  # not the child's 120 s: its hold on the log pipe is broken
    assert result.succeeded, result.error
    child = int((Path(result.log_path).parent / "child.pid").read_text())
    wait_for(lambda: not pid_alive(child), timeout=5)


def test_a_lost_lease_kills_the_process(broker, tmp_path):
    script = "import os, time\nopen('pid', 'w').write(str(os.getpid()))\ntime.sleep(120)\n"
    lease = lease_for(broker, script)
    out = {}
    runner = threading.Thread(target=lambda: out.setdefault("result", run(broker, lease, tmp_path)))
    runner.start()
    pid_file = tmp_path / "runs" / f"{lease.job_id}-1" / "pid"
    wait_for(pid_file.exists)
    pid = int(wait_for(pid_file.read_text))
    assert broker.cancel([lease.job_id]) == [lease.job_id]
    runner.join(timeout=15)
    assert not runner.is_alive()
    result = out["result"]
    assert result.failure is FailureKind.INFRA and "lease lost" in result.error
    assert not pid_alive(pid)
    assert broker.get(lease.job_id).state is JobState.CANCELLED  # the late failure did not resurrect it


def test_stop_releases_the_lease_for_another_worker(broker, tmp_path):
    lease = lease_for(broker, "import time\nprint('working', flush=True)\ntime.sleep(120)\n")
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    result = run(broker, lease, tmp_path, stop=stop, kill_grace=1.0)
    assert result.status == "released" and result.failure is None and "released" in result.error
    job = broker.get(lease.job_id)
    assert job.state is JobState.QUEUED and job.failures == {}  # a graceful stop is no failure of the job


def test_a_script_missing_from_the_queue_fails_without_running(broker, tmp_path):
    spec = parse_spec({"pool": "cpu", "trainer": "sha256:" + "0" * 64})
    broker.submit([spec])
    lease = broker.claim("cpu", "test-worker")
    result = run(broker, lease, tmp_path)
    assert result.failure is FailureKind.USER and "not stored" in result.error
    assert broker.get(spec.id).state is JobState.FAILED


def test_command_and_process_count():
    python = sys.executable
    assert training_command(Path("/w/train_gpt.py"), 1) == [python, "/w/train_gpt.py"]
    assert training_command(None, 1) == [python, "-m", "golfq.workers.golf.train"]
    assert training_command(None, 8) == [python, "-m", "torch.distributed.run", "--standalone",
                                         "--nproc-per-node=8", "-m", "golfq.workers.golf.train"]
    assert process_count(parse_spec({"pool": "h100x8"}), None) == 8
    assert process_count(parse_spec({"pool": "h100x8"}), "4,5") == 2
    assert process_count(parse_spec({"pool": "cpu"}), None) == 1


def test_gpu_jobs_see_only_their_devices(broker, tmp_path):
    lease = lease_for(broker, "print('x')")
    env = attempt_env(lease, tmp_path, "2,3", base={"CUDA_VISIBLE_DEVICES": "0,1,2,3", "PATH": "/bin"})
    assert env["CUDA_VISIBLE_DEVICES"] == "2,3" and env["PATH"] == "/bin"


TORCHRUN_SCRIPT = """
import os
assert os.environ["WORLD_SIZE"] == "2", os.environ.get("WORLD_SIZE")
rank = int(os.environ["RANK"])
open(f"rank{rank}", "w").write(os.environ["LOCAL_RANK"])
if rank == 0:
    print("world_size:2 grad_accum_steps:4")
""" + FINAL_LINES.replace("\nprint(", "\nif rank == 0: print(")


def test_two_processes_run_under_torchrun(broker, tmp_path):
    pytest.importorskip("torch.distributed.run")
    lease = lease_for(broker, TORCHRUN_SCRIPT)
    result = run(broker, lease, tmp_path, gpus="0,1")  # device ids are only passed on; no GPU is touched
    assert result.succeeded, result.log_tail
    workdir = Path(result.log_path).parent
    assert (workdir / "rank0").read_text() == "0" and (workdir / "rank1").read_text() == "1"
    assert "torch.distributed.run --standalone --nproc-per-node=2" in Path(result.log_path).read_text()


# A worker stand-in: supervises a training group (a leader that ignores SIGTERM, and a grandchild
# in its group), prints the pids, then waits to be SIGKILLed like a worker taken by the OOM killer.
WORKER_THAT_DIES = """
import os, sys, time
from pathlib import Path
from golfq.workers.process import GroupProcess
work = Path(sys.argv[1])
trainer = ("import os, signal, subprocess, sys, time\\n"
           "signal.signal(signal.SIGTERM, signal.SIG_IGN)\\n"
           "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\\n"
           "open('pids.tmp', 'w').write(f'{os.getpid()} {child.pid}')\\n"
           "os.rename('pids.tmp', 'pids')\\n"
           "time.sleep(120)\\n")
proc = GroupProcess([sys.executable, "-c", trainer], cwd=work, env=os.environ, log_path=work / "train.log",
                    orphan_grace=0.5)
while not (work / "pids").exists():
    time.sleep(0.02)
print(proc.watchdog.pid, (work / "pids").read_text(), flush=True)
time.sleep(120)
"""


def test_a_sigkilled_worker_takes_its_training_group_with_it(tmp_path):
    worker = subprocess.Popen([sys.executable, "-c", WORKER_THAT_DIES, str(tmp_path)], env=subprocess_env(),
                              stdout=subprocess.PIPE, text=True)
    try:
        watchdog, leader, grandchild = map(int, worker.stdout.readline().split())
        assert all(map(pid_alive, (watchdog, leader, grandchild)))
        time.sleep(0.3)
        assert pid_alive(leader) and pid_alive(grandchild)  # nothing kills the group while the worker lives
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(5)
        # SIGTERM reaches the grandchild; the leader ignores it and gets SIGKILL after the 0.5 s grace.
        wait_for(lambda: not pid_alive(grandchild), timeout=10)
        wait_for(lambda: not pid_alive(leader), timeout=10)
        wait_for(lambda: not pid_alive(watchdog), timeout=10)
    finally:
        worker.kill()
        worker.wait()


def test_a_normal_finish_stands_the_watchdog_down(tmp_path):
    proc = GroupProcess([sys.executable, "-c", "print('done')"], cwd=tmp_path, env={}, log_path=tmp_path / "log")
    assert proc.wait(10) == 0
    proc.finish(1.0)
    assert proc.watchdog.returncode == 0  # reaped, not left behind one per job
    assert (tmp_path / "log").read_text() == "done\n"
