"""Code folders: packed deterministically, refused in one line, run in their own uv environment.

No network: the requirement is a wheel made in the test (tests/envs_helpers.py), installed by
uv from a find-links folder with --no-index.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from golfq.core.job import JobState
from golfq.core.result import FailureKind
from golfq.core.spec import MAX_CODE_BYTES
from golfq.producer.codefolder import CodeFolderError, pack_folder
from golfq.producer.specfile import prepare
from golfq.workers.runner import run_lease
from tests import redis_server
from tests.envs_helpers import PACKAGE, code_folder, make_wheel, wheels  # noqa: F401 (fixture)
from tests.golfq_helpers import broker, cli  # noqa: F401 (fixtures)


def _worker_lacks_the_package():
    assert importlib.util.find_spec(PACKAGE) is None
    probe = subprocess.run([sys.executable, "-c", f"import {PACKAGE}"], capture_output=True, text=True)
    assert probe.returncode != 0 and "ModuleNotFoundError" in probe.stderr


# -- packing ----------------------------------------------------------------------------------


def test_packing_is_deterministic_and_the_id_follows_every_file(tmp_path):
    folder = code_folder(tmp_path / "rec", files={"data/vocab.txt": "a b c\n"})
    first = pack_folder(folder)
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "helper.cpython-311.pyc").write_bytes(b"\x00cache")
    os.utime(folder / "helper.py", (1, 1))  # mtimes are not packed
    again = pack_folder(folder)
    copy = code_folder(tmp_path / "elsewhere", files={"data/vocab.txt": "a b c\n"})  # same files, another path and time
    assert first.data == again.data == pack_folder(copy).data
    assert first.files == ("data/vocab.txt", "helper.py", "requirements.txt", "train_gpt.py")
    spec_id = prepare({"code": str(folder)}).spec.id
    assert prepare({"code": str(copy)}).spec.id == spec_id
    ids = {spec_id}
    for change in (lambda: (folder / "data" / "vocab.txt").write_text("a b d\n"),
                   lambda: (folder / "helper.py").chmod(0o755),
                   lambda: (folder / "new.py").write_text(""),
                   lambda: (folder / "requirements.txt").write_text(f"{PACKAGE}>=1\n")):
        change()
        ids.add(prepare({"code": str(folder)}).spec.id)
    assert len(ids) == 5
    assert prepare({"code": str(folder), "entry": "helper.py"}).spec.id not in ids


def test_a_script_keeps_its_id_and_a_folder_is_told_apart(tmp_path):
    script = b"print('hi')\n"
    by_script = prepare({}, script=script).spec
    assert by_script.trainer.startswith("sha256:") and not by_script.is_code_folder
    # The id of a script spec is recomputed as tests/test_spec.py does (its default hard kill is 600 + 600 + 600 s).
    outcome = {"v": 1, "pool": "cpu", "trainer": "sha256:" + hashlib.sha256(script).hexdigest(), "env": {},
               "seed": 1337, "data": {"dataset": "fineweb10B_sp1024", "tokenizer": "fineweb_1024_bpe"},
               "budget": {"train_seconds": 600.0, "timeout_seconds": 1800.0}}
    canonical = json.dumps(outcome, sort_keys=True, separators=(",", ":")).encode()
    assert by_script.id == base64.b32encode(hashlib.sha256(canonical).digest()[:10]).decode().lower()
    folder = tmp_path / "one"
    folder.mkdir()
    (folder / "train_gpt.py").write_bytes(script)
    by_folder = prepare({"code": str(folder)}).spec
    assert by_folder.is_code_folder and by_folder.id != by_script.id


def test_links_inside_are_packed_as_files(tmp_path):
    folder = code_folder(tmp_path / "rec")
    (folder / "alias.py").symlink_to("helper.py")
    packed = pack_folder(folder)
    assert "alias.py" in packed.files


# -- bad input: one line, exit 2, nothing queued ---------------------------------------------------


def _bad_folders(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    outside = tmp_path / "secret.txt"
    outside.write_text("x")
    link = code_folder(tmp_path / "link")
    (link / "leak.txt").symlink_to(outside)
    big = code_folder(tmp_path / "big")
    (big / "blob.bin").write_bytes(os.urandom(MAX_CODE_BYTES))
    fifo = code_folder(tmp_path / "fifo")
    os.mkfifo(fifo / "pipe")
    broken = code_folder(tmp_path / "broken", requirements="numpy>=>1\n")
    locked = code_folder(tmp_path / "locked")
    locked.chmod(0)
    return {"missing": (tmp_path / "nowhere", "no such folder"),
            "link": (link, "outside the folder"),
            "big": (big, "byte limit"),
            "fifo": (fifo, "not a regular file"),
            "requirements": (broken, "requirements.txt line 1: 'numpy>=>1' does not parse"),
            "unreadable": (locked, "cannot read")}


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any folder")
def test_an_unreadable_folder_is_refused(tmp_path):
    folder, message = _bad_folders(tmp_path)["unreadable"]
    with pytest.raises(CodeFolderError, match=message):
        pack_folder(folder)


@pytest.mark.parametrize("case", ["missing", "link", "big", "fifo", "requirements"])
def test_bad_folders_are_refused_in_one_line_and_nothing_is_queued(cli, tmp_path, case):
    folder, message = _bad_folders(tmp_path)[case]
    code, out, err = cli("submit", "--code", str(folder), "--pool", "cpu")
    assert code == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    code, out, _ = cli("status", "--json")
    assert code == 0 and json.loads(out)["jobs"] == []


def test_a_spec_file_names_its_folder_relative_to_itself(cli, tmp_path):
    code_folder(tmp_path / "specs" / "rec", requirements=None)
    (tmp_path / "specs" / "run.toml").write_text('code = "rec"\npool = "cpu"\nentry = "helper.py"\n')
    code, out, err = cli("submit", str(tmp_path / "specs" / "run.toml"), "--json")
    assert code == 0, err
    job_id = json.loads(out)["id"]
    code, out, _ = cli("status", job_id)
    assert "code:sha256:" in out and "(runs helper.py)" in out
    (tmp_path / "specs" / "bad.toml").write_text('code = "rec"\nentry = "absent.py"\n')
    code, _, err = cli("submit", str(tmp_path / "specs" / "bad.toml"))
    assert code == 2 and "entry: absent.py is not a file of the code folder" in err


# -- running in its own environment ----------------------------------------------------------------


def test_a_folder_runs_in_its_own_environment_on_a_local_worker(cli, tmp_path, wheels):
    folder = code_folder(tmp_path / "rec")
    code, out, err = cli("submit", "--code", str(folder), "--pool", "cpu", "--seed", "1", "--seed", "2", "--json")
    assert code == 0, err
    first, second = [json.loads(line)["id"] for line in out.splitlines()]
    code, out, err = cli("worker", "--pool", "cpu", "--burst", "--heartbeat-seconds", "0.5")
    assert code == 0, err
    logs = {}
    for job_id in (first, second):
        code, out, _ = cli("status", job_id, "--json")
        job = json.loads(out)
        assert job["state"] == "succeeded", job
        assert job["result"]["val_bpb"] in (1.251, 1.252)
        code, logs[job_id], _ = cli("logs", job_id)
        assert f"package 1.0.0 {tmp_path / 'envs'}" in logs[job_id]  # imported from the job's virtualenv
    environment = json.loads(cli("status", first, "--json")[1])["result"]["environment"]
    assert environment and environment == json.loads(cli("status", second, "--json")[1])["result"]["environment"]
    verdicts = sorted("built" if f"environment {environment}: built" in text else "reused" for text in logs.values())
    assert verdicts == ["built", "reused"]  # the second job reused the first one's environment
    assert len([p for p in (tmp_path / "envs").iterdir() if p.is_dir()]) == 1
    _worker_lacks_the_package()


def test_a_broken_requirement_fails_the_job_as_user_with_the_installers_words(cli, tmp_path, wheels):
    folder = code_folder(tmp_path / "rec", requirements=f"{PACKAGE}==9.9.9\n")
    code, out, err = cli("submit", "--code", str(folder), "--pool", "cpu", "--json")
    job_id = json.loads(out)["id"]
    code, out, err = cli("worker", "--pool", "cpu", "--burst", "--heartbeat-seconds", "0.5")
    assert code == 0, err
    job = json.loads(cli("status", job_id, "--json")[1])
    assert job["state"] == "failed" and job["result"]["failure"] == "user"  # not retried: user budget is 0
    assert job["failures"] == {"user": 1}
    assert "uv pip install exited with code" in job["error"]
    code, log, _ = cli("logs", job_id)
    assert "9.9.9" in log and "No solution found" in log  # uv's own message, in the log
    # The worker is unharmed: a good job after it runs.
    good = code_folder(tmp_path / "good")
    code, out, err = cli("submit", "--code", str(good), "--pool", "cpu", "--json")
    assert cli("worker", "--pool", "cpu", "--burst", "--heartbeat-seconds", "0.5")[0] == 0
    assert json.loads(cli("status", json.loads(out)["id"], "--json")[1])["state"] == "succeeded"


def test_a_torch_pin_the_worker_does_not_meet_is_recorded_not_dropped(cli, tmp_path, wheels):
    folder = code_folder(tmp_path / "rec", requirements=f"torch==2.9.1+cu128\n{PACKAGE}\n")
    job_id = json.loads(cli("submit", "--code", str(folder), "--pool", "cpu", "--json")[1])["id"]
    assert cli("worker", "--pool", "cpu", "--burst", "--heartbeat-seconds", "0.5")[0] == 0
    job = json.loads(cli("status", job_id, "--json")[1])
    assert job["state"] == "succeeded", job
    notes = job["result"]["environment_notes"]
    assert len(notes) == 1 and notes[0].startswith("torch==2.9.1+cu128 asked; this worker keeps its own torch ")
    code, out, _ = cli("status", job_id)
    assert "env note  torch==2.9.1+cu128 asked" in out


# -- data a command makes ---------------------------------------------------------------------------

MAKE_DATA = """\
import os, pathlib, time
out = pathlib.Path(os.environ["GOLFQ_DATA_OUT"])
with open(os.environ["COUNTER"], "a") as counter:
    counter.write("run\\n")
