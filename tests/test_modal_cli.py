"""`golfq modal status|debug|deploy` pieces that run without Modal, `golfq skill`, and `golfq ops cost`."""

from __future__ import annotations

import datetime as dt

import pytest
from modal.types import FunctionCurrentStats
from typer.testing import CliRunner

from golfq.cli.modal import pool_status, sandbox_options
from golfq.cli.skill import skill_app
from golfq.core.events import Event, EventKind
from golfq.core.result import Result
from golfq.core.spec import ExperimentSpec
from golfq.ops.cost import summarize
from golfq.producer.skill import install_skill, skill_text
from golfq.workers.modal.config import load_config
from tests.modal_fakes import FakeModal


def test_status_puts_the_queue_beside_each_functions_own_stats():
    broker = FakeModal().broker()
    broker.submit([ExperimentSpec(pool="h100", seed=s) for s in range(3)])
    broker.claim("h100", "w")
    broker.drain("h100x8")
    live = {"run_h100": FunctionCurrentStats(backlog=1, num_total_runners=2, num_running_inputs=1, input_headroom=0)}
    idle = FunctionCurrentStats(backlog=0, num_total_runners=0, num_running_inputs=0, input_headroom=0)
    rows = {r.pool: r for r in pool_status(lambda fn: live.get(fn, idle), broker, load_config())}
    assert (rows["h100"].queued, rows["h100"].leased, rows["h100"].backlog, rows["h100"].containers) == (2, 1, 1, 2)
    assert rows["h100x8"].draining and rows["cpu"].queued == 0 and rows["cpu"].containers == 0


def test_status_shows_calls_waiting_for_a_gpu_billed_hours_and_the_snapshot_age():
    from golfq.cli.modal import snapshot_line
    from golfq.workers.modal.dispatch import Dispatcher
    from tests.contract.conftest import ManualClock
    from tests.test_modal_dispatch import FakeSpawner

    clock = ManualClock()
    broker = FakeModal().broker(clock=clock)
    broker.submit([ExperimentSpec(pool="h100", seed=s) for s in range(2)])
    assert snapshot_line(broker).endswith("no snapshot yet")
    Dispatcher(broker, FakeSpawner(), load_config()).run_once()
    broker.checkpoint()
    clock.advance(600)
    idle = FunctionCurrentStats(backlog=2, num_total_runners=0, num_running_inputs=0, input_headroom=0)
    rows = {r.pool: r for r in pool_status(lambda fn: idle, broker, load_config())}
    assert (rows["h100"].leased, rows["h100"].waiting, rows["h100"].longest_wait) == (2, 2, 600.0)
    assert rows["h100"].billed_gpu_hours == 0.0
    assert "0 behind, written 10 min ago" in snapshot_line(broker)


def test_logs_of_a_modal_job_come_from_the_artifacts_volume():
    from golfq.cli.jobs import remote_log
    from golfq.core.result import Result

    fake = FakeModal()
    broker = fake.broker()
    job = broker.submit([ExperimentSpec(pool="cpu", seed=1)])[0]
    lease = broker.claim("cpu", "modal/cpu")
    fake.blobs.put(f"runs/{job.id}-1/train.log", b"step 1\nfinal_int8_zlib_roundtrip_exact val_bpb:1.5\n")
    assert remote_log(broker, broker.get(job.id)).startswith("step 1")  # still running: the attempt's folder
    broker.complete(lease, Result(spec_id=job.id, attempt=1, status="succeeded",
                                  log_path=f"/artifacts/runs/{job.id}-1/train.log"))
    assert "val_bpb:1.5" in remote_log(broker, broker.get(job.id))
    assert remote_log(object(), broker.get(job.id)) is None  # other backends: the local file, as before


def test_debug_sandbox_gets_the_jobs_gpu_script_and_environment():
    broker = FakeModal().broker()
    ref = broker.put_script(b"print('x')\n")
    job = broker.submit([ExperimentSpec(pool="h100x8", trainer=ref, env={"NUM_LAYERS": "9"}, seed=7)])[0]
    options = sandbox_options(job, "golfq")
    assert options["gpu"] == "H100!:8"  # pinned, as the pool function is
    env = options["env"]
    assert (env["NUM_LAYERS"], env["SEED"], env["PYTHONPATH"]) == ("9", "7", "/root")
    assert env["DATA_PATH"] == "/data/datasets/fineweb10B_sp1024"
    assert env["TOKENIZER_PATH"] == "/data/tokenizers/fineweb_1024_bpe.model"
    assert f"/artifacts/scripts/{ref.removeprefix('sha256:')}.py" in options["setup"]
    assert "--nproc-per-node=8" in options["command"]


