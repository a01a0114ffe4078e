"""A code folder on the worker: unpacked as the attempt's directory, its environment, its made data.

The pack (golfq.producer.codefolder) holds regular files only; golfq.core.codepack reads it and
refuses any member that is not one, or whose name is absolute or climbs out, whatever wrote the blob.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import msgspec

from golfq.core.codepack import read_pack
from golfq.core.environment import DECLARATION, REQUIREMENTS, Environment, parse_environment
from golfq.core.errors import GolfqError
from golfq.core.settings import settings
from golfq.core.spec import ExperimentSpec, MadeData
from golfq.workers.buildonce import BuildError, BuildGuard, build_once, child_env, run_logged
from golfq.workers.envs import ensure_environment

MADE_DIR = "made"
DATA_COMMAND_TIMEOUT_SECONDS = 6 * 3600.0  # CaseOps over FineWeb's 10B tokens is hours on a CPU box


def unpack(blob: bytes, into: Path) -> None:
    """Write the pack's files under `into`; ValueError for a member that is not a plain file inside it."""
    for packed in read_pack(blob):
        path = into.joinpath(*PurePosixPath(packed.name).parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(packed.content)
        path.chmod(0o755 if packed.executable else 0o644)


def pack_environment(blob: bytes) -> Environment:
    """What a pack declares, read from it in memory (where the image for it is chosen, before any unpacking)."""
    texts = {packed.name: packed.content.decode("utf-8") for packed in read_pack(blob)
             if packed.name in (REQUIREMENTS, DECLARATION)}
    return parse_environment(texts.get(REQUIREMENTS), texts.get(DECLARATION))


def folder_environment(folder: Path) -> Environment:
    """What the unpacked folder declares (checked at submit; read again here from the files that run)."""
    texts = {name: (folder / name).read_text(encoding="utf-8") if (folder / name).is_file() else None
             for name in (REQUIREMENTS, DECLARATION)}
    return parse_environment(texts[REQUIREMENTS], texts[DECLARATION])


def ensure_made_data(make: MadeData, code: str, folder: Path, data_root: Path, log_path: Path,
                     bin_dir: Path | None, guard: BuildGuard | None = None) -> dict[str, str]:
    """Run the spec's data command once per (command, inputs, code) under data_root/made/; the paths it maps.
    `guard` decides who builds (default: a file lock, for workers on one machine)."""
    target = Path(data_root).absolute() / MADE_DIR / make.key(code)
    with open(log_path, "a") as log:
        log.write(f"[golfq] data command: {target}\n")

    ran_here = []

    def build(into: Path) -> str:
        ran_here.append(True)
        root = str(Path(data_root).absolute())
        env = child_env({**make.inputs, "GOLFQ_DATA_OUT": str(into), "GOLFQ_DATA_ROOT": root},
                        [bin_dir] if bin_dir is not None else [])
        run_logged(["sh", "-c", make.command], cwd=folder, env=env, log_path=log_path,
                   timeout=DATA_COMMAND_TIMEOUT_SECONDS, what="data command")
        for key, rel in make.paths.items():
            if not (into / rel).exists():
                raise BuildError(f"data command: it made no {rel} (data.make.paths.{key})")
        return make.command

    try:
        built, _ = build_once(target, build, guard)
    except BuildError as error:
        if not ran_here:  # another container's build failed: its last lines go to this job's log too
            with open(log_path, "a") as log:
                log.write(f"[golfq] data command failed in another job's build: {error}\n{error.tail}\n")
        raise
    with open(log_path, "a") as log:
        log.write(f"[golfq] data command: {'made' if built else 'reused'} {target}\n")
    return {key: str(target / rel) for key, rel in make.paths.items()}


class Provisioned(msgspec.Struct, frozen=True):
    """What a code folder's attempt runs with: an interpreter, variables on top of the attempt's, a record."""

    python: str
    env: dict[str, str] = {}
    environment: str | None = None  # the declaration's hash, when the folder declares one
    notes: tuple[str, ...] = ()


def provision(spec: ExperimentSpec, folder: Path, *, env_root: Path, data_root: Path, log_path: Path,
              python: str, data_guard: BuildGuard | None = None) -> Provisioned:
    """The unpacked folder's environment and data, built or reused; BuildError when either cannot be."""
    try:
        environment = folder_environment(folder)
    except (GolfqError, OSError, UnicodeDecodeError) as error:
        raise BuildError(f"environment: {' '.join(str(error).split())}") from None
    if not environment.empty and settings().env_provided == environment.key:
        with open(log_path, "a") as log:  # a Modal image built for it: the interpreter is already the environment
            log.write(f"[golfq] environment {environment.key}: provided by this container's image\n")
        environment = Environment()
        provided = settings().env_provided
    else:
        provided = None
    local = None if environment.empty else ensure_environment(environment, env_root, log_path)
    extra: dict[str, str] = {}
    if local is not None:
        python = str(local.python)
        extra = {"VIRTUAL_ENV": local.path, "PATH": os.pathsep.join([str(local.bin_dir), os.environ.get("PATH", "")])}
    if spec.data.make is not None:
        extra.update(ensure_made_data(spec.data.make, spec.trainer, folder, data_root, log_path,
                                      local.bin_dir if local else None, data_guard))
    return Provisioned(python=python, env=extra, environment=local.key if local else provided,
                       notes=local.notes if local else ())
