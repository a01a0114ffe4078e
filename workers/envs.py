"""A code folder's environment on a local or RQ worker: a uv virtualenv per environment hash.

The virtualenv is made with uv from the worker's own interpreter and sees the worker's
site-packages after its own (a .pth file: `--system-site-packages` would name the base
interpreter's, not those of the virtualenv a worker usually runs in), so the worker's torch
and CUDA build are kept, never reinstalled. torch and its build's companions (KEPT_FROM_WORKER)
come from the worker whenever it has them; a pin the worker's version does not meet is
recorded as a note in the Result. Everything else in requirements.txt is installed with
`uv pip install`, from the index or, with GOLFQ_ENV_FIND_LINKS / GOLFQ_ENV_NO_INDEX, from
local wheels. Build steps run in the virtualenv's folder with it activated. Declared system
packages cannot be installed by a worker: one that is missing fails the job (`user`).

Environments live under GOLFQ_ENV_DIR (default envs/ under the work root), one folder per
hash of (declaration, worker interpreter, the worker's kept versions), built once
(golfq.workers.buildonce) and reused by every later job.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import msgspec

from golfq.core.environment import Environment, kept_requirement
from golfq.core.settings import settings
from golfq.workers.buildonce import BuildError, build_once, child_env, run_logged

BUILD_TIMEOUT_SECONDS = 3 * 3600.0  # FlashAttention 3 from source takes most of an hour on a big machine
WORKER_PATHS = "_golfq_worker.pth"


class LocalEnvironment(msgspec.Struct, frozen=True):
    key: str  # the declaration's hash (Environment.key): what the Result records
    path: str  # the virtualenv's folder
    notes: tuple[str, ...] = ()  # what the worker keeps that the declaration asked otherwise
    built: bool = False  # built by this job (False: reused)

    @property
    def bin_dir(self) -> Path:
        return Path(self.path) / "bin"

    @property
    def python(self) -> Path:
        return self.bin_dir / "python"


def uv_binary() -> str:
    """The uv next to this interpreter (the `uv` package's), else the one on PATH."""
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv") or shutil.which("uv", path=str(Path(sys.executable).parent))
        if found is None:
            raise BuildError("environment: uv is not installed on this worker (pip install uv)") from None
        return found


def _worker_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def split_requirements(environment: Environment) -> tuple[list[str], dict[str, str], list[str]]:
    """(lines to install, {kept package: worker's version}, notes on pins the worker does not meet)."""
    install, kept, notes = [], {}, []
    for line, requirement in zip(environment.requirements, environment.parsed(), strict=True):
        version = _worker_version(requirement.name) if kept_requirement(requirement) else None
        if version is None:
            install.append(line)
            continue
        kept[requirement.name.lower()] = version
        if requirement.specifier and not requirement.specifier.contains(version, prereleases=True):
            notes.append(f"{line} asked; this worker keeps its own {requirement.name} {version}")
    return install, kept, notes


def worker_site_paths() -> list[str]:
    """Where the worker's packages live, in its own order: the virtualenv sees them after its own."""
    paths = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *site.getsitepackages()]
    return list(dict.fromkeys(p for p in paths if Path(p).is_dir()))


def local_key(environment: Environment, kept: dict[str, str]) -> str:
    body = json.dumps({"env": environment.key, "python": sys.executable, "version": sys.version, "kept": kept},
                      sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:24]


def missing_system_packages(packages: tuple[str, ...]) -> list[str]:
    """Declared system packages this machine lacks: by dpkg where there is one, else by a program of that name."""
    dpkg = shutil.which("dpkg-query")
    missing = []
    for package in packages:
        if dpkg is not None:
            found = subprocess.run([dpkg, "-W", "-f=${Status}", package], capture_output=True, text=True, check=False)
            if "install ok installed" in found.stdout:
                continue
        if shutil.which(package) is None:
            missing.append(package)
    return missing


def _build(environment: Environment, install: list[str], log_path: Path, target: Path, notes: list[str]) -> str:
    uv = uv_binary()
    env = child_env({"VIRTUAL_ENV": str(target)}, [target / "bin", Path(uv).parent])
    run_logged([uv, "venv", "--quiet", "--python", sys.executable, str(target)], cwd=target.parent, env=env,
               log_path=log_path, timeout=600, what="environment: uv venv")
    purelib = Path(subprocess.run([str(target / "bin" / "python"), "-c", "import sysconfig; "
                                   "print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True,
                                  check=True, env=env).stdout.strip())
    (purelib / WORKER_PATHS).write_text("\n".join(worker_site_paths()) + "\n")
    if install:
        requirements = target / "golfq-requirements.txt"
        requirements.write_text("\n".join([*environment.options, *install]) + "\n")
        command = [uv, "pip", "install", "--python", str(target / "bin" / "python"), "-r", str(requirements)]
        for link in settings().env_find_links:
            command += ["--find-links", link]
        if settings().env_no_index:
            command.append("--no-index")
        run_logged(command, cwd=target, env=env, log_path=log_path, timeout=BUILD_TIMEOUT_SECONDS,
                   what="environment: uv pip install")
    for number, step in enumerate(environment.build, 1):
        run_logged(["sh", "-c", step], cwd=target, env=env, log_path=log_path, timeout=BUILD_TIMEOUT_SECONDS,
                   what=f"environment: build step {number}")
    return json.dumps({"key": environment.key, "notes": notes})


def ensure_environment(environment: Environment, root: Path, log_path: Path) -> LocalEnvironment:
    """The folder's virtualenv under root, built now unless an earlier job built it; BuildError if it cannot be."""
    if missing := missing_system_packages(environment.system):
        raise BuildError(f"environment: system package(s) {', '.join(missing)} not installed on this worker "
                         f"(install them, or run in a pool whose image installs them, such as Modal's)")
    install, kept, notes = split_requirements(environment)
    target = Path(root).absolute() / local_key(environment, kept)
    with open(log_path, "a") as log:
        log.write(f"[golfq] environment {environment.key}: {target}\n")
    built, _ = build_once(target, lambda into: _build(environment, install, log_path, into, notes))
    with open(log_path, "a") as log:
        log.writelines(f"[golfq] environment: {note}\n" for note in notes)
        log.write(f"[golfq] environment {environment.key}: {'built' if built else 'reused'}\n")
    return LocalEnvironment(key=environment.key, path=str(target), notes=tuple(notes), built=built)