time.sleep(1.0)
(out / "shards").mkdir()
(out / "shards" / "train_000.bin").write_text(os.environ["VOCAB"])
(out / "tok.model").write_text("tok")
"""

READS_DATA = """\
import os, pathlib
assert pathlib.Path(os.environ["DATA_PATH"], "train_000.bin").read_text() == "8192"
assert pathlib.Path(os.environ["TOKENIZER_PATH"]).read_text() == "tok"
assert os.environ["BYTES_PATH"].endswith("tok.model")
print(f"final_int8_zlib_roundtrip_exact val_loss:2.0 val_bpb:{1 + int(os.environ['SEED']) / 1000}")
"""


def test_a_data_command_runs_once_under_four_concurrent_jobs(broker, tmp_path, monkeypatch):
    monkeypatch.setenv("GOLFQ_DATA_DIR", str(tmp_path / "data"))
    folder = code_folder(tmp_path / "rec", requirements=None, script=READS_DATA, files={"make_data.py": MAKE_DATA})
    counter = tmp_path / "counter.txt"
    make = {"command": "python make_data.py", "inputs": {"VOCAB": "8192", "COUNTER": str(counter)},
            "paths": {"DATA_PATH": "shards", "TOKENIZER_PATH": "tok.model", "BYTES_PATH": "tok.model"}}
    prepared = [prepare({"code": str(folder), "pool": "cpu", "seed": seed, "data": {"make": make}})
                for seed in range(4)]
    broker.put_script(prepared[0].script)
    broker.submit([p.spec for p in prepared])
    leases = [broker.claim("cpu", f"w{i}", lease_seconds=60) for i in range(4)]
    results: list = []
    threads = [threading.Thread(target=lambda lease=lease: results.append(
        run_lease(broker, lease, work_root=tmp_path / "runs", heartbeat_seconds=0.2))) for lease in leases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(r.val_bpb for r in results) == [1.0, 1.001, 1.002, 1.003], [r.error for r in results]
    assert counter.read_text() == "run\n"
    made = list((tmp_path / "data" / "made").iterdir())
    assert len([p for p in made if p.is_dir()]) == 1
    # Another input is another build.
    other = prepare({"code": str(folder), "pool": "cpu", "data": {"make": {**make, "inputs": {**make["inputs"],
                                                                                             "VOCAB": "1024"}}}})
    assert other.spec.id not in {p.spec.id for p in prepared}


def test_a_failing_data_command_fails_the_job_as_user(broker, tmp_path, monkeypatch):
    monkeypatch.setenv("GOLFQ_DATA_DIR", str(tmp_path / "data"))
    folder = code_folder(tmp_path / "rec", requirements=None, script=READS_DATA)
    item = prepare({"code": str(folder), "pool": "cpu", "data": {"make": {"command": "echo no tokenizer here >&2; "
                                                                                      "exit 4"}}})
    broker.put_script(item.script)
    broker.submit([item.spec])
    result = run_lease(broker, broker.claim("cpu", "w", lease_seconds=60), work_root=tmp_path / "runs")
    assert result.failure is FailureKind.USER and result.error == "data command exited with code 4: no tokenizer here"
    assert broker.get(item.spec.id).state is JobState.FAILED
    assert "no tokenizer here" in Path(result.log_path).read_text()


def test_a_worker_stopped_while_a_data_command_runs_releases_the_job_at_once(broker, tmp_path, monkeypatch):
    """A stop (a fleet shutting down) does not wait for a build that may take hours: the attempt is given back."""
    monkeypatch.setenv("GOLFQ_DATA_DIR", str(tmp_path / "data"))
    folder = code_folder(tmp_path / "rec", requirements=None, script=READS_DATA)
    item = prepare({"code": str(folder), "pool": "cpu", "data": {"make": {"command": "sleep 30"}}})
    broker.put_script(item.script)
    broker.submit([item.spec])
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    started = time.monotonic()
    result = run_lease(broker, broker.claim("cpu", "w", lease_seconds=60), work_root=tmp_path / "runs",
                       heartbeat_seconds=0.2, stop=stop)
    assert time.monotonic() - started < 10
    assert result.status == "released" and result.failure is None
    assert broker.get(item.spec.id).state is JobState.QUEUED


# -- RQ workers on a real redis-server ---------------------------------------------------------------


@pytest.mark.redis_server
@pytest.mark.skipif(not Path(redis_server.REDIS_SERVER).exists(), reason="redis-server is not installed")
def test_rq_workers_build_the_environment_once_and_run_both_jobs_in_it(tmp_path, wheels):
    from golfq.core.backends.redis.broker import RedisBroker
    from tests.test_redis_workers import Workers, wait_for

    server = redis_server.RedisServer(tmp_path / "redis").start()
    try:
        broker = RedisBroker(server.url)
        folders = [prepare({"code": str(code_folder(tmp_path / "rec")), "pool": "cpu", "seed": seed})
                   for seed in (1, 2)]
        broker.put_script(folders[0].script)
        jobs = broker.submit([p.spec for p in folders])
        workers = Workers(server.url, tmp_path / "runs", concurrency=2)  # both jobs need the new env at once
        try:
            wait_for(lambda: all(broker.get(j.id).state.terminal for j in jobs), 120, "both jobs")
        finally:
            workers.stop()
        finals = [broker.get(j.id) for j in jobs]
        assert [f.state for f in finals] == [JobState.SUCCEEDED] * 2, [f.error for f in finals]
        logs = [Path(f.result.log_path).read_text() for f in finals]
        assert all(f"package 1.0.0 {tmp_path / 'envs'}" in text for text in logs)
        assert sorted("built" if ": built" in text else "reused" for text in logs) == ["built", "reused"]
        broker.close()
    finally:
        server.stop()
    _worker_lacks_the_package()


# -- the other ways in, and torchrun -----------------------------------------------------------------

TORCHRUN = f"""\
import os
import {PACKAGE}
import torch
if os.environ["RANK"] == "0":
    print("world", os.environ["WORLD_SIZE"], "torch", torch.__version__)
    print(f"final_int8_zlib_roundtrip_exact val_loss:2.0 val_bpb:1.5")
