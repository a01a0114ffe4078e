"""`golfq submit` names what it runs: a piped spec is read, a bare submit is refused, each queued job says what
it runs. Real pipes, so `golfq` runs as a process."""

from __future__ import annotations

import json
import subprocess

from tests.golfq_helpers import cli, golfq_command, queue_url, subprocess_env  # noqa: F401 (fixtures)


def golfq(tmp_path, *args: str, stdin=None, input_text: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(golfq_command(*args, "--queue", queue_url(tmp_path)), cwd=tmp_path, env=subprocess_env(),
                          input=input_text, stdin=stdin, capture_output=True, text=True, timeout=60)


def test_a_piped_spec_is_read_without_a_dash(tmp_path):
    done = golfq(tmp_path, "submit", "--pool", "cpu", "--json", input_text='{"NUM_LAYERS": 4, "name": "piped"}')
    assert done.returncode == 0, done.stderr
    [doc] = [json.loads(line) for line in done.stdout.splitlines()]
    assert doc["name"] == "piped" and doc["env"] == {"NUM_LAYERS": "4"} and doc["pool"] == "cpu"


def test_a_spec_file_on_stdin_is_read_too(tmp_path):
    (tmp_path / "spec.json").write_text('{"pool": "cpu", "NUM_LAYERS": 5}')
    with open(tmp_path / "spec.json") as handle:
        done = golfq(tmp_path, "submit", "--json", stdin=handle)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["env"] == {"NUM_LAYERS": "5"}


def test_a_bare_submit_is_refused_and_queues_nothing(tmp_path):
    for stdin in (subprocess.DEVNULL, None):
        done = golfq(tmp_path, "submit", "--pool", "cpu", stdin=stdin, input_text="" if stdin is None else None)
        assert done.returncode == 2 and done.stdout == ""
        assert done.stderr.startswith("golfq: submit: say what to run") and "--baseline" in done.stderr
    status = golfq(tmp_path, "status", "--json")
    assert json.loads(status.stdout)["jobs"] == []


def test_an_idle_pipe_is_not_waited_on_and_says_so(tmp_path):
    proc = subprocess.Popen(golfq_command("submit", "--pool", "cpu", "--set", "NUM_LAYERS=3", "--queue",
                                          queue_url(tmp_path)), cwd=tmp_path, env=subprocess_env(),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        proc.wait(timeout=60)  # stdin stays open and idle all along, as an agent's harness may leave it
        out, err = proc.stdout.read(), proc.stderr.read()
    finally:
        proc.stdin.close()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stdin is a pipe with nothing in it yet; not read" in err and "queued" in out


def test_the_baseline_is_queued_only_when_asked_and_each_line_says_what_runs(cli):
    code, out, err = cli("submit", "--pool", "cpu", "--baseline")
    assert code == 0, err
    assert "pool=cpu seed=1337  builtin defaults" in out
    code, out, err = cli("submit", "--pool", "cpu", "--set", "NUM_LAYERS=4", "--set", "budget.train_seconds=60")
    assert code == 0 and "queued" in out and "builtin NUM_LAYERS=4" in out


def test_the_baseline_with_a_script_or_code_folder_is_refused_and_queues_nothing(cli, tmp_path):
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "train_gpt.py").write_text("print(1)\n")
    for option, path in (("--code", tmp_path / "code"), ("--script", tmp_path / "code" / "train_gpt.py")):
        code, out, err = cli("submit", "--pool", "cpu", "--baseline", option, str(path))
        assert (code, out) == (2, "") and len(err.splitlines()) == 1, err
        assert err.startswith(f"golfq: submit: --baseline runs the built-in trainer; drop it or {option}")
    code, out, _ = cli("status", "--json")
    assert json.loads(out)["jobs"] == []
