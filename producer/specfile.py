"""Spec documents as people and agents write them: TOML or JSON, `--set` overrides, a script path.

On top of ExperimentSpec's own fields a document may carry
  - UPPER_CASE keys at the top level: hyperparameters, moved into `env`;
  - numbers and booleans as env values: turned into the strings the trainer reads;
  - `script = "train_gpt.py"`: a path (relative to the document) whose content is
    stored in the queue and becomes the spec's `trainer`;
  - `code = "records/my_run"`: a folder (relative to the document), packed and stored the same
    way (golfq.producer.codefolder); `entry` names its script, train_gpt.py by default;
  - `stop = "median"`: a stopping rule by name alone, its settings left to their defaults.
Every problem is an InputError whose message is one line naming the file and field.
"""

from __future__ import annotations

import copy
import json
import math
import re
import sys
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TextIO

from golfq.core.errors import GolfqError
from golfq.core.hyperparameters import check_builtin_env
from golfq.core.spec import (
    DEFAULT_ENTRY,
    ExperimentSpec,
    SpecError,
    check_pool,
    parse_spec,
    script_ref,
)
from golfq.producer.codefolder import PackedCode, pack_folder

_ENV_KEY = re.compile(r"^[A-Z][A-Z0-9_]*$")
# Dotted paths whose values stay strings even when they look like JSON (`--set name=123`).
STRING_FIELDS = {"name", "pool", "trainer", "parent", "created_by", "data.dataset", "data.tokenizer", "code", "entry",
                 "data.make.command"}


class InputError(GolfqError, ValueError):
    """Bad input from a file, stdin or an option; str() is one line saying what and where."""


def env_value(value: Any) -> Any:
    """The string a trainer reads for a scalar hyperparameter; other values pass through (and fail later)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    return value


def kind_of(value: Any) -> str:
    """A value's kind as the spec formats name it (TOML and JSON): string, number, array, table, ..."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, Mapping):
        return "table"
    return "null" if value is None else type(value).__name__


def _decode_text(text: str, where: str, suffix: str) -> list[dict]:
    """JSON (object, array or lines) or TOML, chosen by suffix, else by trying JSON first."""
    if suffix == ".toml":
        return [_toml(text, where)]
    stripped = text.strip()
    if not stripped:
        raise InputError(f"{where}: empty input, expected a spec as TOML or JSON")
    try:
        return _as_documents(json.loads(stripped), where)
    except json.JSONDecodeError as error:
        # A TOML document never parses as JSON, so only text that starts like JSON is reported as JSON.
        if suffix != ".json" and stripped[0] not in '[{"':
            return [_toml(text, where)]
        lines = [ln for ln in stripped.splitlines() if ln.strip()]
        if len(lines) > 1 and all(ln.lstrip().startswith("{") for ln in lines):
            return [_json_line(ln, where, i) for i, ln in enumerate(lines, 1)]
        raise InputError(f"{where}: invalid JSON: {error.msg} (line {error.lineno}, column {error.colno})") from None


def _json_line(line: str, where: str, number: int) -> dict:
    try:
        return _as_documents(json.loads(line), f"{where} line {number}")[0]
    except json.JSONDecodeError as error:
        raise InputError(f"{where} line {number}: invalid JSON: {error.msg} (column {error.colno})") from None


def _toml(text: str, where: str) -> dict:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise InputError(f"{where}: invalid TOML: {error}") from None


def _as_documents(value: Any, where: str) -> list[dict]:
    items = value if isinstance(value, list) else [value]
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            at = f"{where} item {i}" if isinstance(value, list) else where
            raise InputError(f"{at}: expected a spec object, got {kind_of(item)}")
    if not items:
        raise InputError(f"{where}: empty list, expected at least one spec")
    return items


def read_documents(source: str, stdin: TextIO | None = None) -> tuple[list[dict], Path]:
    """The spec documents in a file (or '-' for stdin) and the folder relative paths start from."""
    if source == "-":
        stream = stdin or sys.stdin
        return _decode_text(stream.read(), "stdin", ""), Path.cwd()
    path = Path(source)
    if path.is_dir():
        raise InputError(f"{source}: is a directory, expected a spec file (.toml or .json)")
    if not path.is_file():
        raise InputError(f"{source}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{source}: cannot read: {error}") from None
    return _decode_text(text, source, path.suffix.lower()), path.resolve().parent


def set_path(doc: dict, path: str, value: Any) -> None:
    """doc['budget']['train_seconds'] = value for path 'budget.train_seconds'."""
    parts = path.split(".")
    node = doc
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise InputError(f"{path}: {part} is not a table")
        node = child
    node[parts[-1]] = value


