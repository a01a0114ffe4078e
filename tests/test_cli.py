"""Every `golfq` verb: its success path, and bad input -> exit 2, one line on stderr, nothing queued."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from golfq.core.backends import open_broker
from golfq.core.job import JobState
from tests.golfq_helpers import FINAL_LINES, broker, cli, submit_and_run, write_script  # noqa: F401 (fixtures)


def json_lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines()]


def ran_jobs(cli, tmp_path, *envs: dict) -> list[str]:
    """Submit FINAL_LINES specs with these env values (the default seed) and run them with a burst worker."""
    return submit_and_run(cli, tmp_path, *envs, seeds=())[0]


def test_submit_from_toml_json_and_stdin(cli, tmp_path, broker):
    spec = tmp_path / "spec.toml"
    spec.write_text('pool = "cpu"\nname = "toml spec"\nseed = 5\n[env]\nNUM_LAYERS = 4\n')
    code, out, err = cli("submit", str(spec), "--set", "MATRIX_LR=0.03", "--set", "budget.train_seconds=30",
                         "--tag", "a", "--priority", "3")
    assert code == 0, err
    job = broker.list()[0]
    assert out.split()[0] == job.id and "queued" in out
    assert job.spec.env == {"NUM_LAYERS": "4", "MATRIX_LR": "0.03"}
    assert (job.spec.budget.train_seconds, job.spec.tags, job.spec.priority) == (30.0, ("a",), 3)

    code, out, _ = cli("submit", "-", "--seed", "1", "--seed", "2", "--json",
                       stdin='{"pool": "cpu", "MODEL_DIM": 256}')
    assert code == 0
    docs = json_lines(out)
    assert [d["seed"] for d in docs] == [1, 2] and all(d["new"] for d in docs)
    code, out, _ = cli("submit", "-", "--json", stdin='{"pool": "cpu", "MODEL_DIM": 256, "seed": 1}')
    assert json_lines(out)[0]["new"] is False  # the same spec again: the existing job
    assert len(broker.list()) == 3


def test_sweep_dry_run_then_for_real(cli, tmp_path, broker):
    grid = tmp_path / "lr.toml"
    write_script(tmp_path, FINAL_LINES)
    grid.write_text('seeds = [1, 2]\nscript = "train_gpt.py"\n[base]\npool = "cpu"\n'
                    '[grid]\nMATRIX_LR = [0.02, 0.04]\n[[points]]\nNUM_LAYERS = 11\n')
    code, out, err = cli("sweep", str(grid), "--dry-run", "--json")
    assert code == 0 and len(json_lines(out)) == 6 and broker.list() == []
    budgets = tmp_path / "budgets.toml"
    budgets.write_text('seeds = [1]\n[base]\npool = "cpu"\n[grid]\n"budget.train_seconds" = [30, 60]\n')
    code, out, err = cli("sweep", str(budgets), "--dry-run")  # budget-only differences are visible to people too
    assert code == 0 and [line.split()[3] for line in out.splitlines()] == ["train=30s", "train=60s"], out
    code, out, err = cli("sweep", str(grid))
    assert code == 0, err
    jobs = broker.list()
    assert len(jobs) == 6 and all(j.spec.trainer.startswith("sha256:") for j in jobs)
    assert jobs[0].spec.name == "lr MATRIX_LR=0.02"


def test_status_logs_wait_events_pareto(cli, tmp_path, broker):
    good, bad = ran_jobs(cli, tmp_path, {"FAKE_BPB": "1.4"}, {"FAKE_BPB": "nan"})
    code, out, _ = cli("status")
    assert code == 0 and good in out and "succeeded" in out
    code, out, _ = cli("status", good, "--json")
    assert json.loads(out)["state"] == "succeeded" and json.loads(out)["result"]["val_bpb"] == 1.4
    code, out, _ = cli("logs", good)
    assert code == 0 and "final_int8_zlib_roundtrip_exact" in out
    code, out, _ = cli("wait", good)
    assert code == 0 and "succeeded" in out
    code, out, err = cli("wait", good, bad, "--json")
    assert code == 1  # one failed
    assert {d["status"] for d in json_lines(out)} == {"succeeded", "failed"}
    assert {(d["id"], d["state"]) for d in json_lines(out)} == {(good, "succeeded"), (bad, "failed")}
    code, out, _ = cli("events", "--json")
    kinds = [d["kind"] for d in json_lines(out)]
    assert kinds.count("submitted") == 2 and "succeeded" in kinds
    code, out, _ = cli("events", "--after", "3")
    assert code == 0 and all(int(line.split()[0]) > 3 for line in out.splitlines())
    code, out, _ = cli("pareto", "--json")
    [front] = json.loads(out)["tracks"]
    assert front["track"] == "cpu" and [p["job_ids"] for p in front["points"]] == [[good]]
    code, out, _ = cli("pareto", "--track", "cpu", "--feasible")
    assert code == 0 and good in out


def test_pareto_plot(cli, tmp_path):
    pytest.importorskip("matplotlib")
    ran_jobs(cli, tmp_path, {"FAKE_BPB": "1.4"}, {"FAKE_BPB": "1.3", "FAKE_BYTES": "3000000"})
    code, _, err = cli("pareto", "--plot", str(tmp_path / "front.png"))
    assert code == 0, err
    assert (tmp_path / "front.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for bad in ("front.txt", "front.png/inside.png"):  # an unknown format, a file where a folder should be
        code, out, err = cli("pareto", "--plot", str(tmp_path / bad), "--json")
        assert (code, out) == (2, "") and err.count("\n") == 1 and f"pareto --plot {tmp_path / bad}" in err, err


def test_wait_timeout_exits_1(cli, broker):
    code, out, _ = cli("submit", "--pool", "cpu", "--baseline", "--json")
    code, out, err = cli("wait", json.loads(out)["id"], "--timeout", "0.2")
    assert code == 1 and "still unfinished" in err and len(err.strip().splitlines()) == 1


def test_ops_verbs(cli, tmp_path, broker):
    [failed] = ran_jobs(cli, tmp_path, {"FAKE_BPB": "nan"})
    code, out, _ = cli("ops", "stats", "--json")
    doc = json.loads(out)
    assert doc["stats"]["pools"]["cpu"]["failed"] == 1 and doc["usage"]["cpu"]["attempts"] == 1
    assert cli("ops", "stats")[0] == 0
    assert cli("ops", "drain", "cpu")[0] == 0 and broker.stats().pools["cpu"].draining
    assert cli("ops", "resume", "cpu", "--json")[1].strip() == '{"pool":"cpu","draining":false,"queued":0,"leased":0}'
    code, out, _ = cli("ops", "requeue", "--failed", "--json")
    assert json.loads(out)["requeued"] == [failed] and broker.get(failed).state is JobState.QUEUED
    code, out, _ = cli("ops", "cancel", failed)
    assert code == 0 and "cancelled" in out and broker.get(failed).state is JobState.CANCELLED
    code, out, _ = cli("ops", "export", str(tmp_path / "all.jsonl"), "--json")
    assert json.loads(out)["jobs"] == 1
    code, out, _ = cli("ops", "replay", "--after", "0", "--dry-run", "--json")
    assert json.loads(out)["unchanged"] == [failed]  # cancelled jobs are left alone
    code, out, _ = cli("ops", "purge", "--before", "2000-01-01")
    assert code == 0 and "purged 0" in out
    other = tmp_path / "other.db"
    code, out, err = cli("ops", "import", str(tmp_path / "all.jsonl"), "--all", "--queue", f"sqlite:///{other}")
    assert code == 0, err
    assert [j.id for j in open_broker(f"sqlite:///{other}").list()] == [failed]


def _bad_inputs(tmp: Path) -> dict[str, tuple[list[str], str]]:
    (tmp / "bad.toml").write_text('pool = "cpu"\nname = \n')
    (tmp / "grid.toml").write_text('[base]\npool = "cpu"\n[grid]\nNUM_LAYERS = 4\n')
    (tmp / "notes.jsonl").write_text("hello\n")
    job = "aaaaaaaaaaaaaaaa"
    return {
        "malformed toml": (["submit", "bad.toml"], "bad.toml: invalid TOML"),
        "unknown pool": (["submit", "--pool", "nope"], "unknown pool 'nope'"),
        "missing script": (["submit", "--script", "nowhere.py"], "script nowhere.py: no such file"),
        "missing spec file": (["submit", "nowhere.toml"], "nowhere.toml: no such file"),
        "bad --set": (["submit", "--set", "oops"], "expected KEY=VALUE"),
        "bad field": (["submit", "--set", "budget.train_seconds=-5"], "budget.train_seconds"),
        "--set typo in a field": (["submit", "--set", "budget.train_secs=5"], "spec: budget.train_secs: unknown field"),
        "--set lowercase hyperparameter": (["submit", "--set", "num_layers=5"], "num_layers: unknown field (hyper"),
        "bad stdin": (["submit", "-"], "stdin: invalid JSON"),
        "unknown scheme": (["submit", "--baseline", "--queue", "nowhere://x"], "unknown scheme"),
        "bare submit": (["submit", "--pool", "cpu"], "submit: say what to run"),
        "unopenable queue": (["ops", "drain", "cpu", "--queue", "sqlite:////proc/golfq/q.db"], "cannot create"),
        "grid not a list": (["sweep", "grid.toml"], "grid.NUM_LAYERS: expected a non-empty list"),
        "status unknown job": (["status", job], "not found"),
        "logs unknown job": (["logs", job], "not found"),
        "wait nothing named": (["wait"], "give job IDs or --all"),
        "wait unknown job": (["wait", job], "not found"),
        "pareto unknown track": (["pareto", "--track", "9xTPU"], "unknown"),
        "events negative": (["events", "--after", "-1"], "--after must be >= 0"),
        "worker unknown pool": (["worker", "--pool", "nope", "--burst"], "unknown pool 'nope'"),
        "worker bad gpus": (["worker", "--pool", "h100", "--gpus", "0,x", "--burst"], "--gpus"),
        "drain unknown pool": (["ops", "drain", "nope"], "pool 'nope': unknown"),
        "requeue nothing": (["ops", "requeue"], "give job IDs, --dead, --failed or --stopped"),
        "requeue unknown": (["ops", "requeue", job], "not found"),
        "cancel unknown": (["ops", "cancel", job], "not found"),
        "replay both": (["ops", "replay", "notes.jsonl", "--after", "3"], "one of them"),
        "replay not events": (["ops", "replay", "notes.jsonl"], "notes.jsonl line 1"),
        "purge bad date": (["ops", "purge", "--before", "yesterdayish"], "not a date"),
        "import not export": (["ops", "import", "notes.jsonl"], "notes.jsonl line 1"),
        "export unwritable": (["ops", "export", "/proc/golfq.jsonl"], "export /proc/golfq.jsonl"),
        "export under a file": (["ops", "export", "notes.jsonl/all.jsonl"], "export notes.jsonl/all.jsonl"),
        "unknown verb": (["frobnicate"], "No such command"),
        "unknown option": (["submit", "--colour", "red"], "No such option"),
    }


@pytest.mark.parametrize("case", sorted(_bad_inputs(Path("/tmp"))))
def test_bad_input_is_one_line_exit_2_and_queues_nothing(cli, tmp_path, broker, case):
    args, expected = _bad_inputs(tmp_path)[case]
    code, out, err = cli(*args, stdin="{not json" if args == ["submit", "-"] else None)
    assert code == 2, (out, err)
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], err
    assert "Traceback" not in err
    assert broker.list() == []


def test_a_redis_db_the_server_refuses_is_one_line_exit_2(cli):
    from tests.redis_server import shared_url

    url = shared_url()
    if url is None:
        pytest.skip("no redis-server here")
    code, out, err = cli("status", "--json", "--queue", url.rsplit("/", 1)[0] + "/99")  # past `databases 16`
    assert (code, out) == (2, "") and err.count("\n") == 1 and "Redis refused it" in err, err


def test_submission_writes_a_record_folder_from_seeds_of_one_config(cli, tmp_path, broker):
    script = write_script(tmp_path, FINAL_LINES)
    code, out, err = cli("submit", "--pool", "cpu", "--script", str(script), "--set", "FAKE_BPB=1.25", "--seed", "2",
                         "--seed", "1", "--name", "fake run", "--json")
    assert code == 0, err
    ids = [doc["id"] for doc in json_lines(out)]
    assert cli("worker", "--pool", "cpu", "--burst", "--heartbeat-seconds", "0.5")[0] == 0
    code, out, err = cli("submission", *ids, "--out", str(tmp_path / "record"), "--author", "me", "--json")
    assert code == 0, err
    written = json.loads(out)
    record = tmp_path / "record"
    assert sorted(p.name for p in record.iterdir()) == ["README.md", "requirements.txt", "submission.json",
                                                        "train_gpt.py", "train_seed1.log", "train_seed2.log"]
    assert "github_id" in err and "author" not in err.replace("records name their author", "")
    assert (record / "train_gpt.py").read_bytes() == script.read_bytes()  # a user's script goes verbatim
    doc = json.loads((record / "submission.json").read_text())
    assert doc == written["submission"]
    assert (doc["val_bpb"], doc["val_bpb_std"], doc["seeds"], doc["author"]) == (1.25, 0.0, [1, 2], "me")
    assert doc["bytes_total"] == 1234567 and doc["bytes_code"] == 1000  # as the script counted its code
    assert doc["seed_results"]["1"]["score_source"] == "final_int8_zlib_roundtrip_exact"
    assert doc["track"] == "non_record_16mb"  # not 8 GPUs
    jobs = {broker.get(i).spec.seed: broker.get(i) for i in ids}
    assert (record / "train_seed2.log").read_text() == Path(jobs[2].result.log_path).read_text()
    readme = (record / "README.md").read_text()
    assert "# fake run" in readme and "FAKE_BPB=1.25" in readme and "SEED=1" in readme


def test_submission_refuses_mixed_configs_unfinished_jobs_and_a_used_folder(cli, tmp_path, broker):
    first, other = ran_jobs(cli, tmp_path, {"FAKE_BPB": "1.3"}, {"FAKE_BPB": "1.4"})
    code, _, err = cli("submission", first, other, "--out", str(tmp_path / "a"))
    assert code == 2 and "different configurations" in err and err.count("\n") == 1
    code, out, _ = cli("submit", "--pool", "cpu", "--set", "NUM_LAYERS=3", "--json")
    queued = json.loads(out)["id"]
    code, _, err = cli("submission", first, queued, "--out", str(tmp_path / "a"))
    assert code == 2 and f"job {queued} is queued" in err
    code, _, err = cli("submission", "nosuchjob", "--out", str(tmp_path / "a"))
    assert code == 2 and "not found" in err
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("x")
    code, _, err = cli("submission", first, "--out", str(tmp_path / "used"))
    assert code == 2 and "not an empty directory" in err
    assert not (tmp_path / "a").exists()
