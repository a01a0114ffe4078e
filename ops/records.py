"""`golfq record import DIR`: a record folder of openai/parameter-golf as a spec file to edit and submit.

A record folder (`records/track_10min_16mb/<date>_<name>/`) says how it was run in its
README: a shell block whose line sets environment variables and launches the entry script
(`NAME=value ... torchrun --standalone --nproc_per_node=8 train_gpt.py`). Its requirements
are its `requirements.txt` (with what pip cannot install in its comments: FlashAttention 3
from a wheel index, `apt-get install lrzip`), else the README's `pip install` lines; its
data are the DATA_PATH and TOKENIZER_PATH of that line, else the tokenizer it ships, else
its VOCAB_SIZE, in the challenge's naming. The spec file names the folder as its code
(`code = "DIR"`, relative to the file), so the folder's helpers, tokenizer and
requirements travel with it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from golfq.core.environment import REQUIREMENTS
from golfq.core.pools import known_pools
from golfq.core.spec import CODE_PREFIX, DEFAULT_ENTRY, RESERVED_ENV, SpecError, check_pool, parse_spec
from golfq.ops import OpsError

README = "README.md"
SUBMISSION = "submission.json"
ENTRY_POINT = DEFAULT_ENTRY
MAX_TEXT_BYTES = 1 << 20  # a record's README or requirements.txt is a few kB

_FENCE = re.compile(r"^\s*(```|~~~)")
_ASSIGN = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.DOTALL)
_FOR = re.compile(r"^\s*for\s+([A-Za-z_]\w*)\s+in\s+([^;]+);\s*do\b")
_VAR = re.compile(r"\$\{?([A-Za-z_]\w*)\}?")
_SHELL_STOP = {">", ">>", "2>&1", "|", "&&", "||", ";", "&", "2>", "1>"}
_PIP = re.compile(r"\bpip3?\s+install\s+(.+)$")
_APT = re.compile(r"\bapt(?:-get)?\s+install\s+(.+)$")
# `apt-get install -y lrzip` as prose quotes it: the package names up to the closing backtick or parenthesis
_APT_PACKAGES = re.compile(r"\bapt(?:-get)?\s+install\s+(?:-\S+\s+)*"
                           r"((?:[a-z0-9][a-z0-9.+-]*)(?:[ \t]+[a-z0-9][a-z0-9.+-]*)*)")
_REQUIREMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9_.,\s-]+\])?\s*"
                          r"([<>=!~]=?[^;#\s]+(,\s*[<>=!~]=?[^;#\s]+)*)?\s*(;.*)?$")
_TOKENIZER_FILE = re.compile(r"\btokenizers/([A-Za-z0-9_.-]+)\.model\b")
_TOKENIZER = re.compile(r"^fineweb_(\d+)_bpe(.*)$")
_DROPPED = {"RUN_ID": "golfq names each run itself"}


class RecordError(OpsError):
    """A record folder golfq cannot read as a run: one line naming the folder and what is missing."""


@dataclass(frozen=True)
class Launch:
    """The README's launch line: its environment, the entry script and how many processes run it."""

    env: dict[str, str]
    entry: str  # the script as the line names it (`records/.../train_gpt.py` in some READMEs)
    nproc: int
    line: str  # the command as the README writes it, on one line
    loops: dict[str, list[str]] = field(default_factory=dict)  # `for SEED in 42 0 1234; do` around it


@dataclass(frozen=True)
class ImportedRecord:
    """What `golfq record import` read from a record folder, and the spec document it makes."""

    folder: Path
    spec: dict[str, Any]  # the spec document, `code` included
    requirements: list[str]  # pip requirement lines
    outside_pip: list[str]  # install lines pip cannot run from requirements.txt (FA3 wheels, apt packages)
    system_packages: list[str]  # apt packages the run needs (lrzip)
    launch: Launch
    notes: list[str]  # what the import could not carry over as it was


def _read_text(path: Path, what: str) -> str:
    try:
        if path.stat().st_size > MAX_TEXT_BYTES:
            raise RecordError(f"record import: {path}: over {MAX_TEXT_BYTES:,} bytes, not a record's {what}")
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise RecordError(f"record import: {path}: not UTF-8 text (byte {error.start})") from None
    except IsADirectoryError:
        raise RecordError(f"record import: {path}: is a directory, expected the record's {what}") from None
    except OSError as error:
        raise RecordError(f"record import: {path}: cannot read ({error.strerror or error})") from None


