"""README's five-minute tour, run as written: its script, its commands and the output it shows (ids included),
then its Python client example against the same worker.

Spec ids are a hash of the spec, so a reader who copies the tour gets the ids the README prints; this test
keeps it that way when the spec encoding, the script or the output formats change.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.golfq_helpers import REPO_ROOT, subprocess_env

README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")


def _tour() -> str:
    start = README.index("## A five-minute tour")
    return README[start:README.index("\n## ", start + 1)]


def _fenced(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.MULTILINE | re.DOTALL)


def _session(console: str) -> list[tuple[str, list[str]]]:
    """A console block as (command, the lines shown after it) pairs."""
    steps: list[tuple[str, list[str]]] = []
    for line in console.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        elif line.strip() and steps:
            steps[-1][1].append(line)
    return steps


def _strip_comment(command: str) -> str:
    return command.split("  #", 1)[0].strip()


@pytest.fixture
def reader(tmp_path) -> tuple[Path, dict[str, str]]:
    """A fresh folder and an environment where `golfq` is this checkout's."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "golfq"
    shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m golfq "$@"\n')
    shim.chmod(0o755)
    env = subprocess_env(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", COLUMNS="200")
    env.pop("GOLFQ_QUEUE", None)
    return tmp_path, env


def test_the_tour_prints_what_the_readme_shows(reader):
    folder, env = reader
    tour = _tour()
    script = next(block for block in _fenced(tour, "python") if block.startswith("# train_gpt.py"))
    (folder / "train_gpt.py").write_text(script)
    steps = _session(_fenced(tour, "console")[0])
    assert [_strip_comment(c).split()[:2] for c, _ in steps] == [
        ["export", "GOLFQ_QUEUE=sqlite:///tour.db"], ["for", "n"], ["golfq", "worker"], ["golfq", "wait"],
        ["golfq", "pareto"]], "the tour's steps changed: update this test with them"
    worker = None
    try:
        for command, shown in steps:
            command = _strip_comment(command)
            if command.startswith("export "):
                env.update(dict([command.removeprefix("export ").split("=", 1)]))
            elif command.endswith("&"):
                worker = subprocess.Popen(["bash", "-c", command.rstrip("&")], cwd=folder, env=env, text=True,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
                worker_shown = shown
            else:
                done = subprocess.run(["bash", "-c", command], cwd=folder, env=env, capture_output=True, text=True,
                                      timeout=300)
                assert done.returncode == 0, (command, done.stderr)
                printed = (done.stdout + done.stderr).splitlines()
                if command.startswith("golfq wait"):  # jobs finish in any order
                    assert sorted(printed) == sorted(shown), (command, printed)
                else:
                    assert [line.rstrip() for line in printed] == [line.rstrip() for line in shown], (command, printed)
        client = next(block for block in _fenced(tour, "python") if block.startswith("from golfq import Client"))
        (folder / "tour_client.py").write_text(client)  # with the tour's worker still serving the pool
        done = subprocess.run([sys.executable, "tour_client.py"], cwd=folder, env=env, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        points = [line.split() for line in done.stdout.splitlines()]
        assert points and all(len(p) == 4 and p[3] in ("True", "False") for p in points), done.stdout
        assert {round(float(p[0]), 4) for p in points} == {1.3, 1.2333}, done.stdout  # 12 layers break the cap
    finally:
        if worker is not None:
            os.killpg(worker.pid, signal.SIGTERM)
            worker_out = worker.communicate(timeout=120)[0].splitlines()
    assert worker is not None and worker_out[0] == worker_shown[0]
    assert set(worker_shown[1:worker_shown.index("...")]) <= set(worker_out), worker_out
