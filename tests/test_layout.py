"""The layering the design card draws, checked on the source itself, and what an install claims.

Every `import` and `from ... import` in a module counts, function-level ones too: a lazy
import is still a dependency.
"""

from __future__ import annotations

import ast
import os
import re
import site
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import setuptools

from tests.golfq_helpers import REPO_ROOT

PARTS = ("core", "producer", "workers", "ops", "cli")
TRAINER = "golfq.workers.golf"


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    parts = parts[:-1] if parts[-1] == "__init__" else parts
    return ".".join(("golfq", *parts))


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name == "golfq" or name.startswith("golfq.")}


GRAPH = {_module_name(path): _imports(path) for part in PARTS for path in (REPO_ROOT / part).rglob("*.py")}


def _within(name: str, roots: tuple[str, ...]) -> bool:
    return any(name == root or name.startswith(root + ".") for root in roots)


def _offenders(importers: str, forbidden: tuple[str, ...], allowed: tuple[str, ...] = (),
               besides: tuple[str, ...] = ()) -> list[str]:
    """`module imports target` for each importer under `importers` (but not under `besides`)
    importing something under `forbidden` that is not under `allowed`."""
    return sorted(f"{module} imports {target}" for module, targets in GRAPH.items()
                  if _within(module, (importers,)) and not _within(module, besides) for target in targets
                  if _within(target, forbidden) and not _within(target, allowed))


def test_the_graph_covers_every_module():
    assert len(GRAPH) > 60 and "golfq.core.broker" in GRAPH and "golfq.workers.golf.train" in GRAPH


def test_core_imports_nothing_of_the_execution_side_the_cli_or_ops():
    assert _offenders("golfq.core", ("golfq.workers", "golfq.cli", "golfq.ops", "golfq.producer")) == []


def test_the_trainer_imports_nothing_of_the_queue():
    assert _offenders(TRAINER, ("golfq",), allowed=(TRAINER,)) == []


def test_the_execution_side_imports_no_training_code_and_no_cli():
    assert _offenders("golfq.workers", (TRAINER, "golfq.cli", "golfq.ops", "golfq.producer"), besides=(TRAINER,)) == []


def test_the_client_and_ops_import_no_cli_and_no_execution_side():
    assert _offenders("golfq.producer", ("golfq.cli", "golfq.workers", "golfq.ops")) == []
    assert _offenders("golfq.ops", ("golfq.cli", "golfq.workers")) == []


def test_nothing_but_the_cli_imports_the_cli():
    assert _offenders("golfq", ("golfq.cli",), besides=("golfq.cli",)) == []


def test_settings_are_read_in_one_place():
    """Only core/settings.py reads GOLFQ_* variables (`golfq modal deploy` may set some for the app it imports)."""
    reads = re.compile(r"environ(\.get)?\(\s*[\"']GOLFQ_|environ\[[\"']GOLFQ_\w+[\"']\](?!\s*=)|getenv\(|envvar=")
    readers = [str(path.relative_to(REPO_ROOT)) for part in PARTS for path in (REPO_ROOT / part).rglob("*.py")
               if reads.search(path.read_text(encoding="utf-8"))]
    assert readers == []
    assert "GOLFQ_" in (REPO_ROOT / "core" / "settings.py").read_text()


def test_an_install_claims_golfq_alone_and_every_package_folder():
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    found = setuptools.find_packages(where=str(REPO_ROOT), include=config["include"])
    assert {name.split(".")[0] for name in found} == {"golfq"}
    folders = {_module_name(init) for part in PARTS for init in (REPO_ROOT / part).rglob("__init__.py")}
    assert folders <= set(found), folders - set(found)
    for part in PARTS:  # golfq/<part> is the repository's <part>/, so both trees are one
        assert (REPO_ROOT / "golfq" / part).resolve() == (REPO_ROOT / part).resolve()


@pytest.mark.slow
def test_a_regular_install_leaves_a_users_own_core_and_ops_alone(tmp_path):
    """A fresh virtualenv, a non-editable install, run from a project with its own core/ and ops/."""
    # No PYTHONPATH: pip would take a checkout on it (its egg-info) for golfq already installed, and skip it.
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOLFQ_") and k != "PYTHONPATH"}
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=env)
    python = venv / "bin" / "python"
    # golfq's dependencies from the environment running the tests, whether that is a virtualenv or not:
    # `--system-site-packages` would reach the base interpreter's, which a virtualenv's packages are not in.
    target = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                            check=True, capture_output=True, text=True).stdout.strip()
    Path(target, "_tests_dependencies.pth").write_text("".join(f"{p}\n" for p in site.getsitepackages()))
    wheels = tmp_path / "wheels"  # built here, installed there: a regular install, as from an index
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels),
                    str(REPO_ROOT)], check=True, capture_output=True, timeout=300)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", *map(str, wheels.glob("golfq-*.whl"))],
                   check=True, capture_output=True, timeout=300, env=env)
    project = tmp_path / "research"
    for name in ("core", "ops"):
        (project / name).mkdir(parents=True)
        (project / name / "__init__.py").write_text(f"OWNER = 'the user: {name}'\n")
    env["GOLFQ_DATA_DIR"] = str(tmp_path / "data")
    probe = ("import core, ops, golfq, golfq.core.broker, golfq.workers.runner; "
             "print(core.OWNER, ops.OWNER, golfq.__file__, sep='|')")
    done = subprocess.run([str(python), "-c", probe], cwd=project, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    core_owner, ops_owner, where = done.stdout.strip().split("|")
    assert (core_owner, ops_owner) == ("the user: core", "the user: ops")
    assert Path(where).is_relative_to(venv), where  # the installed copy, not the checkout
    demo = subprocess.run([str(venv / "bin" / "golfq"), "demo", "--quick", "--queue", "sqlite:///q.db"], cwd=project,
                          env=env, capture_output=True, text=True, timeout=300)
    assert demo.returncode == 0, demo.stderr[-2000:]
    assert "2 of 2 job(s) succeeded" in demo.stdout