def _code_blocks(readme: str) -> Iterable[list[str]]:
    block: list[str] | None = None
    for line in readme.splitlines():
        if _FENCE.match(line):
            if block is None:
                block = []
            else:
                yield block
                block = None
        elif block is not None:
            block.append(line)


def _logical_lines(block: list[str]) -> Iterable[str]:
    """Shell lines with their backslash continuations joined and comment lines dropped."""
    pending = ""
    for raw in block:
        line = raw.rstrip()
        if not pending and line.lstrip().startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        yield (pending + line).strip()
        pending = ""
    if pending.strip():
        yield pending.strip()


def _nproc(args: list[str]) -> int:
    for i, arg in enumerate(args):
        for flag in ("--nproc_per_node", "--nproc-per-node"):
            if arg.startswith(flag + "="):
                value = arg.split("=", 1)[1]
            elif arg == flag and i + 1 < len(args):
                value = args[i + 1]
            else:
                continue
            return int(value) if value.isdigit() else 8  # `gpu` or `auto`: every GPU of the machine
    return 1


def _launch(line: str, loops: dict[str, list[str]]) -> Launch | None:
    """A launch line: assignments, then torchrun or python running a .py script; None for any other line."""
    try:
        words = shlex.split(line, comments=True)
    except ValueError:
        return None
    env: dict[str, str] = {}
    while words and (assign := _ASSIGN.match(words[0])):
        env[assign.group(1)] = assign.group(2)
        words.pop(0)
    if words and words[0] in ("env", "exec"):
        return _launch(shlex.join(words[1:]), loops) if len(words) > 1 else None
    words = words[:next((i for i, w in enumerate(words) if w in _SHELL_STOP), len(words))]
    if not words:
        return None
    program = os.path.basename(words[0])
    if program == "torchrun" or (program.startswith("python") and "torch.distributed.run" in words[1:3]):
        nproc = _nproc(words)
    elif program.startswith("python"):
        nproc = 1
    else:
        return None
    scripts = [w for w in words[1:] if w.endswith(".py") and not w.startswith("-")]
    if not scripts:
        return None
    return Launch(env=env, entry=scripts[0].removeprefix("./"), nproc=nproc, line=" ".join(line.split()), loops=loops)


def find_launch(readme: str, entry: str = ENTRY_POINT) -> Launch | None:
    """The README's first line that launches the entry script (else the first under torchrun), with its loops.

    Data preparation lines (`python3 prepare_caseops_data.py`) come before it in most READMEs."""
    launches = []
    for block in _code_blocks(readme):
        loops: dict[str, list[str]] = {}
        for line in _logical_lines(block):
            if loop := _FOR.match(line):
                loops[loop.group(1)] = loop.group(2).split()
                line = line[loop.end():].strip()
            if line and (launch := _launch(line, dict(loops))):
                launches.append(launch)
    named = [launch for launch in launches if launch.entry == entry or os.path.basename(launch.entry) == entry]
    distributed = [launch for launch in launches if "torchrun" in launch.line or "torch.distributed" in launch.line]
    chosen = named or distributed
    return chosen[0] if chosen else None


def parse_requirements(text: str, where: str) -> tuple[list[str], list[str]]:
    """(requirement lines, install lines in its comments); a line pip would not read is a RecordError."""
    requirements, outside = [], []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line.startswith("#"):
            comment = line.lstrip("#").strip()
            if (_PIP.search(comment) and "-r " not in comment) or _APT.search(comment):
                outside.append(comment)
            continue
        line = line.split(" #", 1)[0].strip()
        if not line:
            continue
        if not _REQUIREMENT.match(line) and not line.startswith(("-", "git+", "http://", "https://")):
            raise RecordError(f"record import: {where}:{number}: {line!r} is not a requirement pip reads")
        requirements.append(line)
    return requirements, outside


def _readme_installs(readme: str) -> tuple[list[str], list[str]]:
    """(`pip install` packages, install lines pip cannot take from requirements.txt) in the README."""
    packages: list[str] = []
    outside: list[str] = []
    for line in readme.splitlines():
        if pip := _PIP.search(line):
            try:
                words = [w for w in shlex.split(pip.group(1).split("`")[0], comments=True)
                         if w not in ("-U", "--upgrade")]
            except ValueError:
                continue
            if not words or "requirements.txt" in words:
                continue
            if all(_REQUIREMENT.match(w) for w in words):
                packages += [w for w in words if w not in packages]
            else:
                outside.append("pip install " + " ".join(words))
        if apt := _APT_PACKAGES.search(line):
            outside.append("apt-get install -y " + " ".join(apt.group(1).split()))
    return packages, outside


