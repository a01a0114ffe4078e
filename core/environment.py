"""A code folder's environment: what its requirements.txt and golfq.toml declare, and its hash.

    requirements.txt    pip's format: one requirement a line, comments, and index options
                        (--extra-index-url, --find-links, --index-url, -f)
    golfq.toml          [environment]
                        system = ["lrzip"]                      # Debian packages the run calls
                        build = ["uv pip install --no-build-isolation ..."]  # shell steps after the requirements

The same declaration becomes a uv virtualenv on local and RQ workers and an image layered on
the pool's image on Modal (docs/architecture.md, "Environments"). This module only reads and
hashes the declaration; the workers build it.
"""

from __future__ import annotations

import hashlib
import re
import tomllib

import msgspec
from packaging.requirements import InvalidRequirement, Requirement

from golfq.core.errors import GolfqError

REQUIREMENTS = "requirements.txt"
DECLARATION = "golfq.toml"
# What the worker's own build provides and a local environment keeps: installing another torch next to
# the worker's CUDA build would load two. A pin of one of these is honoured where the pool installs it
# (a Modal image) and recorded as a difference where the worker keeps its own.
KEPT_FROM_WORKER = ("torch", "triton", "pytorch-triton", "torchvision", "torchaudio")
_OPTIONS = ("--extra-index-url", "--index-url", "--find-links", "-f", "-i")
_SYSTEM_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]*$")


class EnvironmentDeclarationError(GolfqError, ValueError):
    """A requirements.txt or golfq.toml that cannot be built; str() is one line naming the file and line."""


class Environment(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    requirements: tuple[str, ...] = ()  # requirement lines, comments and blanks dropped
    options: tuple[str, ...] = ()  # index options, as "--extra-index-url URL"
    system: tuple[str, ...] = ()
    build: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.requirements or self.system or self.build)

    @property
    def key(self) -> str:
        """The environment's hash: two folders that declare the same environment share it."""
        return hashlib.sha256(msgspec.json.encode(self, order="sorted")).hexdigest()[:24]

    def parsed(self) -> list[Requirement]:
        return [Requirement(line) for line in self.requirements]


def _requirement_lines(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    lines, options = [], []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue
        if line.startswith("-"):
            flag, _, value = line.replace("=", " ", 1).partition(" ")
            if flag not in _OPTIONS or not value.strip():
                raise EnvironmentDeclarationError(
                    f"{REQUIREMENTS} line {number}: {line!r}: only requirements and "
                    f"{', '.join(_OPTIONS)} options are read")
            options.append(f"{flag} {value.strip()}")
            continue
        try:
            Requirement(line)
        except InvalidRequirement as error:
            reason = " ".join(str(error).split())[:200]
            raise EnvironmentDeclarationError(f"{REQUIREMENTS} line {number}: {line!r} does not parse: {reason}") \
                from None
        lines.append(line)
    return tuple(lines), tuple(options)


def _string_list(table: dict, field: str) -> tuple[str, ...]:
    value = table.get(field, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise EnvironmentDeclarationError(f"{DECLARATION}: environment.{field}: expected a list of strings")
    return tuple(v.strip() for v in value)


def parse_environment(requirements: str | None, declaration: str | None) -> Environment:
    """The environment a folder declares, from the text of its requirements.txt and golfq.toml (None: absent)."""
    lines, options = _requirement_lines(requirements) if requirements else ((), ())
    system: tuple[str, ...] = ()
    build: tuple[str, ...] = ()
    if declaration:
        try:
            doc = tomllib.loads(declaration)
        except tomllib.TOMLDecodeError as error:
            raise EnvironmentDeclarationError(f"{DECLARATION}: invalid TOML: {error}") from None
        table = doc.get("environment", {})
        if not isinstance(table, dict) or set(doc) - {"environment"} or set(table) - {"system", "build"}:
            raise EnvironmentDeclarationError(f"{DECLARATION}: expected only [environment] with system and build")
        system, build = _string_list(table, "system"), _string_list(table, "build")
        for package in system:
            if not _SYSTEM_PACKAGE.match(package):
                raise EnvironmentDeclarationError(
                    f"{DECLARATION}: environment.system: {package!r} is not a package name")
    return Environment(requirements=lines, options=options, system=system, build=build)


def kept_requirement(requirement: Requirement) -> bool:
    """A requirement the worker's own installation answers (torch and its build), not the environment."""
    return requirement.name.lower().replace("_", "-") in KEPT_FROM_WORKER
