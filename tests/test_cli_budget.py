"""`golfq ops budget`: set, show, clear; bad input is one line and exit 2; status says why jobs wait."""

from __future__ import annotations

import json

import pytest

from golfq.core.job import JobState
from golfq.core.spec import Budget, ExperimentSpec
from tests.golfq_helpers import broker, cli  # noqa: F401 (fixtures)

HOUR = Budget(train_seconds=600, timeout_seconds=3600)  # $3.95 on one H100


@pytest.mark.parametrize("args, expected", [
    (["ops", "budget", "set", "--", "-5"], "golfq: budget: a cap cannot be negative (-5)"),
    (["ops", "budget", "set", "lots"], "golfq: budget: 'lots' is not a number of dollars"),
    (["ops", "budget", "set", "inf"], "golfq: budget: 'inf' is not a number of dollars"),
    (["ops", "budget", "set", "5", "--pool", "tpu"], "golfq: budget: unknown pool 'tpu'"),
    (["ops", "budget", "set", "5", "--pool", "h100", "--tag", "x"], "golfq: budget: give a pool or a tag"),
    (["ops", "budget", "clear", "--pool", "tpu"], "golfq: budget: unknown pool 'tpu'"),
])
def test_bad_input_is_one_line_and_exit_2(cli, broker, args, expected):
    code, out, err = cli(*args)
    assert (code, out) == (2, "")
    assert len(err.splitlines()) == 1 and err.startswith(expected), err
    assert broker.budget().scopes == []  # nothing was set


def test_set_show_clear_and_status_shows_why_a_pool_waits(cli, broker):
    first, second = broker.submit([ExperimentSpec(pool="h100", seed=i, budget=HOUR) for i in (1, 2)])
    code, out, _ = cli("ops", "budget", "set", "$5", "--pool", "h100")
    assert code == 0 and out.strip() == "budget pool h100: $0.00 spent + $0.00 committed; cap $5.00, $5.00 left"
    assert broker.claim("h100", "w").job_id == first.id
    assert broker.claim("h100", "w") is None
    code, out, _ = cli("status")
    assert code == 0
    assert "budget pool h100: $0.00 spent + $3.95 committed; cap $5.00, $1.05 left" in out
    assert (f"{second.id} (h100) waits: budget pool h100: $0.00 spent + $3.95 committed + $3.95 worst case > $5.00 cap"
            in out)
    doc = json.loads(cli("status", "--json")[1])
    [waiting] = doc["budget"]["waiting"]
    assert (waiting["pool"], waiting["job_id"]) == ("h100", second.id) and "worst case" in waiting["reason"]
    shown = json.loads(cli("ops", "budget", "show", "--json")[1])
    assert {s["scope"]: s["cap"] for s in shown["scopes"]} == {"queue": None, "pool:h100": 5.0}
    assert cli("ops", "budget", "clear", "--pool", "h100")[1].strip() == "budget pool h100: cap cleared"
    assert cli("ops", "budget", "clear", "--pool", "h100")[1].strip() == "budget pool h100: had no cap"
    assert broker.claim("h100", "w").job_id == second.id
    assert broker.get(second.id).state is JobState.LEASED


def test_the_client_sets_and_reads_caps_and_refuses_bad_ones_with_a_golfq_error(broker):
    from golfq import Client
    from golfq.core.errors import GolfqError

    q = Client(broker=broker)
    q.set_budget("12.5", tag="agent-a")
    assert [(s.scope, s.cap) for s in q.budget().scopes] == [("tag:agent-a", 12.5)]
    for bad in (-1, "twelve", float("nan")):
        with pytest.raises(GolfqError):
            q.set_budget(bad)
    q.set_budget(None, tag="agent-a")
    assert q.budget().scopes == []


def test_an_idle_sqlite_claimer_does_not_take_the_write_lock_for_a_capped_job(broker):
    broker.submit([ExperimentSpec(pool="h100", seed=1, budget=HOUR)])
    assert broker._worth_claiming("h100")
    broker.set_budget("pool:h100", 1.0)
    assert not broker._worth_claiming("h100")  # the read-only look says so, no write transaction


def test_a_tag_with_control_characters_is_printed_escaped(cli, broker):
    tag = "\x1b[2Jsweep\n"
    broker.submit([ExperimentSpec(pool="h100", seed=1, tags=(tag,), budget=HOUR)])
    code, out, _ = cli("ops", "budget", "set", "1", "--tag", tag)
    line = "budget tag \\x1b[2Jsweep\\n: $0.00 spent + $0.00 committed; cap $1.00, $1.00 left"
    assert code == 0 and out.strip() == line
    for args in (("ops", "budget", "show"), ("status",), ("ops", "budget", "clear", "--tag", tag)):
        code, out, _ = cli(*args)
        assert code == 0 and "\\x1b[2Jsweep\\n" in out and "\x1b" not in out, (args, out)
