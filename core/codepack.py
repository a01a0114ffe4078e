"""Reading a packed code folder (golfq.producer.codefolder writes it): its files, checked, in memory.

Both sides read a pack: the worker unpacks it as the attempt's directory, and `golfq
submission` writes it back as a record folder. A member that is not a plain file, or whose
name is absolute or climbs out, is refused whatever wrote the blob.

A record's paperwork (its top-level README.md, submission.json and train logs) is not code:
the packer leaves it out, so a record folder and the submission folder written back from its
jobs pack to the same bytes, and `golfq submission` writes its own paperwork beside the files.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import PurePosixPath

import msgspec

PAPERWORK = frozenset({"README.md", "submission.json"})
LOG_SUFFIX = ".log"


class PackedFile(msgspec.Struct, frozen=True):
    name: str  # posix path inside the folder
    content: bytes
    executable: bool = False


def is_paperwork(name: str) -> bool:
    """A top-level file a record writes about its runs (README, submission.json, logs), not code they run."""
    return "/" not in name and (name in PAPERWORK or name.endswith(LOG_SUFFIX))


def read_pack(blob: bytes) -> list[PackedFile]:
    """The pack's files in their packed order; ValueError for a member that is not a plain file inside it
    (tarfile.TarError for bytes that are no tar)."""
    files: list[PackedFile] = []
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:") as tar:
        for member in tar:
            name = PurePosixPath(member.name)
            if not member.isfile() or name.is_absolute() or ".." in name.parts or not name.parts:
                raise ValueError(f"code pack member {member.name!r} is not a file inside the folder")
            source = tar.extractfile(member)
            assert source is not None  # a regular file always has content
            files.append(PackedFile(name.as_posix(), source.read(), bool(member.mode & 0o100)))
    return files