def _system_packages(lines: Iterable[str]) -> list[str]:
    names: list[str] = []
    for line in lines:
        if found := _APT.search(line):
            names += [w for w in found.group(1).strip("`").split() if not w.startswith("-") and w not in names]
    return names


def _data_names(env: Mapping[str, str], folder: Path, readme: str) -> tuple[dict[str, str], list[str]]:
    """spec.data from DATA_PATH / TOKENIZER_PATH, else the tokenizer in the folder or named in the README,
    else VOCAB_SIZE; the dataset named after the tokenizer as the challenge names its exports."""
    data: dict[str, str] = {}
    if path := env.get("DATA_PATH"):
        data["dataset"] = os.path.basename(path.rstrip("/"))
    if path := env.get("TOKENIZER_PATH"):
        data["tokenizer"] = os.path.basename(path).removesuffix(".model")
    if "tokenizer" not in data:
        shipped = sorted(p.stem for pattern in ("tokenizers/*.model", "*.model") for p in folder.glob(pattern))
        named_in_readme = _TOKENIZER_FILE.findall(readme)
        if shipped:
            data["tokenizer"] = shipped[0]
        elif named_in_readme:
            data["tokenizer"] = named_in_readme[0]
        elif (vocab := env.get("VOCAB_SIZE", "")).isdigit():
            data["tokenizer"] = f"fineweb_{vocab}_bpe"
    if "dataset" not in data and (named := _TOKENIZER.match(data.get("tokenizer", ""))):
        data["dataset"] = f"fineweb10B_sp{named.group(1)}{named.group(2)}"
    notes = [] if data else ["no DATA_PATH, TOKENIZER_PATH, tokenizer or VOCAB_SIZE: the default data (sp1024)"]
    return data, notes


def _pool_for(nproc: int) -> str:
    gpu_pools = sorted((p.gpus, name) for name, p in known_pools().items() if p.gpus)
    for gpus, name in gpu_pools:
        if gpus == nproc:
            return name
    return "h100x8" if nproc > 1 else "h100"


def _resolve(value: str, loops: Mapping[str, list[str]]) -> str | None:
    """A value with its loop variables filled in (their first value); None while another $VAR is left."""
    filled = _VAR.sub(lambda m: loops[m.group(1)][0] if loops.get(m.group(1)) else m.group(0), value)
    return None if "$" in filled else filled


def _entry(launch: Launch, folder: Path) -> str:
    """The entry script inside the folder: the path the line names, else its file name (a path from the repository's
    root in some READMEs)."""
    written = Path(launch.entry)
    inside = [launch.entry] if not written.is_absolute() and ".." not in written.parts else []
    return next((name for name in [*inside, written.name] if (folder / name).is_file()), written.name)


def _ran_by_golfq(folder: Path) -> dict[str, Any]:
    """submission.json's `golfq` block where `golfq submission` wrote the folder (the spec as it ran), else {}."""
    try:
        document = json.loads(_read_text(folder / SUBMISSION, SUBMISSION)) if (folder / SUBMISSION).is_file() else {}
    except (RecordError, json.JSONDecodeError):
        return {}
    block = document.get("golfq") if isinstance(document, dict) else None
    return block if isinstance(block, dict) else {}


def _golfq_fields(spec: dict[str, Any], ran: Mapping[str, Any], nproc: int) -> list[str]:
    """What a launch line cannot say, from the spec golfq ran: the pool by name (when it is known here and runs as
    many processes), the hard kill and a data command."""
    if isinstance(make := ran.get("data_make"), dict):
        spec.setdefault("data", {})["make"] = make
    pool = known_pools().get(str(ran.get("pool")))
    if pool is not None and max(pool.gpus, 1) == nproc:
        spec["pool"] = ran["pool"]
    elif "pool" in ran:
        return [f"golfq ran it on pool {ran['pool']}, not known here or not {nproc} process(es): pool {spec['pool']}"]
    if isinstance(timeout := ran.get("timeout_seconds"), (int, float)):
        spec.setdefault("budget", {})["timeout_seconds"] = timeout
    return []