def test_skill_install_writes_the_packaged_skill_and_keeps_an_edited_copy(tmp_path):
    target = install_skill(tmp_path / "skills" / "golfq")
    assert target.read_text() == skill_text() and skill_text().startswith("---\nname: golfq\n")
    target.write_text("my notes")
    with pytest.raises(FileExistsError):
        install_skill(tmp_path / "skills" / "golfq")
    assert install_skill(tmp_path / "skills" / "golfq", force=True).read_text() == skill_text()


def test_skill_cli_names_where_it_wrote(tmp_path):
    result = CliRunner().invoke(skill_app, ["install", "--dir", str(tmp_path / "s")])
    assert result.exit_code == 0 and str(tmp_path / "s" / "SKILL.md") in result.output


@pytest.mark.parametrize("topic", ["`cpu`", "`h100`", "`h100x8`", "parent =", "golfq wait", "golfq pareto",
                                   "golfq ops cost", "golfq modal debug"])
def test_skill_covers_specs_pools_waiting_deriving_debugging_and_cost(topic):
    assert topic in skill_text()


def test_every_command_the_skill_names_exists_in_the_cli():
    import re

    import typer

    from golfq.cli.main import app

    root = typer.main.get_command(app)
    named = set(re.findall(r"`golfq ([a-z]+)(?: ([a-z]+))?", skill_text()))
    assert len(named) >= 8
    for verb, sub in named:
        command = root.get_command(None, verb)
        assert command is not None, f"golfq {verb}"
        if sub and hasattr(command, "get_command"):
            assert command.get_command(None, sub) is not None, f"golfq {verb} {sub}"


# -- ops cost -----------------------------------------------------------------------------------

DAY = dt.datetime(2026, 5, 1, 12, tzinfo=dt.UTC).timestamp()


def _events() -> list[Event]:
    a = ExperimentSpec(pool="h100", seed=1, tags=("mlp",))
    b = ExperimentSpec(pool="h100x8", seed=2, tags=("mlp", "final"))
    c = ExperimentSpec(pool="h100", seed=3)

    def result(spec, attempt, seconds, usd=None, when=DAY):
        return Result(spec_id=spec.id, attempt=attempt, status="succeeded", gpu_name="H100", gpu_count=1,
                      gpu_seconds=seconds, cost_usd=usd, finished_at=when)

    out = [Event(seq=0, ts=DAY, kind=EventKind.SUBMITTED, job_id=s.id, pool=s.pool, spec=s) for s in (a, b, c)]
    out += [
        Event(seq=0, ts=DAY, kind=EventKind.SUCCEEDED, job_id=a.id, pool="h100", attempt=1,
              result=result(a, 1, 3600.0, 3.95)),
        Event(seq=0, ts=DAY, kind=EventKind.SUPERSEDED, job_id=b.id, pool="h100x8", attempt=1,
              result=result(b, 1, 8 * 1800.0, 15.8)),
        Event(seq=0, ts=DAY, kind=EventKind.SUPERSEDED, job_id=b.id, pool="h100x8", attempt=1,  # repeated late report
              result=result(b, 1, 8 * 1800.0, 15.8)),
        Event(seq=0, ts=DAY, kind=EventKind.FAILED, job_id=c.id, pool="h100", attempt=1,
              result=result(c, 1, 1800.0, None, DAY + 86400)),  # priced now from the table
    ]
    return out


def test_cost_by_pool_counts_every_attempt_that_ran_once():
    rows = {r.key: r for r in summarize(_events(), "pool")}
    assert (rows["h100"].attempts, rows["h100"].gpu_seconds, rows["h100"].cost_usd) == (2, 5400.0, 5.925)
    assert (rows["h100x8"].attempts, rows["h100x8"].cost_usd) == (1, 15.8)


def test_cost_by_tag_and_day():
    tags = {r.key: r.cost_usd for r in summarize(_events(), "tag")}
    assert tags == {"final": 15.8, "mlp": 19.75, "(untagged)": 1.975}
    days = {r.key: r.attempts for r in summarize(_events(), "day")}
    assert days == {"2026-05-01": 2, "2026-05-02": 1}
    with pytest.raises(ValueError):
        summarize(_events(), "week")
