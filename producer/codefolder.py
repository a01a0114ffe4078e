"""A code folder as one blob: packed deterministically, so the same files give the same job id.

The pack is an uncompressed POSIX tar (no compressor whose output could change between
library versions) of the folder's regular files in sorted order, each with mtime 0, uid and
gid 0, no owner names and mode 0755 or 0644 (executable or not): nothing of where or when it
was packed. Caches (__pycache__, .git, *.pyc) are left out, and so is a record's paperwork
(its top-level README.md, submission.json and *.log: golfq.core.codepack.is_paperwork), which
describes runs and is not code they run. Links to files inside the folder
are packed as the file they name; anything else is refused with one line before a job is
queued: a missing or unreadable folder, a link that leaves it (or names a folder), a device
file, fifo or socket, a pack over MAX_CODE_BYTES, an environment that does not parse.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

from golfq.core.codepack import is_paperwork
from golfq.core.environment import DECLARATION, REQUIREMENTS, Environment, parse_environment
from golfq.core.errors import GolfqError
from golfq.core.spec import CODE_PREFIX, MAX_CODE_BYTES, script_ref

SKIPPED_DIRS = frozenset({"__pycache__", ".git", ".hg", ".ipynb_checkpoints", ".mypy_cache", ".pytest_cache"})
SKIPPED_SUFFIXES = (".pyc", ".pyo")
_HEADER_BYTES = 1024  # a tar header, and a pax header for a long name: a bound kept while walking


class CodeFolderError(GolfqError, ValueError):
    """A code folder that cannot be packed; str() is one line naming the folder and the file."""


class PackedCode:
    """A packed folder: its bytes, its trainer ref, and the environment it declares."""

    __slots__ = ("data", "environment", "files")

    def __init__(self, data: bytes, files: tuple[str, ...], environment: Environment) -> None:
        self.data, self.files, self.environment = data, files, environment

    @property
    def trainer(self) -> str:
        return CODE_PREFIX + script_ref(self.data, MAX_CODE_BYTES, "code")


def _files(root: Path, where: str) -> list[tuple[str, Path]]:
    """(name in the pack, path to read) for every file to pack, sorted by name."""
    found: list[tuple[str, Path]] = []
    real_root = root.resolve()
    for current, dirs, names in os.walk(root, onerror=_raise_unreadable(where)):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
        for name in [*dirs, *names]:
            path = Path(current) / name
            rel = path.relative_to(root).as_posix()
            info = path.lstat()
            if is_paperwork(rel):
                continue
            if stat.S_ISLNK(info.st_mode):
                target = path.resolve()
                if not target.is_relative_to(real_root):
                    raise CodeFolderError(f"{where}: {rel} is a link to {target}, outside the folder")
                if target.is_dir():
                    raise CodeFolderError(f"{where}: {rel} is a link to a folder; copy it in or link its files")
                found.append((rel, target))
            elif stat.S_ISDIR(info.st_mode):
                continue
            elif stat.S_ISREG(info.st_mode):
                if not name.endswith(SKIPPED_SUFFIXES):
                    found.append((rel, path))
            else:
                raise CodeFolderError(f"{where}: {rel} is not a regular file (a device, fifo or socket)")
    return sorted(found)


def _raise_unreadable(where: str):
    def fail(error: OSError) -> None:
        raise CodeFolderError(f"{where}: cannot read {error.filename}: {error.strerror}")
    return fail


def pack_folder(folder: str | Path, base: Path | None = None) -> PackedCode:
    """Pack a folder (relative paths start from `base`); CodeFolderError says why not, in one line."""
    root = Path(folder) if base is None or Path(folder).is_absolute() else base / folder
    where = f"code {folder}"
    if not root.exists():
        raise CodeFolderError(f"{where}: no such folder")
    if not root.is_dir():
        raise CodeFolderError(f"{where}: not a folder (use --script for one file)")
    if not os.access(root, os.R_OK | os.X_OK):
        raise CodeFolderError(f"{where}: cannot read the folder (permission denied)")
    buffer = io.BytesIO()
    total, names, texts = 0, [], {}
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, path in _files(root, where):
            try:
                content = path.read_bytes()
                executable = bool(path.stat().st_mode & stat.S_IXUSR)
            except OSError as error:
                raise CodeFolderError(f"{where}: cannot read {name}: {error.strerror}") from None
            total += len(content) + _HEADER_BYTES
            if total > MAX_CODE_BYTES:
                raise CodeFolderError(f"{where}: over the {MAX_CODE_BYTES:,}-byte limit at {name} (code folders hold "
                                      f"code and small files; make data with a data command)")
            member = tarfile.TarInfo(name)
            member.size, member.mtime, member.mode = len(content), 0, 0o755 if executable else 0o644
            member.uid = member.gid = 0
            member.uname = member.gname = ""
            tar.addfile(member, io.BytesIO(content))
            names.append(name)
            if name in (REQUIREMENTS, DECLARATION):
                texts[name] = _text(content, f"{where}: {name}")
    data = buffer.getvalue()
    if len(data) > MAX_CODE_BYTES:
        raise CodeFolderError(f"{where}: {len(data):,} bytes packed, over the {MAX_CODE_BYTES:,}-byte limit")
    try:
        environment = parse_environment(texts.get(REQUIREMENTS), texts.get(DECLARATION))
    except GolfqError as error:
        raise CodeFolderError(f"{where}: {error}") from None
    return PackedCode(data, tuple(names), environment)


def _text(content: bytes, where: str) -> str:
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError:
        raise CodeFolderError(f"{where}: not UTF-8 text") from None

