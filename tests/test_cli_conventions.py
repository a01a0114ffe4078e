"""The conventions other CLIs taught people (issue 19, item 12): -h, no -q clash, completion, tidy help and JSON."""

from __future__ import annotations

import json
import math
import re
import subprocess

import msgspec
import pytest

from golfq.cli.console import tidy_numbers
from golfq.core.spec import ExperimentSpec
from tests.golfq_helpers import broker, cli, golfq_command, submit_and_run, subprocess_env  # noqa: F401 (fixtures)


def _command_paths() -> list[list[str]]:
    """Every verb and group, the optional ones included, as argv prefixes."""
    import importlib

    import typer

    main = importlib.import_module("golfq.cli.main")
    root = main._plain_help(typer.main.get_command(main.app))
    paths: list[list[str]] = []

    def walk(command, path: list[str]) -> None:
        paths.append(path)
        if hasattr(command, "list_commands"):
            ctx = main.click.Context(command)
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                if sub is not None:  # an optional verb whose extra is not installed here
                    walk(sub, [*path, name])

    walk(root, [])
    return paths


COMMANDS = _command_paths()


def test_the_walk_finds_every_kind_of_verb():
    names = {" ".join(p) for p in COMMANDS}
    assert {"", "submit", "ops", "ops cost", "modal status", "data prepare", "completion"} <= names


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "golfq")
def test_dash_h_is_help_on_every_command(cli, path):
    code, out, err = cli(*path, "-h")
    assert code == 0, err
    assert re.search(rf"Usage: golfq {re.escape(' '.join(path))}\s*\[OPTIONS\]", out), out
    assert "-h" in out and "--help" in out
    for paragraph in _description(out):  # typer's rich help used to keep the docstring's line breaks
        breaks = zip(paragraph, paragraph[1:], strict=False)
        assert all(len(line.strip()) + 1 + len(after.split()[0]) > 72 for line, after in breaks), paragraph


def _description(help_text: str) -> list[list[str]]:
    """The help's prose paragraphs (between the usage line and the first box), as their rendered lines."""
    lines = help_text.split("Usage:", 1)[1].split("╭", 1)[0].splitlines()[1:]
    paragraphs: list[list[str]] = [[]]
    for line in lines:
        if line.strip():
            paragraphs[-1].append(line)
        elif paragraphs[-1]:
            paragraphs.append([])
    return [p for p in paragraphs if p]


def test_pareto_and_promote_help_reads_as_paragraphs(cli):
    out = cli("pareto", "-h")[1]
    assert "(which itself is tested against the runner-up)" in " ".join(out.split())
    flowing = [p for p in _description(out) if p[0].strip().startswith("gain and record")]
    assert flowing and len(flowing[0][0].strip()) >= 70, flowing  # not cut after "(which itself is"
    promote = _description(cli("promote", "-h")[1])
    example = "Example: golfq promote --from h100 --to h100x8 --top 3 --seeds 3"
    assert [line.strip() for line in promote[-1]] == [example]


@pytest.mark.parametrize("group", [[], ["ops"], ["modal"], ["skill"], ["data"]])
def test_command_lists_show_summaries_and_leave_examples_to_each_command(cli, group):
    out = cli(*group, "-h")[1]
    listing = out.split("Commands", 1)[1]
    assert "Example" not in listing, listing
    if group == ["ops"]:
        assert "│ stats    Jobs per pool and state, draining flags, GPU-hours and cost." in listing
        assert "Example: golfq ops stats --json" in cli("ops", "stats", "-h")[1]


def test_short_q_no_longer_means_queue(cli, tmp_path):
    code, _, err = cli("status", "-q", f"sqlite:///{tmp_path / 'other.db'}")
    assert code == 2 and "No such option: -q" in err
    assert not (tmp_path / "other.db").exists()
    code, out, err = cli("status", "--queue", f"sqlite:///{tmp_path / 'other.db'}", "--json")
    assert code == 0, err
    assert json.loads(out)["jobs"] == []
    assert all("-q " not in line for line in cli("status", "-h")[1].splitlines() if "--queue" in line)


@pytest.mark.parametrize(("shell", "marker"), [("bash", "complete -o default -F _golfq_completion golfq"),
                                               ("zsh", "#compdef golfq"), ("fish", "complete --command golfq")])
