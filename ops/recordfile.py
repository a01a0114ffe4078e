"""What `golfq record import` writes: the spec file (TOML, comments beside the fields) and the folder's golfq.toml."""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

from golfq.core.environment import DECLARATION, KEPT_FROM_WORKER, REQUIREMENTS
from golfq.ops.records import ImportedRecord


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)


def render_toml(record: ImportedRecord) -> str:
    """The spec file: the record's requirements and what did not carry over as comments, then the fields."""
    spec = record.spec
    lines = [f"# golfq spec from the record folder {record.folder.name} (`golfq record import`).",
             "# Edit it, then queue it: golfq submit THIS_FILE",
             f"# README launch line: {record.launch.line}"]
    if record.requirements:
        source = f"its {REQUIREMENTS}" if (record.folder / REQUIREMENTS).exists() else "its README"
        lines += ["#", f"# Requirements ({source}, installed in the code folder's own environment):"]
        lines += [f"#   {line}" for line in record.requirements]
    if record.outside_pip:
        lines += ["#", f"# Installed outside pip (declared in the folder's {DECLARATION} when it has none):"]
        lines += [f"#   {line}" for line in record.outside_pip]
    if record.notes:
        lines += ["#", "# Check:"] + [f"#   {note}" for note in record.notes]
    lines.append("")
    for key in ("name", "pool", "code", "entry", "seed"):
        if key in spec:
            lines.append(f"{key} = {_toml_value(spec[key])}")
    for table in ("data", "budget", "env"):
        if spec.get(table):
            lines += _toml_table(table, spec[table])
    return "\n".join(lines) + "\n"


def _toml_table(name: str, table: dict[str, Any]) -> list[str]:
    """`[name]` with its values, then its tables (`[data.make]`, `[data.make.paths]`) after them."""
    lines = ["", f"[{name}]"] + [f"{k} = {_toml_value(v)}" for k, v in table.items() if not isinstance(v, dict)]
    for key, value in table.items():
        if isinstance(value, dict) and value:
            lines += _toml_table(f"{name}.{key}", value)
    return lines


def _installs_only_kept(line: str) -> bool:
    """A `pip install` of the worker's own torch build (a pool image or the worker provides it, never a step)."""
    words = [w for w in shlex.split(line)[2:] if not w.startswith(("-", "http"))]
    return bool(words) and all(re.split(r"[<>=!~\[ ]", w, maxsplit=1)[0].lower() in KEPT_FROM_WORKER for w in words)


def environment_declaration(record: ImportedRecord) -> str | None:
    """The folder's golfq.toml: the Debian packages and pip installs its requirements.txt cannot carry."""
    build = [f"uv {line}" for line in record.outside_pip  # a line with a <placeholder> stays a comment to edit
             if line.startswith("pip install ") and not _installs_only_kept(line) and "<" not in line]
    if not (record.system_packages or build):
        return None
    lines = ["# Written by `golfq record import`: what this record installs outside requirements.txt.",
             "[environment]"]
    if record.system_packages:
        lines.append(f"system = {json.dumps(record.system_packages)}")
    if build:
        lines.append("build = [" + ", ".join(json.dumps(step) for step in build) + "]")
    return "\n".join(lines) + "\n"