"""


def test_torchrun_runs_a_folder_in_its_environment_with_the_workers_torch(broker, tmp_path, wheels):  # noqa: F811
    import torch

    item = prepare({"code": str(code_folder(tmp_path / "rec", script=TORCHRUN)), "pool": "cpu"})
    broker.put_script(item.script)
    broker.submit([item.spec])
    result = run_lease(broker, broker.claim("cpu", "w", lease_seconds=60), work_root=tmp_path / "runs", gpus="0,1")
    assert result.succeeded, result.error + result.log_tail
    log = Path(result.log_path).read_text()
    assert "torch.distributed.run --standalone --nproc-per-node=2" in log and f"{tmp_path / 'envs'}" in log
    assert f"world 2 torch {torch.__version__}" in log  # the worker's torch, seen from the virtualenv


def test_a_sweep_and_the_client_take_a_folder(tmp_path, wheels):
    from golfq.producer.client import Client
    from golfq.producer.grid import Sweep, expand

    folder = code_folder(tmp_path / "sweeps" / "rec")
    sweep = Sweep.from_document({"code": "rec", "base": {"pool": "cpu"}, "grid": {"LR": [1, 2]}},
                                tmp_path / "sweeps")
    prepared = expand(sweep)
    assert len({p.spec.id for p in prepared}) == 2 and all(p.spec.is_code_folder for p in prepared)
    with Client(f"sqlite:///{tmp_path / 'q.db'}") as client:
        job = client.submit({"pool": "cpu"}, code=folder)
        assert job.spec.trainer == prepared[0].spec.trainer
        assert client.broker.get_script(job.spec.trainer) == prepared[0].script
        with pytest.raises(CodeFolderError, match="no such folder"):
            client.submit({"pool": "cpu"}, code=tmp_path / "absent")


def test_mcp_submits_a_folder_named_relative_to_its_server(tmp_path):
    import asyncio

    from golfq.cli.mcp import build_server
    from golfq.producer.client import Client

    code_folder(tmp_path / "rec", requirements=None)
    with Client(f"sqlite:///{tmp_path / 'q.db'}") as client:
        server = build_server(client, tmp_path)
        result = asyncio.run(server.call_tool("submit", {"spec": {"code": "rec", "pool": "cpu"}}))
        (job,) = client.list()
        assert job.spec.is_code_folder and job.id in str(result)
        bad = code_folder(tmp_path / "bad", requirements="torch==\n")
        with pytest.raises(Exception, match="requirements.txt line 1: 'torch==' does not parse"):
            asyncio.run(server.call_tool("submit", {"spec": {"code": str(bad), "pool": "cpu"}}))
        assert len(client.list()) == 1


def test_an_export_carries_a_folder_to_another_queue(tmp_path):
    from golfq.core.backends import open_broker
    from golfq.ops.export import import_export, write_export

    item = prepare({"code": str(code_folder(tmp_path / "rec")), "pool": "cpu"})
    source, target = (open_broker(f"sqlite:///{tmp_path / name}.db") for name in ("a", "b"))
    source.put_script(item.script)
    source.submit([item.spec])
    write_export(source, tmp_path / "out.jsonl")
    assert import_export(target, tmp_path / "out.jsonl").queued == [item.spec.id]
    assert target.get_script(item.spec.trainer) == item.script
    source.close()
    target.close()
