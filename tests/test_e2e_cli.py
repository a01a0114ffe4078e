"""End to end through real `golfq` processes: submit three specs, a burst worker of two, wait, pareto."""

from __future__ import annotations

import json
import subprocess

from tests.golfq_helpers import FINAL_LINES, golfq_command, subprocess_env, write_script

# (val_bpb, artifact bytes, training seconds): C is worse than A on all three, so the front is {A, B}.
POINTS = {"A": (1.30, 10_000_000, 100), "B": (1.20, 12_000_000, 200), "C": (1.35, 13_000_000, 250)}


def golfq(tmp_path, *args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(golfq_command(*args), cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True,
                          timeout=120, **kwargs)


def test_submit_worker_wait_pareto(tmp_path):
    write_script(tmp_path, FINAL_LINES + "print('GOLFQ_RESULT {\"steps\": 10}')\n")
    ids = {}
    for name, (bpb, size, seconds) in POINTS.items():
        spec = json.dumps({"name": name, "pool": "cpu", "script": "train_gpt.py", "FAKE_BPB": bpb,
                           "FAKE_BYTES": size, "FAKE_TRAIN_S": seconds, "FAKE_SLEEP": 0.3})
        done = golfq(tmp_path, "submit", "-", "--json", input=spec)
        assert done.returncode == 0, done.stderr
        ids[name] = json.loads(done.stdout)["id"]

    worker = subprocess.Popen(golfq_command("worker", "--burst", "--concurrency", "2", "--pool", "cpu"),
                              cwd=tmp_path, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        waited = golfq(tmp_path, "wait", "--all", "--timeout", "90")
        out, err = worker.communicate(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert waited.returncode == 0, waited.stderr
    assert sorted(line.split()[0] for line in waited.stdout.splitlines()) == sorted(ids.values())
    assert worker.returncode == 0, err
    assert "3 succeeded, 0 failed" in err

    pareto = golfq(tmp_path, "pareto", "--json")
    assert pareto.returncode == 0, pareto.stderr
    [front] = json.loads(pareto.stdout)["tracks"]
    got = {(tuple(p["job_ids"]), p["val_bpb"], p["artifact_bytes"], p["train_seconds"]) for p in front["points"]}
    want = {((ids[n],), POINTS[n][0], POINTS[n][1], POINTS[n][2]) for n in ("A", "B")}
    assert got == want
    assert (front["track"], front["groups"], front["results"]) == ("cpu", 3, 3)
