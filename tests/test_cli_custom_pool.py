"""Issue 9: a job in a pool that GOLFQ_POOLS added stays readable by every verb in a shell without it.

Real `python -m golfq` processes on a private queue: submit and serve with GOLFQ_POOLS set,
then read with the variable gone.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.golfq_helpers import FINAL_LINES, golfq_command, subprocess_env, write_script

POOLS = "a100=1xA100"


def golfq(tmp_path: Path, *args: str, pools: str | None = None,
          stdin: str | None = None) -> subprocess.CompletedProcess:
    env = subprocess_env(GOLFQ_QUEUE=f"sqlite:///{tmp_path / 'q.db'}", GOLFQ_WORK_DIR=str(tmp_path / "runs"),
                         GOLFQ_DATA_DIR=str(tmp_path / "data"), **({"GOLFQ_POOLS": pools} if pools else {}))
    return subprocess.run(golfq_command(*args), cwd=tmp_path, env=env, input=stdin, capture_output=True, text=True,
                          timeout=120)


def test_every_read_verb_works_without_the_pool_setting(tmp_path):
    write_script(tmp_path, FINAL_LINES)
    submitted = golfq(tmp_path, "submit", "--pool", "a100", "--script", "train_gpt.py", "--json", pools=POOLS)
    assert submitted.returncode == 0, submitted.stderr
    job_id = json.loads(submitted.stdout)["id"]
    served = golfq(tmp_path, "worker", "--pool", "a100", "--burst", "--heartbeat-seconds", "0.5", pools=POOLS)
    assert served.returncode == 0 and "1 succeeded" in served.stderr, served.stderr

    reads = [["status"], ["status", job_id], ["status", "--json"], ["events"], ["events", "--json"],
             ["ops", "stats"], ["ops", "stats", "--json"], ["ops", "export", str(tmp_path / "all.jsonl")],
             ["wait", "--all"], ["wait", job_id], ["pareto"], ["pareto", "--json"]]
    for args in reads:
        done = golfq(tmp_path, *args)
        assert done.returncode == 0 and "Traceback" not in done.stderr, (args, done.stderr)
    assert json.loads(golfq(tmp_path, "status", "--json").stdout)["stats"]["pools"]["a100"]["succeeded"] == 1
    [front] = json.loads(golfq(tmp_path, "pareto", "--json").stdout)["tracks"]
    assert front["track"] == "1xA100" and front["points"][0]["job_ids"] == [job_id]


def test_an_unknown_pool_is_refused_in_one_line_naming_it(tmp_path):
    done = golfq(tmp_path, "submit", "--pool", "nope")
    assert (done.returncode, done.stdout) == (2, "")
    assert len(done.stderr.splitlines()) == 1 and "unknown pool 'nope'" in done.stderr, done.stderr
    assert "GOLFQ_POOLS" in done.stderr  # and says how to add one
