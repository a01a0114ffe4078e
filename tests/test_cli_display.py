"""What people see: user text shown literally and safely, tables that fit 80 columns without cutting ids
or scores, and the record column's verdict on infeasible configs."""

from __future__ import annotations

import re

import pytest

from golfq.core.pareto import Observation, fold
from golfq.core.result import FailureKind, Result
from golfq.core.spec import parse_spec
from tests.golfq_helpers import broker, cli  # noqa: F401 (fixtures)

NASTY = ["oops [/]", "[/red] closing", "clear \x1b[2J\x1b[H here", "nul\x00byte", "bidi \u202egnp.exe", "[bold]x"]
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f\u202e]")  # what must never reach a terminal raw (\t and \n may)


def _fill(broker, names=NASTY, sizes=(9_000_000,), seeds=(1,)) -> list[str]:
    """One finished job per (name, size, seed); the last name's job failed with markup and an escape in its error."""
    ids = []
    for n, name in enumerate(names):
        for size in sizes:
            for seed in seeds:
                spec = parse_spec({"pool": "cpu", "env": {"NUM_LAYERS": str(n + 2), "MLP_MULT": str(size % 7 + 1)},
                                   "seed": seed, "name": name})
                broker.submit([spec])
                lease = broker.claim("cpu", "w [/]")
                if name == names[-1]:
                    broker.fail(lease, "Traceback [/red] boom \x1b[31mred\x1b[0m", FailureKind.USER)
                else:
                    bpb = 1.2 - n * 0.01 + seed * 1e-4
                    broker.complete(lease, Result(spec_id=lease.job_id, attempt=lease.attempt, status="succeeded",
                                                  val_bpb=bpb, val_loss=bpb * 1.7, artifact_bytes=size,
                                                  train_seconds=60.0 + n))
                ids.append(lease.job_id)
    return ids


def test_user_text_is_shown_literally_and_never_raw(cli, broker, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    ids = _fill(broker)
    code, out, err = cli("status")
    assert code == 0, err
    assert "oops [/]" in out and "[/red] closing" in out
    assert "clear \\x1b[2J\\x1b[H here" in out and "nul\\x00byte" in out and "\\u202e" in out
    assert "Traceback [/red] boom \\x1b[31mred\\x1b[0m" in out
    seen = [out]
    for args in (["status", ids[0]], ["status", ids[2]], ["status", ids[-1]], ["events"], ["wait", *ids],
                 ["pareto"], ["ops", "stats"]):
        code, out, err = cli(*args)
        assert code in (0, 1), (args, err)
        assert not RAW.search(out + err), (args, out, err)
        seen.append(out + err)
    assert "[bold]x" in seen[3] and "Traceback [/red] boom" in seen[3] and "worker=w [/]" in seen[4]


def test_a_submitted_name_is_echoed_safely(cli):
    code, out, err = cli("submit", "--pool", "cpu", "--set", "NUM_LAYERS=3", "--name", "x [/] \x1b[2J")
    assert code == 0, err
    assert "x [/] \\x1b[2J" in out and "\x1b" not in out


def test_an_error_quoting_user_text_is_one_safe_line(cli):
    code, out, err = cli("status", "nope\x1b[2J")
    assert code == 2 and "\x1b" not in err and err.count("\n") == 1


@pytest.mark.parametrize("verb", [["status"], ["pareto"], ["pareto", "--ranking"], ["ops", "stats"]])
def test_tables_fit_80_columns_and_never_cut_an_id_or_a_score(cli, broker, monkeypatch, verb):
    monkeypatch.setenv("COLUMNS", "80")
    ids = _fill(broker, names=[f"config number {n} with a long descriptive name" for n in range(4)],
                sizes=(9_000_000, 18_000_000), seeds=(1, 2, 3))
    code, out, err = cli(*verb)
    assert code == 0, err
    lines = out.splitlines()
    long = [line for line in lines if len(line) > 80 and not line.startswith("─")]
    assert long == [], long
    assert [line for line in lines if line != line.rstrip()] == []
    if verb == ["status"]:  # the 20 most recent jobs: every id and score whole
        recent = [broker.get(i) for i in ids[-20:]]
        for job in recent:
            assert job.id in out
            if job.result is not None and job.result.val_bpb is not None:
                assert f"{job.result.val_bpb:.4f}" in out
    if verb[0] == "pareto":
        front = broker.ranking("cpu") if "--ranking" in verb else broker.front("cpu").points
        for point in front:
            assert f"{point.val_bpb:.4f}" in out and point.job_ids[0] in out
            assert point.seeds == 1 or f"{point.job_ids[0]} +{point.seeds - 1}" in out


def test_wide_shows_every_column_and_every_id_whole(cli, broker, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    _fill(broker, names=["a name longer than the room left for it at eighty columns", "b", "c"], seeds=(1, 2))
    code, out, _ = cli("pareto", "--ranking", "--wide")
    assert code == 0
    assert all(h in out for h in ("± std", "confirmed", "gain", "train"))
    for point in broker.ranking("cpu"):
        assert ",".join(point.job_ids) in out
    code, out, _ = cli("status", "--wide")
    header = next(line for line in out.splitlines() if line.startswith("id "))
    assert "try" in header.split() and "a name longer than the room left for it at eighty columns" in out


def _obs(job: str, config: str, size: float, bpb: float) -> Observation:
    return Observation(job_id=job, config=config, track="cpu", attempt=1, artifact_bytes=size, train_seconds=60.0,
                       val_bpb=bpb, val_loss=bpb * 1.7)


def test_an_infeasible_config_is_never_a_record(cli, broker):
    leader = [_obs(f"a{i}", "lead", 9e6, 1.20 + i * 1e-4) for i in range(3)]
    big = [_obs(f"b{i}", "big", 18e6, 1.00 + i * 1e-4) for i in range(3)]  # far better, over 16 MB
    small = [_obs(f"c{i}", "small", 9e6, 1.10 + i * 1e-4) for i in range(3)]
    points = {p.config: p for p in fold([*leader, *big, *small], "cpu").points}
    assert points["big"].p_value is not None and points["big"].p_value < 0.01
    assert points["big"].significant is False
    assert points["small"].significant is True  # the same test on a feasible config still passes
    from golfq.cli.pareto import record_cell

    assert record_cell(points["big"]) == "no (infeasible)" and record_cell(points["small"]).startswith("yes")
