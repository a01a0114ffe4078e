"""Problems the user fixes exit 2 with one line saying what to do, never 3 (internal error)."""

from __future__ import annotations

import os
import subprocess

import pytest

from golfq.core.backends.sqlite import store
from tests.golfq_helpers import broker, cli, golfq_command, subprocess_env  # noqa: F401 (fixtures)


def one_line(err: str) -> str:
    [line] = err.strip().splitlines()
    assert "internal error" not in line and "Traceback" not in line
    return line


def test_an_unreadable_queue_file_is_the_users_to_fix(cli, broker, monkeypatch):
    cli("submit", "--baseline")  # the file exists and is a queue
    path = broker.url.removeprefix("sqlite:///")
    # Tests run as root, which chmod 000 does not stop: the check fails the way it would for another user.
    real_access = os.access
    monkeypatch.setattr(store.os, "access", lambda p, mode: str(p) != path and real_access(p, mode))
    code, out, err = cli("status")
    assert code == 2 and out == ""
    line = one_line(err)
    assert f"cannot read {path}: Permission denied; check its permissions" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a chmod 000 file; the simulated test above covers it")
def test_a_chmod_000_queue_file_exits_2(cli, broker, tmp_path):
    cli("submit", "--baseline")
    os.chmod(tmp_path / "q.db", 0)
    code, _, err = cli("status")
    assert code == 2 and "Permission denied" in one_line(err)


def test_any_permission_error_from_below_is_exit_2(cli, monkeypatch):
    from golfq.cli import jobs

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "/srv/queue/golfq.db-shm")

    monkeypatch.setattr(jobs, "queue", refuse)
    code, _, err = cli("status")
    assert code == 2 and one_line(err).startswith("golfq: permission denied: /srv/queue/golfq.db-shm")


def test_modal_without_a_token_is_exit_2_saying_what_to_do(tmp_path):
    pytest.importorskip("modal")
    env = {k: v for k, v in subprocess_env(HOME=str(tmp_path), MODAL_CONFIG_PATH=str(tmp_path / "none.toml")).items()
           if not k.startswith("MODAL_TOKEN")}
    done = subprocess.run(golfq_command("status", "--queue", "modal://golfq-no-token"), env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "run `modal token new`" in one_line(done.stderr)


@pytest.mark.parametrize("verb", [["status"], ["submit", "--baseline"], ["ops", "stats"], ["pareto"]])
def test_an_empty_queue_url_is_refused(cli, broker, verb):
    code, out, err = cli(*verb, "--queue", "")
    assert code == 2 and out == "" and "queue URL is empty" in one_line(err)
    assert broker.list() == []


def test_plot_into_a_folder_is_refused_and_a_bare_name_is_reported_as_written(cli, broker, tmp_path):
    pytest.importorskip("matplotlib")
    (tmp_path / "out").mkdir()
    code, out, err = cli("pareto", "--plot", "out")
    assert code == 2 and "is a folder; name a file, such as out/front.png" in one_line(err)
    assert list((tmp_path / "out").iterdir()) == [] and not (tmp_path / "out.png").exists()
    code, out, err = cli("pareto", "--plot", "front")
    assert code == 0, err
    assert "plot written to front.png" in out and (tmp_path / "front.png").is_file()


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "Infinity", "NaN"])
def test_a_non_finite_budget_says_so(cli, broker, value):
    code, _, err = cli("submit", "--baseline", "--set", f"budget.train_seconds={value}")
    assert code == 2 and "budget.train_seconds:" in err and "is not a finite number" in one_line(err)
    code, _, err = cli("submit", "--baseline", "--budget", value)
    assert code == 2 and "is not a finite number" in one_line(err)
    assert broker.list() == []


def test_a_nul_in_an_env_key_is_one_clean_line(cli, broker):
    code, _, err = cli("submit", "-", stdin='{"pool": "cpu", "env": {"A\\u0000B": "1"}}')
    line = one_line(err)
    assert code == 2 and "\x00" not in err and "spec: spec:" not in line
    assert line == "golfq: spec: env.'A\\x00B': keys must be UPPER_SNAKE_CASE"
    assert broker.list() == []

