"""One error convention for every verb: `golfq: <message>`, one line on stderr, the error's own exit code.

Also the layering it rests on: library code raises GolfqError and never imports the CLI;
settings are read in one place; the trainer's own errors are translated at the CLI boundary.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from golfq.core.errors import GolfqError
from tests.golfq_helpers import REPO_ROOT, cli, golfq_command, subprocess_env  # noqa: F401 (fixture)


def one_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("golfq: ") and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("args, expected", [
    (["submit", "--colour", "red"], "golfq: submit: No such option: --colour"),
    (["frobnicate"], "golfq: No such command 'frobnicate'"),
    (["ops", "cost", "--by", "month"], "golfq: --by 'month': not one of pool, tag, day"),
    (["status", "--limit", "many"], "golfq: status: Invalid value for '--limit'"),
])
def test_usage_and_option_errors_exit_2_with_one_line(cli, args, expected):
    code, out, err = cli(*args)
    assert (code, out) == (2, "")
    assert one_line(err).startswith(expected), err


def test_usage_errors_point_at_the_verbs_help(cli):
    assert one_line(cli("ops", "drain")[2]).endswith("(see golfq ops drain --help)")


def test_a_failed_job_and_a_timeout_exit_1_with_one_line(cli):
    code, out, _ = cli("submit", "--pool", "cpu", "--baseline", "--json")
    job_id = out.split('"id":"')[1].split('"')[0]
    code, _, err = cli("wait", job_id, "--timeout", "0")
    assert code == 1 and one_line(err).startswith("golfq: wait: 1 job(s) still unfinished")
    cli("ops", "cancel", job_id)
    code, _, err = cli("wait", job_id)
    assert code == 1 and one_line(err) == "golfq: wait: 0 succeeded, 1 failed"


def test_an_internal_error_is_one_line_and_exit_3_unless_debugging(cli, monkeypatch):
    from golfq.core.backends.sqlite.broker import SqliteBroker

    def broken(self, *args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(SqliteBroker, "tracks", broken)
    code, _, err = cli("pareto")
    assert code == 3 and one_line(err) == ("golfq: internal error: RuntimeError: disk on fire "
                                           "(GOLFQ_DEBUG=1 shows the traceback)")
    monkeypatch.setenv("GOLFQ_DEBUG", "1")
    with pytest.raises(RuntimeError, match="disk on fire"):
        cli("pareto")


def test_a_bad_setting_is_one_line(cli, monkeypatch):
    monkeypatch.setenv("GOLFQ_POOLS", "a100")
    code, out, err = cli("submit", "--pool", "cpu", "--baseline")
    assert (code, out) == (2, "") and "GOLFQ_POOLS entry 'a100'" in one_line(err)


def test_skill_install_refuses_an_edited_copy_in_one_line(cli, tmp_path):
    assert cli("skill", "install", "--dir", str(tmp_path / "s"))[0] == 0
    (tmp_path / "s" / "SKILL.md").write_text("my notes")
    code, out, err = cli("skill", "install", "--dir", str(tmp_path / "s"))
    assert (code, out) == (2, "") and "exists and differs" in one_line(err)
    assert cli("skill", "install", "--dir", str(tmp_path / "s"), "--force")[0] == 0
    assert (tmp_path / "s" / "SKILL.md").read_text() != "my notes"


@pytest.mark.parametrize("args, message", [
    (["--on", "moon"], "data prepare: --on must be local or modal, got 'moon'"),
    (["--on", "modal", "--source", "./corpus"], "data prepare: --on modal takes --source stdlib or fineweb"),
    (["--on", "modal", "--out", "/tmp/x"], "data prepare: --out and --repo-dir are for --on local"),
    (["--train-shards", "0"], "data prepare: --train-shards must be at least 1, got 0"),
    (["--source", "nowhere/at/all"], "data prepare: unknown source 'nowhere/at/all'"),  # the trainer's PrepareError
])
def test_data_prepare_refuses_bad_input_in_one_line(cli, monkeypatch, args, message):
    import golfq.cli.modal

    called = []
    monkeypatch.setattr(golfq.cli.modal, "prepare_on_modal", lambda *a, **k: called.append(a))
    code, out, err = cli("data", "prepare", *args)
    assert (code, out) == (2, "") and one_line(err).startswith(f"golfq: {message}"), err
    assert called == []


def test_data_prepare_on_modal_reads_the_app_from_settings(cli, monkeypatch):
    import golfq.cli.modal

    calls = []

    def fake_prepare_on_modal(source, vocab, train_shards, *, app, env, variant):  # the real one needs Modal's cloud
        calls.append((source, vocab, train_shards, app, env, variant))
        return "fineweb10B_sp4096 on lab-data"

    monkeypatch.setattr(golfq.cli.modal, "prepare_on_modal", fake_prepare_on_modal)
    code, out, _ = cli("data", "prepare", "--source", "fineweb", "--vocab", "4096", "--train-shards", "10",
                       "--on", "modal", "--app", "lab", "--env", "dev")
    assert (code, out) == (0, "fineweb10B_sp4096 on lab-data\n")
    monkeypatch.setenv("GOLFQ_MODAL_APP", "from-env")
    assert cli("data", "prepare", "--on", "modal")[0] == 0
    assert cli("data", "prepare", "--source", "fineweb", "--variant", "sp8192", "--on", "modal")[0] == 0
    assert calls == [("fineweb", 4096, 10, "lab", "dev", None), ("stdlib", 1024, 80, "from-env", None, None),
                     ("fineweb", 1024, 80, "from-env", None, "sp8192")]


def test_data_prepare_prints_the_paths_it_wrote(cli, tmp_path):
    pytest.importorskip("sentencepiece")
    code, out, err = cli("data", "prepare", "--vocab", "512", "--out", str(tmp_path / "out"))
    assert code == 0, err
    assert f"DATA_PATH={tmp_path / 'out' / 'datasets' / 'stdlib_sp512'}\n" in out
    assert f"TOKENIZER_PATH={tmp_path / 'out' / 'tokenizers' / 'stdlib_512_bpe.model'}\n" in out


def test_modal_failures_are_one_line_setup_problems_exit_2():
    exceptions = pytest.importorskip("modal.exception")
    from golfq.cli.modal import modal_failure
    from golfq.workers.golf.prepare import PrepareError

    cases = [(exceptions.AuthError("Token missing.\nsee docs"), 2, "modal: not logged in to Modal"),
             (exceptions.NotFoundError("App 'lab' not found"), 2, "modal: app 'lab' is not deployed"),
             (PrepareError("vocab must be between 8 and 65536, got 3"), 2, "modal: vocab must be"),
             (RuntimeError("volume commit failed"), 1, "modal: RuntimeError: volume commit failed")]
    for error, code, start in cases:
        translated = modal_failure(error, "lab")
        assert isinstance(translated, GolfqError) and translated.exit_code == code
        assert str(translated).startswith(start) and "\n" not in str(translated)


def test_modal_status_without_credentials_is_one_line(tmp_path):
    pytest.importorskip("modal")
    env = subprocess_env(MODAL_CONFIG_PATH=str(tmp_path / "none.toml"))
    for key in ("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET"):
        env.pop(key, None)
    done = subprocess.run(golfq_command("modal", "status", "--app", "golfq-nothing"), cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert one_line(done.stderr).startswith("golfq: modal: not logged in to Modal"), done.stderr


# -- layering -------------------------------------------------------------------------------------

LIBRARY = ["core", "ops", "producer", "workers"]


def sources(*folders: str) -> list[Path]:
    return [p for folder in folders for p in (REPO_ROOT / folder).rglob("*.py")]


def test_ops_is_a_library_without_typer():
    assert [p.name for p in sources("ops") if re.search(r"^\s*(from|import) typer\b", p.read_text(), re.M)] == []


def test_the_cli_package_imports_main_eagerly():
    code = "import golfq.cli, sys; assert 'golfq.cli.main' in sys.modules and callable(golfq.cli.main)"
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True)