def test_completion_prints_a_script_for_the_named_shell(cli, shell, marker):
    code, out, err = cli("completion", shell)
    assert code == 0, err
    assert marker in out and "_GOLFQ_COMPLETE" in out


def test_completion_refuses_an_unknown_shell(cli):
    code, out, err = cli("completion", "tcsh")
    assert (code, out) == (2, "") and err.startswith("golfq: completion: unknown shell 'tcsh'")


def test_the_root_offers_typers_install_and_show_completion(cli):
    out = cli("-h")[1]
    assert "--install-completion" in out and "--show-completion" in out


@pytest.mark.parametrize(("words", "expected"), [("golfq op", "ops"), ("golfq ops dr", "drain"),
                                                 ("golfq status --qu", "--queue"), ("golfq mod", "modal")])
def test_the_bash_script_protocol_completes_verbs_and_options(tmp_path, words, expected):
    env = subprocess_env(_GOLFQ_COMPLETE="complete_bash", COMP_WORDS=words, COMP_CWORD=str(len(words.split()) - 1))
    done = subprocess.run(golfq_command(), env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [expected]


def test_ops_cost_total_row_lines_up_with_the_header(cli, tmp_path):
    submit_and_run(cli, tmp_path, {"FAKE_BPB": "1.4"})
    for by in ("pool", "day"):
        code, out, err = cli("ops", "cost", "--by", by)
        assert code == 0, err
        lines = out.splitlines()
        assert lines[-1].startswith("total") and len(lines) >= 3, out
        assert len({len(line) for line in lines}) == 1, out  # every column ends where the header's does


def test_json_numbers_are_rounded_where_they_are_shown():
    tidy = tidy_numbers({"gain": -0.06666667000000004, "delta": -0.06666667000000004, "p_value": 0.1 + 0.2,
                         "step_ms": 412.34567891, "started_at": 1767312000.1234567, "at": 1767312000.9876543,
                         "lease_deadline": 1767312060.00049, "lr": 0.0003, "steps": 7, "inf": math.inf,
                         "billing_since": 1767312000.4444, "last_seen": 1767312012.5555, "tokens": 7224688640.0})
    assert tidy == {"gain": -0.06666667, "delta": -0.06666667, "p_value": 0.3, "step_ms": 412.346,
                    "started_at": 1767312000.123, "at": 1767312000.988, "lease_deadline": 1767312060.0,
                    "lr": 0.0003, "steps": 7, "inf": math.inf, "billing_since": 1767312000.444,
                    "last_seen": 1767312012.556, "tokens": 7224688640.0}  # no integer digit of a big number lost


def _decimals(x: float) -> int:
    return len(repr(x).partition(".")[2])


def test_status_json_rounds_times_but_the_stored_record_keeps_every_digit(cli, tmp_path, broker):
    ids, _ = submit_and_run(cli, tmp_path, {"FAKE_BPB": "1.4"})
    shown = json.loads(cli("status", ids[0], "--json")[1])
    stored = broker.get(ids[0])
    assert stored is not None and stored.result is not None
    for key in ("started_at", "finished_at"):
        assert shown["result"][key] == round(getattr(stored.result, key), 3)
        assert _decimals(shown["result"][key]) <= 3
    assert _decimals(shown["submitted_at"]) <= 3 and shown["submitted_at"] == round(stored.submitted_at, 3)
    assert any(_decimals(getattr(stored.result, k)) > 3 for k in ("started_at", "finished_at"))  # not rounded at rest
    assert all(_decimals(v) <= 8 for v in shown["result"].values() if isinstance(v, float))


def test_a_spec_in_json_output_keeps_every_digit_so_replay_gives_the_same_id(cli, tmp_path):
    spec = {"pool": "cpu", "budget": {"train_seconds": 1.23456789012, "timeout_seconds": 600.0001234}}
    code, out, err = cli("submit", "-", "--json", stdin=json.dumps(spec))
    assert code == 0, err
    job_id = json.loads(out)["id"]
    shown = json.loads(cli("status", job_id, "--json")[1])["spec"]["budget"]
    assert (shown["train_seconds"], shown["timeout_seconds"]) == (1.23456789012, 600.0001234)
    submitted = [json.loads(line) for line in cli("events", "--json")[1].splitlines()]
    again = msgspec.convert(submitted[0]["spec"], ExperimentSpec)
    assert submitted[0]["kind"] == "submitted" and again.id == job_id
