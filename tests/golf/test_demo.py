"""`golfq demo` as a real process: the quick sweep trains, prints the front, and a second run reuses it all."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from golfq.cli.demo import FULL, QUICK, _threads_per_job
from golfq.core.spec import config_key
from tests.golfq_helpers import golfq_command, subprocess_env


def demo(tmp_path, data, *args: str) -> subprocess.CompletedProcess:
    env = subprocess_env(GOLFQ_DATA_DIR=str(data.data_path.parent.parent))
    return subprocess.run(golfq_command("demo", *args), cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.slow
def test_quick_demo_trains_prints_the_front_and_a_rerun_reuses_the_jobs(stdlib_data, tmp_path):
    url = f"sqlite:///{tmp_path / 'q.db'}"
    first = demo(tmp_path, stdlib_data, "--quick", "--queue", url)
    assert first.returncode == 0, first.stderr
    out = first.stdout
    assert "data stdlib_sp1024 reused" in out  # the session's prepared data, found through GOLFQ_DATA_DIR
    assert "2 job(s)" in out and "0 already done, 2 to run" in out
    assert "cpu: " in out and "point(s) on the front of 2 config(s), 2 result(s)" in out
    assert "val_bpb" in out and "artifact" in out  # the pareto table's header
    assert out.count(" succeeded  val_bpb=") == 2
    assert (tmp_path / ".golfq" / "demo-front.png").stat().st_size > 0
    assert "plot written to .golfq/demo-front.png" in out

    again = demo(tmp_path, stdlib_data, "--quick", "--queue", url, "--json")
    assert again.returncode == 0, again.stderr
    doc = json.loads(again.stdout)  # only JSON on stdout
    assert "2 already done, 0 to run" in again.stderr
    assert [j["state"] for j in doc["jobs"]] == ["succeeded", "succeeded"]
    assert [j["result"]["attempt"] for j in doc["jobs"]] == [1, 1]  # reused, not trained again
    runs = sorted(set(os.listdir(tmp_path / ".golfq" / "runs")) - {"checkpoints"})  # the jobs' checkpoint folders
    assert runs == sorted(f"{j['id']}-1" for j in doc["jobs"])
    assert os.listdir(tmp_path / ".golfq" / "runs" / "checkpoints") == []  # a job that succeeded leaves none
    assert all(j["id"] in out for j in doc["jobs"])
    front_ids = {i for p in doc["points"] for i in p["job_ids"]}
    assert doc["track"] == "cpu" and front_ids and front_ids <= {j["id"] for j in doc["jobs"]}
    best = min(j["result"]["val_bpb"] for j in doc["jobs"])
    assert min(p["val_bpb"] for p in doc["points"]) == best  # the best score is always on the front


def test_bad_input_is_one_line_and_exit_2(stdlib_data, tmp_path):
    for args in (["--queue", "bogus://nowhere"], ["--concurrency", "0"]):
        done = demo(tmp_path, stdlib_data, "--quick", *args)
        assert done.returncode == 2, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert not (tmp_path / ".golfq" / "runs").exists()


def test_the_full_sweep_has_seed_groups_and_machine_blind_ids():
    specs = FULL.specs("stdlib_sp1024", "stdlib_1024_bpe")
    configs = {config_key(s) for s in specs}
    assert len({s.id for s in specs}) == len(specs) == 6
    assert len(configs) == 3 and all(sum(config_key(s) == c for s in specs) == 2 for c in configs)
    assert all("OMP_NUM_THREADS" not in s.env for s in specs + QUICK.specs("a", "b"))


def test_each_job_gets_its_share_of_the_cores(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    with _threads_per_job(2) as threads:
        assert threads == 2 and os.environ["OMP_NUM_THREADS"] == "2"
    assert "OMP_NUM_THREADS" not in os.environ
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's own setting wins
    with _threads_per_job(2) as threads:
        assert threads == 3
    assert os.environ["OMP_NUM_THREADS"] == "3"