def _spec_fields(launch: Launch, folder: Path, readme: str,
                 ran_env: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    spec: dict[str, Any] = {"name": folder.name[:200], "pool": _pool_for(launch.nproc)}
    env: dict[str, str] = {}
    notes: list[str] = []
    for key, raw in launch.env.items():
        value = raw if ran_env.get(key) == raw else _resolve(raw, launch.loops)  # golfq's `$`, quoted, is no variable
        if value is None:
            notes.append(f"{key}={raw}: a shell variable, left out")
        elif key == "SEED":
            if value.isdigit():
                spec["seed"] = int(value)
        elif key == "MAX_WALLCLOCK_SECONDS":
            try:
                seconds = float(value)
            except ValueError:
                seconds = 0.0
            if seconds > 0:
                spec["budget"] = {"train_seconds": seconds}
            else:
                notes.append(f"MAX_WALLCLOCK_SECONDS={value}: no wall-clock cap; golfq's budget (600 s) applies")
        elif (key in _DROPPED and ran_env.get(key) != value) or key in RESERVED_ENV:  # golfq's own RUN_ID stays
            if key in _DROPPED:
                notes.append(f"{key}: {_DROPPED[key]}, left out")
            elif key not in ("DATA_PATH", "TOKENIZER_PATH"):  # these two become spec.data
                notes.append(f"{key}: golfq sets it for each process, left out")
        elif re.match(r"^[A-Z][A-Z0-9_]*$", key):
            env[key] = value
            if value.startswith(("./", "../", "/")):
                notes.append(f"{key}={value}: a path, read from the run's working directory (the code folder)")
        else:
            notes.append(f"{key}: not an UPPER_CASE name, left out")
    data, data_notes = _data_names({**launch.env, **env}, folder, readme)
    if seeds := launch.loops.get("SEED"):
        notes.append(f"the README loops over seeds {' '.join(seeds)}; this file runs the first "
                     "(queue the others with `golfq submit FILE --seed N`)")
    if (entry := _entry(launch, folder)) != ENTRY_POINT:
        spec["entry"] = entry
        notes.append(f"the entry script is {entry}, not {ENTRY_POINT}")
    if data:
        spec["data"] = data
    spec["env"] = env
    return spec, notes + data_notes


def import_record(folder: str | os.PathLike[str], spec_file: Path) -> ImportedRecord:
    """Read a record folder into a spec document whose `code` is the folder, relative to spec_file's folder."""
    folder = Path(folder)
    if not folder.exists():
        raise RecordError(f"record import: {folder}: no such folder")
    if not folder.is_dir():
        raise RecordError(f"record import: {folder}: not a folder (give the record's folder, not one of its files)")
    readme_path = folder / README
    if not readme_path.exists():
        raise RecordError(f"record import: {folder}: no {README} (a record folder says how to run it there)")
    readme = _read_text(readme_path, README)
    ran = _ran_by_golfq(folder)
    launch = find_launch(readme, str(ran.get("entry", ENTRY_POINT)))
    if launch is None:
        raise RecordError(f"record import: {readme_path}: no launch command (a code block with "
                          f"`NAME=value ... torchrun ... {ENTRY_POINT}` or `python {ENTRY_POINT}`)")
    requirements_path = folder / REQUIREMENTS
    if requirements_path.exists():
        requirements, outside = parse_requirements(_read_text(requirements_path, REQUIREMENTS), str(requirements_path))
    else:
        requirements, outside = _readme_installs(readme)
    known = set(_system_packages(outside))
    outside += [line for line in _readme_installs(readme)[1]
                if line not in outside and not (line.startswith("apt") and set(_system_packages([line])) <= known)]
    ran_env = ran.get("env")
    spec, notes = _spec_fields(launch, folder, readme, ran_env if isinstance(ran_env, dict) else {})
    notes += _golfq_fields(spec, ran, launch.nproc)
    try:
        check_pool(parse_spec({**spec, "trainer": CODE_PREFIX + "sha256:" + "0" * 64}))  # the folder, unpacked
    except SpecError as error:
        raise RecordError(f"record import: {readme_path}: {error}") from None
    base = spec_file.resolve().parent
    code = Path(os.path.relpath(folder.resolve(), base))
    document = {**spec, "code": code.as_posix()}
    return ImportedRecord(folder=folder, spec=document, requirements=requirements, outside_pip=outside,
                          system_packages=_system_packages(outside), launch=launch, notes=notes)
