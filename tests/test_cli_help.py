"""Help, version and the bare command: what a person sees before running anything (issue 13, item 14)."""

from __future__ import annotations

import re

import pytest

from golfq import __version__
from tests.golfq_helpers import cli  # noqa: F401 (fixture)

VERBS = ["submit", "sweep", "status", "logs", "events", "wait", "pareto", "worker", "demo",
         "ops stats", "ops drain", "ops resume", "ops requeue", "ops cancel", "ops replay", "ops purge", "ops export",
         "ops import", "ops cost", "data prepare", "modal deploy", "modal status", "modal prepare", "modal debug",
         "skill install", "skill show"]


@pytest.mark.parametrize("verb", VERBS)
def test_help_shows_plain_metavars_and_usage(cli, verb):
    code, out, err = cli(*verb.split(), "--help")
    assert code == 0, err
    assert "Usage: golfq" in out
    assert not re.search(r"<(bool|str|int|float|path|list\[\w+\])>", out), out  # no Python types beside options
    flags = [line for line in out.splitlines() if re.search(r"│\s+(--json|--help)\s", line)]
    assert flags and all(re.search(r"--(json|help)\s+(-h\s+)?(Write|Show)", line) for line in flags), flags  # no value
    usage = next(line for line in out.splitlines() if "Usage:" in line)
    assert "{" not in usage and "[[" not in usage and "......" not in usage, usage
    assert not re.search(r"\w \.(\s|$)", out, re.MULTILINE), out  # a stripped default used to leave "Jobs at once ."


def test_usage_brackets_only_optional_arguments(cli):
    assert "Usage: golfq submit [OPTIONS] [FILE|-]" in cli("submit", "--help")[1]
    assert "Usage: golfq sweep [OPTIONS] GRID.toml" in cli("sweep", "--help")[1]
    assert "Usage: golfq wait [OPTIONS] [ID...]" in cli("wait", "--help")[1]


def test_defaults_that_come_from_settings_are_shown(cli):
    out = cli("status", "--help")[1]
    assert "$GOLFQ_QUEUE" in out and "sqlite:///.golfq/golfq.db" in out


def test_version(cli):
    assert cli("--version") == (0, f"golfq {__version__}\n", "")


@pytest.mark.parametrize("group", [[], ["ops"], ["data"], ["modal"]])
def test_a_bare_group_prints_its_help_and_succeeds(cli, group):
    code, out, err = cli(*group)
    assert code == 0 and "Usage: golfq" in out and "Commands" in out
    assert err == ""  # no empty "golfq:  (see golfq --help)" line
