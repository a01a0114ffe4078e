"""Small real training scripts and helpers shared by the runner, fleet, client and CLI tests."""

from __future__ import annotations

import io
import json
import os
import sys
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# Prints the challenge's final lines from env values, so each spec lands on a chosen point.
FINAL_LINES = """\
import os, sys, time
bpb = float(os.environ.get("FAKE_BPB", "1.5"))
size = int(os.environ.get("FAKE_BYTES", "1234567"))
train_ms = int(float(os.environ.get("FAKE_TRAIN_S", "1.5")) * 1000)
time.sleep(float(os.environ.get("FAKE_SLEEP", "0")))
print(f"step:10/100 val_loss:{bpb * 1.7:.4f} val_bpb:{bpb + 0.01:.4f} train_time:{train_ms}ms step_avg:1.00ms")
print(f"stopping_early: wallclock_cap train_time:{train_ms}ms step:10/100")
print(f"Serialized model int8+zlib: {size - 1000} bytes")
print("Code size: 1000 bytes")
print(f"Total submission size int8+zlib: {size} bytes")
print(f"final_int8_zlib_roundtrip val_loss:{bpb * 1.7:.4f} val_bpb:{bpb:.4f} eval_time:5ms")
print(f"final_int8_zlib_roundtrip_exact val_loss:{bpb * 1.7:.8f} val_bpb:{bpb:.8f}")
"""


def write_script(tmp_path: Path, body: str, name: str = "train_gpt.py") -> Path:
    path = tmp_path / name
    path.write_text(body)
    return path


def queue_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'q.db'}"


def wait_for(predicate, timeout: float = 20.0, every: float = 0.02):
    """Poll until predicate() is truthy; fail the test (not hang) after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout} s")


def pid_alive(pid: int) -> bool:
    """True for a running process; a zombie (exited, unreaped by init) counts as dead."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def subprocess_env(**extra: str) -> dict[str, str]:
    """This process's environment without its GOLFQ_* settings, plus extra."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOLFQ_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def golfq_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "golfq", *args]


def submit_and_run(cli: Cli, tmp_path: Path, *envs: dict[str, str],
                   seeds: tuple[int, ...] = (1,)) -> tuple[list[str], str]:
    """Submit FINAL_LINES specs (one per env and seed; no seeds: the spec's default), run them with a burst
    worker; (ids, worker stdout)."""
    script = write_script(tmp_path, FINAL_LINES)
    ids = []
    for env in envs:
        sets = [a for k, v in env.items() for a in ("--set", f"{k}={v}")]
        seed_args = [a for s in seeds for a in ("--seed", str(s))]
        code, out, err = cli("submit", "--pool", "cpu", "--script", str(script), *sets, *seed_args, "--json")
        assert code == 0, err
        ids += [json.loads(line)["id"] for line in out.splitlines()]
    code, out, err = cli("worker", "--pool", "cpu", "--burst", "--heartbeat-seconds", "0.5")
    assert code == 0, err
    return ids, out


class Cli:
    """Run `golfq` in-process: (exit code, stdout, stderr)."""

    def __init__(self, capsys, monkeypatch) -> None:
        self.capsys, self.monkeypatch = capsys, monkeypatch

    def __call__(self, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
        from golfq.cli.main import main

        self.capsys.readouterr()
        if stdin is not None:
            self.monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        code = main(list(args))
        out, err = self.capsys.readouterr()
        return code, out, err


# Fixtures shared by test modules that import them by name (pytest finds imported fixtures).
@pytest.fixture
def cli(capsys, monkeypatch, tmp_path) -> Cli:
    """`golfq` in-process, run from tmp_path against a SQLite queue and a work dir there."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GOLFQ_QUEUE", queue_url(tmp_path))
    monkeypatch.setenv("GOLFQ_WORK_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("GOLFQ_DATA_DIR", str(tmp_path / "data"))  # never this machine's prepared data
    return Cli(capsys, monkeypatch)


@pytest.fixture
def broker(tmp_path):
    """The same SQLite queue, opened directly."""
    from golfq.core.backends import open_broker

    opened = open_broker(queue_url(tmp_path))
    yield opened
    opened.close()