def apply_override(doc: dict, key: str, value: Any, *, from_text: bool = False) -> None:
    """UPPER_CASE keys set env; dotted lowercase keys set spec fields (JSON-decoded when from_text)."""
    if _ENV_KEY.match(key):
        doc.setdefault("env", {})[key] = env_value(value)
        return
    if not re.match(r"^[a-z][a-z_]*(\.[a-z][a-z_]*)*$", key):
        raise InputError(f"{key}: not an UPPER_CASE hyperparameter or a spec field such as budget.train_seconds")
    if from_text and key not in STRING_FIELDS:
        try:
            value = json.loads(value)
        except ValueError:
            if _is_float(value):  # inf, nan: JSON has no word for them
                value = float(value)
            # else a bare word stays a string
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(f"{key}: {value} is not a finite number")
    if key == "tags" and isinstance(value, str):
        value = [t for t in value.split(",") if t]
    set_path(doc, key, value)


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def parse_assignment(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise InputError(f"--set {text!r}: expected KEY=VALUE")
    return key.strip(), value


def normalize(doc: Mapping[str, Any]) -> dict:
    """A copy with top-level UPPER_CASE keys moved into env and scalar env values made strings."""
    out: dict[str, Any] = {}
    env: Any = dict(doc.get("env") or {}) if isinstance(doc.get("env", {}), Mapping) else doc.get("env")
    for key, value in doc.items():
        if key == "env":
            continue
        if key == "stop" and isinstance(value, str):
            out[key] = {"rule": value}
        elif _ENV_KEY.match(key):
            env[key] = value
        else:
            out[key] = copy.deepcopy(value)
    if isinstance(env, dict):
        out["env"] = {k: env_value(v) for k, v in env.items()}
    elif env is not None:
        out["env"] = env
    return out


def read_script(path: str | Path, base: Path | None = None) -> bytes:
    full = Path(path) if base is None or Path(path).is_absolute() else base / path
    if full.is_dir():
        raise InputError(f"script {path}: is a directory, expected a Python file")
    if not full.is_file():
        raise InputError(f"script {path}: no such file" + (f" (looked in {full.parent})" if base else ""))
    try:
        content = full.read_bytes()
    except OSError as error:
        raise InputError(f"script {path}: cannot read: {error}") from None
    check_script(content, f"script {path}")
    return content


def check_script(content: bytes, where: str = "script") -> None:
    """Refuse what Python cannot run as source: a binary file would only fail on a worker, much later."""
    if b"\x00" in content:
        raise InputError(f"{where}: not a text file (contains NUL bytes)")
    try:
        content.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InputError(f"{where}: not UTF-8 text (byte {error.start})") from None


class Prepared:
    """A validated spec and the script (or packed code folder) it references, stored just before submitting."""

    __slots__ = ("script", "spec")

    def __init__(self, spec: ExperimentSpec, script: bytes | None) -> None:
        self.spec, self.script = spec, script


def prepare(doc: Mapping[str, Any], *, base: Path | None = None, script: bytes | None = None,
            code: PackedCode | None = None, where: str = "spec") -> Prepared:
    """Validate one document; a `script` or `code` key (a path) or argument sets the trainer."""
    fields = normalize(doc)
    path, folder = fields.pop("script", None), fields.pop("code", None)
    for key, value in (("script", path), ("code", folder)):
        if value is not None and not isinstance(value, str):
            raise InputError(f"{where}: {key}: expected a path, got {kind_of(value)}")
    if path is not None:
        script = read_script(path, base)
    if folder is not None:
        code = pack_folder(folder, base)
    if code is not None and script is not None:
        raise InputError(f"{where}: code and script: give one (a script is a one-file code folder)")
    try:
        _check_env_values(fields.get("env"))
        if script is not None:
            check_script(script)
            fields["trainer"] = script_ref(script)
        if code is not None:
            fields["trainer"] = code.trainer
            entry = fields.get("entry", DEFAULT_ENTRY)
            if isinstance(entry, str) and entry not in code.files:
                raise InputError(f"entry: {entry} is not a file of the code folder")
            script = code.data
        return Prepared(check_builtin_env(check_pool(parse_spec(fields))), script)
    except (SpecError, InputError) as error:
        raise InputError(f"{where}: {error}") from None


def _check_env_values(env: Any) -> None:
    """After normalize() every scalar is a string: name the key of anything else, and say what it is."""
    if not isinstance(env, Mapping):
        return  # parse_spec names a non-table env
    for key, value in env.items():
        if not isinstance(value, str):
            raise SpecError(f"env.{key}: expected a string or number, got {kind_of(value)}")


def prepare_all(docs: Iterable[Mapping[str, Any]], **kwargs) -> list[Prepared]:
    docs = list(docs)
    where = kwargs.pop("where", "spec")
    return [prepare(d, where=f"{where} #{i + 1}" if len(docs) > 1 else where, **kwargs) for i, d in enumerate(docs)]
